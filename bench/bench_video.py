#!/usr/bin/env python
"""Video swap through the CLI: frames/s and peak memory for a short and a 10x longer clip, side by side.

    .venv/bin/python bench/bench_video.py                         # 300 vs 3,000 frames, 640x360, 2 people, crop 64
    .venv/bin/python bench/bench_video.py --size 224 --device cuda
    .venv/bin/python bench/bench_video.py --frames 8,16 --resolution 320x180     # smoke run

Each measurement is `simswap swap` (python -m simswap_core.cli) in a FRESH subprocess: its wall time, its CPU
time and its peak resident memory (ru_maxrss of os.wait4's rusage: the whole process, model loading, decoding and
encoding included). The clips are tests/video_fixtures.py's synthetic two-person clips (real faces of
insightface's t1.jpg on a synthetic background, x264 crf 17, a sine as audio); the source identity is a third
person of t1.jpg. Weights are SEEDED RANDOM weights in the official formats; by default the 224 generator is run
on 64x64 crops (a .safetensors whose metadata says crop_size 64: the network's full architecture at about a
sixth of the per-face cost on a CPU), `--size 224` / `--size 512` for the real crop sizes. Every output is checked:
frame count, frame order (each frame's number, drawn as a block code) and audio length.

    frames/s          = frames / wall seconds of the whole process (start-up and model loading included)
    marginal frames/s = (frames_long - frames_short) / (wall_long - wall_short): the streaming rate with start-up
                        and model loading taken out
    ratio             = long / short, same run: peak RSS should stay flat (bounded memory), frames/s should rise
                        only by the start-up share
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U

TESTS = U.REPO / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
import video_fixtures as VF  # noqa: E402  (tests/ on the path first)

SIZES = (32, 64, 224, 512)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", default="300,3000",
                   help="comma-separated clip lengths; the first is the base of the ratio (default 300,3000)")
    p.add_argument("--resolution", default="640x360", help="clip size WxH (default 640x360)")
    p.add_argument("--people", type=int, default=2, help="people in the clip, 1..3 (default 2)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--size", type=int, default=64, choices=SIZES,
                   help="crop size: 64 = the seeded 224 generator run on 64x64 crops (default, quick on a CPU; 32 "
                        "quicker still); 224 / 512 = the real crop sizes")
    p.add_argument("--generator", default=None,
                   help="a generator checkpoint to use instead of the seeded one (its crop size: --size is ignored)")
    p.add_argument("--arcface", default=None, help="an ArcFace checkpoint to use instead of the seeded one")
    p.add_argument("--device", default="auto", help="the CLI's --device: cpu, cuda, auto (default)")
    p.add_argument("--batch-size", type=int, default=None, help="the CLI's --batch-size (default: the CLI's)")
    p.add_argument("--precision", default=None, choices=["fp32", "bf16", "fp16"],
                   help="the CLI's --precision (default: the CLI's, fp32)")
    p.add_argument("--threads", type=int, default=None,
                   help="OMP_NUM_THREADS / MKL_NUM_THREADS of the CLI process (default: unset = torch's default)")
    p.add_argument("--extra", default="", help="more CLI flags, one string, e.g. --extra '--mask ellipse'")
    p.add_argument("--repeats", type=int, default=1, help="runs per clip length, interleaved (default 1)")
    p.add_argument("--timeout", type=float, default=None, help="seconds one CLI run may take (default: no limit)")
    p.add_argument("--weights-dir", default=None, help="keep / reuse the seeded weights here")
    p.add_argument("--clips-dir", default=None, help="keep / reuse the synthetic clips here")
    p.add_argument("--json", default=None, help="write every number to this file")
    args = p.parse_args(argv)
    try:
        args.frame_counts = [int(x) for x in args.frames.split(",") if x.strip()]
        w, h = (int(v) for v in args.resolution.lower().split("x"))
    except ValueError:
        p.error(f"--frames / --resolution: expected e.g. 300,3000 and 640x360, got {args.frames!r}, "
                f"{args.resolution!r}")
    if not args.frame_counts or min(args.frame_counts) < 1:
        p.error(f"--frames: expected positive clip lengths, got {args.frames!r}")
    if args.repeats < 1:
        p.error(f"--repeats: expected >= 1, got {args.repeats}")
    args.wh = (w, h)
    return args


# ------------------------------------------------------------------------------------------ inputs

def generator_path(size: int, weights_dir: Path) -> tuple[Path, Path]:
    """(generator, arcface) seeded checkpoints for crop ``size`` in ``weights_dir`` (written once, reused). Crops
    below 224 use the 224 generator converted to .safetensors with that crop_size in its metadata; ArcFace is
    converted to .safetensors too (it loads in about half the time of the .pth)."""
    from simswap_core.models.loaders import convert_checkpoint
    from simswap_core.models.seeded import write_seeded_checkpoints

    kind = "g512" if size == 512 else "g224"
    paths = write_seeded_checkpoints(weights_dir, seed=1234, kinds=(kind, "arcface"))
    gen = paths[kind]
    if size < 224:
        small = weights_dir / f"simswap_g224_crop{size}.safetensors"
        gen = small if small.is_file() else convert_checkpoint(gen, small, crop_size=size)
    arc = weights_dir / "arcface_r101se.safetensors"
    if not arc.is_file():
        convert_checkpoint(paths["arcface"], arc)
    return gen, arc


def clip_path(clips_dir: Path, frames: int, wh: tuple[int, int], people: int, fps: int) -> tuple[Path, float]:
    """The synthetic clip (made once per configuration in ``clips_dir``) and its duration in seconds."""
    path = clips_dir / f"clip_{frames}f_{wh[0]}x{wh[1]}_{people}p_{fps}fps.mp4"
    if not path.is_file():
        VF.make_clip(path, frames=frames, size=wh, fps=fps, people=people, audio=True)
    return path, VF.clip_info(frames=frames, size=wh, fps=fps, people=people).duration


# ------------------------------------------------------------------------------------------ one measurement

def run_cli(cmd: list[str], env: dict[str, str], log: Path, timeout: float | None) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process (output to ``log``); wall seconds, CPU seconds and peak RSS from wait4."""
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=U.REPO)
    try:
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                raise SystemExit(f"bench_video: the CLI run took more than --timeout {timeout:g} s and was "
                                 f"stopped: {shlex.join(cmd)}\n{_tail(log)}")
            time.sleep(0.05)
    except BaseException:            # timeout, Ctrl-C, SIGTERM: stop the CLI (it removes its partial output)
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)   # reaped here: Popen must not wait again
    if code != 0:
        raise SystemExit(f"bench_video: the CLI failed (exit {code}): {shlex.join(cmd)}\n{_tail(log)}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mib": ru.ru_maxrss / 1024.0}


def _tail(log: Path, n: int = 2000) -> str:
    text = log.read_text(errors="replace")
    return text[-n:]


def check_output(out: Path, frames: int, duration: float) -> dict[str, Any]:
    """Frame count, order (each frame's number) and audio length of a swapped clip."""
    numbers = VF.read_frame_numbers(out)
    audio = VF.audio_duration(out)
    return {"frames_out": len(numbers), "frames_ok": len(numbers) == frames,
            "order_ok": numbers == list(range(frames)),
            "audio_s": audio, "audio_ok": audio is not None and abs(audio - duration) < 0.1}


def cli_summary(log: Path) -> list[str]:
    """The CLI's closing lines (what it wrote, faces, tracks, ...), progress-bar output left out."""
    lines = [ln.split("\r")[-1].strip() for ln in log.read_text(errors="replace").split("\n")]
    return [ln for ln in lines if ln and "frame/s" not in ln and "s/frame" not in ln][-4:]


def faces_swapped(log: Path) -> int | None:
    """The face count of the CLI's summary line ("... N face(s) swapped ..."), None if it printed none."""
    m = re.findall(r"(\d+) face\(s\) swapped", log.read_text(errors="replace"))
    return int(m[-1]) if m else None


# ------------------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    env_dev = U.resolve_device(args.device if args.device != "auto" else "auto")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(U.REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="simswap_bench_video_") as tmp_name:
        tmp = Path(tmp_name)
        weights_dir = Path(args.weights_dir) if args.weights_dir else tmp / "weights"
        clips_dir = Path(args.clips_dir) if args.clips_dir else tmp / "clips"
        clips_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if args.generator and args.arcface:
            gen, arc = Path(args.generator), Path(args.arcface)
        else:
            gen, arc = generator_path(args.size, weights_dir)
            gen, arc = Path(args.generator or gen), Path(args.arcface or arc)
        source = VF.write_source_photo(tmp / "source.png", 0)
        clips = {n: clip_path(clips_dir, n, args.wh, args.people, args.fps) for n in args.frame_counts}
        prep_s = time.perf_counter() - t0

        base = [sys.executable, "-m", "simswap_core.cli", "swap", "--source", str(source), "--generator", str(gen),
                "--arcface", str(arc), "--detector", "yunet", "--device", str(env_dev)]
        if args.batch_size:
            base += ["--batch-size", str(args.batch_size)]
        if args.precision:
            base += ["--precision", args.precision]
        base += shlex.split(args.extra)
        envinfo = U.environment(torch.device(env_dev))
        U.print_environment(envinfo, "bench_video: simswap swap through the CLI, one fresh process per run")
        print(f"   clip                     {args.wh[0]}x{args.wh[1]}, {args.people} people, {args.fps} fps, "
              f"frames {', '.join(map(str, args.frame_counts))}; "
              f"{'generator ' + gen.name if args.generator else f'crop {args.size} (seeded weights)'}; "
              f"CLI threads {args.threads or 'default'}")
        print(f"   command                  {shlex.join(base[2:])} --target CLIP --out OUT")
        print(f"   prepared weights + clips in {prep_s:.1f} s", flush=True)

        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.frame_counts}
        for r in range(args.repeats):
            order = args.frame_counts if r % 2 == 0 else args.frame_counts[::-1]
            for n in order:
                clip, duration = clips[n]
                out = tmp / f"out_{n}_{r}.mp4"
                log = tmp / f"log_{n}_{r}.txt"
                res = run_cli(base + ["--target", str(clip), "--out", str(out)], env, log, args.timeout)
                res.update(check_output(out, n, duration))
                res["faces_swapped"] = faces_swapped(log)
                res["cli_summary"] = cli_summary(log)
                out.unlink()
                runs[n].append(res)
                print(f"   run {r + 1}/{args.repeats}, {n} frames: {res['wall_s']:.1f} s, "
                      f"peak RSS {res['peak_rss_mib']:.0f} MiB, faces {res['faces_swapped']}, output "
                      f"{'ok' if res['frames_ok'] and res['order_ok'] and res['audio_ok'] else 'WRONG'}",
                      flush=True)
                if r == 0:
                    print("      CLI: " + "\n      CLI: ".join(res["cli_summary"]), flush=True)

    summary = summarise(runs, args.frame_counts)
    print_summary(summary, args)
    data = {"benchmark": "video", "environment": envinfo, "config": {
        "frames": args.frame_counts, "resolution": list(args.wh), "people": args.people, "fps": args.fps,
        "crop_size": None if args.generator else args.size, "generator": str(gen), "arcface": str(arc),
        "device": str(env_dev), "batch_size": args.batch_size, "precision": args.precision,
        "threads": args.threads, "extra": args.extra, "repeats": args.repeats, "command": shlex.join(base[2:])},
        "results": summary}
    U.write_json(args.json, data)
    return data


def summarise(runs: dict[int, list[dict[str, Any]]], counts: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in counts:
        rs = runs[n]
        wall = statistics.median(r["wall_s"] for r in rs)
        out[str(n)] = {
            "frames": n, "runs": rs, "wall_s": wall, "fps": n / wall,
            "cpu_s_per_frame": statistics.median(r["cpu_s"] for r in rs) / n,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
            "faces_swapped": rs[0]["faces_swapped"],
            "output_ok": all(r["frames_ok"] and r["order_ok"] and r["audio_ok"] for r in rs)}
    if len(counts) >= 2:
        a, b = out[str(counts[0])], out[str(counts[-1])]
        dt = b["wall_s"] - a["wall_s"]
        out["ratio"] = {"of": f"{counts[-1]}/{counts[0]}", "fps": b["fps"] / a["fps"],
                        "peak_rss": b["peak_rss_mib"] / a["peak_rss_mib"],
                        "cpu_s_per_frame": b["cpu_s_per_frame"] / a["cpu_s_per_frame"]}
        out["marginal_fps"] = (counts[-1] - counts[0]) / dt if dt > 0 else None
    return out


def print_summary(s: dict[str, Any], args: argparse.Namespace) -> None:
    counts = args.frame_counts
    cols = [s[str(n)] for n in counts]
    ratio = s.get("ratio")
    header = ["", *[f"{n} frames" for n in counts]] + ([f"ratio {ratio['of']}"] if ratio else [])

    def row(name: str, key: str, fmt: str, rkey: str | None = None) -> list[str]:
        cells = [name] + [("-" if c[key] is None else format(c[key], fmt)) for c in cols]
        if ratio:
            cells.append(f"{ratio[rkey]:.2f}x" if rkey else "")
        return cells

    rows = [row("wall s (whole process)", "wall_s", ".1f"),
            row("frames/s", "fps", ".2f", "fps"),
            row("CPU s / frame", "cpu_s_per_frame", ".3f", "cpu_s_per_frame"),
            row("peak RSS MiB", "peak_rss_mib", ".0f", "peak_rss"),
            row("faces swapped", "faces_swapped", "d"),
            ["output: count, order, audio"] + ["ok" if c["output_ok"] else "WRONG" for c in cols]
            + ([""] if ratio else [])]
    print()
    print(U.table(rows, header))
    if ratio:
        m = s["marginal_fps"]
        print(f"   marginal frames/s ({counts[-1]} - {counts[0]} frames) / (wall difference): "
              f"{'-' if m is None else f'{m:.2f}'} (start-up and model loading taken out)")
    print("   wall / CPU s / peak RSS: the whole CLI process (fresh per run; peak RSS = ru_maxrss from os.wait4);"
          "\n   output checked: frame count, order (frame numbers) and audio length of every run")
    if not all(c["output_ok"] for c in cols):
        print("   WARNING: an output lost frames, reordered them or lost its audio (see the JSON for which)")


def _terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)   # unwinds: the running CLI is stopped and the temporary folder removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)
    main()
