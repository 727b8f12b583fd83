"""Shot-cut detection (simswap_core.cuts.CutDetector) on real frames: the cut of a synthetic two-person clip
(tests/video_fixtures.py), pans and lighting changes of insightface's t1.jpg that are not cuts, across calls."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from video_fixtures import clip_frames

from simswap_core.cuts import DEFAULT_CUT_THRESHOLD, CutDetector
from simswap_core.errors import InputError


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    """30 frames 320x180 of the synthetic clip (two people drifting slowly), a new shot from frame 17."""
    return clip_frames(frames=30, size=(320, 180), cut_at=17, hide={1: range(5, 9)})


def crop(img: torch.Tensor, x: int, y: int, w: int = 320, h: int = 180) -> torch.Tensor:
    return img[:, :, y:y + h, x:x + w]


def test_finds_the_cut_of_a_clip_and_nothing_else(clip):
    det = CutDetector()
    flags = det(clip)
    assert flags.dtype == torch.bool and flags.shape == (30,)
    assert flags.nonzero().flatten().tolist() == [17]
    assert det.scores is not None and float(det.scores[17]) > 1.5 * DEFAULT_CUT_THRESHOLD
    others = torch.cat([det.scores[:17], det.scores[18:]])
    assert float(others.max()) < 0.5 * DEFAULT_CUT_THRESHOLD       # motion, a face covered and uncovered


def test_large_frames_give_the_same_answer(clip):
    """720p frames are sampled (every 3rd pixel) before the thumbnail: same cut, same decisions."""
    big = F.interpolate(clip[14:19], size=(720, 1280), mode="bilinear", align_corners=False)
    det = CutDetector()
    assert det(big).tolist() == [False, False, False, True, False]
    small = CutDetector()
    small(clip[14:19])
    assert det.scores is not None and small.scores is not None
    assert torch.allclose(det.scores, small.scores, atol=0.05)


def test_compares_across_calls_and_reset_starts_a_stream(clip):
    whole = CutDetector()(clip)
    for sizes in ((17, 13), (5, 12, 1, 12), (1,) * 30):
        det, parts, start = CutDetector(), [], 0
        for s in sizes:
            parts.append(det(clip[start:start + s]))
            start += s
        assert torch.equal(torch.cat(parts), whole), sizes       # a cut on a call's first frame is found too
    det = CutDetector()
    det(clip[:17])
    det.reset()
    assert not det(clip[17:]).any()                                # a stream's first frame is never a cut
    assert det(clip[:0]).shape == (0,)


def test_motion_and_light_are_not_cuts_new_places_are(t1):
    frames = t1[:, :, :, :1280]
    pan = torch.cat([crop(frames, 300 + 6 * i, 250) for i in range(8)])          # a pan, 6 px per frame
    fast = torch.cat([crop(frames, 100 + 25 * i, 250) for i in range(8)])        # 25 px per frame
    light = torch.cat([crop(frames, 300, 250) * s for s in (1.0, 1.1, 1.2)]).clamp(0, 1)
    for name, seq in (("pan", pan), ("fast pan", fast), ("light", light)):
        assert not CutDetector()(seq).any(), name
    here = crop(frames, 300, 250)
    for name, other in (("other place", crop(frames, 900, 500)), ("mirrored", here.flip(-1)),
                        ("other photo", F.interpolate(frames, size=(180, 320), mode="area"))):
        assert CutDetector()(torch.cat([here, here, other])).tolist() == [False, False, True], name


def test_threshold_sets_the_sensitivity(clip):
    scores = CutDetector()
    scores(clip)
    assert scores.scores is not None
    low = float(scores.scores[1:17].max())
    assert CutDetector(threshold=low * 0.9)(clip).sum() > 1       # below the motion's scores: false cuts
    assert not CutDetector(threshold=0.99)(clip).any()


def test_refuses_bad_input():
    for bad in (0.0, -0.1, 1.5, float("nan"), "high"):
        with pytest.raises(InputError, match="cut threshold"):
            CutDetector(bad)
    for frames in (torch.zeros(2, 4, 8, 8), torch.zeros(3, 8, 8), torch.zeros(2, 3, 8, 8, dtype=torch.uint8),
                   [torch.zeros(3, 8, 8)]):
        with pytest.raises(InputError, match="frames"):
            CutDetector()(frames)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_frames_device(clip):
    det = CutDetector()
    flags = det(clip[:10].cuda())
    assert flags.device.type == "cuda"
    assert torch.equal(torch.cat([flags.cpu(), det(clip[10:].cuda()).cpu()]), CutDetector()(clip))
