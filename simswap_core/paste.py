"""Paste swapped face crops back into their frames, on the frames' device, working only inside each face's ROI.

``paste_faces`` returns ``(frames [N,3,H,W] RGB [0,1], mask [N,1,H,W] in [0,1])`` where the mask is the union of the
faces' frame-space blend masks. Pixels where that mask is 0 are BIT-identical to the input frames (guaranteed by a
``where``, not by arithmetic). The input tensor is never modified.

How the work is batched: every face's region of interest (ROI: the bounding box of its warped crop, clipped to
the frame) is rendered on a common canvas of the largest ROI size of its group (faces are grouped by ROI size,
so a 4096x4096 frame never allocates full-frame tensors per face); the inverse warps, erosions and blurs run as
one batched op per group. Only the final compositing is a loop over faces of cheap slice blends: faces must
be composited SEQUENTIALLY (a later face overwrites an earlier one where they overlap, as in the official code),
the ROIs differ in size and position, and an in-place slice update is cheaper than any scatter formulation of
the ordered product of (1 - mask) terms.

Modes:
- "official": ``reverse2wholeimage`` of SimSwap, reproduced exactly by ``official.paste_official`` (OpenCV 4.x
  fixed-point warps, float64 blend on 0..255, absolute 40/41-pixel mask constants). The official output is cast
  to uint8 with truncation; here the result stays float in [0,1] unless ``uint8_truncate=True``.
- "default": the crop-space mask (``crop_masks``, e.g. from ``build_crop_masks``) times a seam ramp at the crop
  border (``erode`` and ``feather`` as fractions of the crop size, hence proportional to the face size in the
  frame), optional Lab colour matching, and a DETAIL-PRESERVING paste: what is warped back is the change
  ``swapped - detail * target_crop`` and it is added to ``detail * frame``. With ``detail=1`` (default) an
  unchanged crop reproduces the frame exactly, the frame's detail finer than the crop grid survives, and the
  warp's black border never enters the frame (the warped change is 0 outside the crop).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .align import AlignedFaces, invert_affine, sample_grid, work_dtype
from .checks import check_images, check_masks, check_number
from .color import ColorFilter, match_color
from .errors import InputError
from .masks.edges import crop_border_mask
from .official import paste_official
from .paste_rois import crop_rois, group_by_size

PASTE_MODES = ("default", "official")


def _render(content: torch.Tensor, aligned: AlignedFaces, rois, groups, fidx: list[int]):
    """Warp crop-space ``content`` [F,C,S,S] into each face's canvas (bilinear, 0 outside the crop).

    Returns {face: (tensor [C,h,w], (x0, y0))} where the canvas of a group is the group's largest ROI size,
    placed at the face's ROI origin shifted to stay inside the frame (it then still covers the ROI).
    """
    out = {}
    dev = content.device
    mats = aligned.matrices.to(dev)
    for g in groups:
        hr = max(rois[i][3] - rois[i][1] for i in g)
        wr = max(rois[i][2] - rois[i][0] for i in g)
        origins = []
        for i in g:
            h, w = aligned.frame_sizes[fidx[i]]
            origins.append((min(rois[i][0], w - wr), min(rois[i][1], h - hr)))
        gi = torch.tensor(g, device=dev)
        org = torch.tensor(origins, device=dev, dtype=torch.float64)
        s = aligned.crop_size
        grid = sample_grid(mats[gi], hr, wr, s, s, origin=org)
        warped = F.grid_sample(content[gi], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        for k, i in enumerate(g):
            out[i] = (warped[k], origins[k])
    return out


def paste_faces(frames: torch.Tensor, faces: torch.Tensor, aligned: AlignedFaces,
                crop_masks: torch.Tensor | None = None, *, feather: float = 0.12, erode: float = 0.04,
                color_match: bool = False, mode: str = "default", detail: float = 1.0,
                uint8_truncate: bool = False, color_filter: ColorFilter | None = None,
                protect: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite swapped crops into their frames.

    frames: [N,3,H,W] RGB [0,1]; faces: [F,3,S,S] RGB [0,1] (generator outputs, same order as ``aligned``);
    crop_masks: [F,1,S,S] in [0,1] or None (default mode: the blend mask, None = whole crop; official mode: the
    in-crop composition mask, e.g. ``masks.official_parsing_crop_masks`` for SimSwap's parsing paste).
    feather/erode: seam ramp at the crop border, fractions of S (default mode only; the official mode uses its
    absolute 40/41-pixel constants). color_match: Lab mean/std transfer of each swapped face to its target crop
    inside its mask. detail: default mode only, see the module docstring. uint8_truncate: official mode only, floor
    to 1/255 steps inside the mask like the official ``astype(uint8)``. color_filter: with color_match, a
    ``color.ColorFilter`` that may replace each face's colour statistics before the transfer (e.g.
    ``temporal.TemporalState.color_filter``: smoothed over time per track); None = the plain transfer.
    protect: [N,1,H,W] or [1,1,H,W] (every frame) float in [0,1], regions that must never change (a hand or a
    microphone in front of the face, from any mask): the result is lerp(pasted, frame, protect), exactly the input
    frame where protect is 1 (``where``, so bit-identical), and the returned mask is multiplied by (1 - protect).

    Returns (frames [N,3,H,W], union mask [N,1,H,W]); outside the mask the frames are bit-identical to the input.
    """
    mode = str(mode).lower()
    if mode not in PASTE_MODES:
        raise InputError(f"paste_faces: mode must be one of {PASTE_MODES}, got {mode!r}")
    feather = check_number(feather, "paste_faces: feather (fraction of the crop size)", low=0.0, high=0.5)
    erode = check_number(erode, "paste_faces: erode (fraction of the crop size)", low=0.0, high=0.5)
    detail = check_number(detail, "paste_faces: detail", low=0.0, high=1.0)
    if not isinstance(aligned, AlignedFaces):
        raise InputError(f"paste_faces: aligned must be the AlignedFaces of the crops, got {type(aligned).__name__}")
    check_images(frames, "paste_faces frames", allow_empty=True)
    n, _, h, w = frames.shape
    s, nf = aligned.crop_size, len(aligned)
    if not isinstance(faces, torch.Tensor) or faces.shape != (nf, 3, s, s):
        raise InputError(f"paste_faces: faces must be [{nf},3,{s},{s}] like the aligned crops, "
                         f"got {tuple(faces.shape) if isinstance(faces, torch.Tensor) else type(faces).__name__}")
    check_images(faces, "paste_faces faces", layout="[F,3,S,S]", allow_empty=True)
    if nf and not bool(torch.isfinite(aligned.matrices).all()):
        raise InputError("paste_faces: aligned.matrices contain NaN/inf values; align the faces again")
    if len(aligned.frame_sizes) != n or any(tuple(z) != (h, w) for z in aligned.frame_sizes):
        raise InputError(f"paste_faces: aligned faces describe frames {aligned.frame_sizes}, got {n} of {(h, w)}")
    if crop_masks is not None:
        check_masks(crop_masks, "paste_faces crop_masks", count=nf, size=(s, s))
    if protect is not None:
        protect = check_protect(protect, n, (h, w))
    if nf == 0:
        return frames.clone(), frames.new_zeros(n, 1, h, w)
    dev = frames.device
    cm = None if crop_masks is None else crop_masks.to(dev, torch.float32)
    if mode == "official":                    # SimSwap's reverse2wholeimage, OpenCV 4.x-exact: official.py
        out, union = paste_official(frames, faces, aligned, cm, color_match=color_match, color_filter=color_filter,
                                    truncate=uint8_truncate)
        return apply_protect(frames, out, union, protect) if protect is not None else (out, union)
    out = frames.clone()
    union = frames.new_zeros(n, 1, h, w)
    faces = faces.to(dev, torch.float32)
    crops = aligned.crops.to(dev, torch.float32)
    border = crop_border_mask(s, erode, feather, dev)
    alpha = border if cm is None else cm * border
    alpha = alpha.expand(nf, 1, s, s)
    if color_match:
        faces = match_color(faces, crops, alpha, stats_filter=color_filter)
    d = float(detail)
    content = torch.cat([faces - d * crops, alpha], 1)
    mats = aligned.matrices
    rois, fidx = crop_rois(invert_affine(mats.to(work_dtype(mats.device))), aligned.frame_index, s,
                           aligned.frame_sizes, margin=1)
    rendered = _render(content, aligned, rois, group_by_size(rois), fidx)

    for i in range(nf):                       # sequential compositing: cheap slice blends (see module docstring)
        if i not in rendered:
            continue
        t, (x0, y0) = rendered[i]
        hr, wr = t.shape[1:]
        fi = fidx[i]
        cur = out[fi, :, y0:y0 + hr, x0:x0 + wr]
        m = t[3:4]
        face = (d * frames[fi, :, y0:y0 + hr, x0:x0 + wr] + t[:3]).clamp(0, 1)
        blended = cur + m * (face - cur)
        inside = m > 0
        out[fi, :, y0:y0 + hr, x0:x0 + wr] = torch.where(inside, blended, cur)
        u = union[fi, :, y0:y0 + hr, x0:x0 + wr]
        union[fi, :, y0:y0 + hr, x0:x0 + wr] = torch.where(inside, u + m * (1 - u), u)
    if protect is not None:
        out, union = apply_protect(frames, out, union, protect)
    return out, union


def check_protect(protect: object, count: int, size: tuple[int, int], what: str = "protect") -> torch.Tensor:
    """A protect mask as float [N,1,H,W] or [1,1,H,W] in [0,1] matching ``count`` frames of ``size`` (H, W), or
    InputError naming ``what`` (the argument, CLI flag or node input) with the shape expected."""
    if not isinstance(protect, torch.Tensor):
        raise InputError(f"{what}: expected a mask tensor [N,1,H,W] or [1,1,H,W] in [0,1], got "
                         f"{type(protect).__name__}")
    h, w = size
    shape = tuple(protect.shape)
    if protect.dim() != 4 or shape[1] != 1 or shape[0] not in (1, count) or shape[2:] != (h, w):
        raise InputError(f"{what}: expected a mask the size of the frames, [{count},1,{h},{w}] (one per frame) or "
                         f"[1,1,{h},{w}] (the same for every frame), got shape {shape}"
                         + (f" ({shape[-1]}x{shape[-2]} px, frames are {w}x{h})" if protect.dim() >= 2 and
                            shape[-2:] != (h, w) else ""))
    if not protect.is_floating_point():
        raise InputError(f"{what}: expected float values in [0,1] (1 = keep the original pixel), got dtype "
                         f"{protect.dtype}")
    check_masks(protect, what)
    return protect


def apply_protect(frames: torch.Tensor, out: torch.Tensor, mask: torch.Tensor, protect: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(lerp(out, frames, protect), mask * (1 - protect)): frames/out [N,3,H,W], mask [N,1,H,W], protect [N or
    1,1,H,W] in [0,1] (checked by ``check_protect``). Where protect is 1 the result IS the input pixel (``where``:
    bit-identical); where it is 0 it is ``out`` unchanged."""
    p = protect.to(out.device, out.dtype)
    kept = torch.where(p >= 1, frames.to(out.dtype), torch.lerp(out, frames.to(out.dtype), p))
    return torch.where(p > 0, kept, out), mask * (1 - p)


def frame_masks(aligned: AlignedFaces, crop_masks: torch.Tensor) -> torch.Tensor:
    """Frame-space masks [N,1,H,W] in [0,1]: the union over each frame's faces of their crop masks [F,1,S,S]
    warped into the frame (no seam ramp), as ``paste_faces`` would blend them."""
    n = len(aligned.frame_sizes)
    h, w = aligned.frame_sizes[0] if n else (0, 0)
    blank = aligned.crops.new_zeros(n, 3, h, w)
    return paste_faces(blank, aligned.crops, aligned, crop_masks, feather=0.0, erode=0.0)[1]
