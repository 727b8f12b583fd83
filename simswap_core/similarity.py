"""How close swapped faces are to the source identity (and to the target's own faces): ArcFace cosine similarity.

The faces are found once (in the original target when it is given, else in the swapped result), aligned with the
same matrices in both images (a swapped face sits exactly where the original one was, so no matching is needed),
and encoded in ONE ArcFace batch. Cosine similarity of unit latents: 1 = the same direction, about 0 = unrelated.

Caveat: with the same ArcFace the generator was driven by, the score is not an independent judge of the swap
(the generator optimised exactly this network's similarity); treat it as a readout, not as a quality metric.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_images
from .errors import InputError
from .identity import Identity, identity_latent, identity_list

__all__ = ["FaceSimilarity", "face_similarity"]


@dataclass
class FaceSimilarity:
    """Per-face similarities of a batch (``F`` faces over ``N`` images, in detection order).

    to_source ``[F]``: cosine to the closest of the identities; identity_index ``[F]`` int64: which identity;
    to_original ``[F]`` or None: cosine to the original face at the same place; frame_index ``[F]`` int64;
    face_number ``[F]`` int64 (left to right, as the Detect Faces preview numbers them); num_images N."""

    to_source: Tensor
    identity_index: Tensor
    to_original: Tensor | None
    frame_index: Tensor
    face_number: Tensor
    num_images: int
    num_identities: int = 1

    def __len__(self) -> int:
        return int(self.to_source.shape[0])

    def mean(self) -> float:
        """Mean similarity to the source over all faces (NaN when no face was found)."""
        return float(self.to_source.mean()) if len(self) else float("nan")

    def report(self) -> str:
        """Multi-line text: one line per face, then the mean (or why there is none)."""
        if not len(self):
            return f"no face found in {self.num_images} image(s): nothing to compare"
        lines = []
        orig = self.to_original.tolist() if self.to_original is not None else None
        src, ids = self.to_source.tolist(), self.identity_index.tolist()
        for k, (fi, num) in enumerate(zip(self.frame_index.tolist(), self.face_number.tolist())):
            line = f"image {fi} face {num}: source {src[k]:.3f}"
            if self.num_identities > 1:
                line += f" (identity {ids[k]})"
            if orig is not None:
                line += f", original target {orig[k]:.3f}"
            lines.append(line)
        summary = f"mean similarity to the source: {self.mean():.3f} over {len(self)} face(s)"
        if orig is not None:
            summary += f"; to the original target faces: {float(self.to_original.mean()):.3f}"  # type: ignore[union-attr]
        return "\n".join([*lines, summary])


@torch.inference_mode()
def face_similarity(arcface: nn.Module, detector: object, images: Tensor,
                    identity: Identity | Sequence[Identity], *, originals: Tensor | None = None,
                    crop_size: int | None = None, align_mode: str | None = None,
                    device: torch.device | str | None = None) -> FaceSimilarity:
    """Cosine similarity between every face of ``images`` (swapped results, [N,3,H,W] RGB [0,1]) and
    ``identity`` (one, or a list: each face is scored against the closest), and with ``originals`` (the
    unswapped targets, [N,3,H,W] or [1,3,H,W] of the same size) also to the original face at the same place.

    crop_size / align_mode: how faces are aligned for ArcFace; None = what the identity recorded when it was
    extracted (meta ``crop_size``), else 224 (the official pose templates). Faces are detected in ``originals``
    when given (the swap may have changed what a detector finds), else in ``images``."""
    from .align import MAX_CROP_SIZE, align_faces
    from .checks import check_integer
    from .detection.select import order_faces

    ids = identity_list(identity, "identity")
    images = check_images(images, "images (the swapped result)")
    n, _, h, w = images.shape
    if originals is not None:
        originals = check_images(originals, "original_images (the target before the swap)")
        if originals.shape[-2:] != (h, w) or originals.shape[0] not in (1, n):
            raise InputError(f"original_images: expected {n} (or 1) image(s) of {w}x{h} like the swapped result, "
                             f"got {originals.shape[0]} of {originals.shape[-1]}x{originals.shape[-2]}")
    if crop_size is None:
        recorded = ids[0].meta.get("crop_size", "224")
        crop_size = int(recorded) if recorded.isdigit() else 224
    crop_size = check_integer(crop_size, "crop_size", low=1, high=MAX_CROP_SIZE)
    if device is None:
        p = next(arcface.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    dev = torch.device(device)
    frames = images.to(dev, torch.float32)
    refs = originals.to(dev, torch.float32).expand(n, -1, -1, -1) if originals is not None else None
    faces = detector.detect(refs if refs is not None else frames).to(dev)  # type: ignore[attr-defined]
    numbers = order_faces(faces, "left-right")
    aligned = align_faces(frames, faces, crop_size, align_mode)
    f = len(faces)
    crops = aligned.crops
    if refs is not None and f:
        crops = torch.cat([crops, align_faces(refs, faces, crop_size, align_mode).crops])
    lat = identity_latent(arcface, crops) if f else crops.new_zeros(0, 512)
    swapped_lat = lat[:f]
    id_lat = F.normalize(torch.stack([i.latent.detach().reshape(512).float() for i in ids]).to(dev), dim=1)
    cos = swapped_lat.float() @ id_lat.T                                           # [F,K]
    best, which = cos.max(1) if f else (cos.new_zeros(0), torch.zeros(0, dtype=torch.int64, device=dev))
    to_original = (swapped_lat * lat[f:]).sum(1).float() if refs is not None else None
    return FaceSimilarity(best, which, to_original, faces.frame_index, numbers, n, len(ids))
