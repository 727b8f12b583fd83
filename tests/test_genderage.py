"""GenderAgeEstimator (insightface genderage.onnx layout) with seeded ONNX models of the same signature: the crop
(box centre, 1.5 x the longer side, bilinear, black border) checked against cv2.warpAffine, the input scaling
(raw 0..255 when the graph normalises itself, else (x - 127.5) / 128), fixed batch 1 and dynamic batch, the
gender/age decoding, refusal of files with another signature, and the loader node's list."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from simswap_core.detection.genderage import (
    GenderAgeEstimator,
    genderage_crop_matrices,
    load_genderage,
    looks_like_genderage,
)
from simswap_core.errors import CheckpointError, InputError, MissingModelError
from simswap_core.faces import DetectedFaces

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

SIZE = 96


def _weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)


def write_model(path: Path, *, seed: int = 7, batch: int | str = "N", normalises_itself: bool = True,
                size: int = SIZE, out_dim: int = 3, outputs: int = 1) -> Path:
    """A genderage-like ONNX: (x - 127.5) / 128 (in the graph, or expected outside) -> per-channel spatial mean
    [B,3] -> @ W + b (seeded) -> [B,out_dim]. Its outputs depend on every pixel of the crop."""
    from onnx import TensorProto, helper, numpy_helper

    w, b = _weights(seed)
    w = np.concatenate([w, np.ones((3, max(0, out_dim - 3)), np.float32)], 1)[:, :out_dim]
    b = np.concatenate([b, np.zeros(max(0, out_dim - 3), np.float32)])[:out_dim]
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
             numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
             numpy_helper.from_array(np.array(1 / 128, np.float32), "scale"),
             numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]
    nodes = []
    x = "data"
    if normalises_itself:
        nodes += [helper.make_node("Sub", ["data", "mean"], ["centred"]),
                  helper.make_node("Mul", ["centred", "scale"], ["scaled"])]
        x = "scaled"
    nodes += [helper.make_node("ReduceMean", [x, "axes"], ["pooled"], keepdims=0),
              helper.make_node("MatMul", ["pooled", "W"], ["mm"]),
              helper.make_node("Add", ["mm", "B"], ["fc1"])]
    outs = [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [batch, out_dim])]
    if outputs == 2:
        nodes.append(helper.make_node("Identity", ["pooled"], ["extra"]))
        outs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [batch, 3]))
    graph = helper.make_graph(nodes, "genderage_seeded",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [batch, 3, size, size])],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def _faces(boxes: list[list[float]], frame_index: list[int], sizes: list[tuple[int, int]]) -> DetectedFaces:
    b = torch.tensor(boxes, dtype=torch.float32)
    f = b.shape[0]
    return DetectedFaces(b, torch.zeros(f, 5, 2), torch.ones(f), torch.tensor(frame_index, dtype=torch.int64),
                         sizes)


def _frames(seed: int = 0, n: int = 2, h: int = 200, w: int = 240) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(n, 3, h // 8, w // 8, generator=g), size=(h, w),
                                             mode="bilinear", align_corners=False)
    return (smooth * 255).round() / 255


def _reference_scores(frames: torch.Tensor, faces: DetectedFaces, seed: int) -> np.ndarray:
    """Independent reference: cv2.warpAffine of the 8-bit frame, per face, then the seeded model in numpy."""
    w, b = _weights(seed)
    rows = []
    for box, fi in zip(faces.boxes.tolist(), faces.frame_index.tolist()):
        img = (frames[fi].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # RGB
        x1, y1, x2, y2 = box
        s = SIZE / (max(x2 - x1, y2 - y1) * 1.5)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        m = np.array([[s, 0, SIZE / 2 - s * cx], [0, s, SIZE / 2 - s * cy]], np.float64)
        crop = cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0).astype(np.float32)
        pooled = ((crop - 127.5) / 128).mean((0, 1))       # RGB channel means
        rows.append(pooled @ w + b)
    return np.stack(rows)


BOXES = [[40.0, 30.0, 110.0, 120.0], [150.0, 60.0, 230.0, 130.0], [5.0, 100.0, 60.0, 190.0]]


@pytest.mark.parametrize("batch,normalises_itself", [("N", True), (1, False), ("N", False), (1, True)])
def test_scores_match_a_cv2_reference(tmp_path, batch, normalises_itself):
    path = write_model(tmp_path / "genderage.onnx", seed=11, batch=batch, normalises_itself=normalises_itself)
    est = load_genderage(path, device="cpu")
    assert est.input_size == SIZE and est.fixed_batch == (None if batch == "N" else 1)
    assert (est.mean, est.std) == ((0.0, 1.0) if normalises_itself else (127.5, 128.0))
    frames = _frames()
    faces = _faces(BOXES, [0, 0, 1], [(200, 240)] * 2)
    got = est.scores(frames, faces).numpy()
    want = _reference_scores(frames, faces, seed=11)
    # cv2 4.x quantises bilinear weights to 1/32 px; the crop means agree to a small fraction of a level
    assert got.shape == (3, 3) and np.allclose(got, want, atol=2e-3), (got, want)
    gender, age = est.predict(frames, faces)
    assert gender.dtype == torch.int64 and gender.tolist() == np.argmax(want[:, :2], 1).tolist()
    assert torch.allclose(age, torch.from_numpy(want[:, 2] * 100), atol=0.2)


@pytest.mark.parametrize("batch", ["N", 1])
def test_torch_backend_is_default_and_equals_onnxruntime(tmp_path, batch):
    pytest.importorskip("onnxruntime")
    path = write_model(tmp_path / "genderage.onnx", seed=5, batch=batch)
    default, ort_est = load_genderage(path, device="cpu"), load_genderage(path, device="cpu", backend="onnxruntime")
    assert default.backend == "torch" and default.session is None and default.providers == ["torch:cpu"]
    assert ort_est.backend == "onnxruntime" and ort_est.providers == ["CPUExecutionProvider"]
    frames, faces = _frames(), _faces(BOXES, [0, 0, 1], [(200, 240)] * 2)
    torch.testing.assert_close(default.scores(frames, faces), ort_est.scores(frames, faces), atol=1e-5, rtol=0)


def test_gender_and_age_follow_the_face_crop(tmp_path):
    """A model whose 'male' score is the crop's blue mean and 'female' score its red mean, age = green mean: a red
    face and a blue face are told apart, the age reads the crop (so the crop lands on the right face)."""
    from onnx import numpy_helper

    path = write_model(tmp_path / "g.onnx")
    proto = onnx.load(str(path))
    w = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float32)  # R -> female, G -> age, B -> male
    for i, t in enumerate(proto.graph.initializer):
        if t.name == "W":
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, "W"))
        if t.name == "B":
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array([0, 0, 1], np.float32), "B"))
    path.write_bytes(proto.SerializeToString())
    frame = torch.zeros(1, 3, 300, 600)
    frame[0, 0, :, :300] = 0.9          # left half red
    frame[0, 2, :, 300:] = 0.9          # right half blue
    frame[0, 1, :, :] = 0.25            # green: age
    faces = _faces([[100.0, 100.0, 200.0, 200.0], [400.0, 100.0, 500.0, 200.0]], [0, 0], [(300, 600)])
    gender, age = load_genderage(path).predict(frame, faces)
    assert gender.tolist() == [0, 1]    # 0 = female (red), 1 = male (blue)
    g = round(0.25 * 255)
    assert age.tolist() == pytest.approx([100 * (1 + (g - 127.5) / 128)] * 2, abs=0.01)
    # the crop spans 1.5 x 100 px around the box centre: 150 px of frame in 96 px
    m = genderage_crop_matrices(faces.boxes, SIZE)
    assert torch.allclose(m[0], torch.tensor([[0.64, 0.0, 48 - 0.64 * 150], [0.0, 0.64, 48 - 0.64 * 150]]))


def test_no_faces_and_mismatched_frames(tmp_path):
    est = load_genderage(write_model(tmp_path / "g.onnx"))
    frames = _frames(n=1)
    none = DetectedFaces.empty([(200, 240)])
    gender, age = est.predict(frames, none)
    assert gender.shape == (0,) and age.shape == (0,)
    with pytest.raises(InputError, match="gender model: faces"):
        est.predict(_frames(n=2), _faces(BOXES[:1], [0], [(200, 240)]))


@pytest.mark.parametrize("kwargs,found", [
    ({"out_dim": 5}, "found output"),
    ({"out_dim": 512, "size": 112}, "found output"),
    ({"outputs": 2}, "2 output"),
    ({"size": 300}, "found input"),
])
def test_wrong_signature_is_refused(tmp_path, kwargs, found):
    path = write_model(tmp_path / "other.onnx", **kwargs)
    assert not looks_like_genderage(path)
    with pytest.raises(CheckpointError, match=f"{found}.*expected an insightface-style gender/age model"):
        load_genderage(path)


def test_not_a_model_and_missing_file(tmp_path):
    bad = tmp_path / "genderage.onnx"
    bad.write_bytes(b"\x00not onnx at all" * 10)
    assert not looks_like_genderage(bad)
    with pytest.raises(CheckpointError):
        load_genderage(bad)
    with pytest.raises(MissingModelError, match="buffalo_l"):
        load_genderage(tmp_path / "missing.onnx")
    assert looks_like_genderage(write_model(tmp_path / "ok.onnx"))
    assert isinstance(GenderAgeEstimator(tmp_path / "ok.onnx"), GenderAgeEstimator)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_crops_are_cut_on_the_device(tmp_path):
    est = load_genderage(write_model(tmp_path / "g.onnx"), device="cuda")
    frames = _frames()
    faces = _faces(BOXES, [0, 0, 1], [(200, 240)] * 2)
    crops = est.crops(frames.cuda(), faces.to("cuda"))
    assert crops.device.type == "cuda"
    assert torch.allclose(crops.cpu(), est.crops(frames, faces), atol=1e-3)
    gender, age = est.predict(frames.cuda(), faces.to("cuda"))
    assert gender.device.type == "cuda"
    assert np.allclose(est.scores(frames, faces).numpy(), _reference_scores(frames, faces, seed=7), atol=2e-3)


# ------------------------------------------------------------------------------------------------ loader node
def test_loader_node_lists_gender_models_by_what_they_are(tmp_path, monkeypatch):
    from comfy_harness import use_comfy_api

    use_comfy_api()
    import folder_paths

    from nodes._common import register_model_folders
    from nodes.gender import NO_GENDER_MODEL, SimSwapLoadGenderModel, gender_model_files

    register_model_folders()
    _, exts = folder_paths.folder_names_and_paths["insightface"]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "insightface", ([str(tmp_path)], exts))
    folder_paths.filename_list_cache.pop("insightface", None)
    assert gender_model_files() == [NO_GENDER_MODEL]
    with pytest.raises(MissingModelError, match="genderage.onnx"):
        SimSwapLoadGenderModel.execute(NO_GENDER_MODEL)
    write_model(tmp_path / "models" / "buffalo_l" / "genderage.onnx")
    write_model(tmp_path / "models" / "buffalo_l" / "w600k_r50.onnx", size=112, out_dim=512)  # recognition-like
    write_model(tmp_path / "zz_my_gender.onnx", seed=3)                                       # another name
    folder_paths.filename_list_cache.pop("insightface", None)
    names = gender_model_files()
    assert [n.replace("\\", "/") for n in names] == ["models/buffalo_l/genderage.onnx", "zz_my_gender.onnx"]
    assert SimSwapLoadGenderModel.validate_inputs(names[0]) is True
    assert "not in list" in SimSwapLoadGenderModel.validate_inputs("models/buffalo_l/w600k_r50.onnx")
    out = SimSwapLoadGenderModel.execute(names[0])
    assert isinstance(out.args[0], GenderAgeEstimator) and "96px" in out.ui["text"][0]
    folder_paths.filename_list_cache.pop("insightface", None)
