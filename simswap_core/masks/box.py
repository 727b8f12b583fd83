"""Box mask: the whole aligned crop, shrunk from its edges by ``-grow`` (fractions of S), Gaussian edge."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .base import CropMasker
from .edges import soft_edge

if TYPE_CHECKING:  # pragma: no cover
    from ..align import AlignedFaces
    from .spec import MaskSpec


def box_masks(n: int, crop_size: int, grow: float = 0.0, feather: float = 0.0,
              device: torch.device | str | None = None) -> torch.Tensor:
    """[F,1,S,S] box masks: the whole crop, shrunk by -grow*S from the edges, Gaussian edge of width feather*S."""
    s = int(crop_size)
    i = torch.arange(s, device=device, dtype=torch.float32)
    d = -torch.minimum(i + 0.5, s - 0.5 - i) - grow * s         # signed distance to the (moved) box edge
    r = soft_edge(d, feather * s / 4.0)
    return (r[:, None] * r[None, :])[None, None].expand(n, 1, s, s).contiguous()


class BoxMasker(CropMasker):
    kind = "box"
    order = 0
    default_feather = 0.0

    def __call__(self, aligned: AlignedFaces, spec: MaskSpec, parser: nn.Module | None = None, *,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        return box_masks(len(aligned), aligned.crop_size, float(spec.grow), spec.feather_fraction,
                         aligned.crops.device)
