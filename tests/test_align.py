"""Alignment: matrices against skimage + the official template choice, warps against cv2.warpAffine on real photos.

Photos come from installed packages (insightface's t1.jpg, skimage's astronaut). Landmarks are hard-coded
approximate 5-point positions of those photos (found once with YuNet), so these tests do not depend on a detector.
"""
from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from simswap_core import align as align_mod
from simswap_core.align import (
    AlignedFaces,
    align_faces,
    estimate_alignment,
    invert_affine,
    templates,
    transform_points,
    warp_faces,
)
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces

cv2 = pytest.importorskip("cv2")
skt = pytest.importorskip("skimage.transform")

T1_POINTS = [  # ArcFace order, frame pixels of t1.jpg (1280x886)
    [[488.5, 323.6], [539.9, 329.7], [507.0, 354.7], [484.1, 372.6], [528.9, 379.2]],
    [[767.1, 402.2], [809.5, 403.9], [776.9, 428.2], [768.9, 446.4], [805.6, 447.5]],
    [[1143.3, 321.8], [1190.1, 319.8], [1160.8, 340.6], [1149.5, 363.7], [1190.1, 362.7]],
    [[921.0, 121.7], [946.1, 116.7], [920.3, 150.3], [934.7, 171.8], [959.0, 167.2]],
    [[87.3, 321.6], [137.5, 311.3], [118.0, 340.1], [101.1, 363.8], [145.9, 356.1]],
    [[283.0, 207.2], [322.2, 193.1], [299.3, 229.8], [307.0, 252.9], [337.9, 241.8]],
]
ASTRONAUT_POINTS = [[[200.1, 101.8], [247.2, 102.6], [220.3, 124.7], [198.9, 143.2], [239.8, 143.9]]]

# cv2 >= 5 warps with exact float bilinear weights (like grid_sample); 4.x quantises positions to 1/32 px.
CV2_MAJOR = int(cv2.__version__.split(".")[0])
WARP_TOL = 1.0 / 255 if CV2_MAJOR >= 5 else 6.0 / 255


def t1_rgb() -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface (t1.jpg) not installed")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    return cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)


def astronaut_rgb() -> np.ndarray:
    from skimage import data
    return np.ascontiguousarray(data.astronaut())


def as_frames(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


def detected(points, size, frame_index=None) -> DetectedFaces:
    pts = torch.tensor(points, dtype=torch.float32)
    f = pts.shape[0]
    fi = torch.zeros(f, dtype=torch.int64) if frame_index is None else torch.tensor(frame_index)
    n = 1 if frame_index is None else int(max(frame_index)) + 1
    return DetectedFaces(torch.zeros(f, 4), pts, torch.ones(f), fi, [size] * n)


def official_estimate(lmk: np.ndarray, crop: int, mode: str):
    """The official estimate_norm, re-derived from the spec: skimage fit to each template, smallest summed error."""
    src = templates(crop, mode, dtype=torch.float64).numpy()
    best, best_err, best_i = None, float("inf"), -1
    lmk_h = np.c_[lmk, np.ones(5)]
    for i, t in enumerate(src):
        if hasattr(skt.SimilarityTransform, "from_estimate"):
            tf = skt.SimilarityTransform.from_estimate(lmk, t)
        else:
            tf = skt.SimilarityTransform()
            tf.estimate(lmk, t)
        m = tf.params[:2]
        err = np.sum(np.sqrt(np.sum((lmk_h @ m.T - t) ** 2, axis=1)))
        if err < best_err:
            best, best_err, best_i = m, err, i
    return best, best_i


@pytest.mark.parametrize("crop,mode", [(224, "none"), (512, "ffhq"), (256, "none"), (224, "ffhq")])
def test_matrices_match_skimage_and_official_choice(crop, mode):
    pts = np.array(T1_POINTS + ASTRONAUT_POINTS, dtype=np.float64)
    ours = estimate_alignment(torch.tensor(pts, dtype=torch.float32), crop, mode).numpy()
    assert ours.shape == (7, 2, 3) and ours.dtype == np.float32
    for f in range(len(pts)):
        ref, _ = official_estimate(pts[f].astype(np.float32), crop, mode)
        np.testing.assert_allclose(ours[f, :, :2], ref[:, :2], rtol=0, atol=2e-5 * crop / 112)
        np.testing.assert_allclose(ours[f, :, 2], ref[:, 2], rtol=0, atol=2e-3)


def test_pose_template_choice_is_per_face():
    """Each face is built from a different pose template under a different similarity: every face must get its own
    template back (residual ~0), in one batched call."""
    tpl = templates(224, "none", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    pts, expect = [], []
    for i in (4, 0, 2, 3, 1):
        ang = float(torch.rand(1, generator=g)) - 0.5
        sc = 0.3 + float(torch.rand(1, generator=g))
        rot = torch.tensor([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]], dtype=torch.float64) * sc
        p = tpl[i] @ rot.T + torch.tensor([300.0, 200.0], dtype=torch.float64)
        pts.append(p)
        expect.append(i)
    pts = torch.stack(pts).float()
    m = estimate_alignment(pts, 224, "none")
    mapped = transform_points(m, pts)
    for k, i in enumerate(expect):
        assert (mapped[k] - tpl[i].float()).abs().max() < 1e-2, f"face {k} should use template {i}"
        _, ref_i = official_estimate(pts[k].double().numpy(), 224, "none")
        assert ref_i == i


def test_invert_affine_matches_cv2():
    m = estimate_alignment(torch.tensor(T1_POINTS), 224, "none")
    inv = invert_affine(m).numpy()
    for f in range(len(T1_POINTS)):
        np.testing.assert_allclose(inv[f], cv2.invertAffineTransform(m[f].numpy().astype(np.float64)),
                                   rtol=1e-5, atol=1e-3)
    eye = torch.eye(3)[None].repeat(6, 1, 1)
    eye[:, :2] = m
    back = torch.eye(3)[None].repeat(6, 1, 1)
    back[:, :2] = invert_affine(m)
    assert torch.allclose(back @ eye, torch.eye(3).expand(6, 3, 3), atol=1e-4)


@pytest.mark.parametrize("which", ["astronaut", "t1"])
@pytest.mark.parametrize("crop,mode", [(224, "none"), (512, "ffhq")])
def test_warp_matches_cv2_warpaffine(which, crop, mode):
    img = astronaut_rgb() if which == "astronaut" else t1_rgb()
    pts = ASTRONAUT_POINTS if which == "astronaut" else T1_POINTS
    h, w = img.shape[:2]
    al = align_faces(as_frames(img), detected(pts, (h, w)), crop, mode)
    assert isinstance(al, AlignedFaces) and al.crops.shape == (len(pts), 3, crop, crop) and al.mode == mode
    assert al.crops.dtype == torch.float32 and 0 <= float(al.crops.min()) and float(al.crops.max()) <= 1
    for f in range(len(pts)):
        ref = cv2.warpAffine(img, al.matrices[f].numpy(), (crop, crop), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(np.float32) / 255
        ours = al.crops[f].permute(1, 2, 0).numpy()
        interior = np.abs(ours - ref)[2:-2, 2:-2]
        assert interior.max() <= WARP_TOL + 1e-6, f"face {f}: max |diff| {interior.max() * 255:.2f}/255"
        assert interior.mean() < 0.5 / 255
        # black border where the crop leaves the frame, as cv2's borderValue=0
        assert np.abs(ours - ref).max() <= WARP_TOL + 1e-6


def test_warp_float_images_matches_cv2_tightly():
    img = astronaut_rgb().astype(np.float32) / 255
    m = estimate_alignment(torch.tensor(ASTRONAUT_POINTS), 224, "none")
    ours = warp_faces(as_frames(img) * 255, m, torch.zeros(1, dtype=torch.int64), 224)[0].permute(1, 2, 0).numpy()
    ref = cv2.warpAffine(img, m[0].numpy(), (224, 224))
    tol = 1e-4 if CV2_MAJOR >= 5 else 6.0 / 255
    assert np.abs(ours - ref).max() <= tol


def test_multi_frame_warp_equals_per_frame():
    img = astronaut_rgb()
    fr = as_frames(img)
    frames = torch.cat([fr, fr.flip(-1) * 0.5, 1 - fr])
    pts = torch.tensor(ASTRONAUT_POINTS * 4)
    fi = torch.tensor([0, 1, 2, 2])
    pts[3] += 7.3
    m = estimate_alignment(pts, 224, "none")
    got = warp_faces(frames, m, fi, 224)
    for k in range(4):
        one = warp_faces(frames[int(fi[k])][None], m[k:k + 1], torch.zeros(1, dtype=torch.int64), 224)
        assert (got[k] - one[0]).abs().max() < 1e-4


def test_align_faces_points_and_default_mode():
    img = t1_rgb()
    h, w = img.shape[:2]
    faces = detected(T1_POINTS, (h, w))
    al = align_faces(as_frames(img), faces, 224)
    assert al.mode == "none" and al.crop_size == 224 and al.frame_sizes == [(h, w)]
    assert al.frame_index.tolist() == [0] * 6
    # crop-space landmarks land near the chosen templates
    tpl = templates(224, "none")
    err = (al.points[:, None] - tpl[None]).norm(dim=-1).sum(-1).amin(1)
    assert float(err.max()) < 40
    assert align_faces(as_frames(img), faces, 512).mode == "ffhq"
    sel = al.select(torch.tensor([True, False, True, False, False, False]))
    assert len(sel) == 2 and torch.equal(sel.crops[1], al.crops[2])


def test_align_faces_empty_and_errors():
    img = astronaut_rgb()
    fr = as_frames(img)
    al = align_faces(fr, DetectedFaces.empty([(512, 512)]), 224)
    assert al.crops.shape == (0, 3, 224, 224) and al.matrices.shape == (0, 2, 3)
    with pytest.raises(InputError, match="mode"):
        align_faces(fr, detected(ASTRONAUT_POINTS, (512, 512)), 224, "arcface")
    with pytest.raises(InputError, match="frame"):
        align_faces(fr, detected(ASTRONAUT_POINTS, (500, 512)), 224)
    with pytest.raises(InputError, match=r"\[N,3,H,W\]"):
        align_faces(fr[0], detected(ASTRONAUT_POINTS, (512, 512)), 224)
    with pytest.raises(InputError, match="points"):
        estimate_alignment(torch.zeros(2, 4, 2), 224, "none")


def test_no_cv2_and_no_host_round_trips_in_runtime_modules():
    """Runtime modules never import cv2 and never pull tensors to numpy (device-agnostic hot paths)."""
    import simswap_core.color
    import simswap_core.masks
    import simswap_core.masks.parsing
    import simswap_core.paste
    for mod in (align_mod, simswap_core.masks, simswap_core.paste, simswap_core.color, simswap_core.masks.parsing):
        src = inspect.getsource(mod)
        assert "import cv2" not in src and ".numpy()" not in src, mod.__name__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    img = t1_rgb()
    h, w = img.shape[:2]
    faces = detected(T1_POINTS, (h, w))
    cpu = align_faces(as_frames(img), faces, 224)
    gpu = align_faces(as_frames(img).cuda(), faces.to("cuda"), 224)
    assert gpu.crops.is_cuda and gpu.matrices.is_cuda
    assert (gpu.crops.cpu() - cpu.crops).abs().max() < 2e-3
