"""Detected faces of a batch of frames, flattened over frames so every face operation is one batched op."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from .errors import InputError


@dataclass
class DetectedFaces:
    """Faces found in a batch of N frames, flattened over frames (F faces in total).

    boxes:       [F,4] float32, x1, y1, x2, y2 in frame pixels.
    points:      [F,5,2] float32, ArcFace order: image-left eye, image-right eye, nose,
                 image-left mouth corner, image-right mouth corner; (x, y) pixel centres.
    scores:      [F] float32 detector confidence in [0,1].
    frame_index: [F] int64, the frame each face belongs to, sorted ascending.
    frame_sizes: (H, W) of each of the N frames.
    track_id:    [F] int64 track number of each face across frames (``tracking.FaceTracker`` /
                 ``tracking.LandmarkSmoother``; -1 = not tracked), or None when the faces were not tracked.
    interpolated: [F] bool, True for a face filled in a detection gap (``tracking.FaceTracker``: box and points
                 interpolated between the frames where its track was detected), or None (all detected).
    """

    boxes: torch.Tensor
    points: torch.Tensor
    scores: torch.Tensor
    frame_index: torch.Tensor
    frame_sizes: list[tuple[int, int]]
    track_id: torch.Tensor | None = None
    interpolated: torch.Tensor | None = None

    def __post_init__(self) -> None:
        f = self.boxes.shape[0]
        if self.boxes.shape != (f, 4) or self.points.shape != (f, 5, 2) or self.scores.shape != (f,) \
                or self.frame_index.shape != (f,):
            raise ValueError(
                "DetectedFaces: expected boxes [F,4], points [F,5,2], scores [F], frame_index [F]; got "
                f"{tuple(self.boxes.shape)}, {tuple(self.points.shape)}, {tuple(self.scores.shape)}, "
                f"{tuple(self.frame_index.shape)}")
        if self.track_id is not None and self.track_id.shape != (f,):
            raise ValueError(f"DetectedFaces: expected track_id [F={f}], got {tuple(self.track_id.shape)}")
        if self.interpolated is not None and (self.interpolated.shape != (f,)
                                              or self.interpolated.dtype != torch.bool):
            raise ValueError(f"DetectedFaces: expected interpolated [F={f}] bool, got "
                             f"{tuple(self.interpolated.shape)} {self.interpolated.dtype}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def num_frames(self) -> int:
        return len(self.frame_sizes)

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def select(self, keep: torch.Tensor) -> DetectedFaces:
        """Faces kept by a bool mask [F] or int64 indices (kept in ascending frame order)."""
        if keep.dtype == torch.bool:
            keep = keep.nonzero().flatten()
        keep = keep.to(self.boxes.device)
        keep = keep[torch.argsort(self.frame_index[keep], stable=True)]
        return DetectedFaces(self.boxes[keep], self.points[keep], self.scores[keep], self.frame_index[keep],
                             list(self.frame_sizes), None if self.track_id is None else self.track_id[keep],
                             None if self.interpolated is None else self.interpolated[keep])

    def to(self, device: torch.device | str) -> DetectedFaces:
        return DetectedFaces(self.boxes.to(device), self.points.to(device), self.scores.to(device),
                             self.frame_index.to(device), list(self.frame_sizes),
                             None if self.track_id is None else self.track_id.to(device),
                             None if self.interpolated is None else self.interpolated.to(device))

    def cpu(self) -> DetectedFaces:
        """These faces on the host, fetched with ONE device -> host copy (the fields packed into a float64 table),
        e.g. for host-side bookkeeping such as ``tracking.FaceTracker``. Values and dtypes are kept exactly."""
        f = len(self)
        extra = [t for t in (self.track_id, self.interpolated) if t is not None]
        cols = [self.boxes, self.points.reshape(f, 10), self.scores[:, None], self.frame_index[:, None]] + \
            [t[:, None] for t in extra]
        packed = torch.cat([c.to(torch.float64) for c in cols], 1).cpu()   # ONE copy (ints exact in float64)
        boxes, points, scores, index = packed[:, :4], packed[:, 4:14], packed[:, 14], packed[:, 15]
        rest = iter(packed[:, 16:].unbind(1))
        track = None if self.track_id is None else next(rest).to(self.track_id.dtype)
        filled = None if self.interpolated is None else next(rest).to(torch.bool)
        return DetectedFaces(boxes.to(self.boxes.dtype), points.reshape(f, 5, 2).to(self.points.dtype),
                             scores.to(self.scores.dtype), index.to(self.frame_index.dtype), list(self.frame_sizes),
                             track, filled)

    def check_matches(self, frames: torch.Tensor, what: str = "faces") -> None:
        """InputError naming ``what`` unless these faces were detected on ``frames`` [N,3,H,W] (count and size)."""
        n, size = frames.shape[0], tuple(frames.shape[-2:])
        if self.num_frames != n or any(tuple(s) != size for s in self.frame_sizes):
            raise InputError(f"{what}: expected the DetectedFaces of these {n} frame(s) of size {size}, got faces "
                             f"of {self.num_frames} frame(s) of size {self.frame_sizes[:1]}; detect faces on the "
                             "same frames")
        self.check_values(what)

    def check_values(self, what: str = "faces") -> None:
        """InputError naming ``what`` unless boxes, points and scores are finite and every frame_index names one
        of the frames (one device sync)."""
        if not len(self):
            return
        ok_values = torch.isfinite(self.boxes).all() & torch.isfinite(self.points).all() & \
            torch.isfinite(self.scores).all()
        ok_index = (self.frame_index >= 0).all() & (self.frame_index < self.num_frames).all()
        ok = torch.stack([ok_values, ok_index]).tolist()   # one device, both from the fields of these faces
        if not ok[0]:
            raise InputError(f"{what}: boxes, points or scores contain NaN/inf values; expected finite pixel "
                             f"coordinates (detect the faces again)")
        if not ok[1]:
            raise InputError(f"{what}: frame_index values outside 0..{self.num_frames - 1}")

    def replace(self, **fields: Any) -> DetectedFaces:
        """A copy with some fields replaced (e.g. ``points=`` smoothed landmarks, ``track_id=``)."""
        return dataclasses.replace(self, **fields)

    def frames(self, start: int, stop: int) -> DetectedFaces:
        """The faces of frames ``start..stop-1`` as a DetectedFaces of those frames (frame indices from 0)."""
        if not 0 <= start <= stop <= self.num_frames:
            raise ValueError(f"DetectedFaces.frames: range {start}..{stop} outside the {self.num_frames} frames")
        sel = self.select((self.frame_index >= start) & (self.frame_index < stop))
        return sel.replace(frame_index=sel.frame_index - start, frame_sizes=list(self.frame_sizes[start:stop]))

    def for_frame(self, i: int) -> DetectedFaces:
        """The faces of frame i, as a one-frame DetectedFaces (frame_index all 0)."""
        return self.frames(i, i + 1)

    def counts(self) -> list[int]:
        """Number of faces in each frame."""
        return faces_per_frame(self.frame_index, self.num_frames).tolist()

    def areas(self) -> torch.Tensor:
        """[F] box areas in pixels²."""
        wh = (self.boxes[:, 2:] - self.boxes[:, :2]).clamp(min=0)
        return wh[:, 0] * wh[:, 1]

    def to_json(self) -> list[list[dict]]:
        """Per frame, a list of {"index", "box", "points", "score"} with plain floats (index = position in frame),
        plus "track" (int track id) when the faces are tracked and "filled" (bool: filled in a detection gap) when
        ``interpolated`` is set."""
        out: list[list[dict]] = [[] for _ in self.frame_sizes]
        boxes, points, scores = self.boxes.cpu().tolist(), self.points.cpu().tolist(), self.scores.cpu().tolist()
        tracks = None if self.track_id is None else self.track_id.cpu().tolist()
        filled = None if self.interpolated is None else self.interpolated.cpu().tolist()
        for f, fi in enumerate(self.frame_index.cpu().tolist()):
            item: dict[str, Any] = {"index": len(out[fi]), "box": [round(v, 2) for v in boxes[f]],
                                    "points": [[round(x, 2), round(y, 2)] for x, y in points[f]],
                                    "score": round(scores[f], 4)}
            if tracks is not None:
                item["track"] = int(tracks[f])
            if filled is not None:
                item["filled"] = bool(filled[f])
            out[fi].append(item)
        return out

    @staticmethod
    def empty(frame_sizes: list[tuple[int, int]], device: torch.device | str | None = None) -> DetectedFaces:
        z = torch.zeros
        return DetectedFaces(z(0, 4, device=device), z(0, 5, 2, device=device), z(0, device=device),
                             z(0, dtype=torch.int64, device=device), list(frame_sizes))

    @staticmethod
    def concat(items: list[DetectedFaces]) -> DetectedFaces:
        """Frames of each item appended in order (frame indices are offset)."""
        if not items:
            raise ValueError("DetectedFaces.concat: expected at least one item")
        offset, idx = 0, []
        for it in items:
            idx.append(it.frame_index + offset)
            offset += it.num_frames
        tracks = [i.track_id for i in items if i.track_id is not None]
        track_id = torch.cat(tracks) if len(tracks) == len(items) else None
        interpolated = None
        if any(i.interpolated is not None for i in items):  # an item without the flag has only detected faces
            interpolated = torch.cat([i.interpolated if i.interpolated is not None
                                      else torch.zeros(len(i), dtype=torch.bool, device=i.device) for i in items])
        return DetectedFaces(torch.cat([i.boxes for i in items]), torch.cat([i.points for i in items]),
                             torch.cat([i.scores for i in items]), torch.cat(idx),
                             [s for i in items for s in i.frame_sizes], track_id, interpolated)


def faces_per_frame(frame_index: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[num_frames] int64 faces per frame from frame_index [F], on its device (a scatter: unlike bincount, no
    device -> host sync)."""
    return torch.zeros(num_frames, dtype=torch.int64, device=frame_index.device).scatter_add_(
        0, frame_index.long(), torch.ones_like(frame_index, dtype=torch.int64))
