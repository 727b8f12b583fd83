"""SimSwap's own paste-back mask for parsing (``reverse2wholeimage`` with a parser): the kept BiSeNet labels of the
target crop, resized to S and softened by the official SoftErosion; used by ``paste_mode="official"`` with a
parsing mask (the official code has no other mask kinds)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..align import AlignedFaces
from ..errors import InputError
from .parsing import OFFICIAL_LABELS, labels_to_mask, parse_faces


class SoftErosion(nn.Module):
    """The official SoftErosion (kernel 17, threshold 0.9, 7 iterations), batched: [F,1,H,W] -> ([F,1,H,W], bool).

    kernel w = max(d) - d (d = distance to the centre), normalised to sum 1; (iterations - 1) times
    m = min(m, conv(m)) with zero padding, then m = conv(m); pixels >= threshold become 1, the others are divided
    by their own maximum (per face; the official runs one face at a time).
    """

    weight: torch.Tensor  # non-persistent buffer [1,1,k,k]

    def __init__(self, kernel_size: int = 17, threshold: float = 0.9, iterations: int = 7):
        super().__init__()
        r = kernel_size // 2
        self.padding = r
        self.iterations = iterations
        self.threshold = threshold
        y, x = torch.meshgrid(torch.arange(0.0, kernel_size), torch.arange(0.0, kernel_size), indexing="ij")
        d = torch.sqrt((x - r) ** 2 + (y - r) ** 2)
        k = d.max() - d
        k = k / k.sum()
        self.register_buffer("weight", k.view(1, 1, kernel_size, kernel_size), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.float()
        c = x.shape[1]
        w = self.weight.to(x.device).expand(c, 1, *self.weight.shape[2:])
        for _ in range(self.iterations - 1):
            x = torch.minimum(x, F.conv2d(x, w, groups=c, padding=self.padding))
        x = F.conv2d(x, w, groups=c, padding=self.padding)
        hard = x >= self.threshold
        peak = torch.where(hard, torch.full_like(x, -math.inf), x).amax(dim=(1, 2, 3), keepdim=True)
        peak = torch.where(torch.isfinite(peak) & (peak > 0), peak, torch.ones_like(peak))
        return torch.where(hard, torch.ones_like(x), x / peak), hard


_SOFT_EROSION: dict = {}


def soft_erosion(x: torch.Tensor) -> torch.Tensor:
    """Official SoftErosion(17, 0.9, 7) of [F,1,H,W] (values only)."""
    mod = _SOFT_EROSION.setdefault("official", SoftErosion(17, 0.9, 7))
    return mod(x)[0]


def official_parsing_mask(labels: torch.Tensor, crop_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official paste-back mask from BiSeNet labels of the target crops.

    labels [F,512,512] -> (mask [F,1,S,S] in [0,1], ok [F] bool). Kept labels {1-6,10,12,13} (face) + 11 (mouth),
    linear resize (cv2.resize INTER_LINEAR == bilinear, half-pixel centres, no antialias) to S, SoftErosion.
    Where the kept area is < 5000/255 pixels (the official ``tgt_mask.sum() >= 5000`` test, ``ok`` False) the mask
    is all ones: the official code then pastes the swapped crop without parsing.
    """
    ind = labels_to_mask(labels, OFFICIAL_LABELS)                                  # [F,1,512,512]
    ok = ind.sum(dim=(1, 2, 3)) * 255.0 >= 5000.0
    s = int(crop_size)
    m = ind if ind.shape[-1] == s else F.interpolate(ind, size=(s, s), mode="bilinear", align_corners=False)
    m = soft_erosion(m)
    return torch.where(ok[:, None, None, None], m, torch.ones_like(m)), ok


def official_parsing_crop_masks(aligned: AlignedFaces, parser: nn.Module | None = None, *,
                                labels: torch.Tensor | None = None) -> torch.Tensor:
    """[F,1,S,S] in-crop composition masks of the official parsing paste for the TARGET crops of ``aligned``
    (labels [F,512,512] from ``parse_faces``, computed with ``parser`` when not given)."""
    if labels is None:
        if parser is None:
            raise InputError("the official parsing paste needs a face parser (load_parser) or parsing labels")
        labels = parse_faces(parser, aligned.crops)
    return official_parsing_mask(labels.to(aligned.crops.device), aligned.crop_size)[0]
