"""Crop-space face masks as data: ``MaskSpec`` -> ``[F,1,S,S]`` float32 masks in [0,1], batched on the device.

Sizes (grow/shrink, feather) are FRACTIONS OF THE ALIGNED CROP SIZE S. Alignment scales every face to the same
template, so a fraction of S is a fixed fraction of the face whatever its size in the frame (the face's eye
distance is ~0.29 S for the 224 templates and ~0.25 S for FFHQ); nothing is a fixed pixel kernel.

Kinds:
- "box":     the whole crop (grow < 0 shrinks it from the crop edges);
- "ellipse": an ellipse around the face built from the 5 aligned landmarks (analytic, no convolution);
- "parsing": union of BiSeNet regions of the TARGET crop (default: the official set skin, brows, eyes, glasses,
             nose, lips, mouth).
Feathering is a Gaussian edge: ``feather`` is the width of the soft band (about 2 % -> 98 %), sigma = feather*S/4.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import kornia
import torch
import torch.nn as nn
import torch.nn.functional as F

from .align import AlignedFaces, templates
from .errors import InputError
from .parsing import OFFICIAL_LABELS, OFFICIAL_REGIONS, PARSER_SIZE, REGIONS, labels_to_mask, parse_faces, \
    region_labels

MASK_KINDS = ("box", "ellipse", "parsing")
DEFAULT_FEATHER = {"box": 0.0, "ellipse": 0.06, "parsing": 0.03}


@dataclass(frozen=True)
class MaskSpec:
    """What region of each aligned crop is swapped.

    kind:    "box" | "ellipse" | "parsing".
    regions: parsing regions (names of ``simswap_core.parsing.REGIONS``); default the official set.
    grow:    fraction of S to dilate (> 0) or erode (< 0) the region.
    feather: width of the soft edge as a fraction of S; None -> the kind's default (box 0, ellipse 0.06,
             parsing 0.03).
    """

    kind: str = "box"
    regions: tuple[str, ...] = field(default=OFFICIAL_REGIONS)
    grow: float = 0.0
    feather: float | None = None

    def __post_init__(self) -> None:
        kind = str(self.kind).strip().lower()
        if kind not in MASK_KINDS:
            raise InputError(f"mask kind: expected one of {MASK_KINDS}, got {self.kind!r}")
        object.__setattr__(self, "kind", kind)
        regions = tuple(str(r).strip().lower() for r in self.regions)
        if not regions:
            raise InputError("mask regions: expected at least one parsing region")
        region_labels(regions)    # validates names
        object.__setattr__(self, "regions", regions)
        if not math.isfinite(float(self.grow)) or abs(float(self.grow)) > 0.5:
            raise InputError(f"mask grow: expected a fraction of the crop size in [-0.5, 0.5], got {self.grow!r}")
        if self.feather is not None and (not math.isfinite(float(self.feather)) or not 0 <= float(self.feather) <= 1):
            raise InputError(f"mask feather: expected a fraction of the crop size in [0, 1], got {self.feather!r}")

    @property
    def feather_fraction(self) -> float:
        return DEFAULT_FEATHER[self.kind] if self.feather is None else float(self.feather)

    @classmethod
    def parse(cls, text: str) -> "MaskSpec":
        """``"box"``, ``"ellipse:grow=0.02"``, ``"parsing:skin,nose,lips,feather=0.05"``, ``"box:shrink=0.05"``.

        After ``kind:``, comma-separated items: ``grow=F``, ``shrink=F`` (= grow=-F), ``feather=F``; bare names are
        parsing regions (only for kind parsing).
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
            if kw["kind"] != "parsing":
                raise InputError(f"mask spec {text!r}: regions are only valid for kind 'parsing'")
            kw["regions"] = tuple(regions)
        return cls(**kw)

    def __str__(self) -> str:
        items = list(self.regions) if self.kind == "parsing" and self.regions != OFFICIAL_REGIONS else []
        if self.grow:
            items.append(f"grow={self.grow:g}")
        if self.feather is not None:
            items.append(f"feather={self.feather:g}")
        return self.kind + (":" + ",".join(items) if items else "")


class SoftErosion(nn.Module):
    """The official SoftErosion (kernel 17, threshold 0.9, 7 iterations), batched: [F,1,H,W] -> ([F,1,H,W], bool).

    kernel w = max(d) - d (d = distance to the centre), normalised to sum 1; (iterations - 1) times
    m = min(m, conv(m)) with zero padding, then m = conv(m); pixels >= threshold become 1, the others are divided
    by their own maximum (per face; the official runs one face at a time).
    """

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


def _gauss_cdf(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def _edge(signed_dist: torch.Tensor, sigma: float) -> torch.Tensor:
    """1 inside (signed_dist < 0), 0 outside, Gaussian edge of std ``sigma`` pixels (hard step when 0)."""
    if sigma <= 0:
        return (signed_dist <= 0).float()
    return _gauss_cdf(-signed_dist / sigma)


def grow_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate (pixels > 0) or erode (< 0) [F,1,H,W] by a square of radius |pixels| (separable max-pool).

    Erosion does not eat in from the crop border (padding is neutral), like cv2.erode's default border.
    """
    r = int(abs(pixels))
    if r == 0:
        return mask
    k = 2 * r + 1
    x = mask if pixels > 0 else -mask
    x = F.max_pool2d(x, (k, 1), stride=1, padding=(r, 0))
    x = F.max_pool2d(x, (1, k), stride=1, padding=(0, r))
    return x if pixels > 0 else -x


def feather_mask(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur [F,1,H,W] with std ``sigma`` pixels (kornia, separable, replicate border)."""
    if sigma <= 0:
        return mask
    k = 2 * int(math.ceil(3.0 * sigma)) + 1
    k = min(k, 2 * ((min(mask.shape[-2:]) - 1) // 2) + 1)
    if k < 3:
        return mask
    return kornia.filters.gaussian_blur2d(mask, (k, k), (sigma, sigma), border_type="replicate")


def crop_border_mask(crop_size: int, erode: float, feather: float, device=None) -> torch.Tensor:
    """[1,1,S,S] seam mask of the crop square: 0 within ``erode*S`` of the crop edge, then a smooth (smoothstep)
    ramp of width ``feather*S`` to 1. Product of x and y ramps, so corners are smooth. Exactly 0 at the crop edge
    whenever erode > 0 or feather > 0 (so the black border of the warp never shows)."""
    s = int(crop_size)
    i = torch.arange(s, device=device, dtype=torch.float32)
    d = torch.minimum(i + 0.5, s - 0.5 - i)                     # distance of the pixel centre to the crop edge
    e, f = max(float(erode), 0.0) * s, max(float(feather), 0.0) * s
    if f > 0:
        t = ((d - e) / f).clamp(0, 1)
        r = t * t * (3 - 2 * t)
    else:
        r = (d > e).float() if e > 0 else torch.ones_like(d)
    return (r[:, None] * r[None, :])[None, None]


def _ellipse_params(points: torch.Tensor):
    """Ellipse (centre [F,2], unit x axis [F,2], semi-axes a [F], b [F]) from 5 crop-space landmarks."""
    eye_l, eye_r, mouth_l, mouth_r = points[:, 0], points[:, 1], points[:, 3], points[:, 4]
    eyes, mouth = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    centre = (eyes + mouth) / 2
    ex = eye_r - eye_l
    e = ex.norm(dim=-1).clamp_min(1e-6)
    ux = ex / e[:, None]
    h = ((mouth - eyes) * torch.stack([-ux[:, 1], ux[:, 0]], -1)).sum(-1).abs().clamp_min(1e-6)
    a = 0.5 * (e + h)            # cheek to cheek
    b = 1.1 * h                  # forehead to chin
    return centre, ux, a, b


def ellipse_masks(points: torch.Tensor, crop_size: int, grow: float = 0.0, feather: float = 0.0) -> torch.Tensor:
    """[F,1,S,S] analytic face ellipses from crop-space landmarks [F,5,2]; grow/feather fractions of S."""
    s = int(crop_size)
    pts = points.float()
    c, ux, a, b = _ellipse_params(pts)
    a = (a + grow * s).clamp_min(1.0)
    b = (b + grow * s).clamp_min(1.0)
    coords = torch.arange(s, device=pts.device, dtype=torch.float32)
    dx = coords[None, None, :] - c[:, 0, None, None]
    dy = coords[None, :, None] - c[:, 1, None, None]
    xp = dx * ux[:, 0, None, None] + dy * ux[:, 1, None, None]
    yp = -dx * ux[:, 1, None, None] + dy * ux[:, 0, None, None]
    rho = torch.sqrt((xp / a[:, None, None]) ** 2 + (yp / b[:, None, None]) ** 2).clamp_min(1e-6)
    r = torch.sqrt(xp ** 2 + yp ** 2)
    signed = r * (1.0 - 1.0 / rho)                 # radial distance to the ellipse, < 0 inside
    return _edge(signed, feather * s / 4.0)[:, None]


def box_masks(n: int, crop_size: int, grow: float = 0.0, feather: float = 0.0, device=None) -> torch.Tensor:
    """[F,1,S,S] box masks: the whole crop, shrunk by -grow*S from the edges, Gaussian edge of width feather*S."""
    s = int(crop_size)
    i = torch.arange(s, device=device, dtype=torch.float32)
    d = -torch.minimum(i + 0.5, s - 0.5 - i) - grow * s         # signed distance to the (moved) box edge
    r = _edge(d, feather * s / 4.0)
    return (r[:, None] * r[None, :])[None, None].expand(n, 1, s, s).contiguous()


def build_crop_masks(aligned: AlignedFaces, spec: MaskSpec | str | None = None, parser: nn.Module | None = None, *,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """Crop-space masks [F,1,S,S] float32 in [0,1] on the crops' device.

    ``spec`` None -> box. "parsing" needs ``parser`` (BiSeNet from ``load_parser``) or precomputed ``labels``
    [F,512,512] from ``parse_faces``. "ellipse" uses ``aligned.points`` (the template points if absent).
    """
    if spec is None:
        spec = MaskSpec()
    elif isinstance(spec, str):
        spec = MaskSpec.parse(spec)
    s, f, dev = aligned.crop_size, len(aligned), aligned.crops.device
    g, fe = float(spec.grow), spec.feather_fraction
    if spec.kind == "box":
        return box_masks(f, s, g, fe, dev)
    if spec.kind == "ellipse":
        pts = aligned.points
        if pts is None:
            tpl = templates(s, aligned.mode, dev)
            pts = tpl[len(tpl) // 2].expand(f, 5, 2)        # FFHQ, or the frontal pose template
        return ellipse_masks(pts.to(dev), s, g, fe)
    # parsing
    if labels is None:
        if parser is None:
            raise InputError("mask kind 'parsing' needs a face parser (load_parser('79999_iter.pth')) or labels")
        labels = parse_faces(parser, aligned.crops)
    if labels.ndim != 3 or labels.shape[0] != f:
        raise InputError(f"parsing labels: expected [{f},H,W], got {tuple(labels.shape)}")
    m = labels_to_mask(labels.to(dev), region_labels(spec.regions))
    if m.shape[-1] != s or m.shape[-2] != s:
        m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False)
    m = grow_mask(m, int(round(g * s)))
    return feather_mask(m, fe * s / 4.0).clamp(0, 1)


__all__ = ["MaskSpec", "SoftErosion", "soft_erosion", "official_parsing_mask", "build_crop_masks", "box_masks",
           "ellipse_masks", "crop_border_mask", "grow_mask", "feather_mask", "MASK_KINDS", "REGIONS",
           "OFFICIAL_REGIONS", "PARSER_SIZE"]
