"""Crop-space face masks as data: ``MaskSpec`` -> ``[F,1,S,S]`` float32 masks in [0,1], batched on the device.

Kinds (one module each, each a ``CropMasker`` registered by subclassing; every module of this folder is imported
here, so a new kind is one new file):

- ``box``:     the whole crop (grow < 0 shrinks it from the crop edges);
- ``ellipse``: an ellipse around the face built from the 5 aligned landmarks;
- ``parsing``: union of BiSeNet regions of the TARGET crop (default: the official set).

``official.py`` holds SimSwap's own parsing paste mask (SoftErosion) used by ``paste_mode="official"``;
``edges.py`` the grow/feather/seam tools.
"""
from __future__ import annotations

import importlib
import pkgutil

import torch
import torch.nn as nn

from ..align import AlignedFaces
from .base import MASKERS, CropMasker, mask_kinds
from .box import box_masks
from .edges import crop_border_mask, feather_mask, grow_mask
from .ellipse import ellipse_masks
from .official import SoftErosion, official_parsing_crop_masks, official_parsing_mask, soft_erosion
from .parsing import (
    LABEL_NAMES,
    OFFICIAL_LABELS,
    OFFICIAL_REGIONS,
    PARSER_SIZE,
    REGIONS,
    labels_to_mask,
    parse_faces,
    region_labels,
)
from .spec import MaskSpec

for _module in pkgutil.iter_modules(__path__):       # register every kind of this folder
    importlib.import_module(f"{__name__}.{_module.name}")

MASK_KINDS = mask_kinds()


def build_crop_masks(aligned: AlignedFaces, spec: MaskSpec | str | None = None, parser: nn.Module | None = None, *,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """Crop-space masks [F,1,S,S] float32 in [0,1] on the crops' device, by the spec's ``CropMasker``.

    ``spec`` None -> box; a string is parsed (``MaskSpec.parse``). Kinds that need a parser take ``parser``
    (BiSeNet from ``load_parser``) or precomputed ``labels`` [F,512,512] from ``parse_faces``.
    """
    if spec is None:
        spec = MaskSpec()
    elif isinstance(spec, str):
        spec = MaskSpec.parse(spec)
    return MASKERS[spec.kind]()(aligned, spec, parser, labels=labels)


__all__ = ["MaskSpec", "CropMasker", "MASKERS", "MASK_KINDS", "build_crop_masks", "box_masks", "ellipse_masks",
           "crop_border_mask", "grow_mask", "feather_mask", "SoftErosion", "soft_erosion", "official_parsing_mask",
           "official_parsing_crop_masks", "parse_faces", "labels_to_mask", "region_labels", "REGIONS",
           "OFFICIAL_REGIONS", "OFFICIAL_LABELS", "LABEL_NAMES", "PARSER_SIZE"]
