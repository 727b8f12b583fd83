"""SimSwap's own whole-image path (``paste_mode="official"``), reproducing what the official scripts write.

The official scripts (OpenCV 4.x, spec sections 3.3 and 4) do, per image:
1. alignment: a float64 similarity fit to the templates (``align.estimate_alignment`` kept in float64), then
   ``cv2.warpAffine`` of the 8-bit image into a uint8 crop; the generator and the parser see ``crop / 255``;
2. paste-back (``reverse2wholeimage``): the inverse matrix computed by hand in float64; the swapped crop (float32,
   composited with the parsing mask inside the crop when there is one) warped back as float32; an all-255 float64
   crop warped back the same way, ``> 20 -> 255``, eroded 40x40, ``GaussianBlur((41,41), 0)`` (sigma 6.5,
   reflect-101), ``/ 255``; then ``img = mask * face * 255 + (1 - mask) * img`` in float64 on 0..255, face after
   face, and ``astype(uint8)``, which truncates.
Every warp here is ``cvwarp.warp_affine_cv4`` (OpenCV 4.x's fixed-point warp, bit-exact). The frames are read as
the 8-bit images the official code loads: ``round(frames * 255)`` (exact for frames decoded from 8-bit files).

Work stays on the frames' device; the paste renders each face on a canvas of its region of interest (faces grouped
by ROI size), with one small device -> host copy per call for the ROI bounds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .align import MAX_CROP_SIZE, AlignedFaces, default_mode, estimate_alignment, transform_points
from .checks import check_integer
from .color import ColorFilter, match_color
from .cvwarp import warp_affine_cv4
from .errors import InputError
from .faces import DetectedFaces
from .paste_rois import crop_rois, group_by_size

OFFICIAL_ERODE = 40          # cv2.erode(np.ones((40,40))), anchor at (20,20)
OFFICIAL_BLUR = 41           # cv2.GaussianBlur((41,41), 0) -> sigma = 0.3*((41-1)*0.5-1)+0.8 = 6.5
OFFICIAL_SIGMA = 0.3 * ((OFFICIAL_BLUR - 1) * 0.5 - 1) + 0.8
ROI_MARGIN = OFFICIAL_BLUR // 2 + 4   # zeros around the warped crop: erosion and blur see the frame's zeros there


@dataclass
class OfficialAlignedFaces(AlignedFaces):
    """AlignedFaces of the official path: ``crops`` are uint8 crops / 255 (float32 RGB), ``matrices`` the float32
    copy of ``matrices64`` [F,2,3] float64 (frame px -> crop px), which the official paste uses."""

    matrices64: torch.Tensor | None = None

    def select(self, keep: torch.Tensor) -> OfficialAlignedFaces:
        """Faces kept by a bool mask [F] or int64 indices (the float64 matrices follow)."""
        base = AlignedFaces.select(self, keep)
        if keep.dtype == torch.bool:
            keep = keep.nonzero().flatten()
        m64 = None if self.matrices64 is None else self.matrices64[keep.to(self.matrices64.device)]
        return OfficialAlignedFaces(**vars(base), matrices64=m64)

    def to(self, device: torch.device | str) -> OfficialAlignedFaces:
        base = AlignedFaces.to(self, device)
        return OfficialAlignedFaces(**vars(base), matrices64=None if self.matrices64 is None
                                    else self.matrices64.to(device))

    @staticmethod
    def concat(items: list[AlignedFaces]) -> OfficialAlignedFaces:
        """``AlignedFaces.concat`` keeping the float64 matrices (items without them contribute their float32 ones)."""
        base = AlignedFaces.concat(items)
        m64 = torch.cat([official_matrices(i).to(base.matrices.device) for i in items])
        return OfficialAlignedFaces(**vars(base), matrices64=m64)


def frames_to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] float RGB [0,1] -> uint8 [N,3,H,W] (round(x * 255), clamped): the 8-bit images the official reads."""
    return (frames.to(torch.float32) * 255.0).round().clamp(0, 255).to(torch.uint8)


def align_official(frames: torch.Tensor, faces: DetectedFaces, crop_size: int,
                   mode: str | None = None) -> OfficialAlignedFaces:
    """The official ``estimate_norm`` + ``cv2.warpAffine`` (OpenCV 4.x) of every face.

    frames: [N,3,H,W] float RGB [0,1] (quantised to 8 bits first, as the official reads 8-bit images); faces: their
    DetectedFaces. mode: None -> "ffhq" for 512, else "none". Returns crops [F,3,S,S] float32 = uint8 crop / 255,
    matrices64 [F,2,3] float64 and their float32 copy, on the frames' device.
    """
    n, _, h, w = frames.shape
    if len(faces.frame_sizes) != n or any(tuple(z) != (h, w) for z in faces.frame_sizes):
        raise InputError(f"align_official: faces describe frames {faces.frame_sizes}, got {n} of {(h, w)}")
    s = check_integer(crop_size, "align_official: crop_size", low=1, high=MAX_CROP_SIZE)
    mode = default_mode(s) if mode is None else str(mode).lower()
    dev = frames.device
    if not len(faces):
        empty = AlignedFaces.empty(faces.frame_sizes, s, mode, dev)
        return OfficialAlignedFaces(**vars(empty), matrices64=torch.zeros(0, 2, 3, dtype=torch.float64, device=dev))
    points = faces.points.to(dev, torch.float32)      # the official landmarks are float32
    m64 = estimate_alignment(points, s, mode, dtype=torch.float64)
    fi = faces.frame_index.to(dev)
    crops_u8 = warp_affine_cv4(frames_to_uint8(frames), m64, (s, s), src_index=fi)
    crops = crops_u8.to(torch.float32) / 255.0
    m32 = m64.to(torch.float32)
    return OfficialAlignedFaces(crops, m32, fi, list(faces.frame_sizes), s, mode, transform_points(m32, points),
                                matrices64=m64)


def official_inverse(matrices: torch.Tensor) -> torch.Tensor:
    """[F,2,3] -> [F,2,3] float64 inverse, computed like the official ``reverse2wholeimage`` (two determinants of
    opposite sign, each entry divided), so that the matrix cv2 then inverts again is the official one."""
    m = matrices.to(torch.float64)
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    div1 = a * e - b * d
    div2 = b * d - a * e
    row0 = torch.stack([e / div1, -b / div1, -(c * e - b * f) / div1], -1)
    row1 = torch.stack([d / div2, -a / div2, -(c * d - a * f) / div2], -1)
    return torch.stack([row0, row1], -2)


def official_matrices(aligned: AlignedFaces) -> torch.Tensor:
    """[F,2,3] float64 frame -> crop matrices: the exact ones of an official alignment, else the given float32."""
    m64 = getattr(aligned, "matrices64", None)
    return m64 if isinstance(m64, torch.Tensor) else aligned.matrices.to(torch.float64)


def gaussian_kernel(ksize: int, sigma: float, device: torch.device) -> torch.Tensor:
    """cv2.getGaussianKernel(ksize, sigma, CV_64F): [ksize] float64 exp(-x^2 / (2 sigma^2)) normalised to sum 1."""
    x = torch.arange(ksize, dtype=torch.float64, device=device) - (ksize - 1) * 0.5
    k = torch.exp((-0.5 / (sigma * sigma)) * x * x)
    return k * (1.0 / k.sum())


def blur_matrix(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """[size, size] float64 matrix B with (x @ B)[..., i] = sum_j kernel[j] * x[..., reflect101(i + j - r)]: a 1-D
    convolution along the last axis with OpenCV's default border (reflect-101) folded in (needs size > r)."""
    r = kernel.shape[0] // 2
    dev = kernel.device
    out = torch.arange(size, device=dev)[None, :].expand(kernel.shape[0], size)          # [K,size] output index
    src = out + torch.arange(-r, r + 1, device=dev)[:, None]                              # [K,size] input index
    src = torch.where(src < 0, -src, torch.where(src >= size, 2 * size - 2 - src, src))   # reflect-101
    mat = torch.zeros(size, size, dtype=kernel.dtype, device=dev)
    mat.index_put_((src.reshape(-1), out.reshape(-1)), kernel[:, None].expand(-1, size).reshape(-1), accumulate=True)
    return mat


def official_frame_masks(white: torch.Tensor) -> torch.Tensor:
    """[G,1,h,w] warped all-255 crops (0..255; float32 holds them exactly: multiples of 255/1024) -> the official
    frame masks in [0,1], float64.

    values > 20 -> 255 (the others kept), erode 40x40 all-ones (anchor 20: offsets -20..+19; outside the canvas is
    neutral, as cv2's default erode border), GaussianBlur 41x41 sigma 6.5 in float64 with reflect-101 (as two
    banded matrix products: BLAS-fast, and the border folded in), / 255. The canvas lies inside the frame and has
    >= ROI_MARGIN px of zeros on sides that are not frame edges, so the canvas reproduces full-frame processing.
    """
    m = torch.where(white > 20.0, torch.full_like(white, 255.0), white)
    a = OFFICIAL_ERODE // 2
    x = F.pad(-m, (0, 0, a, OFFICIAL_ERODE - 1 - a), value=-math.inf)
    x = F.max_pool2d(x, (OFFICIAL_ERODE, 1), stride=1)
    x = F.pad(x, (a, OFFICIAL_ERODE - 1 - a, 0, 0), value=-math.inf)
    m = (-F.max_pool2d(x, (1, OFFICIAL_ERODE), stride=1)).to(torch.float64)
    k = gaussian_kernel(OFFICIAL_BLUR, OFFICIAL_SIGMA, m.device)
    h, w = m.shape[-2:]
    m = m @ blur_matrix(w, k)                                   # rows first, like cv2's separable filter
    m = blur_matrix(h, k).transpose(0, 1) @ m
    return m / 255.0


def paste_official(frames: torch.Tensor, faces: torch.Tensor, aligned: AlignedFaces,
                   crop_masks: torch.Tensor | None = None, *, color_match: bool = False,
                   color_filter: ColorFilter | None = None, truncate: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``reverse2wholeimage`` of every face (arguments checked by ``paste.paste_faces``).

    frames: [N,3,H,W] float32 RGB [0,1]; faces: [F,3,S,S] generator outputs RGB [0,1]; aligned: their alignment
    (``align_official`` keeps the float64 matrices; other AlignedFaces are used as given); crop_masks: [F,1,S,S]
    in-crop composition masks (the official parsing paste: ``masks.official_parsing_crop_masks``) or None.
    truncate: the official ``astype(uint8)`` (floor to 1/255 steps); False keeps the float64 blend / 255.
    Returns (frames [N,3,H,W] float32, union of the frame masks [N,1,H,W]); where the union is 0 the frames are
    bit-identical to the input.
    """
    n, _, h, w = frames.shape
    if min(h, w) <= OFFICIAL_BLUR // 2:
        raise InputError(f"paste_faces: official mode needs frames of at least {OFFICIAL_BLUR // 2 + 1} px, "
                         f"got {(h, w)}")
    out = frames.clone()
    union = frames.new_zeros(n, 1, h, w)
    nf, s = len(aligned), aligned.crop_size
    if nf == 0:
        return out, union
    dev = frames.device
    faces = faces.to(dev, torch.float32)
    crops = aligned.crops.to(dev, torch.float32)
    if color_match:
        faces = match_color(faces, crops, crop_masks, stats_filter=color_filter)
    # the official postprocess: swapped * m + target * (1 - m) in float32 inside the crop
    content = faces if crop_masks is None else faces * crop_masks + crops * (1 - crop_masks)
    rev = official_inverse(official_matrices(aligned).to(dev))
    rois, fidx = crop_rois(rev, aligned.frame_index, s, aligned.frame_sizes, ROI_MARGIN)
    # the official all-255 float64 crop: its warped values are multiples of 255/1024, exact in float32
    white = torch.full((1, 1, s, s), 255.0, dtype=torch.float32, device=dev)
    rendered: dict[int, tuple[torch.Tensor, torch.Tensor, int, int, int]] = {}
    for g in group_by_size(rois):
        group = [r for r in (rois[i] for i in g) if r is not None]
        hr = max(min(h, OFFICIAL_BLUR), max(r[3] - r[1] for r in group))
        wr = max(min(w, OFFICIAL_BLUR), max(r[2] - r[0] for r in group))
        origins = [(min(r[0], w - wr), min(r[1], h - hr)) for r in group]
        gi = torch.tensor(g, device=dev)
        org = torch.tensor(origins, dtype=torch.int64, device=dev)
        face_px = warp_affine_cv4(content[gi], rev[gi], (hr, wr), origin=org)               # float32 [G,3,h,w]
        masks = official_frame_masks(warp_affine_cv4(white, rev[gi], (hr, wr), origin=org))  # float64 [G,1,h,w]
        for k, i in enumerate(g):
            rendered[i] = (face_px[k], masks[k], origins[k][0], origins[k][1], fidx[i])

    # sequential blend in float64 on 0..255 over a per-frame buffer covering its faces' canvases
    frame_boxes: dict[int, list[int]] = {}
    for t, _, x0, y0, fi in rendered.values():
        x1, y1 = x0 + t.shape[2], y0 + t.shape[1]
        b = frame_boxes.setdefault(fi, [x0, y0, x1, y1])
        b[:] = [min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)]
    bufs = {fi: (frames[fi, :, by0:by1, bx0:bx1].to(torch.float64) * 255.0).round()
            for fi, (bx0, by0, bx1, by1) in frame_boxes.items()}
    for i in range(nf):                       # the official order: face after face, later faces on top
        if i not in rendered:
            continue
        t, m, x0, y0, fi = rendered[i]
        bx0, by0 = frame_boxes[fi][0], frame_boxes[fi][1]
        hr, wr = t.shape[1:]
        sl = (slice(None), slice(y0 - by0, y0 - by0 + hr), slice(x0 - bx0, x0 - bx0 + wr))
        buf = bufs[fi]
        buf[sl] = m * (t.to(torch.float64) * 255.0) + (1.0 - m) * buf[sl]
        m32 = m.to(torch.float32)
        u = union[fi, :, y0:y0 + hr, x0:x0 + wr]
        union[fi, :, y0:y0 + hr, x0:x0 + wr] = torch.where(m32 > 0, u + m32 * (1 - u), u)
    for fi, (bx0, by0, bx1, by1) in frame_boxes.items():
        img = bufs[fi].clamp(0.0, 255.0)
        img = (torch.floor(img) if truncate else img) / 255.0
        cur = out[fi, :, by0:by1, bx0:bx1]
        out[fi, :, by0:by1, bx0:bx1] = torch.where(union[fi, :, by0:by1, bx0:bx1] > 0, img.to(out.dtype), cur)
    return out, union
