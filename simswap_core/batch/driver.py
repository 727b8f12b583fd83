"""The batch driver: decide each job against the manifest, hand the work to a runner, record every outcome.

    jobs = parse_jobs("jobs.csv")
    report = run_batch(jobs, Manifest("jobs.manifest.json"), LocalRunner())        # or RayRunner(...)

Runners (``LocalRunner`` here, ``ray_runner.RayRunner``) take the tasks and call back ``started(task)`` when a
worker takes a job (again for a retry), ``progress(out, done, total, worker)`` with the frames done of a job,
and ``finished(task, outcome)`` once per job. The driver is the manifest's only writer: started jobs are
recorded before any frame is written, so a killed batch is redone from its started records on the next run.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .jobs import Job
from .local import JobOutcome, Task, execute_job
from .manifest import Decision, Manifest
from .models import ModelCache

__all__ = ["BatchReport", "JobRow", "LocalRunner", "Runner", "count_frames", "plan", "run_batch"]

ProgressFn = Callable[[str, int, "int | None", str], None]   # (output, frames done, total, worker)


class Runner(Protocol):
    """Runs tasks somewhere (this process, a Ray cluster) and reports back through the three callbacks."""

    def run(self, tasks: list[Task], started: Callable[[Task], None], progress: ProgressFn,
            finished: Callable[[Task, JobOutcome], None]) -> None: ...

    def describe(self) -> str: ...


class LocalRunner:
    """One job after the other in this process, the models loaded once (``ModelCache``)."""

    def __init__(self) -> None:
        self.cache = ModelCache()

    def describe(self) -> str:
        return "in this process (one job at a time)"

    def run(self, tasks: list[Task], started: Callable[[Task], None], progress: ProgressFn,
            finished: Callable[[Task, JobOutcome], None]) -> None:
        from .local import worker_name

        me = worker_name()
        for task in tasks:
            started(task)
            outcome = execute_job(task, self.cache, lambda out, done, total: progress(out, done, total, me))
            finished(task, outcome)


@dataclass
class JobRow:
    """One job of the report: its decision, the frames it should have (None = unknown) and how it ended
    (``outcome`` None for skipped jobs and jobs that failed before running)."""

    job: Job
    decision: Decision
    frames_expected: int | None = None
    outcome: JobOutcome | None = None

    @property
    def status(self) -> str:
        """"skipped", "done", "failed" or "pending" (not run, e.g. a dry run)."""
        if self.decision.action == "skip":
            return "skipped"
        if self.decision.action == "fail":
            return "failed"
        return self.outcome.status if self.outcome is not None else "pending"

    @property
    def error(self) -> str:
        if self.decision.action == "fail":
            return self.decision.reason
        return self.outcome.error if self.outcome is not None else ""


@dataclass
class BatchReport:
    """Every job's row, in job-file order, and the wall time of the run."""

    rows: list[JobRow] = field(default_factory=list)
    seconds: float = 0.0
    runner: str = ""

    @property
    def failed(self) -> list[JobRow]:
        return [r for r in self.rows if r.status == "failed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def count_frames(job: Job) -> int | None:
    """Frames of the job's target as its source would count them (None when unknown or unreadable: the job
    itself then says why)."""
    import warnings

    from ..io.frames import open_source

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            total = open_source(job.target, "cpu", allow_partial=True).total
    except Exception:
        return None
    return int(total) if total is not None else None


def plan(jobs: list[Job], manifest: Manifest, *, overwrite: bool = False, redo: bool = False,
         verify: bool = False, count: bool = True) -> list[JobRow]:
    """A row per job with the manifest's decision and (``count``) the frames to run."""
    rows = []
    for job in jobs:
        decision = manifest.decide(job, overwrite=overwrite, redo=redo, verify=verify)
        frames = count_frames(job) if count and decision.action in ("run", "redo") else None
        rows.append(JobRow(job, decision, frames))
    return rows


def run_batch(rows: list[JobRow], manifest: Manifest, runner: Runner, *, device: str | None = None,
              progress: ProgressFn | None = None,
              on_finished: Callable[[JobRow], None] | None = None) -> BatchReport:
    """Run the rows whose decision is run / redo on ``runner``, recording each start and outcome in ``manifest``
    (held locked); jobs decided "fail" are recorded as failed without running. ``progress`` gets every
    frames-done report, ``on_finished`` every row once its outcome is recorded (retries of lost workers are the
    runner's business)."""
    start = time.monotonic()
    by_out = {r.job.out: r for r in rows}
    tasks = [Task(r.job, overwrite=r.decision.overwrite, clean=r.decision.clean, device=device)
             for r in rows if r.decision.action in ("run", "redo")]

    def started(task: Task) -> None:
        manifest.mark_started(task.job, task.attempt)

    def finished(task: Task, outcome: JobOutcome) -> None:
        row = by_out[task.job.out]
        row.outcome = outcome
        manifest.mark_finished(task.job, outcome)
        if on_finished is not None:
            on_finished(row)

    def report(out: str, done: int, total: int | None, worker: str) -> None:
        if progress is not None:
            progress(out, done, total, worker)

    with manifest.locked():
        for r in rows:
            if r.decision.action == "fail" and r.job.out:
                manifest.mark_finished(r.job, JobOutcome(out=r.job.out, status="failed", error=r.decision.reason))
        if tasks:
            runner.run(tasks, started, report, finished)
    return BatchReport(rows, time.monotonic() - start, runner.describe())


def summary_table(report: BatchReport) -> list[str]:
    """The lines printed after a batch: one per job (status, frames, faces, time, fps, output or reason) and the
    totals; failures repeated at the end, each named."""
    lines = [f"{'job':<16} {'status':<8} {'frames':>7} {'faces':>6} {'secs':>7} {'fps':>6}  output / reason"]
    frames = faces = 0
    for r in report.rows:
        o = r.outcome
        name = r.job.name if len(r.job.name) <= 16 else r.job.name[:15] + "~"
        if o is not None and o.status == "done":
            fps = o.frames / o.seconds if o.seconds > 0 else 0.0
            frames += o.frames
            faces += o.faces
            tail = r.job.out + (f" (attempt {o.attempt})" if o.attempt > 1 else "")
            lines.append(f"{name:<16} {'done':<8} {o.frames:>7} {o.faces:>6} {o.seconds:>7.1f} {fps:>6.1f}  {tail}")
        elif r.status == "skipped":
            lines.append(f"{name:<16} {'skipped':<8} {'':>7} {'':>6} {'':>7} {'':>6}  {r.job.out} (already done)")
        else:
            lines.append(f"{name:<16} {r.status:<8} {'':>7} {'':>6} {'':>7} {'':>6}  {r.error or r.decision.reason}")
    c = report.counts()
    lines.append(f"{len(report.rows)} job(s): {c.get('done', 0)} done, {c.get('skipped', 0)} skipped, "
                 f"{c.get('failed', 0)} failed; {frames} frame(s), {faces} face(s) swapped in "
                 f"{report.seconds:.1f} s ({report.runner})")
    for r in report.failed:
        lines.append(f"failed: {r.job.name}: {r.error}")
    return lines


def print_lines(lines: list[str], file: Any = None) -> None:
    for line in lines:
        print(line, file=file or sys.stderr)
