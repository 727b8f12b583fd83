"""`simswap batch --ray` on a local Ray cluster on the CPU: 2 swapper workers, 6 small jobs (two of them bad),
one worker killed (SIGKILL) in the middle of a job: that job is retried on another worker and its output is
byte-identical to the same job done by an untouched worker; the bad jobs fail alone with their reasons; a rerun
skips every finished job. Ray is a test dependency: this file fails (it does not skip) without it.

Seeded weights through $SIMSWAP_MODELS_DIR (forwarded to the workers), the crop-64 fast generator, tiny clips of
two people from t1.jpg. Labels are off (SIMSWAP_LABEL=0, forwarded too) so that files compare byte for byte.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import ray  # a missing ray fails this file (it is in the test extra)
from PIL import Image

from pipeline_fixtures import astronaut_uint8


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture
def ray_cluster(pl_models_dir, monkeypatch, tmp_path):
    from simswap_core.batch.ray_runner import connect

    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("SIMSWAP_LABEL", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    said = connect("local", num_cpus=2)
    yield said
    ray.shutdown()


@pytest.mark.slow
def test_ray_batch_kill_retry_identical_rerun_skips(ray_cluster, fast_generator_path, tmp_path):
    from video_fixtures import make_clip

    from simswap_core.batch.driver import plan, run_batch, summary_table
    from simswap_core.batch.jobs import parse_jobs
    from simswap_core.batch.manifest import Manifest
    from simswap_core.batch.ray_runner import RayRunner

    assert ray_cluster == "Ray: started a local cluster on this machine"
    Image.fromarray(astronaut_uint8()).save(tmp_path / "source.png")
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "noface.png")
    make_clip(tmp_path / "short.mp4", frames=3, size=(320, 180), people=2, audio=False)
    make_clip(tmp_path / "long.mp4", frames=10, size=(320, 180), people=2, audio=False, seed=1)
    g = str(fast_generator_path)
    # crf 0 (lossless x264): the swapped frames are what is compared byte for byte. Lossy x264 (crf 17) encodes of
    # the same frames were seen to differ between jobs inside a Ray worker (not in one plain process).
    common = {"source": "source.png", "generator": g, "batch_size": 1, "crf": 0}
    rows = [{"id": "long-a", "target": "long.mp4", "out": "out/long_a.mp4"},     # the one whose worker is killed
            {"id": "long-b", "target": "long.mp4", "out": "out/long_b.mp4"},     # the same job, untouched
            {"id": "short-a", "target": "short.mp4", "out": "out/short_a.mp4"},
            {"id": "short-b", "target": "short.mp4", "out": "out/short_b.mkv"},
            {"id": "missing", "target": "gone.mp4", "out": "out/gone.mp4"},
            {"id": "noface", "target": "noface.png", "out": "out/noface.png"}]
    jobs_file = tmp_path / "jobs.jsonl"
    jobs_file.write_text("".join(json.dumps({**common, **r}) + "\n" for r in rows))
    jobs = parse_jobs(jobs_file)
    manifest = Manifest(tmp_path / "jobs.manifest.json")
    runner = RayRunner(ray_cluster, workers=2, cpus_per_worker=1, retries=2)
    assert runner.describe() == "Ray, 2 worker(s) of 1 CPU"

    victim = str(tmp_path / "out" / "long_a.mp4")
    killed: list[int] = []

    def progress(out: str, done: int, total: int | None, worker: str) -> None:
        if out == victim and not killed and 1 <= done < (total or 10):
            pid = int(worker.rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)            # the worker dies in the middle of writing long_a.mp4
            killed.append(pid)

    report = run_batch(plan(jobs, manifest), manifest, runner, progress=progress)
    text = "\n".join(summary_table(report))
    status = {r.job.name: r.status for r in report.rows}
    assert status == {"long-a": "done", "long-b": "done", "short-a": "done", "short-b": "done",
                      "missing": "failed", "noface": "failed"}, text
    assert killed and runner.lost >= 1
    by_name = {r.job.name: r for r in report.rows}
    retried = by_name["long-a"].outcome
    assert retried.attempt == 2 and retried.worker != f"{os.uname().nodename}:{killed[0]}"
    out = tmp_path / "out"
    assert sha(out / "long_a.mp4") == sha(out / "long_b.mp4")          # the retried job's output is identical
    assert sorted(p.name for p in out.iterdir()) == ["long_a.mp4", "long_b.mp4", "short_a.mp4", "short_b.mkv"]
    assert "gone.mp4" in by_name["missing"].error
    assert "face" in by_name["noface"].error
    assert "failed: missing:" in text and "failed: noface:" in text and "(attempt 2)" in text
    rec = json.loads((tmp_path / "jobs.manifest.json").read_text())["jobs"][victim]
    assert rec["state"] == "done" and rec["attempts"] == 2 and rec["frames"] == 10

    # a rerun skips every finished job (no worker touches them); only the failed ones are tried again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = plan(parse_jobs(jobs_file), Manifest(tmp_path / "jobs.manifest.json"))
    assert {r.job.name: r.decision.action for r in again} == {
        "long-a": "skip", "long-b": "skip", "short-a": "skip", "short-b": "skip", "missing": "redo", "noface": "redo"}
    finished = [r for r in again if r.decision.action == "skip"]
    rerun = run_batch(finished, Manifest(tmp_path / "jobs.manifest.json"), runner)
    assert [r.status for r in rerun.rows] == ["skipped"] * 4
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
