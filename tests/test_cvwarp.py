"""cvwarp.warp_affine_cv4 against OpenCV 4.x's own cv2.warpAffine (INTER_LINEAR, BORDER_CONSTANT 0): bit-exact on
real photos (skimage astronaut, insightface t1.jpg) at several scales, rotations and sub-pixel shifts, for uint8,
float32 and float64 images, plus SimSwap's own alignment matrices and a singular matrix.

OpenCV 4.x is what SimSwap's scripts ran on (its fixed-point warp is what the official mode reproduces); the test
extra pins ``opencv-python-headless<5`` for that. OpenCV 5 warps with exact bilinear weights, so these
comparisons cannot pass there: the tests then fail with the pip command instead of skipping.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_align import ASTRONAUT_POINTS, T1_POINTS, astronaut_rgb, t1_rgb

from simswap_core.align import estimate_alignment, warp_faces
from simswap_core.cvwarp import cv4_inverse, warp_affine_cv4
from simswap_core.errors import InputError

cv2 = pytest.importorskip("cv2")
CV2_MAJOR = int(cv2.__version__.split(".")[0])
NEED_CV4 = ("this test compares with OpenCV 4.x (what SimSwap's scripts ran on), found OpenCV "
            f"{cv2.__version__}: pip install 'opencv-python-headless>=4.10,<5' (the test extra pins it)")


@pytest.fixture
def cv4():
    if CV2_MAJOR != 4:
        pytest.fail(NEED_CV4, pytrace=False)
    return cv2


def similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    return np.array([[c, -s, tx], [s, c, ty]], np.float64)


def warp_matrices() -> list[np.ndarray]:
    """Scales 0.31-3.1 x rotations 0/17.3/90/-135.2 deg with seeded sub-pixel shifts, a shear, and a singular one."""
    rng = np.random.default_rng(7)
    mats = [similarity(sc, ang, rng.uniform(-60, 160), rng.uniform(-60, 160))
            for sc in (0.31, 0.77, 1.0, 1.63, 3.1) for ang in (0.0, 17.3, 90.0, -135.2)]
    mats.append(np.array([[1.07, 0.21, -13.37], [-0.05, 0.93, 20.5]]))      # a general affine map
    mats.append(np.zeros((2, 3)))                                             # singular: cv2 uses D = 0
    return mats


def _ours(img: np.ndarray, mats: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    out = warp_affine_cv4(t, torch.from_numpy(np.stack(mats)), size)            # [K,C,h,w]
    return out.permute(0, 2, 3, 1).numpy()


def _cv(cv, img: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    ref = cv.warpAffine(img, m, (w, h), flags=cv.INTER_LINEAR, borderMode=cv.BORDER_CONSTANT, borderValue=0)
    return ref[..., None] if ref.ndim == 2 else ref


@pytest.mark.parametrize("which", ["astronaut", "t1"])
@pytest.mark.parametrize("kind", ["uint8", "float32", "float64"])
def test_bit_exact_against_opencv4_on_real_photos(cv4, which, kind):
    img = astronaut_rgb() if which == "astronaut" else t1_rgb()
    if kind == "float32":
        img = img.astype(np.float32) / 255
    elif kind == "float64":
        img = img[..., 1:2].astype(np.float64) * 1.37 - 3.0                     # one channel, any range
    mats = warp_matrices()
    size = (250, 290)
    ours = _ours(img, mats, size)
    assert ours.dtype == img.dtype
    for k, m in enumerate(mats):
        ref = _cv(cv4, img, m, size)
        assert np.array_equal(ours[k], ref), f"matrix {k}: {int((ours[k] != ref).sum())} values differ"


@pytest.mark.parametrize("crop,mode", [(224, "none"), (512, "ffhq")])
def test_bit_exact_on_simswap_alignment_and_paste_matrices(cv4, crop, mode):
    """The official matrices (float64 fit) for the crops, and their hand-made inverses for the paste-back."""
    from simswap_core.official import official_inverse

    img = t1_rgb()
    pts = torch.tensor(T1_POINTS + ASTRONAUT_POINTS, dtype=torch.float32)
    m = estimate_alignment(pts, crop, mode, dtype=torch.float64)
    ours = _ours(img, list(m.numpy()), (crop, crop))
    for k in range(len(pts)):
        assert np.array_equal(ours[k], _cv(cv4, img, m[k].numpy(), (crop, crop))), f"face {k}"
    face = np.random.default_rng(3).random((crop, crop, 3), dtype=np.float32)   # a swapped crop, float32
    rev = official_inverse(m)
    h, w = img.shape[:2]
    back = warp_affine_cv4(torch.from_numpy(face).permute(2, 0, 1)[None], rev[[0, 6]], (h, w))
    for j, k in enumerate((0, 6)):
        assert np.array_equal(back[j].permute(1, 2, 0).numpy(), _cv(cv4, face, rev[k].numpy(), (h, w)))


def test_windows_and_batches_equal_whole_warps():
    """A window (origin) of a warp is exactly the warp's pixels there, and src_index picks the image."""
    imgs = torch.from_numpy(np.stack([astronaut_rgb(), astronaut_rgb()[::-1].copy()])).permute(0, 3, 1, 2)
    mats = torch.from_numpy(np.stack(warp_matrices()[:6]))
    full = warp_affine_cv4(imgs, mats, (300, 320), src_index=torch.tensor([0, 1, 0, 1, 1, 0]))
    org = torch.tensor([[0, 0], [17, 3], [100, 250], [5, 77], [319, 299], [200, 10]])
    win = warp_affine_cv4(imgs, mats, (50, 60), src_index=torch.tensor([0, 1, 0, 1, 1, 0]), origin=org)
    for k, (x0, y0) in enumerate(org.tolist()):
        want = full[k, :, y0:y0 + 50, x0:x0 + 60]
        assert torch.equal(win[k, :, :want.shape[1], :want.shape[2]], want)
    assert torch.equal(full[1], warp_affine_cv4(imgs[1:2], mats[1:2], (300, 320))[0])


def test_differs_from_exact_bilinear():
    """The 1/32-px quantisation is visible: exact bilinear (the default mode's warp) is a few levels away, so the
    bit-exact comparisons above can fail."""
    img = torch.from_numpy(astronaut_rgb()).permute(2, 0, 1)[None].float()
    m = estimate_alignment(torch.tensor(ASTRONAUT_POINTS), 224, "none", dtype=torch.float64)
    exact = warp_faces(img, m.float(), torch.zeros(1, dtype=torch.int64), 224)
    cv4 = warp_affine_cv4(img, m, (224, 224))
    d = (exact - cv4).abs()
    assert d.max() > 1.0 and d.mean() > 0.05


def test_inverse_matches_opencv_formula():
    m = torch.from_numpy(np.stack(warp_matrices()))
    inv = cv4_inverse(m)
    assert inv.dtype == torch.float64
    assert torch.equal(inv[-1], torch.zeros(2, 3, dtype=torch.float64))          # singular: D = 0
    eye = torch.cat([inv[:-1], torch.tensor([0.0, 0, 1], dtype=torch.float64).expand(len(m) - 1, 1, 3)], 1)
    back = m[:-1, :, :2] @ eye[:, :2, :] + torch.cat([torch.zeros(len(m) - 1, 2, 2, dtype=torch.float64),
                                                      m[:-1, :, 2:]], 2)
    assert torch.allclose(back[:, :, :2], torch.eye(2, dtype=torch.float64).expand(len(m) - 1, 2, 2), atol=1e-12)


def test_bad_inputs_name_the_argument():
    img = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    m = torch.zeros(1, 2, 3, dtype=torch.float64)
    with pytest.raises(InputError, match="src dtype"):
        warp_affine_cv4(img.to(torch.int16), m, (4, 4))
    with pytest.raises(InputError, match=r"\[B,C,H,W\]"):
        warp_affine_cv4(img[0], m, (4, 4))
    with pytest.raises(InputError, match=r"matrices must be \[K,2,3\]"):
        warp_affine_cv4(img, m[0], (4, 4))
    with pytest.raises(InputError, match="src_index"):
        warp_affine_cv4(img.expand(2, 3, 8, 8), m.expand(3, 2, 3), (4, 4))
    with pytest.raises(InputError, match="size"):
        warp_affine_cv4(img, m, (0, 4))
    assert warp_affine_cv4(img, m[:0], (4, 4)).shape == (0, 3, 4, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only check: no CUDA device here (not taken)")
def test_cuda_equals_cpu():
    img = torch.from_numpy(astronaut_rgb()).permute(2, 0, 1)[None]
    mats = torch.from_numpy(np.stack(warp_matrices()))
    for src in (img, img.float() / 255, img[:, :1].double()):
        cpu = warp_affine_cv4(src, mats, (200, 210))
        assert torch.equal(warp_affine_cv4(src.cuda(), mats.cuda(), (200, 210)).cpu(), cpu)
