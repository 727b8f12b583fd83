"""Temporal landmark smoothing (simswap_core.tracking): less jitter, little lag, stable tracks, chunk-invariant."""
from __future__ import annotations

import pytest
import torch

from pipeline_fixtures import (  # noqa: F401
    astronaut,
    astronaut_small,
    pl_identity,
    pl_models,
    pl_swapper,
    pl_weights,
    to_tensor,
)
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces
from simswap_core.tracking import LandmarkSmoother, box_iou

BASE = torch.tensor([[40.0, 50], [72, 50], [56, 68], [44, 86], [68, 86]])  # a 5-point face, ~120 px box


def one_face_per_frame(points: torch.Tensor) -> DetectedFaces:
    """[T,5,2] points, one face per frame -> DetectedFaces with a 120x120 box around each face."""
    c = points.mean(1)
    boxes = torch.cat([c - 60, c + 60], 1)
    t = points.shape[0]
    return DetectedFaces(boxes, points.clone(), torch.ones(t), torch.arange(t), [(480, 640)] * t)


def jittered_track(speed: float, frames: int = 80, noise: float = 1.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    truth = BASE + 100 + torch.stack([torch.tensor([speed * t, 0.0]) for t in range(frames)])[:, None, :]
    return truth, truth + torch.randn(truth.shape, generator=g) * noise


def jitter(points: torch.Tensor, truth: torch.Tensor, skip: int = 10) -> float:
    """Mean frame-to-frame point motion that the true motion does not explain."""
    return float(((points[1:] - points[:-1]) - (truth[1:] - truth[:-1]))[skip:].norm(dim=-1).mean())


@pytest.mark.parametrize("speed", [0.0, 3.0, 8.0])
def test_jitter_drops_and_lag_stays_small(speed):
    truth, raw = jittered_track(speed)
    out = LandmarkSmoother(0.5)(one_face_per_frame(raw)).points
    assert jitter(out, truth) < 0.6 * jitter(raw, truth)
    lag = float((out - truth)[10:, :, 0].mean())  # along the motion (x); negative = behind
    assert abs(lag) < 0.012 * 170 + 0.1 * speed  # about 1 % of the face size, plus 10 % of a frame's motion
    assert float((out - truth)[10:].norm(dim=-1).mean()) < float((raw - truth)[10:].norm(dim=-1).mean())


def test_stronger_smoothing_smooths_more_and_zero_is_off():
    truth, raw = jittered_track(0.0)
    faces = one_face_per_frame(raw)
    j = [jitter(LandmarkSmoother(s)(faces).points, truth) for s in (0.2, 0.5, 0.9)]
    assert j[0] > j[1] > j[2]
    off = LandmarkSmoother(0.0)
    assert not off.enabled and torch.equal(off(faces).points, raw)
    for bad in (-0.1, 1.5, "x"):
        with pytest.raises(InputError, match="strength"):
            LandmarkSmoother(bad)


def test_chunked_calls_equal_one_call():
    truth, raw = jittered_track(3.0, frames=30)
    whole = LandmarkSmoother(0.5)(one_face_per_frame(raw)).points
    sm = LandmarkSmoother(0.5)
    parts = [sm(one_face_per_frame(raw[i:i + 7])).points for i in range(0, 30, 7)]
    assert torch.allclose(torch.cat(parts), whole, atol=1e-5)
    sm.reset()
    assert torch.allclose(sm(one_face_per_frame(raw[:7])).points, whole[:7], atol=1e-5)


def test_tracks_follow_faces_across_gaps_and_new_faces_start_new_tracks():
    # two faces, left and right, moving apart; the right one is missed on frame 3 and reappears on frame 4
    frames = []
    for t in range(8):
        left = BASE + torch.tensor([100.0 - 2 * t, 100.0])
        right = BASE + torch.tensor([400.0 + 2 * t, 100.0])
        frames.append([left] if t == 3 else [left, right])
    pts = torch.stack([p for f in frames for p in f])
    fidx = torch.tensor([t for t, f in enumerate(frames) for _ in f])
    c = pts.mean(1)
    faces = DetectedFaces(torch.cat([c - 60, c + 60], 1), pts, torch.ones(len(pts)), fidx, [(480, 640)] * 8)
    sm = LandmarkSmoother(0.5, max_gap=2)
    out = sm(faces)
    ids = sm.track_ids
    left_ids = ids[pts[:, 0, 0] < 300].unique().tolist()
    right_ids = ids[pts[:, 0, 0] >= 300].unique().tolist()
    assert len(left_ids) == 1 and len(right_ids) == 1 and left_ids != right_ids
    assert torch.equal(out.boxes, faces.boxes) and torch.equal(out.frame_index, faces.frame_index)
    # a face that is gone for longer than max_gap frames comes back as a new track, its points unfiltered
    sm2 = LandmarkSmoother(0.5, max_gap=1)
    a = one_face_per_frame((BASE + 100)[None].repeat(2, 1, 1))
    sm2(a)
    sm2(DetectedFaces(torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int64),
                      [(480, 640)] * 3))
    moved = (BASE + 103)[None]
    back = sm2(one_face_per_frame(moved))
    assert torch.equal(back.points, moved) and int(sm2.track_ids[0]) == 1


def test_box_iou():
    a = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]])
    iou = box_iou(a, b)
    assert torch.allclose(iou[0], torch.tensor([1.0, 50 / 150, 0.0]))
    assert torch.equal(iou[1], torch.zeros(3))


class JitteryDetector:
    """Wraps a real detector and adds seeded noise to the landmarks (what a detector does on video)."""

    def __init__(self, inner, noise: float, seed: int = 0):
        self.inner, self.noise = inner, noise
        self.g = torch.Generator().manual_seed(seed)

    def detect(self, frames):
        f = self.inner.detect(frames)
        noisy = f.points + torch.randn(f.points.shape, generator=self.g) * self.noise
        return DetectedFaces(f.boxes, noisy, f.scores, f.frame_index, f.frame_sizes)


def crop_corners_in_frame(aligned) -> torch.Tensor:
    """[F,4,2] frame pixels of the 4 crop corners (where the aligned crop sits in the frame)."""
    from simswap_core.align import invert_affine

    s = aligned.crop_size
    inv = invert_affine(aligned.matrices.double())
    c = torch.tensor([[0.0, 0.0], [s, 0.0], [0.0, s], [s, s]], dtype=torch.float64)
    return (c[None] @ inv[:, :, :2].transpose(1, 2) + inv[:, None, :, 2]).float()


def test_alignment_of_a_still_face_is_steadier(pl_models):
    """30 frames of a still face, detector landmarks with 1.5 px of jitter: the aligned crop (224, the official
    pose-template alignment) moves much less from frame to frame with smoothing."""
    from simswap_core.align import align_faces

    d = pl_models[2]
    frames = to_tensor(astronaut_small(256)).repeat(30, 1, 1, 1)
    motion = {}
    for name, smoother in (("raw", None), ("smooth", LandmarkSmoother(0.6))):
        faces = JitteryDetector(d, noise=1.5).detect(frames)
        if smoother is not None:
            faces = smoother(faces)
        corners = crop_corners_in_frame(align_faces(frames, faces, 224, None))
        motion[name] = float((corners[1:] - corners[:-1])[5:].norm(dim=-1).mean())
    assert motion["smooth"] < 0.7 * motion["raw"], motion


def test_swap_with_smoothing(pl_models, pl_identity):
    """FaceSwapper.swap(smoothing=...): the swapped faces use the smoothed points, pixels outside the mask stay
    bit-identical, and a clip swapped in two chunks with one smoother equals one call."""
    from simswap_core.swap import FaceSwapper

    g, a, d = pl_models
    frames = to_tensor(astronaut_small(256)).repeat(6, 1, 1, 1)
    raw = FaceSwapper(g, a, JitteryDetector(d, noise=1.5), device="cpu").swap(
        frames, pl_identity, select="largest", batch_size=3)
    swapper = FaceSwapper(g, a, JitteryDetector(d, noise=1.5), device="cpu")
    whole = swapper.swap(frames, pl_identity, select="largest", batch_size=3, smoothing=LandmarkSmoother(0.6))
    assert torch.equal(whole.faces.points[0], raw.faces.points[0])          # a track starts at its detection
    assert not torch.allclose(whole.faces.points[1:], raw.faces.points[1:])  # then follows the filter
    outside = (whole.mask == 0).expand_as(frames)
    assert torch.equal(whole.images[outside], frames[outside])
    swapper = FaceSwapper(g, a, JitteryDetector(d, noise=1.5), device="cpu")
    sm = LandmarkSmoother(0.6)
    parts = [swapper.swap(frames[i:i + 3], pl_identity, select="largest", batch_size=3, smoothing=sm).images
             for i in (0, 3)]
    assert torch.allclose(torch.cat(parts), whole.images, atol=1e-5)
    with pytest.raises(InputError, match="smoothing"):
        swapper.swap(frames[:1], pl_identity, smoothing=3)


def test_cli_smooth_option():
    from simswap_core.cli import build_parser

    p = build_parser()
    base = ["swap", "--source", "s.png", "--target", "t.mp4", "--out", "o.mp4"]
    assert p.parse_args(base).smooth == "auto"
    assert p.parse_args(base + ["--smooth", "0.8"]).smooth == "0.8"
    for bad in ("1.5", "-1", "strong"):
        with pytest.raises(SystemExit):
            p.parse_args(base + ["--smooth", bad])
