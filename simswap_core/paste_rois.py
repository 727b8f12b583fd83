"""Where each face's crop lands in its frame: the pixel boxes (ROIs) paste-back works in, and groups of faces with
ROIs of similar size (one canvas size per group). Shared by the default paste (``paste.py``) and the official one
(``official.py``)."""
from __future__ import annotations

import math

import torch

from .errors import InputError

Box = tuple[int, int, int, int]   # x0, y0, x1, y1 frame pixels, end exclusive


def crop_rois(inverse: torch.Tensor, frame_index: torch.Tensor, crop_size: int,
              frame_sizes: list[tuple[int, int]], margin: int) -> tuple[list[Box | None], list[int]]:
    """(per face the frame pixel box of its warped crop plus ``margin``, clipped to its frame, or None if empty;
    per face its frame index), as Python ints.

    inverse: [F,2,3] crop px -> frame px (float32/float64, any device); frame_index: [F]; frame_sizes: (H, W) per
    frame. The boxes are computed on the device and fetched with ONE device -> host copy for all faces (slice
    bounds must be Python ints), so the number of host syncs does not depend on the number of faces.
    """
    s = crop_size
    c = torch.tensor([[-1.0, -1.0], [s, -1.0], [-1.0, s], [s, s]], dtype=inverse.dtype, device=inverse.device)
    pts = c[None] @ inverse[:, :, :2].transpose(1, 2) + inverse[:, None, :, 2]          # beyond the crop corners
    lo = pts.amin(1).floor() - margin
    hi = pts.amax(1).ceil() + margin + 1
    table = torch.cat([lo, hi, frame_index.to(inverse.device, inverse.dtype)[:, None]], 1).tolist()   # [F,5]
    boxes: list[Box | None] = []
    fidx: list[int] = []
    for f, (lx, ly, hx, hy, fi) in enumerate(table):
        if not all(math.isfinite(v) for v in (lx, ly, hx, hy)):
            raise InputError(f"paste_faces: face {f} has a singular alignment matrix")
        fidx.append(int(fi))
        h, w = frame_sizes[int(fi)]
        x0, y0, x1, y1 = max(int(lx), 0), max(int(ly), 0), min(int(hx), w), min(int(hy), h)
        boxes.append((x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None)
    return boxes, fidx


def group_by_size(boxes: list[Box | None]) -> list[list[int]]:
    """Faces (indices into ``boxes``; empty ones left out) grouped so that a group's canvas (its largest ROI) is at
    most ~2x the area of each member's ROI; largest first."""
    def area(i: int) -> int:
        b = boxes[i]
        assert b is not None
        return (b[2] - b[0]) * (b[3] - b[1])
    groups: list[list[int]] = []
    for i in sorted((i for i, b in enumerate(boxes) if b is not None), key=lambda i: -area(i)):
        if groups and 2 * area(i) >= area(groups[-1][0]):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
