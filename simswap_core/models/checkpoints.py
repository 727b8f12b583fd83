"""Reading SimSwap checkpoint files into plain weights, and the checks every loader shares.

Accepted inputs, detected from the file's bytes (not its extension):

* ``.pth`` state dicts (the official ``latest_net_G.pth`` / ``550000_net_G.pth`` / ``79999_iter.pth``) and
  the official ``arcface_checkpoint.tar`` -- a whole pickled ``models.arcface_models.ResNet`` (2023 file) or a dict
  whose ``'model'`` is a ``DataParallel``-wrapped ``models.ResNet`` (2021 file) -- all read with the allow-list
  unpickler (:mod:`.safe_pickle`, :mod:`.pickle_containers`; never ``torch.load``); only the weights are used,
  in our own module;
* ``.safetensors`` files written by :func:`~.loaders.convert_checkpoint` (metadata: kind, variant, crop size,
  arch) or any safetensors file with the official keys.

No code from a file ever runs, and nothing a file declares is trusted before it is checked: the container's limits
(:mod:`.pickle_scan`, :mod:`.pickle_containers`, :mod:`.safetensors_header`), then every tensor's dtype and shape
against the network its keys imply (:func:`check_declared`, on meta tensors), and only then are weights read.
A missing file raises :class:`~simswap_core.errors.MissingModelError` naming the
file and the kind expected; a damaged or wrong-kind file raises :class:`~simswap_core.errors.CheckpointError`
naming the file, what was found and what was expected. Building modules from the weights is :mod:`.loaders`.
"""
from __future__ import annotations

import math
import os
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, MissingModelError
from ..networks.arcface import ArcFaceConfig
from ..networks.generator import GeneratorConfig
from .model_file import check_model_file, sniff_format
from .pickle_containers import load_checkpoint_pickle
from .safe_pickle import PickledModule, materialize, module_state_dict
from .safetensors_header import check_metadata, read_safetensors_header

__all__ = ["CheckpointInfo", "WANTED", "build_module", "check_declared", "check_kind", "compare_state",
           "describe_found", "read_checkpoint"]

_WRAPPER_KEYS = ("state_dict", "model", "net", "netG", "module")

#: kind -> what a file of that kind is, as error messages say what was expected.
WANTED: dict[str, str] = {
    "generator": "a SimSwap generator (e.g. latest_net_G.pth, 550000_net_G.pth)",
    "arcface": "the ArcFace identity encoder (arcface_checkpoint.tar or a state dict of it)",
    "parser": "the BiSeNet face parser (79999_iter.pth)",
    "detector": "an ONNX face detector (YuNet or SCRFD .onnx)",
    "patch_discriminator": "a PatchGAN discriminator of SimSwap's older training (latest_net_D1.pth, ..._D2.pth)",
    "projected_discriminator": "the projected discriminator of SimSwap's train.py (e.g. 10000_net_D.pth)",
    "efficientnet_lite0": "EfficientNet-lite0 weights (timm's tf_efficientnet_lite0 .pth or a .safetensors of them)",
    "sam": "a Segment Anything (SAM v1) checkpoint (sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth, sam_vit_h_4b8939.pth)",
}
_FOUND = {
    "generator": "a SimSwap generator (keys first_layer.*, BottleNeck.*)",
    "arcface": "an ArcFace identity encoder (keys conv1.*, layer1..4.*, fc.*)",
    "parser": "a BiSeNet face parser (keys cp.*, ffm.*, conv_out*)",
    "patch_discriminator": "a PatchGAN discriminator (keys down1..4.*, conv1.*, conv2.*)",
    "projected_discriminator": "a projected discriminator (keys feature_network.*, discriminator.mini_discs.*)",
    "efficientnet_lite0": "EfficientNet-lite0 weights (keys conv_stem.*, blocks.*)",
    "sam": "a Segment Anything model (keys image_encoder.*, prompt_encoder.*, mask_decoder.*)",
}
_NOT = {"generator": "a SimSwap generator", "arcface": "an ArcFace identity encoder",
        "parser": "a 19-class face-parsing BiSeNet", "patch_discriminator": "a SimSwap PatchGAN discriminator",
        "projected_discriminator": "a SimSwap projected discriminator",
        "efficientnet_lite0": "EfficientNet-lite0 weights", "sam": "a Segment Anything (SAM v1) model"}
#: kinds whose files may use torch's newer spectral-norm names (mapped by normalize_state_keys before any check)
_DISCRIMINATOR_KINDS = ("patch_discriminator", "projected_discriminator")
_READABLE = ("a PyTorch checkpoint (.pth/.tar state dict or the official pickled model) or a .safetensors file")


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds, as read by :func:`read_checkpoint`.

    kind: "generator" | "arcface" | "parser" | "unknown"; source: how the weights were stored; metadata:
    safetensors metadata (empty for .pth files).
    """

    path: Path
    kind: str
    source: str
    state: dict[str, Tensor] = field(repr=False)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        """The architecture name of the weights (e.g. "g224", "r101se", "bisenet19"), or "unknown"."""
        if self.kind == "generator":
            return GeneratorConfig.from_state_dict(self.state).arch
        if self.kind == "arcface":
            return ArcFaceConfig.from_state_dict(self.state).arch
        if self.kind == "parser":
            return "bisenet19"
        if self.kind == "sam":
            from ..networks.sam import SamConfig, sam_state

            return SamConfig.from_state_dict(sam_state(self.state)).arch
        return {"patch_discriminator": "patchgan", "projected_discriminator": "projected_efficientnet_lite0",
                "efficientnet_lite0": "tf_efficientnet_lite0"}.get(self.kind, "unknown")


def _detect_kind(state: Mapping[str, Tensor]) -> str:
    if "first_layer.1.weight" in state and any(k.startswith("BottleNeck.") for k in state):
        return "generator"
    if "conv1.weight" in state and "layer1.0.bn0.weight" in state and "fc.weight" in state:
        return "arcface"
    if any(k.startswith("cp.resnet.") for k in state) and any(k.startswith("conv_out") for k in state):
        return "parser"
    if "down1.0.weight" in state and "conv2.0.weight" in state:
        return "patch_discriminator"
    if any(k.startswith("feature_network.pretrained.") for k in state) and any(
            k.startswith("discriminator.mini_discs.") for k in state):
        return "projected_discriminator"
    if ("conv_stem.weight" in state and "blocks.0.0.conv_dw.weight" in state) or (
            "layer0.0.weight" in state and "layer0.3.0.conv_dw.weight" in state):
        return "efficientnet_lite0"
    if "image_encoder.patch_embed.proj.weight" in state and "mask_decoder.iou_token.weight" in state and \
            "prompt_encoder.no_mask_embed.weight" in state and "mask_decoder.hf_token.weight" not in state:
        return "sam"  # SAM v1 (HQ-SAM's extra hf_* decoder and SAM 2's trunk are other networks)
    return "unknown"


def _describe_keys(state: Mapping[str, Any], n: int = 4) -> str:
    keys = list(state)
    more = f", ... ({len(keys)} keys)" if len(keys) > n else ""
    return "[" + ", ".join(reprlib.repr(k) for k in keys[:n]) + more + "]"  # bounded: keys come from the file


def _unwrap(obj: Any, source: str, where: str = "") -> tuple[dict[str, Tensor], str]:
    """Find the state dict inside a loaded checkpoint object."""
    if isinstance(obj, PickledModule):
        name = obj.pickle_global
        if name.endswith("DataParallel") or name.endswith("DistributedDataParallel"):
            inner = (obj.pickle_state or {}).get("_modules", {}).get("module") if isinstance(
                obj.pickle_state, dict) else None
            if not isinstance(inner, PickledModule):
                raise CheckpointError(f"{source}: pickled {name}{where} holds no wrapped module")
            obj, name = inner, inner.pickle_global
        return module_state_dict(obj, source), f"pickled module {name}{where}"
    if isinstance(obj, Mapping):
        if obj and all(isinstance(k, str) for k in obj) and all(isinstance(v, Tensor) for v in obj.values()):
            state = dict(obj)
            if all(k.startswith("module.") for k in state):
                state = {k[len("module."):]: v for k, v in state.items()}
            return state, f"state dict{where}"
        for key in _WRAPPER_KEYS:
            if key in obj and (isinstance(obj[key], (Mapping, PickledModule))):
                return _unwrap(obj[key], source, f"{where}['{key}']")
        raise CheckpointError(
            f"{source}: found a dict with keys {_describe_keys(obj)} that is not a state dict; expected a state "
            f"dict (parameter name -> tensor), a pickled SimSwap ArcFace model, or a dict holding one under 'model'"
        )
    raise CheckpointError(
        f"{source}: found a pickled {type(obj).__name__}, expected a state dict or a pickled SimSwap ArcFace model"
    )


def read_checkpoint(path: str | os.PathLike, kind: str | None = None) -> CheckpointInfo:
    """Read the weights of a checkpoint file without building a model (no code from the file runs).

    ``kind`` (a key of :data:`WANTED`) only words the errors: what a missing or unreadable file should have been.
    Everything the file declares is checked before a weight is read: the container's limits, every tensor's
    storage, dtype and shape against the architecture its keys imply, and (safetensors) the metadata values.
    """
    path = Path(path)
    wanted = f"{WANTED[kind]} as " if kind in WANTED else ""
    if not path.exists() and not path.is_symlink():
        what = f"{kind} file" if kind in WANTED else "checkpoint file"
        raise MissingModelError(f"{what} {path} does not exist (or is not a file); expected {wanted}{_READABLE}")
    check_model_file(path, f"{wanted}{_READABLE}")
    source = str(path)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        return _read_safetensors(path, source)
    if fmt in ("zip", "legacy"):

        def finish(obj: Any) -> tuple[dict[str, Tensor], str]:
            state, how = _unwrap(obj, source)
            if not state:
                raise CheckpointError(f"{source}: the {how} holds no tensors; expected model weights")
            check_declared(path, state, _detect_kind(state), f"the {how}")
            return {k: materialize(v) for k, v in state.items()}, how

        state, how = load_checkpoint_pickle(path, finish)
        return CheckpointInfo(path, _detect_kind(state), how, state, {})
    found = {"empty": "an empty file", "tar": "a tar archive (pre-2018 torch format, unsupported)"}.get(
        fmt, "data that is neither a PyTorch checkpoint nor a .safetensors file")
    if fmt == "unknown" and path.suffix.lower() == ".onnx":
        found = "an ONNX model (a face detector?), not a PyTorch checkpoint"
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        head = b""
    raise CheckpointError(f"{source}: found {found} (first bytes {head!r}); expected {wanted}{_READABLE}")


def _read_safetensors(path: Path, source: str) -> CheckpointInfo:
    """A .safetensors file: header and metadata checked (and the declared tensors against their architecture)
    before the library reads a byte of weights."""
    header = read_safetensors_header(path)
    metadata = check_metadata(header.metadata, source)
    declared = header.meta_state()
    check_declared(path, declared, _detect_kind(declared), "the safetensors file")
    try:
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError for damaged files
        raise CheckpointError(f"{source}: found a damaged .safetensors file ({exc}): truncated or corrupted; "
                              f"expected a complete .safetensors file") from None
    info = CheckpointInfo(path, _detect_kind(state), "safetensors", state, metadata)
    arch = metadata.get("arch")
    if arch is not None and info.kind in ("generator", "arcface") and arch != info.arch:
        raise CheckpointError(f"{source}: its metadata says arch={arch!r} but its weights are the {info.arch} "
                              f"layout; expected metadata that matches the weights")
    return info


#: the dtypes weights may have (converted to float32 when loaded); counters (num_batches_tracked) are integers
_WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_COUNTER_DTYPES = (torch.int64, torch.int32)
_MAX_KEYS = 10_000
_MAX_GENERATOR_BLOCKS = 64
_MAX_ARCFACE_BLOCKS = 200


def _expected_shapes(path: Path, state: Mapping[str, Tensor], kind: str) -> tuple[dict[str, tuple[int, ...]], str]:
    """The state_dict shapes of the network ``state``'s keys imply, from a module built on the meta device (no
    memory), and its name; ({}, "") for an unknown kind."""
    from ..networks.arcface import IResNet
    from ..networks.bisenet import NUM_CLASSES, BiSeNet
    from ..networks.generator import SimSwapGenerator

    factory: Callable[[], nn.Module]
    try:
        if kind == "generator":
            gconfig = GeneratorConfig.from_state_dict(state)
            if gconfig.n_blocks > _MAX_GENERATOR_BLOCKS:
                raise CheckpointError(f"{path}: found a generator with {gconfig.n_blocks} ID blocks, expected at most "
                                      f"{_MAX_GENERATOR_BLOCKS} (the official layouts have 9)")
            factory, what = (lambda: SimSwapGenerator(gconfig)), f"the {gconfig.arch} generator"
        elif kind == "arcface":
            aconfig = ArcFaceConfig.from_state_dict(state)
            if sum(aconfig.layers) > _MAX_ARCFACE_BLOCKS:
                raise CheckpointError(f"{path}: found an ArcFace with {sum(aconfig.layers)} blocks, expected at most "
                                      f"{_MAX_ARCFACE_BLOCKS}")
            factory, what = (lambda: IResNet(aconfig)), f"the {aconfig.arch} ArcFace"
        elif kind == "parser":
            factory, what = (lambda: BiSeNet(NUM_CLASSES)), "the 19-class BiSeNet face parser"
        elif kind == "patch_discriminator":
            from ..networks.patch_discriminator import PatchDiscriminator

            factory, what = PatchDiscriminator, "the PatchGAN discriminator"
        elif kind == "projected_discriminator":
            from ..networks.projected_discriminator import ProjectedDiscriminator

            factory, what = ProjectedDiscriminator, "the projected discriminator"
        elif kind == "efficientnet_lite0":
            from ..networks.efficientnet_lite import EfficientNetLite0Features

            factory, what = EfficientNetLite0Features, "EfficientNet-lite0 (our layout)"
        elif kind == "sam":
            from ..networks.sam import SamConfig, SamModel, check_sam_size

            sconfig = SamConfig.from_state_dict(state)
            check_sam_size(sconfig, str(path))
            factory, what = (lambda: SamModel(sconfig)), f"the SAM {sconfig.arch} network"
        else:
            return {}, ""
        with torch.device("meta"):
            module = factory()
    except CheckpointError:
        raise
    except (KeyError, ValueError, IndexError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the {kind} keys are incomplete or inconsistent ({type(exc).__name__}: "
                              f"{str(exc)[:200]}); expected the official layout") from None
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}, what


def state_mismatch(expected: Mapping[str, tuple[int, ...]], state: Mapping[str, Tensor]) -> list[str]:
    """What keeps ``state`` from having exactly the keys and shapes of ``expected`` (missing keys, unexpected keys,
    wrong shapes; a missing ``num_batches_tracked`` is tolerated: files of old torch versions lack it), as short
    message parts; empty when it fits. Works on meta tensors."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {v})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys {missing[:4]}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} keys {[k[:80] for k in unexpected[:4]]}")
    if wrong:
        parts.append(f"wrong shapes {wrong[:4]}")
    return parts


def compare_state(path: Path, how: str, what: str, expected: Mapping[str, tuple[int, ...]],
                  state: Mapping[str, Tensor]) -> None:
    """Raise CheckpointError unless ``state`` has exactly the keys and shapes of ``expected`` (state_mismatch)."""
    parts = state_mismatch(expected, state)
    if parts:
        raise CheckpointError(f"{path}: {how} does not fit {what}: " + "; ".join(parts))


def check_declared(path: Path, state: Mapping[str, Tensor], kind: str, how: str) -> None:
    """Check what a file declares before its weights are read (``state`` may hold meta tensors): for a known
    ``kind``, every tensor's dtype (real floats; integer ``num_batches_tracked`` counters) and the keys and shapes
    of the network the keys imply. Unknown kinds are left to :func:`check_kind`, which refuses them."""
    if len(state) > _MAX_KEYS:
        raise CheckpointError(f"{path}: {how} holds {len(state)} tensors (limit {_MAX_KEYS}); expected a SimSwap "
                              f"model")
    if kind == "unknown":
        return
    if kind in _DISCRIMINATOR_KINDS:
        from ..networks.projected_discriminator import normalize_state_keys

        state = normalize_state_keys(state)
    if kind == "sam":
        from ..networks.sam import sam_state

        state = sam_state(state)
    for key, value in state.items():
        counter = key.endswith("num_batches_tracked")
        allowed = _COUNTER_DTYPES if counter else _WEIGHT_DTYPES
        if value.dtype not in allowed:
            names = ", ".join(str(d).replace("torch.", "") for d in allowed)
            raise CheckpointError(f"{path}: tensor {key} of {how} is {str(value.dtype).replace('torch.', '')}; "
                                  f"expected {names} for a {kind} {'counter' if counter else 'weight'}")
    if kind == "efficientnet_lite0" and "conv_stem.weight" in state:  # timm's names: checked by the converter
        from ..networks.efficientnet_lite import check_timm_shapes

        check_timm_shapes(state, f"{path}: {how}")
        return
    expected, what = _expected_shapes(path, state, kind)
    compare_state(path, how, what, expected, state)


def describe_found(info: CheckpointInfo) -> str:
    """What ``info`` holds, in words, for error messages."""
    return _FOUND.get(info.kind, f"weights with keys {_describe_keys(info.state)}")


def check_kind(info: CheckpointInfo, expected: str) -> None:
    """Raise CheckpointError (file, what was found, what was expected) unless ``info`` holds ``expected`` weights,
    judged by the file's ``kind`` metadata (if any) and by its keys."""
    wanted = WANTED[expected]
    meta_kind = info.metadata.get("kind")
    if meta_kind and meta_kind != expected:
        article = "an" if meta_kind[:1].lower() in "aeiou" else "a"
        raise CheckpointError(f"{info.path}: found {article} {meta_kind} checkpoint (its metadata says "
                              f"kind={meta_kind!r}), expected {wanted}")
    if info.kind == expected:
        return
    found = describe_found(info)
    if info.kind == "unknown":
        found += f", which are not {_NOT[expected]},"
    raise CheckpointError(f"{info.path}: found {found} in the {info.source}, expected {wanted}")


M = TypeVar("M", bound=nn.Module)


def build_module(factory: Callable[[], M], info: CheckpointInfo, what: str) -> M:
    """Build a module on the meta device, materialise it and load ``info.state`` strictly (float32, eval)."""
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device="cpu")
    reset_constants = getattr(module, "reset_constants", None)
    if reset_constants is not None:
        reset_constants()
    state = dict(info.state)
    expected = module.state_dict()
    for key in expected:  # files from old torch versions lack num_batches_tracked
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.int64)
    compare_state(info.path, f"the {info.source}", what, {k: tuple(v.shape) for k, v in expected.items()}, state)
    for key, value in state.items():
        # aminmax propagates NaN and shows +-inf in one pass without allocating (isfinite().all() is ~10x slower)
        if value.is_floating_point() and value.numel():
            lo, hi = torch.aminmax(value)
            if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):
                raise CheckpointError(f"{info.path}: found NaN or infinity in tensor {key}; expected finite weights "
                                      f"(the file is corrupted)")
    module.load_state_dict(state, strict=True)
    return module.float().eval()
