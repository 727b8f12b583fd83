"""onnxruntime session creation for the detectors (onnxruntime is imported lazily, only here)."""
from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from ..errors import DependencyError

if TYPE_CHECKING:  # onnxruntime is imported lazily (import_onnxruntime)
    from onnxruntime import InferenceSession

_INSTALL_HINT = ("Face detection needs onnxruntime. Install exactly one of: `pip install onnxruntime` (CPU) or "
                 "`pip install onnxruntime-gpu` (NVIDIA CUDA). Never install both into one environment.")


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, or DependencyError with the install command."""
    try:
        import onnxruntime
    except ImportError as e:
        raise DependencyError(f"{_INSTALL_HINT} (import failed: {e})") from e
    return onnxruntime


def resolve_device(device: str | torch.device | None) -> torch.device:
    """torch.device of ``device``; None means CUDA when torch sees a GPU, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def create_session(model: str | os.PathLike | bytes, device: str | torch.device | None = None, *,
                   threads: int | None = None) -> tuple[InferenceSession, list[str]]:
    """An ``onnxruntime.InferenceSession`` for ``model`` (path or serialized bytes) and the providers it got.

    The CUDA execution provider is requested only when ``device`` is a CUDA device and this onnxruntime build
    offers it. What the session actually uses is read back from ``session.get_providers()``: onnxruntime-gpu
    silently (apart from a log line) falls back to CPU when CUDA/cuDNN libraries are missing, and we warn then.
    Returns ``(session, providers)``.
    """
    ort = import_onnxruntime()
    dev = resolve_device(device)
    requested: list = ["CPUExecutionProvider"]
    if dev.type == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            requested = [("CUDAExecutionProvider", {"device_id": dev.index or 0}), "CPUExecutionProvider"]
        else:
            warnings.warn("face detection runs on CPU: this onnxruntime has no CUDAExecutionProvider "
                          "(install onnxruntime-gpu instead of onnxruntime for GPU detection)", RuntimeWarning,
                          stacklevel=3)
    so = ort.SessionOptions()
    so.log_severity_level = 3  # errors only: no "initializer X appears in graph inputs" chatter
    if threads is not None:
        so.intra_op_num_threads = int(threads)
    src = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(src, sess_options=so, providers=requested)
    providers = list(session.get_providers())
    if dev.type == "cuda" and len(requested) > 1 and "CUDAExecutionProvider" not in providers:
        warnings.warn("face detection runs on CPU: onnxruntime could not create the CUDA execution provider "
                      "(check that the CUDA and cuDNN versions match your onnxruntime-gpu build)", RuntimeWarning,
                      stacklevel=3)
    return session, providers
