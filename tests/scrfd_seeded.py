"""A seeded SCRFD with the structure of insightface's exports (for tests and bench/bench_detectors.py).

Conv + BatchNormalization + Relu backbone with a ResNet-D block (AveragePool shortcut) and a depthwise conv, an FPN
whose top-down Resize takes its size from Shape/Slice/Concat (``F.interpolate(size=...)`` export) or constant
scales (``scale_factor=2`` export), heads of Conv -> Sigmoid / Mul(scale) / Conv, outputs Transpose + Reshape with
the batch read by Shape/Gather/Unsqueeze/Concat (batched export) or a constant shape. Seeded random weights: the
scores mean nothing, the graph and its arithmetic are what is tested.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

GAIN = 0.2  # score head weight scale: spreads the seeded scores (no saturation at 1)


def seeded_scrfd(seed: int = 0, *, batched: bool = True) -> onnx.ModelProto:
    """A small SCRFD with insightface's export structure and seeded weights (9 outputs: scores, boxes, points of
    strides 8/16/32, 2 anchors per cell). Batched: input [n,3,h,w], outputs [n,K,C] reshaped with the batch read by
    Shape/Gather/Unsqueeze/Concat; else input [1,3,h,w], outputs [K,C] reshaped with a constant shape."""
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}{counter[0]}"

    def const(arr: np.ndarray, prefix: str = "k") -> str:
        n = name(prefix)
        inits.append(numpy_helper.from_array(arr, n))
        return n

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = name(op.lower())
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(x: str, cin: int, cout: int, k: int = 3, s: int = 1, bn: bool = True, relu: bool = True,
             group: int = 1, bias: float = 0.0, gain: float = 1.0) -> str:
        std = gain * np.sqrt(2.0 / (cin // group * k * k))
        w = rng.normal(0, std, (cout, cin // group, k, k)).astype(np.float32)
        b = (rng.normal(0, 0.05, cout) + bias).astype(np.float32)
        y = node("Conv", [x, const(w, "w"), const(b, "b")], kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4,
                 group=group)
        if bn:
            y = node("BatchNormalization", [y, const(rng.uniform(0.5, 1.5, cout).astype(np.float32)),
                                            const(rng.normal(0, 0.1, cout).astype(np.float32)),
                                            const(rng.normal(0, 0.1, cout).astype(np.float32)),
                                            const(rng.uniform(0.5, 1.5, cout).astype(np.float32))], epsilon=1e-5)
        return node("Relu", [y]) if relu else y

    x = "input.1"
    c = conv(x, 3, 16, s=2)                                   # stride 2
    c = conv(c, 16, 24, s=2)                                  # stride 4
    main = conv(conv(c, 24, 32, s=2), 32, 32, relu=False)      # stride 8, ResNet-D block with avg-pool shortcut
    short = conv(node("AveragePool", [c], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1, count_include_pad=0),
                 24, 32, k=1, relu=False)
    c3 = node("Relu", [node("Add", [main, short])])
    c4 = conv(c3, 32, 48, s=2)                                # stride 16
    c5 = conv(conv(c4, 48, 48, s=2, group=48), 48, 64, k=1)    # stride 32, depthwise + pointwise
    l3, l4, l5 = (conv(f, ch, 32, k=1, bn=False, relu=False) for f, ch in ((c3, 32), (c4, 48), (c5, 64)))
    # top-down 1: Resize to the size of l4 read from its shape (F.interpolate(size=...) export)
    hw = node("Slice", [node("Shape", [l4]), const(np.array([2], np.int64)), const(np.array([4], np.int64))])
    nc = node("Slice", [node("Shape", [l5]), const(np.array([0], np.int64)), const(np.array([2], np.int64))])
    up5 = node("Resize", [l5, "", "", node("Concat", [nc, hw], axis=0)], mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    p4 = node("Add", [l4, up5])
    # top-down 2: Resize by constant scales (F.interpolate(scale_factor=2) export)
    up4 = node("Resize", [p4, "", const(np.array([1, 1, 2, 2], np.float32), "scales")], mode="nearest",
               coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    p3 = node("Add", [l3, up4])
    outs: dict[str, str] = {}
    for stride, p in ((8, p3), (16, p4), (32, l5)):
        p = conv(p, 32, 32)
        heads = {"score": node("Sigmoid", [conv(p, 32, 2, bn=False, relu=False, bias=-3.0, gain=GAIN)]),
                 "bbox": node("Mul", [conv(p, 32, 8, bn=False, relu=False, bias=1.0),
                                      const(np.array(1.5, np.float32), "scale")]),
                 "kps": conv(p, 32, 20, bn=False, relu=False)}
        for kind, t in heads.items():
            ch = {"score": 1, "bbox": 4, "kps": 10}[kind]
            t = node("Transpose", [t], perm=[0, 2, 3, 1])
            if batched:
                batch = node("Unsqueeze", [node("Gather", [node("Shape", [t]), const(np.array(0, np.int64))],
                                                axis=0), const(np.array([0], np.int64))])
                shape = node("Concat", [batch, const(np.array([-1, ch], np.int64))], axis=0)
            else:
                shape = const(np.array([-1, ch], np.int64))
            out = f"{kind}_{stride}"
            nodes.append(helper.make_node("Reshape", [t, shape], [out], name=out))
            outs[out] = out
    b = "n" if batched else 1
    order = [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)]
    width = {"score": 1, "bbox": 4, "kps": 10}
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, [b, None, width[o.split("_")[0]]] if batched
                                             else [None, width[o.split("_")[0]]]) for o in order]
    graph = helper.make_graph(nodes, "scrfd_seeded", [helper.make_tensor_value_info(x, TensorProto.FLOAT,
                                                                                    [b, 3, "h", "w"])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model
