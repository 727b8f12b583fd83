"""Jobs on a Ray cluster: one swapper actor per GPU (or per CPU slot), each holding its models once.

    runner = RayRunner(connect("auto"), workers=None, cpus_per_worker=2, retries=2)
    report = run_batch(rows, manifest, runner)

Each ``SwapWorker`` actor owns a ``ModelCache`` and runs one job at a time with ``local.execute_job`` (the same
path as ``simswap swap``): the job's reader thread decodes on the actor's CPUs while the generator runs on its GPU,
and the writer thread encodes, so decode, compute and encode overlap inside the actor (``run.run``). Work in flight
is bounded: each actor has exactly one job; the rest wait in the driver as plain job descriptions (a few hundred
bytes each), so memory does not grow with the number of jobs. Frames are never sent through Ray's object store:
every worker reads its target from and writes its output to the (shared) file system.

A lost worker (its process killed, its node gone, out of memory) makes ``ray.get`` raise an actor error: the job
goes back to the front of the queue with ``attempt + 1`` and ``clean`` (the new attempt first removes the killed
one's temporary files, holding the output's lock) and a replacement actor is started; after ``retries`` lost
attempts the job fails naming the last error. A job's own error (a missing file, no face) is not retried: it is
the job's outcome. Frames done are reported through a ``ProgressBoard`` actor the driver polls.

Ray is imported only here and only when a runner is made (``pip install "ray>=2.40"`` or the ``[ray]`` extra).
"""
from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import DependencyError, InputError
from .local import JobOutcome, Task

__all__ = ["RayRunner", "connect", "import_ray"]

POLL_S = 0.2
START_TIMEOUT_S = 600.0


def import_ray() -> Any:
    """The ``ray`` module, or DependencyError with the install command."""
    try:
        import ray
    except ImportError as e:
        raise DependencyError(f"simswap batch --ray needs Ray, which is not installed ({e}); install it with "
                              "`pip install \"ray>=2.40\"` (or `pip install -e .[ray]` in this pack's folder), or "
                              "run the batch without --ray (one process)") from None
    return ray


def _forwarded_env() -> dict[str, str]:
    """The SIMSWAP_* variables of the driver (model folders, debug), given to every worker."""
    return {k: v for k, v in os.environ.items() if k.startswith("SIMSWAP_")}


def connect(address: str, **init_kwargs: Any) -> str:
    """Connect to Ray: ``local`` starts a one-machine cluster, ``auto`` joins the cluster ``ray start`` made on
    this machine (or, when there is none, starts a local one and says so), anything else is a cluster address
    (``HOST:6379`` or ``ray://HOST:10001``). Returns one line saying what was done. An already initialised Ray
    (a caller's ``ray.init``) is used as is."""
    ray = import_ray()
    if ray.is_initialized():
        return "Ray: using the cluster this process is already connected to"
    kw: dict[str, Any] = {"runtime_env": {"env_vars": _forwarded_env()}, "log_to_driver": False,
                          "include_dashboard": False, **init_kwargs}
    if address == "local":
        ray.init(**kw)
        return "Ray: started a local cluster on this machine"
    if address == "auto":
        try:
            ray.init(address="auto", **{k: v for k, v in kw.items() if k not in ("include_dashboard", "num_cpus",
                                                                                 "num_gpus")})
            return "Ray: joined the running cluster (ray start)"
        except ConnectionError:
            ray.init(**kw)
            return "Ray: no running cluster found (no `ray start` on this machine): started a local one"
    try:
        ray.init(address=address, **{k: v for k, v in kw.items() if k not in ("include_dashboard", "num_cpus",
                                                                              "num_gpus")})
    except ConnectionError as e:
        raise InputError(f"--ray {address}: cannot connect to a Ray cluster there ({e}); start one with `ray start "
                         "--head` and pass its address, or use --ray local") from None
    return f"Ray: connected to {address}"


class _Board:
    """Frames done per job, written by the workers (fire and forget), read by the driver."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[int, int | None, str]] = {}

    def report(self, out: str, done: int, total: int | None, worker: str) -> None:
        self.state[out] = (done, total, worker)

    def snapshot(self) -> dict[str, tuple[int, int | None, str]]:
        return dict(self.state)


class _SwapWorker:
    """A swapper actor: a ModelCache (models loaded once) and one job at a time."""

    def __init__(self, threads: int | None) -> None:
        import torch

        from .models import ModelCache

        self.threads = threads
        if threads:
            torch.set_num_threads(threads)
        self.cache = ModelCache()

    def name(self) -> str:
        from .local import worker_name

        return worker_name()

    def run(self, task: Task, board: Any) -> JobOutcome:
        from .local import execute_job, worker_name

        if self.threads:          # in the thread that runs the job: OpenMP's thread count is per calling thread
            import torch

            torch.set_num_threads(self.threads)
        me = worker_name()
        return execute_job(task, self.cache,
                           lambda out, done, total: board.report.remote(out, done, total, me))


class RayRunner:
    """Runs tasks on the connected Ray cluster.

    workers: actors to start (default: one per GPU of the cluster; without GPUs, cluster CPUs // cpus_per_worker,
    at least 1). cpus_per_worker: CPUs each actor reserves (decode / encode threads, and torch's threads when it
    runs on the CPU). gpus_per_worker: default 1 when the cluster has GPUs, else 0. retries: lost-worker retries
    per job."""

    def __init__(self, connected: str = "", *, workers: int | None = None, cpus_per_worker: int = 2,
                 gpus_per_worker: float | None = None, retries: int = 2):
        self.ray = import_ray()
        if not self.ray.is_initialized():
            raise InputError("RayRunner: connect to Ray first (batch.ray_runner.connect)")
        res = self.ray.cluster_resources()
        gpus = float(res.get("GPU", 0))
        cpus = float(res.get("CPU", 1))
        self.gpus_per_worker = (1.0 if gpus >= 1 else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
        self.cpus_per_worker = max(1, int(cpus_per_worker))
        if workers is None:
            workers = int(gpus // self.gpus_per_worker) if self.gpus_per_worker > 0 else \
                max(1, int(cpus // self.cpus_per_worker))
        if workers < 1:
            raise InputError(f"--workers: expected at least 1, got {workers}")
        self.workers = workers
        self.retries = int(retries)
        self.connected = connected
        self.names: dict[Any, str] = {}     # actor -> HOST:PID once it answered
        self.lost = 0                       # workers lost during the run
        self._actor_cls = self.ray.remote(_SwapWorker)

    def describe(self) -> str:
        where = f"{self.gpus_per_worker:g} GPU + " if self.gpus_per_worker > 0 else ""
        return f"Ray, {self.workers} worker(s) of {where}{self.cpus_per_worker} CPU"

    def _new_actor(self) -> tuple[Any, Any]:
        """A new swapper actor and the ref of its first answer (its HOST:PID; ready = it started)."""
        cls = self._actor_cls.options(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                                      max_restarts=0, max_concurrency=1)
        threads = self.cpus_per_worker if self.gpus_per_worker == 0 else None
        actor = cls.remote(threads)
        return actor, actor.name.remote()

    def run(self, tasks: list[Task], started: Callable[[Task], None],
            progress: Callable[[str, int, int | None, str], None],
            finished: Callable[[Task, JobOutcome], None]) -> None:
        ray = self.ray
        from ray.exceptions import RayActorError, RayError, RayTaskError

        board = ray.remote(_Board).options(num_cpus=0).remote()
        pending: deque[Task] = deque(tasks)
        starting: dict[Any, Any] = {}               # ping ref -> actor
        free: list[Any] = []
        inflight: dict[Any, tuple[Any, Task]] = {}  # job ref -> (actor, task)
        for _ in range(min(self.workers, len(tasks))):
            actor, ping = self._new_actor()
            starting[ping] = actor
        seen: dict[str, tuple[int, int | None, str]] = {}
        last_up = time.monotonic()
        try:
            while pending or inflight:
                while pending and free:
                    actor = free.pop()
                    task = pending.popleft()
                    started(task)
                    inflight[actor.run.remote(task, board)] = (actor, task)
                refs = list(inflight) + list(starting)
                ready, _ = ray.wait(refs, num_returns=1, timeout=POLL_S) if refs else ([], [])
                for out, state in ray.get(board.snapshot.remote()).items():
                    if seen.get(out) != state:
                        seen[out] = state
                        progress(out, *state)
                for ref in ready:
                    if ref in starting:
                        actor = starting.pop(ref)
                        try:
                            self.names[actor] = ray.get(ref)
                            free.append(actor)
                            last_up = time.monotonic()
                        except RayError:
                            self.lost += 1
                        continue
                    actor, task = inflight.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except RayTaskError as e:         # an error outside the job's own handling: not retried
                        free.append(actor)
                        outcome = JobOutcome(out=task.job.out, status="failed", attempt=task.attempt,
                                             worker=self.names.get(actor, ""), error=" ".join(str(e).split())[:2000])
                    except (RayActorError, RayError) as e:   # the worker died: retry elsewhere
                        self.lost += 1
                        ray.kill(actor, no_restart=True)
                        replacement, ping = self._new_actor()
                        starting[ping] = replacement
                        if task.attempt <= self.retries:
                            pending.appendleft(Task(task.job, overwrite=task.overwrite, clean=True,
                                                    attempt=task.attempt + 1, device=task.device))
                            continue
                        outcome = JobOutcome(out=task.job.out, status="failed", attempt=task.attempt,
                                             worker=self.names.get(actor, ""),
                                             error=f"worker lost {task.attempt} time(s), last: "
                                                   f"{type(e).__name__}: {' '.join(str(e).split())[:500]}")
                    else:
                        free.append(actor)
                    finished(task, outcome)
                if pending and not free and not inflight and not starting:
                    for task in pending:
                        finished(task, JobOutcome(out=task.job.out, status="failed", attempt=task.attempt,
                                                  error=f"no Ray worker left ({self.lost} lost or failed to start)"))
                    pending.clear()
                if pending and not free and not inflight and starting and \
                        time.monotonic() - last_up > START_TIMEOUT_S:
                    for task in pending:
                        finished(task, JobOutcome(out=task.job.out, status="failed", attempt=task.attempt,
                                                  error=f"no Ray worker could start within {START_TIMEOUT_S:.0f} s "
                                                        "(not enough free CPUs / GPUs in the cluster?)"))
                    pending.clear()
        finally:
            for actor in [*free, *(a for a, _t in inflight.values()), *starting.values()]:
                ray.kill(actor, no_restart=True)
            ray.kill(board, no_restart=True)
