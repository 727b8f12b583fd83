"""The manifest of a batch: one record per output, what makes a rerun skip finished jobs and redo the rest.

A JSON file (default: beside the job file, ``JOBS.manifest.json``) written by the batch's driver only, always
whole and atomically (``io.atomic``: a killed driver leaves the previous complete manifest), and locked for the
whole run (``io.locks``: a second ``simswap batch`` on the same manifest is refused, naming the first). Records,
keyed by the output's absolute path::

    {"state": "done" | "started" | "failed", "name": ..., "line": N, "fingerprint": ..., "settings": {"argv": [...]},
     "output": {"path", "size", "sha256", "mtime_ns"}, "frames": N, "faces": N,
     "models": {"generator": {"path", "size", "mtime_ns", "sha256"}, ...}, "attempts": N, "worker": "HOST:PID",
     "started_at": ISO, "finished_at": ISO, "seconds": S, "error": "...", "warnings": [...]}

``decide`` says what a job needs: skip (done, same settings and inputs, output and model files unchanged), redo
(a started record = interrupted; a failed one; settings / inputs / models / output changed or output gone) or run
(never seen). The fingerprint hashes the job's swap arguments and its inputs' sizes and mtimes
(``jobs.input_fingerprint``); outputs are checked by size and mtime (``verify``: also sha256).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError
from .jobs import Job, input_fingerprint
from .local import JobOutcome, output_digest

__all__ = ["Decision", "Manifest", "default_manifest_path", "job_fingerprint"]

VERSION = 1


def default_manifest_path(jobs_file: str | os.PathLike) -> Path:
    """``jobs.csv`` -> ``jobs.manifest.json`` in the same folder."""
    p = Path(jobs_file)
    return p.with_name(f"{p.stem}.manifest.json")


def job_fingerprint(job: Job) -> str:
    """sha256 (32 hex) of the job's swap arguments and its inputs' names, sizes and mtimes."""
    text = json.dumps(job.argv) + "|" + input_fingerprint(job.inputs)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Decision:
    """What to do with a job: ``action`` "run" | "redo" | "skip" | "fail"; ``reason`` in words; ``overwrite``:
    the job may replace its output (the manifest wrote it, or --overwrite); ``clean``: remove an interrupted
    attempt's temporary files first."""

    action: str
    reason: str
    overwrite: bool = False
    clean: bool = False


class Manifest:
    """The records of one manifest file (read at construction; ``save()`` writes all of them atomically)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise InputError(f"--manifest {self.path}: not a readable manifest ({e}); move it away to start "
                                 "afresh") from None
            if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("jobs"),
                                                                                             dict):
                raise InputError(f"--manifest {self.path}: not a simswap batch manifest (version {VERSION}); move "
                                 "it away to start afresh")
            self.records = {str(k): v for k, v in data["jobs"].items() if isinstance(v, dict)}

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the manifest's lock (one batch driver per manifest) for the ``with`` block."""
        from ..io.atomic import make_folders
        from ..io.locks import target_lock

        make_folders(self.path.parent)
        with target_lock(self.path, wait=False, label="simswap batch"):
            yield

    def save(self) -> None:
        """Write every record, atomically (a reader never sees half a manifest)."""
        from ..io.atomic import atomic_write

        text = json.dumps({"version": VERSION, "jobs": self.records}, indent=1, sort_keys=True)
        atomic_write(self.path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"), overwrite=True)

    # ----------------------------------------------------------------------------------------- decisions

    def decide(self, job: Job, *, overwrite: bool = False, redo: bool = False, verify: bool = False) -> Decision:
        """What ``job`` needs (see the module text). ``overwrite``: an existing output this manifest did not write
        may be replaced (else that job fails, as ``simswap swap`` without --overwrite); ``redo``: run every job
        again; ``verify``: compare the output's sha256 too (reads every finished output)."""
        if job.error:
            return Decision("fail", job.error)
        rec = self.records.get(job.out)
        exists = os.path.lexists(job.out)
        if rec is None:
            if exists and not overwrite:
                return Decision("fail", f"{job.out}: already exists and this manifest did not write it; pass "
                                        "--overwrite to replace it")
            return Decision("run", "new", overwrite=overwrite)
        state = rec.get("state")
        if state == "started":
            return Decision("redo", f"interrupted (attempt {rec.get('attempts', 1)} did not finish)",
                            overwrite=True, clean=True)
        if state != "done":
            return Decision("redo", "failed before", overwrite=True, clean=True)
        if redo:
            return Decision("redo", "--redo", overwrite=True, clean=True)
        if rec.get("fingerprint") != job_fingerprint(job):
            return Decision("redo", "settings or inputs changed", overwrite=True, clean=True)
        if not exists:
            return Decision("redo", "output missing", overwrite=True, clean=True)
        for role, m in (rec.get("models") or {}).items():
            p = Path(str(m.get("path", "")))
            if p.is_file():
                st = p.stat()
                if (st.st_size, st.st_mtime_ns) != (m.get("size"), m.get("mtime_ns")):
                    return Decision("redo", f"{role} model file {p.name} changed", overwrite=True, clean=True)
        out = rec.get("output") or {}
        try:
            st = os.stat(job.out)
        except OSError:
            return Decision("redo", "output unreadable", overwrite=True, clean=True)
        if not Path(job.out).is_dir() and (st.st_size, st.st_mtime_ns) != (out.get("size"), out.get("mtime_ns")):
            return Decision("redo", "output changed since it was written", overwrite=True, clean=True)
        if verify:
            size, sha, _ = output_digest(job.out)
            if (size, sha) != (out.get("size"), out.get("sha256")):
                return Decision("redo", "output differs from its recorded sha256", overwrite=True, clean=True)
        return Decision("skip", "done")

    # ----------------------------------------------------------------------------------------- records

    def _base(self, job: Job) -> dict[str, Any]:
        rec = self.records.get(job.out, {})
        return {"name": job.name, "line": job.line, "fingerprint": job_fingerprint(job) if not job.error else "",
                "settings": job.settings(), "attempts": int(rec.get("attempts", 0))}

    def mark_started(self, job: Job, attempt: int) -> None:
        """The job was handed to a worker (a rerun redoes it unless a later record says done)."""
        rec = self._base(job)
        rec.update(state="started", attempts=attempt, started_at=_now())
        self.records[job.out] = rec
        self.save()

    def mark_finished(self, job: Job, outcome: JobOutcome) -> None:
        """Record a done or failed outcome."""
        rec = self._base(job)
        rec.update(state=outcome.status, attempts=max(outcome.attempt, rec["attempts"]), worker=outcome.worker,
                   finished_at=_now(), seconds=round(outcome.seconds, 3), warnings=outcome.warnings)
        rec["started_at"] = self.records.get(job.out, {}).get("started_at", rec["finished_at"])
        if outcome.status == "done":
            rec.update(output={"path": job.out, "size": outcome.size, "sha256": outcome.sha256,
                               "mtime_ns": outcome.mtime_ns},
                       frames=outcome.frames, faces=outcome.faces, models=outcome.models)
        else:
            rec["error"] = outcome.error
        if job.out:
            self.records[job.out] = rec
            self.save()
