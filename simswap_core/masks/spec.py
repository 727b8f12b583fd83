"""``MaskSpec``: which region of each aligned crop is swapped, and how its edge is grown and feathered.

Sizes (grow/shrink, feather) are FRACTIONS OF THE ALIGNED CROP SIZE S. Alignment scales every face to the same
template, so a fraction of S is a fixed fraction of the face whatever its size in the frame (the face's eye
distance is ~0.29 S for the 224 templates and ~0.25 S for FFHQ); nothing is a fixed pixel kernel.
Feathering is a Gaussian edge: ``feather`` is the width of the soft band (about 2 % -> 98 %), sigma = feather*S/4.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import check_number
from ..errors import InputError
from .base import MASKERS, mask_kinds
from .parsing import OFFICIAL_REGIONS, region_labels


@dataclass(frozen=True)
class MaskSpec:
    """What region of each aligned crop is swapped.

    kind:    a registered kind (``mask_kinds()``): "box" | "ellipse" | "parsing" | "occlusion" | "sam" |
             "sam_parsing".
    regions: parsing regions (names of ``simswap_core.masks.parsing.REGIONS``) for the kinds that need a parser;
             default the official set.
    grow:    fraction of S to dilate (> 0) or erode (< 0) the region.
    feather: width of the soft edge as a fraction of S; None -> the kind's default (``default_feather`` of its
             CropMasker: box 0, ellipse 0.06, parsing 0.03).
    """

    kind: str = "box"
    regions: tuple[str, ...] = field(default=OFFICIAL_REGIONS)
    grow: float = 0.0
    feather: float | None = None

    def __post_init__(self) -> None:
        kind = str(self.kind).strip().lower()
        if kind not in MASKERS:
            raise InputError(f"mask kind: expected one of {mask_kinds()}, got {self.kind!r}")
        object.__setattr__(self, "kind", kind)
        regions = tuple(str(r).strip().lower() for r in self.regions)
        if not regions:
            raise InputError("mask regions: expected at least one parsing region")
        region_labels(regions)    # validates names
        object.__setattr__(self, "regions", regions)
        object.__setattr__(self, "grow", check_number(self.grow, "mask grow (fraction of the crop size)",
                                                      low=-0.5, high=0.5))
        if self.feather is not None:
            object.__setattr__(self, "feather", check_number(self.feather, "mask feather (fraction of the crop size)",
                                                             low=0.0, high=1.0))

    @property
    def feather_fraction(self) -> float:
        return MASKERS[self.kind].default_feather if self.feather is None else float(self.feather)

    @property
    def needs_parser(self) -> bool:
        """Whether this kind needs a BiSeNet face parser."""
        return MASKERS[self.kind].needs_parser

    @property
    def needs_sam(self) -> bool:
        """Whether this kind needs a Segment Anything model (``load_sam``) and the frames."""
        return MASKERS[self.kind].needs_sam

    @classmethod
    def parse(cls, text: str) -> MaskSpec:
        """``"box"``, ``"ellipse:grow=0.02"``, ``"parsing:skin,nose,lips,feather=0.05"``, ``"box:shrink=0.05"``,
        ``"occlusion:skin,nose"``.

        After ``kind:``, comma-separated items: ``grow=F``, ``shrink=F`` (= grow=-F), ``feather=F``; bare names are
        parsing regions (only for the kinds that need a parser: parsing, occlusion, sam_parsing).
        """
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"mask spec: expected text like 'ellipse' or 'parsing:skin,nose', got {text!r}")
        kind, _, rest = text.strip().partition(":")
        kw: dict = {"kind": kind.strip().lower()}
        regions: list[str] = []
        for item in filter(None, (s.strip() for s in rest.split(","))):
            if "=" in item:
                k, _, v = item.partition("=")
                k = k.strip().lower()
                try:
                    val = float(v)
                except ValueError:
                    raise InputError(f"mask spec {text!r}: {k} expects a number, got {v!r}") from None
                if k == "grow":
                    kw["grow"] = val
                elif k == "shrink":
                    kw["grow"] = -val
                elif k == "feather":
                    kw["feather"] = val
                else:
                    raise InputError(f"mask spec {text!r}: unknown option {k!r} (expected grow, shrink, feather)")
            else:
                regions.append(item)
        if regions:
            region_kinds = [k for k in mask_kinds() if MASKERS[k].needs_parser]
            if kw["kind"] in MASKERS and not MASKERS[kw["kind"]].needs_parser:
                raise InputError(f"mask spec {text!r}: regions are only valid for the kinds that use a face parser "
                                 f"({', '.join(region_kinds)}), not {kw['kind']!r}")
            kw["regions"] = tuple(regions)
        return cls(**kw)

    def __str__(self) -> str:
        items = list(self.regions) if self.needs_parser and self.regions != OFFICIAL_REGIONS else []
        if self.grow:
            items.append(f"grow={self.grow:g}")
        if self.feather is not None:
            items.append(f"feather={self.feather:g}")
        return self.kind + (":" + ",".join(items) if items else "")
