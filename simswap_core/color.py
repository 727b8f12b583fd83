"""Colour matching of swapped faces to their targets: Lab mean/std transfer inside a mask, batched over faces."""
from __future__ import annotations

import kornia
import torch

from .checks import check_masks, check_number
from .errors import InputError


def match_color(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, *,
                strength: float = 1.0, max_ratio: float = 2.0) -> torch.Tensor:
    """Move ``source`` [F,3,S,S] RGB [0,1] towards the colour statistics of ``target`` [F,3,S,S].

    Per face and per CIE-Lab channel: out = (x - mean_s) * std_t / std_s + mean_t, with means and stds weighted by
    ``weight`` [F,1,S,S] (the face mask; None = whole crop). The std ratio is clamped to [1/max_ratio, max_ratio];
    ``strength`` in [0,1] blends between no change (0) and the full transfer (1). Returns RGB [0,1].
    """
    if source.shape != target.shape or source.ndim != 4 or source.shape[1] != 3:
        raise InputError(f"match_color: source and target must both be [F,3,S,S], got {tuple(source.shape)} and "
                         f"{tuple(target.shape)}")
    strength = check_number(strength, "match_color: strength", low=0.0, high=1.0)
    max_ratio = check_number(max_ratio, "match_color: max_ratio", low=1.0, high=1e3)
    if weight is not None:
        check_masks(weight, "match_color: weight", count=source.shape[0], size=(source.shape[2], source.shape[3]))
    if source.shape[0] == 0 or strength <= 0:
        return source
    if weight is None:
        weight = source.new_ones(source.shape[0], 1, *source.shape[2:])
    w = weight.float()
    wsum = w.sum(dim=(2, 3), keepdim=True)
    w = torch.where(wsum > 1e-6, w / wsum.clamp_min(1e-6), torch.full_like(w, 1.0 / w[0, 0].numel()))
    src = kornia.color.rgb_to_lab(source.float().clamp(0, 1))
    tgt = kornia.color.rgb_to_lab(target.float().clamp(0, 1))
    ms = (src * w).sum(dim=(2, 3), keepdim=True)
    mt = (tgt * w).sum(dim=(2, 3), keepdim=True)
    ss = (((src - ms) ** 2) * w).sum(dim=(2, 3), keepdim=True).sqrt()
    st = (((tgt - mt) ** 2) * w).sum(dim=(2, 3), keepdim=True).sqrt()
    ratio = (st / ss.clamp_min(1e-3)).clamp(1.0 / max_ratio, max_ratio)
    moved = (src - ms) * ratio + mt
    lab = src + float(min(strength, 1.0)) * (moved - src)
    return kornia.color.lab_to_rgb(lab, clip=True)
