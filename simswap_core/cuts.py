"""Shot-cut detection for video streams: which frames start a new shot (a hard cut between two camera shots).

Each frame is reduced, on its own device and batched over the frames of a call, to a small thumbnail (area average
to ``THUMB`` x ``THUMB`` pixels) and colour histograms of the thumbnail's four quadrants (``BINS`` bins per RGB
channel). A frame
is compared with the frame before it (across calls: the last frame of a call is kept for the next one) by two
distances, both in [0,1]:

* layout: the mean absolute difference of the two thumbnails, scaled by ``LAYOUT_SCALE`` and clipped to 1 (what
  is where in the picture; high for a cut, but also for a fast pan or a large object moving close to the camera);
* colour: half the L1 distance of the histograms, averaged over quadrants and channels (the share of pixels whose
  colour changed bins; little changed by motion, but the quadrants tell a mirrored or rearranged picture from the
  same one).

The cut score is their geometric mean, so a cut needs both a new layout and new colours: motion (layout only) or
a lighting change (some of both) stays below the threshold. Measured on crops of insightface's t1.jpg and
skimage's astronaut at 640x360: pans of 8 and 40 px per frame score 0.13 and 0.21, a 20 % brightness step 0.25, a
cut to another place of the photo, to another photo or to the mirrored picture 0.61-0.65. Frames are compared
only with their predecessor, so a slow fade or dissolve is not reported as a cut (tracks follow faces through it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import check_number
from .errors import InputError

__all__ = ["CutDetector", "DEFAULT_CUT_THRESHOLD"]

THUMB = 32           # thumbnail side in pixels (even: split into 2x2 quadrants)
GRID = 2             # quadrants per side, each with its own histograms
BINS = 16            # histogram bins per channel
SAMPLES = 6          # at least SAMPLES x SAMPLES pixels (of the shorter side's rate) averaged per thumbnail pixel
LAYOUT_SCALE = 4.0   # a mean thumbnail change of 0.25 (a quarter of the value range) counts as a full change
DEFAULT_CUT_THRESHOLD = 0.4


class CutDetector:
    """Finds the frames of a stream that start a new shot.

    threshold: cut score (0..1, see the module docstring) above which a frame starts a new shot; lower finds more
    cuts (and more false ones on fast motion), higher fewer.

    ``detector(frames)`` takes the next B frames ``[B,3,H,W]`` RGB [0,1] (any device; the size may change between
    calls) and returns ``[B]`` bool on their device, True where a frame starts a new shot. The first frame of a
    stream is never a cut. ``scores`` holds the last call's cut scores ``[B]``. Call :meth:`reset` between clips.
    """

    def __init__(self, threshold: float = DEFAULT_CUT_THRESHOLD) -> None:
        self.threshold = check_number(threshold, "cut threshold", low=0.0, low_open=True, high=1.0)
        self.scores: torch.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next frame starts a stream)."""
        self._prev_thumb: torch.Tensor | None = None   # [1,3,THUMB,THUMB]
        self._prev_hist: torch.Tensor | None = None    # [1,3,GRID*GRID,BINS]

    @staticmethod
    def features(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B,3,H,W]`` RGB [0,1] -> (thumbnails ``[B,3,THUMB,THUMB]``, quadrant histograms
        ``[B,3,GRID*GRID,BINS]``, each summing to 1)."""
        step = max(1, min(frames.shape[-2:]) // (THUMB * SAMPLES))   # every step-th pixel: plenty for a thumbnail
        thumb = F.adaptive_avg_pool2d(frames[:, :, ::step, ::step].float(), THUMB).clamp(0.0, 1.0)
        b, q = thumb.shape[0], THUMB // GRID
        cells = thumb.reshape(b, 3, GRID, q, GRID, q).permute(0, 1, 2, 4, 3, 5).reshape(b, 3, GRID * GRID, q * q)
        idx = (cells * BINS).long().clamp(max=BINS - 1)                                  # [B,3,G*G,q*q]
        hist = torch.zeros(b, 3, GRID * GRID, BINS, device=frames.device).scatter_add_(
            3, idx, torch.ones_like(idx, dtype=torch.float32))
        return thumb, hist / (q * q)

    @staticmethod
    def score(thumb_a: torch.Tensor, hist_a: torch.Tensor, thumb_b: torch.Tensor,
              hist_b: torch.Tensor) -> torch.Tensor:
        """Cut scores [B] in [0,1] between frames a and b (their `features`)."""
        layout = ((thumb_a - thumb_b).abs().mean((1, 2, 3)) * LAYOUT_SCALE).clamp(max=1.0)
        colour = 0.5 * (hist_a - hist_b).abs().sum(3).mean((1, 2))
        return (layout * colour).sqrt()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3 \
                or not frames.is_floating_point():
            got = (f"{tuple(frames.shape)} {frames.dtype}" if isinstance(frames, torch.Tensor)
                   else type(frames).__name__)
            raise InputError(f"frames: expected float RGB frames [B,3,H,W] in [0,1], got {got}")
        b = frames.shape[0]
        if b == 0:
            self.scores = torch.zeros(0, device=frames.device)
            return torch.zeros(0, dtype=torch.bool, device=frames.device)
        thumb, hist = self.features(frames)
        if self._prev_thumb is None or self._prev_hist is None:
            prev_thumb, prev_hist = thumb[:1], hist[:1]     # the stream's first frame: compared with itself
        else:
            prev_thumb, prev_hist = self._prev_thumb.to(frames.device), self._prev_hist.to(frames.device)
        before_t = torch.cat([prev_thumb, thumb[:-1]])
        before_h = torch.cat([prev_hist, hist[:-1]])
        self.scores = self.score(thumb, hist, before_t, before_h)
        self._prev_thumb, self._prev_hist = thumb[-1:], hist[-1:]
        return self.scores > self.threshold
