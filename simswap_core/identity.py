"""Identity vectors: the official latent-ID preprocessing, combining several sources, saving and loading.

``identity_latent`` reproduces spec section 2.4 exactly: RGB [0,1] aligned crop -> ImageNet mean/std ->
``F.interpolate(size=112)`` with the default *nearest* mode -> ArcFace -> ``F.normalize`` (L2, eps 1e-12).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_images
from .errors import CheckpointError, InputError, MissingModelError, NoFaceError
from .networks.generator import IMAGENET_MEAN, IMAGENET_STD
from .progress import StageTimer

if TYPE_CHECKING:  # pragma: no cover
    from .detection.base import FaceDetector
    from .detection.select import FaceSelection

__all__ = [
    "COMBINE_METHODS",
    "Identity",
    "arcface_input",
    "combine_identities",
    "extract_identity",
    "raw_embeddings",
    "reference_distance",
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

    def to(self, device: str | torch.device) -> Identity:
        return Identity(self.latent.to(device), self.embedding.to(device), self.num_sources, dict(self.meta))


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters(), None)
    return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)


def _check_crops(crops: Tensor) -> None:
    """Raise :class:`InputError` unless ``crops`` is a non-empty float ``[N,3,S,S]`` tensor."""
    check_images(crops, "identity crops (aligned RGB face crops)", layout="[N,3,S,S]")


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


def raw_embeddings(arcface: nn.Module, crops: Tensor) -> Tensor:
    """[F,3,S,S] RGB [0,1] aligned crops -> [F,512] raw ArcFace embeddings (official preprocessing; F may be 0)."""
    if crops.shape[0] == 0:
        return crops.new_zeros(0, 512)
    return identity_embedding(arcface, crops)


def reference_distance(arcface: nn.Module, crops: Tensor, reference: Identity) -> Tensor:
    """[F] official "specific person" score: MSE (mean over 512) between raw embeddings of the crops and the
    reference's raw embedding. Lower = more similar; the official threshold is 0.03."""
    emb = raw_embeddings(arcface, crops)
    ref = reference.embedding.to(emb.device, emb.dtype).reshape(1, -1)
    return ((emb - ref) ** 2).mean(1)


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

    from .io.atomic import atomic_write

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


@torch.inference_mode()
def extract_identity(arcface: nn.Module, detector: FaceDetector, images: Tensor | Sequence[Tensor], *,
                     crop_size: int = 224, align_mode: str | None = None, select: str | FaceSelection = "largest",
                     combine: str = "mean", if_no_face: str = "error", device: torch.device | str | None = None,
                     timer: StageTimer | None = None) -> Identity:
    """Identity of the face(s) in one or more source images: detect, pick a face per image, align at
    ``crop_size`` (224 pose templates / 512 FFHQ, or ``align_mode``), ArcFace, combine.

    images: [N,3,H,W] RGB [0,1], or a list of [1,3,H,W]/[3,H,W] of different sizes. select: which face of
    each image ("largest", "best", "index:N", "all" = every face counts). combine: "mean", "median" or
    "weighted" (weights = detection scores). if_no_face: "error" raises NoFaceError naming the images
    without a face; "skip" ignores them (an error is still raised if no image has a face). device: where the
    work runs (default: the encoder's).
    """
    from .align import align_faces
    from .detection.base import detector_label
    from .detection.select import FaceSelection, select_faces

    if if_no_face not in ("error", "skip"):
        raise InputError(f"if_no_face: expected 'error' or 'skip', got {if_no_face!r}")
    if combine not in COMBINE_METHODS:
        raise InputError(f"combine: expected 'mean', 'median' or 'weighted', got {combine!r}")
    selection = FaceSelection.parse(select)
    if selection.how == "reference":
        raise InputError("extract_identity: select='reference' needs a reference identity; use 'largest', "
                         "'best', 'index:N' or 'all' for source images")
    device = torch.device(device) if device is not None else _model_device_dtype(arcface)[0]
    timer = timer or StageTimer()
    groups = [images] if isinstance(images, Tensor) else list(images)
    crops, scores, found, total = [], [], [], 0
    for g in groups:
        g = check_images(g, "extract_identity images", allow_single=True).to(device, torch.float32)
        with timer.stage("detect"):
            faces = detector.detect(g).to(device)
        chosen = faces.select(select_faces(faces, selection))
        if len(chosen):
            with timer.stage("align"):
                crops.append(align_faces(g, chosen, crop_size, align_mode).crops)
            scores.append(chosen.scores)
        with_face = set(chosen.frame_index.tolist())
        found += [total + i for i in range(g.shape[0]) if i in with_face]
        total += g.shape[0]
    missing = [i for i in range(total) if i not in set(found)]
    if not crops:
        raise NoFaceError(f"extract_identity: no face found in any of the {total} source image(s) (detector "
                          f"{detector_label(detector)}, selection '{selection}'); use a clearer, larger, frontal "
                          "photo or lower the detection threshold")
    if missing and if_no_face == "error":
        raise NoFaceError(f"extract_identity: no face found in source image(s) {missing} of {total}; remove "
                          "them or pass if_no_face='skip'")
    with timer.stage("identity"):
        emb = raw_embeddings(arcface, torch.cat(crops))
        latents = F.normalize(emb, p=2, dim=1, eps=1e-12)
        weights = torch.cat(scores) if combine == "weighted" else None
        return combine_identities(latents, emb, method=combine, weights=weights)
