#!/usr/bin/env python
"""End-to-end video speed: decode -> swap -> encode of 1280x720 and 1920x1080 clips with 1 and 6 faces.

    .venv/bin/python bench/bench_speed.py                         # CPU: 2 frames per clip, fp32 + bf16, reference
    .venv/bin/python bench/bench_speed.py --device cuda --frames 240 --precision bf16 --compile
    .venv/bin/python bench/bench_speed.py --quick --generator G.safetensors     # smoke test (tiny clip)

Clips (written at run time into a temporary folder, never stored): "6 faces" = insightface's t1.jpg (six people),
"1 face" = scikit-image's astronaut on a grey canvas, each scaled to the resolution and drifting a few pixels per
frame, H.264 (x264 crf 17). One timed run is what `simswap swap` does: ``run(VideoSource, FaceSwapper, VideoSink)``
with the reader and writer threads, the decode / encode path chosen by ``--decode-device`` / ``--encoder`` (auto:
NVDEC / NVENC on a GPU when available; the choice and its reason are printed).

Printed per clip and precision: frames/s end to end; per stage (the swapper's StageTimer: detect, align, generate,
mask, paste; on CUDA each stage is synchronised, so the end-to-end run is timed WITHOUT the stage timer and the
stages in a second run); decode alone and encode alone (frames/s of the same clip through the same path, no swap);
the generator's share of the device's bf16 peak (96 GFLOP per face at 224, shared/docs/simswap_spec.md section 9,
scaled by (crop/224)^2 for other crop sizes; the peak from a table of known GPUs or measured by a bf16 matmul with
--measure-peak, always measured on the CPU); peak device memory (CUDA: max_memory_allocated; CPU: the process's
peak RSS). On the CPU (or with --reference) also the ratio to the official-style per-face pipeline
(bench/pipeline_reference.py: frame by frame, face by face, generator batch 1, fp32) on the same frames and
weights, measured side by side in the same run: swap() of the decoded frames, no video I/O on either side.
Weights: SEEDED RANDOM weights in the official formats unless --generator / --arcface are given (same FLOPs).
"""
from __future__ import annotations

import argparse
import inspect
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U
from pipeline_reference import ReferencePipeline
from simswap_core import load_arcface, load_generator
from simswap_core.detection import load_detector
from simswap_core.swap import FaceSwapper

RESOLUTIONS = {"720p": (1280, 720), "1080p": (1920, 1080), "quick": (320, 180)}
GFLOP_PER_FACE_224 = 96.0            # simswap_spec.md section 9
# dense bf16 tensor peak, TFLOP/s (vendor data sheets; SXM parts where a board has two forms)
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
                    "RTX 4090": 165.2, "RTX 3090": 71.0}
STAGES = ("detect", "align", "generate", "mask", "paste")


# ------------------------------------------------------------------------------------------ clips

def scene(faces: int, width: int, height: int, t1: str | None = None) -> torch.Tensor:
    """[1,3,H,W] float RGB [0,1]: t1.jpg (6 faces; ``t1``: its path, default insightface's copy) cropped to 16:9
    or the astronaut (1 face) on grey, scaled."""
    import torch.nn.functional as F
    from bench_pipeline import astronaut_image, t1_image

    from simswap_core.io.images import read_image

    if faces == 6:
        full = read_image(t1).image.float() if t1 else t1_image()
        img = full[:, :, :720, :]                                # 1280x720: all six faces inside
    elif faces == 1:
        a = astronaut_image()
        img = torch.full((1, 3, 720, 1280), 0.5)
        img[:, :, 104:616, 384:896] = a
    else:
        raise SystemExit(f"--faces: only 1 and 6 are available, got {faces}")
    if (width, height) != (1280, 720):
        img = F.interpolate(img, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return img.clamp(0, 1)


def write_clip(path: Path, faces: int, width: int, height: int, frames: int, fps: int = 30,
               t1: str | None = None) -> Path:
    """An H.264 clip of ``frames`` frames: the scene drifting by about 0.5 % of the width (x264, crf 17)."""
    from simswap_core.io.video import VideoWriter

    base = scene(faces, width, height, t1)
    with VideoWriter(path, fps, width, height) as w:
        for i in range(frames):
            dx = int(round(0.005 * width * np.sin(2 * np.pi * i / 60)))
            w.write(torch.roll(base, shifts=dx, dims=3))
    return path


# ------------------------------------------------------------------------------------------ measures

def peak_tflops(device: torch.device, measure: bool) -> tuple[float | None, str]:
    """(bf16 peak TFLOP/s, where it came from): the known-GPU table, else a measured bf16 matmul."""
    if device.type == "cuda" and not measure:
        name = torch.cuda.get_device_name(device)
        for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
            if key.lower() in name.lower():
                return BF16_PEAK_TFLOPS[key], f"table ({key} dense bf16)"
    n = 4096 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    U.sync(device)
    best = float("inf")                  # the fastest product: other jobs on a shared machine only slow it down
    for _ in range(10):
        U.sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        U.sync(device)
        best = min(best, (time.perf_counter() - t0) / 5)
    return 2 * n ** 3 / best / 1e12, f"measured ({n}^3 bf16 matmul, best of 10)"


def memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0        # Linux: KiB


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def decode_fps(clip: Path, device: torch.device, decode_device: str, batch: int) -> float:
    from simswap_core.io.frames import VideoSource

    src = VideoSource(clip, device, decode_device=decode_device)
    n = 0
    U.sync(device)
    t0 = time.perf_counter()
    for b in src.batches(batch):
        n += len(b)
    U.sync(device)
    return n / (time.perf_counter() - t0)


def encode_fps(frames: torch.Tensor, out: Path, encoder: str, device: torch.device, batch: int) -> float:
    from simswap_core.io.video import VideoWriter
    from simswap_core.io.video_devices import choose_encoder

    h, w = frames.shape[-2:]
    codec = choose_encoder(encoder, device, w, h, out.suffix).codec
    U.sync(device)
    t0 = time.perf_counter()
    with VideoWriter(out, 30, w, h, codec=codec, overwrite=True) as wr:
        for i in range(0, frames.shape[0], batch):
            wr.write(frames[i:i + batch])
    return frames.shape[0] / (time.perf_counter() - t0)


def swapper_for(gen, arc, det, device, precision: str, compile_: bool) -> FaceSwapper:
    kw: dict[str, Any] = {"device": device, "precision": precision}
    params = inspect.signature(FaceSwapper.__init__).parameters
    if compile_:
        if "compile" not in params:
            raise SystemExit("--compile: this FaceSwapper has no compile option")
        kw["compile"] = True
    return FaceSwapper(gen, arc, det, **kw)


def run_clip(swapper: FaceSwapper, clip: Path, out: Path, identity, device: torch.device, args, *,
             stages: bool) -> dict:
    """One `simswap swap`-like run of the clip: wall seconds, frames, faces, stage seconds (when timed)."""
    from simswap_core.io.frames import VideoSink, VideoSource
    from simswap_core.run import run

    src = VideoSource(clip, device, decode_device=args.decode_device)
    sink = VideoSink(out, src, audio=False, overwrite=True, encoder=args.encoder, device=device)
    swapper.timer.enabled = stages
    swapper.timer.reset()
    opts: dict[str, Any] = {"select": "all", "if_no_face": "keep"}
    if args.face_batch_size:
        opts["face_batch_size"] = args.face_batch_size
    U.sync(device)
    t0 = time.perf_counter()
    summary = run(src, swapper, sink, identity, batch_size=args.batch_size, **opts)
    U.sync(device)
    wall = time.perf_counter() - t0
    swapper.timer.enabled = False
    return {"wall_s": wall, "frames": summary.frames, "faces": summary.faces_swapped,
            "stages": {k: swapper.timer.totals.get(k, 0.0) for k in STAGES} if stages else None,
            "decode": src.decode_choice.message(), "encode": sink.encode_choice.message()}


def reference_ratio(gen, arc, det, device, frames: torch.Tensor, identity, batched: dict[str, FaceSwapper],
                    args) -> dict:
    """swap() of the same in-memory frames: the reference per-face pipeline (fp32) and each batched precision,
    interleaved, best of --repeats; fps and ratio batched / reference."""
    ref = ReferencePipeline(gen, arc, det, device=device)
    times: dict[str, list[float]] = {"reference": [], **{k: [] for k in batched}}
    for r in range(args.repeats):
        order = ["reference", *batched] if r % 2 == 0 else [*batched, "reference"]
        for name in order:
            U.sync(device)
            t0 = time.perf_counter()
            with torch.inference_mode():
                if name == "reference":
                    ref.swap(frames, identity, select="all", if_no_face="keep")
                else:
                    kw = {"face_batch_size": args.face_batch_size} if args.face_batch_size else {}
                    batched[name].swap(frames, identity, select="all", if_no_face="keep",
                                       batch_size=args.batch_size, **kw)
            U.sync(device)
            times[name].append(time.perf_counter() - t0)
    n = frames.shape[0]
    fps = {k: n / min(v) for k, v in times.items()}
    return {"fps": fps, "ratio": {k: fps[k] / fps["reference"] for k in batched}}


# ------------------------------------------------------------------------------------------ main

def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default: cuda if available)")
    p.add_argument("--resolutions", default="720p,1080p", help="720p, 1080p (comma separated)")
    p.add_argument("--faces", default="1,6", help="faces per frame: 1, 6 or 1,6 (default)")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default 240 on CUDA, 2 on the CPU)")
    p.add_argument("--precision", default=None,
                   help="comma separated fp32 / bf16 / fp16 (default fp32,bf16 on the CPU, bf16 on CUDA)")
    p.add_argument("--compile", action="store_true", help="FaceSwapper(compile=True) (torch.compile the generator)")
    p.add_argument("--batch-size", type=int, default=None, help="frames per batch (default 16 CUDA, 2 CPU)")
    p.add_argument("--face-batch-size", type=int, default=None, help="faces per generator call (default: library)")
    p.add_argument("--decode-device", default="auto", help="auto | cpu | cuda (see simswap swap --decode-device)")
    p.add_argument("--encoder", default="auto", help="auto | libx264 | h264_nvenc | hevc_nvenc")
    p.add_argument("--reference", choices=("auto", "on", "off"), default="auto",
                   help="ratio to the per-face reference pipeline (auto: on the CPU only)")
    p.add_argument("--repeats", type=int, default=1, help="timed rounds of the reference comparison (best kept)")
    p.add_argument("--measure-peak", action="store_true", help="measure the bf16 peak instead of the GPU table")
    p.add_argument("--generator", default=None, help="generator file (default: seeded g224)")
    p.add_argument("--arcface", default=None, help="ArcFace file (default: seeded)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--t1", default=None, help="path of insightface's t1.jpg (default: the installed insightface's)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: one 320x180 clip, 1 face, 2 frames, fp32 (+ the reference comparison)")
    p.add_argument("--work-dir", default=None, help="folder for the clips and outputs (default: a temp folder)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results to this JSON file")
    args = p.parse_args(argv)

    device = U.resolve_device(args.device)
    threads = U.set_threads(args.threads)
    cuda = device.type == "cuda"
    if args.quick:
        args.resolutions, args.faces = "quick", "1"
        args.frames = args.frames or 2
        args.precision = args.precision or "fp32"
    resolutions = [r.strip() for r in args.resolutions.split(",") if r.strip()]
    for r in resolutions:
        if r not in RESOLUTIONS:
            raise SystemExit(f"--resolutions: expected 720p / 1080p, got {r}")
    faces_list = [int(f) for f in args.faces.split(",") if f.strip()]
    frames_n = args.frames or (240 if cuda else 2)
    args.batch_size = args.batch_size or (16 if cuda else 2)
    precisions = [x.strip() for x in (args.precision or ("bf16" if cuda else "fp32,bf16")).split(",") if x.strip()]
    use_ref = args.reference == "on" or (args.reference == "auto" and not cuda)

    env = U.environment(device)
    U.print_environment(env, f"bench_speed: decode -> swap -> encode on {device}")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="simswap_bench_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    weights = None
    paths = {"g224": args.generator, "arcface": args.arcface}
    if args.generator is None or args.arcface is None:
        weights = U.SeededWeights(str(work / "weights"), ("g224", "arcface"))
        paths = {k: v or weights.paths[k] for k, v in paths.items()}
    gen = load_generator(paths["g224"]).to(device).eval()
    arc = load_arcface(paths["arcface"]).to(device).eval()
    det = load_detector("yunet", device=device)
    crop = int(getattr(gen, "crop_size", 224) or 224)
    gflop_face = GFLOP_PER_FACE_224 * (crop / 224) ** 2
    peak, peak_src = peak_tflops(device, args.measure_peak)
    print(f"   models                   generator crop {crop} ({gflop_face:.1f} GFLOP/face), detector {det!r}; "
          f"bf16 peak {peak:.3g} TFLOP/s, {peak_src}")
    swappers = {pr: swapper_for(gen, arc, det, device, pr, args.compile) for pr in precisions}
    from bench_pipeline import astronaut_image

    identity = swappers[precisions[0]].extract_identity(astronaut_image().to(device), select="largest")

    results: dict[str, Any] = {}
    rows = []
    for res in resolutions:
        w, h = RESOLUTIONS[res]
        for nf in faces_list:
            key = f"{res}/{nf}"
            clip = write_clip(work / f"clip_{res}_{nf}.mp4", nf, w, h, frames_n, t1=args.t1)
            entry: dict[str, Any] = {"resolution": [w, h], "faces_per_frame": nf, "frames": frames_n}
            from simswap_core.io.frames import VideoSource

            frames = torch.cat([b.frames for b in VideoSource(clip, device, decode_device="cpu").batches(64)])
            entry["decode_fps"] = decode_fps(clip, device, args.decode_device, args.batch_size)
            entry["encode_fps"] = encode_fps(frames, work / f"enc_{res}_{nf}.mp4", args.encoder, device,
                                             args.batch_size)
            for pr, sw in swappers.items():
                run_clip(sw, clip, work / "warm.mp4", identity, device, args, stages=False)   # warm-up (compile)
                reset_memory(device)
                e2e = run_clip(sw, clip, work / f"out_{res}_{nf}_{pr}.mp4", identity, device, args, stages=False)
                mem = memory_mib(device)
                st = run_clip(sw, clip, work / f"out_{res}_{nf}_{pr}_st.mp4", identity, device, args, stages=True)
                gen_s = st["stages"]["generate"]
                faces_s = e2e["faces"] / gen_s if gen_s > 0 else float("nan")
                tflops = faces_s * gflop_face / 1e3
                r = {"fps": e2e["frames"] / e2e["wall_s"], "wall_s": e2e["wall_s"], "faces": e2e["faces"],
                     "stage_s": st["stages"], "stage_wall_s": st["wall_s"],
                     "generator_faces_per_s": faces_s, "generator_tflops": tflops,
                     "generator_peak_share": tflops / peak if peak else None, "memory_mib": mem,
                     "decode": e2e["decode"], "encode": e2e["encode"]}
                entry[pr] = r
                rows.append([key, pr, f"{r['fps']:.2f}", f"{e2e['faces']}",
                             *[f"{st['stages'][k]:.2f}" for k in STAGES],
                             f"{entry['decode_fps']:.1f}", f"{entry['encode_fps']:.1f}",
                             f"{faces_s:.1f}", f"{100 * (r['generator_peak_share'] or 0):.2f} %", f"{mem:.0f}"])
                print(f"   {key} {pr}: {r['fps']:.2f} frames/s end to end, {faces_s:.1f} generator faces/s "
                      f"({time.strftime('%H:%M:%S')})", flush=True)
            if use_ref:
                entry["reference"] = reference_ratio(gen, arc, det, device, frames, identity, swappers, args)
                ratios = ", ".join(f"{pr} {x:.2f}x" for pr, x in entry["reference"]["ratio"].items())
                print(f"   {key}: batched / per-face reference (swap only): {ratios}", flush=True)
            results[key] = entry
            del frames
    print(f"\n== results: {frames_n} frames per clip, batch {args.batch_size}, {device}, {threads} threads")
    print(f"   {results[next(iter(results))][precisions[0]]['decode']}")
    print(f"   {results[next(iter(results))][precisions[0]]['encode']}")
    unit = "MiB (CUDA max allocated)" if cuda else "MiB (peak RSS)"
    print(U.table(rows, ["clip", "prec", "fps e2e", "faces", *[f"{k} s" for k in STAGES], "decode fps",
                         "encode fps", "G faces/s", "G % bf16 peak", unit]))
    if use_ref:
        print("\n-- ratio to the per-face reference pipeline (swap() of the same decoded frames, side by side)")
        ref_rows = [[k, f"{e['reference']['fps']['reference']:.3f}",
                     *[f"{e['reference']['fps'][pr]:.3f} ({e['reference']['ratio'][pr]:.2f}x)" for pr in precisions]]
                    for k, e in results.items()]
        print(U.table(ref_rows, ["clip", "reference fps", *[f"batched {pr} fps (ratio)" for pr in precisions]]))
    print("\n   fps e2e = frames / wall seconds of run() (decode + swap + encode, threads overlapping, stage timer "
          "off); stage s = seconds per stage in a second run with the stage timer on; G faces/s = faces / "
          "generate seconds; % bf16 peak = G faces/s x GFLOP/face / peak.")
    data = {"benchmark": "speed", "environment": env, "frames": frames_n, "batch_size": args.batch_size,
            "precisions": precisions, "compile": args.compile, "peak_tflops": peak, "peak_source": peak_src,
            "gflop_per_face": gflop_face, "results": results, "command": " ".join(sys.argv)}
    if weights is not None:
        weights.close()
    U.write_json(args.json, data)
    return data


if __name__ == "__main__":
    main()
