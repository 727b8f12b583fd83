"""Loading models from checkpoint files: one entry, :func:`load_model`, and one loader per kind.

    load_model("generator", "latest_net_G.pth", variant=None)   # SimSwapGenerator (224, 512 beta or deep)
    load_model("arcface", "arcface_checkpoint.tar")             # IResNet identity encoder
    load_model("parser", "79999_iter.pth")                      # BiSeNet face parser
    load_model("detector", "yunet")                             # FaceDetector (simswap_core.detection)
    load_model("patch_discriminator", "latest_net_D1.pth")      # PatchDiscriminator (older training path)
    load_model("projected_discriminator", "10000_net_D.pth")    # ProjectedDiscriminator (train.py)
    load_model("efficientnet_lite0", "tf_efficientnet_lite0.pth")  # EfficientNetLite0Features (timm weights)
    load_model("sam", "sam_vit_b_01ec64.pth")                    # SamModel (Segment Anything vit_b / vit_l / vit_h)

Every loader reads through :func:`~.checkpoints.read_checkpoint` (no code from a file runs) and the same checks:
a missing file raises :class:`~simswap_core.errors.MissingModelError` naming the file and the kind expected, a
damaged or wrong-kind file :class:`~simswap_core.errors.CheckpointError` naming the file, what was found and what
was expected. Returned modules are float32, in eval mode. :func:`convert_checkpoint` writes ``.safetensors``.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from ..io.atomic import atomic_write, refuse_existing
from ..networks.arcface import ArcFaceConfig, IResNet
from ..networks.bisenet import NUM_CLASSES, BiSeNet
from ..networks.efficientnet_lite import EfficientNetLite0Features, convert_timm_state, is_timm_layout
from ..networks.generator import GeneratorConfig, SimSwapGenerator, normalize_variant
from ..networks.patch_discriminator import PatchDiscriminator
from ..networks.projected_discriminator import ProjectedDiscriminator, normalize_state_keys
from ..networks.sam import SamConfig, SamModel, sam_state
from .checkpoints import WANTED, CheckpointInfo, build_module, check_kind, describe_found, read_checkpoint
from .model_file import sniff_format
from .safetensors_header import check_crop_size

if TYPE_CHECKING:  # pragma: no cover
    from ..detection import FaceDetector

__all__ = [
    "DEFAULT_GENERATOR_VARIANT",
    "MODEL_KINDS",
    "convert_checkpoint",
    "inspect_checkpoint",
    "load_arcface",
    "load_efficientnet_lite0",
    "load_generator",
    "load_model",
    "load_parser",
    "load_patch_discriminator",
    "load_projected_discriminator",
    "load_sam",
]

#: Output convention used when neither the caller nor the file's metadata says otherwise: the released
#: 224 and 512 checkpoints use the Tanh head (spec section 0). Use variant="fix" for train.py checkpoints.
DEFAULT_GENERATOR_VARIANT = "official"

#: the kinds :func:`load_model` knows.
MODEL_KINDS = ("generator", "arcface", "parser", "detector", "patch_discriminator", "projected_discriminator",
               "efficientnet_lite0", "sam")

_FORMAT_TAG = "simswap"
_FORMAT_VERSION = "1"
_ARCFACE_ROOTS = {"models.arcface_models.ResNet", "models.ResNet"}


def _resolve_variant(variant: str | None, info: CheckpointInfo) -> str:
    if variant is not None:
        return normalize_variant(variant)
    if "variant" in info.metadata:
        try:
            return normalize_variant(info.metadata["variant"])
        except InputError:
            raise CheckpointError(f"{info.path}: metadata variant {info.metadata['variant']!r} is not known") from None
    return DEFAULT_GENERATOR_VARIANT


def _generator_from_info(info: CheckpointInfo, variant: str | None, crop_size: int | None) -> SimSwapGenerator:
    check_kind(info, "generator")
    chosen = _resolve_variant(variant, info)
    try:
        config = GeneratorConfig.from_state_dict(info.state, chosen)
    except (KeyError, InputError) as exc:
        raise CheckpointError(
            f"{info.path}: generator keys are incomplete ({exc}); expected the official layout") from exc
    if crop_size is None and "crop_size" in info.metadata:
        try:
            crop_size = check_crop_size(info.metadata["crop_size"], str(info.path))
        except InputError as exc:
            raise CheckpointError(f"{exc} (its metadata)") from None
        if crop_size % config.size_multiple:
            raise CheckpointError(f"{info.path}: metadata crop_size {crop_size} is not a multiple of "
                                  f"{config.size_multiple}, which the {config.arch} layout needs; expected e.g. "
                                  f"{config.default_crop_size}")
    elif crop_size is not None:
        crop_size = check_crop_size(crop_size, "crop_size")
        if crop_size % config.size_multiple:
            raise InputError(f"crop_size {crop_size} is not a multiple of {config.size_multiple}, which the "
                             f"{config.arch} layout needs; expected e.g. {config.default_crop_size}")
    if config.deep and variant is None and "variant" not in info.metadata:
        warnings.warn(
            f"{info.path}: a deep generator (down4/up4) is being loaded with the default official Tanh convention; "
            f"deep checkpoints usually come from train.py and need variant='fix'", stacklevel=3)
    return build_module(lambda: SimSwapGenerator(config, crop_size=crop_size), info, f"the {config.arch} generator")


def _arcface_from_info(info: CheckpointInfo) -> IResNet:
    check_kind(info, "arcface")
    if info.source.startswith("pickled module") and not any(r in info.source for r in _ARCFACE_ROOTS):
        raise CheckpointError(f"{info.path}: found a {info.source}, expected the official ArcFace "
                              f"models.arcface_models.ResNet")
    try:
        config = ArcFaceConfig.from_state_dict(info.state)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{info.path}: ArcFace keys are incomplete or inconsistent ({exc})") from None
    return build_module(lambda: IResNet(config), info, f"the {config.arch} ArcFace")


def _parser_from_info(info: CheckpointInfo) -> BiSeNet:
    check_kind(info, "parser")
    return build_module(lambda: BiSeNet(NUM_CLASSES), info, "the 19-class BiSeNet face parser")


def load_generator(path: str | os.PathLike, *, variant: str | None = None,
                   device: str | torch.device | None = None) -> SimSwapGenerator:
    """Load a SimSwap generator (224, 512 beta or deep layout, detected from the keys); float32, eval mode.

    variant: "official" (Tanh head: the released checkpoints) or "fix"/"train" (train.py checkpoints: no Tanh,
    ImageNet-normalised I/O). None: the ``variant`` metadata of a converted .safetensors, else "official".
    The returned module maps RGB [0,1] ``[N,3,S,S]`` + unit-norm ``[N,512]`` -> RGB [0,1] for every variant.
    """
    if variant is not None:
        variant = normalize_variant(variant)  # a bad option fails before the (large) file is read
    model = _generator_from_info(read_checkpoint(path, "generator"), variant, None)
    return model.to(device) if device is not None else model


def load_arcface(path: str | os.PathLike, *, device: str | torch.device | None = None) -> IResNet:
    """Load the ArcFace identity encoder (official pickled file of either generation, state dict, .safetensors).

    The architecture (blocks per stage, SE or not) is inferred from the keys. Float32, eval mode;
    input ImageNet-normalised RGB ``[N,3,112,112]``, output raw ``[N,512]``.
    """
    model = _arcface_from_info(read_checkpoint(path, "arcface"))
    return model.to(device) if device is not None else model


def load_parser(path: str | os.PathLike, *, device: str | torch.device | None = None) -> BiSeNet:
    """BiSeNet face parser in eval mode, no gradients, with the weights of ``path`` (``79999_iter.pth``, a
    ``DataParallel`` or old-torch variant of it, or a .safetensors copy). Nothing is downloaded.

    Strict key/shape check (a missing ``num_batches_tracked`` is tolerated). Raises MissingModelError if absent and
    CheckpointError on a corrupted, truncated or foreign file.
    """
    model = _parser_from_info(read_checkpoint(path, "parser")).requires_grad_(False)
    return model.to(device) if device is not None else model


def load_patch_discriminator(path: str | os.PathLike, *,
                             device: str | torch.device | None = None) -> PatchDiscriminator:
    """One PatchGAN of the older training path (official ``*_net_D1.pth`` / ``*_net_D2.pth``), strict keys and
    shapes, float32, eval mode (call ``train()`` to keep training it)."""
    info = read_checkpoint(path, "patch_discriminator")
    check_kind(info, "patch_discriminator")
    info = replace(info, state=normalize_state_keys(info.state))
    model = build_module(PatchDiscriminator, info, "the PatchGAN discriminator")
    return model.to(device) if device is not None else model


def load_projected_discriminator(path: str | os.PathLike, *,
                                 device: str | torch.device | None = None) -> ProjectedDiscriminator:
    """The projected discriminator of train.py (official ``{step}_net_D.pth``, also with torch's
    ``parametrizations.weight.*`` spectral-norm names), strict keys and shapes, float32, eval mode; the feature
    network is frozen. ``train()`` restores the released training's modes (every BatchNorm in training mode)."""
    info = read_checkpoint(path, "projected_discriminator")
    check_kind(info, "projected_discriminator")
    info = replace(info, state=normalize_state_keys(info.state))
    model = build_module(ProjectedDiscriminator, info, "the projected discriminator")
    return model.to(device) if device is not None else model


def load_efficientnet_lite0(path: str | os.PathLike, *,
                            device: str | torch.device | None = None) -> EfficientNetLite0Features:
    """EfficientNet-lite0 feature taps with the weights of a user-supplied file: timm's ``tf_efficientnet_lite0``
    checkpoint (``conv_stem``/``bn1``/``blocks.*``; the classification head is dropped) as a weights-only .pth or
    .safetensors, or our own layout (``layer0..3``). Strict keys and shapes; float32, eval mode, no gradients."""
    info = read_checkpoint(path, "efficientnet_lite0")
    check_kind(info, "efficientnet_lite0")
    if is_timm_layout(info.state):
        info = replace(info, state=convert_timm_state(info.state, str(info.path)))
    model = build_module(EfficientNetLite0Features, info, "EfficientNet-lite0").requires_grad_(False)
    return model.to(device) if device is not None else model


def load_sam(path: str | os.PathLike, *, device: str | torch.device | None = None) -> SamModel:
    """A Segment Anything (SAM v1) model from an official checkpoint (``sam_vit_b_01ec64.pth``,
    ``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``: state dicts read by the allow-list unpickler, no code from
    the file runs) or a .safetensors copy. The architecture (vit_b / vit_l / vit_h or a smaller layout) is
    inferred from the weights; strict keys and shapes; float32, eval mode, no gradients. Our own implementation
    (``simswap_core.networks.sam``): no torchvision and no ``segment-anything`` package needed."""
    info = read_checkpoint(path, "sam")
    check_kind(info, "sam")
    info = replace(info, state=sam_state(info.state))
    try:
        config = SamConfig.from_state_dict(info.state)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{info.path}: SAM keys are incomplete or inconsistent ({exc})") from None
    model = build_module(lambda: SamModel(config), info, f"the SAM {config.arch} network").requires_grad_(False)
    return model.to(device) if device is not None else model


def _load_detector(path: str | os.PathLike, **kw: Any) -> FaceDetector:
    from ..detection import load_detector

    p = Path(path).expanduser()
    if p.is_file() and sniff_format(p) in ("zip", "legacy", "safetensors"):  # a torch file, not an ONNX model
        info = read_checkpoint(p)
        raise CheckpointError(f"{p}: found {describe_found(info)} in the {info.source}, expected {WANTED['detector']}")
    return load_detector(path, **kw)


def load_model(kind: str, path: str | os.PathLike, **kw: Any) -> nn.Module | FaceDetector:
    """Load a model of ``kind`` (one of :data:`MODEL_KINDS`) from ``path``.

    ``kw`` goes to the kind's loader: :func:`load_generator` (variant, device), :func:`load_arcface` (device),
    :func:`load_parser` (device), :func:`simswap_core.detection.load_detector` (threshold, det_size, device,
    search_dirs; ``path`` may also be "yunet" or an insightface pack name). Raises InputError for an unknown kind,
    MissingModelError (file, kind expected) or CheckpointError (file, what was found, what was expected).
    """
    loaders: dict[str, Callable[..., Any]] = {"generator": load_generator, "arcface": load_arcface,
                                              "parser": load_parser, "detector": _load_detector,
                                              "patch_discriminator": load_patch_discriminator,
                                              "projected_discriminator": load_projected_discriminator,
                                              "efficientnet_lite0": load_efficientnet_lite0, "sam": load_sam}
    loader = loaders.get(kind) if isinstance(kind, str) else None
    if loader is None:
        raise InputError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    return loader(path, **kw)


def inspect_checkpoint(path: str | os.PathLike) -> dict[str, str]:
    """Describe a checkpoint: kind, arch, source format, and (generators) variant and crop size. Reads the file."""
    info = read_checkpoint(path)
    out = {"path": str(info.path), "kind": info.kind, "source": info.source}
    if info.kind != "unknown":
        out["arch"] = info.arch
    if info.kind == "generator":
        out["variant"] = _resolve_variant(None, info)
        config = GeneratorConfig.from_state_dict(info.state)
        out["crop_size"] = info.metadata.get("crop_size", str(config.default_crop_size))
    return out


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, variant: str | None = None,
                       crop_size: int | None = None, overwrite: bool = False) -> Path:
    """Convert a generator or ArcFace checkpoint to ``.safetensors`` with metadata; return ``dst``.

    Metadata: ``format=simswap``, ``kind`` (generator/arcface), ``arch``; generators also ``variant`` (given, or
    taken from the source metadata, else "official") and ``crop_size``. The weights are validated by building the
    model first. ``dst`` must end in ``.safetensors``; an existing ``dst`` is kept unless ``overwrite=True``.
    """
    from safetensors.torch import save_file

    dst = Path(dst)
    if dst.suffix != ".safetensors":
        raise InputError(f"conversion target {dst} must end in .safetensors")
    refuse_existing(dst, overwrite=overwrite)  # before the (slow) read
    info = read_checkpoint(src)
    meta = {"format": _FORMAT_TAG, "format_version": _FORMAT_VERSION, "source_file": Path(src).name}
    if info.kind == "generator":
        generator = _generator_from_info(info, variant, crop_size)
        meta.update(kind="generator", arch=generator.arch, variant=generator.variant,
                    crop_size=str(generator.crop_size))
        model: nn.Module = generator
    elif info.kind == "arcface":
        if variant is not None or crop_size is not None:
            raise InputError("variant and crop_size apply to generators only; the source is an ArcFace checkpoint")
        arcface = _arcface_from_info(info)
        cfg = arcface.config
        meta.update(kind="arcface", arch=cfg.arch, layers=",".join(map(str, cfg.layers)),
                    use_se=str(cfg.use_se).lower())
        model = arcface
    else:
        raise CheckpointError(f"{info.path}: found {describe_found(info)}; expected a SimSwap generator or ArcFace "
                              f"checkpoint")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write(dst, lambda tmp: save_file(tensors, tmp, metadata=meta), overwrite=overwrite)
