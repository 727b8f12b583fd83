"""Preview image: detected faces drawn with boxes, 5 points, their number and track id (pure PIL, no OpenCV)."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..checks import check_images
from ..faces import DetectedFaces
from .select import order_faces

SELECTED = (40, 220, 60)      # box colour of faces that will be swapped
UNSELECTED = (230, 60, 50)    # box colour of faces left alone
# ArcFace order: image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner
POINT_COLOURS = ((255, 60, 60), (60, 120, 255), (255, 230, 40), (255, 60, 255), (40, 230, 230))


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def face_label(rank: int, score: float, *, track: int | None = None, filled: bool = False,
               show_score: bool = True) -> str:
    """The text drawn over a face: its number in the frame, ``#track`` when tracked (track >= 0), then its score,
    or "filled" for a face filled in a detection gap (``DetectedFaces.interpolated``), e.g. "1 #3 0.97"."""
    text = f"{rank}"
    if track is not None and track >= 0:
        text += f" #{track}"
    if filled:
        text += " filled"
    elif show_score:
        text += f" {score:.2f}"
    return text


def draw_faces(frames: torch.Tensor, faces: DetectedFaces, *, order: str = "left-right",
               selected: torch.Tensor | None = None, show_score: bool = True,
               line_width: int | None = None) -> torch.Tensor:
    """[N,3,H,W] RGB [0,1] frames -> copies with every face's box, 5 points and number drawn.

    Numbers are the rank of each face in its frame in ``order`` (`order_faces`), the numbers "index:N" selects;
    tracked faces (``faces.track_id``) add their track id ("#3", the number "track:3" maps), faces filled in a
    detection gap (``faces.interpolated``) say "filled" instead of a score (see `face_label`).
    selected: optional [F] bool, faces to be swapped are drawn green, the others red (all green if None).
    Returns [N,3,H,W] float32 RGB [0,1] on the frames' device.
    """
    check_images(frames, "frames", allow_empty=True)
    if faces.num_frames != frames.shape[0]:
        raise ValueError(f"draw_faces: {faces.num_frames} frames of faces for {frames.shape[0]} frames")
    n, _, h, w = frames.shape
    rank = order_faces(faces, order).cpu().tolist()
    sel = [True] * len(faces) if selected is None else selected.reshape(-1).bool().cpu().tolist()
    boxes, points = faces.boxes.cpu().tolist(), faces.points.cpu().tolist()
    scores, fidx = faces.scores.cpu().tolist(), faces.frame_index.cpu().tolist()
    tracks = [None] * len(faces) if faces.track_id is None else faces.track_id.cpu().tolist()
    filled = [False] * len(faces) if faces.interpolated is None else faces.interpolated.cpu().tolist()
    lw = line_width or max(1, round(max(h, w) / 400))
    r = max(1.5, lw * 1.5)
    font = _font(max(10, round(max(h, w) / 50)))
    # draw on transparent overlays, then composite: pixels not drawn on stay bit-identical, frames stay on device
    pil = [Image.new("RGBA", (w, h), (0, 0, 0, 0)) for _ in range(n)]
    draws = [ImageDraw.Draw(p) for p in pil]
    for k in range(len(faces)):  # preview only: drawing is per primitive in PIL anyway
        d = draws[fidx[k]]
        colour = SELECTED if sel[k] else UNSELECTED
        x1, y1, x2, y2 = boxes[k]
        d.rectangle([x1, y1, x2, y2], outline=colour + (255,), width=lw)
        for (px, py), c in zip(points[k], POINT_COLOURS):
            d.ellipse([px - r, py - r, px + r, py + r], fill=c + (255,))
        label = face_label(rank[k], scores[k], track=tracks[k], filled=filled[k], show_score=show_score)
        tb = d.textbbox((0, 0), label, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        tx, ty = x1, y1 - th - 2 * lw - 2
        if ty < 0:
            ty = y1 + lw
        d.rectangle([tx, ty, tx + tw + 2 * lw + 2, ty + th + 2 * lw + 2], fill=colour + (255,))
        d.text((tx + lw + 1 - tb[0], ty + lw + 1 - tb[1]), label, fill=(0, 0, 0, 255), font=font)
    layer = torch.from_numpy(np.stack([np.asarray(p) for p in pil])).to(frames.device).permute(0, 3, 1, 2)
    alpha = layer[:, 3:].float() / 255.0
    out = frames.detach().float()
    return torch.where(alpha > 0, out * (1 - alpha) + layer[:, :3].float() / 255.0 * alpha, out)
