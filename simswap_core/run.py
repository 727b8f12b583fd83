"""The one frame loop: a ``FrameSource`` through ``FaceSwapper.swap`` into a ``FrameSink``, streamed.

    summary = run(open_source("clip.mp4"), swapper, open_sink("out.mp4", source), identity, batch_size=8,
                  tracker=FaceTracker(0.5))

Decoding runs ahead in a background thread (at most ``prefetch`` batches) and ``sink.write`` runs behind in a
writer thread (at most ``prefetch`` batches waiting), so reading and encoding overlap the compute; the sink gets
a light ``FrameResult`` per batch (frames, mask, faces; no crops), so memory does not grow with the input's
length. With a ``tracker`` (``tracking.FaceTracker``) faces are detected per batch, pushed to the tracker, and the
frames it releases (track ids, smoothed points, gaps filled) are swapped with those faces: at most
``tracker.lookahead + batch_size`` frames wait in memory.

The sink commits its output only when every batch went through and the frame count is the source's
(``sink.close()``); on any exception (also one raised in the reader or writer thread, raised here), a cancel
raised by ``progress``, Ctrl-C or SIGTERM (turned into an exception by the CLI) the threads are stopped, the sink is
aborted once (``sink.abort()``: no complete-looking output is left) and the exception is raised again.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch

from .errors import InputError
from .io.frames import FrameBatch, FrameSink, FrameSource
from .io.prefetch import BackgroundWriter, Prefetcher, signals_held
from .progress import ProgressFn, increasing

if TYPE_CHECKING:
    from .faces import DetectedFaces
    from .identity import Identity

__all__ = ["FrameResult", "RunSummary", "run", "signals_held"]

Progress = Callable[[int, int | None], None]


@dataclass
class RunSummary:
    """What a run did.

    frames: frames written. faces_swapped: faces swapped over all frames. frames_without_face: indices (in the
    whole source) of the frames left unchanged because no selected face was found. tracks: distinct track ids
    among the swapped faces (0 when the faces were not tracked). faces_filled: swapped faces that were filled in a
    detection gap (``faces.interpolated``). faces_per_identity: swapped faces per identity slot (index = slot of
    ``SwapResult.identity_slots``; empty when the swapper does not report slots). cuts: frame indices where the
    tracker saw a new shot start in this run (the tracker's stream numbers: source indices for a fresh tracker).
    """

    frames: int = 0
    faces_swapped: int = 0
    frames_without_face: list[int] = field(default_factory=list)
    tracks: int = 0
    faces_filled: int = 0
    faces_per_identity: list[int] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)


@dataclass
class FrameResult:
    """The light result a sink gets for a batch of frames (no aligned or swapped crops; all on the frames' device).

    images: [B,3,H,W] float32 RGB [0,1] composited frames. mask: [B,1,H,W] float32 [0,1] where faces were pasted.
    faces: the swapped faces (``DetectedFaces``, frame_index local to the batch). frames_without_face: indices
    (local to the batch) of the frames where nothing was swapped, with a reason each in ``no_face_reasons``.
    identity_slots: [F] int64 identity slot of each swapped face, or None.
    """

    images: torch.Tensor
    mask: torch.Tensor
    faces: Any
    frames_without_face: list[int] = field(default_factory=list)
    no_face_reasons: list[str] = field(default_factory=list)
    identity_slots: torch.Tensor | None = None

    @staticmethod
    def of(result: Any) -> FrameResult:
        """The light part of a swap result (``SwapResult`` or anything with images / mask / faces)."""
        without = [int(i) for i in getattr(result, "frames_without_face", [])]
        reasons = list(getattr(result, "no_face_reasons", None) or ["no face selected"] * len(without))
        return FrameResult(result.images, result.mask, result.faces, without, reasons,
                           getattr(result, "identity_slots", None))

    def reasons_by_frame(self) -> dict[int, str]:
        """{frame index: why nothing was swapped there}."""
        return dict(zip(self.frames_without_face, self.no_face_reasons))

    def summary(self) -> str:
        """One line for a person, as ``SwapResult.summary``: 'swapped 3 faces in 2 of 3 frames; nothing swapped in
        frame 1: no face detected'."""
        from .swap import swap_summary

        return swap_summary(int(self.images.shape[0]), len(self.faces), self.reasons_by_frame())

    @staticmethod
    def concat(parts: Sequence[FrameResult]) -> FrameResult:
        """Results of consecutive batches joined (frame indices offset by the earlier batches)."""
        from .faces import DetectedFaces

        if not parts:
            raise ValueError("FrameResult.concat: expected at least one result")
        offsets, n = [], 0
        for p in parts:
            offsets.append(n)
            n += int(p.images.shape[0])
        slots = [p.identity_slots for p in parts]
        return FrameResult(
            torch.cat([p.images for p in parts]), torch.cat([p.mask for p in parts]),
            DetectedFaces.concat([p.faces for p in parts]),
            [o + i for o, p in zip(offsets, parts) for i in p.frames_without_face],
            [r for p in parts for r in p.no_face_reasons],
            torch.cat([s for s in slots if s is not None]) if all(s is not None for s in slots) else None)


def _plural(n: int, word: str) -> str:
    from .swap import _plural as plural

    return plural(n, word)


def run(source: FrameSource, swapper: Any, sink: FrameSink, identity: Identity | None, *, batch_size: int = 8,
        progress: Progress | None = None, faces: DetectedFaces | None = None, tracker: Any = None,
        prefetch: int = 2, **swap_options: Any) -> RunSummary:
    """Swap ``identity`` into every frame of ``source`` and write the results to ``sink``, streamed.

    swapper: a ``FaceSwapper`` (``swap(frames [B,3,H,W], identity, *, batch_size, progress, faces=, ...)``
    returning ``.images``, ``.mask``, ``.faces``, ``.frames_without_face``; with a tracker also ``detect(frames)``).
    identity: an ``Identity`` (None when ``swap_options`` has ``identity_map``). batch_size: frames read, detected
    and swapped per call. progress(done, total): frames finished over the whole source (increasing, ends at the
    frame count; total is ``source.total``, None when unknown); an exception raised there cancels the run.
    faces: a ``DetectedFaces`` of ALL frames of the source (optional; each batch gets ``faces.frames(start, stop)``
    so nothing is detected again). tracker: a ``tracking.FaceTracker`` (``lookahead``, ``push(detected, frames)``,
    ``pop(final=False)``, ``cuts``): faces get track ids, smoothed points and gap fills; frames are swapped when the
    tracker releases them. prefetch: batches decoded ahead and batches waiting for the writer (0: no background
    threads, everything in the caller's thread). swap_options: passed to ``swap`` (select, mask, temporal,
    identity_map, smoothing, protect, ...); a ``protect`` mask [N,1,H,W] with N > 1 (one per frame of the source)
    is sliced per batch, a [1,1,H,W] one goes to every batch as it is.

    The sink gets ``FrameResult`` s (images, mask, faces; no crops), or the full swap result when it asks for it
    with a true ``keep_crops`` attribute (``TensorSink(keep_crops=True)``: in-memory results whose crops are used).
    """
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
        raise InputError(f"prefetch: expected an integer >= 0 (batches decoded ahead), got {prefetch!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    if faces is not None and source.total is not None and faces.num_frames != source.total:
        raise InputError(f"faces: expected the detected faces of the {source.total} frame(s) of {source.name}, "
                         f"got {faces.num_frames} frame(s)")
    protect = swap_options.get("protect")
    if isinstance(protect, torch.Tensor) and protect.dim() == 4 and source.total is not None and \
            protect.shape[0] not in (1, source.total):
        raise InputError(f"protect: expected one mask for every frame [1,1,H,W] or one per frame of {source.name} "
                         f"[{source.total},1,H,W], got {protect.shape[0]} masks")
    if tracker is not None:
        for name in ("lookahead", "push", "pop"):
            if not hasattr(tracker, name):
                raise InputError(f"tracker: expected a tracking.FaceTracker (lookahead, push, pop), got "
                                 f"{type(tracker).__name__} without {name}")
        if swap_options.get("smoothing") is not None:
            raise InputError("smoothing: the tracker already smooths the landmarks; pass tracker= or smoothing=, "
                             "not both")
    loop: _Loop | None = None
    reader: Prefetcher[FrameBatch] | None = None
    try:
        loop = _Loop(source, swapper, sink, identity, batch_size, progress, faces, swap_options, prefetch)
        reader = Prefetcher(lambda: source.batches(batch_size), prefetch)
        if tracker is None:
            for batch in reader:
                loop.swap(batch, None if faces is None else faces.frames(batch.start, batch.stop))
        else:
            loop.tracked(reader, tracker)
        loop.writer.finish()
        total = source.total
        if total is not None and loop.summary.frames != total:
            raise InputError(f"{source.name}: {loop.summary.frames} frame(s) read of the {total} expected; "
                             "nothing was written")
        sink.close()
    except BaseException:
        with signals_held():          # a second Ctrl-C / SIGTERM waits until the temporary output is gone
            if reader is not None:
                reader.close()
            if loop is not None:
                loop.writer.stop()
            sink.abort()
        raise
    finally:
        if reader is not None:
            reader.close()
    return loop.summary


class _Loop:
    """The state of one run: summary, progress, the writer; swaps batches and hands them to the writer."""

    def __init__(self, source: FrameSource, swapper: Any, sink: FrameSink, identity: Identity | None,
                 batch_size: int, progress: Progress | None, faces: DetectedFaces | None,
                 swap_options: dict[str, Any], prefetch: int):
        self.source, self.swapper, self.identity = source, swapper, identity
        self.batch_size, self.faces, self.options = batch_size, faces, swap_options
        self.total = source.total
        self.report = cast("Progress | None", increasing(cast("ProgressFn | None", progress)))
        self.summary = RunSummary()
        self.keep_crops = bool(getattr(sink, "keep_crops", False))
        self.writer = BackgroundWriter(sink, prefetch)
        self._tracks: set[int] = set()

    def swap(self, batch: FrameBatch, faces: DetectedFaces | None) -> None:
        """Swap one batch (with its faces when given), count it and hand it to the writer."""
        options = dict(self.options)
        if faces is not None:
            options["faces"] = faces
        protect = options.get("protect")
        if isinstance(protect, torch.Tensor) and protect.dim() == 4 and protect.shape[0] > 1:
            if batch.stop > protect.shape[0]:   # one protect mask per frame: this batch's slice of them
                raise InputError(f"protect: {protect.shape[0]} masks (one per frame) for a run of at least "
                                 f"{batch.stop} frames; give one mask per frame, or a single mask [1,1,H,W] for "
                                 "every frame")
            options["protect"] = protect[batch.start:batch.stop]
        call_progress = None if self.report is None else _offset(self.report, batch.start, self.total)
        from .swap import FramesWithoutFaceError

        try:
            result = self.swapper.swap(batch.frames, self.identity, batch_size=self.batch_size,
                                       progress=call_progress, **options)
        except FramesWithoutFaceError as e:
            raise _in_source(e, batch.start, self.total, self.source.name) from None
        light = result if self.keep_crops else FrameResult.of(result)
        self._count(batch, light)
        self.writer.write(batch, light)
        if self.report is not None:
            self.report(batch.stop, self.total)

    def _count(self, batch: FrameBatch, result: Any) -> None:
        s = self.summary
        s.frames += len(batch)
        found = result.faces
        s.faces_swapped += len(found)
        s.frames_without_face += [batch.start + int(i) for i in result.frames_without_face]
        if not len(found):
            return
        track_id = getattr(found, "track_id", None)
        if track_id is not None:
            self._tracks.update(int(t) for t in torch.unique(track_id).tolist() if t >= 0)
            s.tracks = len(self._tracks)
        filled = getattr(found, "interpolated", None)
        if filled is not None:
            s.faces_filled += int(filled.sum())
        slots = getattr(result, "identity_slots", None)
        if slots is not None and len(slots):
            counts = torch.bincount(slots.reshape(-1).cpu().long()).tolist()
            per = s.faces_per_identity
            per.extend([0] * (len(counts) - len(per)))
            for k, c in enumerate(counts):
                per[k] += int(c)

    def tracked(self, batches: Prefetcher[FrameBatch], tracker: Any) -> None:
        """Detect each batch, push it to the tracker, swap the frames it releases (with its faces)."""
        pending: deque[FrameBatch] = deque()
        held = 0
        known_cuts = len(getattr(tracker, "cuts", []))        # a tracker reused from an earlier run keeps its cuts
        for batch in batches:
            with torch.no_grad():
                if self.faces is not None:
                    detected = self.faces.frames(batch.start, batch.stop)
                else:
                    detected = self.swapper.detect(batch.frames)
                tracker.push(detected, batch.frames)
                ready = tracker.pop()
            pending.append(batch)
            held += len(batch)
            held -= self._release(pending, ready, held)
            limit = int(tracker.lookahead) + self.batch_size
            if held > limit:
                raise RuntimeError(f"tracker: holds back {held} frames, more than its lookahead "
                                   f"{tracker.lookahead} + batch_size {self.batch_size}")
        with torch.no_grad():
            ready = tracker.pop(final=True)
        held -= self._release(pending, ready, held)
        if held or pending:
            raise RuntimeError(f"tracker: {held} frame(s) were pushed but never released by pop(final=True)")
        self.summary.cuts = [int(c) for c in getattr(tracker, "cuts", [])[known_cuts:]]

    def _release(self, pending: deque[FrameBatch], ready: DetectedFaces, held: int) -> int:
        """Swap the first ``ready.num_frames`` pending frames with the faces ``ready``; the number of frames."""
        n = int(ready.num_frames)
        if n > held:
            raise RuntimeError(f"tracker: released {n} frame(s), only {held} pending")
        done = 0
        for group in _take(pending, n):
            self.swap(group, ready.frames(done, done + len(group)))
            done += len(group)
        return n


def _take(pending: deque[FrameBatch], n: int) -> list[FrameBatch]:
    """The first ``n`` frames of ``pending`` (removed from it), joined into batches of one frame size each."""
    pieces: list[FrameBatch] = []
    while n > 0:
        first = pending[0]
        if len(first) <= n:
            pieces.append(pending.popleft())
            n -= len(first)
        else:
            pieces.append(first.slice(0, n))
            pending[0] = first.slice(n, len(first))
            n = 0
    groups: list[list[FrameBatch]] = []
    for piece in pieces:
        if groups and groups[-1][-1].frames.shape[1:] == piece.frames.shape[1:]:
            groups[-1].append(piece)
        else:
            groups.append([piece])
    return [g[0] if len(g) == 1 else FrameBatch.cat(g) for g in groups]


def _in_source(error: Any, start: int, total: int | None, name: str) -> Exception:
    """swap's FramesWithoutFaceError of a batch with the frames numbered in the whole source (``start`` on)."""
    from .swap import FramesWithoutFaceError, describe_skipped

    frames = [start + int(f) for f in error.frames]
    of = f"of {_plural(total, 'frame')}; " if total is not None else ""
    message = (f"{name}: nothing to swap in {describe_skipped(frames, error.reasons)} ({of}detector "
               f"{error.detector}); pass if_no_face='keep' to return such frames unchanged")
    return FramesWithoutFaceError(message, frames, list(error.reasons), total if total is not None else error.total,
                                  error.detector)


def _offset(report: Progress, start: int, total: int | None) -> ProgressFn:
    """swap's progress(done_in_call, total_in_call) as progress over the whole source."""

    def call_progress(done: int, _call_total: int) -> None:
        report(start + done, total)

    return call_progress
