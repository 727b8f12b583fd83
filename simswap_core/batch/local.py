"""One job, run in this process exactly as ``simswap swap`` runs it; and the in-process runner of a batch.

``execute_job`` parses the job's swap arguments with the ``swap`` command's parser and calls the command's own
``cmd_swap`` (so outputs are bit-identical to ``simswap swap`` with the same flags on the same machine), with
two additions: the models come from the worker's ``ModelCache`` (loaded once), and the frames done go to the
batch's progress callback. While the job runs it holds the output's lock (``io.locks.target_lock``), so two
batch workers never write one output; a retried job first removes the temporary files an earlier, killed attempt
left next to the output (``.NAME.*.tmp.EXT``, ``.NAME.simswap-partial-*``). The result is a plain ``JobOutcome``
(picklable: Ray sends it back as is); a job's error never escapes (it is the outcome), Ctrl-C does.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .jobs import Job
from .models import ModelCache

__all__ = ["JobOutcome", "Task", "execute_job", "output_digest", "remove_leftovers"]

ProgressFn = Callable[[str, int, int | None], None]     # (job key = output path, frames done, frames total)


@dataclass
class Task:
    """What a worker is asked to do: the job, whether it may replace its output (the manifest owns it, or
    --overwrite), whether to clear a killed attempt's leftovers first, the attempt number and the device."""

    job: Job
    overwrite: bool = False
    clean: bool = False
    attempt: int = 1
    device: str | None = None


@dataclass
class JobOutcome:
    """How a job ended. ``status``: "done" or "failed" (``error`` says why, in the CLI's words). For a done job:
    the output's ``size`` (bytes; a folder: all its files), ``sha256`` (a folder: of its files' names and
    hashes), ``frames``, ``faces`` swapped, ``models`` {role: {path, size, mtime_ns, sha256}}."""

    out: str
    status: str
    seconds: float = 0.0
    frames: int = 0
    faces: int = 0
    size: int = 0
    sha256: str = ""
    mtime_ns: int = 0
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    worker: str = ""
    attempt: int = 1
    error: str = ""
    warnings: list[str] = field(default_factory=list)


def worker_name() -> str:
    """HOST:PID of this process (where a job ran, for the manifest and the summary)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def output_digest(path: str | os.PathLike) -> tuple[int, str, int]:
    """(size in bytes, sha256 hex, mtime_ns) of an output file; of a folder: total size, the sha256 of the
    sorted "name sha256" lines of the files directly in it, and the folder's mtime_ns."""
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        size = 0
        for child in sorted(p.iterdir()):
            if child.is_file() and not child.name.startswith("."):
                size += child.stat().st_size
                h.update(f"{child.name} {_file_sha256(child)}\n".encode())
        return size, h.hexdigest(), p.stat().st_mtime_ns
    st = p.stat()
    return st.st_size, _file_sha256(p), st.st_mtime_ns


def remove_leftovers(out: str | os.PathLike) -> list[Path]:
    """Remove what an interrupted writer of ``out`` leaves beside it: its temporary files
    (``.STEM.XXXXXXXX.tmpSUFFIX``, io/atomic.py) and staging folders (``.NAME.simswap-partial-*``, FolderSink),
    and a folder output's inner staging folders. Call only while holding the output's lock. Returns what went."""
    p = Path(out)
    folder = p.parent
    if not folder.is_dir():
        return []
    tmp = re.compile(re.escape(f".{p.stem}.") + r"[0-9a-f]{8}\.tmp" + re.escape(p.suffix) + "$")
    gone = []
    candidates = [c for c in folder.iterdir() if tmp.match(c.name) or c.name.startswith(f".{p.name}.simswap-partial-")]
    if p.is_dir():
        candidates += [c for c in p.iterdir() if c.name.startswith(".simswap-partial-")]
    for c in candidates:
        if c.is_dir():
            shutil.rmtree(c, ignore_errors=True)
        else:
            c.unlink(missing_ok=True)
        gone.append(c)
    return gone


class _Progress:
    """The progress callback cmd_swap gets (``args.on_progress``): frames done of this job -> ``report``; a
    context manager like the CLI's ProgressBar."""

    def __init__(self, key: str, report: ProgressFn | None):
        self.key, self.report = key, report

    def __call__(self, done: int, total: int | None) -> None:
        if self.report is not None:
            self.report(self.key, int(done), total)

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


def _message(e: BaseException) -> str:
    """An error in the words the CLI prints (one line; unexpected errors keep their type name)."""
    from ..errors import SimSwapError

    text = " ".join(str(e).split())
    if isinstance(e, (SimSwapError, FileNotFoundError, ValueError)):
        return text
    return f"{type(e).__name__}: {text}"


def execute_job(task: Task, cache: ModelCache, report: ProgressFn | None = None) -> JobOutcome:
    """Run ``task.job`` through ``simswap swap``'s ``cmd_swap`` with the cached models; never raises for a
    job's own error (the outcome is "failed" with the message), only for Ctrl-C / SIGTERM."""
    from ..cli.swap import cmd_swap
    from ..io.atomic import make_folders
    from ..io.locks import target_lock
    from .jobs import swap_namespace

    job = task.job
    outcome = JobOutcome(out=job.out, status="failed", worker=worker_name(), attempt=task.attempt)
    if job.error:
        outcome.error = job.error
        return outcome
    start = time.monotonic()
    try:
        args = swap_namespace(job.argv)
        args.device, args.quiet, args.overwrite = task.device, True, task.overwrite
        args.model_cache = cache
        args.on_progress = _Progress(job.out, report)
        made = make_folders(Path(job.out).parent)
        try:
            with target_lock(job.out, wait=False, label=f"simswap batch ({job.name})"), \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if task.clean:
                    remove_leftovers(job.out)
                cmd_swap(args)
        except BaseException:
            if not Path(job.out).exists():
                from ..io.atomic import remove_empty_folders

                remove_empty_folders(made)
            raise
        outcome.warnings = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
        written, summary = args.swap_result
        outcome.size, outcome.sha256, outcome.mtime_ns = output_digest(written)
        outcome.frames = int(getattr(summary, "frames", 0))
        outcome.faces = int(getattr(summary, "faces_swapped", 0))
        outcome.models = cache.files_of_last_job()
        outcome.status = "done"
    except Exception as e:
        outcome.error = _message(e)
    outcome.seconds = time.monotonic() - start
    return outcome
