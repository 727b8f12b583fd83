"""Crop-space face masks as data: ``MaskSpec`` -> ``[F,1,S,S]`` float32 masks in [0,1], batched on the device.

Kinds (one module each, each a ``CropMasker`` registered by subclassing; every module of this folder is imported
here, so a new kind is one new file):

- ``box``:     the whole crop (grow < 0 shrinks it from the crop edges);
- ``ellipse``: an ellipse around the face built from the 5 aligned landmarks;
- ``parsing``: union of BiSeNet regions of the TARGET crop (default: the official set);
- ``occlusion``: the parsing regions that are the face itself (skin, brows, eyes, nose, lips, mouth; never
  glasses, hair, hat, jewellery, cloth), feathered INWARD so whatever covers the face (a hand, hair, a
  microphone: any other label) stays exactly as it was;
- ``sam``: the face ellipse intersected with Segment Anything's segmentation of the face (prompts: the face's box
  and landmarks; one image embedding per frame), feathered inward: occluders are left out without a parser;
- ``sam_parsing``: the occlusion-aware parsing regions intersected with SAM's face.

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
from .occlusion import OCCLUDER_REGIONS, inward_feather, occlusion_masks
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
from .sam import sam_face_masks
from .spec import MaskSpec

for _module in pkgutil.iter_modules(__path__):       # register every kind of this folder
    importlib.import_module(f"{__name__}.{_module.name}")

MASK_KINDS = mask_kinds()


def build_crop_masks(aligned: AlignedFaces, spec: MaskSpec | str | None = None, parser: nn.Module | None = None, *,
                     labels: torch.Tensor | None = None, frames: torch.Tensor | None = None,
                     sam: nn.Module | None = None, boxes: torch.Tensor | None = None) -> torch.Tensor:
    """Crop-space masks [F,1,S,S] float32 in [0,1] on the crops' device, by the spec's ``CropMasker``.

    ``spec`` None -> box; a string is parsed (``MaskSpec.parse``). Kinds that need a parser take ``parser``
    (BiSeNet from ``load_parser``) or precomputed ``labels`` [F,512,512] from ``parse_faces``. Kinds that need
    SAM (``MASKERS[kind].needs_sam``) take ``sam`` (``load_sam``), ``frames`` [N,3,H,W] RGB [0,1] (the frames
    ``aligned`` was cut from: ``aligned.frame_index`` indexes them) and optionally ``boxes`` [F,4] x1,y1,x2,y2
    frame px (the detector's face boxes; default: boxes from the landmarks). Other kinds ignore these three.
    """
    if spec is None:
        spec = MaskSpec()
    elif isinstance(spec, str):
        spec = MaskSpec.parse(spec)
    masker = MASKERS[spec.kind]
    given = {"frames": frames, "sam": sam, "boxes": boxes}
    extra = {k: given[k] for k in masker.inputs if k in given}
    return masker()(aligned, spec, parser, labels=labels, **extra)


__all__ = ["MaskSpec", "CropMasker", "MASKERS", "MASK_KINDS", "build_crop_masks", "box_masks", "ellipse_masks",
           "crop_border_mask", "grow_mask", "feather_mask", "SoftErosion", "soft_erosion", "official_parsing_mask",
           "official_parsing_crop_masks", "parse_faces", "labels_to_mask", "region_labels", "REGIONS",
           "OFFICIAL_REGIONS", "OFFICIAL_LABELS", "LABEL_NAMES", "PARSER_SIZE", "OCCLUDER_REGIONS", "inward_feather",
           "occlusion_masks", "sam_face_masks"]
