"""Occlusion-aware parsing mask: only the face itself is swapped; whatever covers it stays in front.

BiSeNet labels each pixel of the TARGET crop. Hair falling over the forehead is ``hair``, glasses are
``eyeglasses``, and a hand, a microphone or a cup is some label that is not a face part (background, cloth...).
This kind keeps the spec's regions minus the ones that can lie in front of a face (:data:`OCCLUDER_REGIONS`;
with the default regions: skin, brows, eyes, nose, lips and the mouth), then feathers INWARD: the region is eroded
by the feather's full reach before the blur, so the soft edge lies inside the face and every pixel of an occluder
keeps weight exactly 0 (it stays bit-identical in the output). Sizes are fractions of the crop size S, i.e. of the
face (a face twice as large gets a feather twice as wide in the frame).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .base import CropMasker
from .edges import feather_mask, grow_mask
from .parsing import labels_to_mask, parse_faces, region_labels

if TYPE_CHECKING:  # pragma: no cover
    from ..align import AlignedFaces
    from .spec import MaskSpec

#: regions that can lie in front of a face: never swapped by the occlusion-aware kinds
OCCLUDER_REGIONS = ("glasses", "hair", "hat", "earrings", "necklace", "cloth")


def face_regions(regions: tuple[str, ...], kind: str) -> tuple[str, ...]:
    """``regions`` without :data:`OCCLUDER_REGIONS`; InputError when nothing is left."""
    kept = tuple(r for r in regions if r not in OCCLUDER_REGIONS)
    if not kept:
        raise InputError(f"mask regions {', '.join(regions)}: the '{kind}' mask never swaps "
                         f"{', '.join(OCCLUDER_REGIONS)} (they can cover the face); expected some of skin, brows, "
                         f"eyes, nose, lips, mouth")
    return kept


def inward_feather(hard: torch.Tensor, sigma: float) -> torch.Tensor:
    """[F,1,H,W] binary region -> soft mask whose Gaussian edge (std ``sigma`` px) lies INSIDE the region: eroded
    by the blur's reach plus one pixel first, so every pixel outside the region stays exactly 0 (also after a
    bilinear warp of the mask)."""
    if sigma <= 0:
        return hard
    reach = int(math.ceil(3.0 * sigma)) + 1
    return feather_mask(grow_mask(hard, -reach), sigma).clamp(0, 1)


def region_crop_mask(labels: torch.Tensor, regions: tuple[str, ...], crop_size: int) -> torch.Tensor:
    """[F,1,S,S] binary (0/1) mask of the label maps [F,h,w] in ``regions``, resized to S (a pixel is in when more
    than half of it is)."""
    m = labels_to_mask(labels, region_labels(regions))
    if m.shape[-1] != crop_size or m.shape[-2] != crop_size:
        m = F.interpolate(m, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=True)
    return (m > 0.5).float()


def occlusion_masks(labels: torch.Tensor, regions: tuple[str, ...], crop_size: int, grow: float = 0.0,
                    feather: float = 0.03, limit: torch.Tensor | None = None) -> torch.Tensor:
    """[F,1,S,S] occlusion-aware masks from label maps [F,h,w]: ``regions`` minus OCCLUDER_REGIONS, times
    ``limit`` [F,1,S,S] (binary, e.g. SAM's face) when given, grown by ``grow`` and feathered inward by
    ``feather`` (fractions of S)."""
    s = int(crop_size)
    m = region_crop_mask(labels, face_regions(regions, "occlusion"), s)
    if limit is not None:
        m = m * limit.to(m)
    m = grow_mask(m, int(round(float(grow) * s)))
    return inward_feather(m, float(feather) * s / 4.0)


def crop_labels(aligned: AlignedFaces, parser: nn.Module | None, labels: torch.Tensor | None,
                kind: str) -> torch.Tensor:
    """The parse of the crops: ``labels`` [F,h,w] when given (checked), else ``parser`` run on them."""
    f = len(aligned)
    if labels is None:
        if parser is None:
            raise InputError(f"mask kind '{kind}' needs a face parser (load_parser('79999_iter.pth')) or labels")
        labels = parse_faces(parser, aligned.crops)
    if labels.ndim != 3 or labels.shape[0] != f:
        raise InputError(f"parsing labels: expected [{f},H,W], got {tuple(labels.shape)}")
    return labels.to(aligned.crops.device)


class OcclusionMasker(CropMasker):
    """Occlusion-aware parsing mask (see the module docstring). Needs ``parser`` or ``labels`` [F,512,512]."""

    kind = "occlusion"
    order = 3
    default_feather = 0.03
    needs_parser = True

    def __call__(self, aligned: AlignedFaces, spec: MaskSpec, parser: nn.Module | None = None, *,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        labels = crop_labels(aligned, parser, labels, self.kind)
        return occlusion_masks(labels, spec.regions, aligned.crop_size, spec.grow, spec.feather_fraction)
