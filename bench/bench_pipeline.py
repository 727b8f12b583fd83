#!/usr/bin/env python
"""Face pipeline: batched FaceSwapper vs a straightforward per-frame, per-face pipeline, on 1280x720 frames.

    .venv/bin/python bench/bench_pipeline.py                    # CPU: 8 frames (scaled down from 64), 1 and 6 faces
    .venv/bin/python bench/bench_pipeline.py --device cuda      # 64-frame batch on the GPU
    .venv/bin/python bench/bench_pipeline.py --frames 16 --repeats 2 --json out/pipe.json

Scenes (built at run time from real photos, never stored): "6" = insightface's t1.jpg (1280x886, 6 faces), rows
0..719 (all six faces lie inside); "1" = scikit-image's astronaut (512x512, 1 face) in the middle of a mid-grey
1280x720 canvas. A batch is --frames copies of the scene frame. The source identity is the astronaut photo.

Both pipelines are timed with the same StageTimer (simswap_core.swap.StageTimer; on CUDA every stage ends with a
synchronize): detect / align / identity / generate / mask / paste, plus "other" = wall time not inside a stage
(face selection, bookkeeping, concatenation). One timed run = extract_identity(source) + swap(frames), so the
"identity" stage is the ArcFace embedding of the source face (select="all" needs no per-frame ArcFace) and the
source photo's detection/alignment land in detect/align. Shares are of the whole run (sum over the timed rounds);
fps = frames / median wall seconds of swap() alone (the one-time identity extraction excluded).

    batched   = simswap_core.swap.FaceSwapper: one detector call per frame batch, faces flattened over frames,
                generator batches of --batch-size faces, one mask and one paste call per frame batch.
    reference = pipeline_reference.ReferencePipeline: the official scripts' order, frame by frame and
                face by face: detect one frame, then per face align, generator batch 1, mask, paste.

Both must produce the same frames (the max |difference| is printed) so the comparison is fair. Weights are
SEEDED RANDOM weights (same FLOPs as the real checkpoints; the swapped faces are noise).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U
from pipeline_reference import ReferencePipeline
from simswap_core import load_arcface, load_generator
from simswap_core.detection import FaceDetector, load_detector
from simswap_core.masks import MaskSpec
from simswap_core.swap import FaceSwapper, StageTimer

STAGES = ("detect", "align", "identity", "generate", "mask", "paste")
FULL_FRAMES = 64
CPU_FRAMES = 8
W, H = 1280, 720


# ------------------------------------------------------------------------------------------ frames

def t1_image() -> torch.Tensor:
    from simswap_core.io.images import read_image

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("insightface is not installed: its data/images/t1.jpg is the 6-face test photo")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    if not p.is_file():
        raise SystemExit(f"{p} not found")
    return read_image(p).image.float()           # [1,3,886,1280] RGB [0,1]


def astronaut_image() -> torch.Tensor:
    from skimage import data

    a = np.ascontiguousarray(data.astronaut())
    return torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0   # [1,3,512,512]


def scene_frame(faces: int) -> torch.Tensor:
    """One 1280x720 RGB [0,1] frame [1,3,720,1280] with `faces` faces (1 or 6)."""
    if faces == 6:
        img = t1_image()
        if img.shape[-1] != W or img.shape[-2] < H:
            raise SystemExit(f"t1.jpg: expected 1280 px wide and >= 720 px high, got {tuple(img.shape[-2:])}")
        return img[:, :, :H, :].contiguous()     # faces span rows ~57..472 of the 886
    if faces == 1:
        a = astronaut_image()
        canvas = torch.full((1, 3, H, W), 0.5)
        y0, x0 = (H - a.shape[-2]) // 2, (W - a.shape[-1]) // 2
        canvas[:, :, y0:y0 + a.shape[-2], x0:x0 + a.shape[-1]] = a
        return canvas
    raise SystemExit(f"--scenes: only 1 and 6 faces are available, got {faces}")


# ------------------------------------------------------------------------------------------ runs

class WallCpuStageTimer(StageTimer):
    """The library's StageTimer (wall seconds per stage, CUDA-synchronised) plus process CPU seconds per stage."""

    def __init__(self, device: torch.device) -> None:
        super().__init__(False, device)
        self.cpu_totals: dict[str, float] = {}

    def reset(self) -> None:
        super().reset()
        self.cpu_totals = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        c0 = time.process_time()
        try:
            with super().stage(name):
                yield
        finally:
            self.cpu_totals[name] = self.cpu_totals.get(name, 0.0) + time.process_time() - c0


def run_once(pipe, source: torch.Tensor, frames: torch.Tensor, device: torch.device, swap_kw: dict) -> dict:
    pipe.timer.enabled = True
    pipe.timer.reset()
    U.sync(device)
    t0 = time.perf_counter()
    c0 = time.process_time()
    ident = pipe.extract_identity(source, select="largest")
    U.sync(device)
    t1 = time.perf_counter()
    c1 = time.process_time()
    res = pipe.swap(frames, ident, select="all", **swap_kw)
    U.sync(device)
    t2 = time.perf_counter()
    c2 = time.process_time()
    pipe.timer.enabled = False
    if isinstance(res, tuple):                   # ReferencePipeline -> (images, mask)
        images, mask, nfaces = res[0], res[1], None
    else:
        images, mask, nfaces = res.images, res.mask, len(res.faces)
    stages = {k: pipe.timer.totals.get(k, 0.0) for k in STAGES}
    total = t2 - t0
    stages["other"] = max(0.0, total - sum(stages.values()))
    cpu = {k: pipe.timer.cpu_totals.get(k, 0.0) for k in STAGES}
    cpu_total = c2 - c0
    cpu["other"] = max(0.0, cpu_total - sum(cpu.values()))
    return {"total_s": total, "identity_call_s": t1 - t0, "swap_s": t2 - t1, "swap_cpu_s": c2 - c1, "stages": stages,
            "cpu_total_s": cpu_total, "cpu_stages": cpu,
            "images": images, "mask": mask, "faces": nfaces}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default: cuda if available)")
    p.add_argument("--frames", type=int, default=None,
                   help=f"frames per batch (default {FULL_FRAMES} on CUDA; {CPU_FRAMES} on CPU, see the printed note)")
    p.add_argument("--scenes", default="1,6", help="faces per frame to run: 1, 6 or 1,6 (default)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3 on CPU, 5 on CUDA)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="time budget of the timed rounds: fewer rounds (at least 1) if the first round shows that "
                        "--repeats would take longer (default 330 on CPU, none on CUDA; 0 = no limit)")
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed warm-up runs (one frame per scene and pipeline) before timing (default 1)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="FaceSwapper batch_size: frames per detection batch (default 16, the library default)")
    p.add_argument("--face-batch-size", type=int, default=None,
                   help="FaceSwapper face_batch_size: faces per generator call (default: the library's choice, "
                        "1 on the CPU, --batch-size on a GPU)")
    p.add_argument("--mask", default="box", help="mask spec for both pipelines: box (default), ellipse, none "
                                                 "(= paste's built-in whole-crop mask, no mask stage work)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="batched pipeline's generator precision (the reference is always fp32; anything but fp32 "
                        "makes the outputs differ by the precision drift)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads and the detector's onnxruntime intra-op threads (default: their "
                        "defaults)")
    p.add_argument("--weights-dir", default=None, help="folder for the seeded weights (default: a temp folder)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write all results to this JSON file")
    args = p.parse_args(argv)

    device = U.resolve_device(args.device)
    threads = U.set_threads(args.threads)
    scenes = [int(s) for s in args.scenes.split(",") if s.strip()]
    frames_n = args.frames or (FULL_FRAMES if device.type == "cuda" else CPU_FRAMES)
    repeats = args.repeats if args.repeats is not None else (5 if device.type == "cuda" else 3)
    budget = args.max_seconds if args.max_seconds is not None else (330.0 if device.type == "cpu" else 0.0)
    mask = None if args.mask.strip().lower() == "none" else MaskSpec.parse(args.mask)

    env = U.environment(device)
    U.print_environment(env, f"bench_pipeline: 1280x720 frames on {device}")
    if frames_n != FULL_FRAMES:
        why = (f"on CPU a {FULL_FRAMES}-frame batch of the 6-face scene is {FULL_FRAMES * 6} generator calls per "
               f"pipeline (~0.35 s each on 2 quiet cores, several times that on a loaded machine), far too slow for "
               f"a default run" if device.type == "cpu" and args.frames is None else "set by --frames")
        print(f"   NOTE                     batch of {frames_n} frames instead of the {FULL_FRAMES} of the issue: "
              f"{why}")

    weights = U.SeededWeights(args.weights_dir, ("g224", "arcface"))
    t0 = time.perf_counter()
    gen = load_generator(weights.paths["g224"]).to(device).eval()
    arc = load_arcface(weights.paths["arcface"]).to(device).eval()
    det: FaceDetector
    if args.threads:                             # the detector's onnxruntime session gets the same thread count
        from simswap_core.detection import YuNetDetector
        det = YuNetDetector(None, device=device, threads=args.threads)
    else:
        det = load_detector("yunet", device=device)
    print(f"   weights                  seeded random (g224 + arcface r101-SE, seed 1234), written in "
          f"{weights.seconds:.1f} s, models loaded in {time.perf_counter() - t0:.1f} s; detector {det!r}")
    batched = FaceSwapper(gen, arc, det, device=device, precision=args.precision)
    reference = ReferencePipeline(gen, arc, det, device=device)
    for pipe in (batched, reference):
        pipe.timer = WallCpuStageTimer(device)
    pipes = {"batched": batched, "reference": reference}
    swap_kw = {"batched": dict(mask=mask, batch_size=args.batch_size, face_batch_size=args.face_batch_size),
               "reference": dict(mask=mask)}
    fb = args.face_batch_size or "auto"
    print(f"   pipelines                batched = FaceSwapper(batch_size={args.batch_size}, face_batch_size={fb}, "
          f"precision={args.precision}); "
          f"reference = ReferencePipeline (per frame, per face, G batch 1, fp32); mask {mask or 'none'}")

    source = astronaut_image().to(device)
    batches = {}
    for s in scenes:
        f = scene_frame(s).to(device)
        batches[s] = f.expand(frames_n, -1, -1, -1).contiguous()
        found = len(det.detect(f))
        print(f"   scene {s}                  1280x720 frame, {found} face(s) detected, batch of {frames_n} copies")
        if found != s:
            print(f"   WARNING                  expected {s} faces in scene {s}, the detector found {found}")

    # --- warm-up: every pipeline on one frame of every scene (primitives, caches), untimed ---
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(max(0, args.warmup)):
            for s in scenes:
                for name, pipe in pipes.items():
                    run_once(pipe, source, batches[s][:1], device, swap_kw[name])
    print(f"   warm-up                  {args.warmup} x one frame per scene and pipeline: "
          f"{time.perf_counter() - t0:.1f} s")

    # --- timed rounds, interleaved: scene by scene, pipeline order alternating ---
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {(s, n): [] for s in scenes for n in pipes}
    check: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor, int]]] = {}
    loads = []
    t_start = time.perf_counter()
    r = 0
    while r < repeats:
        t_round = time.perf_counter()
        for s in scenes:
            order = list(pipes) if r % 2 == 0 else list(pipes)[::-1]
            for name in order:
                with torch.inference_mode():
                    out = run_once(pipes[name], source, batches[s], device, swap_kw[name])
                if s not in check or name not in check[s]:
                    check.setdefault(s, {})[name] = (out["images"].float().cpu(), out["mask"].float().cpu(),
                                                     out["faces"])
                out.pop("images"), out.pop("mask")
                runs[(s, name)].append(out)
        loads.append(U.loadavg())
        round_s = time.perf_counter() - t_round
        r += 1
        if r == 1 and budget and repeats > 1 and round_s * repeats > budget:
            new = max(1, int(budget // round_s))
            if new < repeats:
                print(f"   NOTE                     one round took {round_s:.0f} s (slow or loaded machine): {new} "
                      f"round(s) instead of {repeats} to stay within --max-seconds {budget:.0f}")
                repeats = new
    timing_s = time.perf_counter() - t_start

    # --- report ---
    results = {}
    print(f"\n== results: {frames_n} frames of 1280x720 per batch, {device}, {threads} threads, {repeats} timed "
          f"round(s) in {timing_s:.0f} s (load avg per round: {', '.join(f'{x:.1f}' for x in loads if x is not None)})")
    for s in scenes:
        res_s: dict[str, Any] = {}
        for name in pipes:
            rs = runs[(s, name)]
            tot = sum(x["total_s"] for x in rs)
            stage_sum = {k: sum(x["stages"][k] for x in rs) for k in (*STAGES, "other")}
            cpu_tot = sum(x["cpu_total_s"] for x in rs)
            cpu_sum = {k: sum(x["cpu_stages"][k] for x in rs) for k in (*STAGES, "other")}
            swap = U.stats([x["swap_s"] for x in rs])
            swap_cpu = U.stats([x["swap_cpu_s"] for x in rs])
            res_s[name] = {"rounds": len(rs), "total_s_sum": tot,
                           "stage_s_per_run": {k: v / len(rs) for k, v in stage_sum.items()},
                           "stage_share": {k: v / tot for k, v in stage_sum.items()},
                           "stage_cpu_share": {k: v / cpu_tot for k, v in cpu_sum.items()},
                           "stage_cpu_s_per_run": {k: v / len(rs) for k, v in cpu_sum.items()},
                           "swap_s": swap, "swap_cpu_s": swap_cpu, "fps_median": frames_n / swap["median"],
                           "fps_best": frames_n / swap["min"],
                           "total_s_per_run": tot / len(rs), "identity_call_s": [x["identity_call_s"] for x in rs]}
        b_img, b_mask, nf = check[s]["batched"]
        r_img, r_mask, _ = check[s]["reference"]
        d = (b_img - r_img).abs()
        dm = (b_mask - r_mask).abs()
        ratio = res_s["batched"]["fps_median"] / res_s["reference"]["fps_median"]
        ratio_best = res_s["batched"]["fps_best"] / res_s["reference"]["fps_best"]
        ratio_cpu = res_s["reference"]["swap_cpu_s"]["median"] / res_s["batched"]["swap_cpu_s"]["median"]
        res_s.update({"speed_ratio_best": ratio_best, "speed_ratio_cpu": ratio_cpu, "faces_swapped": nf,
                      "max_abs_diff_images": float(d.max()), "mean_abs_diff_images": float(d.mean()),
                      "max_abs_diff_mask": float(dm.max()), "speed_ratio_batched_over_reference": ratio})
        results[str(s)] = res_s

        rb, rr = res_s["batched"], res_s["reference"]
        print(f"\n-- scene: {s} face(s) per frame, {frames_n} frames ({nf} faces swapped per batch)")
        rows = []
        for k in (*STAGES, "other"):
            rows.append([k, f"{rb['stage_s_per_run'][k]:.3f}", f"{100 * rb['stage_share'][k]:.1f} %",
                         f"{100 * rb['stage_cpu_share'][k]:.1f} %",
                         f"{rr['stage_s_per_run'][k]:.3f}", f"{100 * rr['stage_share'][k]:.1f} %",
                         f"{100 * rr['stage_cpu_share'][k]:.1f} %"])
        rows.append(["whole run", f"{rb['total_s_per_run']:.3f}", "100.0 %", "100.0 %",
                     f"{rr['total_s_per_run']:.3f}", "100.0 %", "100.0 %"])
        print(U.table(rows, ["stage", "batched s/run", "share", "CPU share", "reference s/run", "share", "CPU share"]))
        print(U.table([
            [name, f"{x['swap_s']['median']:.2f}", f"{x['swap_s']['min']:.2f}", f"{x['swap_cpu_s']['median']:.2f}",
             f"{x['fps_median']:.3f}", f"{x['fps_best']:.3f}", f"{x['fps_median'] * s:.3f}"]
            for name, x in (("batched", rb), ("reference", rr))
        ], ["pipeline", "swap s (median)", "swap s (min)", "swap CPU-s", "fps (median)", "fps (best)", "faces/s"]))
        print(f"   speed ratio batched / reference: {ratio:.2f}x (median fps), {ratio_best:.2f}x (best fps), "
              f"{ratio_cpu:.2f}x (CPU seconds)")
        print(f"   same output? frames max|d| {res_s['max_abs_diff_images']:.2e}, mean|d| "
              f"{res_s['mean_abs_diff_images']:.2e}; masks max|d| {res_s['max_abs_diff_mask']:.2e}")

    print("\n   s/run = seconds per timed run (extract_identity + swap) in that stage, mean over rounds; share = "
          "of the whole run (CPU share: the same with process CPU seconds);\n   fps = frames / swap() wall seconds "
          "(median or min over rounds); swap CPU-s = process CPU seconds of swap() (median).")
    weights.close()
    data = {"benchmark": "pipeline", "environment": env, "frames": frames_n, "frames_full": FULL_FRAMES,
            "scenes": scenes, "repeats": repeats, "batch_size": args.batch_size,
            "face_batch_size": args.face_batch_size, "mask": str(mask),
            "precision": args.precision, "timing_seconds": timing_s, "loadavg_rounds": loads, "results": results,
            "command": " ".join(sys.argv)}
    U.write_json(args.json, data)
    return data


if __name__ == "__main__":
    main()
