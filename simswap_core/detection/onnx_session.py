"""onnxruntime session creation for the optional onnxruntime backend of the detectors (imported lazily, only
here; the default torch backend never imports it), and the checked reading of ONNX files both backends use."""
from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from ..errors import CheckpointError, DependencyError

if TYPE_CHECKING:  # onnxruntime is imported lazily (import_onnxruntime)
    from onnxruntime import InferenceSession

_INSTALL_HINT = ("The onnxruntime backend needs onnxruntime (the default backend, torch, does not). Install exactly "
                 "one of: `pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` (NVIDIA CUDA). Never "
                 "install both into one environment.")


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, or DependencyError with the install command."""
    try:
        import onnxruntime
    except ImportError as e:
        raise DependencyError(f"{_INSTALL_HINT} (import failed: {e})") from e
    return onnxruntime


#: the largest ONNX detector file read (SCRFD 10G is 17 MB, YuNet under 1 MB)
MAX_ONNX_BYTES = 512 * 1024 * 1024
_EXPECTED_ONNX = "expected a self-contained ONNX face detector (YuNet or SCRFD .onnx)"


def read_onnx_model(model: str | os.PathLike | bytes, source: str | None = None) -> bytes:
    """The bytes of an ONNX model, checked: a regular file of bounded size, a parseable ModelProto, and no tensor
    that refers to external data (onnxruntime would read that other file from disk). CheckpointError naming the
    file, what was found and what was expected otherwise."""
    from ..models.model_file import check_model_file

    if isinstance(model, bytes):
        data, where = model, source or "ONNX model bytes"
    else:
        where = source or str(model)
        check_model_file(model, _EXPECTED_ONNX, MAX_ONNX_BYTES)
        try:
            with open(model, "rb") as fh:
                data = fh.read(MAX_ONNX_BYTES + 1)
        except OSError as exc:
            raise CheckpointError(f"{where}: cannot be read ({exc.strerror}); {_EXPECTED_ONNX}") from None
    if len(data) > MAX_ONNX_BYTES:
        raise CheckpointError(f"{where}: found {len(data)} bytes (limit {MAX_ONNX_BYTES}); {_EXPECTED_ONNX}")
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is a declared dependency
        raise DependencyError(f"reading ONNX detectors needs the 'onnx' package: pip install onnx ({exc})") from exc
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # google.protobuf.message.DecodeError and RuntimeError, by protobuf backend
        raise CheckpointError(f"{where}: found data that is not an ONNX model ({type(exc).__name__}); "
                              f"{_EXPECTED_ONNX}") from None
    if not proto.HasField("graph"):
        raise CheckpointError(f"{where}: found an ONNX file without a graph; {_EXPECTED_ONNX}")
    external = _external_reference(proto.graph, 0)
    if external is not None:
        raise CheckpointError(f"{where}: found tensor {external!r} stored in an external data file (onnxruntime "
                              f"would read another file from disk); refused, {_EXPECTED_ONNX}")
    return data


def _external_reference(graph: object, depth: int) -> str | None:
    """The name of the first tensor of ``graph`` (or its subgraphs) with external data, else None."""
    if depth > 32:
        return "<subgraphs nested too deep>"
    tensors = list(getattr(graph, "initializer", []))
    tensors += [sparse.values for sparse in getattr(graph, "sparse_initializer", [])]
    subgraphs = []
    for node in getattr(graph, "node", []):
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
            if attr.HasField("g"):
                subgraphs.append(attr.g)
            subgraphs.extend(attr.graphs)
    for tensor in tensors:
        if tensor.data_location == 1 or len(tensor.external_data):  # TensorProto.EXTERNAL
            return str(tensor.name) or "<unnamed>"
    for sub in subgraphs:
        found = _external_reference(sub, depth + 1)
        if found is not None:
            return found
    return None


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
    where = "ONNX model bytes" if isinstance(model, bytes) else str(model)
    data = read_onnx_model(model)  # bytes, so onnxruntime never resolves a path next to the file
    try:
        session = ort.InferenceSession(data, sess_options=so, providers=requested)
    except Exception as exc:  # onnxruntime raises its own pybind exception types (InvalidGraph, Fail, ...)
        raise CheckpointError(f"{where}: onnxruntime cannot load it ({str(exc)[:300]}); {_EXPECTED_ONNX}") from None
    providers = list(session.get_providers())
    if dev.type == "cuda" and len(requested) > 1 and "CUDAExecutionProvider" not in providers:
        warnings.warn("face detection runs on CPU: onnxruntime could not create the CUDA execution provider "
                      "(check that the CUDA and cuDNN versions match your onnxruntime-gpu build)", RuntimeWarning,
                      stacklevel=3)
    return session, providers
