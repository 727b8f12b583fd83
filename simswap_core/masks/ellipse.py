"""Ellipse mask: an analytic face ellipse from the 5 aligned landmarks (no convolution), Gaussian edge."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..align import templates
from .base import CropMasker
from .edges import soft_edge

if TYPE_CHECKING:  # pragma: no cover
    from ..align import AlignedFaces
    from .spec import MaskSpec


def _ellipse_params(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ellipse (centre [F,2], unit x axis [F,2], semi-axes a [F], b [F]) from 5 crop-space landmarks."""
    eye_l, eye_r, mouth_l, mouth_r = points[:, 0], points[:, 1], points[:, 3], points[:, 4]
    eyes, mouth = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    centre = (eyes + mouth) / 2
    ex = eye_r - eye_l
    e = ex.norm(dim=-1).clamp_min(1e-6)
    ux = ex / e[:, None]
    h = ((mouth - eyes) * torch.stack([-ux[:, 1], ux[:, 0]], -1)).sum(-1).abs().clamp_min(1e-6)
    a = 0.5 * (e + h)            # cheek to cheek
    b = 1.1 * h                  # forehead to chin
    return centre, ux, a, b


def ellipse_masks(points: torch.Tensor, crop_size: int, grow: float = 0.0, feather: float = 0.0) -> torch.Tensor:
    """[F,1,S,S] analytic face ellipses from crop-space landmarks [F,5,2]; grow/feather fractions of S."""
    s = int(crop_size)
    pts = points.float()
    c, ux, a, b = _ellipse_params(pts)
    a = (a + grow * s).clamp_min(1.0)
    b = (b + grow * s).clamp_min(1.0)
    coords = torch.arange(s, device=pts.device, dtype=torch.float32)
    dx = coords[None, None, :] - c[:, 0, None, None]
    dy = coords[None, :, None] - c[:, 1, None, None]
    xp = dx * ux[:, 0, None, None] + dy * ux[:, 1, None, None]
    yp = -dx * ux[:, 1, None, None] + dy * ux[:, 0, None, None]
    rho = torch.sqrt((xp / a[:, None, None]) ** 2 + (yp / b[:, None, None]) ** 2).clamp_min(1e-6)
    r = torch.sqrt(xp ** 2 + yp ** 2)
    signed = r * (1.0 - 1.0 / rho)                 # radial distance to the ellipse, < 0 inside
    return soft_edge(signed, feather * s / 4.0)[:, None]


class EllipseMasker(CropMasker):
    """Uses ``aligned.points`` (the template's points when they are unknown)."""

    kind = "ellipse"
    order = 1
    default_feather = 0.06

    def __call__(self, aligned: AlignedFaces, spec: MaskSpec, parser: nn.Module | None = None, *,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        s, f, dev = aligned.crop_size, len(aligned), aligned.crops.device
        pts = aligned.points
        if pts is None:
            tpl = templates(s, aligned.mode, dev)
            pts = tpl[len(tpl) // 2].expand(f, 5, 2)        # FFHQ, or the frontal pose template
        return ellipse_masks(pts.to(dev), s, float(spec.grow), spec.feather_fraction)
