"""The training discriminators and their backbone: official keys, strict loading, shapes, modes, the spectral norm,
TF-SAME padding and the timm EfficientNet checkpoint conversion (training_spec.md sections 3 and 4).

Checkpoint files are written here with ``torch.save`` of plain state dicts holding the goldens' seeded weights
(tests/fixtures/training/recipes.py), exactly as the official code saves ``*_net_D.pth`` (random values, no
third-party weights).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from simswap_core.errors import CheckpointError
from simswap_core.models.loaders import (
    load_efficientnet_lite0,
    load_model,
    load_patch_discriminator,
    load_projected_discriminator,
)
from simswap_core.models.seeded import seeded_state_dict
from simswap_core.networks.efficientnet_lite import (
    TIMM_HEAD_SHAPES,
    EfficientNetLite0Features,
    SameConv2d,
    convert_timm_state,
    timm_shapes,
)
from simswap_core.networks.patch_discriminator import PatchDiscriminator, PatchDiscriminatorPair
from simswap_core.networks.projected_discriminator import ProjectedDiscriminator, SpectralNormConv2d
from simswap_core.train.paths import PROJECTED

TRAINING = Path(__file__).parent / "fixtures" / "training"
if str(TRAINING) not in sys.path:
    sys.path.append(str(TRAINING))
import recipes  # noqa: E402


@pytest.fixture(scope="module")
def train_keys() -> dict[str, list]:
    return json.loads((TRAINING / "train_keys.json").read_text())


@pytest.fixture(scope="module")
def projected_state() -> dict[str, torch.Tensor]:
    return recipes.state_dict("projected_d", 1234)


@pytest.fixture(scope="module")
def d_files(tmp_path_factory: pytest.TempPathFactory, projected_state: dict[str, torch.Tensor]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("d_files")
    files = {"D": folder / "10000_net_D.pth", "D1": folder / "latest_net_D1.pth", "D2": folder / "latest_net_D2.pth"}
    torch.save(projected_state, files["D"])
    torch.save(recipes.state_dict("patch_d1", 1234), files["D1"])
    torch.save(recipes.state_dict("patch_d2", 1234), files["D2"])
    return files


def _as_list(state: dict[str, torch.Tensor]) -> list:
    return [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()]


def test_state_dict_keys_are_the_official_ones(train_keys: dict[str, list]) -> None:
    assert _as_list(PatchDiscriminator().state_dict()) == train_keys["patch_d"]
    assert _as_list(ProjectedDiscriminator().state_dict()) == train_keys["projected_d"]
    assert sum(p.numel() for p in PatchDiscriminator().parameters()) == 6_962_369
    D = ProjectedDiscriminator()
    assert sum(p.numel() for p in D.feature_network.pretrained.parameters()) == 2_958_848
    assert sum(p.numel() for p in D.feature_network.scratch.parameters()) == 376_768
    assert sum(p.numel() for p in D.discriminator.parameters()) == 10_331_328


def test_official_files_load_strictly(d_files: dict[str, Path], projected_state: dict[str, torch.Tensor]) -> None:
    D = load_model("projected_discriminator", d_files["D"])
    assert isinstance(D, ProjectedDiscriminator)
    got = D.state_dict()
    assert list(got) == list(projected_state)
    assert all(torch.equal(got[k], v) for k, v in projected_state.items())
    assert not any(p.requires_grad for p in D.feature_network.parameters())
    assert all(p.requires_grad for p in D.discriminator.parameters())
    D.train()  # the released training's modes: every BatchNorm, the frozen backbone's too, in training mode
    assert all(m.training for m in D.modules())
    for name in ("D1", "D2"):
        P = load_model("patch_discriminator", d_files[name])
        ref = recipes.state_dict("patch_d1" if name == "D1" else "patch_d2", 1234)
        assert all(torch.equal(P.state_dict()[k], v) for k, v in ref.items())


def test_parametrizations_names_and_ddp_prefix_load(tmp_path: Path,
                                                    projected_state: dict[str, torch.Tensor]) -> None:
    renamed = {}
    for k, v in projected_state.items():
        k = (k.replace("weight_orig", "parametrizations.weight.original")
             .replace("weight_u", "parametrizations.weight.0._u").replace("weight_v", "parametrizations.weight.0._v"))
        renamed["module." + k] = v
    assert sum("parametrizations" in k for k in renamed) == 3 * 14
    path = tmp_path / "newer_torch_net_D.pth"
    torch.save(renamed, path)
    D = load_projected_discriminator(path)
    assert all(torch.equal(D.state_dict()[k], v) for k, v in projected_state.items())


def test_wrong_kind_and_damaged_files_are_refused(tmp_path: Path, d_files: dict[str, Path],
                                                  projected_state: dict[str, torch.Tensor]) -> None:
    with pytest.raises(CheckpointError, match="latest_net_D1.pth.*expected the projected discriminator"):
        load_projected_discriminator(d_files["D1"])
    with pytest.raises(CheckpointError, match="10000_net_D.pth.*expected a PatchGAN discriminator"):
        load_patch_discriminator(d_files["D"])
    g = tmp_path / "latest_net_G.pth"
    torch.save(seeded_state_dict("g224"), g)
    with pytest.raises(CheckpointError, match="latest_net_G.pth.*generator"):
        load_model("patch_discriminator", g)
    with pytest.raises(CheckpointError, match="latest_net_D1.pth.*expected a SimSwap generator"):
        load_model("generator", d_files["D1"])
    bad = dict(projected_state)
    bad["discriminator.mini_discs.0.main.4.weight_orig"] = torch.zeros(1, 256, 4, 4)
    torch.save(bad, tmp_path / "wrong_shape_net_D.pth")
    with pytest.raises(CheckpointError, match="wrong_shape_net_D.pth.*wrong shapes"):
        load_projected_discriminator(tmp_path / "wrong_shape_net_D.pth")
    missing = {k: v for k, v in projected_state.items() if "mini_discs.3" not in k}
    torch.save(missing, tmp_path / "missing_net_D.pth")
    with pytest.raises(CheckpointError, match="missing_net_D.pth.*missing"):
        load_projected_discriminator(tmp_path / "missing_net_D.pth")


@torch.no_grad()
def test_output_shapes_224_and_512() -> None:
    torch.manual_seed(0)
    D = ProjectedDiscriminator().train()
    logits, taps = D(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 64)
    assert {k: tuple(v.shape[1:]) for k, v in taps.items()} == {
        "0": (24, 56, 56), "1": (40, 28, 28), "2": (112, 14, 14), "3": (320, 7, 7)}
    logits, taps = D(torch.randn(1, 3, 512, 512))
    assert logits.shape == (1, 676) and taps["3"].shape == (1, 320, 16, 16)
    pair = PatchDiscriminatorPair().train()
    d1, d2 = pair(torch.randn(1, 3, 512, 512))
    assert len(d1) == len(d2) == 6
    assert d1[-1].shape == (1, 1, 30, 30) and d2[-1].shape == (1, 1, 14, 14)
    d1, d2 = pair(torch.randn(2, 3, 224, 224))
    assert d1[-1].shape == (2, 1, 12, 12) and d2[-1].shape == (2, 1, 5, 5) and d2[3].shape == (2, 512, 7, 7)


def test_backbone_modes() -> None:
    D = ProjectedDiscriminator()
    D.eval().train()
    assert D.feature_network.pretrained.layer0[1].training  # as the released code runs it (spec 4.5)
    E = ProjectedDiscriminator(backbone_batch_stats=False).train()
    assert not any(m.training for m in E.feature_network.modules())
    assert all(m.training for m in E.discriminator.modules())


def test_spectral_norm_equals_torch_spectral_norm() -> None:
    """Our power iteration against torch.nn.utils.spectral_norm (the module the official code uses), bit for bit,
    over several training-mode forwards (each advances u and v) and one eval-mode forward."""
    torch.manual_seed(3)
    ref = torch.nn.utils.spectral_norm(torch.nn.Conv2d(8, 16, 4, stride=2, padding=1))
    ours = SpectralNormConv2d(8, 16, 4, 2, 1, bias=True)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 8, 10, 10)
    for _ in range(3):
        assert torch.equal(ours(x), ref(x))
        assert torch.equal(ours.weight_u, ref.weight_u) and torch.equal(ours.weight_v, ref.weight_v)
    ours.eval(), ref.eval()
    assert torch.equal(ours(x), ref(x))
    ours.train()
    ours(x).sum().backward()
    assert ours.weight_orig.grad is not None and ours.bias is not None and ours.bias.grad is not None


def test_tf_same_padding() -> None:
    torch.manual_seed(0)
    for size, k, pads in ((224, 3, (0, 1)), (56, 5, (1, 2)), (14, 5, (1, 2)), (28, 3, (0, 1)), (15, 3, (1, 1))):
        conv = SameConv2d(4, 4, k, 2, groups=4)
        x = torch.randn(1, 4, size, size)
        ref = F.conv2d(F.pad(x, (pads[0], pads[1], pads[0], pads[1])), conv.weight, None, 2, 0, 1, 4)
        assert torch.equal(conv(x), ref), (size, k)


def _timm_state(seed: int = 0, head: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = dict(timm_shapes())
    if head:
        shapes.update(TIMM_HEAD_SHAPES)
    return {k: (torch.zeros((), dtype=torch.int64) if k.endswith("num_batches_tracked") else
                torch.rand(s, generator=g) + 0.5) for k, s in shapes.items()}


def test_timm_efficientnet_conversion(tmp_path: Path) -> None:
    state = _timm_state()
    assert len(state) == 288 + len(TIMM_HEAD_SHAPES)
    ours = convert_timm_state(state)
    assert len(ours) == 288
    pairs = {"conv_stem.weight": "layer0.0.weight", "bn1.running_var": "layer0.1.running_var",
             "blocks.0.0.conv_dw.weight": "layer0.3.0.conv_dw.weight", "blocks.1.1.bn3.bias": "layer0.4.1.bn3.bias",
             "blocks.2.0.conv_dw.weight": "layer1.0.0.conv_dw.weight", "blocks.4.2.conv_pw.weight":
             "layer2.1.2.conv_pw.weight", "blocks.5.3.bn2.weight": "layer3.0.3.bn2.weight",
             "blocks.6.0.conv_pwl.weight": "layer3.1.0.conv_pwl.weight"}
    for timm_key, our_key in pairs.items():
        assert torch.equal(ours[our_key], state[timm_key])
    assert ours["layer3.1.0.conv_pwl.weight"].shape == (320, 1152, 1, 1)
    net = EfficientNetLite0Features()
    net.load_state_dict(ours, strict=True)
    # files: a weights-only .pth with the head, a .safetensors without it; both load and convert
    torch.save(state, tmp_path / "tf_efficientnet_lite0.pth")
    headless = _timm_state(head=False)
    save_file(headless, str(tmp_path / "tf_efficientnet_lite0.safetensors"))
    a = load_efficientnet_lite0(tmp_path / "tf_efficientnet_lite0.pth")
    assert all(torch.equal(a.state_dict()[k], v) for k, v in ours.items())
    b = load_model("efficientnet_lite0", tmp_path / "tf_efficientnet_lite0.safetensors")
    assert torch.equal(b.state_dict()["layer2.0.1.conv_dw.weight"], headless["blocks.3.1.conv_dw.weight"])
    assert not any(p.requires_grad for p in b.parameters())
    # our own layout loads too (a D's backbone saved on its own)
    save_file({k: v.contiguous() for k, v in a.state_dict().items()}, str(tmp_path / "ours.safetensors"))
    c = load_efficientnet_lite0(tmp_path / "ours.safetensors")
    assert all(torch.equal(c.state_dict()[k], v) for k, v in ours.items())
    # the projected path puts the weights into its discriminator's frozen backbone
    D = PROJECTED.build_discriminator(224, backbone_weights=tmp_path / "tf_efficientnet_lite0.pth")
    assert torch.equal(D.feature_network.pretrained.layer3[1][0].conv_pwl.weight, state["blocks.6.0.conv_pwl.weight"])
    assert not any(p.requires_grad for p in D.feature_network.parameters())


def test_timm_efficientnet_bad_files(tmp_path: Path) -> None:
    state = _timm_state()
    missing = {k: v for k, v in state.items() if not k.startswith("blocks.6.")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing.pth.*tf_efficientnet_lite0.*missing"):
        load_efficientnet_lite0(tmp_path / "missing.pth")
    wrong = dict(state)
    wrong["blocks.5.0.conv_dw.weight"] = torch.zeros(672, 1, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="wrong.pth.*wrong shapes"):
        load_efficientnet_lite0(tmp_path / "wrong.pth")
    extra = dict(state)
    extra["blocks.7.0.conv_pw.weight"] = torch.zeros(1)
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="extra.pth.*unexpected"):
        load_efficientnet_lite0(tmp_path / "extra.pth")
    torch.save(seeded_state_dict("g224"), tmp_path / "latest_net_G.pth")
    with pytest.raises(CheckpointError, match="latest_net_G.pth.*expected EfficientNet-lite0"):
        load_efficientnet_lite0(tmp_path / "latest_net_G.pth")
    with pytest.raises(CheckpointError, match="missing.pth"):
        PROJECTED.build_discriminator(224, backbone_weights=tmp_path / "missing.pth")


def test_spectral_norm_runs_under_autocast() -> None:
    """bf16 autocast (the trainer's --precision bf16): the power iteration stays float32, the rest runs."""
    torch.manual_seed(0)
    D = ProjectedDiscriminator().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, taps = D(torch.randn(2, 3, 128, 128))
    assert logits.shape == (2, 4) and torch.isfinite(logits.float()).all()
    logits.float().mean().backward()
    sn = D.discriminator.mini_discs["0"].main[0].main[0]
    assert sn.weight_u.dtype == torch.float32 and sn.weight_orig.grad is not None
