"""Detect Faces: every face of every frame, plus a numbered preview for picking faces by index (and, for video
frames, by track id)."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from comfy_api.latest import io

from . import _types as t
from ._common import CATEGORY, image_to_nchw, nchw_to_image, progress_callback, soft_empty_cache
from .search_aliases import search_aliases
from .selection import ORDERS

if TYPE_CHECKING:  # simswap_core is imported where it is used
    import torch

    from simswap_core.detection import FaceDetector

DETECT_BATCH = 16  # frames per detector call
TRACK_GAP = 8      # track_faces: frames a missed face is filled over (FaceTracker max_gap)


class SimSwapDetectFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapDetectFaces",
            **search_aliases("SimSwapDetectFaces"),
            display_name="SimSwap Detect Faces",
            category=f"{CATEGORY}/faces",
            description=("Finds the faces of every frame of an IMAGE batch (boxes, 5 landmarks, scores) and draws a "
                         "preview where each face carries the number that face_index refers to (numbered per frame "
                         "in the chosen order). Use it to pick which faces SimSwap Swap replaces. With track_faces, "
                         "the frames are treated as a video: each face gets a track id that follows it from frame to "
                         "frame (shown as #N, the number a 'track id' mapping refers to), faces the detector misses "
                         f"for up to {TRACK_GAP} frames are filled in from their neighbours, and a shot cut starts "
                         "new ids."),
            inputs=[
                io.Image.Input("images", tooltip="Frames to search for faces (a batch keeps its order)."),
                t.Detector.Input("detector", tooltip="Face detector from 'SimSwap Load Face Detector'."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="How faces are numbered in each frame (must match the 'order' of the node "
                                       "that selects faces by index)."),
                io.Boolean.Input("track_faces", default=False, optional=True,
                                 tooltip="Video frames: follow faces from frame to frame and number them by track "
                                         "(#N in the preview, \"track\" in faces_json); faces missed for up to "
                                         f"{TRACK_GAP} frames are filled in (\"filled\": true), a shot cut starts "
                                         "new tracks. "
                                         "Off: every frame is searched on its own."),
            ],
            outputs=[
                t.Faces.Output(display_name="faces", tooltip="The detected faces of all frames (frame order kept)."),
                io.Image.Output(display_name="preview",
                                tooltip="The frames with numbered boxes and landmarks (same size and count as the "
                                        "input)."),
                io.Int.Output(display_name="face_count",
                              tooltip="Total number of faces in all frames (with track_faces, filled faces count "
                                      "too)."),
                io.String.Output(display_name="faces_json",
                                 tooltip="Per frame, a JSON list of {index, box, points, score} in the chosen "
                                         "order; with track_faces also track (the track id) and filled (true for a "
                                         "face filled in a detection gap)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, order: str | None) -> bool | str:
        return t.combo_errors(cls, order=order)

    @classmethod
    def execute(cls, images: torch.Tensor, detector: FaceDetector, order: str,
                track_faces: bool = False) -> io.NodeOutput:
        from simswap_core.detection import draw_faces, order_faces
        from simswap_core.faces import DetectedFaces
        from simswap_core.io.frames import frame_ranges
        from simswap_core.tracking import FaceTracker

        frames = image_to_nchw(images, "images")
        n = frames.shape[0]
        progress = progress_callback(n)
        # points as detected (smoothing 0): the preview shows the detections; the swap smooths on its own
        tracker = FaceTracker(0.0, max_gap=TRACK_GAP) if track_faces else None
        parts = []
        for start, stop in frame_ranges(n, DETECT_BATCH):  # frame batches: progress bar + Cancel between them
            detected = detector.detect(frames[start:stop])
            if tracker is None:
                parts.append(detected)
            else:
                tracker.push(detected, frames[start:stop])
                parts.append(tracker.pop())
            if progress:
                progress(stop, n)
        if tracker is not None:
            parts.append(tracker.pop(final=True))
        faces = parts[0] if len(parts) == 1 else DetectedFaces.concat(parts)
        soft_empty_cache()
        ranks = order_faces(faces, order)
        preview = draw_faces(frames, faces, order=order)
        per_frame = faces.to_json()
        # re-number in the chosen order so faces_json matches the preview numbers
        rank_list, k = ranks.cpu().tolist(), 0
        for frame in per_frame:
            for item in frame:
                item["index"] = rank_list[k]
                k += 1
            frame.sort(key=lambda it: it["index"])
        return io.NodeOutput(faces, nchw_to_image(preview), len(faces), json.dumps(per_frame))


NODES = [SimSwapDetectFaces]
