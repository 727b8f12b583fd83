"""How good a source photo's face is for building an identity: detection score, face size, sharpness, frontalness.

Each part is a number in [0, 1] (1 = good), computed batched on the crops' device:

- detection: the detector's score.
- size: ``sqrt(box area) / (crop_size / 2)``, capped at 1: 1 when the face has at least the resolution the aligned
  crop needs (a 224 crop holds the face at about 112 px), less when the crop is an upscale.
- sharpness: variance of the Laplacian (3x3, ``[[0,1,0],[1,-4,1],[0,1,0]]``) of the grey aligned crop on 0..255,
  taken on the central 60 % of the crop resampled to 112x112 (so the figure does not depend on the crop size and
  the black border of a face near the image edge does not count); mapped by ``v / (v + SHARPNESS_HALF)``.
  ``SHARPNESS_HALF = 60``: the astronaut photo's 224 crop gives about 540 (0.90), after a Gaussian blur of sigma
  2 px about 18 (0.23).
- frontal: from the 5 points in the eyes' frame (roll removed): the nose's sideways offset from the eyes' midpoint
  over the inter-ocular distance (yaw; 0 frontal, ~0.8 for insightface's half-profile template) and the nose's
  height between eyes and mouth away from the ArcFace template's 0.49 (pitch):
  ``1 - |yaw| / YAW_ZERO - |pitch - 0.49| / PITCH_ZERO``, clipped to [0, 1].

quality = detection x size x sharpness x frontal (a weak part pulls the photo down). ``combine="quality"`` weights
photos by quality (+ ``WEIGHT_FLOOR`` so a set of poor photos still combines).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FaceQuality", "face_quality", "quality_records", "quality_text"]

SHARPNESS_HALF = 60.0   # Laplacian variance (0..255 grey, 112 px) that scores 0.5
YAW_ZERO = 1.0          # |nose offset| / inter-ocular distance that scores 0 (alone)
PITCH_ZERO = 0.5        # |nose height - 0.49| (fraction of eyes-mouth) that scores 0 (alone)
TEMPLATE_NOSE_HEIGHT = 0.49  # ArcFace template: (71.74 - 51.60) / (92.28 - 51.60)
WEIGHT_FLOOR = 1e-3
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


@dataclass
class FaceQuality:
    """Per-face quality parts, each ``[F]`` float32 in [0,1] (sharpness_raw: the Laplacian variance, size_px: the
    box's sqrt-area in pixels)."""

    detection: Tensor
    size: Tensor
    size_px: Tensor
    sharpness: Tensor
    sharpness_raw: Tensor
    frontal: Tensor

    @property
    def quality(self) -> Tensor:
        """[F] the product of the four parts, in [0,1]."""
        return self.detection * self.size * self.sharpness * self.frontal

    def weights(self) -> Tensor:
        """[F] combination weights: quality + WEIGHT_FLOOR, normalised to sum 1."""
        w = self.quality + WEIGHT_FLOOR
        return w / w.sum()

    def select(self, order: Tensor) -> FaceQuality:
        return FaceQuality(*(getattr(self, k)[order] for k in
                             ("detection", "size", "size_px", "sharpness", "sharpness_raw", "frontal")))

    @staticmethod
    def cat(items: list[FaceQuality]) -> FaceQuality:
        return FaceQuality(*(torch.cat([getattr(i, k) for i in items]) for k in
                             ("detection", "size", "size_px", "sharpness", "sharpness_raw", "frontal")))


def laplacian_variance(crops: Tensor) -> Tensor:
    """[F,3,S,S] RGB [0,1] aligned crops -> [F] variance of the Laplacian of the grey central 60 % at 112 px
    (values on 0..255)."""
    if crops.shape[0] == 0:
        return crops.new_zeros(0)
    s = crops.shape[-1]
    a, b = round(0.2 * s), s - round(0.2 * s)
    centre = crops[..., a:b, a:b].float()
    grey = (0.299 * centre[:, 0:1] + 0.587 * centre[:, 1:2] + 0.114 * centre[:, 2:3]) * 255.0
    side = round(112 * 0.6)
    mode = "area" if grey.shape[-1] >= side else "bilinear"
    grey = F.interpolate(grey, size=(side, side), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    kernel = torch.tensor(_LAPLACIAN, dtype=grey.dtype, device=grey.device).view(1, 1, 3, 3)
    lap = F.conv2d(grey, kernel)
    return lap.flatten(1).var(1, unbiased=False)


def frontalness(points: Tensor) -> Tensor:
    """[F,5,2] landmarks (ArcFace order, any pixel frame) -> [F] in [0,1] (1 = looking straight at the camera)."""
    p = points.float()
    eye_l, eye_r, nose, mouth_l, mouth_r = p.unbind(1)
    across = eye_r - eye_l
    iod = across.norm(dim=1).clamp_min(1e-6)
    u = across / iod[:, None]
    v = torch.stack([-u[:, 1], u[:, 0]], 1)                                    # downwards in the face
    eye_mid, mouth_mid = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    yaw = ((nose - eye_mid) * u).sum(1) / iod
    drop = ((mouth_mid - eye_mid) * v).sum(1)
    height = ((nose - eye_mid) * v).sum(1) / drop.abs().clamp_min(1e-6)
    score = 1.0 - yaw.abs() / YAW_ZERO - (height - TEMPLATE_NOSE_HEIGHT).abs() / PITCH_ZERO
    return score.clamp(0.0, 1.0)


def face_quality(crops: Tensor, points: Tensor, boxes: Tensor, scores: Tensor, crop_size: int) -> FaceQuality:
    """Quality parts of ``F`` source faces: crops ``[F,3,S,S]`` RGB [0,1] (aligned), points ``[F,5,2]`` and boxes
    ``[F,4]`` (x1,y1,x2,y2) in frame pixels, scores ``[F]`` detection scores in [0,1]; crop_size S."""
    box = boxes.float()
    side = ((box[:, 2] - box[:, 0]).clamp_min(0) * (box[:, 3] - box[:, 1]).clamp_min(0)).sqrt()
    raw = laplacian_variance(crops)
    return FaceQuality(detection=scores.float().clamp(0, 1), size=(side / (crop_size / 2)).clamp(0, 1),
                       size_px=side, sharpness=raw / (raw + SHARPNESS_HALF), sharpness_raw=raw,
                       frontal=frontalness(points))


def quality_records(q: FaceQuality, image_index: Tensor, face_number: Tensor, weights: Tensor | None
                    ) -> list[dict[str, Any]]:
    """One JSON-ready record per face: image, face, quality and its parts (3 decimals), weight (or None). One
    bulk copy to the host."""
    cols = torch.stack([q.quality, q.detection, q.size, q.size_px, q.sharpness, q.sharpness_raw, q.frontal,
                        weights.float() if weights is not None else torch.full_like(q.quality, -1.0),
                        image_index.float(), face_number.float()], 1).cpu().tolist()
    return [{"image": int(c[8]), "face": int(c[9]), "quality": round(c[0], 3), "detection": round(c[1], 3),
             "size": round(c[2], 3), "size_px": round(c[3], 1), "sharpness": round(c[4], 3),
             "laplacian_var": round(c[5], 1), "frontal": round(c[6], 3),
             "weight": None if c[7] < 0 else round(c[7], 4)} for c in cols]


def quality_text(records: list[dict[str, Any]] | str, names: list[str] | None = None) -> str:
    """Lines for a person, one per source face in photo order, and a hint naming a photo of less than half the
    best one's quality:
    ``photo 2 (b.jpg): quality 0.31 (detection 0.92, size 1.00, sharpness 0.34, frontal 0.99), weight 0.12``.
    records: :func:`quality_records` or its JSON text (an identity's ``meta["quality"]``)."""
    recs = json.loads(records) if isinstance(records, str) else records
    lines = []
    for r in recs:
        name = f" ({names[r['image']]})" if names and 0 <= r["image"] < len(names) else ""
        face = f" face {r['face']}" if r.get("face") else ""
        line = (f"photo {r['image']}{name}{face}: quality {r['quality']:.2f} (detection {r['detection']:.2f}, "
                f"size {r['size']:.2f}, sharpness {r['sharpness']:.2f}, frontal {r['frontal']:.2f})")
        if r.get("weight") is not None:
            line += f", weight {r['weight']:.2f}"
        lines.append(line)
    if len(recs) > 1:
        worst = min(recs, key=lambda r: r["quality"])
        best = max(recs, key=lambda r: r["quality"])
        if worst["quality"] < 0.5 * best["quality"]:
            lines.append(f"photo {worst['image']} has less than half the quality of the best one: consider "
                         "dropping it")
    return "\n".join(lines)
