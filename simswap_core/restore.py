"""Face restoration of aligned face crops: GFPGAN, CodeFormer, RestoreFormer or any spandrel image model.

    restorer = load_restorer("GFPGANv1.4.pth", device="cuda")     # spandrel recognises the architecture
    restored = restorer(crops)                                     # [F,3,S,S] RGB [0,1] -> same shape, device
    blended = restore_faces(crops, restorer, visibility=0.7)       # 0 = unchanged, 1 = fully restored

The network is a spandrel ``ImageModelDescriptor`` (spandrel is an optional dependency of the library: the extra
``pip install -e '.[restore]'``, i.e. ``pip install "spandrel>=0.4"``; ComfyUI ships it). What a model is decides
how a crop goes through it:

* **face models** (spandrel purpose ``FaceSR``: GFPGAN v1.3/v1.4 ``GFPGANv1Clean``, RestoreFormer, and CodeFormer
  when ``spandrel_extra_arches`` is installed) work at their native 512x512: every crop is resized to 512
  (bicubic, antialiased when shrinking), restored, and resized back to its own size S.
  GFPGAN and CodeFormer are called on the network directly with their training convention, values in [-1,1]
  (spandrel 0.4's descriptors for these two pass [0,1] straight in, which gives grey noise; ComfyUI issue 3594).
  GFPGAN runs with its stored noise maps (``randomize_noise=False``), so a face restores the same way on every
  frame of a video; CodeFormer takes ``fidelity`` (its ``w``: 0 = strongest restoration, 1 = closest to the
  input). RestoreFormer goes through its spandrel descriptor (which normalises itself).
* **any other single-image model** (super-resolution such as ESRGAN / RealESRGAN / SwinIR at scale 2 or 4,
  denoisers at scale 1): the crop goes in at its own size S, the ``S*scale`` result is resized back to S with an
  antialiased bicubic filter. Upscaling a face and shrinking it again is the common artist's trick to sharpen it
  without a face prior (no hallucinated identity, so the swapped identity is kept best).

Faces are batched (``batch_size`` at a time; halved automatically when the accelerator runs out of memory),
computed in float32 (``precision="auto"`` uses autocast on CUDA where the descriptor supports fp16/bf16), and the
result is clamped to [0,1], on the device and in the dtype of the input crops.

Model files are read by :func:`read_restorer_state` with the project's own readers (the allow-list unpickler or
the checked safetensors header; never ``torch.load``, never TorchScript): no code from a model file runs. The
plain state dict goes to spandrel's ``ModelLoader().load_from_state_dict``. Supported: whatever spandrel (plus
``spandrel_extra_arches`` when installed) recognises; GPEN (ReActor's ``GPEN-BFR-*.onnx``) and ``.onnx`` files are
not spandrel models.

Licences (the user picks the files): GFPGAN's code is Apache-2.0 but its released weights carry their own terms
(they include StyleGAN2 and other components under separate licences); CodeFormer weights are under the S-Lab
License 1.0 (non-commercial); RestoreFormer is Apache-2.0 code with research weights.

``import spandrel`` imports torchvision (its RestoreFormer and LaMa architectures use it; spandrel declares
torchvision a dependency). This module imports spandrel only when a model is loaded or wrapped, so
``import simswap_core`` never needs either.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_images, check_integer, check_number
from .errors import CheckpointError, DependencyError, InputError

if TYPE_CHECKING:
    from .progress import ProgressFn

__all__ = ["FACE_MODEL_SIZE", "SPANDREL_INSTALL", "FaceRestorer", "describe_model", "load_restorer",
           "load_restorer_model", "read_restorer_state", "resize_crops", "restore_faces"]

#: the command named when spandrel is missing
SPANDREL_INSTALL = 'pip install "spandrel>=0.4"'
#: the size face-restoration networks (GFPGAN, CodeFormer, RestoreFormer) are trained and run at
FACE_MODEL_SIZE = 512
_WRAPPER_KEYS = ("params_ema", "params-ema", "params", "model_state_dict", "state_dict", "model", "net", "netG",
                 "module", "g_ema")
_PREFIXES = ("module.", "netG.")
_MAX_TENSORS = 20_000
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_COUNTER_DTYPES = (torch.int64, torch.int32, torch.uint8, torch.bool)
_EXPECTED = ("a face-restoration or upscale model as a PyTorch state dict (.pth) or .safetensors file, e.g. "
             "GFPGANv1.4.pth, codeformer.pth, RestoreFormer.pth or a 2x/4x ESRGAN-family upscaler")
_PRECISIONS = ("fp32", "auto")


# ---------------------------------------------------------------------------------------------------- spandrel
def _spandrel() -> Any:
    """The spandrel module, or DependencyError naming the pip command."""
    try:
        import spandrel
    except ImportError as exc:
        raise DependencyError(f"face restoration needs the 'spandrel' package, which could not be imported ({exc}); "
                              f"install it with `{SPANDREL_INSTALL}` (or `pip install -e '.[restore]'`); ComfyUI "
                              f"ships it") from None
    return spandrel


def _registry() -> Any:
    """spandrel's main registry, plus spandrel_extra_arches (CodeFormer, ...) when that is installed (a copy: the
    process-wide registry is left as it is)."""
    spandrel = _spandrel()
    registry = spandrel.MAIN_REGISTRY.copy()
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return registry
    registry.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


def _is_image_model(model: object) -> bool:
    try:
        from spandrel import ImageModelDescriptor
    except ImportError:
        return False
    return isinstance(model, ImageModelDescriptor)


def describe_model(model: Any) -> str:
    """'GFPGAN (face restoration at 512x512)' / 'ESRGAN (4x upscaler)', for messages and the node status."""
    arch = getattr(getattr(model, "architecture", None), "id", type(model).__name__)
    if getattr(model, "purpose", None) == "FaceSR":
        return f"{arch} (face restoration at {FACE_MODEL_SIZE}x{FACE_MODEL_SIZE})"
    scale = int(getattr(model, "scale", 1))
    return f"{arch} ({scale}x upscaler)" if scale > 1 else f"{arch} (1x restoration model)"


# ---------------------------------------------------------------------------------------------------- reading
def _unwrap(obj: Any, source: str) -> dict[str, Any]:
    """The state dict inside a loaded checkpoint object (GFPGAN/CodeFormer keep it under 'params_ema')."""
    for _ in range(4):  # bounded: wrappers are at most a few levels deep
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None and len(obj) == 1 and isinstance(next(iter(obj.values())), Mapping):
            inner = next(iter(obj.values()))
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: found a pickled {type(obj).__name__}, not a state dict; expected {_EXPECTED}")
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state or not all(isinstance(k, str) for k in state):
        keys = ", ".join(repr(k)[:40] for k in list(obj)[:4])
        raise CheckpointError(f"{source}: found a dict without model weights (keys {keys}); expected {_EXPECTED}")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _check_declared(state: Mapping[str, Tensor], source: str) -> None:
    """Count and dtypes of what a file declares, before any weight is read."""
    if len(state) > _MAX_TENSORS:
        raise CheckpointError(f"{source}: holds {len(state)} tensors (limit {_MAX_TENSORS}); expected {_EXPECTED}")
    for key, value in state.items():
        if value.dtype not in _FLOAT_DTYPES + _COUNTER_DTYPES:
            raise CheckpointError(f"{source}: tensor {key[:80]!r} is {str(value.dtype).replace('torch.', '')}; "
                                  f"expected float weights")


def read_restorer_state(path: str | os.PathLike) -> dict[str, Tensor]:
    """The weights of a restoration/upscale model file as a plain CPU state dict, read without running any code
    from the file: torch.save zip / legacy pickles through the allow-list unpickler, .safetensors through the
    checked header reader. Wrappers (``params_ema``, ``params``, ``state_dict``, ...) and a common ``module.``
    prefix are removed. MissingModelError / CheckpointError name the file and what was expected."""
    from .models.model_file import check_model_file, sniff_format
    from .models.pickle_containers import load_checkpoint_pickle
    from .models.safe_pickle import materialize
    from .models.safetensors_header import read_safetensors_header

    path = Path(path)
    source = str(path)
    check_model_file(path, _EXPECTED)
    fmt = sniff_format(path)
    if fmt == "safetensors":
        header = read_safetensors_header(path)
        _check_declared(header.meta_state(), source)
        try:
            from safetensors.torch import load_file

            loaded = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise CheckpointError(f"{source}: found a damaged .safetensors file ({str(exc)[:200]}); expected "
                                  f"{_EXPECTED}") from None
        return _unwrap(loaded, source)
    if fmt in ("zip", "legacy"):
        def finish(obj: Any) -> dict[str, Tensor]:
            state = _unwrap(obj, source)
            _check_declared(state, source)
            return {k: materialize(v) for k, v in state.items()}

        return load_checkpoint_pickle(path, finish)
    found = {"empty": "an empty file", "tar": "a tar archive (pre-2018 torch format)"}.get(fmt, "unknown data")
    if path.suffix.lower() == ".onnx":
        found = "an ONNX model (e.g. ReActor's GPEN-BFR or a converted model), which spandrel cannot run"
    raise CheckpointError(f"{source}: found {found}; expected {_EXPECTED}")


def load_restorer_model(path: str | os.PathLike | None = None, *,
                        state: Mapping[str, Tensor] | None = None) -> Any:
    """A spandrel ``ImageModelDescriptor`` (on the CPU, eval mode, float32) for the model file ``path`` (or an
    already read ``state``); CheckpointError naming the file when spandrel does not recognise the weights or the
    model is not a 3-channel single-image model."""
    spandrel = _spandrel()
    source = str(path) if path is not None else "state dict"
    if state is None:
        if path is None:
            raise InputError("load_restorer_model: give a model file path or a state dict")
        state = read_restorer_state(path)
    try:
        model = spandrel.ModelLoader(registry=_registry()).load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError:
        keys = ", ".join(repr(k)[:50] for k in list(state)[:3])
        raise CheckpointError(
            f"{source}: spandrel does not recognise these weights (keys {keys}, ...); expected {_EXPECTED}. "
            f"Face models spandrel knows: GFPGAN v1.3/v1.4, RestoreFormer, and CodeFormer with "
            f"`pip install spandrel_extra_arches`; GPEN is not a spandrel architecture") from None
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError, AssertionError) as exc:
        raise CheckpointError(f"{source}: the weights look like a known architecture but do not load "
                              f"({type(exc).__name__}: {str(exc)[:300]}); expected a complete, unmodified model "
                              f"file") from None
    if not _is_image_model(model):
        raise CheckpointError(f"{source}: found a {type(model).__name__} ({getattr(model, 'purpose', '?')} model), "
                              f"expected a single-image model (an inpainting model needs a mask)")
    if model.input_channels != 3 or model.output_channels != 3:
        raise CheckpointError(f"{source}: found a model with {model.input_channels} input and "
                              f"{model.output_channels} output channels; expected an RGB model (3 -> 3)")
    return model.to(torch.float32).eval()


# ---------------------------------------------------------------------------------------------------- running
def resize_crops(x: Tensor, size: int) -> Tensor:
    """[N,C,h,w] -> [N,C,size,size]: bicubic, antialiased when shrinking (no aliasing on 2048 -> 224), values
    may overshoot slightly (clamp after)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    shrink = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=shrink)


class FaceRestorer:
    """Restores aligned face crops with a spandrel image model (see the module docstring for what each kind of
    model gets).

    model:      spandrel ImageModelDescriptor (from :func:`load_restorer_model`, ComfyUI's "Load Upscale Model",
                or spandrel directly)
    device:     where the network runs; None = the device of the crops
    batch_size: faces per network call (halved on out-of-memory down to 1)
    fidelity:   CodeFormer's w in [0,1] (ignored by other models)
    precision:  "fp32", or "auto" (autocast fp16/bf16 on CUDA where the descriptor supports it)
    name:       shown in messages
    """

    def __init__(self, model: Any, *, device: torch.device | str | None = None, batch_size: int = 4,
                 fidelity: float = 0.5, precision: str = "fp32", name: str | None = None) -> None:
        _spandrel()
        if not _is_image_model(model):
            raise InputError(f"restorer: expected a spandrel ImageModelDescriptor (a face restoration or upscale "
                             f"model), got {type(model).__name__}")
        if model.input_channels != 3 or model.output_channels != 3:
            raise InputError(f"restorer: expected an RGB model (3 -> 3 channels), got {model.input_channels} -> "
                             f"{model.output_channels}")
        if precision not in _PRECISIONS:
            raise InputError(f"precision: expected one of {_PRECISIONS}, got {precision!r}")
        self.model = model
        self.device = torch.device(device) if device is not None else None
        self.batch_size = check_integer(batch_size, "batch_size", low=1, high=1024)
        self.fidelity = check_number(fidelity, "fidelity", low=0.0, high=1.0)
        self.precision = precision
        self.arch = str(model.architecture.id)
        self.is_face_model = model.purpose == "FaceSR"
        self.scale = int(model.scale)
        self.name = name or describe_model(model)

    def __repr__(self) -> str:
        return f"<FaceRestorer {self.name}>"

    @property
    def native_size(self) -> int | None:
        """The square size crops are resized to before the network (512 for face models), None = the crop's own."""
        return FACE_MODEL_SIZE if self.is_face_model else None

    def prepare(self, device: torch.device, size: int) -> torch.device:
        """Put the network where it runs and return that device (``device`` = the crops' device when none was
        given; ``size`` = the crop size, for memory estimates). The ComfyUI nodes override this to load the model
        through ComfyUI's model management."""
        target = self.device or device
        if self.model.device != target:
            self.model.to(target)
        return target

    def memory_estimate(self, batch: int, size: int) -> int:
        """Rough bytes one network call on ``batch`` crops of ``size`` needs besides the weights (ComfyUI's
        upscale estimate: ~384 floats of activations per input value, times the scale)."""
        side = self.native_size or size
        return int(batch * side * side * 3 * 4 * 384 * max(self.scale, 1))

    def _autocast(self, device: torch.device) -> Any:
        if self.precision != "auto" or device.type != "cuda":
            return nullcontext()
        if self.model.supports_half:
            return torch.autocast("cuda", dtype=torch.float16)
        if self.model.supports_bfloat16 and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _network(self, x: Tensor) -> Tensor:
        """[n,3,h,w] float32 [0,1] on the model's device -> [n,3,h*k,w*k] float [0,1] (k = scale; 1 for faces)."""
        net = self.model.model
        if self.arch == "GFPGAN":
            return (net(x * 2 - 1, return_rgb=False, randomize_noise=False)[0] + 1) / 2
        if self.arch == "CodeFormer":
            return (net(x * 2 - 1, weight=self.fidelity)[0] + 1) / 2
        return self.model(x)  # the descriptor: pads to its size requirements, [0,1] in and out

    def __call__(self, crops: Tensor, progress: ProgressFn | None = None) -> Tensor:
        """crops [F,3,S,S] float RGB [0,1] -> restored [F,3,S,S] float RGB [0,1], same device and dtype.

        progress(done, total) is called after each chunk of faces (it may raise to cancel)."""
        crops = check_images(crops, "crops", layout="[F,3,S,S]", allow_empty=True)
        if crops.shape[-1] != crops.shape[-2]:
            raise InputError(f"crops: expected square aligned crops [F,3,S,S], got {tuple(crops.shape)}")
        n, size = crops.shape[0], int(crops.shape[-1])
        if n == 0:
            return crops.clone()
        device = self.prepare(crops.device, size)
        out = torch.empty_like(crops)
        start = 0
        while start < n:
            stop = min(start + self.batch_size, n)
            try:
                out[start:stop] = self._restore_chunk(crops[start:stop], size, device).to(out)
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start = stop
            if progress is not None:
                progress(stop, n)
        return out

    def _restore_chunk(self, chunk: Tensor, size: int, device: torch.device) -> Tensor:
        x = chunk.to(device=device, dtype=torch.float32)
        native = self.native_size
        if native is not None:
            x = resize_crops(x, native).clamp_(0, 1)
        with torch.inference_mode(), self._autocast(device):
            y = self._network(x)
        return resize_crops(y.float(), size).clamp_(0, 1)


def restore_faces(crops: Tensor, restorer: FaceRestorer | None, visibility: float = 1.0,
                  progress: ProgressFn | None = None) -> Tensor:
    """Restored crops blended with the originals: ``lerp(crops, restorer(crops), visibility)``.

    crops [F,3,S,S] float RGB [0,1]; visibility in [0,1]: 0 (or no restorer) returns ``crops`` itself (the network
    does not run), 1 the restored crops. Same shape, device and dtype. progress: see FaceRestorer.__call__."""
    v = check_number(visibility, "visibility", low=0.0, high=1.0)
    if restorer is None or v == 0.0:
        return crops
    restored = restorer(crops, progress)
    if v == 1.0:
        return restored
    return torch.lerp(crops, restored, v)


def load_restorer(path: str | os.PathLike, device: torch.device | str | None = None,
                  **options: Any) -> FaceRestorer:
    """A :class:`FaceRestorer` for a model file (read safely, see :func:`read_restorer_state`); ``options`` go to
    FaceRestorer (batch_size, fidelity, precision, name)."""
    model = load_restorer_model(path)
    options.setdefault("name", f"{Path(path).name}: {describe_model(model)}")
    return FaceRestorer(model, device=device, **options)
