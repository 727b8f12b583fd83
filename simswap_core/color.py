"""Colour matching of swapped faces to their targets: Lab mean/std transfer inside a mask, batched over faces.

The transfer is defined by four per-face statistics (``ColorStats``). A ``ColorFilter`` may replace them before
they are used (``match_color(..., stats_filter=)``), e.g. ``temporal.TemporalState.color_filter`` smooths the
target statistics of each tracked face over time so the corrected colour does not flicker in a video.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import kornia
import torch

from .checks import check_masks, check_number
from .errors import InputError

__all__ = ["ColorFilter", "ColorStats", "match_color"]


@dataclass(frozen=True)
class ColorStats:
    """Weighted CIE-Lab statistics of a colour transfer, one row per face, each [F,3] float32 (L, a, b; L in
    [0,100]): the mean and standard deviation of the swapped face (``source_*``) and of its target crop
    (``target_*``) inside the face's weight mask."""

    source_mean: torch.Tensor
    source_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor


class ColorFilter(Protocol):
    """Replaces the statistics of a transfer before they are used (same shapes; called once per ``match_color``
    call, with the faces in the order of the call)."""

    def __call__(self, stats: ColorStats) -> ColorStats: ...


def _filtered(stats_filter: ColorFilter, ms: torch.Tensor, ss: torch.Tensor, mt: torch.Tensor,
              st: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ms, ss, mt, st) [F,3,1,1] through ``stats_filter`` (which sees and returns [F,3] tensors), checked."""
    f = ms.shape[0]
    out = stats_filter(ColorStats(ms.view(f, 3), ss.view(f, 3), mt.view(f, 3), st.view(f, 3)))
    if not isinstance(out, ColorStats):
        raise InputError(f"match_color: stats_filter must return ColorStats, got {type(out).__name__}")
    parts = (out.source_mean, out.source_std, out.target_mean, out.target_std)
    shaped = [isinstance(t, torch.Tensor) and tuple(t.shape) == (f, 3) for t in parts]
    finite = torch.stack([torch.isfinite(t).all().to(ms.device) for t in parts]).tolist() if all(shaped) \
        else shaped                                                                    # one host sync
    for name, t, ok in zip(("source_mean", "source_std", "target_mean", "target_std"), parts, finite):
        if not ok:
            raise InputError(f"match_color: stats_filter returned a bad {name}: expected finite [{f},3], got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    a, b, c, d = (t.to(ms.device, ms.dtype).view(f, 3, 1, 1) for t in parts)
    return a, b, c, d


def match_color(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, *,
                strength: float = 1.0, max_ratio: float = 2.0,
                stats_filter: ColorFilter | None = None) -> torch.Tensor:
    """Move ``source`` [F,3,S,S] RGB [0,1] towards the colour statistics of ``target`` [F,3,S,S].

    Per face and per CIE-Lab channel: out = (x - mean_s) * std_t / std_s + mean_t, with means and stds weighted by
    ``weight`` [F,1,S,S] (the face mask; None = whole crop). The std ratio is clamped to [1/max_ratio, max_ratio];
    ``strength`` in [0,1] blends between no change (0) and the full transfer (1). ``stats_filter`` (a
    ``ColorFilter``) may replace the four statistics before the transfer (e.g. smoothed over time); without it the
    result is exactly the plain transfer. Returns RGB [0,1].
    """
    if source.shape != target.shape or source.ndim != 4 or source.shape[1] != 3:
        raise InputError(f"match_color: source and target must both be [F,3,S,S], got {tuple(source.shape)} and "
                         f"{tuple(target.shape)}")
    strength = check_number(strength, "match_color: strength", low=0.0, high=1.0)
    max_ratio = check_number(max_ratio, "match_color: max_ratio", low=1.0, high=1e3)
    if stats_filter is not None and not callable(stats_filter):
        raise InputError(f"match_color: stats_filter must be a ColorFilter (callable ColorStats -> ColorStats) or "
                         f"None, got {type(stats_filter).__name__}")
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
    if stats_filter is not None:
        ms, ss, mt, st = _filtered(stats_filter, ms, ss, mt, st)
    ratio = (st / ss.clamp_min(1e-3)).clamp(1.0 / max_ratio, max_ratio)
    moved = (src - ms) * ratio + mt
    lab = src + float(min(strength, 1.0)) * (moved - src)
    return kornia.color.lab_to_rgb(lab, clip=True)
