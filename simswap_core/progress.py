"""Progress and timing of the pipeline: frame-by-frame progress callbacks and per-stage wall-clock timers."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

ProgressFn = Callable[[int, int], None]


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


def frame_progress(progress: ProgressFn | None, start: int, total: int,
                   per_frame: torch.Tensor) -> Callable[[int], None] | None:
    """An ``after_batch(faces_done)`` callback for the generator loop: reports, per frame, the frames of the chunk
    starting at ``start`` whose faces have all been generated (so a progress bar advances frame by frame, and a
    cancel is seen between generator calls). per_frame: [m] selected faces per frame of the chunk."""
    if progress is None:
        return None
    ends = torch.cumsum(per_frame, 0).tolist()  # faces generated when each frame's last face is done

    def after_batch(faces_done: int) -> None:
        progress(min(start + sum(1 for e in ends if e <= faces_done), total), total)

    return after_batch
