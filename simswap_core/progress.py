"""Progress and timing of the pipeline: progress callbacks and per-stage wall-clock timers.

Two callbacks, both optional in ``FaceSwapper.swap``:

- ``ProgressFn`` ``progress(done, total)``: whole frames finished (int, each value once, increasing).
- ``StepFn`` ``on_step(done, total)``: called after EVERY generator call (and after each batch's detection), with
  ``done`` a float counting the finished fraction of the frame being generated (a 6-face photo advances 1/6 per
  face). Non-decreasing, may repeat a value. Raising from it (e.g. a cancel) stops the swap within one generator
  call.
"""
from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

ProgressFn = Callable[[int, int], None]
StepFn = Callable[[float, int], None]


class StageTimer:
    """Wall-clock seconds per pipeline stage (detect, align, identity, generate, mask, paste).

    Disabled by default (no synchronisation cost). When enabled on CUDA, each stage ends with a synchronize so
    the time lands in the stage that did the work.
    """

    def __init__(self, enabled: bool = False, device: torch.device | None = None):
        self.enabled = enabled
        self.device = device
        self.totals: dict[str, float] = {}

    def reset(self) -> None:
        self.totals = {}

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0


def increasing(progress: ProgressFn | None) -> ProgressFn | None:
    """``progress`` called only when the number of finished frames grows (each value once, in order)."""
    if progress is None:
        return None
    last = -1

    def report(done: int, total: int) -> None:
        nonlocal last
        if done > last:
            last = done
            progress(done, total)

    return report


def frames_done(ends: list[int], faces_done: int) -> float:
    """Frames of a chunk finished when ``faces_done`` faces are generated, with the fraction of the frame in
    progress: ends[j] = faces generated once frame j is complete (cumulative selected faces per frame)."""
    whole = bisect.bisect_right(ends, faces_done)  # frames whose last face is done (frames without faces too)
    if whole >= len(ends):
        return float(len(ends))
    begin = ends[whole - 1] if whole else 0
    size = ends[whole] - begin
    return whole + (faces_done - begin) / size if size > 0 else float(whole)


def frame_progress(progress: ProgressFn | None, start: int, total: int, per_frame: torch.Tensor | Sequence[int],
                   on_step: StepFn | None = None) -> Callable[[int], None] | None:
    """An ``after_batch(faces_done)`` callback for the generator loop of the chunk starting at frame ``start``.

    progress(done, total) gets the whole frames whose faces have all been generated (frame by frame); on_step(done,
    total) is called after every generator call with the fractional count (so a single photo's bar advances face
    by face and a cancel raised there is seen between generator calls). per_frame: [m] selected faces per frame
    of the chunk (host ints, or a tensor: then one host sync)."""
    if progress is None and on_step is None:
        return None
    counts = per_frame.tolist() if isinstance(per_frame, torch.Tensor) else [int(c) for c in per_frame]
    ends = list(itertools.accumulate(counts))  # faces generated when each frame's last face is done

    def after_batch(faces_done: int) -> None:
        done = frames_done(ends, faces_done)
        if progress is not None:
            progress(min(start + int(done), total), total)
        if on_step is not None:
            on_step(min(start + done, float(total)), total)

    return after_batch
