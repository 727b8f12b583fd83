"""Identity controls (issue 16 item 3): the per-photo quality score (detection, size, sharpness, frontalness),
combine = "quality", the quality records kept through save/load and shown to the user, and identity strength
(0 = the target's own latent, 1 = the source, above 1 extrapolates away from the target). Real photos (skimage
astronaut, insightface t1.jpg), seeded ArcFace weights (the quality score does not depend on them)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from comfy_harness import identities_folder  # noqa: F401  (fixture)
from simswap_core.errors import InputError
from simswap_core.face_quality import (
    FaceQuality,
    face_quality,
    frontalness,
    laplacian_variance,
    quality_text,
)
from simswap_core.identity import (
    combine_identities,
    extract_identities,
    extract_identity,
    identity_quality,
    load_identity,
    save_identity,
)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N,3,H,W] separable Gaussian blur (reflect padding)."""
    r = int(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).view(1, 1, 1, -1).expand(3, 1, 1, -1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=3)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2), groups=3)


@pytest.fixture(scope="module")
def variants(astronaut):
    """The astronaut sharp, blurred (sigma 2 px) and small (0.3x): same person, different photo quality."""
    small = F.interpolate(astronaut, scale_factor=0.3, mode="area")
    return {"sharp": astronaut, "blurred": gaussian_blur(astronaut, 2.0), "small": small}


@pytest.fixture(scope="module")
def by_quality(pl_models, variants):
    """One identity of the three variants, combine = quality (one detection + ArcFace pass for the module)."""
    _, arc, det = pl_models
    return extract_identity(arc, det, [variants["sharp"], variants["blurred"], variants["small"]],
                            combine="quality")


def test_blurred_and_small_photos_rank_below_the_sharp_one(by_quality):
    recs = identity_quality(by_quality)
    assert [r["image"] for r in recs] == [0, 1, 2]
    sharp, blurred, small = recs
    assert blurred["sharpness"] < 0.5 * sharp["sharpness"], recs       # the blur is what pulls it down
    assert abs(blurred["size"] - sharp["size"]) < 0.1 and abs(blurred["frontal"] - sharp["frontal"]) < 0.1
    assert small["size"] < 0.5 * sharp["size"], recs                   # the small face is an upscale
    assert sharp["quality"] > blurred["quality"] and sharp["quality"] > small["quality"]
    # the weights follow the qualities and sum to 1
    w = [r["weight"] for r in recs]
    assert w[0] > w[1] and w[0] > w[2] and sum(w) == pytest.approx(1.0, abs=2e-3)
    assert by_quality.meta["combine"] == "quality" and by_quality.num_sources == 3
    text = quality_text(recs, ["sharp.png", "blurred.png", "small.png"])
    assert "photo 1 (blurred.png): quality" in text and "consider dropping it" in text


def test_quality_weights_combine_the_latents(pl_models, variants, by_quality):
    """combine="quality" is the weighted mean with the recorded weights (not the plain mean)."""
    _, arc, det = pl_models
    one = extract_identities(arc, det, [variants["sharp"], variants["blurred"], variants["small"]],
                             select="largest")
    emb = torch.stack([i.embedding for i in one])
    lat = torch.stack([i.latent for i in one])
    w = torch.tensor([r["weight"] for r in identity_quality(by_quality)])
    expect = combine_identities(lat, emb, method="weighted", weights=w)
    assert torch.allclose(by_quality.latent, expect.latent, atol=1e-3)
    plain = combine_identities(lat, emb, method="mean")
    assert not torch.allclose(by_quality.latent, plain.latent, atol=1e-4)
    assert [r["quality"] for r in identity_quality(one[1])] == [identity_quality(by_quality)[1]["quality"]]


def test_save_load_keeps_the_weights_and_per_photo_scores(by_quality, tmp_path):
    path = save_identity(by_quality, tmp_path / "anna.safetensors")
    back = load_identity(path)
    assert identity_quality(back) == identity_quality(by_quality) and len(identity_quality(back)) == 3
    assert back.meta["combine"] == "quality" and torch.equal(back.latent, by_quality.latent)


def test_each_identity_carries_its_own_quality(pl_models, t1):
    _, arc, det = pl_models
    ids = extract_identities(arc, det, t1, select="index:0,3")
    recs = [identity_quality(i) for i in ids]
    assert [len(r) for r in recs] == [1, 1] and [r[0]["face"] for r in recs] == [0, 3]
    assert all(0.0 <= r[0]["quality"] <= 1.0 for r in recs)


def test_frontalness_of_the_templates():
    from simswap_core.align import POSE_TEMPLATES_112
    from simswap_core.scoring import ARCFACE_TEMPLATE_112

    pts = torch.tensor([ARCFACE_TEMPLATE_112, *POSE_TEMPLATES_112])
    f = frontalness(pts).tolist()
    assert f[0] > 0.95 and f[3] > 0.9                      # ArcFace template, frontal pose template
    assert f[2] < 0.4 and f[4] < 0.4                        # half profiles
    assert f[1] == 0.0 and f[5] == 0.0                      # full profiles
    # rotation (roll) and scale do not change it
    c, s = torch.cos(torch.tensor(0.5)), torch.sin(torch.tensor(0.5))
    rot = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    moved = (pts @ rot.T) * 3.0 + 40.0
    assert torch.allclose(frontalness(moved), frontalness(pts), atol=1e-4)


def test_sharpness_part_hardly_depends_on_the_crop_size(pl_models, astronaut):
    """The same face aligned at 224 and at 512 (same template) has about the same sharpness figure."""
    from simswap_core.align import align_faces

    _, _, det = pl_models
    faces = det.detect(astronaut)
    a = laplacian_variance(align_faces(astronaut, faces, 224, "none").crops)
    b = laplacian_variance(align_faces(astronaut, faces, 512, "none").crops)
    assert float(b) == pytest.approx(float(a), rel=0.3)
    q = face_quality(torch.rand(1, 3, 224, 224), torch.zeros(1, 5, 2), torch.tensor([[0.0, 0.0, 112.0, 112.0]]),
                     torch.tensor([0.9]), 224)
    assert isinstance(q, FaceQuality) and float(q.size) == pytest.approx(1.0)


def test_bad_quality_meta_is_named():
    from simswap_core.identity import Identity

    lat = F.normalize(torch.ones(512), dim=0)
    assert identity_quality(Identity(lat, lat, 1, {})) == []
    with pytest.raises(InputError, match="quality"):
        identity_quality(Identity(lat, lat, 1, {"quality": "{not json"}))
    with pytest.raises(InputError, match="per-photo records"):
        identity_quality(Identity(lat, lat, 1, {"quality": json.dumps([1, 2])}))
    with pytest.raises(InputError, match="needs weights"):
        combine_identities(lat[None], lat[None], method="quality")


# --------------------------------------------------------------------------------------------- identity strength
@pytest.mark.slow
def test_strength_zero_gives_back_the_target_latent_and_above_one_moves_away(pl_swapper, pl_identity_t1, t1):
    from simswap_core.identity import identity_latent
    from simswap_core.swap import SwapOptions

    sw = pl_swapper
    faces = sw.detect(t1)
    faces = faces.select(torch.tensor([0, 1]))             # two different people are enough
    aligned = sw.align(t1, faces)
    source = pl_identity_t1.latent.reshape(1, 512)
    own = identity_latent(sw.arcface, aligned.crops)
    sel = __import__("simswap_core.detection.select", fromlist=["FaceSelection"]).FaceSelection.parse("all")
    at = {s: sw.latents(aligned, source, None, SwapOptions(selection=sel, identity_strength=s))
          for s in (0.0, 0.5, 1.0, 1.5)}
    assert torch.allclose(at[0.0], own, atol=1e-5)                       # 0 %: the target's own identity
    assert torch.allclose(at[1.0], source.expand_as(own), atol=1e-6)     # 100 %: the source exactly
    cos_own = {s: (v * own).sum(1) for s, v in at.items()}
    cos_src = {s: (v * source).sum(1) for s, v in at.items()}
    assert bool((cos_own[0.5] < cos_own[0.0]).all() and (cos_own[1.5] < cos_own[1.0]).all())  # away from target
    assert bool((cos_src[0.5] > cos_src[0.0]).all())
    assert all(bool(((v.norm(dim=1) - 1).abs() < 1e-5).all()) for v in at.values())


@pytest.fixture(scope="module")
def pl_identity_t1(pl_models, astronaut):
    _, arc, det = pl_models
    return extract_identity(arc, det, astronaut)


def test_cli_identity_strength_is_a_percentage():
    import argparse

    from simswap_core.cli.swap import identity_percent

    assert identity_percent("150") == 150.0 and identity_percent("0%") == 0.0
    for bad in ("-1", "201", "abc", "nan"):
        with pytest.raises(argparse.ArgumentTypeError, match="percentage 0..200"):
            identity_percent(bad)


# ------------------------------------------------------------------------------------------------------ the nodes


def test_identity_nodes_show_the_per_photo_quality(identities_folder, pl_models, pl_weights, variants):
    from nodes._common import ManagedModel
    from nodes.identity import SimSwapExtractIdentity, SimSwapLoadIdentity, SimSwapSaveIdentity

    _, arc, det = pl_models
    managed = ManagedModel(arc, kind="arcface", name="arc", path=str(pl_weights["arcface"]))
    photos = torch.cat([variants["sharp"], variants["blurred"]]).permute(0, 2, 3, 1)
    combine = next(i for i in SimSwapExtractIdentity.define_schema().inputs if i.id == "combine")
    assert "quality" in combine.options  # type: ignore[attr-defined]
    out = SimSwapExtractIdentity.execute(photos, managed, det, face="largest", face_index="0", order="left-right",
                                         combine="quality", if_no_face="error")
    text = out.ui["text"][0]
    assert "(quality)" in text and "photo 0: quality" in text and "photo 1: quality" in text
    SimSwapSaveIdentity.execute(out.args[0], "q", "increment")
    loaded = SimSwapLoadIdentity.execute("q.safetensors")
    assert "photo 1: quality" in loaded.ui["text"][0]
    assert identity_quality(loaded.args[0]) == identity_quality(out.args[0])
