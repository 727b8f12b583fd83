"""Identities, one per face (combine = each), blending, the face similarity readout, and the identity nodes called as
ComfyUI calls them (``Node.execute``) on real photos with seeded weights: Extract Identity's face_index text (an
old workflow's integer still works), Save Identity naming the files it wrote, Blend and Face Similarity."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from comfy_harness import identities_folder, use_comfy_api  # noqa: F401  (fixture)

use_comfy_api()

from simswap_core.errors import InputError, NoFaceError  # noqa: E402
from simswap_core.identity import (  # noqa: E402
    Identity,
    blend_identities,
    extract_identities,
    extract_identity,
    load_identity,
)


def _unit(seed: int, **meta: str) -> Identity:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(512, generator=g) * 4
    return Identity(F.normalize(emb, dim=0), emb, 1, dict(meta))


# ---------------------------------------------------------------------------------------------- combine = each
def test_each_gives_one_identity_per_listed_face_in_the_listed_order(pl_models, t1):
    _, arc, det = pl_models
    ids = extract_identities(arc, det, t1, select="index:3,0")
    assert [i.meta["source_face"] for i in ids] == ["3", "0"] and [i.meta["source_image"] for i in ids] == ["0", "0"]
    one3 = extract_identity(arc, det, t1, select="index:3")
    one0 = extract_identity(arc, det, t1, select="index:0")
    assert torch.allclose(ids[0].latent, one3.latent, atol=1e-5)
    assert torch.allclose(ids[1].latent, one0.latent, atol=1e-5)
    assert float(ids[0].latent @ ids[1].latent) < 0.999  # two different faces
    for ident in ids:
        assert ident.latent.norm().item() == pytest.approx(1.0, abs=1e-5) and ident.num_sources == 1
        assert ident.meta["crop_size"] == "224" and ident.meta["align_mode"] == "none"
    # every face of every image, image by image: two copies of t1 -> 12 identities, the second six repeat
    both = extract_identities(arc, det, torch.cat([t1, t1]), select="all")
    assert len(both) == 12 and [i.meta["source_image"] for i in both] == ["0"] * 6 + ["1"] * 6
    assert [i.meta["source_face"] for i in both[:6]] == ["0", "1", "2", "3", "4", "5"]
    assert torch.allclose(both[1].latent, both[7].latent, atol=1e-5)


def test_each_names_a_listed_face_that_is_missing(pl_models, t1):
    _, arc, det = pl_models
    with pytest.raises(NoFaceError, match="face 42 of image 0 not found"):
        extract_identities(arc, det, t1, select="index:1,42")
    kept = extract_identities(arc, det, t1, select="index:1,42", if_no_face="skip")
    assert [i.meta["source_face"] for i in kept] == ["1"]


def test_extract_identity_records_its_alignment(pl_models, astronaut):
    _, arc, det = pl_models
    ident = extract_identity(arc, det, astronaut, crop_size=512)
    quality = ident.meta.pop("quality")  # the per-photo quality records (tests/test_identity_quality.py)
    assert ident.meta == {"combine": "mean", "crop_size": "512", "align_mode": "ffhq"} and '"weight":1.0' in quality
    with pytest.raises(InputError, match="extract_identities"):
        extract_identity(arc, det, astronaut, combine="each")


# ---------------------------------------------------------------------------------------------------- blending
def test_blend_is_the_renormalised_weighted_mean_of_unit_latents():
    a, b, c = _unit(1, crop_size="224"), _unit(2, crop_size="224"), _unit(3)
    out = blend_identities([a, b, c], [1.0, 3.0, 0.0])
    want = F.normalize(0.25 * a.latent + 0.75 * b.latent, dim=0)
    assert torch.allclose(out.latent, want, atol=1e-6) and out.latent.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(out.embedding, 0.25 * a.embedding + 0.75 * b.embedding, atol=1e-5)
    assert out.meta["crop_size"] == "224" and out.meta["combine"] == "blend" and out.num_sources == 2
    assert torch.allclose(blend_identities([a, b], [2.0, 0.0]).latent, a.latent, atol=1e-6)
    equal = blend_identities([a, b])
    assert torch.allclose(equal.latent, F.normalize(a.latent + b.latent, dim=0), atol=1e-6)


@pytest.mark.parametrize("items,weights,message", [
    ([_unit(1)], None, "at least 2 identities"),
    ([_unit(1), _unit(2)], [1.0, -1.0], "weights must be 2 finite numbers >= 0"),
    ([_unit(1), _unit(2)], [0.0, 0.0], "not all zero"),
    ([_unit(1), _unit(2)], [1.0, float("nan")], "finite"),
    ([_unit(1), _unit(2)], [1.0], "weights must be 2"),
    ([_unit(1, crop_size="224"), _unit(2, crop_size="512")], None, "different crop sizes.*a: 224, b: 512"),
    ([_unit(1, align_mode="none"), _unit(2, align_mode="ffhq")], None, "different align modes"),
])
def test_blend_refusals(items, weights, message):
    with pytest.raises(InputError, match=message):
        blend_identities(items, weights)


def test_blend_refuses_opposite_identities():
    a = _unit(1)
    b = Identity(-a.latent, -a.embedding, 1, {})
    with pytest.raises(InputError, match="zero length"):
        blend_identities([a, b])


# -------------------------------------------------------------------------------------------------- similarity
def test_similarity_of_a_face_to_itself_and_to_others(pl_models, astronaut, t1):
    from simswap_core.similarity import face_similarity

    _, arc, det = pl_models
    me = extract_identity(arc, det, astronaut)
    same = face_similarity(arc, det, torch.cat([astronaut, astronaut]), me, originals=astronaut)
    assert len(same) == 2 and same.frame_index.tolist() == [0, 1]
    assert same.to_source.tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert same.to_original.tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    assert "image 1 face 0: source 1.000, original target 1.000" in same.report()
    # six faces of t1 against the astronaut: each is the cosine of the face's own latent with the identity
    ids = extract_identities(arc, det, t1, select="all")
    sims = face_similarity(arc, det, t1, me)
    assert len(sims) == 6 and sorted(sims.face_number.tolist()) == [0, 1, 2, 3, 4, 5]
    by_number = dict(zip(sims.face_number.tolist(), sims.to_source.tolist()))
    for ident in ids:
        want = float(ident.latent @ me.latent)
        assert by_number[int(ident.meta["source_face"])] == pytest.approx(want, abs=1e-4)
    assert max(by_number.values()) < 0.999 and sims.mean() == pytest.approx(sum(by_number.values()) / 6, abs=1e-6)
    # a list of identities: each face scores against the closest, which is itself
    several = face_similarity(arc, det, t1, ids)
    assert several.to_source.tolist() == pytest.approx([1.0] * 6, abs=1e-4)
    assert "(identity " in several.report()


def test_similarity_with_no_face_and_bad_originals(pl_models, astronaut):
    from simswap_core.similarity import face_similarity

    _, arc, det = pl_models
    me = extract_identity(arc, det, astronaut)
    blank = torch.full((1, 3, 128, 128), 0.5)
    empty = face_similarity(arc, det, blank, me)
    assert len(empty) == 0 and "no face found" in empty.report() and empty.mean() != empty.mean()  # NaN
    with pytest.raises(InputError, match="original_images: expected 1 .* of 512x512"):
        face_similarity(arc, det, astronaut, me, originals=blank)


# ------------------------------------------------------------------------------------------------------- nodes


@pytest.fixture(scope="module")
def managed(pl_models, pl_weights):
    from nodes._common import ManagedModel

    _, arc, det = pl_models
    return ManagedModel(arc, kind="arcface", name="arc", path=str(pl_weights["arcface"])), det


def test_extract_node_face_index_text_and_each(managed, t1):
    from nodes.identity import SimSwapExtractIdentity as Node

    arc, det = managed
    image = t1.permute(0, 2, 3, 1)  # ComfyUI IMAGE [N,H,W,3]
    ok = dict(face="index", order="left-right", combine="each", if_no_face="error")
    assert Node.validate_inputs(**ok, face_index="0,2") is True
    assert "face_index: expected face numbers" in Node.validate_inputs(**ok, face_index="first")
    assert "combine: 'sum' not in list" in Node.validate_inputs(**{**ok, "combine": "sum"}, face_index="0")
    out = Node.execute(image, arc, det, face="index", face_index="2, 0", order="left-right", combine="each",
                       if_no_face="error")
    ids = out.args[0]
    assert isinstance(ids, list) and [i.meta["source_face"] for i in ids] == ["2", "0"]
    assert "2 identities (one per face): image 0 face 2, image 0 face 0" in out.ui["text"][0]
    # an old workflow saved face_index as the integer 0: ComfyUI hands it over as "0" (STRING input); also as 0
    for old in ("0", 0):
        one = Node.execute(image, arc, det, face="index", face_index=old, order="left-right", combine="mean",
                           if_no_face="error").args[0]
        assert torch.allclose(one.latent, ids[1].latent, atol=1e-5)


def test_save_node_names_the_files_it_wrote(identities_folder, managed, astronaut):
    import folder_paths

    from nodes.identity import SimSwapLoadIdentity, SimSwapSaveIdentity, _identity_names

    ident = _unit(5)
    assert _identity_names() == ["(no identities saved yet)"]
    first = SimSwapSaveIdentity.execute(ident, "anna", "increment")
    second = SimSwapSaveIdentity.execute(ident, "anna", "increment")
    assert first.args[1] == "anna.safetensors" and second.args[1] == "anna_001.safetensors"
    assert first.ui["text"][0].startswith("saved anna.safetensors (in ")
    assert second.ui["text"][0].startswith("saved anna_001.safetensors")
    assert second.ui["simswap_identity_saved"] == ["anna_001.safetensors"]
    # listed at once (ComfyUI's cached list of models/simswap was dropped), and what Load Identity offers
    assert _identity_names() == ["anna.safetensors", "anna_001.safetensors"]
    combo = SimSwapLoadIdentity.define_schema().inputs[0]
    assert combo.options == ["anna.safetensors", "anna_001.safetensors"]
    assert "simswap" in folder_paths.filename_list_cache
    # a list (combine = each): one file per identity
    many = SimSwapSaveIdentity.execute([_unit(6), _unit(7)], "pair", "increment")
    assert many.args[1] == "pair_0.safetensors, pair_1.safetensors"
    assert many.ui["text"][0].startswith("saved 2 identities: pair_0.safetensors, pair_1.safetensors")
    assert torch.equal(load_identity(identities_folder / "pair_1.safetensors").latent, _unit(7).latent)
    assert "pair_1.safetensors" in _identity_names()
    with pytest.raises(InputError, match="already exists"):
        SimSwapSaveIdentity.execute(ident, "anna", "error")
    with pytest.raises(InputError, match="empty list"):
        SimSwapSaveIdentity.execute([], "none", "increment")
    with pytest.raises(InputError, match="identity #1"):  # nothing written when one item is bad
        SimSwapSaveIdentity.execute([_unit(8), "not an identity"], "bad", "increment")
    assert not list(identities_folder.glob("bad*"))


def test_blend_node(managed):
    from nodes.identity import SimSwapBlendIdentities as Node

    a, b, c = _unit(1), _unit(2), _unit(3)
    out = Node.execute(a, b, weight_a=1.0, weight_b=1.0, weight_c=2.0, weight_d=5.0, identity_c=c)
    want = F.normalize(a.latent + b.latent + 2 * c.latent, dim=0)
    assert torch.allclose(out.args[0].latent, want, atol=1e-6)
    assert out.ui["text"] == ["blend of A 25%, B 25%, C 50%"]
    with pytest.raises(InputError, match="identity_b: a list of 2 identities"):
        Node.execute(a, [b, c])
    with pytest.raises(InputError, match="every weight of a connected identity is 0"):
        Node.execute(a, b, weight_a=0.0, weight_b=0.0, weight_d=3.0)
    with pytest.raises(InputError, match="weight_a"):
        Node.execute(a, b, weight_a=float("inf"))


def test_similarity_node(managed, astronaut):
    from nodes.identity import SimSwapFaceSimilarity as Node

    arc, det = managed
    me = extract_identity(arc.module(), det, astronaut)
    image = astronaut.permute(0, 2, 3, 1)
    out = Node.execute(me, image, arc, det, original_images=image)
    score, report = out.args
    assert score == pytest.approx(1.0, abs=1e-4) and report == out.ui["text"][0]
    assert "image 0 face 0: source 1.000, original target 1.000" in report
    assert "SimSwapFaceSimilarity" not in report
    tips = {i.id: i.tooltip for i in Node.define_schema().inputs}
    assert "NOT an independent" in tips["arcface"]
    assert Node.validate_inputs("300") is not True
