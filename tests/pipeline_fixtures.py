"""Fixtures and helpers of the pipeline tests (swap, CLI, imageio, video).

Real photos are read from installed packages at test time (never committed): insightface's t1.jpg (1280x886,
6 faces) and scikit-image's astronaut (512x512, 1 face). Weights are SEEDED RANDOM weights written once per
session by `simswap_core.models.seeded` (not a face-swap model: the swapped faces are noise, which is all these tests
need - they check geometry, counts, masks, formats and error handling).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch


def t1_path() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface (its t1.jpg sample photo) is not installed")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not found in the installed insightface")
    return p


def astronaut_uint8() -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skdata.astronaut())


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """[H,W,3] uint8 -> [1,3,H,W] float32 [0,1]."""
    return torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255.0  # a writable copy


def astronaut_small(size: int = 256) -> np.ndarray:
    """The astronaut photo resized to size x size (uint8, Pillow bilinear), for quick single-face tests."""
    from PIL import Image

    return np.asarray(Image.fromarray(astronaut_uint8()).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="session")
def pl_weights(tmp_path_factory) -> dict[str, Path]:
    from simswap_core.models.seeded import write_seeded_checkpoints

    folder = tmp_path_factory.mktemp("seeded_pipeline")
    return write_seeded_checkpoints(folder, seed=1234, kinds=("g224", "arcface"))


@pytest.fixture(scope="session")
def pl_models(pl_weights):
    from simswap_core.detection import load_detector
    from simswap_core.models.loaders import load_arcface, load_generator

    torch.set_num_threads(2)
    return load_generator(pl_weights["g224"]), load_arcface(pl_weights["arcface"]), load_detector("yunet")


@pytest.fixture(scope="session")
def pl_swapper(pl_models):
    from simswap_core.swap import FaceSwapper

    g, a, d = pl_models
    return FaceSwapper(g, a, d, device="cpu")


@pytest.fixture(scope="session")
def astronaut() -> torch.Tensor:
    return to_tensor(astronaut_uint8())


@pytest.fixture(scope="session")
def t1() -> torch.Tensor:
    from simswap_core.io.images import read_image

    return read_image(t1_path()).image


@pytest.fixture(scope="session")
def pl_identity(pl_swapper, astronaut):
    return pl_swapper.extract_identity(astronaut, select="largest")


@pytest.fixture(scope="session")
def t1_result(pl_swapper, pl_identity, t1):
    """One swap of all faces of t1.jpg, shared by several tests (the generator is the slow part)."""
    return pl_swapper.swap(t1, pl_identity, select="all", batch_size=8)


@pytest.fixture(scope="session")
def pl_models_dir(pl_weights, tmp_path_factory) -> Path:
    """A models dir laid out like a real install (simswap/latest_net_G.pth, simswap/arcface_checkpoint.tar),
    holding the seeded weights (symlinks), for CLI tests that resolve default model names."""
    root = tmp_path_factory.mktemp("models")
    (root / "simswap").mkdir()
    (root / "simswap" / "latest_net_G.pth").symlink_to(pl_weights["g224"])
    (root / "simswap" / "arcface_checkpoint.tar").symlink_to(pl_weights["arcface"])
    return root


@pytest.fixture(scope="session")
def fast_generator_path(pl_weights, tmp_path_factory) -> Path:
    """The seeded 224 generator converted to .safetensors whose metadata says crop_size 64: the full network run on
    64x64 crops (~6x faster per face on the CPU than 224), for tests that swap many frames (video, streaming).
    ``load_generator`` / the CLI's --generator / the loader node all take its crop size from the metadata."""
    from simswap_core.models.loaders import convert_checkpoint

    return convert_checkpoint(pl_weights["g224"], tmp_path_factory.mktemp("fast_g") / "simswap_g224_crop64.safetensors",
                              crop_size=64)


@pytest.fixture(scope="session")
def fast_swapper(fast_generator_path, pl_models):
    """A FaceSwapper on the CPU with the crop-64 generator, seeded ArcFace and YuNet."""
    from simswap_core.models.loaders import load_generator
    from simswap_core.swap import FaceSwapper

    _g, a, d = pl_models
    return FaceSwapper(load_generator(fast_generator_path), a, d, device="cpu")
