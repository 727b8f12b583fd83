"""Fold constant DequantizeLinear nodes of an ONNX model into fp32 initializers (cached once on disk).

OpenCV Zoo ships its models int8 *block*-quantised (opset 21 ``DequantizeLinear`` with ``block_size``). Old
OpenCV (< 4.11) cannot read them and onnxruntime rejects them as shipped (``block_size must be 0 for per-tensor
quantization``, dangling graph inputs). Folding every constant ``DequantizeLinear`` into a plain float initializer
gives a model that any onnxruntime >= 1.17 and OpenCV >= 4.5 loads, with bit-identical dequantised weights.

`prepare_onnx` additionally frees the input/output shapes (so a fixed 640x640 export accepts any size and batch)
and lowers the opset to 13 when no remaining operator changed meaning after 13. Needs only the ``onnx`` package.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CheckpointError, DependencyError
from ..io.atomic import atomic_write

if TYPE_CHECKING:  # onnx is imported where it is used
    from onnx import ModelProto

FOLD_VERSION = "1"  # bump when the transformation changes, so cached files are rebuilt

# Operators whose fp32 semantics did not change between opset 13 and 21 (attribute sets checked separately).
_SAFE_OPSET13 = {"Conv", "Relu", "Sigmoid", "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Sub", "Mul",
                 "Div", "Transpose", "Concat", "Reshape", "Flatten", "Resize", "BatchNormalization", "PRelu",
                 "LeakyRelu", "Gemm", "MatMul", "Softmax", "Identity", "Shape", "Gather", "Unsqueeze", "Cast"}
_NEW_RESIZE_ATTRS = {"antialias", "axes", "keep_aspect_ratio_policy"}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - onnx is a declared dependency
        raise DependencyError("The 'onnx' package is needed to prepare detector models: pip install onnx") from e
    return onnx, numpy_helper


def dequantize(x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1,
               block_size: int = 0) -> np.ndarray:
    """ONNX ``DequantizeLinear`` in numpy: ``(x - zero_point) * scale`` -> array of scale's dtype.

    Per-tensor (scale with one element), per-axis (1-D scale along ``axis``, ``block_size`` 0) and blocked
    (scale of x's rank with ``ceil(x.shape[axis] / block_size)`` entries along ``axis``) quantisation.
    """
    out_dtype = scale.dtype
    xf = x.astype(np.float64)
    zp = np.zeros((), np.float64) if zero_point is None else zero_point.astype(np.float64)
    sc = scale.astype(np.float64)
    if x.ndim == 0:
        axis = 0
    elif axis < 0:
        axis += x.ndim
    if sc.size == 1 and (block_size == 0 or x.ndim == 0 or sc.ndim == 0):
        sc, zp = sc.reshape(()), zp.reshape(())
    elif block_size > 0:
        if sc.ndim != x.ndim:
            raise CheckpointError(f"DequantizeLinear: blocked scale must have the rank of its input "
                                  f"({x.ndim}), got scale shape {sc.shape}")
        n = x.shape[axis]
        if sc.shape[axis] != -(-n // block_size):
            raise CheckpointError(f"DequantizeLinear: {sc.shape[axis]} blocks along axis {axis} do not cover "
                                  f"{n} values with block_size {block_size}")
        sc = np.take(np.repeat(sc, block_size, axis=axis), np.arange(n), axis=axis)
        if zp.ndim:
            zp = np.take(np.repeat(zp, block_size, axis=axis), np.arange(n), axis=axis)
    else:
        if sc.ndim != 1 or sc.shape[0] != x.shape[axis]:
            raise CheckpointError(f"DequantizeLinear: per-axis scale of shape {sc.shape} does not match input "
                                  f"shape {x.shape} along axis {axis}")
        shape = [1] * x.ndim
        shape[axis] = -1
        sc = sc.reshape(shape)
        if zp.ndim:
            zp = zp.reshape(shape)
    return ((xf - zp) * sc).astype(out_dtype)


def fold_dequantize(model: ModelProto) -> int:
    """In place: replace every DequantizeLinear whose inputs are all initializers by an initializer.

    Also drops graph inputs that no node consumes (and inputs shadowed by initializers). Returns the number of
    folded nodes.
    """
    onnx, nh = _onnx()
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    folded, keep_nodes = 0, []
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx") \
                and all((not i) or i in inits for i in node.input):
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            x = nh.to_array(inits[node.input[0]])
            scale = nh.to_array(inits[node.input[1]])
            zp = nh.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
            if not np.issubdtype(x.dtype, np.integer):
                raise CheckpointError(f"DequantizeLinear {node.name!r}: unsupported quantised type {x.dtype}")
            y = dequantize(x, scale, zp, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
            t = nh.from_array(y, node.output[0])
            g.initializer.append(t)
            inits[t.name] = t
            folded += 1
        else:
            keep_nodes.append(node)
    del g.node[:]
    g.node.extend(keep_nodes)
    _drop_unused(model)
    return folded


def _drop_unused(model) -> None:
    g = model.graph
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for sub in _subgraph_inputs(g):
        used |= sub
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name in used and i.name not in init_names]
    del g.input[:]
    g.input.extend(inputs)
    produced = {o for n in g.node for o in n.output} | init_names | {i.name for i in g.input}
    vi = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(vi)


def _subgraph_inputs(g) -> list[set[str]]:
    out = []
    for n in g.node:
        for a in n.attribute:
            for sg in list(a.graphs) + ([a.g] if a.HasField("g") else []):
                out.append({i for m in sg.node for i in m.input})
    return out


def free_shapes(model: ModelProto) -> None:
    """In place: make every graph input's and output's dimensions symbolic and drop intermediate shape info,
    so the model runs at any batch size and image size its operators allow."""
    g = model.graph
    for vi in list(g.input) + list(g.output):
        for k, d in enumerate(vi.type.tensor_type.shape.dim):
            d.Clear()
            d.dim_param = f"{vi.name}_d{k}"
    del g.value_info[:]


def lower_opset(model: ModelProto, target: int = 13) -> bool:
    """In place: declare opset ``target`` if every node is a default-domain op whose meaning (for the attributes
    used) did not change since ``target``. Returns whether the opset was lowered."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if current is None or current <= target or len(model.functions) or len(model.opset_import) != 1:
        return False
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx") or n.op_type not in _SAFE_OPSET13:
            return False
        names = {a.name for a in n.attribute}
        if n.op_type == "Resize" and names & _NEW_RESIZE_ATTRS:
            return False
        if n.op_type == "Reshape" and any(a.name == "allowzero" and a.i for a in n.attribute):
            return False
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    if target <= 13:
        model.ir_version = 7  # the IR version that goes with opsets 12-13
    return True


def default_cache_dir() -> Path:
    """``$SIMSWAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/simswap``, else ``~/.cache/simswap`` (+ ``/onnx``)."""
    root = os.environ.get("SIMSWAP_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "simswap" / "onnx"


def transform_onnx(data: bytes, *, dynamic: bool = True, opset: int | None = 13) -> bytes:
    """Fold, optionally free shapes and lower the opset of a serialized model; returns the new bytes."""
    onnx, _ = _onnx()
    try:
        model = onnx.load_from_string(data)
    except Exception as e:
        raise CheckpointError(f"not a readable ONNX model ({type(e).__name__}: {e})") from e
    fold_dequantize(model)
    if dynamic:
        free_shapes(model)
    if opset is not None:
        lower_opset(model, opset)
    return model.SerializeToString()


def prepare_onnx(src: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None, dynamic: bool = True,
                 opset: int | None = 13) -> Path | bytes:
    """The folded fp32 version of ``src``: a cached file path, or the model bytes if no cache folder is writable.

    The cache file name carries the SHA-256 of the source bytes and the fold options, so a changed source is never
    served stale. The file is written to a temporary name and renamed into place (atomic; concurrent processes
    are safe). The source file is never modified.
    """
    from .onnx_session import read_onnx_model

    src = Path(src)
    data = read_onnx_model(src)  # a regular, bounded, self-contained ONNX file (CheckpointError otherwise)
    digest = hashlib.sha256(data + f"|v{FOLD_VERSION}|dyn={dynamic}|opset={opset}".encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = folder / f"{src.stem}.fp32.{digest}.onnx"
    if target.is_file():
        return target
    out = transform_onnx(data, dynamic=dynamic, opset=opset)
    try:
        atomic_write(target, lambda tmp: tmp.write_bytes(out), overwrite=True)  # same bytes if a racer won
    except OSError as e:
        warnings.warn(f"could not cache the folded model in {str(folder)!r} ({e}); using it from memory",
                      RuntimeWarning, stacklevel=2)
        return out
    return target
