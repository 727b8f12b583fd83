"""Temporal stability of the blend mask and the colour correction of tracked faces in a video.

Landmark smoothing (``tracking``) steadies where a face is cut out; what is pasted back can still flicker: the
crop-space blend mask (a face parser's labels jump by a pixel or two from frame to frame, so the edge "pumps")
and the colour correction (the Lab mean / std of the target crop under that mask change a little every frame, so
the face's colour flickers). :class:`TemporalState` smooths both PER TRACK with an exponential moving average
(EMA) over time:

- ``smooth_masks``: the crop-space mask of each tracked face, averaged with its track's previous (smoothed) mask.
  Crop space follows the face (the crop is aligned on its landmarks), so averaging there does not smear a
  moving face.
- ``color_filter``: a ``color.ColorFilter`` for ``paste_faces(..., color_filter=)`` that replaces each tracked
  face's TARGET statistics (Lab mean and std under the mask) by their EMA. The swapped face's own statistics stay
  per frame, so the corrected face gets exactly the smoothed colour statistics: a generator output that flickers
  in colour is still normalised frame by frame.

Strength: ``mask_smoothing`` / ``color_smoothing`` in [0,1], 0 = off; the EMA keeps ``keep`` of the previous value
with the cutoff mapping of ``tracking.LandmarkSmoother`` (cutoff = 0.5 * 10^(-1.5 s) cycles per frame): 0.5 ->
keep 0.64 (each frame moves 36 % of the way to the new value), 1 -> keep 0.91. The first frame of a track is used
as it is; faces with ``track_id`` -1 (not tracked) are never changed; tracks never mix.

Calls come in time order (a video in chunks: the state carries over from one call to the next, and chunked calls
give the same result as one call over all frames). Within a call the faces are in frame order (``frame_index``
non-decreasing); the filter loops over the call's frames (an EMA is sequential by nature) with the faces of a
frame batched, and stays on the tensors' device. Memory is bounded: a track's state is dropped once it has not
been seen for ``forget_after`` frames (counting the frames that have faces), so only live tracks are kept (a track
that comes back later starts afresh). ``reset()`` between unrelated clips.
"""
from __future__ import annotations

import math

import torch

from .checks import check_integer, check_masks, check_number
from .color import ColorStats
from .errors import InputError

__all__ = ["TemporalState", "smoothing_keep"]


def smoothing_keep(strength: float) -> float:
    """EMA weight of the previous value for a smoothing strength in [0,1] (0 -> 0.0: off): the One-Euro minimum
    cutoff mapping of ``tracking.LandmarkSmoother`` (0.5 -> 0.64, 1 -> 0.91)."""
    if strength <= 0:
        return 0.0
    cutoff = 0.5 * 10.0 ** (-1.5 * strength)
    alpha = 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff))
    return 1.0 - alpha


def _check_tracks(track_id: object, frame_index: object, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``track_id`` [F] and ``frame_index`` [F] as int64 tensors on one device (frame_index >= 0, in order)."""
    for name, t in (("track_id", track_id), ("frame_index", frame_index)):
        if not isinstance(t, torch.Tensor) or t.ndim != 1 or t.is_floating_point() or t.is_complex():
            desc = f"shape {tuple(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise InputError(f"{what}: {name} must be an integer tensor [F], got {desc}")
    assert isinstance(track_id, torch.Tensor) and isinstance(frame_index, torch.Tensor)
    if track_id.shape != frame_index.shape:
        raise InputError(f"{what}: track_id {tuple(track_id.shape)} and frame_index {tuple(frame_index.shape)} "
                         "must have one entry per face")
    fi = frame_index.to(track_id.device, torch.int64)
    if fi.numel() and bool((fi < 0).any() | (fi[1:] < fi[:-1]).any()):
        raise InputError(f"{what}: frame_index must be >= 0 and non-decreasing (faces in frame order)")
    return track_id.to(torch.int64), fi


class _TrackEMA:
    """Per-track exponential moving average of a tensor value per face ([F, *shape]), kept between calls.

    State: ``ids`` [T] int64 (sorted), ``values`` [T, *shape] float32, ``last`` [T] int64 (the frame clock when
    each track was last seen), all on one device. ``clock`` counts the frames with faces of all calls so far
    (frames without any face do not count, so the result does not depend on how a stream is cut into calls).
    """

    def __init__(self, keep: float, forget_after: int) -> None:
        self.keep = float(keep)
        self.forget_after = int(forget_after)
        self.reset()

    def reset(self) -> None:
        self.ids: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.last: torch.Tensor | None = None
        self.clock = 0

    def __len__(self) -> int:
        return 0 if self.ids is None else int(self.ids.numel())

    def __call__(self, track_id: torch.Tensor, frame_index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """values [F, *shape] of the faces (in frame order) -> smoothed values (same dtype); untracked faces
        (track_id < 0) unchanged. A few host syncs per call (track ids, frame counts, the dropped tracks), none
        inside the frame loop. A track id twice in one frame (trackers never do that) keeps one of the two values."""
        f = values.shape[0]
        if f == 0:
            return values
        dev = values.device
        shape = tuple(values.shape[1:])
        x = values.float()
        track_id, frame_index = track_id.to(dev), frame_index.to(dev)
        if self.values is None or tuple(self.values.shape[1:]) != shape:
            self.ids = torch.zeros(0, dtype=torch.int64, device=dev)
            self.values = x.new_zeros((0, *shape))
            self.last = torch.zeros(0, dtype=torch.int64, device=dev)
        assert self.ids is not None and self.last is not None
        ids, table, last = self.ids.to(dev), self.values.to(dev), self.last.to(dev)
        valid = track_id >= 0
        # the table: the kept tracks, the new tracks of this call (not yet seen), and one scratch row (T) that
        # absorbs the writes of untracked faces, so the frame loop needs no host sync
        call_ids = torch.unique(track_id[valid])
        new_ids = call_ids[~torch.isin(call_ids, ids)]
        t_old, t_new = ids.numel(), new_ids.numel()
        ids = torch.cat([ids, new_ids])
        order = torch.argsort(ids)
        ids = ids[order]
        seen = torch.cat([torch.ones(t_old, dtype=torch.bool, device=dev),
                          torch.zeros(t_new, dtype=torch.bool, device=dev)])[order]
        table = torch.cat([table, x.new_zeros((t_new, *shape))])[order]
        last = torch.cat([last, last.new_zeros(t_new)])[order]
        t = ids.numel()
        table = torch.cat([table, x.new_zeros((1, *shape))])
        seen = torch.cat([seen, seen.new_zeros(1)])
        last = torch.cat([last, last.new_zeros(1)])
        rows = torch.searchsorted(ids, track_id.clamp(min=0)).clamp(max=max(t - 1, 0))
        rows = torch.where(valid, rows, torch.full_like(rows, t))
        counts = [c for c in torch.bincount(frame_index).tolist() if c]
        out = x.clone()
        keep = self.keep
        start = 0
        for count in counts:                                # frames in time order; faces of a frame batched
            sl = slice(start, start + count)
            r, cur = rows[sl], x[sl]
            prev = table[r]
            fresh = ~seen[r] | (self.clock - last[r] > self.forget_after)    # new, or back after too long
            new = torch.where(fresh.view(-1, *([1] * len(shape))), cur, torch.lerp(cur, prev, keep))  # exact if equal
            out[sl] = new
            table[r] = new
            seen[r] = True
            last[r] = self.clock
            self.clock += 1
            start += count
        alive = (self.clock - last[:t] <= self.forget_after).nonzero().flatten()     # one sync for the 3 fields
        self.ids, self.values, self.last = ids[alive], table[:t][alive], last[:t][alive]
        out = torch.where(valid.view(-1, *([1] * len(shape))), out, x)
        return out.to(values.dtype)


class _TrackColorFilter:
    """The ``color.ColorFilter`` of one paste call: the target statistics of tracked faces through the state's
    colour EMA (source statistics unchanged). Use once: each call advances the tracks by one step."""

    def __init__(self, ema: _TrackEMA, track_id: torch.Tensor, frame_index: torch.Tensor) -> None:
        self._ema, self._track_id, self._frame_index = ema, track_id, frame_index

    def __call__(self, stats: ColorStats) -> ColorStats:
        f = self._track_id.shape[0]
        if stats.target_mean.shape != (f, 3) or stats.target_std.shape != (f, 3):
            raise InputError(f"TemporalState.color_filter: made for {f} faces, applied to colour statistics of "
                             f"{tuple(stats.target_mean.shape)}: call color_filter(track_id, frame_index) with the "
                             "faces being pasted")
        target = torch.stack([stats.target_mean, stats.target_std], 1)               # [F,2,3]
        smoothed = self._ema(self._track_id, self._frame_index, target)
        return ColorStats(stats.source_mean, stats.source_std, smoothed[:, 0], smoothed[:, 1])


class TemporalState:
    """Per-track smoothing of crop masks and colour correction over the frames of one video stream.

    mask_smoothing, color_smoothing: 0 (off) .. 1 (heaviest), see the module docstring (0.5: each frame moves 36 %
    of the way to its own value). forget_after: frames after which an unseen track's state is dropped.
    ``track_slots``: identity slot per track id, kept by ``mapping.assign_faces`` (the swap) for this stream;
    cleared by ``reset`` only (one small int per track that got an identity: a track keeps its identity through
    any stretch in which it was not swapped).
    """

    def __init__(self, mask_smoothing: float = 0.5, color_smoothing: float = 0.5, *, forget_after: int = 30) -> None:
        self.mask_smoothing = check_number(mask_smoothing, "mask smoothing (blend_smoothing)", low=0.0, high=1.0)
        self.color_smoothing = check_number(color_smoothing, "colour smoothing (blend_smoothing)", low=0.0, high=1.0)
        self.forget_after = check_integer(forget_after, "TemporalState forget_after (frames)", low=1, high=1_000_000)
        self.track_slots: dict[int, int] = {}
        self._masks = _TrackEMA(smoothing_keep(self.mask_smoothing), self.forget_after)
        self._colors = _TrackEMA(smoothing_keep(self.color_smoothing), self.forget_after)

    def __repr__(self) -> str:
        return (f"TemporalState(mask_smoothing={self.mask_smoothing:g}, color_smoothing={self.color_smoothing:g}, "
                f"forget_after={self.forget_after})")

    @property
    def live_tracks(self) -> dict[str, int]:
        """How many tracks each filter holds state for: {"mask": n, "color": n}."""
        return {"mask": len(self._masks), "color": len(self._colors)}

    def reset(self) -> None:
        """Forget every track (its masks, colours and identity slots): call between unrelated clips."""
        self._masks.reset()
        self._colors.reset()
        self.track_slots.clear()

    def smooth_masks(self, track_id: torch.Tensor | None, frame_index: torch.Tensor,
                     masks: torch.Tensor | None) -> torch.Tensor | None:
        """Crop masks [F,1,S,S] in [0,1] of the faces of a call (frame order; ``frame_index`` [F] local to the
        call, ``track_id`` [F] int64, -1 = untracked) -> the masks with each track's EMA over time (same shape,
        dtype and device). None in -> None out; ``track_id`` None or mask_smoothing 0 -> the masks unchanged."""
        if masks is None:
            return None
        check_masks(masks, "TemporalState.smooth_masks: masks")
        if track_id is None or self.mask_smoothing <= 0:
            return masks
        track_id, frame_index = _check_tracks(track_id, frame_index, "TemporalState.smooth_masks")
        if track_id.shape[0] != masks.shape[0]:
            raise InputError(f"TemporalState.smooth_masks: {track_id.shape[0]} track ids for {masks.shape[0]} masks")
        return self._masks(track_id, frame_index, masks).clamp(0, 1)

    def color_filter(self, track_id: torch.Tensor | None, frame_index: torch.Tensor) -> _TrackColorFilter | None:
        """A ``color.ColorFilter`` for ``paste_faces(..., color_match=True, color_filter=)`` of these faces
        (frame order, as for ``smooth_masks``): each tracked face's target Lab mean / std replaced by its track's
        EMA over time. None when color_smoothing is 0 or ``track_id`` is None (plain colour transfer)."""
        if track_id is None or self.color_smoothing <= 0:
            return None
        track_id, frame_index = _check_tracks(track_id, frame_index, "TemporalState.color_filter")
        return _TrackColorFilter(self._colors, track_id, frame_index)
