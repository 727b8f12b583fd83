"""Conversion to .safetensors: metadata (kind, arch, variant), bit-exact weights and golden outputs, the official
pickled ArcFace, never overwriting, state-dict variants and extra keys."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from checkpoint_fixtures import (  # noqa: F401
    _arc_raw_error,
    _assert_named,
    _save,
    _small_state,
    _small_state_once,
    _StandIn,
    _standin_resnet,
    arc_state,
    arcface_reference,
    g224_file,
    g224_legacy,
    official_arcface_files,
    small_file,
    small_model,
    small_safetensors,
    small_state,
)
from simswap_core import convert_checkpoint, inspect_checkpoint, load_arcface, load_generator
from simswap_core.errors import CheckpointError, InputError

torch.set_num_threads(2)
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")


# -------------------------------------------------------------------------------------------- 4. conversion
def _meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata())


def _gen_out(G, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g)
    lat = torch.nn.functional.normalize(torch.randn(2, 512, generator=g), dim=1)
    with torch.inference_mode():
        return G(x, lat)


@pytest.mark.parametrize("kind", ["g224", "g512"])
def test_convert_generator_metadata_bit_exact_and_golden(kind, tmp_path, seeded_checkpoints, golden):
    src = seeded_checkpoints[kind]
    before = load_generator(src)
    dst = convert_checkpoint(src, tmp_path / f"{kind}.safetensors")
    assert dst == tmp_path / f"{kind}.safetensors"
    meta = _meta(dst)
    assert meta["kind"] == "generator" and meta["variant"] == "official" and meta["arch"] == kind
    assert meta["crop_size"] == {"g224": "224", "g512": "512"}[kind] and meta["format"] == "simswap"
    assert meta["source_file"] == src.name
    after = load_generator(dst)
    assert not after.training and after.arch == kind and after.variant == "official"
    assert all(p.dtype == torch.float32 for p in after.parameters())
    a, b = before.state_dict(), after.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(_gen_out(before), _gen_out(after))
    info = inspect_checkpoint(dst)
    assert info["kind"] == "generator" and info["arch"] == kind and info["source"] == "safetensors"
    # golden parity loading from .safetensors (the .pth path is tested in test_generator.py)
    target = torch.from_numpy(golden[f"{kind}_target_u8"]).float() / 255
    with torch.inference_mode():
        out = after(target, torch.from_numpy(golden[f"{kind}_latent"]))
    assert (out - torch.from_numpy(golden[f"{kind}_output"])).abs().max().item() <= 1e-4


def test_convert_variant_fix_is_kept_and_explicit_variant_wins(tmp_path, small_file, small_model):
    dst = convert_checkpoint(small_file, tmp_path / "fix.safetensors", variant="train")
    assert _meta(dst)["variant"] == "fix"
    G = load_generator(dst)
    assert G.variant == "fix" and not any(isinstance(m, torch.nn.Tanh) for m in G.modules())
    assert inspect_checkpoint(dst)["variant"] == "fix"
    # the caller's explicit choice overrides the metadata (documented: variant=None means "use the metadata")
    G_off = load_generator(dst, variant="official")
    assert G_off.variant == "official"
    assert torch.equal(_gen_out(G_off), _gen_out(small_model))
    assert not torch.equal(_gen_out(G), _gen_out(small_model))
    # re-converting a converted file keeps its variant unless told otherwise
    again = convert_checkpoint(dst, tmp_path / "fix2.safetensors")
    assert _meta(again)["variant"] == "fix"
    forced = convert_checkpoint(dst, tmp_path / "off.safetensors", variant="official")
    assert _meta(forced)["variant"] == "official"
    with pytest.raises(InputError, match="variant"):
        convert_checkpoint(small_file, tmp_path / "bad.safetensors", variant="tanh-ish")
    assert not (tmp_path / "bad.safetensors").exists()


def test_convert_official_pickled_arcface(tmp_path, official_arcface_files, arcface_reference, golden):
    dst = convert_checkpoint(official_arcface_files["2023_legacy_p2"], tmp_path / "arcface.safetensors")
    meta = _meta(dst)
    assert meta["kind"] == "arcface" and meta["arch"] == "ir_se_101" and meta["use_se"] == "true"
    assert meta["layers"] == "3,4,23,3" and "variant" not in meta
    assert "models" not in sys.modules
    A = load_arcface(dst)
    assert not A.training and A.arch == "ir_se_101"
    a, b = arcface_reference.state_dict(), A.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.from_numpy(golden["arc_input"])
    with torch.inference_mode():
        assert torch.equal(arcface_reference(x), A(x))
    with pytest.raises(InputError, match="generators only"):
        convert_checkpoint(official_arcface_files["2023_legacy_p2"], tmp_path / "a2.safetensors", variant="fix")
    assert not (tmp_path / "a2.safetensors").exists()
    # the 2021 dict converts too
    dst21 = convert_checkpoint(official_arcface_files["2021_zip_default"], tmp_path / "arcface21.safetensors")
    assert _meta(dst21)["kind"] == "arcface"
    assert _meta(dst21)["source_file"] == official_arcface_files["2021_zip_default"].name


def test_convert_never_overwrites_unless_asked(tmp_path, small_file, seeded_checkpoints):
    dst = tmp_path / "mine.safetensors"
    dst.write_bytes(b"the user's own file")
    with pytest.raises(InputError, match="already exists"):
        convert_checkpoint(small_file, dst)
    assert dst.read_bytes() == b"the user's own file"
    convert_checkpoint(small_file, dst, overwrite=True)
    assert _meta(dst)["kind"] == "generator"
    convert_checkpoint(seeded_checkpoints["arcface"], dst, overwrite=True)
    assert _meta(dst)["kind"] == "arcface"
    with pytest.raises(InputError, match=".safetensors"):
        convert_checkpoint(small_file, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
    # a failed conversion leaves neither the target nor temp files behind
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError):
        convert_checkpoint(bad, tmp_path / "bad.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth", "mine.safetensors"]


def test_state_dict_variants_load(tmp_path, arc_state, arcface_reference, small_state, small_model):
    state = small_state
    ref_sd = small_model.state_dict()
    ref_out = _gen_out(small_model)
    variants = {
        "no_nbt": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "wrapped": {"state_dict": state, "epoch": 3},
        "half": {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()},
    }
    assert len(variants["no_nbt"]) < len(state)
    for name, sd in variants.items():
        G = load_generator(_save(tmp_path / f"{name}.pth", sd))
        assert not G.training and all(v.dtype == torch.float32 for v in G.state_dict().values()
                                      if v.is_floating_point()), name
        sd = G.state_dict()
        assert list(sd) == list(ref_sd), name
        if name == "half":
            assert (_gen_out(G) - ref_out).abs().max().item() < 0.05
        else:
            assert all(torch.equal(sd[k], ref_sd[k]) for k in sd), name
    # ArcFace state dict without num_batches_tracked and with a module. prefix (a DataParallel state_dict())
    sd = {f"module.{k}": v for k, v in arc_state.items() if not k.endswith("num_batches_tracked")}
    A = load_arcface(_save(tmp_path / "arc.pth", sd))
    a, b = arcface_reference.state_dict(), A.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert int(b["bn1.num_batches_tracked"]) == 0
    # the same without the missing keys tolerated elsewhere: a really missing weight is an error
    del sd["module.layer2.1.conv1.weight"]
    path = _save(tmp_path / "arc_missing.pth", sd)
    with pytest.raises(CheckpointError, match="missing 1 keys.*layer2.1.conv1.weight") as info:
        load_arcface(path)
    assert str(path) in str(info.value)


def test_extra_keys_are_refused(tmp_path):
    state = _small_state()
    state["BottleNeck.0.extra.weight"] = torch.zeros(1)
    path = _save(tmp_path / "extra.pth", state)
    with pytest.raises(CheckpointError, match="unexpected 1 keys") as info:
        load_generator(path)
    assert str(path) in str(info.value)
