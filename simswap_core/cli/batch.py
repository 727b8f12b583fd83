"""``simswap batch JOBS``: many swaps from a CSV / JSON-lines job file, here or on a Ray cluster, resumable."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InputError
from .common import add_common, int_in, positive_int


def add_parser(sub: Any) -> None:
    """Register ``batch`` and its flags on the subparsers ``sub``."""
    s = sub.add_parser(
        "batch", help="run many swaps from a job file (CSV or JSON lines), here or on a Ray cluster",
        description="Run every job of JOBS (a CSV with a header row, or one JSON object per line) as `simswap swap` "
                    "would: the keys are swap's flags without dashes (source, target, out, faces, mask, size, map, "
                    "color_match, ...) plus an optional id. Relative paths are relative to the job file. A "
                    "manifest records each finished job (output size and sha256, frames, settings, model hashes); a "
                    "rerun skips finished jobs and redoes interrupted, failed or changed ones. Outputs are written "
                    "atomically. A bad job fails alone; the exit status is 1 when any job failed (each is named). "
                    "See docs/batch.md.")
    s.add_argument("jobs", metavar="JOBS", help="job file: .csv, or .jsonl / .ndjson (one JSON object per line)")
    s.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="run on Ray (optional extra: pip install \"ray>=2.40\"): auto = the cluster `ray start` "
                        "made on this machine (else a local one, said so), local = a new one-machine cluster, or a "
                        "cluster address (HOST:6379, ray://HOST:10001). Without --ray: one job at a time here")
    s.add_argument("--workers", type=positive_int, default=None,
                   help="--ray: swapper actors (default: one per GPU; without GPUs, CPUs // --cpus-per-worker)")
    s.add_argument("--cpus-per-worker", type=positive_int, default=2,
                   help="--ray: CPUs each worker reserves for decoding / encoding (and torch on a CPU-only "
                        "cluster); default 2")
    s.add_argument("--retries", type=int_in(0, 20, "an integer 0..20"), default=2,
                   help="--ray: how often a job whose worker was lost (killed, node gone) is retried; default 2")
    s.add_argument("--manifest", default=None, metavar="FILE",
                   help="the manifest (default: JOBS' name with .manifest.json, beside it)")
    s.add_argument("--dry-run", action="store_true",
                   help="list what would run, be skipped or fail (and why), then stop; nothing is written")
    s.add_argument("--redo", action="store_true", help="run every job again, also finished ones")
    s.add_argument("--verify", action="store_true",
                   help="also check finished outputs' sha256 against the manifest (reads every output)")
    add_common(s)
    s.set_defaults(func=cmd_batch)


class _BatchBar:
    """One tqdm bar over the frames of every job that runs (ETA from tqdm), jobs done / failed in its text."""

    def __init__(self, rows: list[Any], quiet: bool):
        from tqdm import tqdm

        self.expected = {r.job.out: r.frames_expected for r in rows if r.decision.action in ("run", "redo")}
        total = sum(v for v in self.expected.values() if v) or None
        self.bar = tqdm(total=total, desc="batch", unit="frame", disable=quiet, dynamic_ncols=True)
        self.done: dict[str, int] = {}
        self.jobs = len(self.expected)
        self.finished = self.failed = 0
        self._text()

    def _text(self) -> None:
        self.bar.set_postfix_str(f"jobs {self.finished}/{self.jobs}" + (f", {self.failed} failed" if self.failed
                                                                       else ""), refresh=False)

    def progress(self, out: str, done: int, total: int | None, worker: str) -> None:
        if total is not None and self.expected.get(out) != total:      # the estimate was off (or unknown)
            self.bar.total = (self.bar.total or 0) - (self.expected.get(out) or 0) + total
            self.expected[out] = total
        step = done - self.done.get(out, 0)       # a retried job starts again from 0: the bar may step back
        self.done[out] = done
        self.bar.update(step)

    def job_finished(self, failed: bool) -> None:
        self.finished += 1
        self.failed += int(failed)
        self._text()
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def cmd_batch(args: argparse.Namespace) -> int:
    from ..batch.driver import plan, print_lines, run_batch, summary_table
    from ..batch.jobs import parse_jobs
    from ..batch.manifest import Manifest, default_manifest_path
    from .common import device

    if args.ray is None and args.workers not in (None, 1):
        raise InputError(f"--workers {args.workers}: several workers need --ray (auto, local or a cluster address); "
                         "without --ray the jobs run one at a time in this process")
    if args.device is not None and args.ray is None:
        device(args.device)                       # the CLI's check of --device, before any job
    jobs = parse_jobs(args.jobs)
    manifest = Manifest(args.manifest or default_manifest_path(args.jobs))
    rows = plan(jobs, manifest, overwrite=args.overwrite, redo=args.redo, verify=args.verify)
    if args.dry_run:
        for r in rows:
            frames = f"{r.frames_expected} frame(s)" if r.frames_expected is not None else ""
            what = {"run": "run", "redo": "redo", "skip": "skip", "fail": "FAIL"}[r.decision.action]
            reason = "" if r.decision.action == "run" else f" ({r.decision.reason})"
            print(f"{what:<5} {r.job.name}: {r.job.out or '-'}{reason} {frames}".rstrip())
        c: dict[str, int] = {}
        for r in rows:
            c[r.decision.action] = c.get(r.decision.action, 0) + 1
        print(f"{len(rows)} job(s): {c.get('run', 0)} to run, {c.get('redo', 0)} to redo, {c.get('skip', 0)} "
              f"finished (skipped), {c.get('fail', 0)} failing (manifest {manifest.path}); nothing was run")
        return 0

    runner: Any
    if args.ray is not None and any(r.decision.action in ("run", "redo") for r in rows):
        from ..batch.ray_runner import RayRunner, connect

        said = connect(args.ray)
        if not args.quiet:
            print(said, file=sys.stderr)
        runner = RayRunner(said, workers=args.workers, cpus_per_worker=args.cpus_per_worker, retries=args.retries)
    else:
        from ..batch.driver import LocalRunner

        runner = LocalRunner()
    bar = _BatchBar(rows, args.quiet)
    try:
        report = run_batch(rows, manifest, runner, device=args.device, progress=bar.progress,
                           on_finished=lambda row: bar.job_finished(row.status != "done"))
    finally:
        bar.close()
    if not args.quiet or report.failed:
        print_lines(summary_table(report) if not args.quiet else
                    [f"failed: {r.job.name}: {r.error}" for r in report.failed])
    return 1 if report.failed else 0
