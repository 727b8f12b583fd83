"""FaceSwapper: why nothing was swapped (per frame), progress/cancel after every generator call, several identities
onto several faces, identity strength, the gender filter hook and the face-restoration hook.

Real photos (insightface t1.jpg: 6 faces; skimage astronaut: 1 face; coffee: no face) with seeded random weights
(pipeline_fixtures): the swapped faces are noise; these tests check what reaches the generator and what comes back.
"""
from __future__ import annotations

import pytest
import torch

from pipeline_fixtures import astronaut_small, to_tensor
from simswap_core.errors import InputError, NoFaceError
from simswap_core.identity import Identity, identity_latent
from simswap_core.progress import frames_done
from simswap_core.swap import FaceSwapper, FramesWithoutFaceError, describe_skipped


@pytest.fixture(scope="module")
def small() -> torch.Tensor:
    """The astronaut at 256x256: one face, quick."""
    return to_tensor(astronaut_small(256))


@pytest.fixture(scope="module")
def t1_faces(pl_swapper, t1):
    return pl_swapper.detect(t1).to("cpu")


def other_identity(seed: int = 7) -> Identity:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(512, generator=g)
    return Identity(torch.nn.functional.normalize(emb, dim=0), emb)


class CountingGenerator(torch.nn.Module):
    """Wraps the generator: counts calls and remembers the latents of each call."""

    def __init__(self, g: torch.nn.Module):
        super().__init__()
        self.g = g
        self.crop_size = getattr(g, "crop_size", 224)
        self.calls = 0
        self.latents: list[torch.Tensor] = []

    def forward(self, crops: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.latents.append(latents.detach().clone())
        return self.g(crops, latents)


def direct(pl_models, crops: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """The generator itself on crops [F,3,S,S] with latents [F,512] (one call per face, as the CPU default)."""
    g = pl_models[0]
    with torch.inference_mode():
        return torch.cat([g(crops[i:i + 1], latents[i:i + 1]).float() for i in range(crops.shape[0])])


# ------------------------------------------------------------------------------------------ reasons

def test_frames_without_face_carry_a_reason(pl_swapper, pl_identity, t1, t1_faces):
    res = pl_swapper.swap(t1, pl_identity, faces=t1_faces, select="index:9", if_no_face="keep")
    assert res.frames_without_face == [0] and len(res.faces) == 0 and torch.equal(res.images, t1)
    reason = res.no_face_reasons[0]
    assert "face_index 9 not found" in reason and "6 faces" in reason and "0-5" in reason, reason
    assert res.reasons_by_frame() == {0: reason}
    assert res.summary().startswith("swapped 0 faces in 0 of 1 frame; nothing swapped in frame 0: face_index 9")
    with pytest.raises(FramesWithoutFaceError) as err:
        pl_swapper.swap(t1, pl_identity, faces=t1_faces, select="index:9")
    assert isinstance(err.value, NoFaceError) and err.value.frames == [0] and err.value.reasons == [reason]
    assert "if_no_face='keep'" in str(err.value)


def test_no_face_reason_and_summary_of_a_full_swap(pl_swapper, pl_identity, small):
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    cup = to_tensor(__import__("numpy").asarray(Image.fromarray(skdata.coffee()).resize((256, 256))))
    frames = torch.cat([small, cup, cup, small])
    res = pl_swapper.swap(frames, pl_identity, if_no_face="keep", batch_size=3)
    assert res.frames_without_face == [1, 2] and res.no_face_reasons == ["no face detected"] * 2
    assert res.summary() == "swapped 2 faces in 2 of 4 frames; nothing swapped in frames 1, 2: no face detected"
    full = pl_swapper.swap(small, pl_identity)
    assert full.summary() == "swapped 1 face in 1 frame" and full.no_face_reasons == []


def test_describe_skipped_shortens_long_lists():
    text = describe_skipped(list(range(30)) + [40], ["no face detected"] * 30 + ["face_index 3 not found"])
    assert text.startswith("frames 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (30 in all): no face detected; ")
    assert text.endswith("frame 40: face_index 3 not found")


# ------------------------------------------------------------------------------------------ progress / cancel

def test_frames_done_counts_the_frame_in_progress():
    assert frames_done([6], 0) == 0.0 and frames_done([6], 3) == 0.5 and frames_done([6], 6) == 1.0
    assert frames_done([1, 1, 3], 1) == 2.0 and frames_done([1, 1, 3], 2) == 2.5  # a frame without faces
    assert frames_done([0, 0, 2], 0) == 2.0 and frames_done([], 0) == 0.0


def test_on_step_after_every_generator_call_and_cancel(pl_models, pl_identity, t1, t1_faces):
    """A 3-face photo: on_step is called after each generator call (1/3, 2/3, 1 of the frame), so a cancel
    raised there stops after that call; the old frame-level progress still reports whole frames."""
    g, a, d = pl_models
    counting = CountingGenerator(g)
    sw = FaceSwapper(counting, a, d, device="cpu")
    steps, frames_seen = [], []
    sw.swap(t1, pl_identity, faces=t1_faces, select="index:0,1,2", face_batch_size=1,
            on_step=lambda done, total: steps.append((counting.calls, round(done, 4), total)),
            progress=lambda done, total: frames_seen.append((done, total)))
    assert counting.calls == 3
    assert steps == [(0, 0.0, 1), (1, 0.3333, 1), (2, 0.6667, 1), (3, 1.0, 1), (3, 1.0, 1)]
    assert frames_seen == [(0, 1), (1, 1)]  # whole frames only (each value once), as before

    class Cancelled(Exception):
        pass

    def cancel(done: float, total: int) -> None:
        if counting.calls >= 1:
            raise Cancelled

    counting.calls = 0
    with pytest.raises(Cancelled):
        sw.swap(t1, pl_identity, faces=t1_faces, select="index:0,1,2", face_batch_size=1, on_step=cancel)
    assert counting.calls == 1
    with pytest.raises(InputError, match="on_step"):
        sw.swap(t1, pl_identity, faces=t1_faces, on_step=3)


# ------------------------------------------------------------------------------------------ several identities

def test_assign_identities_follows_the_listed_numbers(t1_faces):
    from simswap_core.detection.select import assign_identities, order_faces, select_faces

    rank = order_faces(t1_faces, "left-right")
    keep = select_faces(t1_faces, "index:4,0,2").nonzero().flatten()
    slots = assign_identities(t1_faces, "index:4,0,2", keep, 2)
    by_rank = dict(zip(rank[keep].tolist(), slots.tolist()))
    assert by_rank == {4: 0, 0: 1, 2: 0}  # listed positions 0, 1, 2 -> identities 0, 1, 0 (cycled)
    every = torch.arange(len(t1_faces))
    assert (assign_identities(t1_faces, "all", every, 4) == rank % 4).all()
    assert not assign_identities(t1_faces, "largest", keep, 3).any()


def test_several_identities_go_to_the_listed_faces(pl_models, pl_swapper, pl_identity, t1, t1_faces):
    second = other_identity()
    res = pl_swapper.swap(t1, [pl_identity, second], faces=t1_faces, select="index:2,0")
    from simswap_core.detection.select import order_faces

    kept_rank = order_faces(t1_faces, "left-right")[
        torch.tensor([int(((t1_faces.boxes - b).abs().sum(1)).argmin()) for b in res.faces.boxes])]
    assert sorted(zip(kept_rank.tolist(), res.identity_slots.tolist())) == [(0, 1), (2, 0)]
    lat = torch.stack([pl_identity.latent.reshape(-1), second.latent.reshape(-1)])[res.identity_slots]
    assert (res.swapped - direct(pl_models, res.aligned.crops, lat)).abs().max() < 1e-5
    with pytest.raises(InputError, match="identity #1"):
        pl_swapper.swap(t1, [pl_identity, torch.zeros(512)], faces=t1_faces)
    with pytest.raises(InputError, match="empty list"):
        pl_swapper.swap(t1, [], faces=t1_faces)


# ------------------------------------------------------------------------------------------ identity strength

def test_identity_strength(pl_models, pl_swapper, pl_identity, small):
    base = pl_swapper.swap(small, pl_identity)
    same = pl_swapper.swap(small, pl_identity, identity_strength=1.0)
    assert torch.equal(base.swapped, same.swapped)
    own = identity_latent(pl_models[1], base.aligned.crops)
    zero = pl_swapper.swap(small, pl_identity, identity_strength=0.0)
    assert (zero.swapped - direct(pl_models, base.aligned.crops, own)).abs().max() < 1e-5
    half = pl_swapper.swap(small, pl_identity, identity_strength=0.5)
    mixed = torch.nn.functional.normalize(torch.lerp(own, pl_identity.latent.reshape(1, -1), 0.5), dim=1)
    assert (half.swapped - direct(pl_models, base.aligned.crops, mixed)).abs().max() < 1e-5
    assert (half.swapped - base.swapped).abs().mean() > 1e-4
    for bad in (-0.1, 2.5, float("nan")):
        with pytest.raises(InputError, match="identity_strength"):
            pl_swapper.swap(small, pl_identity, identity_strength=bad)


# ------------------------------------------------------------------------------------------ gender filter

class FakeGender:
    """Calls faces in the left half of the frame female (0), the others male (1); counts calls."""

    def __init__(self, everyone: int | None = None):
        self.everyone, self.calls = everyone, 0

    def predict(self, frames: torch.Tensor, faces) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        cx = (faces.boxes[:, 0] + faces.boxes[:, 2]) / 2
        g = (cx >= frames.shape[-1] / 2).long() if self.everyone is None else \
            torch.full((len(faces),), self.everyone, dtype=torch.long)
        return g, torch.full((len(faces),), 30.0)


def test_gender_filter_runs_before_the_selection(pl_swapper, pl_identity, t1, t1_faces):
    model = FakeGender()
    res = pl_swapper.swap(t1, pl_identity, faces=t1_faces, select="index:0@left-right", gender="male",
                          gender_model=model)
    cx = (t1_faces.boxes[:, 0] + t1_faces.boxes[:, 2]) / 2
    leftmost_male = t1_faces.boxes[cx == cx[cx >= t1.shape[-1] / 2].min()]
    assert model.calls == 1 and len(res.faces) == 1 and torch.allclose(res.faces.boxes, leftmost_male)
    none = pl_swapper.swap(t1, pl_identity, faces=t1_faces, gender="female", gender_model=FakeGender(1),
                           if_no_face="keep")
    assert none.frames_without_face == [0] and none.no_face_reasons == ["6 faces detected, none female (gender "
                                                                         "filter)"]
    with pytest.raises(InputError, match="gender.*needs a gender model"):
        pl_swapper.swap(t1, pl_identity, faces=t1_faces, gender="female")
    with pytest.raises(InputError, match="gender: expected one of any, female, male"):
        pl_swapper.swap(t1, pl_identity, faces=t1_faces, gender="woman", gender_model=model)


# ------------------------------------------------------------------------------------------ restoration hook

def test_restorer_is_applied_to_the_swapped_faces_and_blended(pl_swapper, pl_identity, small):
    calls = []

    def restorer(crops: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(crops.shape))
        return 1.0 - crops

    base = pl_swapper.swap(small, pl_identity)
    full = pl_swapper.swap(small, pl_identity, restorer=restorer)
    assert calls == [(1, 3, 224, 224)] and torch.allclose(full.swapped, 1.0 - base.swapped, atol=1e-6)
    half = pl_swapper.swap(small, pl_identity, restorer=restorer, restore_visibility=0.25)
    assert torch.allclose(half.swapped, torch.lerp(base.swapped, 1.0 - base.swapped, 0.25), atol=1e-6)
    calls.clear()
    off = pl_swapper.swap(small, pl_identity, restorer=restorer, restore_visibility=0.0)
    assert calls == [] and torch.equal(off.swapped, base.swapped)
    changed = (full.images != small).any(1, keepdim=True)
    assert not (changed & (full.mask == 0)).any()  # restored faces are pasted like swapped ones
    with pytest.raises(InputError, match="restorer: expected restored crops of shape"):
        pl_swapper.swap(small, pl_identity, restorer=lambda c: c[:, :, :100])
    with pytest.raises(InputError, match="restore_visibility"):
        pl_swapper.swap(small, pl_identity, restorer=restorer, restore_visibility=1.5)
    with pytest.raises(InputError, match="restorer: expected a face restorer"):
        pl_swapper.swap(small, pl_identity, restorer="gfpgan")
