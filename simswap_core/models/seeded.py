"""Seeded RANDOM weights (spec section 8.1) for tests, demos and benchmarks.

These are NOT a face-swap model: every value is drawn from a uniform generator with per-key scales chosen only
so that activations stay well-behaved. They reproduce the project's golden reference data bit for bit, and let
the pipeline, the demo and the ComfyUI nodes run without downloading the real checkpoints.

Recipe (defined on the ordered key list of a model): ``g = torch.Generator().manual_seed(seed + offset)``;
walk the keys in state_dict order; ``int64`` keys are zeros; each float key takes ``numel`` draws of
``torch.rand`` mapped to [-1,1) and is scaled as ``z * a + b`` by the rule table below. The key lists come from
our own module instances (built on the meta device), whose order equals the official order.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..networks.sam import SamConfig
from ..io.atomic import atomic_write

__all__ = ["SEEDED_FILENAMES", "SEEDED_KINDS", "SAM_SMALL", "seeded_key_list", "seeded_state_dict",
           "write_seeded_checkpoints", "write_seeded_sam"]

#: kind -> offset added to the seed. g224/g512/arcface are the spec's; the others are this project's extension.
SEEDED_KINDS: dict[str, int] = {"g224": 0, "g512": 1, "arcface": 2, "gdeep": 3, "arcface_no_se": 4, "sam_small": 5,
                                "sam_vit_b": 6}

#: kind -> file name written by :func:`write_seeded_checkpoints` (official names / formats).
SEEDED_FILENAMES: dict[str, str] = {
    "g224": "latest_net_G.pth",
    "g512": "550000_net_G.pth",
    "arcface": "arcface_r101se.pth",
}

_BRANCH_BN = re.compile(r"layer\d+\.\d+\.bn2\.weight")


def _sam_small() -> SamConfig:
    from ..networks.sam import SamConfig

    # the official key layout at a small size (256 input, 16x16 grid, 5-token windows: padding is exercised)
    return SamConfig(img_size=256, patch_size=16, encoder_dim=64, encoder_depth=4, encoder_heads=4, encoder_mlp=256,
                     global_attn=(1, 3), window_size=5, prompt_dim=64, mask_in_chans=16, decoder_depth=2,
                     decoder_heads=8, decoder_mlp=128, iou_head_hidden=64)


#: the small SAM layout of the seeded "sam_small" weights (a ``networks.sam.SamConfig``)
SAM_SMALL = _sam_small()


def _module_for(kind: str) -> torch.nn.Module:
    from ..networks.arcface import ArcFaceConfig, IResNet
    from ..networks.generator import GeneratorConfig, SimSwapGenerator

    with torch.device("meta"):
        if kind == "g224":
            return SimSwapGenerator(GeneratorConfig.preset("g224"))
        if kind == "g512":
            return SimSwapGenerator(GeneratorConfig.preset("g512"))
        if kind == "gdeep":
            return SimSwapGenerator(GeneratorConfig.preset("deep", variant="fix"))
        if kind == "arcface":
            return IResNet(ArcFaceConfig())
        if kind == "arcface_no_se":
            return IResNet(ArcFaceConfig(use_se=False))
        if kind in ("sam_small", "sam_vit_b"):
            from ..networks.sam import SamConfig, SamModel

            return SamModel(SAM_SMALL if kind == "sam_small" else SamConfig.preset("vit_b"))
    raise InputError(f"seeded weights kind {kind!r} is not known; expected one of {sorted(SEEDED_KINDS)}")


def seeded_key_list(kind: str) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Ordered ``(key, shape, dtype)`` of our module's state_dict for ``kind`` (equal to the official list)."""
    module = _module_for(kind)
    return [(k, tuple(v.shape), v.dtype) for k, v in module.state_dict().items()]


def _scale(key: str, shape: tuple[int, ...], keyset: set[str]) -> tuple[float, float]:
    """(a, b) of the spec's rule table for one float key."""
    prefix, _, leaf = key.rpartition(".")
    is_bn = prefix + ".running_mean" in keyset
    if is_bn:
        if leaf == "weight":
            return (0.1, 0.2) if _BRANCH_BN.fullmatch(key) else (0.2, 1.0)
        if leaf in ("bias", "running_mean"):
            return 0.2, 0.0
        if leaf == "running_var":
            return 0.2, 1.0
    if leaf == "weight" and len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        return (math.sqrt(0.27 / fan_in) if key == "last_layer.1.weight" else math.sqrt(6.0 / fan_in)), 0.0
    if leaf == "weight" and len(shape) == 2:
        return (0.52, 0.0) if ".style" in key else (math.sqrt(3.0 / shape[1]), 0.0)
    if leaf == "weight" and len(shape) == 1:
        return 0.05, 0.25
    if leaf == "bias":
        return 0.1, 0.0
    raise InputError(f"seeded recipe has no rule for key {key!r} with shape {shape}")


def _sam_scale(key: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """(a, b) for a SAM key: small position tables, unit-ish norms, fan-in scaled weights."""
    leaf = key.rpartition(".")[2]
    if leaf == "positional_encoding_gaussian_matrix":
        return 1.0, 0.0
    if leaf in ("pos_embed", "rel_pos_h", "rel_pos_w"):
        return 0.02, 0.0
    if leaf == "weight" and len(shape) == 1:
        return 0.1, 1.0
    if leaf == "bias":
        return 0.1, 0.0
    if leaf == "weight" and len(shape) == 4:
        return math.sqrt(3.0 / (shape[1] * shape[2] * shape[3])), 0.0
    if leaf == "weight" and len(shape) == 2:
        return math.sqrt(3.0 / shape[1]), 0.0
    raise InputError(f"seeded recipe has no rule for key {key!r} with shape {shape}")


def _saver(state: dict[str, Tensor]) -> Callable[[Path], None]:
    """``torch.save(state, tmp)`` as an atomic_write callback."""
    return lambda tmp: torch.save(state, tmp)


def seeded_state_dict(kind: str, seed: int = 1234) -> dict[str, Tensor]:
    """Random CPU float32 weights for ``kind`` ("g224", "g512", "arcface"; also "gdeep", "arcface_no_se", and
    "sam_small" / "sam_vit_b": SAM in the official key layout, small (:data:`SAM_SMALL`) or at vit_b size).

    Bit-identical to the weights behind ``tests/fixtures/golden_public.npz`` for seed 1234. Not a model.
    """
    if kind not in SEEDED_KINDS:
        raise InputError(f"seeded weights kind {kind!r} is not known; expected one of {sorted(SEEDED_KINDS)}")
    keys = seeded_key_list(kind)
    keyset = {k for k, _, _ in keys}
    g = torch.Generator().manual_seed(int(seed) + SEEDED_KINDS[kind])
    state: dict[str, Tensor] = {}
    for key, shape, dtype in keys:
        if dtype == torch.int64:
            state[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        z = torch.rand(shape, generator=g, dtype=torch.float32).mul_(2.0).sub_(1.0)
        a, b = _sam_scale(key, shape) if kind.startswith("sam") else _scale(key, shape, keyset)
        z.mul_(a)
        if b != 0.0:
            z.add_(b)
        state[key] = z
    return state


def _same_weights(path: Path, state: dict[str, Tensor]) -> bool:
    try:
        existing = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return False
    return (
        isinstance(existing, dict)
        and list(existing) == list(state)
        and all(torch.equal(existing[k], v) for k, v in state.items())
    )


def write_seeded_checkpoints(folder: str | os.PathLike, seed: int = 1234, *,
                             kinds: Sequence[str] = ("g224", "g512", "arcface")) -> dict[str, Path]:
    """Write seeded RANDOM weights as official-format ``.pth`` state dicts into ``folder``; return kind -> path.

    Files: ``latest_net_G.pth`` (224 generator), ``550000_net_G.pth`` (512 beta generator) and
    ``arcface_r101se.pth`` (ArcFace r101-SE state dict; the official ``arcface_checkpoint.tar`` is a pickled module,
    see :func:`simswap_core.models.loaders.load_arcface`). A file that already holds exactly these weights is reused;
    any other existing file is never overwritten (InputError). Writes are atomic (:mod:`simswap_core.io.atomic`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for kind in kinds:
        if kind not in SEEDED_FILENAMES:
            raise InputError(f"cannot write seeded kind {kind!r}; expected some of {sorted(SEEDED_FILENAMES)}")
        path = folder / SEEDED_FILENAMES[kind]
        state = seeded_state_dict(kind, seed)
        try:
            atomic_write(path, _saver(state))
        except InputError:  # the file exists (or another process wrote it meanwhile): reuse it if it is ours
            if not _same_weights(path, state):
                raise InputError(
                    f"refusing to overwrite {path}: it exists and does not hold the seeded {kind} weights "
                    f"(seed {seed}); choose an empty folder"
                ) from None
        out[kind] = path
    return out


def write_seeded_sam(path: str | os.PathLike, seed: int = 1234, *, kind: str = "sam_small") -> Path:
    """Write seeded RANDOM SAM weights (``kind`` "sam_small" or "sam_vit_b") as an official-format ``.pth`` state
    dict (``torch.save`` of the ordered state dict, like ``sam_vit_b_01ec64.pth``); atomic, never overwrites."""
    if kind not in ("sam_small", "sam_vit_b"):
        raise InputError(f"seeded SAM kind {kind!r} is not known; expected 'sam_small' or 'sam_vit_b'")
    return atomic_write(Path(path), _saver(seeded_state_dict(kind, seed)))
