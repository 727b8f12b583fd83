"""Temporal landmark smoothing (simswap_core.tracking): less jitter, little lag, stable tracks, chunk-invariant."""
from __future__ import annotations

import pytest
import torch

from pipeline_fixtures import astronaut_small, to_tensor
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces
from simswap_core.tracking import FaceTracker, LandmarkSmoother, box_iou

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


# ------------------------------------------------------------------------------------------- FaceTracker (streams)
SIZE = (180, 320)   # (H, W) of the synthetic frames


def scene(n: int, people: dict[int, tuple[float, float, float]], *, hide: dict[int, range] | None = None,
          jitter: float = 0.0, seed: int = 0) -> tuple[DetectedFaces, torch.Tensor]:
    """Synthetic detections of n frames: person p's 60x60 face box starts at (x0, y0) and moves vx px per frame
    (``people = {p: (x0, y0, vx)}``), missing in the frames of ``hide[p]``; scores 0.5 + 0.01 * frame. Faces of a
    frame in person order. Returns (faces, true boxes [n,P,4])."""
    g = torch.Generator().manual_seed(seed)
    hide = hide or {}
    rel = (BASE - BASE.mean(0)) * 0.45 + 30          # 5 points inside a 60 px box
    boxes, points, scores, fidx = [], [], [], []
    truth = torch.zeros(n, len(people), 4)
    for t in range(n):
        for p, (x0, y0, vx) in sorted(people.items()):
            x = x0 + vx * t
            box = torch.tensor([x, y0, x + 60, y0 + 60])
            truth[t, p] = box
            if t in hide.get(p, ()):
                continue
            boxes.append(box)
            points.append(rel + torch.tensor([x, y0]) + torch.randn(5, 2, generator=g) * jitter)
            scores.append(0.5 + 0.01 * t)
            fidx.append(t)
    faces = DetectedFaces(torch.stack(boxes), torch.stack(points), torch.tensor(scores), torch.tensor(fidx),
                          [SIZE] * n)
    return faces, truth


def run_tracker(tracker: FaceTracker, faces: DetectedFaces, chunks: list[int],
                frames: torch.Tensor | None = None) -> DetectedFaces:
    """Push the faces in chunks of the given sizes (the last repeated to the end), pop after each, final pop."""
    out, start, i = [], 0, 0
    while start < faces.num_frames:
        stop = min(start + chunks[min(i, len(chunks) - 1)], faces.num_frames)
        tracker.push(faces.frames(start, stop), None if frames is None else frames[start:stop])
        out.append(tracker.pop())
        start, i = stop, i + 1
    out.append(tracker.pop(final=True))
    joined = DetectedFaces.concat(out)
    assert joined.num_frames == faces.num_frames
    return joined


def person_faces(out: DetectedFaces, truth: torch.Tensor, p: int) -> torch.Tensor:
    """Indices of the output faces that belong to person p (closest true box in their frame)."""
    d = (out.boxes[:, None, :] - truth[out.frame_index]).abs().sum(-1)      # [F,P]
    return (d.argmin(1) == p).nonzero().flatten()


TWO = {0: (20.0, 40.0, 2.0), 1: (200.0, 50.0, -3.0)}


def test_tracker_keeps_ids_through_a_5_frame_gap_and_fills_it():
    faces, truth = scene(30, TWO, hide={1: range(10, 15)})
    out = run_tracker(FaceTracker(0.0, max_gap=8, cut_threshold=None), faces, [6])
    assert out.counts() == [2] * 30                                        # the gap frames have both faces
    assert out.track_id is not None and out.interpolated is not None
    ids = {p: out.track_id[person_faces(out, truth, p)].unique().tolist() for p in (0, 1)}
    assert ids == {0: [0], 1: [1]}                                         # one id per person, kept
    filled = out.interpolated.nonzero().flatten()
    assert out.frame_index[filled].tolist() == list(range(10, 15))
    assert out.track_id[filled].tolist() == [1] * 5
    # linear motion: the interpolated boxes and points are the true ones; score: the lower of the two ends
    assert torch.allclose(out.boxes[filled], truth[10:15, 1], atol=1e-4)
    rel = faces.points[0] - faces.boxes[0, :2]
    assert torch.allclose(out.points[filled], rel + truth[10:15, 1, None, :2], atol=1e-4)
    assert torch.allclose(out.scores[filled], torch.full((5,), 0.5 + 0.01 * 9))
    detected = ~out.interpolated
    assert torch.equal(out.boxes[detected], faces.boxes) and torch.equal(out.points[detected], faces.points)


def test_tracker_gap_longer_than_max_gap_gives_a_new_id():
    faces, truth = scene(30, TWO, hide={1: range(10, 20)})                  # person 1 missing for 10 frames
    out = run_tracker(FaceTracker(0.0, max_gap=8, cut_threshold=None), faces, [5])
    assert out.interpolated is not None and not out.interpolated.any()   # no fill: the track ended
    assert out.counts()[10:20] == [1] * 10
    p1 = person_faces(out, truth, 1)
    before = out.track_id[p1[out.frame_index[p1] < 10]].unique().tolist()
    after = out.track_id[p1[out.frame_index[p1] >= 20]].unique().tolist()
    assert before == [1] and len(after) == 1 and after[0] > 1           # a new id, never a reused one
    # max_gap 10: the same 10-frame gap is bridged and filled
    out = run_tracker(FaceTracker(0.0, max_gap=10, cut_threshold=None), faces, [5])
    assert out.counts() == [2] * 30 and out.track_id.unique().tolist() == [0, 1]
    assert int(out.interpolated.sum()) == 10


@pytest.fixture(scope="module")
def cut_clip() -> torch.Tensor:
    """24 real frames (tests/video_fixtures.py: two people of t1.jpg, 320x180) with a shot cut at frame 16."""
    from video_fixtures import clip_frames

    return clip_frames(frames=24, size=(SIZE[1], SIZE[0]), cut_at=16)


def test_tracker_cut_gives_new_ids_and_no_fill_across_it(cut_clip):
    # the synthetic faces continue smoothly through frame 16; only the frames change shot there. Person 1 is
    # missed in frames 13..17 (a 5-frame gap that would be filled without the cut).
    faces, truth = scene(24, TWO, hide={1: range(13, 18)})
    tracker = FaceTracker(0.0, max_gap=8)
    out = run_tracker(tracker, faces, [5], cut_clip)
    assert tracker.cuts == [16]
    assert out.interpolated is not None and not out.interpolated.any()
    ids = out.track_id
    before, after = ids[out.frame_index < 16], ids[out.frame_index >= 16]
    assert before.unique().tolist() == [0, 1] and after.unique().tolist() == [2, 3]
    assert out.counts()[13:18] == [1] * 5
    # the same faces without cut detection: one track per person through the whole clip, the gap filled
    out = run_tracker(FaceTracker(0.0, max_gap=8, cut_threshold=None), faces, [5], cut_clip)
    assert out.track_id.unique().tolist() == [0, 1] and int(out.interpolated.sum()) == 5


def test_tracker_chunk_borders_do_not_matter(cut_clip):
    faces, _ = scene(24, TWO, hide={0: range(3, 6), 1: range(9, 13)}, jitter=1.5)
    whole = run_tracker(FaceTracker(0.5), faces, [24], cut_clip)
    assert whole.track_id is not None and whole.interpolated is not None and whole.interpolated.any()
    for chunks in ([1], [3, 1, 7, 2, 5], [10, 14], [2, 9]):
        part = run_tracker(FaceTracker(0.5), faces, chunks, cut_clip)
        assert torch.equal(part.frame_index, whole.frame_index), chunks
        assert torch.equal(part.track_id, whole.track_id) and torch.equal(part.interpolated, whole.interpolated)
        assert torch.equal(part.boxes, whole.boxes) and torch.equal(part.scores, whole.scores)
        assert torch.allclose(part.points, whole.points, atol=1e-5)
        assert part.frame_sizes == whole.frame_sizes


def test_tracker_pop_releases_frames_in_order_after_the_lookahead():
    faces, _ = scene(30, TWO, hide={1: range(10, 15)})
    faces = faces.replace(frame_sizes=[(100 + t, 200) for t in range(30)])   # frame t told by its size
    tracker = FaceTracker(0.0, max_gap=6, cut_threshold=None)
    assert tracker.lookahead == 6
    released: list[tuple[int, int]] = []
    for t in range(30):
        tracker.push(faces.for_frame(t))
        ready = tracker.pop()
        released += ready.frame_sizes
        assert len(released) == max(0, t + 1 - 6)                      # never before 6 later frames were pushed
        assert tracker.pending == t + 1 - len(released)
        assert len(ready) == sum(ready.counts()) and (ready.frame_index < ready.num_frames).all()
    last = tracker.pop(final=True)
    released += last.frame_sizes
    assert released == [(100 + t, 200) for t in range(30)]            # every frame once, in order
    assert tracker.pop(final=True).num_frames == 0 and tracker.pop().num_frames == 0
    # without gap filling nothing is held back: each frame is released when pushed, the id kept over the gap
    tracker = FaceTracker(0.0, max_gap=6, cut_threshold=None, fill_gaps=False)
    assert tracker.lookahead == 0
    outs = []
    for t in range(30):
        tracker.push(faces.for_frame(t))
        outs.append(tracker.pop())
        assert outs[-1].num_frames == 1
    out = DetectedFaces.concat(outs)
    assert out.track_id.unique().tolist() == [0, 1] and not out.interpolated.any()
    assert out.counts()[10:15] == [1] * 5


def test_tracker_smooths_points_with_the_landmark_filter():
    truth, raw = jittered_track(0.0, frames=40)
    faces = one_face_per_frame(raw)
    smoothed = run_tracker(FaceTracker(0.5, cut_threshold=None), faces, [7])
    assert jitter(smoothed.points, truth) < 0.6 * jitter(raw, truth)
    # the same One-Euro filter as LandmarkSmoother (one track, no gap: the same points)
    assert torch.allclose(smoothed.points, LandmarkSmoother(0.5)(faces).points, atol=1e-5)
    off = run_tracker(FaceTracker(0.0, cut_threshold=None), faces, [7])
    assert torch.equal(off.points, raw)


def test_tracker_ids_are_never_reused():
    faces, _ = scene(12, {0: (20.0, 40.0, 0.0)}, hide={0: range(3, 6)})
    tracker = FaceTracker(0.0, max_gap=1, cut_threshold=None)
    first = run_tracker(tracker, faces, [4])                         # the gap ends track 0; track 1 after it
    assert first.track_id.tolist() == [0] * 3 + [1] * 6
    again = run_tracker(tracker, faces, [4])                         # after pop(final=True): new tracks
    assert again.track_id.min() > 1
    tracker.reset()
    assert run_tracker(tracker, faces, [4]).track_id.min() > int(again.track_id.max())
    assert tracker.cuts == []


def test_tracker_output_device_and_empty_frames():
    tracker = FaceTracker(0.5, max_gap=2, cut_threshold=None)
    tracker.push(DetectedFaces.empty([SIZE] * 3))
    assert tracker.pop().num_frames == 1
    out = tracker.pop(final=True)
    assert out.num_frames == 2 and len(out) == 0 and out.track_id is not None and out.interpolated is not None


def test_tracker_refuses_bad_input():
    faces, _ = scene(4, TWO)
    with pytest.raises(InputError, match="DetectedFaces"):
        FaceTracker().push(torch.zeros(4, 3, *SIZE))
    with pytest.raises(InputError, match="frames are needed"):
        FaceTracker().push(faces)
    with pytest.raises(InputError, match="4 frame"):
        FaceTracker().push(faces, torch.zeros(3, 3, *SIZE))
    with pytest.raises(InputError, match="size"):
        FaceTracker().push(faces, torch.zeros(4, 3, 64, 64))
    with pytest.raises(InputError, match="NaN"):
        FaceTracker(cut_threshold=None).push(faces.replace(boxes=faces.boxes * float("nan")))
    for kwargs, what in (({"max_gap": -1}, "track gap"), ({"max_gap": 2.5}, "track gap"),
                         ({"smoothing": 2.0}, "smoothing strength"), ({"cut_threshold": 0.0}, "cut threshold"),
                         ({"cut_threshold": 1.5}, "cut threshold"), ({"iou_threshold": 0.0}, "iou_threshold"),
                         ({"fill_gaps": "yes"}, "fill_gaps")):
        with pytest.raises(InputError, match=what):
            FaceTracker(**kwargs)


# ----------------------------------------------------------------------------- DetectedFaces.interpolated, preview
def test_interpolated_is_kept_by_every_method_and_written_to_json():
    faces, _ = scene(4, TWO, hide={1: [2]})
    n = len(faces)
    flags = torch.tensor([False, True] * (n // 2) + [False] * (n % 2))
    tracked = faces.replace(track_id=torch.arange(n) + 10, interpolated=flags)
    assert torch.equal(tracked.select(torch.arange(n) >= 2).interpolated, flags[2:])
    assert torch.equal(tracked.to("cpu").interpolated, flags)
    part = tracked.frames(1, 3)
    keep = (faces.frame_index >= 1) & (faces.frame_index < 3)
    assert torch.equal(part.interpolated, flags[keep]) and torch.equal(part.track_id, tracked.track_id[keep])
    assert torch.equal(tracked.for_frame(3).interpolated, flags[faces.frame_index == 3])
    joined = DetectedFaces.concat([tracked, faces])                 # an item without the flag: detected faces
    assert torch.equal(joined.interpolated, torch.cat([flags, torch.zeros(n, dtype=torch.bool)]))
    assert DetectedFaces.concat([faces, faces]).interpolated is None
    js = tracked.to_json()
    assert [[(it["track"], it["filled"]) for it in frame] for frame in js][0] == [(10, False), (11, True)]
    assert "track" not in faces.to_json()[0][0] and "filled" not in faces.to_json()[0][0]
    with pytest.raises(ValueError, match="interpolated"):
        faces.replace(interpolated=torch.zeros(n + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="interpolated"):
        faces.replace(interpolated=torch.zeros(n))


def test_preview_labels_show_track_ids_and_filled_faces():
    from simswap_core.detection.draw import draw_faces, face_label

    assert face_label(1, 0.97) == "1 0.97"
    assert face_label(1, 0.97, track=3) == "1 #3 0.97"
    assert face_label(0, 0.5, track=3, filled=True) == "0 #3 filled"
    assert face_label(0, 0.5, track=-1, show_score=False) == "0"
    faces, _ = scene(1, {0: (100.0, 60.0, 0.0)})
    frames = torch.full((1, 3, *SIZE), 0.5)
    plain = draw_faces(frames, faces)
    a = draw_faces(frames, faces.replace(track_id=torch.tensor([3])))
    b = draw_faces(frames, faces.replace(track_id=torch.tensor([7])))
    c = draw_faces(frames, faces.replace(track_id=torch.tensor([7]), interpolated=torch.tensor([True])))
    assert not torch.equal(a, plain) and not torch.equal(a, b) and not torch.equal(b, c)


def test_tracker_on_real_frames_with_the_real_detector():
    """tests/video_fixtures.py clip (two people of t1.jpg), YuNet: person 1 covered in frames 5..9 and a cut at
    frame 16. Ids are stable through the 5-frame gap, the gap is filled near the true boxes, new ids after the
    cut."""
    from video_fixtures import clip_frames, clip_info

    from simswap_core.detection import load_detector

    hide, n = {1: range(5, 10)}, 24
    frames = clip_frames(frames=n, size=(SIZE[1], SIZE[0]), hide=hide, cut_at=16)
    info = clip_info(frames=n, size=(SIZE[1], SIZE[0]), hide=hide, cut_at=16)
    detected = load_detector("yunet").detect(frames)
    assert detected.counts()[5:10] == [1] * 5                       # the detector misses the covered face
    tracker = FaceTracker(0.5)
    out = run_tracker(tracker, detected, [7], frames)
    assert tracker.cuts == [16] and out.counts() == [2] * n
    p1 = person_faces(out, info.boxes, 1)
    assert out.track_id[p1[out.frame_index[p1] < 16]].unique().numel() == 1
    assert out.track_id[p1[out.frame_index[p1] >= 16]].unique().numel() == 1
    before, after = out.track_id[out.frame_index < 16].tolist(), out.track_id[out.frame_index >= 16].tolist()
    assert not set(before) & set(after)
    filled = out.interpolated.nonzero().flatten()
    assert out.frame_index[filled].tolist() == list(range(5, 10)) and set(filled.tolist()) <= set(p1.tolist())
    centre = (out.boxes[filled, :2] + out.boxes[filled, 2:]) / 2
    true_centre = (info.boxes[5:10, 1, :2] + info.boxes[5:10, 1, 2:]) / 2
    assert (centre - true_centre).abs().max() < 6.0


def test_tracker_never_fills_over_a_face_already_in_the_frame():
    """Frame 3: the face is detected 25 px off (IoU 0.41, below the tracker's 0.5: a new track starts there);
    frame 4: found again where it was (its first track continues). The gap frame already has a face at that place,
    so no filled face is added on top of it (it would be swapped twice)."""
    xs = [100.0, 100.0, 100.0, 125.0, 100.0, 100.0]
    boxes = torch.tensor([[x, 50.0, x + 60, 110.0] for x in xs])
    points = (BASE - BASE.mean(0))[None] * 0.45 + boxes[:, None, :2] + 30
    faces = DetectedFaces(boxes, points, torch.ones(6), torch.arange(6), [SIZE] * 6)
    out = run_tracker(FaceTracker(0.0, iou_threshold=0.5, cut_threshold=None), faces, [6])
    assert out.track_id.tolist() == [0, 0, 0, 1, 0, 0]
    assert out.counts() == [1] * 6 and not out.interpolated.any()
    # with the offset face far away, the gap is filled as usual
    far = faces.replace(boxes=faces.boxes.clone(), points=faces.points.clone())
    far.boxes[3, [0, 2]] += 100
    far.points[3, :, 0] += 100
    out = run_tracker(FaceTracker(0.0, iou_threshold=0.5, cut_threshold=None), far, [6])
    assert out.counts() == [1, 1, 1, 2, 1, 1] and out.interpolated.tolist() == [False] * 4 + [True] + [False] * 2
