"""Fixtures of the trainer tests: real face crops (cut at test time from the photos installed packages ship: the
6 faces of insightface's t1.jpg and scikit-image's astronaut; never committed), a small ArcFace, and the settings
of a small, fast run.

Face crops: detected with YuNet and aligned with the pipeline's own 5-point alignment (pose templates) to 128 px,
the smallest crop both discriminators accept (the projected D needs a multiple of 32 >= 128). Each person is an
identity folder with two "photos": the crop and a mirrored, slightly brighter copy.

ArcFace: a SEEDED RANDOM IResNet with one block per stage and narrow stages (16/16/32/32 channels; same key names as
the official one, loaded by ``load_arcface`` from a state-dict file). Not a face recogniser: its latents are a fixed
random function of the image, which is all an identity loss needs to have something to fall.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline_fixtures import astronaut_uint8, t1_path

CROP = 128


def face_crops(size: int = CROP) -> torch.Tensor:
    """[F,3,size,size] RGB [0,1]: every face of t1.jpg plus the astronaut, aligned with the pipeline."""
    from simswap_core.align import align_faces
    from simswap_core.detection import load_detector
    from simswap_core.io.images import read_image

    # onnxruntime, not the torch default: the trainer tests' tolerances (random-weight discriminators amplify
    # rounding ~100x, training spec 10.4) were set on exactly these crops, and the two backends' landmarks differ
    # by up to 0.01 px, which moves every crop a little. The data must not change with the detector's default.
    # The crops also depend (by rounding) on torch's thread count, which other test modules set: fix it here.
    detector = load_detector("yunet", backend="onnxruntime")
    crops = []
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for frame in (read_image(t1_path()).image,
                      torch.from_numpy(astronaut_uint8()).permute(2, 0, 1)[None].float() / 255.0):
            faces = detector.detect(frame)
            crops.append(align_faces(frame, faces, size, mode="none").crops)
    finally:
        torch.set_num_threads(threads)
    return torch.cat(crops).clamp(0, 1)


def write_dataset(root: Path, crops: torch.Tensor) -> Path:
    """root/<person_k>/{a,b}.png: the crop and a mirrored, 10 % brighter copy (two photos per identity)."""
    for k, crop in enumerate(crops):
        folder = root / f"person_{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        a = (crop.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        b = np.clip(a[:, ::-1].astype(np.float32) * 1.1, 0, 255).round().astype(np.uint8)
        Image.fromarray(a).save(folder / "a.png")
        Image.fromarray(np.ascontiguousarray(b)).save(folder / "b.png")
    return root


def write_small_arcface(path: Path, seed: int = 1234) -> Path:
    """A seeded random narrow IResNet (layers 1,1,1,1; widths 16,16,32,32) as a state-dict .pth."""
    from simswap_core.networks.arcface import ArcFaceConfig, IResNet

    torch.manual_seed(seed)
    net = IResNet(ArcFaceConfig(layers=(1, 1, 1, 1), widths=(16, 16, 32, 32), use_se=False, stem_channels=16,
                                fc_in=32 * 7 * 7))
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def train_crops() -> torch.Tensor:
    return face_crops()


@pytest.fixture(scope="session")
def train_data(tmp_path_factory, train_crops) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faces") / "data", train_crops)


@pytest.fixture(scope="session")
def small_arcface(tmp_path_factory) -> Path:
    return write_small_arcface(tmp_path_factory.mktemp("arc") / "arcface_small.pth")


def small_config(data: Path, out: Path, arcface: Path, **kw):
    """A TrainConfig for fast CPU runs: crop 128, one ID block, random EfficientNet backbone, every step logged."""
    from simswap_core.train.trainer import TrainConfig

    base = dict(data=data, out=out, arcface=arcface, path="projected", crop_size=CROP, batch_size=2, total_steps=2,
                n_blocks=1, allow_random_backbone=True, checkpoint_every=1000, sample_every=1000, log_every=1,
                device="cpu", quiet=True, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def run_cli(args: list[str], *, nproc: int = 1, timeout: float = 300, threads: int = 1) -> subprocess.CompletedProcess:
    """``simswap ARGS`` in a fresh process (``torch.distributed.run`` with ``nproc`` processes when > 1)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(_free_port()), "-m", "simswap_core.cli", *args]
    else:
        cmd = [sys.executable, "-m", "simswap_core.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=Path(__file__).resolve().parents[1])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
