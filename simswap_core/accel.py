"""Generator speed: reduced-precision autocast, torch.compile, CUDA graphs and a face batch from free memory.

The SimSwap generator is ~96 GFLOP per 224 face (spec section 9), so on a GPU it is the whole cost of a swap.
This module holds the ways to run it faster; ``FaceSwapper(precision=, channels_last=, compile=, cuda_graphs=)``
uses them and ``swap.run_generator`` is the one loop over face batches:

* ``autocast(device, precision)``: "bf16" / "fp16" autocast ("fp32" = none). The autocast weight cache is off
  (``cache_enabled=False``): a generator call uses each weight once, and CUDA graph capture needs it off.
* ``GeneratorAccelerator``: the generator as a callable ``(crops [B,3,S,S], latents [B,512]) -> [B,3,S,S]``
  with ``torch.compile`` (a failed compilation falls back to eager with a warning saying why) and CUDA graphs
  (one graph per batch bucket; only on a CUDA device: elsewhere a note says it is not used). Batches are padded
  to a bucket (powers of two up to the face batch size) so compile and graphs see few shapes; the padded rows
  repeat the last face and are dropped (the generator is per-face: eval BatchNorm, instance norm, so the real
  rows are unchanged by padding).
* ``auto_face_batch_size``: faces per generator call from ``torch.cuda.mem_get_info`` and a measured per-face
  footprint (peak memory of two batch sizes), on CUDA; the probes are injectable so the choice is CPU-testable.

What was applied (and what was not, and why) is listed in ``GeneratorAccelerator.notes`` and said by
``FaceSwapper.acceleration()`` (the CLI prints it).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from .errors import InputError

__all__ = [
    "PRECISIONS",
    "GeneratorAccelerator",
    "autocast",
    "auto_face_batch_size",
    "batch_buckets",
    "bucket_for",
    "check_precision",
    "face_footprint",
]

#: generator precision -> autocast dtype (None = plain fp32)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

GeneratorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_precision(precision: object, name: str = "precision") -> str:
    """``precision`` if it is "fp32", "bf16" or "fp16", else InputError naming ``name``."""
    if precision not in PRECISIONS:
        raise InputError(f"{name}: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return str(precision)


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """The autocast context of ``precision`` on ``device`` ("fp32": a null context). Weight cache off."""
    dtype = PRECISIONS[check_precision(precision)]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype, cache_enabled=False)


def batch_buckets(max_batch: int) -> tuple[int, ...]:
    """Batch sizes compiled / captured for a face batch of ``max_batch``: powers of two below it, then itself
    (e.g. 12 -> (1, 2, 4, 8, 12)); a call of n faces runs at the smallest bucket >= n."""
    if max_batch < 1:
        raise InputError(f"face batch size: expected a positive integer, got {max_batch}")
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    return (*out, max_batch)


def bucket_for(n: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket >= n (n itself when larger than every bucket: an unplanned shape runs unpadded)."""
    for b in buckets:
        if b >= n:
            return b
    return n


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x [n,...] with ``rows`` copies of its last row appended (same memory format), or x itself for 0 rows."""
    if rows <= 0:
        return x
    fmt = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
        and not x.is_contiguous() else torch.contiguous_format
    return torch.cat([x, x[-1:].expand(rows, *x.shape[1:])]).contiguous(memory_format=fmt)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


@dataclass
class _Graph:
    """One captured CUDA graph: static inputs it reads and the static output it writes."""

    graph: object
    crops: torch.Tensor
    latents: torch.Tensor
    out: torch.Tensor


def capture_cuda_graph(fn: GeneratorFn, crops: torch.Tensor, latents: torch.Tensor, warmup: int = 2,
                       pool: object | None = None) -> _Graph:
    """Capture ``fn(crops, latents)`` into a ``torch.cuda.CUDAGraph`` (CUDA only): static copies of the inputs,
    ``warmup`` eager calls on a side stream first (compilation, cuDNN autotuning), then one captured call.
    Call it inside the autocast context the replays should use (autocast cache off, see ``autocast``). pool: a
    memory pool shared with the other graphs of the same generator (``torch.cuda.graph_pool_handle()``): safe
    because they never run concurrently and each output is copied out before the next replay."""
    static_crops, static_latents = crops.clone(), latents.clone()
    side = torch.cuda.Stream(device=crops.device)
    side.wait_stream(torch.cuda.current_stream(crops.device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn(static_crops, static_latents)
    torch.cuda.current_stream(crops.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):  # type: ignore[arg-type]
        out = fn(static_crops, static_latents)
    return _Graph(graph, static_crops, static_latents, out)


class GeneratorAccelerator:
    """The generator, optionally compiled and replayed from CUDA graphs:
    ``(crops [B,3,S,S] RGB [0,1] (NCHW or channels_last), latents [B,512] unit norm) -> [B,3,S,S]`` in the
    generator's (autocast) dtype, RGB [0,1]. The result of a graph replay is valid until the next call (copy it
    before calling again; ``swap.run_generator`` does).

    compile: ``torch.compile`` (``compile_fn``, default torch.compile with dynamic=False). When compiling or
    running the compiled code fails, the call is retried eagerly; if that succeeds the compiled path is dropped
    for good, a RuntimeWarning says why and ``notes`` records it (an error of the eager generator itself is
    raised as it is). cuda_graphs: on a CUDA device, one graph per (bucket, crop size, memory format, autocast
    dtype) captured by ``capture`` (default ``capture_cuda_graph``) on first use; elsewhere not used (a note says
    so). max_batch: the face batch size (buckets: ``batch_buckets``). ``capture`` and ``compile_fn`` are
    injectable so the bookkeeping is testable without a GPU.
    """

    def __init__(self, generator: GeneratorFn, device: torch.device | str, *, compile: bool = False,
                 cuda_graphs: bool = False, max_batch: int = 16,
                 compile_fn: Callable[[GeneratorFn], GeneratorFn] | None = None,
                 capture: Callable[[GeneratorFn, torch.Tensor, torch.Tensor], _Graph] | None = None):
        self.generator = generator
        self.device = torch.device(device)
        self.notes: list[str] = []
        self.compiled: GeneratorFn | None = None
        if compile:
            fn = compile_fn or (lambda g: torch.compile(g, dynamic=False))
            try:
                self.compiled = fn(generator)
                self.notes.append("torch.compile")
            except Exception as e:  # torch.compile itself can refuse (unsupported Python, missing backend)
                self._compile_failed(e)
        self.use_graphs = bool(cuda_graphs) and (self.device.type == "cuda" or capture is not None)
        if cuda_graphs and not self.use_graphs:
            self.notes.append(f"CUDA graphs not used: the generator runs on {self.device.type} (they need a CUDA "
                              "device)")
        elif self.use_graphs:
            self.notes.append("CUDA graphs")
        self.capture = capture or self._capture_in_shared_pool
        self._pool: object | None = None
        self.graphs: dict[tuple, _Graph] = {}
        self.set_max_batch(max_batch)

    def _capture_in_shared_pool(self, fn: GeneratorFn, crops: torch.Tensor, latents: torch.Tensor) -> _Graph:
        """``capture_cuda_graph`` with one memory pool for all of this generator's graphs (one per bucket)."""
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        return capture_cuda_graph(fn, crops, latents, pool=self._pool)

    def set_max_batch(self, max_batch: int) -> None:
        """Use buckets up to ``max_batch`` faces (graphs already captured stay cached)."""
        self.buckets = batch_buckets(int(max_batch))

    @property
    def padded(self) -> bool:
        """Whether batches are padded to buckets (only with compile or CUDA graphs: eager needs no fixed shapes)."""
        return self.compiled is not None or self.use_graphs

    def _compile_failed(self, e: BaseException) -> None:
        self.compiled = None
        self.notes = [n for n in self.notes if n != "torch.compile"]
        why = _first_line(e)
        self.notes.append(f"torch.compile failed ({why}); the generator runs uncompiled")
        warnings.warn(f"torch.compile of the generator failed ({why}); running it uncompiled (eager). Set "
                      "compile=False (CLI: drop --compile) to silence this", RuntimeWarning, stacklevel=3)

    def _forward(self, crops: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(crops, latents)
            except Exception as e:
                out = self.generator(crops, latents)   # an error of the generator itself is raised from here
                self._compile_failed(e)
                return out
        return self.generator(crops, latents)

    def __call__(self, crops: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        n = crops.shape[0]
        if n == 0 or not self.padded:
            return self._forward(crops, latents)
        bucket = bucket_for(n, self.buckets)
        if bucket != n:
            crops, latents = _pad_rows(crops, bucket - n), _pad_rows(latents, bucket - n)
        if not self.use_graphs:
            return self._forward(crops, latents)[:n]
        key = self._graph_key(crops, latents)
        entry = self.graphs.get(key)
        if entry is None:
            entry = self.graphs[key] = self.capture(self._forward, crops, latents)
        else:
            entry.crops.copy_(crops)
            entry.latents.copy_(latents)
            entry.graph.replay()  # type: ignore[attr-defined]
        return entry.out[:n]

    def _graph_key(self, crops: torch.Tensor, latents: torch.Tensor) -> tuple:
        dev = self.device.type
        amp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        return (tuple(crops.shape), crops.dtype, crops.is_contiguous(), tuple(latents.shape), latents.dtype, amp)

    def describe(self) -> str:
        """'torch.compile, CUDA graphs' / 'eager' and any fallback notes, for a person."""
        return ", ".join(self.notes) if self.notes else "eager"


# ------------------------------------------------------------------------------------------ batch from memory

def face_footprint(generator: GeneratorFn, crop_size: int, device: torch.device, precision: str, *,
                   channels_last: bool = False, batches: tuple[int, int] = (1, 3)) -> int:
    """Bytes of device memory one more face costs in a generator call (CUDA): the peak allocated memory of two
    batch sizes on random crops, (peak_b - peak_a) / (b - a). Runs the generator twice (no grad)."""
    if device.type != "cuda":
        raise InputError(f"face_footprint: measures CUDA memory; the generator is on {device.type}")
    peaks = []
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for b in batches:
        crops = torch.rand(b, 3, crop_size, crop_size, device=device).contiguous(memory_format=fmt)
        latents = torch.nn.functional.normalize(torch.randn(b, 512, device=device), dim=1)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        with torch.no_grad(), autocast(device, precision):
            generator(crops, latents)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del crops, latents
    return max(1, (peaks[1] - peaks[0]) // (batches[1] - batches[0]))


def auto_face_batch_size(free_bytes: int, per_face_bytes: int, *, fraction: float = 0.5, cap: int = 64
                         ) -> int:
    """Faces per generator call that fit in ``fraction`` of the free device memory at ``per_face_bytes`` each,
    in 1..cap (a larger batch than ~64 224 faces gains nothing on current GPUs and delays the first output)."""
    if per_face_bytes <= 0:
        raise InputError(f"per_face_bytes: expected a positive number of bytes, got {per_face_bytes}")
    return max(1, min(int(cap), int(free_bytes * fraction) // int(per_face_bytes)))


def face_batch_from_memory(generator: GeneratorFn, crop_size: int, device: torch.device, precision: str, *,
                           channels_last: bool = False, cap: int = 64,
                           mem_get_info: Callable[[torch.device], tuple[int, int]] | None = None,
                           footprint: Callable[..., int] | None = None) -> tuple[int, str]:
    """(faces per generator call, a line saying how it was chosen) on a CUDA device: free memory from
    ``mem_get_info`` (default torch.cuda.mem_get_info) and the per-face footprint measured by ``footprint``
    (default ``face_footprint``), half the free memory used, at most ``cap``."""
    mem_get_info = mem_get_info or torch.cuda.mem_get_info
    footprint = footprint or face_footprint
    free, _total = mem_get_info(device)
    per_face = footprint(generator, crop_size, device, precision, channels_last=channels_last)
    batch = auto_face_batch_size(free, per_face, cap=cap)
    return batch, (f"face batch {batch} (free memory {free / 2**30:.1f} GiB, {per_face / 2**20:.0f} MiB per "
                   f"{crop_size}px face at {precision}, half the free memory used, at most {cap})")
