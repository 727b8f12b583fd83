"""Shared helpers of the benchmarks in bench/ (not part of simswap_core).

Everything here is plain Python/torch: environment description, seeded weights, the perf anchors, robust
statistics and a tiny fixed-width table printer. Real photos and weights are read or generated at run time and
never written into the repository.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:          # `python bench/x.py` from anywhere imports the checkout's simswap_core
    sys.path.insert(0, str(REPO))

ANCHOR_PATHS = (REPO / "tests" / "fixtures" / "perf_anchors.json", Path("/work/shared/fixtures/perf_anchors.json"))


# ------------------------------------------------------------------------------------------ environment

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available in this torch build / machine")
    return dev


def set_threads(threads: int | None) -> int:
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                keep = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8") if f in flags]
                return ",".join(keep)
    except OSError:
        pass
    return "?"


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def environment(device: torch.device) -> dict:
    env = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "os_cpu_count": os.cpu_count(),
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_capability": _cpu_capability(),
        "mkldnn_bf16_supported": _mkldnn_bf16(),
        "loadavg_1min_start": loadavg(),
    }
    if device.type == "cuda":
        env.update({
            "gpu": torch.cuda.get_device_name(device),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "bf16_supported": torch.cuda.is_bf16_supported(),
        })
    return env


def _cpu_capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - older torch
        return "?"


def _mkldnn_bf16() -> bool | None:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return None


def print_environment(env: dict, title: str) -> None:
    print(f"== {title}")
    keys = ["date_utc", "torch", "device", "torch_threads", "os_cpu_count", "cpu", "cpu_flags", "cpu_capability",
            "mkldnn_bf16_supported", "loadavg_1min_start", "gpu", "cuda", "cudnn", "cudnn_allow_tf32",
            "matmul_allow_tf32", "cudnn_benchmark", "bf16_supported"]
    for k in keys:
        if k in env:
            print(f"   {k:24s} {env[k]}")


# ------------------------------------------------------------------------------------------ timing

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timed(device: torch.device, out: list, cpu_out: list | None = None):
    """Append the wall-clock seconds of the block to `out` (CUDA: synchronised before and after) and, if given,
    the process CPU seconds (all threads) to `cpu_out`."""
    sync(device)
    c0 = time.process_time()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        sync(device)
        out.append(time.perf_counter() - t0)
        if cpu_out is not None:
            cpu_out.append(time.process_time() - c0)


def stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    if not xs:
        return {"n": 0}
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"n": len(xs), "min": xs[0], "p25": q[0], "median": statistics.median(xs), "max": xs[-1]}


# ------------------------------------------------------------------------------------------ weights, anchors

class SeededWeights:
    """Seeded RANDOM weights (simswap_core.models.seeded) in official formats, in `folder` or a temporary folder."""

    def __init__(self, folder: str | None, kinds: tuple[str, ...]):
        from simswap_core.models.seeded import write_seeded_checkpoints

        self._tmp = None
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="simswap_bench_weights_")
            folder = self._tmp.name
        t0 = time.perf_counter()
        self.paths = write_seeded_checkpoints(folder, seed=1234, kinds=kinds)
        self.seconds = time.perf_counter() - t0

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def load_anchors() -> tuple[dict | None, Path | None]:
    for p in ANCHOR_PATHS:
        if p.is_file():
            return json.loads(p.read_text()), p
    return None, None


# ------------------------------------------------------------------------------------------ output

def table(rows: list[list], header: list[str], align: str | None = None) -> str:
    """Fixed-width text table; `align` is one char per column, 'l' or 'r' (default: first l, rest r)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or ("l" + "r" * (len(header) - 1))

    def fmt(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align))

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def write_json(path: str | None, data: dict) -> None:
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"\nwrote {p}")
