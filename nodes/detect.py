"""Detect Faces: every face of every frame, plus a numbered preview for picking faces by index."""
from __future__ import annotations

import json

from ._common import CATEGORY, image_to_nchw, nchw_to_image, progress_callback, soft_empty_cache
from .selection import ORDERS

DETECT_BATCH = 16  # frames per detector call


class SimSwapDetectFaces:
    DESCRIPTION = ("Finds the faces of every frame of an IMAGE batch (boxes, 5 landmarks, scores) and draws a "
                   "preview where each face carries the number that face_index refers to (numbered per frame "
                   "in the chosen order). Use it to pick which faces SimSwap Swap replaces.")
    CATEGORY = f"{CATEGORY}/faces"
    FUNCTION = "detect"
    RETURN_TYPES = ("SIMSWAP_FACES", "IMAGE", "INT", "STRING")
    RETURN_NAMES = ("faces", "preview", "face_count", "faces_json")
    OUTPUT_TOOLTIPS = (
        "The detected faces of all frames (frame order kept).",
        "The frames with numbered boxes and landmarks (same size and count as the input).",
        "Total number of faces found in all frames.",
        "Per frame, a JSON list of {index, box, points, score} in the chosen order.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Frames to search for faces (a batch keeps its order)."}),
            "detector": ("SIMSWAP_DETECTOR", {"tooltip": "Face detector from 'SimSwap Load Face Detector'."}),
            "order": (ORDERS, {"default": "left-right",
                               "tooltip": "How faces are numbered in each frame (must match the 'order' of the "
                                          "node that selects faces by index)."}),
        }}

    def detect(self, images, detector, order):
        from simswap_core.detection import draw_faces, order_faces

        from simswap_core.faces import DetectedFaces

        frames = image_to_nchw(images, "images")
        n = frames.shape[0]
        progress = progress_callback(n)
        parts = []
        for start in range(0, n, DETECT_BATCH):  # frame batches: progress bar + Cancel between them
            parts.append(detector.detect(frames[start:start + DETECT_BATCH]))
            if progress:
                progress(min(start + DETECT_BATCH, n), n)
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
        return (faces, nchw_to_image(preview), len(faces), json.dumps(per_frame))


NODE_CLASS_MAPPINGS = {"SimSwapDetectFaces": SimSwapDetectFaces}
NODE_DISPLAY_NAME_MAPPINGS = {"SimSwapDetectFaces": "SimSwap Detect Faces"}
