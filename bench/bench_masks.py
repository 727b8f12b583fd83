#!/usr/bin/env python
"""Face-mask kinds: mask time per face and its share of the whole frame time, every kind side by side in one run.

    .venv/bin/python bench/bench_masks.py                       # CPU (and CUDA when available), small seeded SAM
    .venv/bin/python bench/bench_masks.py --sam vit_b           # SAM at the real vit_b size (1024 input)
    .venv/bin/python bench/bench_masks.py --devices cpu --frames 1 --repeats 2 --json out/masks.json

Scene: insightface's t1.jpg (6 faces; rows 0..719 of the 1280x886 photo: a 1280x720 frame) or, with ``--scene 1``,
scikit-image's astronaut in the middle of a grey 1280x720 canvas; a batch is ``--frames`` copies of the frame.

One "frame run" is the swap of the batch with one mask kind, stage by stage with the library functions
FaceSwapper uses, each stage timed by the library's StageTimer (``simswap_core.progress.StageTimer``; on CUDA each
stage ends with a synchronize): detect (the detector on the batch), align (``align_faces``), generate
(``run_generator``, batch = all faces), mask (``build_crop_masks`` of the kind: the parser for parsing /
occlusion / sam_parsing, SAM's image embedding once per frame plus one batched prompt decode for sam /
sam_parsing), paste (``paste_faces``, default mode). Frame time = the wall time of the whole run.
Per round every kind runs once, in a rotating order, so all kinds see the same machine load; the table gives the
medians over the rounds: mask ms per face, mask share of the frame time, frame ms per frame, the ratio of the
frame time to the box run of the same round, and the mask's process CPU ms per face and CPU share (CPU seconds of
all threads: steadier than wall time when other jobs share the cores; with ``--threads 1`` they are the work).

Weights are SEEDED RANDOM weights in the official formats (same FLOPs as the real checkpoints; the swapped faces
and masks are noise): the 224 generator (``simswap_core.models.seeded``), a BiSeNet parser built from a fixed seed
(like ``tests/comfy_harness.write_seeded_parser``) and SAM in the official key layout: by default the small test
layout (``simswap_core.models.seeded.SAM_SMALL``: 256 input, a 4-block 64-wide ViT; far cheaper than any real
SAM), with ``--sam vit_b`` the real vit_b size (1024 input, 12 blocks of 768: the cost of sam_vit_b_01ec64.pth).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import WallCpuStageTimer, scene_frame

import _bench_util as U
from simswap_core.align import align_faces
from simswap_core.masks import MASKERS, MaskSpec, build_crop_masks
from simswap_core.models.loaders import load_generator, load_parser, load_sam
from simswap_core.paste import paste_faces
from simswap_core.swap import run_generator

KINDS = ("box", "ellipse", "parsing", "occlusion", "sam", "sam_parsing")
STAGES = ("detect", "align", "generate", "mask", "paste")
SAM_CHOICES = {"small": "sam_small", "vit_b": "sam_vit_b"}


class Models:
    """The seeded networks of the benchmark, written in official formats to ``folder`` and loaded by the library's
    loaders (the same code paths as the real files). The parser and SAM only when a kind of ``kinds`` needs them."""

    def __init__(self, folder: Path, sam: str, crop_size: int | None, kinds: tuple[str, ...] = KINDS,
                 generator: str | None = None) -> None:
        from simswap_core.detection import load_detector
        from simswap_core.models.seeded import write_seeded_checkpoints, write_seeded_sam
        from simswap_core.networks.bisenet import NUM_CLASSES, BiSeNet

        t0 = time.perf_counter()
        g_path = Path(generator) if generator else write_seeded_checkpoints(folder, seed=1234, kinds=("g224",))["g224"]
        parser_path = folder / "seeded_79999_iter.pth"
        if any(MASKERS[k].needs_parser for k in kinds) and not parser_path.exists():
            with torch.random.fork_rng():
                torch.manual_seed(1234)
                net = BiSeNet(NUM_CLASSES)
            torch.save(net.state_dict(), parser_path)
        sam_path = folder / f"seeded_{SAM_CHOICES[sam]}.pth"
        if any(MASKERS[k].needs_sam for k in kinds) and not sam_path.exists():
            write_seeded_sam(sam_path, 1234, kind=SAM_CHOICES[sam])
        self.write_s = time.perf_counter() - t0
        self.generator = load_generator(g_path)
        self.crop_size = int(crop_size or getattr(self.generator, "crop_size", None) or 224)
        self.parser = load_parser(parser_path) if parser_path.exists() else None
        self.sam = load_sam(sam_path) if sam_path.exists() else None
        self.detector = load_detector("yunet")
        self.sam_desc = "-" if self.sam is None else f"{self.sam.arch}, input {self.sam.config.img_size}"

    def to(self, device: torch.device) -> Models:
        for name in ("generator", "parser", "sam"):
            module = getattr(self, name)
            if module is not None:
                setattr(self, name, module.to(device).eval())
        return self


@torch.inference_mode()
def frame_run(models: Models, frames: torch.Tensor, kind: str, latent: torch.Tensor,
              device: torch.device) -> dict[str, Any]:
    """One swap of ``frames`` [B,3,H,W] (on ``device``) with the mask ``kind``: wall and process-CPU seconds per
    stage and in all."""
    timer = WallCpuStageTimer(device)
    timer.enabled = True
    spec = MaskSpec(kind)
    needs_sam = MASKERS[kind].needs_sam
    U.sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with timer.stage("detect"):
        faces = models.detector.detect(frames).to(device)
    with timer.stage("align"):
        aligned = align_faces(frames, faces, models.crop_size, None)
    with timer.stage("generate"):
        swapped = run_generator(models.generator, aligned.crops, latent.expand(len(aligned), -1),
                                batch_size=max(1, len(aligned)))
    with timer.stage("mask"):
        extra: dict[str, Any] = {"frames": frames, "sam": models.sam, "boxes": faces.boxes} if needs_sam else {}
        masks = build_crop_masks(aligned, spec, models.parser if spec.needs_parser else None, **extra)
    with timer.stage("paste"):
        out, _ = paste_faces(frames, swapped, aligned, masks)
    U.sync(device)
    total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
    return {"faces": len(aligned), "total_s": total, "stages": {k: timer.totals.get(k, 0.0) for k in STAGES},
            "cpu_total_s": cpu_total, "cpu_stages": {k: timer.cpu_totals.get(k, 0.0) for k in STAGES},
            "mask_mean": float(masks.mean()) if masks.numel() else 0.0, "out_finite": bool(torch.isfinite(out).all())}


def bench_device(models: Models, device: torch.device, frames_cpu: torch.Tensor, kinds: tuple[str, ...],
                 repeats: int, warmup: int) -> dict[str, Any]:
    models.to(device)
    frames = frames_cpu.to(device)
    latent = torch.nn.functional.normalize(torch.randn(1, 512, generator=torch.Generator().manual_seed(7)),
                                           dim=1).to(device)
    for _ in range(warmup):
        for kind in kinds:
            frame_run(models, frames, kind, latent, device)
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    for r in range(repeats):
        order = list(kinds[r % len(kinds):] + kinds[:r % len(kinds)])
        if r % 2:
            order.reverse()
        for kind in order:
            runs[kind].append(frame_run(models, frames, kind, latent, device))
    n = frames.shape[0]
    faces = runs[kinds[0]][0]["faces"]
    if faces == 0:
        raise SystemExit("no face was detected in the scene: nothing to measure")
    results: dict[str, Any] = {}
    for kind in kinds:
        totals = [x["total_s"] for x in runs[kind]]
        masks = [x["stages"]["mask"] for x in runs[kind]]
        shares = [x["stages"]["mask"] / x["total_s"] for x in runs[kind]]
        results[kind] = {
            "faces": faces,
            "frame_s": U.stats([t / n for t in totals]),
            "mask_s_per_face": U.stats([m / faces for m in masks]),
            "mask_share": U.stats(shares),
            "mask_cpu_s_per_face": U.stats([x["cpu_stages"]["mask"] / faces for x in runs[kind]]),
            "mask_cpu_share": U.stats([x["cpu_stages"]["mask"] / max(x["cpu_total_s"], 1e-12) for x in runs[kind]]),
            "stage_median_s": {s: U.stats([x["stages"][s] for x in runs[kind]])["median"] for s in STAGES},
            "raw": runs[kind],
        }
    base = results["box"]["frame_s"]["median"] if "box" in results else None
    for kind in kinds:
        # per-round ratio to the box run of the same round (same load), then the median
        if base is not None:
            ratios = [x["total_s"] / b["total_s"] for x, b in zip(runs[kind], runs["box"])]
            results[kind]["frame_ratio_to_box"] = U.stats(ratios)
    return {"device": str(device), "frames": n, "faces_per_frame": faces / n, "kinds": results}


def print_device(res: dict[str, Any]) -> None:
    rows = []
    for kind, r in res["kinds"].items():
        st = r["stage_median_s"]
        rows.append([kind, f"{r['mask_s_per_face']['median'] * 1e3:.1f}", f"{r['mask_s_per_face']['min'] * 1e3:.1f}",
                     f"{100 * r['mask_share']['median']:.1f} %", f"{r['frame_s']['median'] * 1e3:.0f}",
                     f"{r['frame_ratio_to_box']['median']:.2f}" if "frame_ratio_to_box" in r else "-",
                     f"{r['mask_cpu_s_per_face']['median'] * 1e3:.1f}", f"{100 * r['mask_cpu_share']['median']:.1f} %",
                     " / ".join(f"{100 * st[s] / max(sum(st.values()), 1e-12):.0f}" for s in STAGES)])
    print(f"\n== {res['device']}: {res['frames']} frame(s) of 1280x720, {res['faces_per_frame']:g} face(s) per frame")
    print(U.table(rows, ["mask kind", "mask ms/face", "(best)", "mask share", "frame ms", "x box", "mask CPU ms/face",
                         "CPU share", "wall % " + "/".join(STAGES)]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", default=None,
                   help="comma-separated: cpu, cuda, cuda:N (default: cpu, plus cuda when available)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"mask kinds to compare (default: {','.join(KINDS)})")
    p.add_argument("--scene", type=int, choices=(1, 6), default=6, help="faces per frame: 6 (t1.jpg) or 1")
    p.add_argument("--frames", type=int, default=1, help="frames per batch (copies of the scene frame; default 1)")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3 on CPU, 10 on CUDA)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--sam", choices=tuple(SAM_CHOICES), default="small",
                   help="seeded SAM size: small (the test layout, default) or vit_b (the real vit_b size)")
    p.add_argument("--crop-size", type=int, default=None,
                   help="aligned crop size the generator runs at (default 224, the official model's)")
    p.add_argument("--generator", default=None, metavar="PATH",
                   help="a generator file to use instead of the seeded 224 one (its crop size unless --crop-size)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's default)")
    p.add_argument("--weights-dir", default=None, help="folder for the seeded weights (default: a temp folder)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write all results to this JSON file")
    a = p.parse_args(argv)

    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    unknown = [k for k in kinds if k not in MASKERS]
    if not kinds or unknown:
        raise SystemExit(f"--kinds: unknown {unknown} (expected some of {', '.join(MASKERS)})")
    if "box" in kinds:
        kinds = ("box",) + tuple(k for k in kinds if k != "box")
    if a.frames < 1 or (a.repeats is not None and a.repeats < 1) or a.warmup < 0:
        raise SystemExit("--frames and --repeats must be >= 1, --warmup >= 0")
    names = a.devices.split(",") if a.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices = [U.resolve_device(d.strip()) for d in names if d.strip()]
    threads = U.set_threads(a.threads)
    env = U.environment(devices[-1])
    env["torch_threads"] = threads
    U.print_environment(env, "bench_masks: mask kinds side by side")

    tmp = None
    folder = a.weights_dir
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="simswap_bench_masks_")
        folder = tmp.name
    try:
        models = Models(Path(folder), a.sam, a.crop_size, kinds, a.generator)
        frames = scene_frame(a.scene).expand(a.frames, -1, -1, -1).contiguous()
        print(f"   seeded weights written in {models.write_s:.1f} s; SAM: {models.sam_desc}; crop {models.crop_size}")
        out: dict[str, Any] = {"benchmark": "masks", "env": env, "sam": a.sam, "scene": a.scene,
                               "crop_size": models.crop_size, "devices": {}}
        for dev in devices:
            repeats = a.repeats or (10 if dev.type == "cuda" else 3)
            res = bench_device(models, dev, frames, kinds, repeats, a.warmup)
            out["devices"][str(dev)] = res
            print_device(res)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print("\nmask ms/face = median mask-stage ms / faces (best = the fastest round); mask share = mask stage / whole "
          "frame time (detect, align, generate, mask, paste); x box = frame time / the box run of the same round; "
          "CPU columns: the same with process CPU seconds (all threads; steadier than wall time on a loaded machine).")
    U.write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
