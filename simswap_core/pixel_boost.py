"""Pixel boost: swap at a multiple of the generator's native size by sub-pixel interleaving.

A face aligned at ``k * S`` pixels (S: the generator's crop size, 224 or 512; k: the boost, 2 or 4) is split into
``k * k`` sub-crops of S x S: sub-crop ``(i, j)`` holds the pixels ``[i::k, j::k]``, so each one is the WHOLE face
sampled at its own sub-pixel phase (not a tile of it). Each goes through the generator, which sees an ordinary
S x S face, and the outputs are woven back into the ``k * S`` grid. Because no sub-crop is a spatial tile there
are no tile borders and so no seams by construction; every output pixel comes from exactly one generator output,
so the stitched crop keeps the full ``k * S`` resolution of the target's detail that the aligned crop carries.

Tensors: crops ``[F,3,kS,kS]`` float RGB [0,1]; sub-crops ``[F*k*k,3,S,S]`` ordered face-major, then phase
``i * k + j`` (so the identity latent of face f repeats ``k * k`` times: ``latents.repeat_interleave(k*k, 0)``).
"""
from __future__ import annotations

import torch

from .errors import InputError

PIXEL_BOOSTS = (1, 2, 3, 4)


def check_pixel_boost(value: object, what: str = "pixel_boost") -> int:
    """The boost factor as an int in ``PIXEL_BOOSTS`` (1 = off), or InputError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in PIXEL_BOOSTS:
        raise InputError(f"{what}: expected one of {', '.join(map(str, PIXEL_BOOSTS))} (times the generator's crop "
                         f"size; 1 = off), got {value!r}")
    return int(value)


def split_phases(crops: torch.Tensor, boost: int) -> torch.Tensor:
    """[F,C,kS,kS] -> [F*k*k,C,S,S]: sub-crop ``f * k*k + i*k + j`` is ``crops[f, :, i::k, j::k]``."""
    f, c, h, w = crops.shape
    k = boost
    if h % k or w % k:
        raise InputError(f"pixel boost {k}: the crop size {h}x{w} is not a multiple of {k}")
    x = crops.reshape(f, c, h // k, k, w // k, k)          # [F,C,S,i,S,j]
    return x.permute(0, 3, 5, 1, 2, 4).reshape(f * k * k, c, h // k, w // k)


def stitch_phases(sub_crops: torch.Tensor, boost: int) -> torch.Tensor:
    """Inverse of `split_phases`: [F*k*k,C,S,S] -> [F,C,kS,kS] (``stitch_phases(split_phases(x, k), k) == x``)."""
    n, c, h, w = sub_crops.shape
    k = boost
    if n % (k * k):
        raise InputError(f"pixel boost {k}: {n} sub-crops is not a multiple of {k * k}")
    x = sub_crops.reshape(n // (k * k), k, k, c, h, w)     # [F,i,j,C,S,S]
    return x.permute(0, 3, 4, 1, 5, 2).reshape(n // (k * k), c, h * k, w * k)
