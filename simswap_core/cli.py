"""`simswap` command line: swap faces in images, folders of frames and videos; preview faces; convert; demo.

    simswap swap --source SRC --target TGT --out OUT [options]
    simswap faces IMAGE --out PREVIEW.png [--json FACES.json]
    simswap convert SRC DST
    simswap demo --out DIR

Errors print one clear line (model-file errors also list the folders searched and the fetch command) and exit
with status 2 (bad input / missing file) or 1 (anything unexpected).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import torch

from .errors import InputError, MissingModelError, SimSwapError

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


# --------------------------------------------------------------------------------------------- helpers

def _device(name: str | None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"--device: expected cpu, cuda or cuda:N, got {name!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this torch build or machine has no CUDA device; use --device cpu")
    return dev


def _parse_size(text: str) -> int:
    if text not in ("224", "512"):
        raise argparse.ArgumentTypeError(f"expected 224 or 512, got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _smooth_strength(text: str) -> str:
    if text == "auto":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0,1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0,1], got {text!r}")
    return text


def _unit_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0,1), got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0,1), got {text!r}")
    return v


def load_detector_cli(name: str, threshold: float | None, device: torch.device):
    from .detection import load_detector

    kwargs = {"device": device}
    if threshold is not None:
        kwargs["threshold"] = threshold
    return load_detector(name, **kwargs)


def _mask_spec(text: str):
    """--mask box | ellipse | parsing[:regions] -> (MaskSpec, needs_parser)."""
    from . import masks

    spec = masks.MaskSpec.parse(text)
    return spec, spec.kind == "parsing"


def _load_models(args, device: torch.device):
    from .checkpoints import load_arcface, load_generator
    from .model_files import find_model

    gen_name = args.generator or ("simswap_512" if args.size == 512 else "simswap_224")
    gen_path = find_model(gen_name, kind="generator" if args.generator is None else None)
    arc_path = find_model(args.arcface or "arcface", kind="arcface" if args.arcface is None else None)
    generator = load_generator(gen_path)
    if args.size is not None and getattr(generator, "crop_size", args.size) != args.size and args.generator:
        warnings.warn(f"--size {args.size} but {gen_path.name} was made for {generator.crop_size} crops; "
                      f"using {args.size}", stacklevel=2)
    arcface = load_arcface(arc_path)
    detector = load_detector_cli(args.detector, args.det_threshold, device)
    return generator.to(device), arcface.to(device), detector


def _load_parser(args, device):
    from .model_files import find_model
    from .parsing import load_parser

    return load_parser(find_model(args.parser or "bisenet", kind="parser" if args.parser is None else None),
                       device=device)


class _Progress:
    """tqdm bar fed by FaceSwapper's progress(done, total) callback across several swap() calls."""

    def __init__(self, total: int | None, desc: str, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="frame", disable=quiet, dynamic_ncols=True)
        self.base = 0
        self.last = 0

    def chunk(self, done: int, total: int) -> None:
        self.bar.update(done - self.last)
        self.last = done

    def next_call(self) -> None:
        self.base += self.last
        self.last = 0

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------------------------- swap

def _read_sources(source: str, device) -> list[torch.Tensor]:
    from .imageio import list_images, read_image

    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"--source {source}: no such file or folder")
    files = list_images(p) if p.is_dir() else [p]
    if not files:
        raise InputError(f"--source {source}: the folder holds no images")
    return [read_image(f, device=device).image for f in files]


def _target_kind(target: Path) -> str:
    from .imageio import is_image_path
    from .video import is_video_path

    if not target.exists():
        raise FileNotFoundError(f"--target {target}: no such file or folder")
    if target.is_dir():
        return "folder"
    if is_image_path(target):
        return "image"
    if is_video_path(target):
        return "video"
    raise InputError(f"--target {target}: expected an image (.png .jpg .webp .bmp .tif), a folder of images or "
                     f"a video (.mp4 .mov .mkv .avi .webm ...)")


def cmd_swap(args) -> int:
    from .identity import Identity, load_identity
    from .imageio import list_images, read_image, write_like
    from .swap import FaceSwapper
    from .video import VideoWriter, iter_image_folder, iter_video_frames, probe_video

    device = _device(args.device)
    target = Path(args.target)
    kind = _target_kind(target)
    out = Path(args.out)
    # Check outputs before any model work: never overwrite, fail fast.
    if kind == "image":
        if out.is_dir():
            out = out / target.name
        if out.exists() and not args.overwrite:
            raise InputError(f"--out {out}: already exists; pass --overwrite to replace it")
    elif kind == "folder":
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: the target is a folder, so --out must be a folder")
        if out.resolve() == target.resolve():
            raise InputError("--out must differ from the --target folder (inputs are never overwritten)")
        clash = [out / f.name for f in list_images(target) if (out / f.name).exists()]
        if clash and not args.overwrite:
            raise InputError(f"--out {out}: {len(clash)} output file(s) already exist (e.g. {clash[0].name}); "
                             "pass --overwrite to replace them")
    else:
        if out.is_dir():
            out = out / target.name
        if out.exists() and not args.overwrite:
            raise InputError(f"--out {out}: already exists; pass --overwrite to replace it")
    mask, needs_parser = _mask_spec(args.mask) if args.mask else (None, False)

    generator, arcface, detector = _load_models(args, device)
    parser = _load_parser(args, device) if needs_parser else None
    swapper = FaceSwapper(generator, arcface, detector, parser=parser, device=device, crop_size=args.size,
                          precision=args.precision)

    if str(args.source).endswith(".safetensors"):
        identity: Identity = load_identity(args.source)
    else:
        identity = swapper.extract_identity(_read_sources(args.source, device), select=args.source_face,
                                            combine=args.combine)
    selection, ref_path = _selection(args.faces, args.id_threshold)
    reference = None
    if ref_path is not None:
        reference = swapper.extract_identity(_read_sources(ref_path, device), select="largest")
    if_no_face = args.if_no_face or ("error" if kind == "image" else "keep")
    opts = dict(select=selection, mask=mask, paste_mode=args.paste,
                color_match=args.color_match, reference=reference, if_no_face=if_no_face,
                batch_size=args.batch_size)
    strength = (0.5 if kind == "video" else 0.0) if args.smooth == "auto" else float(args.smooth)
    if strength > 0 and kind != "image":
        from .tracking import LandmarkSmoother

        opts["smoothing"] = LandmarkSmoother(strength)  # one smoother for the whole clip: tracks span batches
    quiet = args.quiet
    swapped_faces = 0
    frames_without = 0

    if kind == "image":
        img = read_image(target, device=device)
        res = swapper.swap(img.image, identity, **opts)
        write_like(out, res.images, img, overwrite=args.overwrite)
        swapped_faces, frames_without, total = len(res.faces), len(res.frames_without_face), 1
    elif kind == "folder":
        files = list_images(target)
        out.mkdir(parents=True, exist_ok=True)
        bar = _Progress(len(files), "swap", quiet)
        total = 0
        try:
            for items, frames in iter_image_folder(target, args.batch_size, device=device):
                res = swapper.swap(frames, identity, progress=bar.chunk, **opts)
                bar.next_call()
                for i, item in enumerate(items):
                    write_like(out / item.path.name, res.images[i:i + 1], item, overwrite=args.overwrite)
                swapped_faces += len(res.faces)
                frames_without += len(res.frames_without_face)
                total += len(items)
        finally:
            bar.close()
    else:
        info = probe_video(target)
        bar = _Progress(info.frame_count, "swap", quiet)
        total = 0
        try:
            with VideoWriter(out, info.fps, info.width, info.height, audio_from=target if not args.no_audio else None,
                             overwrite=args.overwrite, crf=args.crf) as writer:
                for frames in iter_video_frames(target, args.batch_size, device=device):
                    res = swapper.swap(frames, identity, progress=bar.chunk, **opts)
                    bar.next_call()
                    writer.write(res.images)
                    swapped_faces += len(res.faces)
                    frames_without += len(res.frames_without_face)
                    total += frames.shape[0]
        finally:
            bar.close()
    if not quiet:
        msg = f"wrote {out} ({total} frame(s), {swapped_faces} face(s) swapped"
        msg += f", {frames_without} frame(s) without a selected face left unchanged)" if frames_without else ")"
        print(msg, file=sys.stderr)
    return 0


def _selection(spec: str, id_threshold: float | None):
    """--faces value -> (FaceSelection, reference image path or None). "ref:IMAGE" picks, in every frame, the
    face closest to the person in IMAGE (raw ArcFace MSE below --id-threshold, default 0.03 as official)."""
    from .detection.select import FaceSelection

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


# --------------------------------------------------------------------------------------------- faces

def cmd_faces(args) -> int:
    from .detection import draw_faces
    from .imageio import read_image, write_image

    device = _device(args.device)
    img = read_image(args.image, device=device)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {out}: already exists; pass --overwrite to replace it")
    if args.json and Path(args.json).exists() and not args.overwrite:
        raise InputError(f"--json {args.json}: already exists; pass --overwrite to replace it")
    detector = load_detector_cli(args.detector, args.det_threshold, device)
    faces = detector.detect(img.image)
    preview = draw_faces(img.image, faces, order=args.order)
    write_image(out, preview, overwrite=args.overwrite)
    if args.json:
        from .detection.select import order_faces

        rank = order_faces(faces, args.order).tolist() if len(faces) else []
        entries = faces.to_json()[0]
        for e, r in zip(entries, rank):
            e["index"] = int(r)
        entries.sort(key=lambda e: e["index"])
        doc = {"image": str(Path(args.image)), "size": list(img.size), "detector": args.detector,
               "order": args.order, "faces": entries}
        from .imageio import _atomic_write

        _atomic_write(Path(args.json), lambda p: p.write_text(json.dumps(doc, indent=2)), args.overwrite)
    if not args.quiet:
        print(f"{len(faces)} face(s) found in {args.image}; preview written to {out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------- convert

def cmd_convert(args) -> int:
    from .checkpoints import convert_checkpoint

    dst = Path(args.dst)
    if dst.exists() and not args.overwrite:
        raise InputError(f"{dst}: already exists; pass --overwrite to replace it")
    if not Path(args.src).is_file():
        raise FileNotFoundError(f"{args.src}: checkpoint file not found")
    convert_checkpoint(args.src, dst, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {dst}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------- demo

DEMO_LABEL = ("SEEDED RANDOM WEIGHTS - NOT A REAL FACE-SWAP MODEL. This demo shows that the pipeline runs end "
              "to end (detect, align, identity, generate, mask, paste); the swapped faces are noise-like by "
              "design. Fetch the official SimSwap weights (see README) for real swaps.")


def demo_photos() -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """(source [1,3,H,W], target [1,3,H,W], source name, target name) from installed packages."""
    import importlib.util

    import numpy as np

    from .imageio import read_image, uint8_to_image

    try:
        from skimage import data as skdata
    except ImportError as e:
        raise InputError("simswap demo needs scikit-image for its sample photo: pip install scikit-image") from e
    source = uint8_to_image(np.ascontiguousarray(skdata.astronaut()))
    spec = importlib.util.find_spec("insightface")
    if spec is not None and spec.submodule_search_locations:
        t1 = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
        if t1.is_file():
            return source, read_image(t1).image, "skimage astronaut", "insightface t1.jpg (6 faces)"
    target = torch.flip(source, dims=[3])
    return source, target, "skimage astronaut", "skimage astronaut, mirrored (insightface not installed)"


def cmd_demo(args) -> int:
    from .checkpoints import load_arcface, load_generator
    from .imageio import write_image
    from .model_files import user_cache_models_dir
    from .seeded import write_seeded_checkpoints
    from .swap import FaceSwapper

    device = _device(args.device)
    out = Path(args.out)
    names = ["source.png", "target.png", "result.png", "mask.png", "faces.json", "NOT_A_REAL_MODEL.txt"]
    if out.exists() and not args.overwrite:
        clash = [n for n in names if (out / n).exists()]
        if clash:
            raise InputError(f"--out {out}: {clash[0]} already exists; pass --overwrite or choose an empty folder")
    print(DEMO_LABEL, file=sys.stderr)
    cache = Path(args.weights_dir) if args.weights_dir else user_cache_models_dir().parent / "seeded"
    paths = write_seeded_checkpoints(cache, seed=args.seed, kinds=("g224", "arcface"))
    generator = load_generator(paths["g224"])
    arcface = load_arcface(paths["arcface"])
    detector = load_detector_cli(args.detector, None, device)
    source, target, sname, tname = demo_photos()
    swapper = FaceSwapper(generator, arcface, detector, device=device)
    identity = swapper.extract_identity(source.to(device), select="largest")
    res = swapper.swap(target.to(device), identity, select="all", if_no_face="error", batch_size=args.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    ow = args.overwrite
    write_image(out / "source.png", source, overwrite=ow)
    write_image(out / "target.png", target, overwrite=ow)
    write_image(out / "result.png", res.images, overwrite=ow)
    write_image(out / "mask.png", res.mask.expand(-1, 3, -1, -1), overwrite=ow)
    from .imageio import _atomic_write

    doc = {"label": DEMO_LABEL, "source": sname, "target": tname, "weights": {k: str(v) for k, v in paths.items()},
           "seed": args.seed, "detector": args.detector, "faces_swapped": len(res.faces),
           "faces": res.faces.to_json()[0]}
    _atomic_write(out / "faces.json", lambda p: p.write_text(json.dumps(doc, indent=2)), ow)
    _atomic_write(out / "NOT_A_REAL_MODEL.txt", lambda p: p.write_text(DEMO_LABEL + "\n"), ow)
    changed = (res.images != target.to(res.images.device)).any(1).float().mean().item()
    print(f"demo: {len(res.faces)} face(s) of {tname} swapped with the {sname} identity; "
          f"{changed:.1%} of pixels changed; results in {out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simswap", description="SimSwap face swapping (images, folders, videos).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{swap,faces,convert,demo}")

    def common(sp):
        sp.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
        sp.add_argument("--overwrite", action="store_true", help="replace existing output files")
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")

    s = sub.add_parser("swap", help="swap the source identity into a target image, folder of frames or video")
    s.add_argument("--source", required=True, help="source image, folder of images (identities averaged) or "
                                                   "saved identity (.safetensors)")
    s.add_argument("--target", required=True, help="target image, folder of images or video file")
    s.add_argument("--out", required=True, help="output image / folder / video")
    s.add_argument("--generator", help="generator checkpoint path or name (default simswap_224 / simswap_512)")
    s.add_argument("--arcface", help="ArcFace checkpoint path or name (default arcface)")
    s.add_argument("--parser", help="BiSeNet parser checkpoint for --mask parsing (default bisenet)")
    s.add_argument("--detector", default="yunet", help="yunet | antelopev2 | buffalo_l | PATH.onnx")
    s.add_argument("--det-threshold", type=_unit_float, default=None, help="detection score threshold")
    s.add_argument("--size", type=_parse_size, default=None, help="crop size 224 or 512 (default: the generator's)")
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
    s.add_argument("--smooth", type=_smooth_strength, default="auto",
                   help="temporal landmark smoothing of tracked faces, 0 (off) .. 1 (strongest); auto = 0.5 for "
                        "a video target, off for images and folders (frames of a folder may be unrelated photos)")
    s.add_argument("--batch-size", type=_positive_int, default=8, help="frames per batch (also faces per generator call on a GPU; 1 on the CPU)")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="generator precision")
    s.add_argument("--crf", type=int, default=17, help="x264 quality for video output (lower = better)")
    s.add_argument("--no-audio", action="store_true", help="do not copy the audio of a video target")
    common(s)
    s.set_defaults(func=cmd_swap)

    f = sub.add_parser("faces", help="draw and number the detected faces (numbers = index:N of --faces)")
    f.add_argument("image")
    f.add_argument("--out", required=True, help="preview image to write")
    f.add_argument("--json", help="also write boxes, points and scores as JSON")
    f.add_argument("--detector", default="yunet")
    f.add_argument("--det-threshold", type=_unit_float, default=None)
    f.add_argument("--order", default="left-right", choices=["left-right", "top-bottom", "size", "score"])
    common(f)
    f.set_defaults(func=cmd_faces)

    c = sub.add_parser("convert", help="convert an official .pth/.tar checkpoint to .safetensors")
    c.add_argument("src")
    c.add_argument("dst")
    common(c)
    c.set_defaults(func=cmd_convert)

    d = sub.add_parser("demo", help="run a full swap on sample photos with SEEDED RANDOM weights (not a real model)")
    d.add_argument("--out", required=True, help="folder for source/target/result/mask")
    d.add_argument("--weights-dir", default=None, help="where seeded weights are cached (default "
                                                       "~/.cache/simswap/seeded)")
    d.add_argument("--seed", type=int, default=1234)
    d.add_argument("--detector", default="yunet")
    d.add_argument("--batch-size", type=_positive_int, default=8)
    common(d)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MissingModelError as e:
        print(f"simswap: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (SimSwapError, FileNotFoundError, ValueError) as e:
        msg = " ".join(str(e).split())
        print(f"simswap: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("simswap: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: one line, no traceback unless asked
        if os.environ.get("SIMSWAP_DEBUG"):
            raise
        print(f"simswap: error: {type(e).__name__}: {' '.join(str(e).split())} (set SIMSWAP_DEBUG=1 for a "
              "traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
