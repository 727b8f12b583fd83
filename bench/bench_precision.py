#!/usr/bin/env python
"""Accuracy drift of every fast generator mode against fp32, on real aligned face crops.

    .venv/bin/python bench/bench_precision.py                   # CPU: every mode below, 224 crops
    .venv/bin/python bench/bench_precision.py --quick           # fp32-cl, bf16, onnx on 2 faces (a smoke test)
    .venv/bin/python bench/bench_precision.py --device cuda --modes cl,bf16,fp16,compile,graphs,onnx

Crops: the 6 faces of insightface's t1.jpg and the skimage astronaut, detected by YuNet and aligned at 224 as
FaceSwapper does; the identity is the astronaut's (ArcFace). Every mode runs the same crops and latents; the
reference is the fp32 NCHW eager generator. Modes:

    cl        fp32, channels_last crops            bf16 / fp16  autocast (+ channels_last, FaceSwapper's default)
    compile   torch.compile (inductor), fp32      graphs       CUDA graphs, fp32 (CUDA only)
    onnx      the ONNX export run by onnxruntime (CPU provider), fp32;  onnx16: the fp16 export

Printed per mode: max and mean |difference| on RGB [0,1], PSNR (dB, peak 1) and the share of 8-bit values that
change (round(255 x) differs), each as soon as it is measured, then a table. fp16 autocast on the CPU runs
(torch >= 2.1) but is slow there (380 s for 7 faces on two loaded cores); compile on the CPU takes minutes
(inductor) on two cores; onnx16 exports by tracing the fp16 model, which on the CPU takes many minutes at 224.
Weights are SEEDED RANDOM (simswap_core.models.seeded, official formats;
no real checkpoint can be downloaded here): the drift of reduced precision on real weights may differ (it depends
on activation ranges); run it with --generator/--arcface pointing at real checkpoints where you have them.
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U
from simswap_core.accel import GeneratorAccelerator
from simswap_core.swap import FaceSwapper, run_generator

ALL_MODES = ("cl", "bf16", "fp16", "compile", "graphs", "onnx", "onnx16")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--modes", default=None, help=f"comma list of {', '.join(ALL_MODES)} (default: all that apply)")
    p.add_argument("--quick", action="store_true", help="2 faces, modes cl,bf16,onnx (a smoke test)")
    p.add_argument("--generator", default=None, help="a real generator checkpoint (default: seeded 224 weights)")
    p.add_argument("--arcface", default=None, help="a real ArcFace checkpoint (default: seeded weights)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the table to this JSON file")
    return p.parse_args(argv)


def real_crops(swapper: FaceSwapper, device: torch.device, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(aligned crops [F,3,S,S] RGB [0,1] of t1.jpg's faces and the astronaut's, the astronaut's latent [1,512])."""
    from skimage import data

    from simswap_core.io.images import read_image

    astronaut = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].float().div(255).to(device)
    frames = [astronaut]
    spec = importlib.util.find_spec("insightface")
    if spec is not None and spec.submodule_search_locations:
        t1 = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
        if t1.is_file():
            frames.insert(0, read_image(t1).image.to(device))
    crops = torch.cat([swapper.align(f, swapper.detect(f)).crops for f in frames])
    identity = swapper.extract_identity(astronaut, select="largest")
    return (crops[:limit] if limit else crops), identity.latent.reshape(1, -1).to(device, torch.float32)


def drift(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    d = (out.float().cpu() - ref.float().cpu())
    mse = float(d.square().mean())
    levels = (out.float().cpu().mul(255).round() != ref.float().cpu().mul(255).round()).float().mean()
    return {"max_abs": float(d.abs().max()), "mean_abs": float(d.abs().mean()),
            "psnr_db": math.inf if mse == 0 else 10 * math.log10(1.0 / mse), "levels_changed_pct": 100 * float(levels)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = U.resolve_device(args.device)
    U.set_threads(args.threads)
    from simswap_core.detection import load_detector
    from simswap_core.models.loaders import load_arcface, load_generator

    weights = None
    paths = {"g224": args.generator, "arcface": args.arcface}
    if args.generator is None or args.arcface is None:
        weights = U.SeededWeights(None, ("g224", "arcface"))
        paths = {k: v or weights.paths[k] for k, v in paths.items()}
    g = load_generator(paths["g224"]).to(device).eval()
    a = load_arcface(paths["arcface"]).to(device).eval()
    swapper = FaceSwapper(g, a, load_detector("yunet", device=device), device=device)
    modes = [m.strip() for m in (args.modes or ("cl,bf16,onnx" if args.quick else ",".join(ALL_MODES))).split(",")
             if m.strip()]
    for m in modes:
        if m not in ALL_MODES:
            raise SystemExit(f"--modes: unknown mode {m!r} (expected {', '.join(ALL_MODES)})")
    with torch.inference_mode():
        crops, latent = real_crops(swapper, device, 2 if args.quick else None)
    latents = latent.expand(crops.shape[0], -1)
    n = crops.shape[0]
    env = U.environment(device)
    U.print_environment(env, f"bench_precision: G {swapper.crop_size} on {device}, {n} real aligned crops")
    print(f"   weights                  {'given checkpoints' if weights is None else 'seeded random (seed 1234)'}")

    def gen(fn, x, precision="fp32", batch=n):
        with torch.inference_mode():
            return run_generator(fn, x, latents, batch_size=batch, precision=precision)

    ref = gen(g, crops)
    cl = crops.contiguous(memory_format=torch.channels_last)
    rows, results = [], {}
    for mode in modes:
        t0 = time.perf_counter()
        note = ""
        if mode == "cl":
            out = gen(g, cl)
        elif mode in ("bf16", "fp16"):
            out = gen(g, cl, mode)
            note = "autocast + channels_last" + (" (CPU fp16: slow path)" if device.type == "cpu" and
                                                  mode == "fp16" else "")
        elif mode == "compile":
            acc = GeneratorAccelerator(g, device, compile=True, max_batch=n)
            out = gen(acc, crops)
            note = acc.describe() + " (first call includes compilation)"
        elif mode == "graphs":
            if device.type != "cuda":
                rows.append([mode, "-", "-", "-", "-", "-", "not run: CUDA graphs need a CUDA device"])
                continue
            acc = GeneratorAccelerator(g, device, cuda_graphs=True, max_batch=n)
            gen(acc, crops)                                   # capture
            out = gen(acc, crops)                             # replay
            note = acc.describe()
        else:
            from simswap_core.export import export_generator

            if importlib.util.find_spec("onnxruntime") is None:
                rows.append([mode, "-", "-", "-", "-", "-", "not run: onnxruntime is not installed"])
                continue
            import onnxruntime as ort

            with tempfile.TemporaryDirectory() as tmp:
                res = export_generator(g, Path(tmp) / "g.onnx", precision="fp16" if mode == "onnx16" else "fp32")
                sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
                got = sess.run(None, {"target": crops.float().cpu().numpy(), "source": latents.cpu().numpy()})[0]
            out = torch.from_numpy(got)
            note = f"onnxruntime {ort.__version__} CPU, {res.precision} file, opset {res.opset}"
        seconds = time.perf_counter() - t0
        r = drift(out, ref)
        results[mode] = {**r, "seconds": seconds, "note": note}
        rows.append([mode, f"{r['max_abs']:.2e}", f"{r['mean_abs']:.2e}", f"{r['psnr_db']:.1f}",
                     f"{r['levels_changed_pct']:.2f}", f"{seconds:.1f}", note])
        print(f"   {mode:<24} max|d| {r['max_abs']:.2e}  mean|d| {r['mean_abs']:.2e}  PSNR {r['psnr_db']:.1f} dB  "
              f"8-bit changed {r['levels_changed_pct']:.2f} %  ({seconds:.1f} s)", flush=True)
    print()
    print(U.table(rows, ["mode", "max|d|", "mean|d|", "PSNR dB", "8-bit values changed %", "s", "note"]))
    print("\nreference: fp32 NCHW eager generator on the same crops; |d| on RGB [0,1] (1/255 = 3.9e-3 is one level)")
    if weights is not None:
        weights.close()
    out = {"environment": env, "faces": n, "modes": results}
    U.write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
