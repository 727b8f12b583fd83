#!/usr/bin/env python
"""Flicker of swapped video: a still-camera clip with noise-jittered detections, swapped three ways.

    .venv/bin/python bench/bench_flicker.py                       # 30 frames, G 224, parsing mask, colour match
    .venv/bin/python bench/bench_flicker.py --size 64 --frames 12 --mask ellipse     # quick
    .venv/bin/python bench/bench_flicker.py --json out/flicker.json

The clip (built at run time, never stored): scikit-image's astronaut photo (one real face; head and shoulders,
the face about 130 px wide) in the middle of a 640x360 mid-grey frame, the SAME picture in every frame plus a
little sensor noise (Gaussian, --noise 8-bit levels, then rounded to 8 bits as a decoded video would be): a
camera on a tripod. The detector
(YuNet) runs on every frame, and a wrapper adds Gaussian noise of --jitter px to every box corner and landmark
of every frame (a fresh draw per frame, the same draws for every configuration): the detector jitter a real
video shows. Configurations, swapped in the same run with the same frames and detections (chunks of
--batch-size frames, so the temporal state is carried across chunk borders):

    (a) none            no temporal smoothing
    (b) landmarks       One-Euro landmark smoothing (tracking.LandmarkSmoother, strength --smoothing)
    (c) + mask, colour  (b) plus temporal.TemporalState(--smoothing, --smoothing): the crop mask and the colour
                        correction smoothed over time per track

All three use the same mask (--mask; default parsing with a SEEDED RANDOM BiSeNet: its labels mean nothing, but
they move with the crop jitter as a real parser's do) and colour matching, so there is something to smooth.

Flicker = the mean absolute frame-to-frame change (RGB in [0,1]) inside the face region (the face box detected on
the clean picture), averaged over the clip. It is printed for the original clip (its sensor noise) and for each
configuration, as ratios: swapped / original (1.00 = no flicker beyond the camera's own noise) and / (a). Also:
the frame-to-frame change of the region's MEAN colour (the low-frequency "colour flicker") and of the frame-space
blend mask (the "pumping edge"). Weights are seeded random weights (the swapped faces are noise) unless
--generator / --arcface / --parser name real checkpoints.

The swap goes through ``FaceSwapper.swap(..., smoothing=, temporal=)`` when the swapper takes ``temporal``;
otherwise the bench drives the same stages itself (align, generator, mask, TemporalState hooks, paste) and says so.
"""
from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U
from simswap_core import load_arcface, load_generator
from simswap_core.detection import FaceDetector, load_detector
from simswap_core.faces import DetectedFaces
from simswap_core.masks import MaskSpec, build_crop_masks
from simswap_core.paste import paste_faces
from simswap_core.swap import FaceSwapper, run_generator
from simswap_core.temporal import TemporalState
from simswap_core.tracking import LandmarkSmoother

W, H = 640, 360
CONFIGS = (("a", "none"), ("b", "landmarks"), ("c", "landmarks + mask + colour"))


# ------------------------------------------------------------------------------------------ clip and detections

def still_clip(frames: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean frame [1,3,H,W], clip [N,3,H,W]): the astronaut's head and shoulders (rows 0-255, columns 100-355 of
    the 512x512 photo) scaled to 360x360 in a grey 640x360 frame, + sensor noise per frame (sigma ``noise`` 8-bit
    levels), rounded to 8 bits. RGB [0,1]."""
    from PIL import Image
    from skimage import data

    photo = np.ascontiguousarray(data.astronaut()[0:256, 100:356])
    a = Image.fromarray(photo).resize((H, H), Image.Resampling.BILINEAR)
    canvas = np.full((H, W, 3), 128, np.uint8)
    x0 = (W - H) // 2
    canvas[:, x0:x0 + H] = np.asarray(a)
    clean = torch.from_numpy(canvas).permute(2, 0, 1)[None].float() / 255.0
    g = torch.Generator().manual_seed(seed)
    noisy = clean + torch.randn((frames, 3, H, W), generator=g) * (noise / 255.0)
    return clean, (noisy.clamp(0, 1) * 255.0).round() / 255.0


class JitteredDetector(FaceDetector):
    """A face detector whose faces get Gaussian noise of ``sigma`` px on every box corner and landmark, a fresh
    draw per frame from a seeded generator (``reseed()`` restarts the sequence: each configuration sees the same
    detections)."""

    def __init__(self, detector: FaceDetector, sigma: float, seed: int) -> None:
        self.detector, self.sigma, self.seed = detector, float(sigma), int(seed)
        self.name = f"{detector.name} + {sigma:g} px jitter"
        self.threshold, self.det_size = detector.threshold, detector.det_size
        self.model_path, self.providers = detector.model_path, detector.providers
        self.reseed()

    def reseed(self) -> None:
        self._gen = torch.Generator().manual_seed(self.seed)

    def detect(self, frames: torch.Tensor) -> DetectedFaces:
        faces = self.detector.detect(frames)
        if not len(faces) or self.sigma <= 0:
            return faces
        db = torch.randn(faces.boxes.shape, generator=self._gen) * self.sigma
        dp = torch.randn(faces.points.shape, generator=self._gen) * self.sigma
        return faces.replace(boxes=faces.boxes + db.to(faces.boxes), points=faces.points + dp.to(faces.points))


# ------------------------------------------------------------------------------------------ swapping

def swap_takes_temporal() -> bool:
    return "temporal" in inspect.signature(FaceSwapper.swap).parameters


def swap_clip(swapper: FaceSwapper, clip: torch.Tensor, identity: Any, *, mask: MaskSpec | None,
              smoother: LandmarkSmoother | None, temporal: TemporalState | None,
              batch_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(frames [N,3,H,W], frame masks [N,1,H,W], faces swapped) of ``clip`` swapped in chunks of ``batch_size``."""
    if swap_takes_temporal():
        res = swapper.swap(clip, identity, select="all", mask=mask, color_match=True, if_no_face="keep",
                           batch_size=batch_size, smoothing=smoother, temporal=temporal)
        return res.images, res.mask, len(res.faces)
    images, masks, count = [], [], 0
    latent = identity.latent.to(swapper.device, torch.float32).reshape(1, -1)
    for start in range(0, clip.shape[0], batch_size):       # the stages of FaceSwapper.swap, with D's hooks
        chunk = clip[start:start + batch_size].to(swapper.device)
        faces = swapper.detect(chunk)
        if smoother is not None:
            faces = smoother(faces)
        aligned = swapper.align(chunk, faces)
        with torch.inference_mode():
            swapped = run_generator(swapper.generator, aligned.crops, latent.expand(len(aligned), -1), batch_size=1)
            crop_masks = None if mask is None else build_crop_masks(aligned, mask, swapper.parser)
        color_filter = None
        if temporal is not None and faces.track_id is not None:
            crop_masks = temporal.smooth_masks(faces.track_id, faces.frame_index, crop_masks)
            color_filter = temporal.color_filter(faces.track_id, faces.frame_index)
        out, m = paste_faces(chunk, swapped, aligned, crop_masks, color_match=True, color_filter=color_filter)
        images.append(out.cpu())
        masks.append(m.cpu())
        count += len(faces)
    return torch.cat(images), torch.cat(masks), count


# ------------------------------------------------------------------------------------------ measures

def flicker(x: torch.Tensor, region: torch.Tensor) -> float:
    """Mean |x_t - x_{t-1}| over the region's pixels and channels, averaged over the clip."""
    return (x[1:] - x[:-1]).abs()[:, :, region].mean().item()


def colour_flicker(x: torch.Tensor, region: torch.Tensor) -> float:
    """Mean |mean colour_t - mean colour_{t-1}| of the region (per channel, averaged)."""
    means = x[:, :, region].mean(2)                           # [N,3]
    return (means[1:] - means[:-1]).abs().mean().item()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=30, help="frames of the clip (default 30)")
    p.add_argument("--size", type=int, default=224, choices=(64, 224),
                   help="crop size: 224 = the seeded G 224 (default); 64 = the same network on 64x64 crops (fast)")
    p.add_argument("--mask", default="parsing", choices=("parsing", "ellipse", "box"),
                   help="mask kind for every configuration (default parsing, seeded random BiSeNet)")
    p.add_argument("--jitter", type=float, default=1.5, help="detection noise, px (default 1.5)")
    p.add_argument("--noise", type=float, default=2.0, help="sensor noise of the clip, 8-bit levels (default 2)")
    p.add_argument("--smoothing", type=float, default=0.5,
                   help="strength of every smoothing in (b) and (c), 0..1 (default 0.5)")
    p.add_argument("--batch-size", type=int, default=8, help="frames per swap chunk (default 8)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--weights-dir", default=None, help="folder for the seeded weights (default: a temp folder)")
    p.add_argument("--generator", default=None, metavar="PATH",
                   help="a generator checkpoint instead of the seeded one (its crop size; --size is ignored)")
    p.add_argument("--arcface", default=None, metavar="PATH", help="an ArcFace checkpoint instead of the seeded one")
    p.add_argument("--parser", default=None, metavar="PATH",
                   help="a BiSeNet face parser (79999_iter.pth) for --mask parsing instead of a random one")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.frames < 2:
        p.error("--frames: at least 2 frames are needed to measure frame-to-frame change")

    device = U.resolve_device(args.device)
    U.set_threads(args.threads)
    env = U.environment(device)
    U.print_environment(env, "bench_flicker: environment")
    kinds = tuple(k for k, own in (("g224", args.generator), ("arcface", args.arcface)) if own is None)
    weights = U.SeededWeights(args.weights_dir, kinds) if kinds else None
    try:
        gpath = Path(args.generator) if args.generator else weights.paths["g224"] if weights else None
        if args.generator is None and args.size == 64 and weights is not None and gpath is not None:
            from simswap_core.models.loaders import convert_checkpoint

            gpath = convert_checkpoint(gpath, Path(weights.paths["g224"]).parent / "g224_crop64.safetensors",
                                       crop_size=64, overwrite=True)
        apath = Path(args.arcface) if args.arcface else weights.paths["arcface"] if weights else None
        assert gpath is not None and apath is not None
        parser = None
        if args.mask == "parsing" and args.parser:
            from simswap_core.models.loaders import load_parser

            parser = load_parser(args.parser)
        elif args.mask == "parsing":
            from simswap_core.networks.bisenet import BiSeNet

            torch.manual_seed(args.seed)
            parser = BiSeNet(19).eval()
        detector = JitteredDetector(load_detector("yunet"), args.jitter, args.seed)
        swapper = FaceSwapper(load_generator(gpath), load_arcface(apath), detector, parser=parser, device=device)
        clean, clip = still_clip(args.frames, args.noise, args.seed)
        base = detector.detector.detect(clean)
        if len(base) != 1:
            raise SystemExit(f"expected one face in the clean frame, found {len(base)}")
        x0, y0, x1, y1 = (int(round(v)) for v in base.boxes[0].tolist())
        region = torch.zeros(H, W, dtype=torch.bool)
        region[max(y0, 0):y1, max(x0, 0):x1] = True
        identity = swapper.extract_identity(clean, select="largest")
        mask = MaskSpec(args.mask)
        path = ("FaceSwapper.swap(..., smoothing=LandmarkSmoother, temporal=TemporalState)" if swap_takes_temporal()
                else "stages driven by the bench (FaceSwapper.swap has no temporal= yet)")
        print(f"\n== clip: {args.frames} frames {W}x{H}, astronaut face box {x1 - x0}x{y1 - y0} px, sensor noise "
              f"{args.noise:g}/255, detection jitter {args.jitter:g} px; G crop {swapper.crop_size}, mask {args.mask}, "
              f"colour match on, smoothing {args.smoothing:g}, chunks of {args.batch_size} frames")
        print(f"   swap path: {path}")

        orig = {"flicker": flicker(clip, region), "colour": colour_flicker(clip, region)}
        results: dict[str, dict] = {}
        for key, label in CONFIGS:
            detector.reseed()
            smoother = LandmarkSmoother(args.smoothing) if key in ("b", "c") else None
            temporal = TemporalState(args.smoothing, args.smoothing) if key == "c" else None
            t0 = time.perf_counter()
            out, m, faces = swap_clip(swapper, clip, identity, mask=mask, smoother=smoother, temporal=temporal,
                                      batch_size=args.batch_size)
            seconds = time.perf_counter() - t0
            results[key] = {"label": label, "faces": faces, "seconds": seconds, "flicker": flicker(out, region),
                            "colour": colour_flicker(out, region), "mask": flicker(m, region),
                            "tracks_held": None if temporal is None else temporal.live_tracks}
            print(f"   ({key}) {label}: {faces} faces swapped in {seconds:.1f} s", flush=True)
    finally:
        if weights is not None:
            weights.close()

    a = results["a"]
    rows = [["original clip", f"{orig['flicker']:.5f}", "1.00", "", f"{orig['colour']:.5f}", "1.00", "", ""]]
    for key, label in CONFIGS:
        r = results[key]
        rows.append([f"({key}) {label}", f"{r['flicker']:.5f}", f"{r['flicker'] / orig['flicker']:.2f}",
                     f"{r['flicker'] / a['flicker']:.2f}", f"{r['colour']:.5f}",
                     f"{r['colour'] / orig['colour']:.2f}", f"{r['colour'] / a['colour']:.2f}", f"{r['mask']:.5f}"])
    print("\n== flicker inside the face region (mean |frame t - frame t-1|, RGB [0,1])")
    print(U.table(rows, ["clip", "flicker", "/ orig", "/ (a)", "colour flicker", "/ orig", "/ (a)",
                         "mask change"]))
    print("   flicker = mean absolute change of every pixel; colour flicker = change of the region's mean colour;\n"
          "   mask change = mean absolute change of the frame-space blend mask; / orig = ratio to the original\n"
          "   clip (its sensor noise), / (a) = ratio to no temporal smoothing; all measured in this run.")
    out_json = {"benchmark": "flicker", "environment": env, "args": vars(args), "swap_path": path,
                "original": orig, "results": results}
    U.write_json(args.json, out_json)
    return out_json


if __name__ == "__main__":
    main()
