"""What a mask kind is: a ``CropMasker`` turns aligned faces into crop-space masks ``[F,1,S,S]`` in [0,1].

Each kind lives in its own module of this package (``box.py``, ``ellipse.py``, ``parsing.py``) as a subclass of
``CropMasker`` with a ``kind`` name; subclassing registers it (``MASKERS``), and the package imports every module
in its folder, so a new kind is one new file. ``MaskSpec`` (``spec.py``) says which kind and how it is grown and
feathered; ``build_crop_masks`` runs the kind's masker.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn as nn

if TYPE_CHECKING:  # pragma: no cover
    from ..align import AlignedFaces
    from .spec import MaskSpec

MASKERS: dict[str, type[CropMasker]] = {}


class CropMasker:
    """One mask kind. ``kind``: its name in a MaskSpec; ``order``: its place in menus (lower first);
    ``default_feather``: soft-edge width (fraction of S) when the spec gives none; ``needs_parser``: whether
    ``__call__`` needs a BiSeNet face parser (or precomputed labels); ``needs_sam``: whether it needs a Segment
    Anything model (``sam=``) and the frames (``frames=``); ``inputs``: the extra keyword arguments its
    ``__call__`` takes besides ``labels`` (``build_crop_masks`` passes only these, so older kinds keep their
    signature)."""

    kind: ClassVar[str] = ""
    order: ClassVar[int] = 100
    default_feather: ClassVar[float] = 0.0
    needs_parser: ClassVar[bool] = False
    needs_sam: ClassVar[bool] = False
    inputs: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            MASKERS[cls.kind] = cls

    def __call__(self, aligned: AlignedFaces, spec: MaskSpec, parser: nn.Module | None = None, *,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        """Masks ``[F,1,S,S]`` float32 in [0,1] on the crops' device for the faces of ``aligned``."""
        raise NotImplementedError


def mask_kinds() -> tuple[str, ...]:
    """Registered kinds in menu order."""
    return tuple(sorted(MASKERS, key=lambda k: (MASKERS[k].order, k)))
