"""Temporal smoothing of face landmarks over video frames, so the aligned crops (and the swapped faces) stop jittering.

Detectors place the 5 landmarks a pixel or two differently on every frame even when the face does not move; the
alignment follows, and the swapped face shakes. :class:`LandmarkSmoother` tracks faces from frame to frame (box
IoU, mutual best match) and runs a One-Euro filter (Casiez et al., CHI 2012) on each track's points: strong
smoothing while a face is still, little lag when it moves (the cutoff rises with the landmark speed, measured in
face sizes per frame, so the same settings work for small and large faces). It keeps its tracks between calls, so
a video processed in chunks is smoothed across chunk borders; call :meth:`LandmarkSmoother.reset` between clips.

Only ``points`` change (boxes, scores and order stay as detected). All tensor work is batched over the faces of
a frame and stays on their device; frames are filtered in order (a filter is sequential in time by nature).
"""
from __future__ import annotations

import math

import torch

from .checks import check_integer, check_number
from .errors import InputError
from .faces import DetectedFaces

__all__ = ["LandmarkSmoother", "box_iou"]


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``a [K,4]`` and ``b [T,4]`` (x1, y1, x2, y2) -> ``[K,T]``."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def _alpha(cutoff: torch.Tensor | float) -> torch.Tensor | float:
    """One-Euro smoothing factor for a cutoff in cycles per frame (sampling period 1 frame)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau)


class LandmarkSmoother:
    """One-Euro filter on the 5 landmarks of faces tracked across consecutive frames.

    strength: 0 (off: points returned as detected) .. 1 (heaviest); sets ``min_cutoff`` = 0.5 * 10^(-1.5 * strength)
    cycles per frame (0.5 -> 0.089: a still face's points move 36 % of the way to each new detection).
    beta: how fast the cutoff rises with speed (speed in face sizes per frame; face size = box diagonal).
    iou_threshold: a detection continues a track when their boxes overlap at least this much (mutual best match).
    max_gap: frames a track survives without a detection (a missed frame does not restart the filter).

    ``smoother(faces)`` takes the faces of one or more consecutive frames (``DetectedFaces``, frames in order) and
    returns them with smoothed points and ``track_id`` set (each face's track number; also ``track_ids`` of the
    last call).
    """

    def __init__(self, strength: float = 0.5, *, beta: float = 20.0, d_cutoff: float = 0.1,
                 iou_threshold: float = 0.3, max_gap: int = 2) -> None:
        self.strength = check_number(strength, "smoothing strength", low=0.0, high=1.0)
        self.min_cutoff = 0.5 * 10.0 ** (-1.5 * self.strength)
        self.beta = check_number(beta, "LandmarkSmoother beta", low=0.0, high=1e6)
        self.d_cutoff = check_number(d_cutoff, "LandmarkSmoother d_cutoff", low=0.0, low_open=True, high=1e6)
        self.iou_threshold = check_number(iou_threshold, "LandmarkSmoother iou_threshold", low=0.0, low_open=True,
                                          high=1.0)
        self.max_gap = check_integer(max_gap, "LandmarkSmoother max_gap", low=0, high=1_000_000)
        self.track_ids: torch.Tensor | None = None
        self.reset()

    @property
    def enabled(self) -> bool:
        return self.strength > 0.0

    def reset(self) -> None:
        """Forget every track (call between unrelated clips)."""
        self._boxes: torch.Tensor | None = None     # [T,4] last detected box of each track
        self._points: torch.Tensor | None = None    # [T,5,2] filtered points
        self._speed: torch.Tensor | None = None     # [T,5,2] filtered point change per frame
        self._ids: torch.Tensor | None = None       # [T] int64 track numbers
        self._age: torch.Tensor | None = None       # [T] frames since the last detection
        self._next_id = 0

    def __call__(self, faces: DetectedFaces) -> DetectedFaces:
        if not isinstance(faces, DetectedFaces):
            raise InputError(f"LandmarkSmoother: expected DetectedFaces, got {type(faces).__name__}")
        if not self.enabled:
            self.track_ids = torch.full((len(faces),), -1, dtype=torch.int64, device=faces.device)
            return faces.replace(track_id=self.track_ids)
        counts = torch.bincount(faces.frame_index, minlength=faces.num_frames).tolist()  # one host sync per call
        points = faces.points.float()
        out_points, out_ids = [], []
        start = 0
        for count in counts:                       # frames in time order; faces of a frame batched
            p, i = self._step(faces.boxes[start:start + count].float(), points[start:start + count])
            out_points.append(p)
            out_ids.append(i)
            start += count
        self.track_ids = torch.cat(out_ids) if out_ids else torch.zeros(0, dtype=torch.int64, device=faces.device)
        smoothed = torch.cat(out_points).to(faces.points.dtype) if out_points else faces.points
        return faces.replace(points=smoothed, track_id=self.track_ids)

    # -- one frame ----------------------------------------------------------------------------------------------
    def _step(self, boxes: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Filter the K faces of one frame (boxes [K,4], points [K,5,2]) -> (points [K,5,2], track ids [K])."""
        dev = boxes.device
        k = boxes.shape[0]
        if self._boxes is None or self._boxes.device != dev:
            self._init_tracks(dev)
        assert (self._boxes is not None and self._points is not None and self._speed is not None
                and self._ids is not None and self._age is not None)       # set together by _init_tracks
        self._age += 1
        t = self._boxes.shape[0]
        match = torch.full((k,), -1, dtype=torch.int64, device=dev)
        if k and t:
            iou = box_iou(boxes, self._boxes)                                  # [K,T]
            best_t = iou.argmax(1)                                             # each detection's best track
            best_k = iou.argmax(0)                                             # each track's best detection
            mutual = best_k[best_t] == torch.arange(k, device=dev)
            ok = mutual & (iou.gather(1, best_t[:, None])[:, 0] >= self.iou_threshold)
            match = torch.where(ok, best_t, match)
        has = match >= 0
        idx = match.clamp(min=0)
        prev_p, prev_s = self._points[idx] if t else points, self._speed[idx] if t else torch.zeros_like(points)
        # One-Euro on the face's centroid (translation: follows motion with little lag) and, separately, on its
        # shape (points about the centroid: detector jitter, slow real changes such as rotation or expression).
        # Speeds are in face sizes per frame (face size = box diagonal), so the settings do not depend on scale.
        size = (boxes[:, 2:] - boxes[:, :2]).norm(dim=-1).clamp(min=1.0).view(k, 1, 1)
        a_d = _alpha(self.d_cutoff)
        c, prev_c = points.mean(1, keepdim=True), prev_p.mean(1, keepdim=True)         # [K,1,2]
        prev_sc = prev_s.mean(1, keepdim=True)
        speed_c = prev_sc + a_d * ((c - prev_c) - prev_sc)
        cut_c = self.min_cutoff + self.beta * speed_c.norm(dim=-1, keepdim=True) / size
        new_c = prev_c + _alpha(cut_c) * (c - prev_c)
        shape, prev_shape, prev_ss = points - c, prev_p - prev_c, prev_s - prev_sc
        speed_s = prev_ss + a_d * ((shape - prev_shape) - prev_ss)
        cut_s = self.min_cutoff + self.beta * speed_s.norm(dim=-1, keepdim=True).mean(1, keepdim=True) / size
        smoothed = new_c + prev_shape + _alpha(cut_s) * (shape - prev_shape)
        speed = speed_c + speed_s
        h = has.view(k, 1, 1)
        smoothed = torch.where(h, smoothed, points)
        speed = torch.where(h, speed, torch.zeros_like(speed))
        # update the matched tracks, start new ones for the rest, drop tracks unseen for more than max_gap frames
        new = (~has).nonzero().flatten()
        ids = torch.empty(k, dtype=torch.int64, device=dev)
        if t:
            m = has.nonzero().flatten()
            ti = match[m]
            self._boxes[ti], self._points[ti], self._speed[ti], self._age[ti] = boxes[m], smoothed[m], speed[m], 0
            ids[m] = self._ids[ti]
        n_new = int(new.numel())
        if n_new:
            new_ids = torch.arange(self._next_id, self._next_id + n_new, device=dev)
            self._next_id += n_new
            ids[new] = new_ids
            self._boxes = torch.cat([self._boxes, boxes[new]])
            self._points = torch.cat([self._points, smoothed[new]])
            self._speed = torch.cat([self._speed, speed[new]])
            self._ids = torch.cat([self._ids, new_ids])
            self._age = torch.cat([self._age, torch.zeros(n_new, dtype=torch.int64, device=dev)])
        alive = self._age <= self.max_gap
        self._boxes, self._points, self._speed = self._boxes[alive], self._points[alive], self._speed[alive]
        self._ids, self._age = self._ids[alive], self._age[alive]
        return smoothed, ids

    def _init_tracks(self, dev: torch.device) -> None:
        self._boxes = torch.zeros(0, 4, device=dev)
        self._points = torch.zeros(0, 5, 2, device=dev)
        self._speed = torch.zeros(0, 5, 2, device=dev)
        self._ids = torch.zeros(0, dtype=torch.int64, device=dev)
        self._age = torch.zeros(0, dtype=torch.int64, device=dev)
