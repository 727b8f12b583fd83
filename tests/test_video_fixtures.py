"""The synthetic clips of tests/video_fixtures.py: what they claim is what a detector and a decoder find."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from video_fixtures import (
    audio_duration,
    clip_frames,
    clip_info,
    decode_frame_numbers,
    make_clip,
    read_frame_numbers,
    read_pts,
)


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a [A,4] and b [B,4] -> [A,B]."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)
    return inter / (area(a)[:, None] + area(b)[None] - inter)


@pytest.fixture(scope="module")
def detector():
    from simswap_core.detection import load_detector

    return load_detector("yunet")


def test_faces_found_where_claimed_and_hidden_where_hidden(detector):
    """Two different people, detectable in every visible frame (box IoU > 0.6 with the claim), person 0 left of
    person 1; a hidden face has no detection at all; after the cut the people stand elsewhere (no overlap)."""
    n, hide, cut = 24, {1: range(6, 11)}, 16
    frames = clip_frames(frames=n, hide=hide, cut_at=cut)
    info = clip_info(frames=n, hide=hide, cut_at=cut)
    assert frames.shape == (n, 3, 360, 640) and frames.dtype == torch.float32
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    assert info.visible[:, 1].tolist() == [i not in hide[1] for i in range(n)]
    assert bool(info.visible[:, 0].all())
    faces = detector.detect(frames)
    for i in range(n):
        found = faces.boxes[faces.frame_index == i]
        iou = _iou(info.boxes[i], found)                        # [P, found]
        for k in range(2):
            best = float(iou[k].max()) if found.shape[0] else 0.0
            if info.visible[i, k]:
                assert best > 0.6, f"frame {i}: person {k} not found (best IoU {best:.2f})"
            else:
                assert best < 0.05, f"frame {i}: hidden person {k} was detected (IoU {best:.2f})"
        assert found.shape[0] == int(info.visible[i].sum()), f"frame {i}: {found.shape[0]} faces found"
    assert float(info.boxes[:, 0, 2].max()) < float(info.boxes[:, 1, 0].min())      # person 0 on the left
    before, after = info.boxes[cut - 1], info.boxes[cut]
    assert float(torch.diagonal(_iou(before, after)).max()) == 0.0
    # the people are different: ArcFace-free check on pixels of the two face crops (not the same photo region)
    x = info.boxes[0].round().long()
    a = frames[0, :, x[0, 1]:x[0, 3], x[0, 0]:x[0, 2]].mean(dim=(1, 2))
    b = frames[0, :, x[1, 1]:x[1, 3], x[1, 0]:x[1, 2]].mean(dim=(1, 2))
    assert float((a - b).abs().max()) > 0.02


def test_file_roundtrip_numbers_timestamps_audio(tmp_path):
    """Frame numbers survive x264 crf 17; the file's timestamps are the ones claimed (VFR too); audio as long as
    the video; an existing file is never overwritten."""
    info = make_clip(tmp_path / "c.mp4", frames=30, fps=25, vfr=True, cut_at=12)
    assert read_frame_numbers(tmp_path / "c.mp4") == list(range(30))
    pts, tb = read_pts(tmp_path / "c.mp4")
    assert [Fraction(p) * tb for p in pts] == [Fraction(p) * info.time_base for p in info.pts]
    steps = {b - a for a, b in zip(info.pts, info.pts[1:])}
    assert len(steps) > 1                                           # really irregular
    dur = audio_duration(tmp_path / "c.mp4")
    assert dur is not None and abs(dur - info.duration) < 0.05
    with pytest.raises(FileExistsError):
        make_clip(tmp_path / "c.mp4", frames=3)


def test_odd_size_no_audio_and_in_memory_numbers(tmp_path):
    info = make_clip(tmp_path / "o.mkv", frames=8, size=(161, 121), people=1, audio=False)
    assert info.size == (161, 121) and info.boxes.shape == (8, 1, 4)
    assert read_frame_numbers(tmp_path / "o.mkv") == list(range(8))
    assert audio_duration(tmp_path / "o.mkv") is None
    frames = clip_frames(frames=12, start=7)
    assert decode_frame_numbers(frames) == [7, 8, 9, 10, 11]
    damaged = frames.clone()
    x1, y1, x2, y2 = clip_info(frames=1).code_box                   # the 640x360 code
    damaged[0, :, y1:y2, x1:(x1 + x2) // 2] = 1.0 - damaged[0, :, y1:y2, x1:(x1 + x2) // 2]
    assert decode_frame_numbers(damaged)[0] == -1                   # a damaged code never reads as a number


def test_bad_arguments():
    with pytest.raises(ValueError, match="people"):
        clip_info(people=5)
    with pytest.raises(ValueError, match="cut_at"):
        clip_info(frames=10, cut_at=10)
    with pytest.raises(ValueError, match="hide"):
        clip_info(people=1, hide={1: range(3)})


def test_source_and_reference_photos(tmp_path, detector):
    """One face in each photo: two sources who are not in the clips, references of clip people 0 and 1."""
    from video_fixtures import write_person_photo, write_source_photo

    from simswap_core.io.images import read_image

    paths = [write_source_photo(tmp_path / "s0.png", 0), write_source_photo(tmp_path / "s1.png", 1),
             write_person_photo(tmp_path / "p0.png", 0), write_person_photo(tmp_path / "p1.png", 1)]
    for p in paths:
        assert len(detector.detect(read_image(p).image)) == 1, p.name
    with pytest.raises(FileExistsError):
        write_source_photo(paths[0])
