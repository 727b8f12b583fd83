"""Loading and converting SimSwap checkpoints (generators and the ArcFace identity encoder).

Accepted inputs, detected from the file's bytes (not its extension):

* ``.pth`` state dicts (the official ``latest_net_G.pth`` / ``550000_net_G.pth``), read with
  ``torch.load(weights_only=True)``;
* the official ``arcface_checkpoint.tar`` -- a whole pickled ``models.arcface_models.ResNet`` (2023 file) or a dict
  whose ``'model'`` is a ``DataParallel``-wrapped ``models.ResNet`` (2021 file) -- read with the allow-list
  unpickler of :mod:`simswap_core.safe_pickle`; only its weights are used, in our own module;
* ``.safetensors`` files written by :func:`convert_checkpoint` (metadata: kind, variant, crop size, arch) or any
  safetensors file with the official keys.

No code from a file ever runs. Damaged or wrong-kind files raise :class:`~simswap_core.errors.CheckpointError`
naming the file, what was found and what was expected. Returned modules are float32, in eval mode.
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .errors import CheckpointError, InputError, MissingModelError
from .networks.arcface import ArcFaceConfig, IResNet
from .networks.generator import GeneratorConfig, SimSwapGenerator, normalize_variant
from .safe_pickle import PickledModule, module_state_dict, restricted_load, sniff_format

__all__ = [
    "CheckpointInfo",
    "DEFAULT_GENERATOR_VARIANT",
    "convert_checkpoint",
    "inspect_checkpoint",
    "load_arcface",
    "load_generator",
    "read_checkpoint",
]

#: Output convention used when neither the caller nor the file's metadata says otherwise: the released
#: 224 and 512 checkpoints use the Tanh head (spec section 0). Use variant="fix" for train.py checkpoints.
DEFAULT_GENERATOR_VARIANT = "official"

_FORMAT_TAG = "simswap"
_FORMAT_VERSION = "1"
_ARCFACE_ROOTS = {"models.arcface_models.ResNet", "models.ResNet"}
_WRAPPER_KEYS = ("state_dict", "model", "net", "netG", "module")


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds, as read by :func:`read_checkpoint`.

    kind: "generator" | "arcface" | "unknown"; source: how the weights were stored; metadata: safetensors
    metadata (empty for .pth files).
    """

    path: Path
    kind: str
    source: str
    state: dict[str, Tensor] = field(repr=False)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        if self.kind == "generator":
            return GeneratorConfig.from_state_dict(self.state).arch
        if self.kind == "arcface":
            return ArcFaceConfig.from_state_dict(self.state).arch
        return "unknown"


def _detect_kind(state: Mapping[str, Tensor]) -> str:
    if "first_layer.1.weight" in state and any(k.startswith("BottleNeck.") for k in state):
        return "generator"
    if "conv1.weight" in state and "layer1.0.bn0.weight" in state and "fc.weight" in state:
        return "arcface"
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


def read_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Read the weights of a checkpoint file without building a model (no code from the file runs)."""
    path = Path(path)
    if not path.is_file():
        raise MissingModelError(f"checkpoint file {path} does not exist (or is not a file)")
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
    try:
        head = path.read_bytes()[:16]
    except OSError:
        head = b""
    raise CheckpointError(
        f"{source}: found {found} (first bytes {head!r}); expected a PyTorch checkpoint (.pth/.tar state dict or the "
        f"official pickled model) or a .safetensors file"
    )


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


def _check_kind(info: CheckpointInfo, expected: str) -> None:
    wanted = {
        "generator": "a SimSwap generator (e.g. latest_net_G.pth, 550000_net_G.pth)",
        "arcface": "the ArcFace identity encoder (arcface_checkpoint.tar or a state dict of it)",
    }[expected]
    meta_kind = info.metadata.get("kind")
    if meta_kind and meta_kind != expected:
        article = "an" if meta_kind[:1].lower() in "aeiou" else "a"
        raise CheckpointError(f"{info.path}: found {article} {meta_kind} checkpoint (its metadata says "
                              f"kind={meta_kind!r}), "
                              f"expected {wanted}")
    if info.kind == expected:
        return
    found = {
        "generator": "a SimSwap generator (keys first_layer.*, BottleNeck.*)",
        "arcface": "an ArcFace identity encoder (keys conv1.*, layer1..4.*, fc.*)",
    }.get(info.kind, f"weights with keys {_describe_keys(info.state)}")
    raise CheckpointError(f"{info.path}: found {found} in the {info.source}, expected {wanted}")


def _build(factory, info: CheckpointInfo, what: str) -> nn.Module:
    """Build a module on the meta device, materialise it and load ``info.state`` strictly (float32, eval)."""
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device="cpu")
    if hasattr(module, "reset_constants"):
        module.reset_constants()
    state = dict(info.state)
    expected = module.state_dict()
    for key, value in expected.items():  # files from old torch versions lack num_batches_tracked
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
    _check_kind(info, "generator")
    chosen = _resolve_variant(variant, info)
    try:
        config = GeneratorConfig.from_state_dict(info.state, chosen)
    except (KeyError, InputError) as exc:
        raise CheckpointError(f"{info.path}: generator keys are incomplete ({exc}); expected the official layout")
    if crop_size is None and "crop_size" in info.metadata:
        try:
            crop_size = int(info.metadata["crop_size"])
        except ValueError:
            raise CheckpointError(f"{info.path}: metadata crop_size {info.metadata['crop_size']!r} is not an int")
    if config.deep and variant is None and "variant" not in info.metadata:
        warnings.warn(
            f"{info.path}: a deep generator (down4/up4) is being loaded with the default official Tanh convention; "
            f"deep checkpoints usually come from train.py and need variant='fix'", stacklevel=3)
    return _build(lambda: SimSwapGenerator(config, crop_size=crop_size), info, f"the {config.arch} generator")


def _arcface_from_info(info: CheckpointInfo) -> IResNet:
    _check_kind(info, "arcface")
    if info.source.startswith("pickled module") and not any(r in info.source for r in _ARCFACE_ROOTS):
        raise CheckpointError(f"{info.path}: found a {info.source}, expected the official ArcFace "
                              f"models.arcface_models.ResNet")
    try:
        config = ArcFaceConfig.from_state_dict(info.state)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{info.path}: ArcFace keys are incomplete or inconsistent ({exc})") from None
    return _build(lambda: IResNet(config), info, f"the {config.arch} ArcFace")


def load_generator(path: str | os.PathLike, *, variant: str | None = None,
                   device: str | torch.device | None = None) -> SimSwapGenerator:
    """Load a SimSwap generator (224, 512 beta or deep layout, detected from the keys); float32, eval mode.

    variant: "official" (Tanh head: the released checkpoints) or "fix"/"train" (train.py checkpoints: no Tanh,
    ImageNet-normalised I/O). None: the ``variant`` metadata of a converted .safetensors, else "official".
    The returned module maps RGB [0,1] ``[N,3,S,S]`` + unit-norm ``[N,512]`` -> RGB [0,1] for every variant.
    """
    if variant is not None:
        variant = normalize_variant(variant)  # a bad option fails before the (large) file is read
    model = _generator_from_info(read_checkpoint(path), variant, None)
    return model.to(device) if device is not None else model


def load_arcface(path: str | os.PathLike, *, device: str | torch.device | None = None) -> IResNet:
    """Load the ArcFace identity encoder (official pickled file of either generation, state dict, .safetensors).

    The architecture (blocks per stage, SE or not) is inferred from the keys. Float32, eval mode;
    input ImageNet-normalised RGB ``[N,3,112,112]``, output raw ``[N,512]``.
    """
    model = _arcface_from_info(read_checkpoint(path))
    return model.to(device) if device is not None else model


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


def atomic_write(dst: Path, write, *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` then move the temp file onto ``dst`` atomically; never replaces an existing
    ``dst`` unless ``overwrite``."""
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise InputError(f"{dst} already exists; refusing to overwrite it (pass overwrite=True to replace it)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        write(tmp)
        if overwrite:
            os.replace(tmp, dst)
        else:
            try:
                os.link(tmp, dst)  # fails if dst appeared meanwhile: never clobbers a file
            except FileExistsError:
                raise InputError(f"{dst} already exists; refusing to overwrite it (pass overwrite=True)") from None
            except OSError:  # file systems without hard links
                if dst.exists():
                    raise InputError(f"{dst} already exists; refusing to overwrite it") from None
                os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst


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
    if dst.exists() and not overwrite:
        raise InputError(f"{dst} already exists; refusing to overwrite it (pass overwrite=True to replace it)")
    info = read_checkpoint(src)
    meta = {"format": _FORMAT_TAG, "format_version": _FORMAT_VERSION, "source_file": Path(src).name}
    if info.kind == "generator":
        model: nn.Module = _generator_from_info(info, variant, crop_size)
        meta.update(kind="generator", arch=model.arch, variant=model.variant, crop_size=str(model.crop_size))
    elif info.kind == "arcface":
        if variant is not None or crop_size is not None:
            raise InputError("variant and crop_size apply to generators only; the source is an ArcFace checkpoint")
        model = _arcface_from_info(info)
        cfg = model.config
        meta.update(kind="arcface", arch=cfg.arch, layers=",".join(map(str, cfg.layers)),
                    use_se=str(cfg.use_se).lower())
    else:
        raise CheckpointError(f"{info.path}: found weights with keys {_describe_keys(info.state)}; expected a SimSwap "
                              f"generator or ArcFace checkpoint")
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write(dst, lambda tmp: save_file(tensors, tmp, metadata=meta), overwrite=overwrite)
