"""Run an ONNX graph as a torch ``nn.Module``: the graph's weights become buffers, its nodes run in topological
order with torch ops from a fixed, checked table (no code generation, no fx, no onnxruntime, nothing from the file
is executed: the file only selects entries of the table and their attributes).

    net = OnnxGraphModule.from_file("face_detection_yunet_2023mar_int8bq.onnx").to("cuda")
    outs = net(blob)                 # tuple of tensors, in the graph's output order
    outs = net.run({"input": blob})  # dict name -> tensor

What it covers: the float32 inference graphs of YuNet, SCRFD (insightface packs), insightface's genderage and
OpenCV's SFace (the op table `SUPPORTED_OPS`). Any other operator, a non-default domain, a subgraph or an attribute
value outside what is implemented raises CheckpointError naming the node and the file when the module is built.

How values flow: tensors (activations, float weights) stay on the module's device; shape arithmetic (``Shape``,
``Gather``/``Concat``/``Unsqueeze``/``Slice`` of shapes, integer constants, ``Reshape``/``Resize`` parameters) is
done on the host with numpy from tensor *metadata*, so a forward pass makes no device -> host synchronisation
(a graph whose shapes depend on tensor *values* would need one; none of the covered models does). Nodes whose
inputs are all constants are evaluated once when the module is built, and BatchNormalization directly after a
constant-weight Conv is folded into the Conv (what onnxruntime does too; results differ by float rounding only).
Batch size and image size are free wherever the graph itself does not fix them; channels_last inputs work.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, DependencyError

if TYPE_CHECKING:  # onnx is imported where it is used
    from onnx import ModelProto, NodeProto

__all__ = ["OnnxGraphModule", "SUPPORTED_OPS"]

Value = Union[torch.Tensor, np.ndarray]  # a device tensor, or a host array (constants, shapes)

# Inputs read as host values (shape / axis / scale parameters), by operator: position -> never a device tensor.
_HOST_INPUTS: dict[str, set[int]] = {
    "Reshape": {1}, "Resize": {1, 2, 3}, "Upsample": {1}, "Slice": {1, 2, 3, 4}, "Unsqueeze": {1},
    "Squeeze": {1}, "Expand": {1}, "Tile": {1}, "ConstantOfShape": {0}, "ReduceMean": {1}, "Split": {1},
    "Dropout": {1, 2}, "Clip": {1, 2}, "Pad": {1, 2, 3},
}


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:  # pragma: no cover - onnx is a declared dependency
        raise DependencyError(f"running ONNX models with torch needs the 'onnx' package: pip install onnx ({e})") from e
    return onnx, numpy_helper


# ----------------------------------------------------------------------------------------------------- helpers
def _ints(v: Value) -> list[int]:
    """Host value -> list of Python ints."""
    if isinstance(v, torch.Tensor):  # only for graphs computing shapes from tensor values (none we support)
        v = v.detach().cpu().numpy()
    return [int(x) for x in np.asarray(v).reshape(-1).tolist()]


def _floats(v: Value) -> list[float]:
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    return [float(x) for x in np.asarray(v).reshape(-1).tolist()]


def _is_empty(v: Value | None) -> bool:
    return v is None or (isinstance(v, np.ndarray) and v.size == 0) or (isinstance(v, torch.Tensor)
                                                                         and v.numel() == 0)


def _as_tensors(vals: Sequence[Value | None]) -> list[Any]:
    """Make every value a tensor: host arrays go to the device of the first device tensor (a host -> device copy,
    never a synchronisation), float arrays take that tensor's float dtype."""
    ref = next((v for v in vals if isinstance(v, torch.Tensor)), None)
    out: list[Any] = []  # tensors, None where an optional input is absent
    for v in vals:
        if v is None or isinstance(v, torch.Tensor):
            out.append(v)
            continue
        t = torch.from_numpy(np.array(v, order="C"))
        if ref is not None:
            dtype = ref.dtype if (t.is_floating_point() and ref.is_floating_point()) else t.dtype
            t = t.to(device=ref.device, dtype=dtype)
        out.append(t)
    return out


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


_ONNX_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
                9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}


# ----------------------------------------------------------------------------------------------------- the ops
# Each op: f(inputs: list[Value | None], attrs: dict, opset: int) -> list[Value]. Host-only arithmetic is done by
# running the same torch code on CPU tensors made from the arrays (see OnnxGraphModule._run_node).
OpFn = Callable[[list, dict, int], list]


def _pads_split(pads: list[int], nd: int) -> tuple[list[int], list[int]]:
    return pads[:nd], pads[nd:]


def _same_pads(in_sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dil: Sequence[int],
               mode: str) -> list[int]:
    begins, ends = [], []
    for n, k, s, d in zip(in_sizes, kernel, strides, dil):
        out = -(-n // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - n)
        small, big = total // 2, total - total // 2
        begins.append(big if mode == "SAME_LOWER" else small)
        ends.append(small if mode == "SAME_LOWER" else big)
    return begins + ends


def _spatial_pads(x: torch.Tensor, attrs: dict, kernel: Sequence[int], strides: Sequence[int],
                  dil: Sequence[int]) -> list[int]:
    nd = len(kernel)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return _same_pads(list(x.shape[2:]), kernel, strides, dil, auto)
    if auto == "VALID":
        return [0] * (2 * nd)
    return list(attrs.get("pads", [0] * (2 * nd)))


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX [b1..bn, e1..en] -> F.pad's (last dim first) list."""
    nd = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(nd)):
        out += [pads[i], pads[i + nd]]
    return out


def op_conv(v: list, a: dict, _o: int) -> list:
    x, w, b = _as_tensors(v + [None] * (3 - len(v)))[:3]
    assert x is not None and w is not None
    nd = w.ndim - 2
    kernel = list(a.get("kernel_shape", w.shape[2:]))
    strides, dil = list(a.get("strides", [1] * nd)), list(a.get("dilations", [1] * nd))
    pads = _spatial_pads(x, a, kernel, strides, dil)
    begin, end = _pads_split(pads, nd)
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    if begin == end:
        return [conv(x, w, b, strides, begin, dil, int(a.get("group", 1)))]
    return [conv(F.pad(x, _torch_pad(pads)), w, b, strides, 0, dil, int(a.get("group", 1)))]


def op_batchnorm(v: list, a: dict, _o: int) -> list:
    x, scale, bias, mean, var = _as_tensors(v[:5])
    return [F.batch_norm(x, mean, var, scale, bias, training=False, eps=float(a.get("epsilon", 1e-5)))]


def _pool(v: list, a: dict, kind: str) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    kernel = list(a["kernel_shape"])
    nd = len(kernel)
    strides, dil = list(a.get("strides", [1] * nd)), list(a.get("dilations", [1] * nd))
    pads = _spatial_pads(x, a, kernel, strides, dil)
    begin, end = _pads_split(pads, nd)
    ceil = bool(a.get("ceil_mode", 0))
    sym = begin == end and all(p <= k // 2 for p, k in zip(begin, kernel))
    fn: Any
    if kind == "max":
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
        if not sym:
            x = F.pad(x, _torch_pad(pads), value=float("-inf"))
            begin = [0] * nd
        return [fn(x, kernel, strides, begin, dil, ceil_mode=ceil)]
    include = bool(a.get("count_include_pad", 0))
    fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
    if not sym:
        if not include and any(pads):
            raise CheckpointError("AveragePool with asymmetric padding and count_include_pad=0 is not supported")
        x = F.pad(x, _torch_pad(pads))
        begin = [0] * nd
    return [fn(x, kernel, strides, begin, ceil_mode=ceil, count_include_pad=include)]


def op_prelu(v: list, _a: dict, _o: int) -> list:
    x, slope = _as_tensors(v[:2])
    assert x is not None and slope is not None
    if x.ndim >= 2 and slope.numel() == x.shape[1] and slope.ndim in (1, x.ndim - 1) and \
            (slope.ndim == 1 and x.ndim == 2 or slope.ndim == x.ndim - 1 and all(s == 1 for s in slope.shape[1:])):
        return [F.prelu(x, slope.reshape(-1))]
    if slope.numel() == 1:
        return [F.prelu(x, slope.reshape(1))]
    return [torch.where(x >= 0, x, x * slope)]


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> OpFn:
    def op(v: list, _a: dict, _o: int) -> list:
        x, y = _as_tensors(v[:2])
        return [fn(x, y)]
    return op


def _div(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if x.is_floating_point() or y.is_floating_point():
        return x / y
    return torch.div(x, y, rounding_mode="trunc")


def _unary(fn: Callable[[torch.Tensor], torch.Tensor]) -> OpFn:
    def op(v: list, _a: dict, _o: int) -> list:
        (x,) = _as_tensors(v[:1])
        return [fn(x)]
    return op


def op_clip(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    if opset < 11:
        lo, hi = a.get("min"), a.get("max")
    else:
        lo = _floats(v[1])[0] if len(v) > 1 and not _is_empty(v[1]) else None
        hi = _floats(v[2])[0] if len(v) > 2 and not _is_empty(v[2]) else None
    return [x.clamp(min=lo, max=hi)]


def op_concat(v: list, a: dict, _o: int) -> list:
    ts = [t for t in _as_tensors(v) if t is not None]
    return [torch.cat(ts, dim=int(a["axis"]))]


def op_reshape(v: list, a: dict, _o: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    shape = _ints(v[1])
    if not a.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def op_flatten(v: list, a: dict, _o: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    ax = _axis(int(a.get("axis", 1)), x.ndim)
    lead = math.prod(x.shape[:ax])
    return [x.reshape(lead, -1) if x.numel() or lead else x.reshape(0, math.prod(x.shape[ax:]))]


def op_transpose(v: list, a: dict, _o: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    perm = a.get("perm") or list(reversed(range(x.ndim)))
    return [x.permute(*perm)]


def op_squeeze(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    axes = a.get("axes") if opset < 13 else (_ints(v[1]) if len(v) > 1 and not _is_empty(v[1]) else None)
    if axes is None:
        return [x.squeeze()]
    return [x.squeeze(tuple(_axis(int(i), x.ndim) for i in axes))]


def op_unsqueeze(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    axes = list(a["axes"]) if opset < 13 else _ints(v[1])
    rank = x.ndim + len(axes)
    for ax in sorted(_axis(int(i), rank) for i in axes):
        x = x.unsqueeze(ax)
    return [x]


def op_gather(v: list, a: dict, _o: int) -> list:
    x, idx = _as_tensors(v[:2])
    assert x is not None and idx is not None
    ax = _axis(int(a.get("axis", 0)), x.ndim)
    idx = idx.to(torch.int64)
    idx = torch.where(idx < 0, idx + x.shape[ax], idx)
    out = x.index_select(ax, idx.reshape(-1))
    return [out.reshape((*x.shape[:ax], *idx.shape, *x.shape[ax + 1:]))]


def op_slice(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    if opset < 10:
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(v[1]), _ints(v[2])
        axes = _ints(v[3]) if len(v) > 3 and not _is_empty(v[3]) else list(range(len(starts)))
        steps = _ints(v[4]) if len(v) > 4 and not _is_empty(v[4]) else [1] * len(starts)
    index: list[Any] = [slice(None)] * x.ndim
    flips = []
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = _axis(ax, x.ndim)
        n = x.shape[ax]
        if st > 0:
            s = min(max(s + n if s < 0 else s, 0), n)
            e = min(max(e + n if e < 0 else e, 0), n)
            index[ax] = slice(s, max(s, e), st)
        else:  # negative step: flip, then slice forward
            s = min(max(s + n if s < 0 else s, -1), n - 1)
            e = min(max(e + n if e < 0 else e, -1), n - 1)
            flips.append(ax)
            index[ax] = slice(n - 1 - s, max(n - 1 - s, n - 1 - e), -st)
    if flips:
        x = x.flip(flips)
    return [x[tuple(index)]]


def op_shape(v: list, a: dict, _o: int) -> list:
    x = v[0]
    shape = np.asarray(list(x.shape), dtype=np.int64)  # metadata only: no synchronisation
    start, end = int(a.get("start", 0)), a.get("end")
    return [shape[start:end if end is None else int(end)]]


def op_constant_of_shape(v: list, a: dict, _o: int) -> list:
    shape = _ints(v[0])
    value = a.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return [np.full(shape, fill[0], dtype=fill.dtype)]


def op_cast(v: list, a: dict, _o: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    to = int(a["to"])
    if to not in _ONNX_DTYPES:
        raise CheckpointError(f"Cast to ONNX data type {to} is not supported")
    return [x.to(_ONNX_DTYPES[to])]


def op_identity(v: list, _a: dict, _o: int) -> list:
    return [v[0]]


def op_dropout(v: list, a: dict, _o: int) -> list:
    if len(v) > 2 and not _is_empty(v[2]) and _ints(v[2])[0]:
        raise CheckpointError("Dropout with training_mode=true cannot run at inference")
    return [v[0]]


def _resize_nearest_index(n_in: int, n_out: int, scale: float, ctm: str, nearest: str) -> np.ndarray:
    i = np.arange(n_out, dtype=np.float64)
    if ctm == "asymmetric":
        x = i / scale
    elif ctm == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif ctm == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i)
    elif ctm == "align_corners":
        x = i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros_like(i)
    elif ctm == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:
        raise CheckpointError(f"Resize coordinate_transformation_mode {ctm!r} is not supported")
    if nearest == "floor":
        j = np.floor(x)
    elif nearest == "ceil":
        j = np.ceil(x)
    elif nearest == "round_prefer_ceil":
        j = np.floor(x + 0.5)
    elif nearest == "round_prefer_floor":
        j = np.ceil(x - 0.5)
    else:
        raise CheckpointError(f"Resize nearest_mode {nearest!r} is not supported")
    return np.clip(j, 0, n_in - 1).astype(np.int64)


def _resize(x: torch.Tensor, scales: list[float] | None, sizes: list[int] | None, a: dict) -> torch.Tensor:
    rank = x.ndim
    if sizes:
        out = list(sizes)
        scl = [o / i if i else 1.0 for o, i in zip(out, x.shape)]
    elif scales:
        scl = list(scales)
        out = [int(math.floor(n * s)) for n, s in zip(x.shape, scl)]
    else:
        raise CheckpointError("Resize without scales or sizes")
    if len(out) != rank or out[:2] != list(x.shape[:2]):
        raise CheckpointError(f"Resize of the batch or channel axis is not supported (input {list(x.shape)}, "
                              f"output {out})")
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        nearest = a.get("nearest_mode", "round_prefer_floor")
        if ctm == "asymmetric" and nearest == "floor" and 3 <= rank <= 5:  # torch's "nearest" is exactly this
            if sizes:
                return F.interpolate(x, size=out[2:], mode="nearest")
            return F.interpolate(x, scale_factor=scl[2:], mode="nearest", recompute_scale_factor=False)
        for ax in range(2, rank):
            if out[ax] == x.shape[ax] and ctm in ("asymmetric", "half_pixel", "pytorch_half_pixel", "align_corners"):
                continue
            idx = _resize_nearest_index(x.shape[ax], out[ax], scl[ax], ctm, nearest)
            x = x.index_select(ax, torch.from_numpy(idx).to(x.device))
        return x
    if mode == "linear" and rank == 4:
        if ctm in ("half_pixel", "pytorch_half_pixel"):
            if not sizes:  # ONNX maps coordinates with the given scales, not with out/in
                return F.interpolate(x, scale_factor=scl[2:], mode="bilinear", align_corners=False,
                                     recompute_scale_factor=False)
            return F.interpolate(x, size=out[2:], mode="bilinear", align_corners=False)
        if ctm == "align_corners":
            return F.interpolate(x, size=out[2:], mode="bilinear", align_corners=True)
    raise CheckpointError(f"Resize mode {mode!r} with coordinate_transformation_mode {ctm!r} on a {rank}-D "
                          f"tensor is not supported")


def op_resize(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    if opset < 11:  # Resize-10: (X, scales)
        return [_resize(x, _floats(v[1]), None, {**a, "coordinate_transformation_mode": "asymmetric",
                                                 "nearest_mode": "floor"})]
    scales = _floats(v[2]) if len(v) > 2 and not _is_empty(v[2]) else None
    sizes = _ints(v[3]) if len(v) > 3 and not _is_empty(v[3]) else None
    if a.get("axes") is not None:
        raise CheckpointError("Resize with an 'axes' attribute is not supported")
    return [_resize(x, scales, sizes, a)]


def op_upsample(v: list, a: dict, _o: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    scales = list(a["scales"]) if "scales" in a else _floats(v[1])
    return [_resize(x, scales, None, {"mode": a.get("mode", "nearest"),
                                      "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})]


def op_gemm(v: list, a: dict, _o: int) -> list:
    x, w, c = _as_tensors(v + [None] * (3 - len(v)))[:3]
    assert x is not None and w is not None
    if a.get("transA", 0):
        x = x.t()
    if a.get("transB", 0):
        w = w.t()
    y = (x @ w) * float(a.get("alpha", 1.0))
    if c is not None:
        y = y + c * float(a.get("beta", 1.0))
    return [y]


def op_softmax(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    if opset < 13:  # softmax over the flattened trailing axes from `axis` (default 1)
        ax = _axis(int(a.get("axis", 1)), x.ndim)
        return [torch.softmax(x.reshape(*x.shape[:ax], -1), dim=-1).reshape(x.shape)]
    return [torch.softmax(x, dim=int(a.get("axis", -1)))]


def op_reduce_mean(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    axes = a.get("axes") if opset < 18 else (_ints(v[1]) if len(v) > 1 and not _is_empty(v[1]) else None)
    keep = bool(a.get("keepdims", 1))
    if axes is None or len(axes) == 0:
        if a.get("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(x.ndim))
    return [x.mean(dim=tuple(int(i) for i in axes), keepdim=keep)]


def op_global_avg(v: list, _a: dict, _o: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    return [x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)]


def op_expand(v: list, _a: dict, _o: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    shape = _ints(v[1])
    out = torch.broadcast_shapes(tuple(x.shape), tuple(shape))
    return [x.expand(out)]


def op_split(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    assert x is not None
    ax = _axis(int(a.get("axis", 0)), x.ndim)
    split = a.get("split") if opset < 13 else (_ints(v[1]) if len(v) > 1 and not _is_empty(v[1]) else None)
    n_out = int(a["_num_outputs"])
    if split is None:
        size = -(-x.shape[ax] // n_out)
        return list(torch.split(x, size, dim=ax))
    return list(torch.split(x, [int(s) for s in split], dim=ax))


def op_pad(v: list, a: dict, opset: int) -> list:
    (x,) = _as_tensors(v[:1])
    mode = a.get("mode", "constant")
    if opset < 11:
        pads, value = list(a["pads"]), float(a.get("value", 0.0))
    else:
        pads = _ints(v[1])
        value = _floats(v[2])[0] if len(v) > 2 and not _is_empty(v[2]) else 0.0
        if len(v) > 3 and not _is_empty(v[3]):  # opset 18 axes: pads only for these axes
            axes = [_axis(i, x.ndim) for i in _ints(v[3])]
            full = [0] * (2 * x.ndim)
            for k, ax in enumerate(axes):
                full[ax], full[ax + x.ndim] = pads[k], pads[k + len(axes)]
            pads = full
    torch_pads = _torch_pad(pads)
    if mode == "constant":
        return [F.pad(x, torch_pads, value=value)]
    if mode in ("reflect", "edge") and not any(pads[:2] + pads[x.ndim:x.ndim + 2]) and 3 <= x.ndim <= 5:
        spatial = torch_pads[:2 * (x.ndim - 2)]
        return [F.pad(x, spatial, mode="reflect" if mode == "reflect" else "replicate")]
    raise CheckpointError(f"Pad mode {mode!r} with pads {pads} on a {x.ndim}-D tensor is not supported")


def op_constant(_v: list, a: dict, _o: int) -> list:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in a:
            val = a[key]
            if key == "value":
                return [np.asarray(val)]
            dtype = np.float32 if "float" in key else np.int64
            return [np.asarray(val, dtype=dtype)]
    raise CheckpointError("Constant node without a supported value attribute (value, value_float(s), value_int(s))")


SUPPORTED_OPS: dict[str, OpFn] = {
    "Conv": op_conv, "BatchNormalization": op_batchnorm,
    "Relu": _unary(torch.relu), "Sigmoid": _unary(torch.sigmoid), "Tanh": _unary(torch.tanh),
    "Exp": _unary(torch.exp), "Sqrt": _unary(torch.sqrt), "Neg": _unary(torch.neg), "Abs": _unary(torch.abs),
    "Floor": _unary(torch.floor), "Ceil": _unary(torch.ceil), "Clip": op_clip, "PRelu": op_prelu,
    "LeakyRelu": lambda v, a, o: [F.leaky_relu(_as_tensors(v[:1])[0], float(a.get("alpha", 0.01)))],
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul), "Div": _binary(_div),
    "Pow": _binary(torch.pow), "Concat": op_concat, "Reshape": op_reshape, "Flatten": op_flatten,
    "Transpose": op_transpose, "Squeeze": op_squeeze, "Unsqueeze": op_unsqueeze, "Gather": op_gather,
    "Slice": op_slice, "Shape": op_shape, "Constant": op_constant, "ConstantOfShape": op_constant_of_shape,
    "Cast": op_cast, "Identity": op_identity, "Dropout": op_dropout, "Expand": op_expand, "Split": op_split,
    "MaxPool": lambda v, a, o: _pool(v, a, "max"), "AveragePool": lambda v, a, o: _pool(v, a, "avg"),
    "GlobalAveragePool": op_global_avg, "Resize": op_resize, "Upsample": op_upsample, "Gemm": op_gemm,
    "MatMul": _binary(torch.matmul), "Softmax": op_softmax, "ReduceMean": op_reduce_mean, "Pad": op_pad,
}
# ops that may run on host arrays (shape arithmetic) when none of their inputs is a device tensor
_HOST_OK = {"Add", "Sub", "Mul", "Div", "Concat", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
            "Gather", "Slice", "Shape", "Constant", "ConstantOfShape", "Cast", "Identity", "Floor", "Ceil", "Neg",
            "Abs", "Expand", "Split", "Sqrt", "Clip", "Pow"}
# ops whose optional extra outputs (Dropout mask, BN running statistics, MaxPool indices) are never computed: a
# graph that reads one is refused
_FIRST_OUTPUT_ONLY = {"Dropout", "BatchNormalization", "MaxPool"}


# ----------------------------------------------------------------------------------------------------- module
class _Node:
    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "host_inputs")

    def __init__(self, op: str, name: str, inputs: list[str], outputs: list[str], attrs: dict):
        self.op, self.name, self.inputs, self.outputs, self.attrs = op, name, inputs, outputs, attrs
        self.host_inputs = _HOST_INPUTS.get(op, set())


def _attr_value(onnx: Any, nh: Any, attr: Any) -> Any:
    if attr.type == onnx.AttributeProto.TENSOR:
        return nh.to_array(attr.t)
    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in value]
    return value


def _dims(value_info: Any) -> list[int | None]:
    """Declared dimensions of a graph input/output: ints, None for symbolic or unknown ones."""
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in value_info.type.tensor_type.shape.dim]


class OnnxGraphModule(nn.Module):
    """An ONNX inference graph as a torch module (see the module docstring for the op table and value flow).

    ``forward(*inputs)`` takes the graph inputs in order (float tensors, e.g. ``[N,3,H,W]`` for the detectors,
    any device the module is on) and returns a tuple of the graph outputs in order; ``run(feeds)`` takes and
    returns dicts by name. Attributes: ``input_names``, ``output_names``, ``input_shapes`` and ``output_shapes``
    (declared dimensions: ints, None for free ones), ``source`` (file name for messages), ``op_counts``.
    """

    def __init__(self, model: ModelProto, source: str = "ONNX model", *, fuse_batchnorm: bool = True):
        super().__init__()
        onnx, nh = _onnx()
        self.source = source
        g = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        if opset is None:
            raise CheckpointError(f"{source}: the model declares no default-domain opset; expected an ONNX "
                                  f"graph of standard operators")
        self.opset = int(opset)
        consts: dict[str, np.ndarray] = {}
        for t in g.initializer:
            try:
                consts[t.name] = np.array(nh.to_array(t))
            except Exception as e:
                raise CheckpointError(f"{source}: initializer {t.name!r} cannot be read ({e})") from None
        if len(g.sparse_initializer):
            raise CheckpointError(f"{source}: sparse initializers are not supported")
        self.input_names = [i.name for i in g.input if i.name not in consts]
        self.output_names = [o.name for o in g.output]
        self.input_shapes = [_dims(i) for i in g.input if i.name not in consts]
        self.output_shapes = [_dims(o) for o in g.output]
        self.input_elem_types = [int(i.type.tensor_type.elem_type) for i in g.input if i.name not in consts]
        nodes = [self._read_node(onnx, nh, n) for n in g.node]
        read = {i for n in nodes for i in n.inputs} | set(self.output_names)
        for n in nodes:
            extra = [o for o in n.attrs.get("_extra_outputs", []) if o in read]
            if extra:
                raise CheckpointError(f"{source}: node {n.name!r} ({n.op}): its extra outputs {extra} (mask, "
                                      f"training statistics or indices) are read by the graph; not supported")
        nodes = self._topological(nodes, set(consts) | set(self.input_names))
        # evaluate nodes whose inputs are all constants once, now
        runtime: list[_Node] = []
        for node in nodes:
            if all((not i) or i in consts for i in node.inputs):
                vals = [consts[i] if i else None for i in node.inputs]
                outs = self._run_node(node, vals, host=True)
                for name, val in zip(node.outputs, outs):
                    if name:
                        consts[name] = val if isinstance(val, np.ndarray) else val.numpy()
            else:
                runtime.append(node)
        if fuse_batchnorm:
            runtime = self._fuse_batchnorm(runtime, consts)
        self.op_counts = {op: sum(n.op == op for n in runtime) for op in sorted({n.op for n in runtime})}
        # constants read as tensor data -> buffers (they follow .to(device)); small ones and those read as
        # shape/axis parameters also stay host arrays, for shape arithmetic without a device round trip
        self._host: dict[str, np.ndarray] = {}
        self._buffer_of: dict[str, str] = {}
        produced = {o for n in runtime for o in n.outputs}
        for node in runtime:
            for pos, name in enumerate(node.inputs):
                if not name or name not in consts or name in produced:
                    continue
                arr = consts[name]
                if pos in node.host_inputs or arr.size <= 64:
                    self._host[name] = arr
                if pos not in node.host_inputs and name not in self._buffer_of:
                    key = f"c{len(self._buffer_of)}"
                    self.register_buffer(key, torch.from_numpy(np.array(arr, order="C")).clone(), persistent=True)
                    self._buffer_of[name] = key
        for name in self.output_names:  # outputs that are constants
            if name in consts and name not in produced:
                self._host[name] = consts[name]
        self._nodes = runtime
        missing = [o for o in self.output_names if o not in produced and o not in consts
                   and o not in self.input_names]
        if missing:
            raise CheckpointError(f"{source}: graph outputs {missing} are produced by no node")

    # ---------------------------------------------------------------- building
    def _read_node(self, onnx: Any, nh: Any, n: NodeProto) -> _Node:
        where = f"{self.source}: node {n.name or '<unnamed>'!r} ({n.op_type})"
        if n.domain not in ("", "ai.onnx"):
            raise CheckpointError(f"{where}: operator domain {n.domain!r} is not supported; OnnxGraphModule runs "
                                  f"standard ONNX operators only: {', '.join(sorted(SUPPORTED_OPS))}")
        if n.op_type not in SUPPORTED_OPS:
            raise CheckpointError(f"{where}: operator {n.op_type!r} is not supported by the torch backend; "
                                  f"supported: {', '.join(sorted(SUPPORTED_OPS))}. Use the onnxruntime backend "
                                  f"for this model")
        attrs: dict[str, Any] = {}
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise CheckpointError(f"{where}: subgraph attributes are not supported")
            attrs[a.name] = _attr_value(onnx, nh, a)
        attrs["_num_outputs"] = len(n.output)
        outputs = list(n.output)
        if n.op_type in _FIRST_OUTPUT_ONLY:
            outputs = outputs[:1]
            attrs["_extra_outputs"] = [o for o in n.output[1:] if o]
        if n.op_type == "Resize" and attrs.get("mode", "nearest") not in ("nearest", "linear"):
            raise CheckpointError(f"{where}: Resize mode {attrs['mode']!r} is not supported (nearest, linear)")
        if n.op_type in ("Conv", "MaxPool", "AveragePool") and attrs.get("auto_pad", "NOTSET") not in (
                "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
            raise CheckpointError(f"{where}: auto_pad {attrs['auto_pad']!r} is not supported")
        if n.op_type == "MaxPool" and attrs.get("storage_order", 0):
            raise CheckpointError(f"{where}: MaxPool storage_order=1 is not supported")
        return _Node(n.op_type, n.name or n.op_type, list(n.input), outputs, attrs)

    def _topological(self, nodes: list[_Node], available: set[str]) -> list[_Node]:
        """Nodes in an order where every input is produced before use (Kahn); CheckpointError on a cycle or an
        input nothing produces."""
        have = set(available) | {""}
        pending, ordered = list(nodes), []
        while pending:
            rest = []
            for node in pending:
                if all(i in have for i in node.inputs):
                    ordered.append(node)
                    have.update(node.outputs)
                else:
                    rest.append(node)
            if len(rest) == len(pending):
                node = rest[0]
                missing = [i for i in node.inputs if i not in have]
                raise CheckpointError(f"{self.source}: node {node.name!r} ({node.op}) reads {missing}, which no "
                                      f"node, initializer or graph input provides (or the graph has a cycle)")
            pending = rest
        return ordered

    def _fuse_batchnorm(self, nodes: list[_Node], consts: dict[str, np.ndarray]) -> list[_Node]:
        """Fold ``BatchNormalization(Conv(x, W, b))`` into ``Conv(x, W', b')`` when W, b and the statistics are
        constants and the Conv output feeds nothing else."""
        uses: dict[str, int] = {}
        for n in nodes:
            for i in n.inputs:
                uses[i] = uses.get(i, 0) + 1
        for o in self.output_names:
            uses[o] = uses.get(o, 0) + 1
        producer = {o: n for n in nodes for o in n.outputs}
        drop: set[int] = set()
        for n in nodes:
            if n.op != "BatchNormalization" or len(n.inputs) < 5:
                continue
            conv = producer.get(n.inputs[0])
            if conv is None or conv.op != "Conv" or uses.get(n.inputs[0], 0) != 1:
                continue
            names = conv.inputs[1:3] + n.inputs[1:5]
            if not all(x in consts for x in names if x) or conv.inputs[1] not in consts:
                continue
            w = consts[conv.inputs[1]].astype(np.float64)
            b = consts[conv.inputs[2]].astype(np.float64) if len(conv.inputs) > 2 and conv.inputs[2] \
                else np.zeros(w.shape[0])
            gamma, beta, mean, var = (consts[x].astype(np.float64) for x in n.inputs[1:5])
            k = gamma / np.sqrt(var + float(n.attrs.get("epsilon", 1e-5)))
            w_name, b_name = f"{conv.outputs[0]}__bnw", f"{conv.outputs[0]}__bnb"
            consts[w_name] = (w * k.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
            consts[b_name] = ((b - mean) * k + beta).astype(np.float32)
            conv.inputs = [conv.inputs[0], w_name, b_name]
            conv.outputs = [n.outputs[0]]
            drop.add(id(n))
        return [n for n in nodes if id(n) not in drop]

    # ---------------------------------------------------------------- running
    def _run_node(self, node: _Node, vals: Sequence[Value | None], host: bool = False) -> list[Value]:
        """One node. Host arrays only (constant folding, shape arithmetic): computed with torch on the CPU and
        returned as arrays; otherwise device tensors."""
        fn = SUPPORTED_OPS[node.op]
        vals = list(vals)
        data = [v for i, v in enumerate(vals) if i not in node.host_inputs and v is not None]
        all_host = all(isinstance(v, np.ndarray) for v in data)
        try:
            if all_host and (host or node.op in _HOST_OK):
                if node.op in ("Shape", "Constant", "ConstantOfShape"):
                    return fn(vals, node.attrs, self.opset)
                tv = [torch.from_numpy(np.array(v, order="C")) if isinstance(v, np.ndarray) and i not in
                      node.host_inputs else v for i, v in enumerate(vals)]
                return [o.numpy() if isinstance(o, torch.Tensor) else o for o in fn(tv, node.attrs, self.opset)]
            return fn(vals, node.attrs, self.opset)
        except CheckpointError as e:
            raise CheckpointError(f"{self.source}: node {node.name!r} ({node.op}): {e}") from None
        except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as e:
            shapes = [tuple(v.shape) if v is not None else None for v in vals]
            raise CheckpointError(f"{self.source}: node {node.name!r} ({node.op}) failed on inputs of shapes "
                                  f"{shapes}: {e}") from None

    def run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Graph outputs by name for graph inputs by name (tensors on the module's device)."""
        unknown = set(feeds) - set(self.input_names)
        missing = [n for n in self.input_names if n not in feeds]
        if unknown or missing:
            raise ValueError(f"{self.source}: expected inputs {self.input_names}, got {sorted(feeds)}")
        env: dict[str, Value] = dict(feeds)
        host, buffers = self._host, self._buffer_of
        last_use = self._last_use()
        for step, node in enumerate(self._nodes):
            dynamic = [env[name] for name in node.inputs if name in env]
            on_device = any(isinstance(v, torch.Tensor) for v in dynamic)
            vals: list[Value | None] = []
            for pos, name in enumerate(node.inputs):
                if not name:
                    vals.append(None)
                elif name in env:
                    vals.append(env[name])
                elif pos in node.host_inputs or (name in host and not on_device) or name not in buffers:
                    vals.append(host[name])
                else:
                    vals.append(getattr(self, buffers[name]))
            outs = self._run_node(node, vals)
            for name, val in zip(node.outputs, outs):
                if name:
                    env[name] = val
            for name in last_use.get(step, ()):
                env.pop(name, None)  # free activations as soon as nothing reads them
        ref = next(iter(feeds.values()))
        result: dict[str, torch.Tensor] = {}
        for name in self.output_names:
            val = env[name] if name in env else host[name]
            result[name] = val if isinstance(val, torch.Tensor) else torch.from_numpy(np.array(val)).to(ref.device)
        return result

    def _last_use(self) -> dict[int, list[str]]:
        cached = getattr(self, "_last_use_cache", None)
        if cached is not None:
            return cached
        last: dict[str, int] = {}
        for step, node in enumerate(self._nodes):
            for name in node.inputs:
                if name:
                    last[name] = step
        keep = set(self.output_names)
        out: dict[int, list[str]] = {}
        for name, step in last.items():
            if name not in keep:
                out.setdefault(step, []).append(name)
        self._last_use_cache = out
        return out

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Graph outputs (in graph order) for the graph inputs given in order."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.source}: expected {len(self.input_names)} input(s) {self.input_names}, got "
                             f"{len(inputs)}")
        out = self.run(dict(zip(self.input_names, inputs)))
        return tuple(out[n] for n in self.output_names)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_bytes(cls, data: bytes, source: str = "ONNX model bytes", **kw: Any) -> OnnxGraphModule:
        """From serialized model bytes (already checked, e.g. by `read_onnx_model`)."""
        onnx, _ = _onnx()
        try:
            model = onnx.load_from_string(data)
        except Exception as e:
            raise CheckpointError(f"{source}: not a readable ONNX model ({type(e).__name__}: {e})") from None
        return cls(model, source, **kw)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                  **kw: Any) -> OnnxGraphModule:
        """From an ONNX file: a regular, bounded, self-contained file (`read_onnx_model`); block-quantised files
        (DequantizeLinear nodes, OpenCV Zoo's int8bq) are folded to fp32 first with `onnx_fold.prepare_onnx`
        (cached in ``cache_dir``). CheckpointError naming the file and the node for anything unsupported."""
        from ..detection.onnx_fold import prepare_onnx
        from ..detection.onnx_session import read_onnx_model

        onnx, _ = _onnx()
        source = str(path)
        data = read_onnx_model(path)
        try:
            model = onnx.load_from_string(data)
        except Exception as e:
            raise CheckpointError(f"{source}: not a readable ONNX model ({type(e).__name__}: {e})") from None
        if any(n.op_type == "DequantizeLinear" for n in model.graph.node):
            prepared = prepare_onnx(path, cache_dir=cache_dir)
            data = prepared if isinstance(prepared, bytes) else read_onnx_model(prepared)
            model = onnx.load_from_string(data)
        return cls(model, Path(source).name if len(source) > 120 else source, **kw)

    def extra_repr(self) -> str:
        ops = ", ".join(f"{k} x{v}" for k, v in self.op_counts.items())
        return f"source={self.source!r}, inputs={self.input_names}, outputs={len(self.output_names)}, ops: {ops}"
