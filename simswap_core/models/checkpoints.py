"""Reading SimSwap checkpoint files into plain weights, and the checks every loader shares.

Accepted inputs, detected from the file's bytes (not its extension):

* ``.pth`` state dicts (the official ``latest_net_G.pth`` / ``550000_net_G.pth`` / ``79999_iter.pth``), read with
  ``torch.load(weights_only=True)``;
* the official ``arcface_checkpoint.tar`` -- a whole pickled ``models.arcface_models.ResNet`` (2023 file) or a dict
  whose ``'model'`` is a ``DataParallel``-wrapped ``models.ResNet`` (2021 file) -- read with the allow-list
  unpickler (:mod:`.safe_pickle`, :mod:`.pickle_containers`); only its weights are used, in our own module;
* ``.safetensors`` files written by :func:`~.loaders.convert_checkpoint` (metadata: kind, variant, crop size,
  arch) or any safetensors file with the official keys.

No code from a file ever runs. A missing file raises :class:`~simswap_core.errors.MissingModelError` naming the
file and the kind expected; a damaged or wrong-kind file raises :class:`~simswap_core.errors.CheckpointError`
naming the file, what was found and what was expected. Building modules from the weights is :mod:`.loaders`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, MissingModelError
from ..networks.arcface import ArcFaceConfig
from ..networks.generator import GeneratorConfig
from .pickle_containers import restricted_load, sniff_format
from .safe_pickle import PickledModule, module_state_dict

__all__ = ["CheckpointInfo", "WANTED", "build_module", "check_kind", "describe_found", "read_checkpoint"]

_WRAPPER_KEYS = ("state_dict", "model", "net", "netG", "module")

#: kind -> what a file of that kind is, as error messages say what was expected.
WANTED: dict[str, str] = {
    "generator": "a SimSwap generator (e.g. latest_net_G.pth, 550000_net_G.pth)",
    "arcface": "the ArcFace identity encoder (arcface_checkpoint.tar or a state dict of it)",
    "parser": "the BiSeNet face parser (79999_iter.pth)",
    "detector": "an ONNX face detector (YuNet or SCRFD .onnx)",
}
_FOUND = {
    "generator": "a SimSwap generator (keys first_layer.*, BottleNeck.*)",
    "arcface": "an ArcFace identity encoder (keys conv1.*, layer1..4.*, fc.*)",
    "parser": "a BiSeNet face parser (keys cp.*, ffm.*, conv_out*)",
}
_NOT = {"generator": "a SimSwap generator", "arcface": "an ArcFace identity encoder",
        "parser": "a 19-class face-parsing BiSeNet"}
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
        return "unknown"


def _detect_kind(state: Mapping[str, Tensor]) -> str:
    if "first_layer.1.weight" in state and any(k.startswith("BottleNeck.") for k in state):
        return "generator"
    if "conv1.weight" in state and "layer1.0.bn0.weight" in state and "fc.weight" in state:
        return "arcface"
    if any(k.startswith("cp.resnet.") for k in state) and any(k.startswith("conv_out") for k in state):
        return "parser"
    return "unknown"


def _describe_keys(state: Mapping[str, Any], n: int = 4) -> str:
    keys = list(state)
    more = f", ... ({len(keys)} keys)" if len(keys) > n else ""
    return "[" + ", ".join(repr(k) for k in keys[:n]) + more + "]"


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
    """
    path = Path(path)
    wanted = f"{WANTED[kind]} as " if kind in WANTED else ""
    if not path.is_file():
        what = f"{kind} file" if kind in WANTED else "checkpoint file"
        raise MissingModelError(f"{what} {path} does not exist (or is not a file); expected {wanted}{_READABLE}")
    source = str(path)
    fmt = sniff_format(path)
    metadata: dict[str, str] = {}
    if fmt == "safetensors":
        try:
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as fh:
                metadata = dict(fh.metadata() or {})
            state = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError / OSError for damaged files
            raise CheckpointError(f"{source}: found a damaged .safetensors file ({exc}): truncated or corrupted; "
                                  f"expected a complete .safetensors file") from None
        return CheckpointInfo(path, _detect_kind(state), "safetensors", state, metadata)
    if fmt in ("zip", "legacy"):
        if fmt == "zip":
            _verify_zip(path, source)  # torch.load checks no CRC-32 and would hand TorchScript to torch.jit
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            # Refused globals (a pickled module, or anything else) or a damaged file: the allow-list unpickler
            # either reads the official pickled ArcFace, or raises a precise Checkpoint/UnsafeCheckpointError.
            obj = restricted_load(path)
        state, how = _unwrap(obj, source)
        if not state:
            raise CheckpointError(f"{source}: the {how} holds no tensors; expected model weights")
        return CheckpointInfo(path, _detect_kind(state), how, state, metadata)
    found = {"empty": "an empty file", "tar": "a tar archive (pre-2018 torch format, unsupported)"}.get(
        fmt, "data that is neither a PyTorch checkpoint nor a .safetensors file")
    if fmt == "unknown" and path.suffix.lower() == ".onnx":
        found = "an ONNX model (a face detector?), not a PyTorch checkpoint"
    try:
        head = path.read_bytes()[:16]
    except OSError:
        head = b""
    raise CheckpointError(f"{source}: found {found} (first bytes {head!r}); expected {wanted}{_READABLE}")


def _verify_zip(path: Path, source: str) -> None:
    """Refuse TorchScript archives, and check every record of a torch zip checkpoint against its CRC-32 (torch.load
    does not: a flipped bit in a weight would load silently). A zip that cannot be opened is left to the loaders,
    whose messages say more."""
    import zipfile
    import zlib

    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError):
        return
    try:
        with zf:
            if any(n.endswith("/constants.pkl") for n in zf.namelist()):
                raise CheckpointError(f"{source}: found a TorchScript archive (torch.jit.save), not a checkpoint; "
                                      f"expected a state dict or the official pickled model")
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError) as exc:
        raise CheckpointError(f"{source}: found a damaged zip archive ({exc}); expected an intact PyTorch "
                              f"checkpoint (the file is corrupted: download or copy it again)") from None
    if bad is not None:
        raise CheckpointError(f"{source}: found a corrupted record '{bad}' (CRC-32 mismatch); expected an intact "
                              f"PyTorch checkpoint (the file is corrupted: download or copy it again)")


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
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys {missing[:4]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys {unexpected[:4]}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:4]}")
        raise CheckpointError(f"{info.path}: the {info.source} does not fit {what}: " + "; ".join(parts))
    for key, value in state.items():
        # aminmax propagates NaN and shows +-inf in one pass without allocating (isfinite().all() is ~10x slower)
        if value.is_floating_point() and value.numel():
            lo, hi = torch.aminmax(value)
            if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):
                raise CheckpointError(f"{info.path}: found NaN or infinity in tensor {key}; expected finite weights "
                                      f"(the file is corrupted)")
    module.load_state_dict(state, strict=True)
    return module.float().eval()
