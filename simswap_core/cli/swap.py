"""``simswap swap``: the source identity into a target image, folder of frames or video, through ``run``."""
from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .common import (
    ProgressBar,
    add_common,
    device,
    load_models,
    load_parser_cli,
    parse_size,
    positive_int,
    smooth_strength,
    unit_float,
)


def add_parser(sub: Any) -> None:
    """Register ``swap`` and its flags on the subparsers ``sub``."""
    s = sub.add_parser(
        "swap", help="swap the source identity into a target image, folder of frames or video",
        description="Swap the source identity into a target image, folder of frames, video or animated image "
                    "(GIF / WebP / APNG: every frame, durations kept; write it as .gif/.webp/.png or as a video). "
                    "Outputs are written under a temporary name and put in place only after a complete run: an "
                    "error, Ctrl-C (exit 130) or SIGTERM (exit 143) leaves nothing behind. An output is never an "
                    "input (refused even with --overwrite). A truncated or damaged video is refused, naming the "
                    "frames found and expected, unless --allow-partial; an unreadable image in a target folder "
                    "fails the run, naming the file, and nothing is written.")
    s.add_argument("--source", required=True, help="source image, folder of images (identities averaged) or "
                                                   "saved identity (.safetensors)")
    s.add_argument("--target", required=True, help="target image, folder of images or video file")
    s.add_argument("--out", required=True, help="output image / folder / video")
    s.add_argument("--generator", help="generator checkpoint path or name (default simswap_224 / simswap_512)")
    s.add_argument("--arcface", help="ArcFace checkpoint path or name (default arcface)")
    s.add_argument("--parser", help="BiSeNet parser checkpoint for --mask parsing (default bisenet)")
    s.add_argument("--detector", default="yunet", help="yunet | antelopev2 | buffalo_l | PATH.onnx")
    s.add_argument("--det-threshold", type=unit_float, default=None, help="detection score threshold")
    s.add_argument("--size", type=parse_size, default=None, help="crop size 224 or 512 (default: the generator's)")
    s.add_argument("--faces", default="all", help="all | largest | best | index:N[,M] | ref:IMAGE")
    s.add_argument("--id-threshold", type=float, default=None, help="max MSE for --faces ref:IMAGE (default 0.03)")
    s.add_argument("--source-face", default="largest", help="face of each source image: largest | best | index:N")
    s.add_argument("--combine", default="mean", choices=["mean", "median", "weighted"],
                   help="how several source images are combined")
    s.add_argument("--mask", default=None, help="box | ellipse | parsing[:regions] (default: box)")
    s.add_argument("--paste", default="default", choices=["default", "official"])
    s.add_argument("--color-match", action="store_true", help="match the swapped face's colours to the target")
    s.add_argument("--if-no-face", choices=["error", "keep"], default=None,
                   help="frames without a selected face: error (default for one image) or keep (default for "
                        "folders and videos)")
    s.add_argument("--smooth", type=smooth_strength, default="auto",
                   help="temporal landmark smoothing of tracked faces, 0 (off) .. 1 (strongest); auto = 0.5 for "
                        "a video or animated target, off for images and folders (frames of a folder may be unrelated "
                        "photos)")
    s.add_argument("--batch-size", type=positive_int, default=8,
                   help="frames per batch (also faces per generator call on a GPU; 1 on the CPU)")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="generator precision")
    s.add_argument("--crf", type=int, default=17, help="x264 quality for video output (lower = better)")
    s.add_argument("--no-audio", action="store_true", help="do not copy the audio of a video target")
    s.add_argument("--allow-partial", action="store_true",
                   help="a truncated or damaged video target: swap the frames that decode (a warning names the "
                        "counts) instead of refusing it")
    add_common(s)
    s.set_defaults(func=cmd_swap)


def read_sources(source: str, device: torch.device) -> list[torch.Tensor]:
    """--source image or folder -> list of [1,3,H,W] float RGB [0,1] on ``device`` (natural order)."""
    from ..io.images import list_images, read_image

    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"--source {source}: no such file or folder")
    files = list_images(p) if p.is_dir() else [p]
    if not files:
        raise InputError(f"--source {source}: the folder holds no images")
    return [read_image(f, device=device).image for f in files]


def selection(spec: str, id_threshold: float | None) -> tuple[Any, str | None]:
    """--faces value -> (FaceSelection, reference image path or None). "ref:IMAGE" picks, in every frame, the
    face closest to the person in IMAGE (raw ArcFace MSE below --id-threshold, default 0.03 as official)."""
    from ..detection.select import FaceSelection

    low = spec.strip().lower()
    if low in ("ref", "reference") or low.startswith(("ref:", "reference:")):
        path = spec.split(":", 1)[1] if ":" in spec else ""
        if not path:
            raise InputError("--faces ref:IMAGE: expected the path of a photo of the person to replace, "
                             "e.g. --faces ref:person.jpg (threshold: --id-threshold)")
        if not Path(path).exists():
            raise FileNotFoundError(f"--faces ref:{path}: reference image not found")
        return FaceSelection.parse("reference", threshold=id_threshold), path
    return FaceSelection.parse(spec), None


def cmd_swap(args: argparse.Namespace) -> int:
    from ..identity import Identity, load_identity
    from ..io.frames import open_sink, open_source
    from ..masks import MaskSpec
    from ..run import run
    from ..swap import FaceSwapper

    dev = device(args.device)
    source = open_source(args.target, dev, allow_partial=args.allow_partial)
    chosen, ref_path = selection(args.faces, args.id_threshold)
    # Check outputs before any model work: never an input, never overwritten unless asked, writable; fail fast.
    sink = open_sink(args.out, source, overwrite=args.overwrite, audio=not args.no_audio, crf=args.crf,
                     inputs=[args.source, ref_path])
    args.pending_output = sink.path        # main() says "nothing was written to ..." if the run fails from here
    mask = MaskSpec.parse(args.mask) if args.mask else None

    generator, arcface, detector = load_models(args, dev)
    parser = load_parser_cli(args, dev) if mask is not None and mask.needs_parser else None
    swapper = FaceSwapper(generator, arcface, detector, parser=parser, device=dev, crop_size=args.size,
                          precision=args.precision)

    if str(args.source).endswith(".safetensors"):
        identity: Identity = load_identity(args.source)
    else:
        identity = swapper.extract_identity(read_sources(args.source, dev), select=args.source_face,
                                            combine=args.combine)
    reference = None
    if ref_path is not None:
        reference = swapper.extract_identity(read_sources(ref_path, dev), select="largest")
    kind = source.kind
    moving = kind in ("video", "animation")
    opts: dict[str, Any] = dict(select=chosen, mask=mask, paste_mode=args.paste, color_match=args.color_match,
                                reference=reference, if_no_face=args.if_no_face or ("error" if kind == "image"
                                                                                     else "keep"))
    strength = (0.5 if moving else 0.0) if args.smooth == "auto" else float(args.smooth)
    if strength > 0 and kind != "image":
        from ..tracking import LandmarkSmoother

        opts["smoothing"] = LandmarkSmoother(strength)  # one smoother for the whole clip: tracks span batches
    # one image: no progress bar (as before); folders and videos: a bar over all frames
    bar = ProgressBar(source.total, "swap", args.quiet) if kind != "image" else None
    with bar if bar is not None else nullcontext():
        summary = run(source, swapper, sink, identity, batch_size=args.batch_size, progress=bar, **opts)
    args.pending_output = None
    if not args.quiet:
        without = len(summary.frames_without_face)
        msg = f"wrote {sink.path} ({summary.frames} frame(s), {summary.faces_swapped} face(s) swapped"
        msg += f", {without} frame(s) without a selected face left unchanged)" if without else ")"
        print(msg, file=sys.stderr)
    return 0
