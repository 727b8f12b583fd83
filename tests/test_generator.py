"""Generator: official key lists, seeded-weight recipe, golden parity, variants and layout detection."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from simswap_core import load_generator
from simswap_core.errors import InputError
from simswap_core.models.seeded import seeded_key_list, seeded_state_dict
from simswap_core.networks.generator import GeneratorConfig, SimSwapGenerator, instance_norm

torch.set_num_threads(2)


def _as_json_keys(kind):
    return [[k, list(shape), str(dtype).replace("torch.", "")] for k, shape, dtype in seeded_key_list(kind)]


@pytest.mark.parametrize("kind,ref", [("g224", "g224"), ("g512", "g512"), ("gdeep", "gfix_deep")])
def test_state_dict_keys_equal_official(kind, ref, official_keys):
    assert _as_json_keys(kind) == official_keys[ref]


def test_seeded_weights_match_fingerprints(fixtures_dir):
    fingerprints = json.loads((fixtures_dir / "weight_fingerprints.json").read_text())["public"]
    for kind in ("g224", "g512"):
        state = seeded_state_dict(kind, seed=1234)
        assert list(state) == list(fingerprints[kind])
        for key, fp in fingerprints[kind].items():
            value = state[key]
            assert value.double().sum().item() == pytest.approx(fp["sum"], rel=1e-6, abs=1e-6), key
            assert value.double().abs().sum().item() == pytest.approx(fp["abs_sum"], rel=1e-6, abs=1e-6), key
            assert value.flatten()[:4].tolist() == fp["first4"][: value.numel()], key


def test_worked_example_from_spec():
    w = seeded_state_dict("g224")["first_layer.1.weight"]
    assert w.flatten()[:4].tolist() == pytest.approx([-0.19032113, -0.03963897, -0.09703761, -0.05388504], abs=1e-8)
    assert w.double().sum().item() == pytest.approx(-4.1747869, abs=1e-6)


@pytest.mark.parametrize("kind", ["g224", "g512"])
def test_golden_parity_from_official_file(kind, seeded_checkpoints, golden):
    G = load_generator(seeded_checkpoints[kind])
    assert not G.training and G.arch == kind and G.variant == "official"
    assert G.crop_size == {"g224": 224, "g512": 512}[kind]
    assert all(p.dtype == torch.float32 for p in G.parameters())
    target = torch.from_numpy(golden[f"{kind}_target_u8"]).float() / 255
    latent = torch.from_numpy(golden[f"{kind}_latent"])
    with torch.inference_mode():
        out = G(target, latent)
    ref = torch.from_numpy(golden[f"{kind}_output"])
    assert out.shape == ref.shape and out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-4


def test_instance_norm_is_biased_with_tiny_eps():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    centered = x - x.mean(dim=(2, 3), keepdim=True)
    ref = centered / torch.sqrt(centered.pow(2).mean(dim=(2, 3), keepdim=True) + 1e-8)
    assert torch.allclose(instance_norm(x), ref, atol=1e-12)
    const = torch.full((1, 1, 4, 4), 3.0, dtype=torch.float64)  # zero variance: eps decides, no NaN
    assert torch.equal(instance_norm(const), torch.zeros_like(const))


def _small_generator(arch, variant, seed=0):
    """Random generator with 2 ID blocks (same code path, faster to build than the released 9)."""
    torch.manual_seed(seed)
    cfg = GeneratorConfig.preset(arch, variant=variant)
    return SimSwapGenerator(GeneratorConfig(cfg.stem_channels, cfg.deep, n_blocks=2, variant=variant)).eval()


def test_fix_variant_public_convention_is_rgb01():
    G = _small_generator("g224", "fix")
    assert not any(isinstance(m, torch.nn.Tanh) for m in G.modules())
    x = torch.rand(2, 3, 32, 32)
    lat = torch.nn.functional.normalize(torch.randn(2, 512), dim=1)
    with torch.inference_mode():
        out = G(x, lat)
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        raw = G.forward_raw((x - mean) / std, lat)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert torch.allclose(out, (raw * std + mean).clamp(0, 1), atol=1e-6)


def test_official_and_fix_share_keys_but_differ_in_math():
    off, fix = _small_generator("g224", "official"), _small_generator("g224", "fix")
    assert list(off.state_dict()) == list(fix.state_dict())
    fix.load_state_dict(off.state_dict())
    x, lat = torch.rand(1, 3, 32, 32), torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    with torch.inference_mode():
        a, b = off(x, lat), fix(x, lat)
    assert 0 < a.min() and a.max() < 1
    assert (a - b).abs().mean() > 1e-3


def test_deep_keys_give_deep_generator(tmp_path, official_keys):
    path = tmp_path / "deep_G.pth"
    torch.save(seeded_state_dict("gdeep"), path)
    with pytest.warns(UserWarning, match="variant='fix'"):
        G = load_generator(path)  # default convention, with a warning: deep checkpoints are usually train.py ones
    assert G.arch == "deep" and G.variant == "official"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        G = load_generator(path, variant="train")
    assert G.arch == "deep" and G.variant == "fix" and hasattr(G, "down4") and hasattr(G, "up4")
    assert [k for k in G.state_dict()] == [k for k, _, _ in official_keys["gfix_deep"]]
    with torch.inference_mode():
        out = G(torch.rand(1, 3, 64, 64), torch.nn.functional.normalize(torch.randn(1, 512), dim=1))
    assert out.shape == (1, 3, 64, 64) and 0 <= out.min() and out.max() <= 1


def test_512_keys_give_512_generator(seeded_checkpoints):
    G = load_generator(seeded_checkpoints["g512"], variant="official")
    assert G.arch == "g512" and G.first_layer[1].out_channels == 32 and hasattr(G, "down0") and hasattr(G, "up0")
    assert not hasattr(G, "down4")


def test_config_from_state_dict_detects_layouts():
    for _kind, arch in (("g224", "g224"), ("g512", "g512"), ("gdeep", "deep")):
        with torch.device("meta"):
            sd = SimSwapGenerator(GeneratorConfig.preset(arch)).state_dict()
        cfg = GeneratorConfig.from_state_dict(sd)
        assert cfg.arch == arch and cfg.n_blocks == 9 and cfg.latent_dim == 512


def test_bad_inputs_are_named():
    G = _small_generator("g224", "official")
    lat = torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    with pytest.raises(InputError, match=r"\[N,3,S,S\]"):
        G(torch.rand(3, 32, 32), lat)
    with pytest.raises(InputError, match="multiple of 8"):
        G(torch.rand(1, 3, 30, 30), lat)
    with pytest.raises(InputError, match="latent"):
        G(torch.rand(1, 3, 32, 32), torch.randn(1, 256))
    with pytest.raises(InputError, match="2 targets but 3 latents"):
        G(torch.rand(2, 3, 32, 32), torch.randn(3, 512))
    with pytest.raises(InputError, match="variant"):
        load_generator("unused.pth", variant="tanh-ish")
    # a single latent is broadcast over the batch
    with torch.inference_mode():
        out = G(torch.rand(2, 3, 32, 32), lat)
    assert out.shape == (2, 3, 32, 32)
