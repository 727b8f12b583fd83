"""Face masks refined by Segment Anything: what SAM sees as the face, so a hand or a microphone in front is left out.

``sam_face_masks`` runs SAM on the FRAMES (not on the crops): the image embedding of each frame that has a face is
computed once and shared by all its faces; then every face's prompt -- its box (the detector's, or one around the
face ellipse of its 5 landmarks) and positive points on the eyes and the nose -- is decoded in one batch against
its frame's embedding. The low-resolution logits are sampled straight into crop space through the face's alignment
(no full-size frame mask), and thresholded at 0 as SAM does.

The mouth corners are deliberately not used as positive points: the mouth is what a hand, a cup or a microphone
covers most often, and a positive point on the occluder would pull it into the face.

Kinds: ``sam`` = face ellipse x SAM face (no parser needed), ``sam_parsing`` = occlusion-aware parsing regions x
SAM face; both feathered inward (occluders keep weight 0).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..align import invert_affine, sample_grid, templates, transform_points
from ..checks import check_images
from ..errors import InputError
from .base import CropMasker
from .edges import grow_mask
from .ellipse import _ellipse_params, ellipse_masks
from .occlusion import crop_labels, inward_feather, occlusion_masks

if TYPE_CHECKING:  # pragma: no cover
    from ..align import AlignedFaces
    from ..networks.sam import SamModel
    from .spec import MaskSpec

#: which of the 5 landmarks are positive SAM points: the eyes and the nose (not the mouth corners, see above)
PROMPT_POINTS = (0, 1, 2)
#: the landmark box is the face ellipse's bounding box scaled by this
BOX_MARGIN = 1.15


def _crop_points(aligned: AlignedFaces) -> torch.Tensor:
    """[F,5,2] landmarks in crop px (the template's frontal points when the crops do not carry them)."""
    pts = aligned.points
    if pts is None:
        tpl = templates(aligned.crop_size, aligned.mode, aligned.crops.device)
        pts = tpl[len(tpl) // 2].expand(len(aligned), 5, 2)
    return pts.to(aligned.crops.device, torch.float32)


def landmark_boxes(aligned: AlignedFaces) -> torch.Tensor:
    """[F,4] x1,y1,x2,y2 frame px: the box around each face's ellipse (from its 5 landmarks, ``BOX_MARGIN``
    larger), mapped back into its frame and clipped to it."""
    pts = _crop_points(aligned)
    c, ux, a, b = _ellipse_params(pts)
    uy = torch.stack([-ux[:, 1], ux[:, 0]], -1)
    sa, sb = (BOX_MARGIN * a)[:, None], (BOX_MARGIN * b)[:, None]
    corners = torch.stack([c + sa * ux + sb * uy, c + sa * ux - sb * uy, c - sa * ux + sb * uy,
                           c - sa * ux - sb * uy], 1)                                          # [F,4,2] crop px
    inv = invert_affine(aligned.matrices.to(torch.float32))
    frame_pts = transform_points(inv, corners)
    lo, hi = frame_pts.amin(1), frame_pts.amax(1)
    sizes = torch.tensor(aligned.frame_sizes, dtype=torch.float32, device=lo.device)[aligned.frame_index]
    limit = torch.stack([sizes[:, 1], sizes[:, 0]], -1) - 1                                   # (W-1, H-1)
    lo = torch.minimum(lo.clamp_min(0), limit)
    hi = torch.minimum(hi.clamp_min(0), limit)
    return torch.cat([lo, hi], -1)


def _check_inputs(aligned: AlignedFaces, frames: Any, sam: Any, boxes: Any, kind: str) -> None:
    from ..networks.sam import SamModel

    if sam is None:
        raise InputError(f"mask kind '{kind}' needs a Segment Anything model: load one with load_sam("
                         f"'sam_vit_b_01ec64.pth') (ComfyUI: SimSwap Load SAM, from models/sams) and pass it as sam")
    if not isinstance(sam, SamModel):
        raise InputError(f"sam: expected a Segment Anything model (load_sam), got {type(sam).__name__}")
    if frames is None:
        raise InputError(f"mask kind '{kind}' needs the frames the faces were aligned from (frames=[N,3,H,W])")
    check_images(frames, f"mask kind '{kind}' frames")
    n, _, h, w = frames.shape
    if len(aligned.frame_sizes) != n or any(tuple(sz) != (h, w) for sz in aligned.frame_sizes):
        raise InputError(f"mask kind '{kind}' frames: expected the {len(aligned.frame_sizes)} frames the faces were "
                         f"aligned from (sizes {sorted(set(map(tuple, aligned.frame_sizes)))}), got "
                         f"{n} frames of {h}x{w}")
    if boxes is not None and (not isinstance(boxes, torch.Tensor) or tuple(boxes.shape) != (len(aligned), 4)):
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise InputError(f"mask kind '{kind}' boxes: expected one x1,y1,x2,y2 box per face [{len(aligned)},4], "
                         f"got {shape}")


def sam_face_masks(sam: SamModel, frames: torch.Tensor, aligned: AlignedFaces, *,
                   boxes: torch.Tensor | None = None, batch_size: int = 1, kind: str = "sam") -> torch.Tensor:
    """Binary crop-space SAM face masks [F,1,S,S] float32 (1 = SAM's face) on the crops' device.

    sam: ``SamModel`` (``load_sam``); frames [N,3,H,W] RGB [0,1], the frames ``aligned`` was cut from;
    boxes: [F,4] frame px face boxes (None: from the landmarks, ``landmark_boxes``). Each frame that has a face
    is embedded once (``batch_size`` frames per encoder call); all faces are decoded in one batch.
    """
    _check_inputs(aligned, frames, sam, boxes, kind)
    f, s, dev = len(aligned), aligned.crop_size, aligned.crops.device
    if f == 0:
        return torch.zeros(0, 1, s, s, device=dev)
    h, w = frames.shape[-2:]
    used, inverse = torch.unique(aligned.frame_index.to(frames.device), return_inverse=True)
    embeddings = sam.embed(frames[used], batch_size=batch_size)                     # [U,d,g,g] on SAM's device
    sdev = embeddings.device
    inverse = inverse.to(sdev)
    inv = invert_affine(aligned.matrices.to(torch.float32)).to(sdev)               # crop px -> frame px
    points = transform_points(inv, _crop_points(aligned).to(sdev))[:, list(PROMPT_POINTS)]
    box = (landmark_boxes(aligned) if boxes is None else boxes).to(sdev, torch.float32)
    logits, _iou = sam.decode(embeddings[inverse], (h, w), points=points,
                              labels=torch.ones(points.shape[:2], device=sdev), boxes=box)
    # crop px -> frame px -> low-res logit px (pixel centres: x_low = (x + 0.5) * nw / W / 4 - 0.5)
    nh, nw = sam.input_size(h, w)
    low = logits.shape[-1]
    sx, sy = nw / w * low / sam.config.img_size, nh / h * low / sam.config.img_size
    scale = torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]], device=sdev)
    to_low = scale[None, :, :2] @ inv
    to_low[:, :, 2] += scale[None, :, 2]
    grid = sample_grid(to_low, s, s, low, low)
    sampled = F.grid_sample(logits.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (sampled > 0).float().to(dev)


class SamMasker(CropMasker):
    """The face ellipse (soft edge) times SAM's face (feathered inward). Needs ``sam`` and ``frames``."""

    kind = "sam"
    order = 4
    default_feather = 0.04
    needs_sam = True
    inputs = ("frames", "sam", "boxes")

    def __call__(self, aligned: AlignedFaces, spec: MaskSpec, parser: nn.Module | None = None, *,
                 labels: torch.Tensor | None = None, frames: torch.Tensor | None = None,
                 sam: nn.Module | None = None, boxes: torch.Tensor | None = None) -> torch.Tensor:
        s = aligned.crop_size
        face = sam_face_masks(sam, frames, aligned, boxes=boxes, kind=self.kind)   # type: ignore[arg-type]
        if not len(aligned):
            return face
        grow, feather = float(spec.grow), spec.feather_fraction
        ellipse = ellipse_masks(_crop_points(aligned), s, grow, feather)
        face = inward_feather(grow_mask(face, int(round(grow * s))), feather * s / 4.0)
        return (ellipse * face).clamp(0, 1)


class SamParsingMasker(CropMasker):
    """Occlusion-aware parsing regions times SAM's face, feathered inward. Needs a parser (or labels), ``sam``
    and ``frames``."""

    kind = "sam_parsing"
    order = 5
    default_feather = 0.03
    needs_parser = True
    needs_sam = True
    inputs = ("frames", "sam", "boxes")

    def __call__(self, aligned: AlignedFaces, spec: MaskSpec, parser: nn.Module | None = None, *,
                 labels: torch.Tensor | None = None, frames: torch.Tensor | None = None,
                 sam: nn.Module | None = None, boxes: torch.Tensor | None = None) -> torch.Tensor:
        face = sam_face_masks(sam, frames, aligned, boxes=boxes, kind=self.kind)   # type: ignore[arg-type]
        if not len(aligned):
            return face
        labels = crop_labels(aligned, parser, labels, self.kind)
        return occlusion_masks(labels, spec.regions, aligned.crop_size, spec.grow, spec.feather_fraction,
                               limit=face)
