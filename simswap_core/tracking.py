"""Face tracks over video frames: stable track ids, detection gaps filled, cuts, and landmark smoothing.

:class:`FaceTracker` is the stream tracker (video swaps, the Detect Faces node's ``track_faces``): faces keep a
track id across chunks, a face the detector misses for a few frames keeps its id and gets interpolated faces in
those frames (so its swap does not flash back to the original face), a shot cut (:mod:`cuts`) ends every track,
and the points are One-Euro smoothed per track (the filter below). It holds back ``lookahead`` frames so a gap can
be filled before its frames are released.

Landmark smoothing (also used alone on IMAGE batches by :class:`LandmarkSmoother`): so the aligned crops (and the
swapped faces) stop jittering.

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
from dataclasses import dataclass

import torch

from .checks import check_integer, check_number
from .cuts import DEFAULT_CUT_THRESHOLD, CutDetector
from .errors import InputError
from .faces import DetectedFaces

__all__ = ["FaceTracker", "LandmarkSmoother", "box_iou"]


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
    def filter(self, boxes: torch.Tensor, points: torch.Tensor, prev_p: torch.Tensor, prev_s: torch.Tensor,
               has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One One-Euro step for the K faces of one frame: boxes [K,4], detected points [K,5,2], each face's track
        state from its previous frame (filtered points ``prev_p`` [K,5,2], point change per frame ``prev_s``
        [K,5,2]) and ``has`` [K] bool (False: a track's first face: points as detected, speed 0)
        -> (filtered points [K,5,2], speed [K,5,2]). Used by :class:`FaceTracker` too."""
        k = boxes.shape[0]
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
        return smoothed, speed

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
        smoothed, speed = self.filter(boxes, points, prev_p, prev_s, has)
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


def _mutual_best_rounds(iou: torch.Tensor, threshold: float) -> torch.Tensor:
    """Detections to tracks: iou [K,T] -> [K] int64 track index per detection (-1 = none).

    Rounds of mutual best matches (a detection and a track that are each other's best among those still free,
    with IoU >= threshold) until a round adds none: close to a greedy best-first assignment, batched per round
    (rounds <= min(K, T), usually 1-2)."""
    k, t = iou.shape
    match = torch.full((k,), -1, dtype=torch.int64)
    if not k or not t:
        return match
    free_k = torch.ones(k, dtype=torch.bool)
    free_t = torch.ones(t, dtype=torch.bool)
    rows = torch.arange(k)
    while True:
        m = iou.masked_fill(~(free_k[:, None] & free_t[None, :]), -1.0)
        best_t = m.argmax(1)
        best_k = m.argmax(0)
        ok = free_k & (best_k[best_t] == rows) & (m[rows, best_t] >= threshold)
        if not bool(ok.any()):
            return match
        match[ok] = best_t[ok]
        free_k &= ~ok
        free_t[best_t[ok]] = False


class FaceTracker:
    """Face tracks of a video stream: stable ids across chunks, detection gaps filled, new ids after a cut.

    smoothing: One-Euro strength for the landmarks along each track (0 = points as detected .. 1; the filter of
    :class:`LandmarkSmoother`). max_gap: a track missed for 1..max_gap frames and detected again keeps its id and,
    with ``fill_gaps``, gets a face in each missed frame (box and points linearly interpolated between the two
    detections, ``interpolated`` True, score the lower of the two); a track missed for longer ends (the face comes
    back with a new id). iou_threshold: a detection continues a track when its box overlaps the track's predicted
    box (last box moved by the track's recent speed) at least this much; ties are settled by rounds of mutual best
    matches. cut_threshold: :class:`cuts.CutDetector` threshold (None: no cut detection); a cut ends every track
    (new ids after it, never a fill across it) and its frame is listed in ``cuts``.

    Use: ``push(detected, frames)`` the faces of each next batch of frames, then ``pop()`` the faces of the frames
    that are final (a frame is final once ``lookahead`` later frames were pushed: a gap that starts there can
    still be filled until then), and ``pop(final=True)`` at the end of the stream. Output faces keep the order of
    their frame's detections (filled faces after them) and carry ``track_id`` and ``interpolated``. Ids are never
    reused by a tracker (not even after :meth:`reset`), so per-track state elsewhere (``TemporalState``) cannot
    pass to another face.

    The bookkeeping (a few numbers per face, decisions per frame) runs on the CPU: the detections are copied there
    once per push and the released faces go back to the detections' device once per pop, instead of a device sync
    for every frame's matching decisions. Cut detection runs on the frames' device. Frames are matched in time order
    (sequential by nature); the faces of a frame are matched, filled and filtered batched. Memory: the pending
    frames (at most ``lookahead`` plus one push), the live tracks and their filter state.
    """

    # track state (live tracks) and filter state (per track id), set by _end_tracks / _end_filters
    _t_ids: torch.Tensor
    _t_box: torch.Tensor
    _t_pts: torch.Tensor
    _t_score: torch.Tensor
    _t_vel: torch.Tensor
    _t_last: torch.Tensor
    _t_seen: torch.Tensor
    _f_ids: torch.Tensor
    _f_pts: torch.Tensor
    _f_speed: torch.Tensor
    _f_last: torch.Tensor

    def __init__(self, smoothing: float = 0.5, *, max_gap: int = 8, iou_threshold: float = 0.3,
                 cut_threshold: float | None = DEFAULT_CUT_THRESHOLD, fill_gaps: bool = True) -> None:
        self.iou_threshold = check_number(iou_threshold, "tracking iou_threshold", low=0.0, low_open=True, high=1.0)
        self._smoother = LandmarkSmoother(smoothing, iou_threshold=self.iou_threshold)  # the One-Euro filter
        self.smoothing = self._smoother.strength
        self.max_gap = check_integer(max_gap, "track gap (max_gap, frames)", low=0, high=10_000)
        if not isinstance(fill_gaps, bool):
            raise InputError(f"fill_gaps: expected True or False, got {fill_gaps!r}")
        self.fill_gaps = fill_gaps
        self.cut_detector = None if cut_threshold is None else CutDetector(cut_threshold)
        self._next_id = 0
        self.reset()

    @property
    def lookahead(self) -> int:
        """Frames held back after the last pushed one before a frame is released (max_gap when filling gaps)."""
        return self.max_gap if self.fill_gaps else 0

    @property
    def pending(self) -> int:
        """Frames pushed and not released yet."""
        return self._pushed - self._released

    def reset(self) -> None:
        """Start a new stream: forget pending frames, tracks, cuts and the cut detector's last frame (track ids
        keep counting: never reused)."""
        self.cuts: list[int] = []
        self._pushed = 0                       # stream frames pushed
        self._released = 0                     # stream frames released by pop
        self._sizes: list[tuple[int, int]] = []  # (H, W) of the pending frames
        self._pend: list[_Faces] = []          # pending faces (detections, fills), stream frame numbers
        self._device = torch.device("cpu")     # where pop's faces go (the last push's detections' device)
        self._end_tracks()
        self._end_filters()
        if self.cut_detector is not None:
            self.cut_detector.reset()

    # -- push ---------------------------------------------------------------------------------------------------
    def push(self, detected: DetectedFaces, frames: torch.Tensor | None = None) -> None:
        """Add the faces of the next B frames: ``detected`` (DetectedFaces of B frames, frames in order) and the
        frames ``[B,3,H,W]`` RGB [0,1] (any device; only for cut detection, may be None when cut_threshold is
        None)."""
        if not isinstance(detected, DetectedFaces):
            raise InputError(f"FaceTracker.push: expected DetectedFaces, got {type(detected).__name__}")
        b = detected.num_frames
        flags = [False] * b
        if self.cut_detector is not None:
            if frames is None:
                raise InputError("FaceTracker.push: frames are needed for cut detection (or set cut_threshold=None)")
            if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[0] != b:
                got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
                raise InputError(f"FaceTracker.push: expected the {b} frame(s) of the faces as [B,3,H,W], got {got}")
            if any(tuple(sz) != tuple(frames.shape[-2:]) for sz in detected.frame_sizes):
                raise InputError(f"FaceTracker.push: faces of frames of size {detected.frame_sizes[:1]} for frames "
                                 f"of size {tuple(frames.shape[-2:])}; detect the faces on these frames")
            if b:
                flags = self.cut_detector(frames).cpu().tolist()
        det = detected.cpu()                     # one bulk fetch per push: the bookkeeping below runs on the host
        det.check_values("faces")
        self._device = detected.device
        boxes, points, scores = det.boxes.float(), det.points.float(), det.scores.float()
        counts = det.counts()
        start = 0
        for j, count in enumerate(counts):      # frames in time order; the faces of a frame batched
            t = self._pushed + j
            if flags[j]:                         # a new shot: every track ends here
                self.cuts.append(t)
                self._end_tracks()
            self._track_frame(t, boxes[start:start + count], points[start:start + count],
                              scores[start:start + count])
            start += count
        self._sizes.extend((int(h), int(w)) for h, w in det.frame_sizes)
        self._pushed += b

    def _track_frame(self, t: int, boxes: torch.Tensor, points: torch.Tensor, scores: torch.Tensor) -> None:
        """Match the K detections of stream frame t to the live tracks, fill gaps, start new tracks."""
        k = boxes.shape[0]
        alive = (t - self._t_last - 1) <= self.max_gap              # tracks missed for at most max_gap frames
        if not bool(alive.all()):
            self._t_keep(alive)
        dt = (t - self._t_last).float()                             # [T] frames since each track's last face
        pred = self._t_box + self._t_vel * dt[:, None]
        match = _mutual_best_rounds(box_iou(boxes, pred), self.iou_threshold)
        m = (match >= 0).nonzero().flatten()
        ti = match[m]
        ids = torch.empty(k, dtype=torch.int64)
        if m.numel():
            ids[m] = self._t_ids[ti]
            last = self._t_last[ti]
            gap = t - last - 1                                      # [M] frames missed (0..max_gap)
            if self.fill_gaps and bool((gap > 0).any()):
                self._fill(last, gap, self._t_box[ti], self._t_pts[ti], self._t_score[ti], boxes[m], points[m],
                           scores[m], self._t_ids[ti])
            step = (boxes[m] - self._t_box[ti]) / (gap + 1).float()[:, None]
            first = (self._t_seen[ti] == 1)[:, None]
            self._t_vel[ti] = torch.where(first, step, 0.5 * self._t_vel[ti] + 0.5 * step)
            self._t_box[ti], self._t_pts[ti], self._t_score[ti] = boxes[m], points[m], scores[m]
            self._t_last[ti] = t
            self._t_seen[ti] += 1
        new = (match < 0).nonzero().flatten()
        n_new = int(new.numel())
        if n_new:
            new_ids = torch.arange(self._next_id, self._next_id + n_new)
            self._next_id += n_new
            ids[new] = new_ids
            self._t_ids = torch.cat([self._t_ids, new_ids])
            self._t_box = torch.cat([self._t_box, boxes[new]])
            self._t_pts = torch.cat([self._t_pts, points[new]])
            self._t_score = torch.cat([self._t_score, scores[new]])
            self._t_vel = torch.cat([self._t_vel, torch.zeros(n_new, 4)])
            self._t_last = torch.cat([self._t_last, torch.full((n_new,), t, dtype=torch.int64)])
            self._t_seen = torch.cat([self._t_seen, torch.ones(n_new, dtype=torch.int64)])
        if k:
            self._pend.append(_Faces(boxes, points, scores, torch.full((k,), t, dtype=torch.int64), ids,
                                     torch.zeros(k, dtype=torch.bool)))

    def _fill(self, last: torch.Tensor, gap: torch.Tensor, box0: torch.Tensor, pts0: torch.Tensor,
              score0: torch.Tensor, box1: torch.Tensor, pts1: torch.Tensor, score1: torch.Tensor,
              ids: torch.Tensor) -> None:
        """Faces in the missed frames last+1..last+gap of M tracks found again (batched over tracks and frames):
        boxes and points linearly interpolated between the two detections, score the lower of the two. A filled
        face that overlaps a face already in its frame (IoU >= min(iou_threshold, 0.3): the detector found it
        there, under another track) is left out, so no face is swapped twice."""
        j = torch.arange(1, self.max_gap + 1)                               # [J] frames after the last face
        keep = j[None, :] <= gap[:, None]                                   # [M,J]
        w = j[None, :].float() / (gap[:, None] + 1).float()                 # [M,J] in (0,1)
        boxes = box0[:, None] + w[..., None] * (box1 - box0)[:, None]       # [M,J,4]
        points = pts0[:, None] + w[..., None, None] * (pts1 - pts0)[:, None]  # [M,J,5,2]
        frame = (last[:, None] + j[None, :])[keep]
        boxes, points = boxes[keep], points[keep]
        scores, ids = torch.minimum(score0, score1)[:, None].expand_as(keep)[keep], ids[:, None].expand_as(keep)[keep]
        pend = _Faces.cat(self._pend)
        if len(pend.frame):
            same = frame[:, None] == pend.frame[None, :]                       # [N,P]
            taken = ((box_iou(boxes, pend.boxes) >= min(self.iou_threshold, 0.3)) & same).any(1)
            free = ~taken
            boxes, points, scores, frame, ids = boxes[free], points[free], scores[free], frame[free], ids[free]
        self._pend.append(_Faces(boxes, points, scores, frame, ids, torch.ones(len(frame), dtype=torch.bool)))

    # -- pop ----------------------------------------------------------------------------------------------------
    def pop(self, final: bool = False) -> DetectedFaces:
        """The faces of the next frames that are final, in order (``num_frames`` of them, may be 0; frame_index
        from 0 = the first released frame), with ``track_id``, ``interpolated`` and smoothed points, on the
        device of the pushed detections. ``final=True``: the stream ends: every pushed frame is released and every
        track ends (frames pushed later start new tracks)."""
        end = self._pushed if final else max(self._released, self._pushed - self.lookahead)
        n = end - self._released
        pend = _Faces.cat(self._pend)
        out_mask = pend.frame < end
        self._pend = [pend.select(~out_mask)] if bool((~out_mask).any()) else []
        out = pend.select(out_mask)
        order = torch.argsort(out.frame, stable=True)
        out = out.select(order)
        local = out.frame - self._released
        points = self._smooth(out, local, n) if self.smoothing > 0 else out.points
        sizes, self._sizes = self._sizes[:n], self._sizes[n:]
        self._released = end
        if final:
            self._end_tracks()
            self._end_filters()
        else:   # filter state of tracks that cannot continue (no face for longer than max_gap frames)
            self._f_keep(self._f_last >= end - self.max_gap - 1)
        faces = DetectedFaces(out.boxes, points, out.scores, local, sizes, out.ids, out.filled)
        return faces.to(self._device)

    def _smooth(self, out: _Faces, local: torch.Tensor, n: int) -> torch.Tensor:
        """One-Euro filtered points of the released faces, frame by frame in time order, per track id."""
        counts = torch.bincount(local, minlength=n).tolist()
        result = out.points.clone()
        start = 0
        for j, count in enumerate(counts):
            if not count:
                continue
            sl = slice(start, start + count)
            start += count
            ids = out.ids[sl]
            eq = ids[:, None] == self._f_ids[None, :]                       # [K,S]
            has = eq.any(1)
            idx = eq.int().argmax(1) if self._f_ids.numel() else torch.zeros(count, dtype=torch.int64)
            prev_p = self._f_pts[idx] if self._f_ids.numel() else out.points[sl]
            prev_s = self._f_speed[idx] if self._f_ids.numel() else torch.zeros_like(out.points[sl])
            smoothed, speed = self._smoother.filter(out.boxes[sl], out.points[sl], prev_p, prev_s, has)
            result[sl] = smoothed
            h = has.nonzero().flatten()
            if h.numel():
                self._f_pts[idx[h]], self._f_speed[idx[h]] = smoothed[h], speed[h]
                self._f_last[idx[h]] = self._released + j
            nw = (~has).nonzero().flatten()
            if nw.numel():
                self._f_ids = torch.cat([self._f_ids, ids[nw]])
                self._f_pts = torch.cat([self._f_pts, smoothed[nw]])
                self._f_speed = torch.cat([self._f_speed, speed[nw]])
                self._f_last = torch.cat([self._f_last, torch.full((int(nw.numel()),), self._released + j,
                                                                   dtype=torch.int64)])
        return result

    # -- state --------------------------------------------------------------------------------------------------
    def _end_tracks(self) -> None:
        """End every live track (a cut, the end of a stream)."""
        self._t_ids = torch.zeros(0, dtype=torch.int64)      # [T] track ids
        self._t_box = torch.zeros(0, 4)                      # [T,4] last detected box
        self._t_pts = torch.zeros(0, 5, 2)                   # [T,5,2] last detected points
        self._t_score = torch.zeros(0)                       # [T] last detection score
        self._t_vel = torch.zeros(0, 4)                      # [T,4] box change per frame (recent average)
        self._t_last = torch.zeros(0, dtype=torch.int64)     # [T] stream frame of the last detection
        self._t_seen = torch.zeros(0, dtype=torch.int64)     # [T] detections so far

    def _t_keep(self, keep: torch.Tensor) -> None:
        self._t_ids, self._t_box, self._t_pts = self._t_ids[keep], self._t_box[keep], self._t_pts[keep]
        self._t_score, self._t_vel = self._t_score[keep], self._t_vel[keep]
        self._t_last, self._t_seen = self._t_last[keep], self._t_seen[keep]

    def _end_filters(self) -> None:
        self._f_ids = torch.zeros(0, dtype=torch.int64)      # [S] track ids with filter state
        self._f_pts = torch.zeros(0, 5, 2)                   # [S,5,2] filtered points of the last released face
        self._f_speed = torch.zeros(0, 5, 2)                 # [S,5,2] filtered point change per frame
        self._f_last = torch.zeros(0, dtype=torch.int64)     # [S] stream frame of that face

    def _f_keep(self, keep: torch.Tensor) -> None:
        self._f_ids, self._f_pts, self._f_speed = self._f_ids[keep], self._f_pts[keep], self._f_speed[keep]
        self._f_last = self._f_last[keep]


@dataclass
class _Faces:
    """Pending faces of the tracker (CPU): boxes [P,4], points [P,5,2], scores [P], stream frame [P] int64,
    track ids [P] int64, filled [P] bool."""

    boxes: torch.Tensor
    points: torch.Tensor
    scores: torch.Tensor
    frame: torch.Tensor
    ids: torch.Tensor
    filled: torch.Tensor

    def select(self, keep: torch.Tensor) -> _Faces:
        """The faces kept by a bool mask or int64 indices [K] (a mask becomes indices once: one host sync)."""
        if keep.dtype == torch.bool:
            keep = keep.nonzero().flatten()
        return _Faces(self.boxes[keep], self.points[keep], self.scores[keep], self.frame[keep], self.ids[keep],
                      self.filled[keep])

    @staticmethod
    def cat(items: list[_Faces]) -> _Faces:
        if not items:
            return _Faces(torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0), torch.zeros(0, dtype=torch.int64),
                          torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.bool))
        if len(items) == 1:
            return items[0]
        return _Faces(*(torch.cat([getattr(i, f) for i in items])
                        for f in ("boxes", "points", "scores", "frame", "ids", "filled")))
