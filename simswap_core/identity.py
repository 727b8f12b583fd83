"""Identity vectors: the official latent-ID preprocessing, combining several sources, saving and loading.

``identity_latent`` reproduces spec section 2.4 exactly: RGB [0,1] aligned crop -> ImageNet mean/std ->
``F.interpolate(size=112)`` with the default *nearest* mode -> ArcFace -> ``F.normalize`` (L2, eps 1e-12).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import CheckpointError, InputError, MissingModelError
from .networks.generator import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "COMBINE_METHODS",
    "Identity",
    "arcface_input",
    "combine_identities",
    "identity_embedding",
    "identity_latent",
    "load_identity",
    "save_identity",
]

COMBINE_METHODS = ("mean", "median", "weighted")
_FORMAT = "simswap-identity"
_VERSION = "1"


@dataclass
class Identity:
    """A source identity.

    latent: ``[512]`` float32 unit-norm, what the generator takes. embedding: ``[512]`` float32 raw ArcFace
    embedding (mean of the sources), for the official "specific person" MSE matching. meta: free-form strings.
    """

    latent: Tensor
    embedding: Tensor
    num_sources: int = 1
    meta: dict[str, str] = field(default_factory=dict)

    def to(self, device: str | torch.device) -> "Identity":
        return Identity(self.latent.to(device), self.embedding.to(device), self.num_sources, dict(self.meta))


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


def _check_crops(crops: Tensor) -> None:
    """Raise :class:`InputError` unless ``crops`` is a non-empty float ``[N,3,S,S]`` tensor."""
    if not isinstance(crops, Tensor) or crops.dim() != 4 or crops.shape[1] != 3:
        raise InputError(
            "identity crops must be aligned RGB face crops [N,3,S,S] in [0,1], got "
            f"{tuple(crops.shape) if isinstance(crops, Tensor) else type(crops).__name__}"
        )
    if not crops.is_floating_point():
        raise InputError(f"identity crops must be float RGB in [0,1], got dtype {crops.dtype} (divide uint8 by 255)")
    if crops.shape[0] == 0:
        raise InputError("identity crops are empty (N=0); expected at least one aligned face crop")


def arcface_input(crops: Tensor) -> Tensor:
    """Official ArcFace input: RGB [0,1] ``[N,3,S,S]`` -> ImageNet-normalised, nearest-resized ``[N,3,112,112]``."""
    _check_crops(crops)
    mean = torch.tensor(IMAGENET_MEAN, dtype=crops.dtype).view(1, 3, 1, 1).to(crops.device, non_blocking=True)
    std = torch.tensor(IMAGENET_STD, dtype=crops.dtype).view(1, 3, 1, 1).to(crops.device, non_blocking=True)
    x = (crops - mean) / std
    if tuple(x.shape[2:]) != (112, 112):
        x = F.interpolate(x, size=(112, 112))  # default mode 'nearest', as the official test scripts
    return x


@torch.no_grad()
def identity_embedding(arcface: nn.Module, crops: Tensor) -> Tensor:
    """Raw ArcFace embeddings ``[N,512]`` of aligned RGB [0,1] crops ``[N,3,S,S]`` (on the model's device)."""
    _check_crops(crops)  # before the cast, so uint8 crops are refused rather than silently scaled wrong
    device, dtype = _model_device_dtype(arcface)
    x = arcface_input(crops.to(device=device, dtype=dtype))
    return arcface(x)


@torch.no_grad()
def identity_latent(arcface: nn.Module, crops: Tensor) -> Tensor:
    """Unit-norm identity latents ``[N,512]`` for the generator (official preprocessing, spec section 2.4)."""
    return F.normalize(identity_embedding(arcface, crops), p=2, dim=1)


def combine_identities(latents: Tensor, embeddings: Tensor, *, method: str = "mean",
                       weights: Tensor | None = None) -> Identity:
    """Combine N source faces into one :class:`Identity`.

    latents ``[N,512]`` (unit norm) and embeddings ``[N,512]`` (raw) of the same faces. method: "mean",
    "median" (element-wise) or "weighted" (``weights [N]``, non-negative, not all zero). The combined latent
    is re-normalised to unit length; the embedding is combined the same way (not normalised).
    """
    if not isinstance(latents, Tensor) or latents.dim() != 2 or latents.shape[0] == 0:
        raise InputError(f"latents must be [N,512] with N >= 1, got "
                         f"{tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__}")
    if not isinstance(embeddings, Tensor) or embeddings.shape != latents.shape:
        raise InputError(f"embeddings must have the shape of latents {tuple(latents.shape)}, got "
                         f"{tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__}")
    if method not in COMBINE_METHODS:
        raise InputError(f"combine method {method!r} is not known; expected one of {COMBINE_METHODS}")
    lat = latents.detach().float()
    emb = embeddings.detach().float().to(lat.device)
    n = lat.shape[0]
    if method == "weighted":
        if weights is None:
            raise InputError("method='weighted' needs weights [N]")
        w = torch.as_tensor(weights, dtype=torch.float32, device=lat.device).reshape(-1)
        if w.numel() != n or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise InputError(f"weights must be {n} finite non-negative numbers, not all zero; got {w.tolist()}")
        w = (w / w.sum()).view(n, 1)
        lat_c, emb_c = (lat * w).sum(0), (emb * w).sum(0)
    elif weights is not None:
        raise InputError(f"weights are only used with method='weighted', not {method!r}")
    elif method == "median":
        lat_c, emb_c = lat.median(dim=0).values, emb.median(dim=0).values
    else:
        lat_c, emb_c = lat.mean(0), emb.mean(0)
    if float(lat_c.norm()) < 1e-6:
        raise InputError("the combined identity latent has zero length (sources cancel out); use other faces")
    return Identity(F.normalize(lat_c, dim=0), emb_c, n, {"combine": method})


def _check_identity(identity: Identity) -> None:
    for name in ("latent", "embedding"):
        t = getattr(identity, name, None)
        if not isinstance(t, Tensor) or t.shape != (512,):
            raise InputError(f"Identity.{name} must be a [512] tensor, got "
                             f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")


def save_identity(identity: Identity, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save to ``.safetensors`` (tensors ``latent``, ``embedding``; metadata). Atomic; never overwrites an
    existing file unless ``overwrite=True``."""
    from safetensors.torch import save_file

    from .checkpoints import atomic_write

    _check_identity(identity)
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"identity file {path} must end in .safetensors")
    meta = {f"meta.{k}": str(v) for k, v in (identity.meta or {}).items()}
    meta.update(format=_FORMAT, format_version=_VERSION, num_sources=str(int(identity.num_sources)))
    tensors = {"latent": identity.latent.detach().float().cpu().contiguous(),
               "embedding": identity.embedding.detach().float().cpu().contiguous()}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), overwrite=overwrite)


def load_identity(path: str | os.PathLike) -> Identity:
    """Load an identity written by :func:`save_identity` (CPU tensors)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MissingModelError(f"identity file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            keys = set(fh.keys())
            tensors = {k: fh.get_tensor(k) for k in keys & {"latent", "embedding"}}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors identity file ({exc})") from None
    if meta.get("format") != _FORMAT or set(tensors) != {"latent", "embedding"}:
        raise CheckpointError(f"{path}: found tensors {sorted(keys)} with format {meta.get('format')!r}; expected a "
                              f"SimSwap identity file (format {_FORMAT!r}, tensors 'latent' and 'embedding')")
    identity = Identity(
        tensors["latent"].float(), tensors["embedding"].float(), int(meta.get("num_sources", "1")),
        {k[len("meta."):]: v for k, v in meta.items() if k.startswith("meta.")},
    )
    try:
        _check_identity(identity)
    except InputError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return identity
