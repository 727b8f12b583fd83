"""TemporalState: per-track smoothing of crop masks and of the colour correction over video frames.

Most tests use small synthetic tensors (no models); one swaps a few real frames with the crop-64 seeded generator
(``fast_swapper``) to check that the colour filter calms a jittered face's colour in the pasted frames.
"""
from __future__ import annotations

import pytest
import torch

from simswap_core.color import ColorStats, match_color
from simswap_core.errors import InputError
from simswap_core.paste import paste_faces
from simswap_core.temporal import TemporalState, smoothing_keep

S = 16


def _masks(values: list[float]) -> torch.Tensor:
    """[F,1,S,S] masks, face k filled with values[k] (plus a fixed ramp so they are not constant)."""
    ramp = torch.linspace(0, 0.1, S).view(1, 1, 1, S)
    return (torch.tensor(values).view(-1, 1, 1, 1) * 0.9 + ramp).clamp(0, 1).expand(-1, 1, S, S).contiguous()


def _ids(*v: int) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.int64)


def test_keep_mapping_matches_landmark_smoother():
    from simswap_core.tracking import LandmarkSmoother, _alpha

    assert smoothing_keep(0.0) == 0.0
    for s in (0.25, 0.5, 1.0):
        assert smoothing_keep(s) == pytest.approx(1 - _alpha(LandmarkSmoother(s).min_cutoff))
    assert smoothing_keep(0.5) == pytest.approx(0.64, abs=0.01)
    assert 0.9 < smoothing_keep(1.0) < 0.92


def test_mask_jump_is_smoothed_and_first_frame_unchanged():
    st = TemporalState(0.5, 0.5)
    k = smoothing_keep(0.5)
    m = _masks([0.1, 0.9, 0.9])
    out = st.smooth_masks(_ids(7, 7, 7), _ids(0, 1, 2), m)
    assert out is not None and out.shape == m.shape and out.dtype == m.dtype
    assert torch.equal(out[0], m[0])                                      # first frame of the track: as given
    want1 = k * m[0] + (1 - k) * m[1]
    torch.testing.assert_close(out[1], want1)
    torch.testing.assert_close(out[2], k * want1 + (1 - k) * m[2])
    assert (out[1] - m[0]).abs().mean() < (m[1] - m[0]).abs().mean() * 0.5  # the jump is damped
    # heavier smoothing damps more
    out_hi = TemporalState(1.0, 0.0).smooth_masks(_ids(7, 7), _ids(0, 1), m[:2])
    assert out_hi is not None
    assert (out_hi[1] - m[0]).abs().mean() < (out[1] - m[0]).abs().mean()


def test_untracked_faces_off_and_none_are_unchanged():
    st = TemporalState(0.8, 0.8)
    m = _masks([0.1, 0.9, 0.2, 0.8])
    out = st.smooth_masks(_ids(-1, -1, -1, -1), _ids(0, 1, 2, 3), m)
    assert out is not None and torch.equal(out, m)
    mixed = st.smooth_masks(_ids(3, -1, 3, -1), _ids(0, 1, 2, 3), m)
    assert mixed is not None
    assert torch.equal(mixed[1], m[1]) and torch.equal(mixed[3], m[3]) and torch.equal(mixed[0], m[0])
    assert not torch.equal(mixed[2], m[2])                                 # track 3 is smoothed across the -1s
    assert st.smooth_masks(_ids(1), _ids(0), None) is None
    one = m[:1]
    assert st.smooth_masks(None, _ids(0), one) is one
    off = TemporalState(0.0, 0.0)
    assert torch.equal(off.smooth_masks(_ids(1, 1), _ids(0, 1), m[:2]), m[:2])
    assert off.color_filter(_ids(1, 1), _ids(0, 1)) is None
    assert st.color_filter(None, _ids(0)) is None
    assert off.live_tracks == {"mask": 0, "color": 0}


def test_two_tracks_do_not_mix():
    st = TemporalState(1.0, 1.0)
    # two faces per frame over 4 frames: track 0 always 0.1, track 1 always 0.9 (order within a frame varies)
    tid = _ids(0, 1, 1, 0, 0, 1, 1, 0)
    fidx = _ids(0, 0, 1, 1, 2, 2, 3, 3)
    m = _masks([0.1 if t == 0 else 0.9 for t in tid.tolist()])
    out = st.smooth_masks(tid, fidx, m)
    assert out is not None
    torch.testing.assert_close(out, m)                 # each track is constant: its EMA is its own value
    assert st.live_tracks["mask"] == 2


def test_state_of_ended_tracks_is_dropped():
    st = TemporalState(0.5, 0.5, forget_after=3)
    st.track_slots[4] = 1
    st.smooth_masks(_ids(4, 5), _ids(0, 0), _masks([0.2, 0.3]))
    assert st.live_tracks["mask"] == 2
    for _ in range(2):                                   # track 4 goes on, track 5 is gone
        st.smooth_masks(_ids(4), _ids(0), _masks([0.2]))
    assert st.live_tracks["mask"] == 2                   # 2 frames unseen: still held
    st.smooth_masks(_ids(4), _ids(0), _masks([0.2]))
    assert st.live_tracks["mask"] == 1                   # 3 = forget_after frames unseen: dropped
    assert st._masks.ids is not None and st._masks.ids.tolist() == [4]
    # a long stream of short tracks keeps only the live ones
    for i in range(40):
        st.smooth_masks(_ids(100 + i, 4), _ids(0, 0), _masks([0.5, 0.2]))
    assert st.live_tracks["mask"] <= 3 + 2
    st.reset()
    assert st.live_tracks == {"mask": 0, "color": 0} and st.track_slots == {}


def test_a_track_back_after_forget_after_starts_afresh():
    st = TemporalState(0.9, 0.9, forget_after=2)
    m = _masks([0.1, 0.5, 0.5, 0.9])
    out = st.smooth_masks(_ids(1, 2, 2, 1), _ids(0, 1, 2, 3), m)
    assert out is not None and torch.equal(out[3], m[3])         # 2 = forget_after frames unseen: a new start


def _random_stream(frames: int = 12, seed: int = 0):
    """Faces of a stream in frame order: track 0 in every frame, track 1 in frames 2-8, an untracked face in
    odd frames, frames 5 and 10 without faces; masks random."""
    g = torch.Generator().manual_seed(seed)
    tid, fidx = [], []
    for f in range(frames):
        if f in (5, 10):
            continue
        for t in (0, 1, -1):
            if (t == 1 and not 2 <= f <= 8) or (t == -1 and f % 2 == 0):
                continue
            tid.append(t)
            fidx.append(f)
    n = len(tid)
    return _ids(*tid), _ids(*fidx), torch.rand(n, 1, S, S, generator=g), torch.rand(n, 3, S, S, generator=g) * 0.6


@pytest.mark.parametrize("cuts", [[4], [1, 6, 7, 11], [5], [5, 6, 10, 11]])
def test_chunked_calls_give_the_same_result_as_one_call(cuts):
    tid, fidx, masks, faces = _random_stream()
    targets = faces.flip(2) * 0.5 + 0.3
    one = TemporalState(0.6, 0.6)
    whole_m = one.smooth_masks(tid, fidx, masks)
    whole_c = match_color(faces, targets, masks, stats_filter=one.color_filter(tid, fidx))
    st = TemporalState(0.6, 0.6)
    parts_m, parts_c = [], []
    bounds = [0, *cuts, 12]
    for a, b in zip(bounds[:-1], bounds[1:]):            # chunks of frames [a, b): frame_index local to the chunk
        sel = (fidx >= a) & (fidx < b)
        lt, lf = tid[sel], fidx[sel] - a
        parts_m.append(st.smooth_masks(lt, lf, masks[sel]))
        parts_c.append(match_color(faces[sel], targets[sel], masks[sel], stats_filter=st.color_filter(lt, lf)))
    assert torch.equal(torch.cat(parts_m), whole_m)
    assert torch.equal(torch.cat(parts_c), whole_c)
    assert not torch.equal(whole_m, masks)


def test_match_color_with_a_pass_through_filter_is_bit_identical():
    g = torch.Generator().manual_seed(3)
    src, tgt = torch.rand(3, 3, S, S, generator=g), torch.rand(3, 3, S, S, generator=g) * 0.5
    w = torch.rand(3, 1, S, S, generator=g)
    seen = []

    def identity(stats: ColorStats) -> ColorStats:
        seen.append(stats)
        return stats

    assert torch.equal(match_color(src, tgt, w, stats_filter=identity), match_color(src, tgt, w))
    assert seen and seen[0].target_mean.shape == (3, 3) and seen[0].source_std.shape == (3, 3)
    with pytest.raises(InputError, match="stats_filter"):
        match_color(src, tgt, w, stats_filter=lambda s: None)
    with pytest.raises(InputError, match="stats_filter"):
        match_color(src, tgt, w, stats_filter="smooth")


def test_color_jump_is_smoothed_per_track():
    """Target crops whose colour jumps at frame 2 (two tracks, opposite jumps): the corrected faces follow the
    jump gradually, each towards its own target; the first frame is the plain transfer."""
    g = torch.Generator().manual_seed(5)
    n = 6
    src = (torch.rand(2 * n, 3, S, S, generator=g) * 0.3 + 0.35)
    grey = torch.full((3, S, S), 0.45)
    red = grey + torch.tensor([0.35, -0.1, -0.1]).view(3, 1, 1)
    tgt = torch.stack([(red if (f >= 2) == (t == 0) else grey) for f in range(n) for t in (0, 1)])
    tgt = (tgt + torch.rand(tgt.shape, generator=g) * 0.05).clamp(0, 1)
    tid, fidx = _ids(*[t for _ in range(n) for t in (0, 1)]), _ids(*[f for f in range(n) for _ in (0, 1)])
    plain = match_color(src, tgt)
    st = TemporalState(0.0, 0.5)
    smooth = match_color(src, tgt, stats_filter=st.color_filter(tid, fidx))
    assert torch.equal(smooth[:2], plain[:2])                     # first frame of each track: the plain transfer
    red0 = smooth[0::2, 0].mean((1, 2))                           # track 0's red over the frames
    red1 = smooth[1::2, 0].mean((1, 2))
    plain0 = plain[0::2, 0].mean((1, 2))
    step_plain = (plain0[2] - plain0[1]).item()
    assert step_plain > 0.15
    assert 0.2 * step_plain < (red0[2] - red0[1]).item() < 0.6 * step_plain      # the jump is spread out
    assert (red0[3] - red0[2]).item() > 0                                     # and still goes on
    assert abs((red0[5] - plain0[5]).item()) < 0.35 * step_plain             # converging to the new colour
    assert (red1[2] - red1[1]).item() < 0 and abs((red1[2] - red1[1]).item()) < 0.6 * step_plain
    assert st.live_tracks["color"] == 2 and st.live_tracks["mask"] == 0
    with pytest.raises(InputError, match="color_filter"):
        match_color(src[:3], tgt[:3], stats_filter=st.color_filter(tid, fidx))


def test_bad_inputs_name_what_is_wrong():
    st = TemporalState()
    m = _masks([0.5, 0.5])
    with pytest.raises(InputError, match="frame_index must be >= 0 and non-decreasing"):
        st.smooth_masks(_ids(0, 1), _ids(1, 0), m)
    with pytest.raises(InputError, match="track_id must be an integer tensor"):
        st.smooth_masks(torch.zeros(2), _ids(0, 1), m)
    with pytest.raises(InputError, match="2 track ids for 3 masks"):
        st.smooth_masks(_ids(0, 1), _ids(0, 1), _masks([0.5, 0.5, 0.5]))
    with pytest.raises(InputError, match="masks"):
        st.smooth_masks(_ids(0, 1), _ids(0, 1), torch.rand(2, 3, S, S))
    with pytest.raises(InputError, match="blend_smoothing"):
        TemporalState(1.5)
    with pytest.raises(InputError, match="forget_after"):
        TemporalState(forget_after=0)


def _jittered_still(swapper, astronaut: torch.Tensor, n: int, seed: int = 11):
    """(frames [n,3,256,256], faces): the astronaut, the same picture n times, its detection with 2 px Gaussian
    noise on the landmarks per frame (a still face seen by a jittery detector)."""
    from simswap_core.faces import DetectedFaces

    frame = torch.nn.functional.interpolate(astronaut, size=(256, 256), mode="bilinear", align_corners=False)
    base = swapper.detect(frame)
    assert len(base) == 1
    g = torch.Generator().manual_seed(seed)
    faces = DetectedFaces.concat([base.replace(points=base.points + torch.randn(base.points.shape, generator=g) * 2.0)
                                  for _ in range(n)])
    return frame.expand(n, -1, -1, -1).contiguous(), faces.replace(frame_index=torch.arange(n))


def test_mask_and_colour_smoothing_calm_a_pumping_mask_in_pasted_frames(fast_swapper, astronaut):
    """A still face with jittered landmarks, swapped with the crop-64 generator (6 faces), whose crop mask takes in
    the hair in every other frame (a parser that flips): the plain colour match then pulses the whole face's
    colour. With the TemporalState the face's colour, its pixels and the blend mask change less per frame."""
    from simswap_core.masks import build_crop_masks

    n = 6
    frames, faces = _jittered_still(fast_swapper, astronaut, n)
    tid, fidx = torch.zeros(n, dtype=torch.int64), faces.frame_index
    g = torch.Generator().manual_seed(12)
    aligned = fast_swapper.align(frames, faces)
    latent = torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=1)
    with torch.inference_mode():
        swapped = fast_swapper.generator(aligned.crops, latent.expand(n, -1)).float()
    masks = build_crop_masks(aligned, "ellipse")
    masks[1::2, :, : masks.shape[-1] // 4] = 1.0                       # the hair band in frames 1, 3, 5
    plain, m = paste_faces(frames, swapped, aligned, masks, color_match=True)
    st = TemporalState(0.0, 0.5)                                        # colour only
    colour, m2 = paste_faces(frames, swapped, aligned, masks, color_match=True,
                             color_filter=st.color_filter(tid, fidx))
    assert torch.equal(m, m2) and torch.equal(colour[0], plain[0])
    both_state = TemporalState(0.5, 0.5)
    smooth_masks = both_state.smooth_masks(tid, fidx, masks)
    assert smooth_masks is not None
    both, m3 = paste_faces(frames, swapped, aligned, smooth_masks, color_match=True,
                           color_filter=both_state.color_filter(tid, fidx))
    region = (m[:, 0] > 0.9).all(0)                                   # the face, inside every frame's mask
    assert region.sum() > 200

    def colour_flicker(x: torch.Tensor) -> float:
        """Mean frame-to-frame change of the face region's mean colour."""
        means = x[:, :, region].mean(2)
        return (means[1:] - means[:-1]).abs().mean().item()

    def flicker(x: torch.Tensor) -> float:
        return (x[1:] - x[:-1]).abs()[:, :, region].mean().item()

    print(f"colour flicker: plain {colour_flicker(plain):.5f}, colour smoothed {colour_flicker(colour):.5f}, "
          f"both {colour_flicker(both):.5f}; pixels {flicker(plain):.4f} / {flicker(colour):.4f} / "
          f"{flicker(both):.4f}")
    assert colour_flicker(colour) < 0.6 * colour_flicker(plain)
    assert colour_flicker(both) < 0.6 * colour_flicker(plain)
    assert flicker(colour) < flicker(plain) and flicker(both) < flicker(plain)
    assert (m3[1:] - m3[:-1]).abs().mean() < 0.7 * (m[1:] - m[:-1]).abs().mean()     # the edge pumps less


def test_swap_with_a_temporal_state(fast_swapper, pl_identity, astronaut):
    """FaceSwapper.swap(..., temporal=) uses the hooks on tracked faces: the first frame is as without it, later
    frames differ, the state holds the one track, and chunks of 2 frames give what one call gives (12 faces)."""
    from simswap_core.masks import MaskSpec
    from simswap_core.tracking import LandmarkSmoother

    frames, faces = _jittered_still(fast_swapper, astronaut, 4)
    kw = {"faces": faces, "select": "all", "mask": MaskSpec("ellipse"), "color_match": True}
    plain = fast_swapper.swap(frames, pl_identity, smoothing=LandmarkSmoother(0.5), batch_size=4, **kw)
    st = TemporalState(0.5, 0.5)
    chunked = fast_swapper.swap(frames, pl_identity, smoothing=LandmarkSmoother(0.5), temporal=st, batch_size=2, **kw)
    assert plain.faces.track_id is not None and plain.faces.track_id.tolist() == [0, 0, 0, 0]
    assert torch.equal(chunked.images[0], plain.images[0])
    assert not torch.equal(chunked.images[1:], plain.images[1:])
    assert st.live_tracks == {"mask": 1, "color": 1}
    one = fast_swapper.swap(frames, pl_identity, smoothing=LandmarkSmoother(0.5), temporal=TemporalState(0.5, 0.5),
                            batch_size=4, **kw)
    torch.testing.assert_close(chunked.images, one.images, atol=1e-5, rtol=0)


def test_bench_flicker_smoke(fast_generator_path, pl_weights, tmp_path):
    """bench/bench_flicker.py end to end on a tiny configuration (3 frames, the crop-64 generator, ellipse mask):
    the three configurations are swapped and measured (no figure is asserted beyond being measured)."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "bench_flicker.py"
    spec = importlib.util.spec_from_file_location("bench_flicker_smoke", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "flicker.json"
    res = mod.main(["--generator", str(fast_generator_path), "--arcface", str(pl_weights["arcface"]),
                    "--frames", "3", "--mask", "ellipse", "--batch-size", "2", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "flicker" and set(saved["results"]) == {"a", "b", "c"}
    for r in res["results"].values():
        assert r["faces"] == 3 and r["flicker"] > 0 and r["mask"] >= 0
    assert res["original"]["flicker"] > 0
    assert res["results"]["c"]["tracks_held"] == {"mask": 1, "color": 1}
