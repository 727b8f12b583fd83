"""Mask edge tools shared by the kinds: Gaussian edges of signed distances, grow/shrink, feather, the crop's seam
ramp. Sizes in pixels here; kinds convert their fractions of the crop size S."""
from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F


def _gauss_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def soft_edge(signed_dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """1 inside (signed_dist < 0), 0 outside, Gaussian edge of std ``sigma`` pixels (hard step when 0)."""
    if sigma <= 0:
        return (signed_dist <= 0).float()
    return _gauss_cdf(-signed_dist / sigma)


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (< 0) [F,1,H,W] by a square of radius |pixels| (separable max-pool).

    Erosion does not eat in from the crop border (padding is neutral), like cv2.erode's default border.
    """
    r = int(abs(pixels))
    if r == 0:
        return mask
    k = 2 * r + 1
    x = mask if pixels > 0 else -mask
    x = F.max_pool2d(x, (k, 1), stride=1, padding=(r, 0))
    x = F.max_pool2d(x, (1, k), stride=1, padding=(0, r))
    return x if pixels > 0 else -x


def feather_mask(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur [F,1,H,W] with std ``sigma`` pixels (kornia, separable, replicate border)."""
    if sigma <= 0:
        return mask
    k = 2 * int(math.ceil(3.0 * sigma)) + 1
    k = min(k, 2 * ((min(mask.shape[-2:]) - 1) // 2) + 1)
    if k < 3:
        return mask
    return kornia.filters.gaussian_blur2d(mask, (k, k), (sigma, sigma), border_type="replicate")


def crop_border_mask(crop_size: int, erode: float, feather: float,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """[1,1,S,S] seam mask of the crop square: 0 within ``erode*S`` of the crop edge, then a smooth (smoothstep)
    ramp of width ``feather*S`` to 1. Product of x and y ramps, so corners are smooth. Exactly 0 at the crop edge
    whenever erode > 0 or feather > 0 (so the black border of the warp never shows)."""
    s = int(crop_size)
    i = torch.arange(s, device=device, dtype=torch.float32)
    d = torch.minimum(i + 0.5, s - 0.5 - i)                     # distance of the pixel centre to the crop edge
    e, f = max(float(erode), 0.0) * s, max(float(feather), 0.0) * s
    if f > 0:
        t = ((d - e) / f).clamp(0, 1)
        r = t * t * (3 - 2 * t)
    else:
        r = (d > e).float() if e > 0 else torch.ones_like(d)
    return (r[:, None] * r[None, :])[None, None]
