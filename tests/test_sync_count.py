"""Issue 13 item 2: the per-frame path makes a small CONSTANT number of device -> host syncs per chunk, whatever
the number of faces.

The frames are the same in every case (t1.jpg, 6 faces, and its mirror image); only the faces given to ``swap``
(or left visible to the detector) change: 1, 3 or 6 per frame. ``tests/sync_counter.py`` counts the operations
that synchronise on a GPU (``.item()``, ``.tolist()``, ``.cpu()``, ``nonzero``, bool indexing, ``bincount``, ...)
on the CPU. Each case asserts the count is the same for 1, 3 and 6 faces and below a stated bound; the first
tests check the counter itself, and that a per-face ``.item()`` put back into a stage makes the check fail.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sync_counter import SyncCounter

from simswap_core.faces import DetectedFaces
from simswap_core.io.frames import TensorSink, TensorSource
from simswap_core.mapping import IdentityMap, MapEntry
from simswap_core.run import run
from simswap_core.swap import FaceSwapper
from simswap_core.temporal import TemporalState
from simswap_core.tracking import FaceTracker

FACES = (1, 3, 6)
# Bounds on the syncs of one swap() call with given faces (one chunk): the argument checks (frames, identity,
# faces, masks: one value-range read each), the selection's index list, the per-frame face counts, the paste's
# ROI table. Measured 10-16 (before issue 13: 31 / 55 / 91 for 1 / 3 / 6 faces per frame); the bound leaves room
# for a few more checks, not for a loop over faces.
SWAP_BOUND = 24
# run() over 4 frames in 2 chunks with the tracker, identity map and temporal smoothing (the map and the temporal
# EMA keep a few syncs per frame, not per face). Measured 82.
RUN_BOUND = 100


# ------------------------------------------------------------------------------------------ the counter itself

def test_counter_counts_each_kind_once():
    x = torch.arange(6.0)
    mask = x > 2
    with SyncCounter() as sc:
        x.sum().item()                                   # one sync, not two (item -> _local_scalar_dense)
        x.tolist()
        x.cpu()
        bool(x[0] > 0)
        float(x[1])
        torch.nonzero(x)
        x[mask]                                          # bool index: a nonzero inside
        torch.bincount(x.long())
        torch.unique(x)
        torch.masked_select(x, mask)
        torch.repeat_interleave(x[:2].long())             # output size from the values
        np.asarray(x)
    kinds = sc.by_kind()
    assert sc.count == 12, sc.report()
    assert kinds["item"] == 1 and kinds["tolist"] == 1 and kinds["cpu"] == 1 and kinds["bool"] == 1, kinds
    assert kinds["aten.nonzero"] == 1 and kinds["aten.bool_index"] == 1 and kinds["aten.bincount"] == 1, kinds
    assert {"float", "aten._unique2", "aten.masked_select", "aten.repeat_interleave", "array"} <= set(kinds), kinds


def test_counter_follows_host_data():
    """Work on data fetched once with .cpu(), or made on the host, is free (as on a GPU machine); data moved with
    .to(device) is device data again."""
    x = torch.arange(6.0)
    with SyncCounter() as sc:
        host = x.cpu()                                    # the one transfer
        host.tolist(), bool(host[0] > 0), host[host > 2], torch.bincount(host.long())
        made = torch.zeros(3, dtype=torch.int64)          # a factory without a device: host
        made[torch.tensor([1])] = 5
        made.tolist()
        assert sc.count == 1, sc.report()
        moved = made.to(x.device)                          # back to the compute device
        moved.tolist()
        torch.zeros(2, device=x.device).tolist()           # a factory given the device
    assert sc.count == 3, sc.report()
    assert sc.by_kind() == {"cpu": 1, "tolist": 2}


def test_counter_ignores_device_side_work():
    x = torch.rand(4, 3, 16, 16)
    idx = torch.tensor([2, 0])
    with SyncCounter() as sc:
        y = torch.nn.functional.avg_pool2d(x, 2) * 2 + 1
        y = y[idx]                                        # integer index: no sync
        torch.where(y > 1, y, 0)                          # 3-argument where: no sync
        torch.repeat_interleave(idx, torch.tensor([1, 1]), output_size=2)
        torch.zeros(3).scatter_add_(0, torch.tensor([0, 2]), torch.ones(2))
        x.shape[0] + len(x)                               # shapes are host metadata
    assert sc.count == 0, sc.report()


def assert_constant(counts: dict[int, int], bound: int, what: str) -> None:
    """The sync counts for 1, 3, 6 faces are all equal and within ``bound`` (printed: pytest -s shows them)."""
    print(f"syncs {what}: {counts} (bound {bound})")
    assert len(set(counts.values())) == 1, f"{what}: syncs depend on the number of faces: {counts}"
    assert max(counts.values()) <= bound, f"{what}: {counts} syncs, more than the bound {bound}"


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def frames(t1) -> torch.Tensor:
    """t1.jpg and its mirror image: 2 frames of 6 faces each."""
    return torch.cat([t1, t1.flip(-1)])


@pytest.fixture(scope="module")
def detected(fast_swapper, frames) -> DetectedFaces:
    faces = fast_swapper.detect(frames)
    assert faces.counts() == [6, 6]
    return faces


def first_faces(faces: DetectedFaces, n: int) -> DetectedFaces:
    """The first ``n`` faces of every frame."""
    keep = torch.cat([torch.nonzero(faces.frame_index == f).flatten()[:n] for f in range(faces.num_frames)])
    return faces.select(keep)


def swap_counts(swapper: FaceSwapper, frames: torch.Tensor, detected: DetectedFaces, identity, **options
                ) -> dict[int, int]:
    counts = {}
    for n in FACES:
        faces = first_faces(detected, n)
        with SyncCounter() as sc:
            result = swapper.swap(frames, identity, faces=faces, **options)
        assert len(result.faces) == n * frames.shape[0]
        counts[n] = sc.count
    return counts


# ------------------------------------------------------------------------------------------ the swap path

@pytest.mark.parametrize("options", [
    {},
    {"paste_mode": "official"},
    {"mask": "box", "color_match": True},
    {"mask": "ellipse", "paste_mode": "official", "color_match": True},
    {"identity_strength": 0.5},
], ids=["default", "official", "box+colour", "ellipse+official+colour", "strength"])
def test_swap_syncs_do_not_depend_on_faces(fast_swapper, frames, detected, pl_identity, options):
    assert_constant(swap_counts(fast_swapper, frames, detected, pl_identity, **options), SWAP_BOUND, str(options))


@pytest.mark.slow
def test_parsing_masks_syncs_do_not_depend_on_faces(fast_swapper, frames, detected, pl_identity, tmp_path):
    """The parsing mask (default paste) and SimSwap's own parsing paste (official mode), on one frame."""
    from test_parsing import write_seeded_bisenet

    from simswap_core.models.loaders import load_parser

    parser = load_parser(write_seeded_bisenet(tmp_path / "79999_iter.pth"))
    swapper = FaceSwapper(fast_swapper.generator, fast_swapper.arcface, fast_swapper.detector, parser=parser,
                          device="cpu")
    one = detected.frames(0, 1)
    for options in ({"mask": "parsing"}, {"mask": "parsing", "paste_mode": "official"}):
        assert_constant(swap_counts(swapper, frames[:1], one, pl_identity, **options), SWAP_BOUND, str(options))


def test_identity_map_syncs_do_not_depend_on_faces(fast_swapper, frames, detected, pl_identity):
    imap = IdentityMap().add(MapEntry(pl_identity, "index", index=0)).add(MapEntry(pl_identity, "index", index=1))
    counts = {}
    for n in FACES:
        with SyncCounter() as sc:
            fast_swapper.swap(frames, None, faces=first_faces(detected, n), identity_map=imap, mask="ellipse")
        counts[n] = sc.count
    assert_constant({1: counts[3], 3: counts[3], 6: counts[6]}, SWAP_BOUND, "identity map")
    assert counts[1] <= SWAP_BOUND, counts        # with one face the map's second entry has nothing to take


def test_run_with_tracker_syncs_do_not_depend_on_faces(fast_swapper, t1, pl_identity):
    """run() with FaceTracker, an identity map mapping every face by index, temporal smoothing, colour match."""
    clip = torch.cat([t1] * 4)
    detected = fast_swapper.detect(clip)
    imap = IdentityMap()
    for k in range(max(FACES)):                      # the same settings every time: one entry per face number
        imap = imap.add(MapEntry(pl_identity, "index", index=k))
    counts = {}
    for n in FACES:
        faces = first_faces(detected, n)
        with SyncCounter() as sc:
            tracker = FaceTracker(0.5)          # made here: its host state is known to the counter as host data
            summary = run(TensorSource(clip), fast_swapper, TensorSink(), None, batch_size=2, prefetch=0,
                          faces=faces, tracker=tracker, identity_map=imap, temporal=TemporalState(),
                          mask="ellipse", color_match=True)
        assert summary.faces_swapped == 4 * n and summary.tracks == n
        counts[n] = sc.count
    assert_constant(counts, RUN_BOUND, "run with tracker")


# ------------------------------------------------------------------------------------------ the check can fail

def test_a_per_face_item_is_caught(fast_swapper, frames, detected, pl_identity, monkeypatch):
    """Putting a per-face ``.item()`` back into a stage (here: the latents) makes the constant-count check fail."""
    latents = FaceSwapper.latents

    def per_face_latents(self, aligned, latent, slots, opts):
        out = latents(self, aligned, latent, slots, opts)
        for row in out:
            if row.norm().item() <= 0:       # a per-face host read, as an old face loop would do
                raise AssertionError("unreachable")
        return out

    monkeypatch.setattr(FaceSwapper, "latents", per_face_latents)
    counts = swap_counts(fast_swapper, frames, detected, pl_identity)
    with pytest.raises(AssertionError, match="depend on the number of faces"):
        assert_constant(counts, SWAP_BOUND, "patched")
    assert counts[6] - counts[1] == 2 * (6 - 1)             # one more sync per face, 2 frames


def blank_faces(frame: torch.Tensor, faces: DetectedFaces, keep: int) -> torch.Tensor:
    """frame [1,3,H,W] with every face but the first ``keep`` (left to right) painted over in flat grey."""
    out = frame.clone()
    order = torch.argsort(faces.boxes[:, 0] + faces.boxes[:, 2])
    h, w = frame.shape[-2:]
    for i in order[keep:].tolist():
        x0, y0, x1, y1 = faces.boxes[i].tolist()
        mx, my = 0.25 * (x1 - x0), 0.25 * (y1 - y0)
        out[..., max(int(y0 - my), 0):min(int(y1 + my), h), max(int(x0 - mx), 0):min(int(x1 + mx), w)] = 0.5
    return out


def test_detect_and_swap_syncs_do_not_depend_on_faces(fast_swapper, t1, detected, pl_identity):
    """The whole swap, detection included, on t1.jpg with 1, 3 or 6 of its faces left visible (the others
    painted over): the detector's syncs are per batch too."""
    one = detected.frames(0, 1)
    counts = {}
    for n in FACES:
        frame = blank_faces(t1, one, n)
        with SyncCounter() as sc:
            result = fast_swapper.swap(frame, pl_identity, mask="ellipse")
        assert len(result.faces) == n
        counts[n] = sc.count
    assert_constant(counts, SWAP_BOUND, "detect + swap")    # measured 14 with the torch YuNet
