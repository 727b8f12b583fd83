"""ArcFace: keys, architecture inference, golden parity, official latent-ID preprocessing."""
from __future__ import annotations

import json

import pytest
import torch

from simswap_core import identity_embedding, identity_latent, load_arcface
from simswap_core.errors import InputError
from simswap_core.identity import arcface_input
from simswap_core.models.seeded import seeded_key_list, seeded_state_dict
from simswap_core.networks.arcface import ArcFaceConfig, IResNet

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def arcface(seeded_checkpoints):
    return load_arcface(seeded_checkpoints["arcface"])


@pytest.mark.parametrize("kind,ref", [("arcface", "arcface"), ("arcface_no_se", "arcface_alt_no_se")])
def test_state_dict_keys_equal_official(kind, ref, official_keys):
    ours = [[k, list(s), str(d).replace("torch.", "")] for k, s, d in seeded_key_list(kind)]
    assert ours == official_keys[ref]


@pytest.mark.parametrize("ref,layers,se", [("arcface", (3, 4, 23, 3), True),
                                           ("arcface_alt_no_se", (3, 4, 23, 3), False)])
def test_architecture_inferred_from_keys(ref, layers, se, official_keys):
    state = {k: torch.empty(s) for k, s, _ in official_keys[ref]}
    cfg = ArcFaceConfig.from_state_dict(state)
    assert cfg.layers == layers and cfg.use_se is se and cfg.embedding_dim == 512


def test_architecture_inference_is_not_hardwired():
    cfg = ArcFaceConfig(layers=(2, 1, 3, 1), use_se=False)
    with torch.device("meta"):
        state = IResNet(cfg).state_dict()
    got = ArcFaceConfig.from_state_dict(state)
    assert got.layers == (2, 1, 3, 1) and not got.use_se and got.arch == "ir_23"


def test_seeded_weights_match_fingerprints(fixtures_dir):
    fingerprints = json.loads((fixtures_dir / "weight_fingerprints.json").read_text())["public"]["arcface"]
    state = seeded_state_dict("arcface", seed=1234)
    assert list(state) == list(fingerprints)
    for key, fp in fingerprints.items():
        assert state[key].double().sum().item() == pytest.approx(fp["sum"], rel=1e-6, abs=1e-6), key
        assert state[key].flatten()[:4].tolist() == fp["first4"][: state[key].numel()], key


def test_golden_raw_embedding(arcface, golden):
    assert not arcface.training and arcface.arch == "ir_se_101"
    assert len(arcface.layer3) == 23 and arcface.layer1[0].se is not None
    with torch.inference_mode():
        out = arcface(torch.from_numpy(golden["arc_input"]))
    ref = torch.from_numpy(golden["arc_output"])
    assert (out - ref).abs().max().item() <= 2e-5 * ref.abs().max().item()
    l2 = torch.nn.functional.normalize(out, dim=1)
    assert (l2 - torch.from_numpy(golden["arc_output_l2"])).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["pipe224", "pipe512"])
def test_golden_latent_pipeline(name, arcface, golden):
    crops = torch.from_numpy(golden[f"{name}_id_u8"]).float() / 255
    x112 = arcface_input(crops)
    assert torch.allclose(x112, torch.from_numpy(golden[f"{name}_arc_input112"]), atol=1e-6, rtol=0)
    latent = identity_latent(arcface, crops)
    assert (latent - torch.from_numpy(golden[f"{name}_latent"])).abs().max().item() <= 1e-5
    assert torch.allclose(latent.norm(dim=1), torch.ones(len(latent)), atol=1e-5)
    raw = identity_embedding(arcface, crops)
    assert torch.allclose(torch.nn.functional.normalize(raw, dim=1), latent, atol=1e-6)
    assert raw.norm(dim=1).min() > 2  # raw, not normalised


def test_nearest_resize_takes_every_other_pixel_of_224():
    crops = torch.rand(1, 3, 224, 224)
    x = arcface_input(crops)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.equal(x, ((crops - mean) / std)[:, :, ::2, ::2])


def test_bad_crops_are_refused(arcface):
    with pytest.raises(InputError, match=r"\[N,3,S,S\]"):
        identity_latent(arcface, torch.rand(3, 224, 224))
    with pytest.raises(InputError, match="uint8"):
        identity_latent(arcface, torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    with pytest.raises(InputError, match="empty"):
        identity_latent(arcface, torch.zeros(0, 3, 224, 224))
    with pytest.raises(InputError, match="112"):
        arcface(torch.zeros(1, 3, 224, 224))
