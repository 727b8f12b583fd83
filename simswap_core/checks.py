"""The checks of values handed to public entry points: image batches (float RGB ``[N,3,H,W]``, crops
``[F,3,S,S]``, masks ``[N,1,H,W]``) and numeric options (finite, in their documented range).

The image checks cost one reduction over the batch and one device sync (``aminmax``: a NaN propagates into both
ends, an inf shows as an end); the per-frame detail is computed only when a batch is refused.
"""
from __future__ import annotations

import math
import numbers

import torch

from .errors import InputError

__all__ = ["RANGE_TOLERANCE", "check_images", "check_integer", "check_masks", "check_number", "check_value_range"]

# Resampling (bicubic, Lanczos) overshoots [0,1] a little at sharp edges; values further out are refused.
RANGE_TOLERANCE = 0.25


def _bad_value_detail(images: torch.Tensor, what: str) -> str:
    """'what[3] has 12 NaN and 1 inf values' for the first frames with non-finite values (slow path only)."""
    flat = images.detach().flatten(1)
    nan = torch.isnan(flat).sum(1)
    inf = torch.isinf(flat).sum(1)
    bad = ((nan + inf) > 0).nonzero().flatten().tolist()
    parts = [f"{what}[{i}] has {int(nan[i])} NaN and {int(inf[i])} inf values" for i in bad[:3]]
    more = f" (and {len(bad) - 3} more frames)" if len(bad) > 3 else ""
    return "; ".join(parts) + more


def check_value_range(values: torch.Tensor, what: str, *, low: float = 0.0, high: float = 1.0,
                      tolerance: float = RANGE_TOLERANCE) -> None:
    """Raise InputError unless every value of the float ``values`` (first dim = items) is finite and within
    ``[low - tolerance, high + tolerance]``; names the item at fault and, for images, a 0..255 scale."""
    if values.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.stack(torch.aminmax(values.detach())).float().tolist())
    if math.isfinite(lo) and math.isfinite(hi) and lo >= low - tolerance and hi <= high + tolerance:
        return
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"{what}: expected finite values in [{low:g},{high:g}]; "
                         f"{_bad_value_detail(values, what)}")
    flat = values.detach().flatten(1).float()
    if hi > high + tolerance:
        i = int(flat.amax(1).argmax())
        hint = "; this looks like 0..255 values: divide by 255" if high == 1.0 and hi <= 255.0 + tolerance else ""
        raise InputError(f"{what}: expected values in [{low:g},{high:g}], {what}[{i}] has values up to {hi:g}{hint}")
    i = int(flat.amin(1).argmin())
    raise InputError(f"{what}: expected values in [{low:g},{high:g}], {what}[{i}] has values down to {lo:g} "
                     f"(negative values are not pixel intensities)")


def check_images(images: object, what: str, *, layout: str = "[N,3,H,W]", allow_single: bool = False,
                 allow_empty: bool = False) -> torch.Tensor:
    """``images`` as a float ``[N,3,H,W]`` RGB tensor with finite values in [0,1], or InputError naming ``what``.

    allow_single: a ``[3,H,W]`` image becomes ``[1,3,H,W]``. allow_empty: N == 0 is accepted. ``layout`` is the
    shape named in the messages (``"[F,3,S,S]"`` for aligned crops). Integer tensors (uint8) are refused, not
    rescaled: their scale is ambiguous. Values slightly outside [0,1] (resampling overshoot, ``RANGE_TOLERANCE``)
    are accepted; a float batch in 0..255 is refused with that reason.
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{what}: expected a torch tensor {layout} RGB in [0,1], got {type(images).__name__}")
    if allow_single and images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"{what}: expected {layout} RGB (3 channels first; convert grayscale/RGBA to RGB "
                         f"first), got shape {tuple(images.shape)}")
    if images.shape[0] == 0 and not allow_empty:
        raise InputError(f"{what}: expected at least one image, got an empty batch")
    if not images.is_floating_point():
        raise InputError(f"{what}: expected float values in [0,1], got dtype {images.dtype} (divide uint8 by 255)")
    check_value_range(images, what)
    return images


def check_masks(masks: object, what: str, *, count: int | None = None, size: tuple[int, int] | None = None
                ) -> torch.Tensor:
    """``masks`` as a float ``[N,1,H,W]`` tensor with finite values in [0,1] (N == count, H,W == size when
    given), or InputError naming ``what``."""
    if not isinstance(masks, torch.Tensor):
        raise InputError(f"{what}: expected a torch tensor [N,1,H,W] in [0,1], got {type(masks).__name__}")
    shape = tuple(masks.shape)
    if masks.dim() != 4 or shape[1] != 1 or (count is not None and shape[0] != count) or \
            (size is not None and tuple(shape[2:]) != tuple(size)):
        want = f"[{count if count is not None else 'N'},1,{size[0] if size else 'H'},{size[1] if size else 'W'}]"
        raise InputError(f"{what}: expected {want}, got shape {shape}")
    if not masks.is_floating_point():
        raise InputError(f"{what}: expected float values in [0,1], got dtype {masks.dtype}")
    check_value_range(masks, what)
    return masks


def check_number(value: object, what: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in its documented range (``low``/``high``, inclusive unless ``*_open``), or
    InputError naming ``what``, the value and the range. Booleans and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{what}: expected a number, got {type(value).__name__} {value!r}")
    try:
        v = float(value)
    except (OverflowError, ValueError):
        raise InputError(f"{what}: expected a finite number, got {value!r}") from None
    lo_ok = low is None or (v > low if low_open else v >= low)
    hi_ok = high is None or (v < high if high_open else v <= high)
    if not math.isfinite(v) or not lo_ok or not hi_ok:
        rng = f"{'(' if low_open else '['}{'-inf' if low is None else f'{low:g}'}, " \
              f"{'inf' if high is None else f'{high:g}'}{')' if high_open else ']'}"
        raise InputError(f"{what}: expected a finite number in {rng}, got {value!r}")
    return v


def check_integer(value: object, what: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (inclusive), or InputError naming ``what``; booleans, floats and
    strings are refused (no silent truncation)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{what}: expected an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        rng = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        shown = str(v) if len(str(v)) <= 30 else f"a {len(str(v))}-digit number"
        raise InputError(f"{what}: expected an integer in {rng}, got {shown}")
    return v
