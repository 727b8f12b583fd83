"""``simswap batch``: many swaps from a job file, in this process or on a Ray cluster, resumable.

    jobs.py        the job file (CSV / JSON lines) -> Job, parsed by `simswap swap`'s own parser, per-line errors
    manifest.py    finished-job records (output size / sha256, frames, settings, model hashes), skip / redo
    models.py      ModelCache: each model loaded once per worker, model file hashes
    local.py       execute_job: one job through `simswap swap`'s cmd_swap (same outputs), JobOutcome
    driver.py      plan + run_batch (records every start and outcome), LocalRunner, the summary table
    ray_runner.py  RayRunner: swapper actors (one per GPU), bounded in-flight work, lost workers retried

Only ray_runner.py imports ray, and only when a Ray runner is made: the rest of the pack never does.
"""
