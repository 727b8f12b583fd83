#!/usr/bin/env python
"""SimSwap training throughput: steps/s and peak memory per batch size, and what a 400k-step run would take.

    .venv/bin/python bench/bench_train.py                                   # CPU: projected path, 224, batch 1,2
    .venv/bin/python bench/bench_train.py --batches 1,2,4 --steps 3
    .venv/bin/python bench/bench_train.py --device cuda --sizes 224,512 --batches 4,8,16 --precision bf16
    .venv/bin/python bench/bench_train.py --paths projected,multiscale --json out/train.json

Each (path, crop size, batch size) runs in its own child process, so its peak memory is its own: on the CPU the
child's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which includes the Python and torch
runtime, about 0.4-0.5 GB), on a GPU ``torch.cuda.max_memory_allocated`` (tensors only). A step is the full
official step of the trainer (``Trainer.train_step``: the G interval and the D interval, optimiser steps
included; no checkpoint, sample or log I/O), timed after ``--warmup`` steps; the figure is the median over
``--steps`` steps. "400k steps" = 400,000 x that median (a VGGFace2-scale run; the official default is 1M).

The networks are the real ones (9 ID blocks, the full r101-SE ArcFace, EfficientNet-lite0 + mini-discriminators or
the PatchGAN pair) with SEEDED RANDOM weights and a random backbone (same FLOPs as the trained ones); the data are
noise crops written to a temporary folder (decoding a real JPEG costs about the same). Batch size = rows per step
(one process, no accumulation).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--paths", default="projected", help="comma-separated: projected, multiscale")
    p.add_argument("--sizes", default="224", help="comma-separated crop sizes (224, 512)")
    p.add_argument("--batches", default="1,2", help="comma-separated batch sizes")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads in each child")
    p.add_argument("--n-blocks", type=int, default=9, help="ID blocks of G (official 9; fewer only for smoke tests)")
    p.add_argument("--small-arcface", action="store_true", help="a narrow ArcFace instead of r101 (smoke tests)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _write_data(root: Path, identities: int, size: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(identities):
        folder = root / f"id{i:03d}"
        folder.mkdir(parents=True)
        for j in range(2):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{j}.png")
    return root


def _arcface(folder: Path, small: bool) -> Path:
    if small:
        from simswap_core.networks.arcface import ArcFaceConfig, IResNet

        net = IResNet(ArcFaceConfig(layers=(1, 1, 1, 1), widths=(16, 16, 32, 32), use_se=False, stem_channels=16,
                                    fc_in=32 * 7 * 7))
        path = folder / "arcface_small.pth"
        torch.save(net.state_dict(), path)
        return path
    from simswap_core.models.seeded import write_seeded_checkpoints

    return write_seeded_checkpoints(folder, seed=1234, kinds=("arcface",))["arcface"]


def run_child(spec: dict) -> dict:
    """One configuration, in this process: build the trainer, warm up, time ``steps`` steps."""
    import warnings

    from simswap_core.train.trainer import TrainConfig, Trainer

    warnings.filterwarnings("ignore")
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = _write_data(root / "data", spec["batch"] + 1, spec["size"])
        arc = _arcface(root, spec["small_arcface"])
        cfg = TrainConfig(data=data, out=root / "out", arcface=arc, path=spec["path"], crop_size=spec["size"],
                          batch_size=spec["batch"], total_steps=10 ** 9, precision=spec["precision"],
                          n_blocks=spec["n_blocks"], allow_random_backbone=True, checkpoint_every=10 ** 9,
                          sample_every=10 ** 9, log_every=10 ** 9, device=str(device), quiet=True,
                          gdeep=spec["size"] >= 512 and spec["path"] == "projected")
        trainer = Trainer(cfg, log=lambda m: None)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for i in range(spec["warmup"] + spec["steps"]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            trainer.train_step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= spec["warmup"]:
                times.append(time.perf_counter() - t0)
        trainer.close()
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    sec = statistics.median(times)
    return {**spec, "s_per_step": sec, "steps_per_s": 1.0 / sec, "images_per_s": spec["batch"] / sec,
            "peak_bytes": int(peak), "peak_kind": "cuda max_memory_allocated" if device.type == "cuda"
            else "process max RSS", "hours_400k": 400_000 * sec / 3600.0, "times": times}


def _spawn(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {**spec, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_bytes(n: int) -> str:
    return f"{n / 1024 ** 3:.2f} GiB"


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(json.loads(args.child))))
        return {}
    device = U.resolve_device(args.device)
    specs = [dict(path=path, size=int(size), batch=int(batch), precision=args.precision, device=str(device),
                  steps=args.steps, warmup=args.warmup, threads=args.threads, n_blocks=args.n_blocks,
                  small_arcface=args.small_arcface)
             for path in args.paths.split(",") for size in args.sizes.split(",") for batch in args.batches.split(",")]
    results = []
    print(f"# training benchmark on {device} ({U.cpu_name() if device.type == 'cpu' else torch.cuda.get_device_name()}"
          f", torch {torch.__version__}, threads {args.threads or torch.get_num_threads()})", flush=True)
    print(f"{'path':<11}{'crop':>5}{'batch':>6}{'s/step':>9}{'steps/s':>9}{'img/s':>8}{'peak mem':>11}"
          f"{'400k steps':>13}", flush=True)
    for spec in specs:
        r = _spawn(spec)
        results.append(r)
        if "error" in r:
            print(f"{r['path']:<11}{r['size']:>5}{r['batch']:>6}  failed: {r['error']}", flush=True)
            continue
        days = r["hours_400k"] / 24
        print(f"{r['path']:<11}{r['size']:>5}{r['batch']:>6}{r['s_per_step']:>9.3f}{r['steps_per_s']:>9.3f}"
              f"{r['images_per_s']:>8.2f}{_fmt_bytes(r['peak_bytes']):>11}{days:>10.1f} d", flush=True)
    data = {"benchmark": "train", "device": str(device), "precision": args.precision, "results": results}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(data, indent=2))
    return data


if __name__ == "__main__":
    main()
