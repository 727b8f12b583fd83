"""load_model(kind, path): one entry for every model kind, one error for a missing file (MissingModelError naming
the file and the kind expected) and one for a wrong or damaged file (CheckpointError naming the file, what was
found and what was expected). Weights are seeded random values in the official formats."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_parsing import seeded_bisenet_state, write_seeded_bisenet

import simswap_core
from simswap_core.detection import FaceDetector, find_yunet
from simswap_core.errors import CheckpointError, InputError, MissingModelError
from simswap_core.models.loaders import MODEL_KINDS, load_model
from simswap_core.networks.arcface import IResNet
from simswap_core.networks.bisenet import BiSeNet
from simswap_core.networks.generator import SimSwapGenerator

torch.set_num_threads(2)

#: how each kind is named in messages (found part and expected part)
WORD = {"generator": "generator", "arcface": "ArcFace", "parser": "BiSeNet", "detector": "detector"}


@pytest.fixture(scope="module")
def files(seeded_checkpoints, tmp_path_factory) -> dict[str, Path]:
    """One file per kind: seeded generator, ArcFace and BiSeNet weights, and the YuNet .onnx."""
    parser = write_seeded_bisenet(tmp_path_factory.mktemp("parser") / "79999_iter.pth")
    return {"generator": seeded_checkpoints["g224"], "arcface": seeded_checkpoints["arcface"], "parser": parser,
            "detector": find_yunet()}


def test_exported_from_the_package():
    assert simswap_core.load_model is load_model and MODEL_KINDS == (
        "generator", "arcface", "parser", "detector", "patch_discriminator", "projected_discriminator",
        "efficientnet_lite0", "sam")


def test_all_names_the_lazy_public_names():
    """``__all__`` is spelled out for linters; it must stay the error classes plus every lazy name."""
    from simswap_core import errors

    lazy = set(simswap_core._LAZY)
    error_names = set(simswap_core.__all__) - lazy
    assert len(simswap_core.__all__) == len(set(simswap_core.__all__))
    assert lazy <= set(simswap_core.__all__)
    assert error_names and all(issubclass(getattr(errors, n), Exception) for n in error_names)
    for name in simswap_core.__all__:
        assert getattr(simswap_core, name) is not None


def test_each_kind_loads(files):
    G = load_model("generator", files["generator"])
    assert isinstance(G, SimSwapGenerator) and G.crop_size == 224 and not G.training
    A = load_model("arcface", files["arcface"], device="cpu")
    assert isinstance(A, IResNet) and not A.training
    P = load_model("parser", files["parser"])
    assert isinstance(P, BiSeNet) and not P.training and not any(p.requires_grad for p in P.parameters())
    want = seeded_bisenet_state()
    assert all(torch.equal(v.float(), want[k].float()) for k, v in P.state_dict().items())
    for name in ("yunet", files["detector"]):
        assert isinstance(load_model("detector", name, threshold=0.6), FaceDetector)
    G512 = load_model("generator", files["generator"].parent / "550000_net_G.pth", variant="official")
    assert G512.crop_size == 512


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_missing_file_names_the_file_and_the_kind(tmp_path, kind):
    path = tmp_path / f"nope_{kind}.pth"
    with pytest.raises(MissingModelError) as info:
        load_model(kind, path)
    msg = str(info.value)
    assert str(path) in msg and kind in msg.lower(), msg
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("found,expected", [
    ("generator", "arcface"), ("generator", "parser"), ("generator", "detector"),
    ("arcface", "generator"), ("arcface", "parser"),
    ("parser", "generator"), ("parser", "arcface"), ("parser", "detector"),
    ("detector", "generator"), ("detector", "parser"),
])
def test_a_file_of_another_kind_names_both_kinds(files, found, expected):
    path = files[found]
    with pytest.raises(CheckpointError) as info:
        load_model(expected, path)
    msg = str(info.value)
    assert str(path) in msg, msg
    got, _, wanted = msg.partition("expected")
    assert WORD[found] in got and WORD[expected] in wanted, msg


def test_damaged_parser_file_is_a_checkpoint_error(files, tmp_path):
    data = Path(files["parser"]).read_bytes()
    path = tmp_path / "79999_iter.pth"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=str(path)):
        load_model("parser", path)
    state = seeded_bisenet_state()
    state["cp.resnet.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="NaN or infinity"):
        load_model("parser", path)


@pytest.mark.parametrize("kind", ["unet", "", None, "Generator"])
def test_unknown_kind_is_an_input_error(files, kind):
    with pytest.raises(InputError, match="generator, arcface, parser, detector"):
        load_model(kind, files["generator"])
