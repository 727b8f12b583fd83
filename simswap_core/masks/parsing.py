"""Parsing mask: BiSeNet (``79999_iter.pth``) regions of the TARGET crop; official preprocessing, region names.

Labels (CelebAMask-HQ, 19 classes): 0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye, 5 r_eye, 6 eyeglasses,
7 l_ear, 8 r_ear, 9 earring, 10 nose, 11 mouth (interior), 12 upper lip, 13 lower lip, 14 neck, 15 necklace,
16 cloth, 17 hair, 18 hat.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_images
from ..errors import InputError
from ..networks.generator import IMAGENET_MEAN, IMAGENET_STD
from .base import CropMasker
from .edges import feather_mask, grow_mask

if TYPE_CHECKING:  # pragma: no cover
    from ..align import AlignedFaces
    from .spec import MaskSpec

LABEL_NAMES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eyeglasses", "l_ear", "r_ear",
               "earring", "nose", "mouth", "upper_lip", "lower_lip", "neck", "necklace", "cloth", "hair", "hat")

# Selectable regions -> labels.
REGIONS: dict[str, tuple[int, ...]] = {
    "skin": (1,), "brows": (2, 3), "eyes": (4, 5), "glasses": (6,), "nose": (10,), "lips": (12, 13),
    "mouth": (11,), "ears": (7, 8), "earrings": (9,), "neck": (14,), "hair": (17,), "hat": (18,),
}
# The official paste-back set (no_neck=True): {1-6, 10, 12, 13} plus the mouth interior 11.
OFFICIAL_REGIONS = ("skin", "brows", "eyes", "glasses", "nose", "lips", "mouth")
OFFICIAL_LABELS = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)

PARSER_SIZE = 512


def region_labels(regions: Iterable[str]) -> tuple[int, ...]:
    """Sorted label ids of region names (see REGIONS); unknown names raise InputError."""
    out: set[int] = set()
    for r in regions:
        key = str(r).strip().lower()
        if key not in REGIONS:
            raise InputError(f"parsing region {r!r} is unknown; expected some of {sorted(REGIONS)}")
        out.update(REGIONS[key])
    return tuple(sorted(out))


@torch.inference_mode()
def parse_faces(parser: torch.nn.Module, crops: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
    """Label maps [F,512,512] int64 of aligned crops [F,3,S,S] RGB [0,1], with the official preprocessing.

    Official: ImageNet mean/std normalisation, then ``F.interpolate(size=512)`` (default NEAREST), BiSeNet main
    head, argmax over the 19 classes. Runs on the parser's device, ``batch_size`` faces at a time.
    """
    check_images(crops, "parse_faces crops", layout="[F,3,S,S]", allow_empty=True)
    try:
        p = next(parser.parameters())
        dev, dt = p.device, p.dtype
    except StopIteration:
        dev, dt = crops.device, torch.float32
    f = crops.shape[0]
    if f == 0:
        return torch.zeros(0, PARSER_SIZE, PARSER_SIZE, dtype=torch.int64, device=crops.device)
    mean = torch.tensor(IMAGENET_MEAN, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
    out = []
    for i in range(0, f, max(1, int(batch_size))):    # memory chunks, not a per-face loop
        x = (crops[i:i + batch_size].to(dev, torch.float32) - mean) / std
        x = F.interpolate(x, size=(PARSER_SIZE, PARSER_SIZE), mode="nearest")
        logits = parser(x.to(dt))
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        out.append(logits.argmax(1))
    return torch.cat(out).to(crops.device)


def labels_to_mask(labels: torch.Tensor, labels_kept: Iterable[int]) -> torch.Tensor:
    """[F,h,w] int labels -> [F,1,h,w] float32 1 where the label is in ``labels_kept``."""
    keep = torch.tensor(sorted(set(int(v) for v in labels_kept)), device=labels.device, dtype=labels.dtype)
    return torch.isin(labels, keep).unsqueeze(1).float()


class ParsingMasker(CropMasker):
    """Union of the spec's regions (default: the official set skin, brows, eyes, glasses, nose, lips, mouth),
    resized to S, grown and feathered. Needs ``parser`` (BiSeNet, ``load_parser``) or ``labels`` [F,512,512]."""

    kind = "parsing"
    order = 2
    default_feather = 0.03
    needs_parser = True

    def __call__(self, aligned: AlignedFaces, spec: MaskSpec, parser: nn.Module | None = None, *,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        s, f, dev = aligned.crop_size, len(aligned), aligned.crops.device
        if labels is None:
            if parser is None:
                raise InputError("mask kind 'parsing' needs a face parser (load_parser('79999_iter.pth')) or labels")
            labels = parse_faces(parser, aligned.crops)
        if labels.ndim != 3 or labels.shape[0] != f:
            raise InputError(f"parsing labels: expected [{f},H,W], got {tuple(labels.shape)}")
        m = labels_to_mask(labels.to(dev), region_labels(spec.regions))
        if m.shape[-1] != s or m.shape[-2] != s:
            m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False)
        m = grow_mask(m, int(round(float(spec.grow) * s)))
        return feather_mask(m, spec.feather_fraction * s / 4.0).clamp(0, 1)
