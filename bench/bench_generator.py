#!/usr/bin/env python
"""SimSwap generator throughput: faces/s per precision mode, batch size and memory format, side by side.

    .venv/bin/python bench/bench_generator.py                       # G 224, CPU: fp32/bf16 x batch 1/8 x NCHW/NHWC
    .venv/bin/python bench/bench_generator.py --size 512 --repeats 4
    .venv/bin/python bench/bench_generator.py --device cuda         # fp32/fp16/bf16 autocast on the GPU
    .venv/bin/python bench/bench_generator.py --json out/gen.json

Every configuration runs in the same process, interleaved round by round (the order rotates each round), so the
ratios are comparable even on a shared, noisy machine; the absolute faces/s are not. Throughput is batch /
median seconds per generator call; "ratio" is that throughput divided by the fp32, batch 1, NCHW throughput of
this same run. Accuracy: each mode's output on the same inputs against the fp32 NCHW output of the same batch
size (the generator output is RGB in [0,1], so max|d| = 1/255 is one 8-bit level).

Weights are SEEDED RANDOM weights (simswap_core.models.seeded, official file formats): the architecture, FLOPs and
therefore the speed are those of the real checkpoints, but the accuracy drift of reduced precision on real
weights may differ (it depends on activation ranges). Inputs are uniform random crops and random unit latents.
The generator is called through simswap_core.swap.run_generator, the function the face pipeline uses.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U
from simswap_core import load_generator
from simswap_core.swap import run_generator

DEFAULT_MODES = {"cpu": "fp32,bf16", "cuda": "fp32,fp16,bf16"}
KIND = {224: "g224", 512: "g512"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=224, choices=(224, 512), help="generator: 224 (default) or 512 beta")
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default: cuda if available)")
    p.add_argument("--modes", default=None,
                   help="comma list of fp32, bf16, fp16 (default: fp32,bf16 on CPU; fp32,fp16,bf16 on CUDA). "
                        "bf16/fp16 = torch.autocast for the generator, like FaceSwapper(precision=...)")
    p.add_argument("--batches", default="1,8", help="comma list of batch sizes (default 1,8)")
    p.add_argument("--channels-last", default="off,on", help="off, on or off,on (default both)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds; each round times every configuration (default 6 on CPU, 20 on CUDA)")
    p.add_argument("--b1-calls", type=int, default=3,
                   help="timed calls per round for batch-1 configurations (default 3; larger batches: 1)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed calls per configuration before timing (default 1 on CPU, 3 on CUDA)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="time budget of warm-up + timed rounds: fewer rounds (at least 2) are run if the warm-up "
                        "shows that --repeats rounds would not fit (default 300 on CPU, none on CUDA; 0 = no limit)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--cudnn-benchmark", action="store_true", help="CUDA: torch.backends.cudnn.benchmark = True")
    p.add_argument("--no-tf32", action="store_true",
                   help="CUDA: disable TF32 for fp32 convolutions/matmuls (torch allows TF32 convs by default)")
    p.add_argument("--weights-dir", default=None,
                   help="folder for the seeded weights (reused if it already holds them; default: a temp folder)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write all results to this JSON file")
    return p.parse_args(argv)


def config_name(mode: str, batch: int, cl: bool) -> str:
    return f"{mode} b{batch} {'NHWC' if cl else 'NCHW'}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = U.resolve_device(args.device)
    threads = U.set_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
        if args.no_tf32:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
    modes = [m.strip() for m in (args.modes or DEFAULT_MODES[device.type]).split(",") if m.strip()]
    for m in modes:
        if m not in ("fp32", "bf16", "fp16"):
            raise SystemExit(f"--modes: unknown mode {m!r} (expected fp32, bf16, fp16)")
    if "fp32" not in modes:
        modes.insert(0, "fp32")                     # the reference of every ratio and every drift
    if device.type == "cuda" and "bf16" in modes and not torch.cuda.is_bf16_supported():
        print("note: this GPU does not support bf16; skipping bf16")
        modes.remove("bf16")
    batches = sorted({int(b) for b in args.batches.split(",") if b.strip()})
    if 1 not in batches:
        batches.insert(0, 1)                        # fp32 batch 1 is the ratio reference
    cl_opts = []
    for c in args.channels_last.split(","):
        c = c.strip().lower()
        if c in ("off", "on"):
            cl_opts.append(c == "on")
        elif c:
            raise SystemExit(f"--channels-last: expected off, on or off,on; got {args.channels_last!r}")
    if False not in cl_opts:
        cl_opts.insert(0, False)                    # NCHW fp32 is the reference layout
    repeats = args.repeats if args.repeats is not None else (20 if device.type == "cuda" else 6)
    warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 1)

    env = U.environment(device)
    U.print_environment(env, f"bench_generator: G {args.size} on {device}")
    kind = KIND[args.size]
    weights = U.SeededWeights(args.weights_dir, (kind,))
    t0 = time.perf_counter()
    g_nchw = load_generator(weights.paths[kind]).to(device).eval()
    # torch's stub of Module.to lists no memory_format overload, but Module.to accepts it (torch._C._nn._parse_to)
    g_nhwc = (copy.deepcopy(g_nchw).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
              if True in cl_opts else None)
    print(f"   weights                  seeded random ({kind}, seed 1234), written in {weights.seconds:.1f} s, "
          f"loaded in {time.perf_counter() - t0:.1f} s")
    print(f"   modes / batches / layout {','.join(modes)} / {','.join(map(str, batches))} / "
          f"{','.join('NHWC' if c else 'NCHW' for c in cl_opts)}")
    print(f"   timing                   {warmup} warm-up call(s) per config, then {repeats} interleaved rounds "
          f"(batch 1: {args.b1_calls} calls/round, larger batches: 1 call/round); median and min per call")

    gen = torch.Generator().manual_seed(0)
    bmax = max(batches)
    s = args.size
    x_all = torch.rand(bmax, 3, s, s, generator=gen).to(device)
    lat_all = F.normalize(torch.randn(bmax, 512, generator=gen), dim=1).to(device)

    configs = [(m, b, cl) for m in modes for b in batches for cl in cl_opts]
    inputs = {}
    for b in batches:
        x = x_all[:b].contiguous()
        inputs[(b, False)] = x
        inputs[(b, True)] = x.contiguous(memory_format=torch.channels_last)

    def call(cfg):
        mode, b, cl = cfg
        g = g_nhwc if cl else g_nchw
        return run_generator(g, inputs[(b, cl)], lat_all[:b], batch_size=b, precision=mode)

    # --- warm-up and accuracy (one untimed output per configuration) ---
    outputs, last_call = {}, {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        for cfg in configs:
            for _ in range(max(1, warmup)):
                w: list[float] = []
                with U.timed(device, w):
                    y = call(cfg)
            last_call[cfg] = w[0]
            outputs[cfg] = y.float().contiguous().cpu()
        warm_s = time.perf_counter() - t0
        print(f"   warm-up                  {warm_s:.1f} s")
        budget = args.max_seconds if args.max_seconds is not None else (300.0 if device.type == "cpu" else 0.0)
        round_s = sum(last_call[c] * (args.b1_calls if c[1] == 1 else 1) for c in configs)
        if budget and repeats > 2 and repeats * round_s > budget - warm_s:
            new = max(2, int(max(0.0, budget - warm_s) // round_s))
            if new < repeats:
                print(f"   NOTE                     one round takes ~{round_s:.0f} s here (slow or loaded machine): "
                      f"{new} rounds instead of {repeats} to stay within --max-seconds {budget:.0f}")
                repeats = new

        # --- timed, interleaved rounds ---
        times: dict[tuple[str, int, bool], list[float]] = {cfg: [] for cfg in configs}
        cpu_times: dict[tuple[str, int, bool], list[float]] = {cfg: [] for cfg in configs}
        loads = []
        t0 = time.perf_counter()
        for rnd in range(repeats):
            k = rnd % len(configs)
            order = configs[k:] + configs[:k]           # rotate so no config always runs first / after another
            if rnd % 2:
                order = order[::-1]
            for cfg in order:
                for _ in range(args.b1_calls if cfg[1] == 1 else 1):
                    with U.timed(device, times[cfg], cpu_times[cfg]):
                        call(cfg)
            loads.append(U.loadavg())
        timing_s = time.perf_counter() - t0

    anchors, anchor_path = U.load_anchors()
    gflops = None
    if anchors:
        gflops = anchors.get("flops_per_face", {}).get(kind)
        gflops = gflops / 1e9 if gflops else None

    results = []
    for cfg in configs:
        mode, b, cl = cfg
        st = U.stats([t / b for t in times[cfg]])           # wall seconds per face
        cst = U.stats([t / b for t in cpu_times[cfg]])      # process CPU seconds per face
        ref = outputs[("fp32", b, False)]
        d = (outputs[cfg] - ref).abs()
        results.append({"mode": mode, "batch": b, "channels_last": cl, "calls": st["n"],
                        "median_s_per_face": st["median"], "min_s_per_face": st["min"], "p25_s_per_face": st["p25"],
                        "median_cpu_s_per_face": cst["median"], "min_cpu_s_per_face": cst["min"],
                        "faces_per_s": 1.0 / st["median"], "faces_per_s_best": 1.0 / st["min"],
                        "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                        "gflops_per_s_best": gflops / st["min"] if gflops else None})
    base = next(r for r in results if (r["mode"], r["batch"], r["channels_last"]) == ("fp32", 1, False))
    for r in results:
        r["ratio_to_fp32_b1"] = r["faces_per_s"] / base["faces_per_s"]
        r["ratio_to_fp32_b1_best"] = r["faces_per_s_best"] / base["faces_per_s_best"]
        r["ratio_to_fp32_b1_cpu"] = base["median_cpu_s_per_face"] / r["median_cpu_s_per_face"]

    lo = [x for x in loads if x is not None]
    print(f"\n== results: G {s}, {device}, {threads} threads, {repeats} rounds in {timing_s:.0f} s"
          + (f" (1-min load avg {min(lo):.1f}..{max(lo):.1f})" if lo else ""))
    rows = []
    for r in results:
        rows.append([r["mode"], r["batch"], "on" if r["channels_last"] else "off",
                     f"{r['faces_per_s']:.2f}", f"{r['ratio_to_fp32_b1']:.2f}x",
                     f"{r['faces_per_s_best']:.2f}", f"{r['ratio_to_fp32_b1_best']:.2f}x",
                     f"{r['median_cpu_s_per_face']:.3f}", f"{r['ratio_to_fp32_b1_cpu']:.2f}x",
                     f"{r['max_abs_diff']:.2e}", f"{r['mean_abs_diff']:.2e}", f"{r['max_abs_diff'] * 255:.2f}"])
    print(U.table(rows, ["mode", "batch", "channels_last", "faces/s", "ratio", "faces/s best", "ratio best",
                         "CPU-s/face", "ratio CPU", "max|d|", "mean|d|", "max|d|x255"], "lrlrrrrrrrrr"))
    print("   faces/s = batch / MEDIAN wall s per call; ratio = faces/s / faces/s of fp32 b1 channels_last off "
          "(this run);")
    print("   best = the same from the MIN wall time per call; CPU-s/face = median process CPU seconds per face, and")
    print("   ratio CPU = fp32 b1 CPU-s/face / CPU-s/face (robust to other jobs when --threads 1; see README);")
    print("   max|d|, mean|d| = against fp32 channels_last off, same batch size, same inputs (output RGB in [0,1]).")
    if gflops:
        print(f"   fp32 b1 NCHW: {base['gflops_per_s_best']:.0f} GFLOP/s from the best wall time, "
              f"{gflops / base['median_cpu_s_per_face']:.0f} GFLOP per CPU-second (conv+matmul FLOPs of "
              f"perf_anchors.json)")
    spread = base["median_s_per_face"] / base["min_s_per_face"]
    if spread > 1.3:
        print(f"   WARNING: fp32 b1 median is {spread:.1f}x its min: the machine was loaded by other jobs during "
              "the run; the median columns mix in that load, trust the 'best' columns (and CPU-s) more.")
    if bmax > 1:
        d = (outputs[("fp32", bmax, False)][:1] - outputs[("fp32", 1, False)]).abs()
        print(f"   fp32 b{bmax} face 0 vs fp32 b1 (same input): max|d| {float(d.max()):.2e}, "
              f"mean|d| {float(d.mean()):.2e} (batching alone)")

    anchor_info = None
    if anchors:
        key_b1, key_b8 = f"{kind}_b1", f"{kind}_b8"
        runs = [anchors.get(k, {}) for k in ("timing_run1", "timing_run2")]
        anchor_info = {"path": str(anchor_path), "environment": anchors.get("environment")}
        print(f"\n== official anchor (context only, not a ratio; {anchor_path})")
        anchor_env = anchors.get("environment", {})
        print(f"   {anchor_env.get('mode', '')}; "
              f"{anchor_env.get('threads', '?')} threads, {anchor_env.get('cpu', '')}")
        for key in (key_b1, key_b8):
            vals = [r[key] for r in runs if key in r]
            if not vals:
                continue
            med = [v["median_s_per_face"] for v in vals]
            mn = min(v["min_s_per_face"] for v in vals)
            anchor_info[key] = {"median_s_per_face": med, "min_s_per_face": mn}
            print(f"   official {key:8s} fp32 NCHW: median {' / '.join(f'{m:.3f}' for m in med)} s/face "
                  f"({' / '.join(f'{1 / m:.2f}' for m in med)} faces/s), min {mn:.3f} s/face")
        if gflops:
            print(f"   FLOPs per face ({kind}): {gflops:.2f} GFLOP (conv + matmul)")

    weights.close()
    data = {"benchmark": "generator", "size": s, "kind": kind, "environment": env, "repeats": repeats,
            "warmup": warmup, "b1_calls": args.b1_calls, "timing_seconds": timing_s, "loadavg_rounds": loads,
            "results": results, "raw_seconds_per_call": {config_name(*c): times[c] for c in configs},
            "raw_cpu_seconds_per_call": {config_name(*c): cpu_times[c] for c in configs},
            "anchor": anchor_info, "command": " ".join(sys.argv)}
    U.write_json(args.json, data)
    return data


if __name__ == "__main__":
    main()
