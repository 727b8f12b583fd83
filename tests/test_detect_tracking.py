"""The Detect Faces node's track_faces input (nodes/detect.py) on real frames of a synthetic two-person clip
(tests/video_fixtures.py) with the real YuNet detector: track ids in faces_json and the preview, filled faces in a
detection gap across the node's detector batches, and the default (off) unchanged."""
from __future__ import annotations

import json

import pytest
import torch

from comfy_harness import use_comfy_api

use_comfy_api()

from video_fixtures import clip_frames, clip_info  # noqa: E402

N, SIZE, HIDE = 22, (320, 180), {1: range(13, 18)}   # the gap spans the node's 16-frame detector batches


@pytest.fixture(scope="module")
def clip():
    return clip_frames(frames=N, size=SIZE, hide=HIDE).permute(0, 2, 3, 1).contiguous()   # ComfyUI IMAGE


@pytest.fixture(scope="module")
def detector():
    from simswap_core.detection import load_detector

    return load_detector("yunet")


def test_track_faces_input_is_declared():
    from nodes.detect import SimSwapDetectFaces

    schema = SimSwapDetectFaces.GET_SCHEMA()
    inp = next(i for i in schema.inputs if i.id == "track_faces")
    assert inp.default is False and inp.optional and "track" in inp.tooltip   # saved workflows still validate


def test_detect_faces_with_tracks(clip, detector):
    from nodes.detect import DETECT_BATCH, SimSwapDetectFaces

    assert 13 < DETECT_BATCH < 18
    plain, plain_preview, plain_count, plain_json = SimSwapDetectFaces.execute(clip, detector, "left-right").args
    assert plain.track_id is None and plain_count == 2 * N - 5
    assert "track" not in plain_json and "filled" not in plain_json
    faces, preview, count, faces_json = SimSwapDetectFaces.execute(clip, detector, "left-right",
                                                                    track_faces=True).args
    assert faces.num_frames == N and count == 2 * N == len(faces)          # the 5 missed faces filled in
    per_frame = json.loads(faces_json)
    assert [[it["index"] for it in frame] for frame in per_frame] == [[0, 1]] * N
    assert [[it["track"] for it in frame] for frame in per_frame] == [[0, 1]] * N   # left person 0, right 1
    filled = [f for f, frame in enumerate(per_frame) for it in frame if it["filled"]]
    assert filled == list(HIDE[1]) and all(it["track"] == 1 for f in filled for it in per_frame[f] if it["filled"])
    info = clip_info(frames=N, size=SIZE, hide=HIDE)
    for f in filled:
        box = torch.tensor(per_frame[f][1]["box"])
        assert (box - info.boxes[f, 1]).abs().max() < 8.0, (f, box, info.boxes[f, 1])
    assert preview.shape == clip.shape and not torch.equal(preview, plain_preview)   # "#N" / "filled" labels
    assert torch.equal(preview[0][:10], plain_preview[0][:10])     # rows far from the faces: untouched
