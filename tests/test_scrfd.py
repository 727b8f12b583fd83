"""SCRFD (insightface packs) with our decoder (torch backend by default, onnxruntime too): synthetic SCRFD graphs
with known faces test the decoder, the preprocessing (colour order, normalisation, letterbox), fixed-size models,
pack lookup; batched NMS."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_detection import _sanity

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from simswap_core.detection import SCRFDDetector, find_scrfd, load_detector  # noqa: E402
from simswap_core.detection.base import batched_nms, box_iou  # noqa: E402
from simswap_core.detection.scrfd import letterbox_size  # noqa: E402
from simswap_core.errors import CheckpointError, MissingModelError  # noqa: E402

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------- SCRFD
STRIDES = (8, 16, 32)


def _k(det: int, s: int) -> int:
    return (det // s) ** 2 * 2


def _scrfd_model(*, faces=(), batched=False, input_hw=("h", "w"), red_score=False, det=640, bg=0.01):
    """A 9-output SCRFD-layout model. Constant outputs encode ``faces``: (stride, row, col, anchor, score,
    dist[4], kps[10]); with ``red_score`` the stride-8 score is the mean of the network's channel 0 over each
    8x8 cell (so it tests colour order, normalisation and letterbox placement) with box distances 1, points 0."""
    nodes, inits = [], []
    b = "n" if batched else 1
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [b, 3, *input_hw])
    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["m"], axes=[1, 2, 3], keepdims=1))
    inits.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    nodes.append(helper.make_node("Mul", ["m", "zero"], ["z4"]))
    inits.append(numpy_helper.from_array(np.array([-1, 1, 1] if batched else [1, 1], np.int64), "zshape"))
    nodes.append(helper.make_node("Reshape", ["z4", "zshape"], ["z"]))
    consts = {}
    for s in STRIDES:
        k = _k(det, s)
        consts[f"score_{s}"] = np.full((k, 1), bg, np.float32)
        consts[f"bbox_{s}"] = np.full((k, 4), 1.0, np.float32)
        consts[f"kps_{s}"] = np.zeros((k, 10), np.float32)
    for s, r, c, a, score, dist, kps in faces:
        i = (r * (det // s) + c) * 2 + a
        consts[f"score_{s}"][i] = score
        consts[f"bbox_{s}"][i] = dist
        consts[f"kps_{s}"][i] = kps
    outs = []
    for kind, ch in (("score", 1), ("bbox", 4), ("kps", 10)):
        for s in STRIDES:
            name = f"{kind}_{s}"
            shape = [b, _k(det, s), ch] if batched else [_k(det, s), ch]
            outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
            if red_score and name == "score_8":
                w = np.zeros((1, 3, 8, 8), np.float32)
                w[0, 0] = 1 / 64
                inits.append(numpy_helper.from_array(w, "pool_w"))
                inits.append(numpy_helper.from_array(np.array([-1, 1] if not batched else [0, -1, 1], np.int64),
                                                     "sshape"))
                nodes += [helper.make_node("Conv", ["input.1", "pool_w"], ["pooled"], strides=[8, 8]),
                          helper.make_node("Transpose", ["pooled"], ["pooled_t"], perm=[0, 2, 3, 1]),
                          helper.make_node("Concat", ["pooled_t", "pooled_t"], ["pooled_2"], axis=3),
                          helper.make_node("Reshape", ["pooled_2", "sshape"], [name])]
                continue
            c = consts[name][None] if batched else consts[name]
            inits.append(numpy_helper.from_array(c, name + "_c"))
            nodes.append(helper.make_node("Add", ["z", name + "_c"], [name]))
    g = helper.make_graph(nodes, "scrfd_test", [inp], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.checker.check_model(m)
    return m


def _scrfd_file(path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(_scrfd_model(**kw), str(path))
    return path


FACES = [  # stride, row, col, anchor, score, (left, top, right, bottom), kps offsets (stride units)
    (8, 20, 30, 1, 0.9, (2.0, 3.0, 2.5, 3.5), (-1, -1, 1, -1, 0, 0, -0.75, 1, 0.75, 1)),
    (8, 20, 30, 0, 0.85, (2.0, 3.0, 2.5, 3.5), (0,) * 10),          # same box, lower score: NMS drops it
    (16, 10, 5, 0, 0.8, (1.5, 1.5, 1.5, 2.0), (-0.5, -0.5, 0.5, -0.5, 0, 0.1, -0.4, 0.6, 0.4, 0.6)),
    (32, 3, 15, 1, 0.5, (1.0, 1.0, 1.0, 1.0), (0.1,) * 10),         # exactly at the threshold: kept (>=)
    (32, 12, 2, 0, 0.45, (1.0, 1.0, 1.0, 1.0), (0,) * 10),          # below threshold
]


def _expected(faces, det_scale):
    """Independent re-statement of SCRFD decoding in frame pixels, kept faces only, left to right."""
    out = []
    for s, r, c, _a, score, dist, kps in faces:
        if score < 0.5 or score == 0.85:
            continue
        ax, ay = c * s, r * s
        box = [(ax - dist[0] * s), (ay - dist[1] * s), (ax + dist[2] * s), (ay + dist[3] * s)]
        pts = [[(ax + kps[2 * i] * s), (ay + kps[2 * i + 1] * s)] for i in range(5)]
        out.append((np.array(box) / det_scale, np.array(pts) / det_scale, np.float32(score)))
    out.sort(key=lambda t: (t[0][0] + t[0][2]) / 2)
    return out


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("batched", [False, True])
def test_scrfd_decoder_known_faces(tmp_path, batched, backend):
    path = _scrfd_file(tmp_path / "scrfd.onnx", faces=FACES, batched=batched)
    det = SCRFDDetector(path, threshold=0.5, det_size=640, threads=1, backend=backend)
    assert det.batched_outputs == batched and det.input_hw == (640, 640) and det.backend == backend
    frames = torch.rand(2, 3, 886, 1280, generator=torch.Generator().manual_seed(1))
    new_h, new_w, det_scale = letterbox_size(886, 1280, 640, 640)
    assert (new_h, new_w, det_scale) == (443, 640, 0.5)
    faces = det.detect(frames)
    exp = _expected(FACES, det_scale)
    assert faces.counts() == [len(exp), len(exp)]
    for f in range(2):
        got = faces.for_frame(f)
        for k, (box, pts, score) in enumerate(exp):
            np.testing.assert_allclose(got.boxes[k].numpy(), box, atol=1e-4)
            np.testing.assert_allclose(got.points[k].numpy(), pts, atol=1e-4)
            assert got.scores[k].item() == pytest.approx(float(score), abs=1e-6)
    # the known face with key points: ArcFace order survives decoding
    _sanity(faces.select(faces.scores > 0.85))


def test_scrfd_preprocessing_colour_order_normalisation_letterbox(tmp_path):
    """A red 16x16 square at frame (320..335, 160..175) becomes cell (row 10, col 20) of stride 8 after the
    0.5 letterbox; the test model scores each cell by the mean of input channel 0 = R (insightface feeds RGB),
    normalised (x-127.5)/128: exactly 0.99609375 there, -0.996 elsewhere. A blue square must not fire."""
    det = SCRFDDetector(_scrfd_file(tmp_path / "red.onnx", red_score=True, batched=True), threshold=0.5)
    frames = torch.zeros(3, 3, 886, 1280)
    frames[0, 0, 160:176, 320:336] = 1.0   # red
    frames[1, 2, 160:176, 320:336] = 1.0   # blue
    frames[2, 0, 880:886, 0:1280] = 1.0    # red stripe in the last rows: lands in the letterbox, row 440..442
    faces = det.detect(frames)
    assert faces.counts()[:2] == [1, 0]
    f = faces.for_frame(0)
    assert f.scores.item() == pytest.approx(0.99609375, abs=1e-6)
    np.testing.assert_allclose(f.boxes[0].numpy(), [304, 144, 336, 176], atol=1e-4)  # anchor (160,80) +-8, /0.5
    np.testing.assert_allclose(f.points[0].numpy(), [[320, 160]] * 5, atol=1e-4)
    # the stripe covers 3 of the 8 rows of cells at y=440 -> mean 3/8*0.996 + 5/8*(-0.996) < 0.5: nothing
    assert faces.counts()[2] == 0
    blob, scale = det.prepare(frames[:1])
    assert scale == 0.5 and blob.shape == (1, 3, 640, 640)
    assert blob[0, :, 443:].eq(-127.5 / 128).all(), "letterbox padding is black"


def test_scrfd_fixed_input_size_model(tmp_path):
    path = _scrfd_file(tmp_path / "fixed.onnx", input_hw=(320, 320), det=320,
                       faces=[(16, 5, 8, 0, 0.9, (1, 1, 1, 1), (0,) * 10)])
    det = SCRFDDetector(path, det_size=640)
    assert det.input_hw == (320, 320)
    faces = det.detect(torch.zeros(1, 3, 640, 320))  # tall frame: scale 0.5, width 160
    assert len(faces) == 1
    np.testing.assert_allclose(faces.boxes[0].numpy(), [(128 - 16) / 0.5, (80 - 16) / 0.5, (128 + 16) / 0.5,
                                                        (80 + 16) / 0.5], atol=1e-4)


def test_scrfd_pack_lookup(tmp_path):
    models = tmp_path / "ComfyUI" / "models"
    ante = _scrfd_file(models / "insightface" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx", faces=FACES)
    (ante.parent / "glintr100.onnx").write_bytes(b"not read")  # recognition model: never opened
    det = load_detector("antelopev2", search_dirs=[models])
    assert isinstance(det, SCRFDDetector) and det.model_path == ante
    assert find_scrfd(ante.parent) == ante  # a pack folder
    # buffalo_l: det_10g.onnx; a folder with an unusual detector name is recognised by its outputs
    odd = _scrfd_file(tmp_path / "mypack" / "my_detector.onnx", faces=FACES)
    assert find_scrfd(odd.parent) == odd
    assert isinstance(load_detector(str(odd.parent)), SCRFDDetector)
    with pytest.raises(MissingModelError) as e:
        load_detector("buffalo_l", search_dirs=[models])
    msg = str(e.value)
    assert "det_10g.onnx" in msg and str(models / "insightface" / "models" / "buffalo_l") in msg
    assert "install.py --model buffalo_l" in msg
    empty = tmp_path / "emptypack"
    empty.mkdir()
    with pytest.raises(MissingModelError, match="no SCRFD detector in folder"):
        find_scrfd(empty)


def test_scrfd_rejects_non_kps_model(tmp_path):
    m = _scrfd_model(faces=FACES)
    del m.graph.output[6:]  # 6 outputs: SCRFD without key points
    onnx.save(m, str(tmp_path / "nokps.onnx"))
    with pytest.raises(CheckpointError, match="without key points"):
        SCRFDDetector(tmp_path / "nokps.onnx")


# ----------------------------------------------------------------------------------------------- NMS
def test_batched_nms_equals_greedy_loop():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(300, 2, generator=g) * 200
    wh = torch.rand(300, 2, generator=g) * 60 + 5
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(300, generator=g)
    frame = torch.randint(0, 3, (300,), generator=g)
    for offset in (0.0, 1.0):
        keep = set(batched_nms(boxes, scores, frame, 0.4, offset=offset, top_k=0).tolist())
        ref = set()
        for f in range(3):  # the classic loop, frame by frame
            idx = (frame == f).nonzero().flatten()
            order = idx[torch.argsort(scores[idx], descending=True)].tolist()
            while order:
                i = order.pop(0)
                ref.add(i)
                order = [j for j in order
                         if box_iou(boxes[i:i + 1], boxes[j:j + 1], offset).item() <= 0.4]
        assert keep == ref
