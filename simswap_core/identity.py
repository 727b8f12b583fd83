"""Identity vectors: the official latent-ID preprocessing, combining several sources, saving and loading.

``identity_latent`` reproduces spec section 2.4 exactly: RGB [0,1] aligned crop -> ImageNet mean/std ->
``F.interpolate(size=112)`` with the default *nearest* mode -> ArcFace -> ``F.normalize`` (L2, eps 1e-12).
"""
from __future__ import annotations

import json
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_images, check_integer
from .errors import CheckpointError, InputError, MissingModelError, NoFaceError
from .face_quality import FaceQuality, quality_records
from .networks.generator import IMAGENET_MEAN, IMAGENET_STD
from .progress import StageTimer

if TYPE_CHECKING:  # pragma: no cover
    from .detection.base import FaceDetector
    from .detection.select import FaceSelection

__all__ = [
    "COMBINE_METHODS",
    "Identity",
    "arcface_input",
    "check_identity",
    "combine_identities",
    "blend_identities",
    "extract_identities",
    "extract_identity",
    "identity_list",
    "raw_embeddings",
    "reference_distance",
    "identity_embedding",
    "identity_file",
    "identity_latent",
    "identity_quality",
    "load_identity",
    "save_identity",
]

COMBINE_METHODS = ("mean", "median", "weighted", "quality")
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
    "median" (element-wise), "weighted" or "quality" (both a weighted mean with ``weights [N]``, non-negative,
    not all zero: detection scores / ``face_quality`` weights). The combined latent is re-normalised to unit
    length; the embedding is combined the same way (not normalised).
    """
    if not isinstance(latents, Tensor) or latents.dim() != 2 or latents.shape[0] == 0 or latents.shape[1] != 512:
        raise InputError(f"latents must be [N,512] with N >= 1, got "
                         f"{tuple(latents.shape) if isinstance(latents, Tensor) else type(latents).__name__}")
    if not isinstance(embeddings, Tensor) or embeddings.shape != latents.shape:
        raise InputError(f"embeddings must have the shape of latents {tuple(latents.shape)}, got "
                         f"{tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings).__name__}")
    if method not in COMBINE_METHODS:
        raise InputError(f"combine method {method!r} is not known; expected one of {COMBINE_METHODS}")
    if not latents.is_floating_point() or not embeddings.is_floating_point():
        raise InputError(f"latents and embeddings must be float tensors, got {latents.dtype} and {embeddings.dtype}")
    lat = latents.detach().float()
    emb = embeddings.detach().float().to(lat.device)
    n = lat.shape[0]
    if not bool(torch.isfinite(lat).all() & torch.isfinite(emb).all()):
        bad = (~torch.isfinite(lat).all(1) | ~torch.isfinite(emb).all(1)).nonzero().flatten().tolist()
        raise InputError(f"latents/embeddings of source(s) {bad[:10]} contain NaN/inf values; expected finite "
                         f"ArcFace outputs")
    if method in ("weighted", "quality"):
        if weights is None:
            raise InputError(f"method={method!r} needs weights [N]")
        w = torch.as_tensor(weights, dtype=torch.float32, device=lat.device).reshape(-1)
        if w.numel() != n or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise InputError(f"weights must be {n} finite non-negative numbers, not all zero; got {w.tolist()}")
        w = (w / w.sum()).view(n, 1)
        lat_c, emb_c = (lat * w).sum(0), (emb * w).sum(0)
    elif weights is not None:
        raise InputError(f"weights are only used with method='weighted' or 'quality', not {method!r}")
    elif method == "median":
        lat_c, emb_c = lat.median(dim=0).values, emb.median(dim=0).values
    else:
        lat_c, emb_c = lat.mean(0), emb.mean(0)
    if float(lat_c.norm()) < 1e-6:
        raise InputError("the combined identity latent has zero length (sources cancel out); use other faces")
    return Identity(F.normalize(lat_c, dim=0), emb_c, n, {"combine": method})


LATENT_NORM_TOLERANCE = 1e-2   # |‖latent‖ - 1|: a saved float32/float16 unit vector is well within this
MAX_IDENTITY_FILE_BYTES = 1 << 20  # an identity file is ~4 KiB plus metadata
MAX_NUM_SOURCES = 1_000_000
MAX_QUALITY_RECORDS = 1000   # per-photo quality records kept in an identity's meta (~150 bytes each)
_IDENTITY_SUFFIX = ".safetensors"
_FORBIDDEN_NAME_CHARS = set('\\:*?"<>|\x7f')  # not portable in file names (and backslash: a Windows folder)


def _describe(t: object) -> str:
    return f"{t.dtype} {tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


def check_identity(identity: object, what: str = "identity") -> Identity:
    """``identity`` if it is a usable :class:`Identity`, else InputError naming ``what``, what was found and
    what was expected: latent a finite float ``[512]`` (or ``[1,512]``) of unit length, embedding a finite float
    ``[512]``, num_sources an integer >= 1, meta a dict of strings. Costs one device sync."""
    if not isinstance(identity, Identity):
        raise InputError(f"{what}: expected an Identity (extract_identity / load_identity), got "
                         f"{type(identity).__name__}")
    for name in ("latent", "embedding"):
        t = getattr(identity, name, None)
        if not isinstance(t, Tensor) or not t.is_floating_point() or t.numel() != 512 or \
                tuple(t.shape) not in ((512,), (1, 512)):
            raise InputError(f"{what}: {name} is {_describe(t)}; expected a float [512] tensor")
    lat = identity.latent.detach().reshape(-1).float()
    emb = identity.embedding.detach().reshape(-1).float()
    emb = emb.to(lat.device)
    stats = torch.stack([torch.isfinite(lat).all().float(), torch.isfinite(emb).all().float(), lat.norm()]).tolist()
    lat_finite, emb_finite, norm = stats
    if not lat_finite:
        raise InputError(f"{what}: latent has {int((~torch.isfinite(lat)).sum())} NaN/inf values; expected a "
                         f"finite unit-length [512] vector")
    if not emb_finite:
        raise InputError(f"{what}: embedding has {int((~torch.isfinite(emb)).sum())} NaN/inf values; expected "
                         f"finite values")
    if abs(norm - 1.0) > LATENT_NORM_TOLERANCE:
        raise InputError(f"{what}: latent has length {norm:.6g}; expected a unit-length vector (length 1 "
                         f"within {LATENT_NORM_TOLERANCE:g}; F.normalize it, or extract the identity again)")
    n = identity.num_sources
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= MAX_NUM_SOURCES:
        raise InputError(f"{what}: num_sources must be an integer in [1, {MAX_NUM_SOURCES}], got {n!r}")
    meta = identity.meta
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise InputError(f"{what}: meta must be a dict of strings to strings, got {meta!r:.200}")
    return identity


def identity_file(folder: str | os.PathLike, name: str) -> Path:
    """The path of identity ``name`` (``"anna"``, ``"anna.safetensors"``, ``"team/anna"``) inside ``folder``,
    confined to it: empty names, NUL bytes, absolute paths, backslashes, ``.``/``..`` parts, hidden names and
    symlinks resolving outside ``folder`` are refused with InputError. The file need not exist."""
    if not isinstance(name, str):
        raise InputError(f"identity name: expected a string, got {type(name).__name__}")
    shown = repr(name[:200])
    text = name.strip()
    if text.lower().endswith(_IDENTITY_SUFFIX):
        text = text[: -len(_IDENTITY_SUFFIX)]
    parts = text.split("/")
    bad = (not text or text.startswith("/") or len(text) > 255 or any(c in _FORBIDDEN_NAME_CHARS or ord(c) < 32
                                                                      for c in name)
           or any(not p.strip() or p.startswith(".") or p != p.strip() for p in parts))
    if bad:
        raise InputError(f"identity name {shown}: expected a plain name inside the identities folder (letters, "
                         f"digits, space, _ - and . not first; sub/name for a subfolder), without '..', "
                         f"absolute paths or NUL bytes")
    base = Path(folder)
    path = base.joinpath(*parts[:-1], parts[-1] + _IDENTITY_SUFFIX)
    root = os.path.realpath(base)
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        raise InputError(f"identity name {shown}: resolves to {real}, outside the identities folder {root} "
                         f"(a symlink?)")
    return path


def _check_folder(folder: Path) -> None:
    """InputError unless ``folder`` is an existing directory (the place an identity is written to)."""
    if not folder.exists():
        raise InputError(f"identity folder {folder} does not exist; create it first")
    if not folder.is_dir():
        raise InputError(f"identity folder {folder} is not a folder (a file of that name exists); move the file "
                         f"away or choose another folder")


def save_identity(identity: Identity, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save to ``.safetensors`` (tensors ``latent``, ``embedding``; metadata). The identity is checked first
    (:func:`check_identity`). Atomic; never overwrites an existing file unless ``overwrite=True``."""
    from safetensors.torch import save_file

    from .io.atomic import atomic_write

    path = Path(path)
    check_identity(identity, f"identity to save as {path}")
    if path.suffix != _IDENTITY_SUFFIX:
        raise InputError(f"identity file {path} must end in {_IDENTITY_SUFFIX}")
    _check_folder(path.parent)
    if path.is_dir():
        raise InputError(f"identity file {path} is a folder; choose another name")
    meta = {f"meta.{k}": v for k, v in (identity.meta or {}).items()}
    meta.update(format=_FORMAT, format_version=_VERSION, num_sources=str(int(identity.num_sources)))
    meta_bytes = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if meta_bytes > MAX_IDENTITY_FILE_BYTES // 2:
        raise InputError(f"identity to save as {path}: meta holds {meta_bytes} bytes of text; at most "
                         f"{MAX_IDENTITY_FILE_BYTES // 2} bytes fit an identity file (load_identity refuses larger "
                         f"files)")
    tensors = {"latent": identity.latent.detach().reshape(512).float().cpu().contiguous(),
               "embedding": identity.embedding.detach().reshape(512).float().cpu().contiguous()}
    try:
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta), overwrite=overwrite)
    except PermissionError as exc:
        raise InputError(f"identity file {path}: cannot write into {path.parent} ({exc.strerror})") from None


def _parse_num_sources(text: str | None, path: Path) -> int:
    try:
        n = int(text) if text is not None else 1
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_NUM_SOURCES:
        raise CheckpointError(f"{path}: metadata num_sources is {text!r:.50}; expected an integer in "
                              f"[1, {MAX_NUM_SOURCES}]")
    return n


def load_identity(path: str | os.PathLike) -> Identity:
    """Load an identity written by :func:`save_identity` (CPU tensors). Anything else - another kind of file,
    extra or missing tensors, wrong dtypes or shapes, non-finite or non-unit latents, bad metadata, a file far
    larger than an identity - is a CheckpointError naming the file, what was found and what was expected.
    Metadata keys other than ``format``, ``format_version``, ``num_sources`` and ``meta.*`` are ignored."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MissingModelError(f"identity file {path} does not exist")
    size = path.stat().st_size
    if size > MAX_IDENTITY_FILE_BYTES:
        raise CheckpointError(f"{path}: {size} bytes; an identity file is a few KiB (limit "
                              f"{MAX_IDENTITY_FILE_BYTES} bytes) - not a SimSwap identity file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            keys = set(fh.keys())
            if meta.get("format") != _FORMAT or keys != {"latent", "embedding"}:
                raise CheckpointError(
                    f"{path}: found tensors {sorted(keys)[:10]} with format {meta.get('format')!r:.50}; expected a "
                    f"SimSwap identity file (format {_FORMAT!r}, exactly the tensors 'latent' and 'embedding')")
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in keys}
            if any(s != (512,) for s in shapes.values()):
                raise CheckpointError(f"{path}: tensor shapes {shapes}; expected 'latent' and 'embedding' of [512]")
            tensors = {k: fh.get_tensor(k) for k in keys}
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors identity file ({exc})") from None
    if meta.get("format_version") != _VERSION:
        raise CheckpointError(f"{path}: identity format version {meta.get('format_version')!r:.50}; this version "
                              f"reads version {_VERSION!r}")
    identity = Identity(tensors["latent"], tensors["embedding"], _parse_num_sources(meta.get("num_sources"), path),
                        {k[len("meta."):]: v for k, v in meta.items() if k.startswith("meta.")})
    try:
        check_identity(identity, str(path))
    except InputError as exc:
        raise CheckpointError(str(exc)) from None
    return Identity(identity.latent.float(), identity.embedding.float(), identity.num_sources, identity.meta)


@dataclass
class _SourceFaces:
    """The chosen source faces of :func:`_source_faces`, in output order (image, then listed face order)."""

    crops: Tensor         # [F,3,S,S] RGB [0,1] aligned crops
    scores: Tensor        # [F] detection scores
    image_index: Tensor   # [F] int64, which source image (over all groups)
    face_number: Tensor   # [F] int64, the face's number in its image (numbered in the selection's order)
    meta: dict[str, str]  # crop_size, align_mode
    quality: FaceQuality  # per face: detection, size, sharpness, frontalness (face_quality.py)


def _source_faces(arcface: nn.Module, detector: FaceDetector, images: Tensor | Sequence[Tensor], *, crop_size: int,
                  align_mode: str | None, select: str | FaceSelection, if_no_face: str,
                  device: torch.device | str | None, timer: StageTimer | None, what: str,
                  each: bool = False) -> _SourceFaces:
    """Detect, choose and align the source faces of ``images`` (shared by :func:`extract_identity` and
    :func:`extract_identities`). ``each``: with an "index" selection every listed face number must be found in
    every image (else NoFaceError, or skipped with if_no_face='skip'), and faces come back in the listed order."""
    from .align import MAX_CROP_SIZE, align_faces, default_mode
    from .detection.base import detector_label
    from .detection.select import FaceSelection, order_faces, select_faces
    from .face_quality import face_quality

    if if_no_face not in ("error", "skip"):
        raise InputError(f"if_no_face: expected 'error' or 'skip', got {if_no_face!r}")
    crop_size = check_integer(crop_size, f"{what}: crop_size", low=1, high=MAX_CROP_SIZE)
    selection = FaceSelection.parse(select)
    if selection.how == "reference":
        raise InputError(f"{what}: select='reference' needs a reference identity; use 'largest', "
                         "'best', 'index:N' or 'all' for source images")
    device = torch.device(device) if device is not None else _model_device_dtype(arcface)[0]
    timer = timer or StageTimer()
    groups = [images] if isinstance(images, Tensor) else list(images)
    crops, scores, image_index, numbers, found, total = [], [], [], [], [], 0
    qualities: list[FaceQuality] = []
    missing_listed: list[str] = []
    for g in groups:
        g = check_images(g, f"{what} images", allow_single=True).to(device, torch.float32)
        with timer.stage("detect"):
            faces = detector.detect(g).to(device)
        keep = select_faces(faces, selection)
        rank = order_faces(faces, selection.order)
        chosen = faces.select(keep)
        if len(chosen):
            with timer.stage("align"):
                crops.append(align_faces(g, chosen, crop_size, align_mode).crops)
            qualities.append(face_quality(crops[-1], chosen.points, chosen.boxes, chosen.scores, crop_size))
            scores.append(chosen.scores)
            image_index.append(chosen.frame_index + total)
            numbers.append(rank[keep])
        if each and selection.how == "index":
            listed = torch.tensor(selection.indices, device=rank.device)
            hit = (rank[:, None] == listed[None, :]).float()                               # [F,K]
            in_image = F.one_hot(faces.frame_index.to(rank.device),
                                                   g.shape[0]).float()                     # [F,N]
            present = (in_image.T @ hit) > 0                                               # [N,K]
            for i, k in (~present).nonzero().tolist():
                missing_listed.append(f"face {selection.indices[k]} of image {total + i}")
        with_face = set(chosen.frame_index.tolist())
        found += [total + i for i in range(g.shape[0]) if i in with_face]
        total += g.shape[0]
    missing = [i for i in range(total) if i not in set(found)]
    if not crops:
        raise NoFaceError(f"{what}: no face found in any of the {total} source image(s) (detector "
                          f"{detector_label(detector)}, selection '{selection}'); use a clearer, larger, frontal "
                          "photo or lower the detection threshold")
    if missing and if_no_face == "error":
        raise NoFaceError(f"{what}: no face found in source image(s) {missing} of {total}; remove "
                          "them or pass if_no_face='skip'")
    if missing_listed and if_no_face == "error":
        raise NoFaceError(f"{what}: {', '.join(missing_listed[:10])} not found (faces numbered {selection.order} "
                          f"from 0; see the Detect Faces preview); list only faces every source photo has, or "
                          "pass if_no_face='skip'")
    out = _SourceFaces(torch.cat(crops), torch.cat(scores), torch.cat(image_index), torch.cat(numbers),
                       {"crop_size": str(crop_size), "align_mode": align_mode or default_mode(crop_size)},
                       FaceQuality.cat(qualities))
    if each:  # image order, then the listed order (index) or the numbering order: identity k = k-th listed face
        if selection.how == "index":
            listed = torch.tensor(selection.indices, device=out.face_number.device)
            pos = (out.face_number[:, None] == listed[None, :]).int().argmax(1)
        else:
            pos = out.face_number
        by_pos = torch.argsort(pos, stable=True)
        order = by_pos[torch.argsort(out.image_index[by_pos], stable=True)]
        out = _SourceFaces(out.crops[order], out.scores[order], out.image_index[order], out.face_number[order],
                           out.meta, out.quality.select(order))
    return out


@torch.inference_mode()
def extract_identity(arcface: nn.Module, detector: FaceDetector, images: Tensor | Sequence[Tensor], *,
                     crop_size: int = 224, align_mode: str | None = None, select: str | FaceSelection = "largest",
                     combine: str = "mean", if_no_face: str = "error", device: torch.device | str | None = None,
                     timer: StageTimer | None = None) -> Identity:
    """Identity of the face(s) in one or more source images: detect, pick a face per image, align at
    ``crop_size`` (224 pose templates / 512 FFHQ, or ``align_mode``), ArcFace, combine.

    images: [N,3,H,W] RGB [0,1], or a list of [1,3,H,W]/[3,H,W] of different sizes. select: which face of
    each image ("largest", "best", "index:N", "all" = every face counts). combine: "mean", "median",
    "weighted" (weights = detection scores) or "quality" (weights = ``face_quality``: detection score x face
    size x sharpness x frontalness); for one identity PER face use :func:`extract_identities`. Every source
    face's quality and weight are kept in ``meta["quality"]`` (JSON; :func:`identity_quality`, saved and loaded
    with the identity) so a user can see and drop poor photos.
    if_no_face: "error" raises NoFaceError naming the images without a face; "skip" ignores them (an error is
    still raised if no image has a face). device: where the work runs (default: the encoder's). The identity's
    meta records ``crop_size`` and ``align_mode`` (what :func:`blend_identities` checks).
    """
    if combine == "each":
        raise InputError("combine='each' gives one identity per face: use extract_identities")
    if combine not in COMBINE_METHODS:
        raise InputError(f"combine: expected 'mean', 'median', 'weighted' or 'quality', got {combine!r}")
    timer = timer or StageTimer()
    src = _source_faces(arcface, detector, images, crop_size=crop_size, align_mode=align_mode, select=select,
                        if_no_face=if_no_face, device=device, timer=timer, what="extract_identity")
    with timer.stage("identity"):
        emb = raw_embeddings(arcface, src.crops)
        latents = F.normalize(emb, p=2, dim=1, eps=1e-12)
        weights = {"weighted": src.scores, "quality": src.quality.weights()}.get(combine)
        identity = combine_identities(latents, emb, method=combine, weights=weights)
    shown = weights / weights.sum() if weights is not None else \
        (torch.full_like(src.scores, 1.0 / len(src.scores)) if combine == "mean" else None)
    identity.meta.update(src.meta)
    records = quality_records(src.quality, src.image_index, src.face_number, shown)
    if len(records) > MAX_QUALITY_RECORDS:  # keeps the identity file small; the note says so
        identity.meta["quality_note"] = f"quality of the first {MAX_QUALITY_RECORDS} of {len(records)} faces kept"
        records = records[:MAX_QUALITY_RECORDS]
    identity.meta["quality"] = json.dumps(records, separators=(",", ":"))
    return identity


@torch.inference_mode()
def extract_identities(arcface: nn.Module, detector: FaceDetector, images: Tensor | Sequence[Tensor], *,
                       crop_size: int = 224, align_mode: str | None = None,
                       select: str | FaceSelection = "index:0", if_no_face: str = "error",
                       device: torch.device | str | None = None, timer: StageTimer | None = None) -> list[Identity]:
    """One :class:`Identity` per chosen source face (``combine = each``), e.g. ``select="index:0,1"`` on a photo
    of two people gives [person 0, person 1], for a swap that maps source face k onto target face k.

    Order: image by image; within an image the listed face numbers in the order listed ("index:1,0" gives face
    1 first), for other selections the faces in the selection's numbering order. A listed face missing from an
    image is a NoFaceError naming it (if_no_face='skip': left out). Each identity's meta records
    ``source_image``, ``source_face``, ``crop_size`` and ``align_mode``. Arguments as :func:`extract_identity`.
    """
    timer = timer or StageTimer()
    src = _source_faces(arcface, detector, images, crop_size=crop_size, align_mode=align_mode, select=select,
                        if_no_face=if_no_face, device=device, timer=timer, what="extract_identities", each=True)
    with timer.stage("identity"):
        emb = raw_embeddings(arcface, src.crops)
        latents = F.normalize(emb, p=2, dim=1, eps=1e-12)
    finite = torch.isfinite(emb).all(1) & (emb.norm(dim=1) > 1e-6)
    bad = (~finite).nonzero().flatten().tolist()
    if bad:
        raise InputError(f"extract_identities: the ArcFace embeddings of source face(s) {bad[:10]} are not "
                         f"finite or are zero; check the ArcFace model")
    images_idx, numbers = src.image_index.tolist(), src.face_number.tolist()
    records = quality_records(src.quality, src.image_index, src.face_number, torch.ones_like(src.scores))
    return [Identity(latents[i].clone(), emb[i].clone(), 1,
                     {"combine": "each", "source_image": str(images_idx[i]), "source_face": str(numbers[i]),
                      **src.meta, "quality": json.dumps([records[i]], separators=(",", ":"))})
            for i in range(latents.shape[0])]


def identity_quality(identity: Identity) -> list[dict]:
    """The per-photo quality records an identity was built from (``meta["quality"]``: image, face, quality and
    its parts detection / size / sharpness / frontal, weight), [] when it has none (older or blended files)."""
    text = identity.meta.get("quality")
    if not text:
        return []
    try:
        records = json.loads(text)
    except ValueError:
        raise InputError(f"identity meta 'quality' is not JSON ({text[:80]!r}); expected a list of records") \
            from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "quality" in r for r in records):
        raise InputError("identity meta 'quality': expected a list of per-photo records with a 'quality' field")
    return records


def identity_list(value: object, what: str = "identity") -> list[Identity]:
    """An identity input as a list: one :class:`Identity` -> [it]; a list/tuple of them (``combine = each``) as a
    list. Every item is checked (:func:`check_identity`); an empty list is an InputError naming ``what``."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items:
        raise InputError(f"{what}: an empty list of identities; expected at least one identity")
    return [check_identity(item, what if len(items) == 1 else f"{what} #{k}") for k, item in enumerate(items)]


def _common_meta(identities: Sequence[Identity], key: str, what: str) -> str | None:
    values = {i.meta.get(key) for i in identities} - {None}
    if len(values) > 1:
        shown = ", ".join(f"{chr(ord('a') + k) if k < 26 else k}: {i.meta.get(key, '?')}"
                          for k, i in enumerate(identities))
        raise InputError(f"{what}: the identities were made for different {key.replace('_', ' ')}s ({shown}); "
                         f"blend only identities extracted with the same crop_size (224 pose templates or 512 FFHQ)")
    return next(iter(values), None)


def blend_identities(identities: Sequence[Identity], weights: Sequence[float] | Tensor | None = None, *,
                     what: str = "blend") -> Identity:
    """Blend 2..N identities into one: the weighted mean of their unit latents, re-normalised to unit length (the
    same combination as several source photos, :func:`combine_identities` "weighted"); the raw embeddings are
    mixed with the same weights. weights: ``[N]`` finite, >= 0, not all zero (default: equal). Identities whose
    meta records a different ``crop_size`` / ``align_mode`` (224 pose templates vs 512 FFHQ) are refused
    (InputError), since their latents describe differently aligned faces. Latents are taken on the first
    identity's device."""
    items = list(identities)
    if len(items) < 2:
        raise InputError(f"{what}: expected at least 2 identities, got {len(items)}")
    for k, ident in enumerate(items):
        check_identity(ident, f"{what}: identity #{k}")
    meta = {"combine": "blend"}
    for key in ("crop_size", "align_mode"):
        value = _common_meta(items, key, what)
        if value is not None:
            meta[key] = value
    dev = items[0].latent.device
    lat = torch.stack([i.latent.detach().reshape(512).float().to(dev) for i in items])
    emb = torch.stack([i.embedding.detach().reshape(512).float().to(dev) for i in items])
    w = torch.ones(len(items)) if weights is None else torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
    if w.numel() != len(items) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise InputError(f"{what}: weights must be {len(items)} finite numbers >= 0, not all zero; got "
                         f"{w.tolist()}")
    try:
        out = combine_identities(lat, emb, method="weighted", weights=w)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None
    out.num_sources = min(sum(int(i.num_sources) for i, wk in zip(items, w.tolist()) if wk > 0), MAX_NUM_SOURCES)
    out.meta = meta | {"weights": ",".join(f"{x:g}" for x in w.tolist())}
    return out
