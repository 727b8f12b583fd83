"""The one frame loop: every batch of a ``FrameSource`` through ``FaceSwapper.swap`` into a ``FrameSink``.

    summary = run(open_source("clip.mp4"), swapper, open_sink("out.mp4", source), identity, batch_size=8)

The sink commits its output only when every batch went through and the frame count is the source's
(``sink.close()``); on any exception, Ctrl-C or SIGTERM (turned into an exception by the CLI) it is aborted
(``sink.abort()``: no complete-looking output is left) and the exception is raised again.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .errors import InputError
from .io.frames import FrameSink, FrameSource
from .progress import ProgressFn, increasing

if TYPE_CHECKING:
    from .faces import DetectedFaces
    from .identity import Identity

Progress = Callable[[int, int | None], None]


@dataclass
class RunSummary:
    """frames: frames written; faces_swapped: faces swapped over all frames; frames_without_face: indices (in the
    whole source) of the frames left unchanged because no selected face was found."""

    frames: int = 0
    faces_swapped: int = 0
    frames_without_face: list[int] = field(default_factory=list)


def run(source: FrameSource, swapper: Any, sink: FrameSink, identity: Identity, *, batch_size: int = 8,
        progress: Progress | None = None, faces: DetectedFaces | None = None, **swap_options: Any) -> RunSummary:
    """Swap ``identity`` into every frame of ``source`` and write the results to ``sink``.

    swapper: a ``FaceSwapper`` (anything with ``swap(frames [B,3,H,W], identity, *, batch_size, progress, ...)``
    returning ``.images``, ``.faces``, ``.frames_without_face``). batch_size: frames read and swapped per call.
    progress(done, total): frames finished over the whole source (increasing, ends at the frame count; total is
    ``source.total``, None when unknown). faces: a ``DetectedFaces`` of ALL frames of the source (optional; each
    batch gets ``faces.frames(start, stop)`` so nothing is detected again). swap_options: passed to ``swap``.
    """
    if faces is not None and source.total is not None and faces.num_frames != source.total:
        raise InputError(f"faces: expected the detected faces of the {source.total} frame(s) of {source.name}, "
                         f"got {faces.num_frames} frame(s)")
    total = source.total
    report = cast("Progress | None", increasing(cast("ProgressFn | None", progress)))
    summary = RunSummary()
    try:
        for batch in source.batches(batch_size):
            options = dict(swap_options)
            if faces is not None:
                options["faces"] = faces.frames(batch.start, batch.stop)
            call_progress = None if report is None else _offset(report, batch.start, total)
            result = swapper.swap(batch.frames, identity, batch_size=batch_size, progress=call_progress, **options)
            sink.write(batch, result)
            summary.frames += len(batch)
            summary.faces_swapped += len(result.faces)
            summary.frames_without_face += [batch.start + int(i) for i in result.frames_without_face]
            if report is not None:
                report(batch.stop, total)
        if total is not None and summary.frames != total:
            raise InputError(f"{source.name}: {summary.frames} frame(s) read of the {total} expected; "
                             "nothing was written")
        sink.close()
    except BaseException:
        with signals_held():
            sink.abort()          # a second Ctrl-C / SIGTERM waits until the temporary output is gone
        raise
    return summary


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while inside (delivered on leaving), in the main thread of a POSIX process."""
    can = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held) if can else None
    try:
        yield
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _offset(report: Progress, start: int, total: int | None) -> ProgressFn:
    """swap's progress(done_in_call, total_in_call) as progress over the whole source."""

    def call_progress(done: int, _call_total: int) -> None:
        report(start + done, total)

    return call_progress
