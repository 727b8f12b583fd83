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
    add_detector_backend,
    device,
    int_in,
    load_models,
    load_parser_cli,
    model_file,
    parse_size,
    positive_int,
    smooth_strength,
    unit_float,
)

MAX_TRACK_GAP = 250  # frames


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
    s.add_argument("--source", help="source image, folder of images (identities averaged) or saved identity "
                                    "(.safetensors); or several identities with --map")
    s.add_argument("--map", action="append", default=None, metavar="SRC=REF",
                   help="several identities in one pass (repeatable; instead of --source): SRC (image, folder or "
                        "saved identity .safetensors) goes to the faces REF names: a photo of the person to replace "
                        "(ArcFace match below --id-threshold), index:N (face N in each frame, left-right; see "
                        "'simswap faces') or track:N (track N of a video, as 'simswap faces --track' numbers "
                        "them). A face gets at most one identity; faces no --map names are left alone")
    s.add_argument("--target", required=True, help="target image, folder of images or video file")
    s.add_argument("--out", required=True, help="output image / folder / video")
    s.add_argument("--generator", help="generator checkpoint path or name (default simswap_224 / simswap_512)")
    s.add_argument("--arcface", help="ArcFace checkpoint path or name (default arcface)")
    s.add_argument("--parser", help="BiSeNet parser checkpoint for --mask parsing (default bisenet)")
    s.add_argument("--detector", default="yunet", help="yunet | antelopev2 | buffalo_l | PATH.onnx")
    s.add_argument("--det-threshold", type=unit_float, default=None, help="detection score threshold")
    add_detector_backend(s)
    s.add_argument("--size", type=parse_size, default=None, help="crop size 224 or 512 (default: the generator's)")
    s.add_argument("--faces", default="all", help="all | largest | best | index:N[,M] | ref:IMAGE")
    s.add_argument("--id-threshold", type=float, default=None,
                   help="max MSE for --faces ref:IMAGE and --map SRC=PHOTO (default 0.03)")
    s.add_argument("--source-face", default="largest", help="face of each source image: largest | best | index:N")
    s.add_argument("--combine", default="mean", choices=["mean", "median", "weighted", "quality"],
                   help="how several source images are combined: mean, median, weighted by detection score, or "
                        "quality (weighted by detection score x face size x sharpness x frontalness; each photo's "
                        "quality is printed so poor ones can be dropped)")
    s.add_argument("--identity-strength", type=identity_percent, default=100.0, metavar="PCT",
                   help="how much of the source identity, in percent: 100 = the source (default), 0 = the target's "
                        "own identity, 50 = halfway, above 100 (up to 200) pushes further away from the target")
    s.add_argument("--pixel-boost", type=int, default=1, choices=[1, 2, 3, 4], metavar="K",
                   help="swap at K times the generator's size (1 = off, 2, 3 or 4): each face is aligned at K x 224 "
                        "(or K x 512) and swapped as K*K sub-pixel phases woven back together (no tiles, no seams); "
                        "more detail for large faces, K*K generator calls per face; not with --paste official")
    s.add_argument("--report", default=None, metavar="REPORT.json",
                   help="write an identity report: REPORT.json and REPORT.html (the crops side by side) with, per "
                        "swapped face, the similarity to the source and to the original face measured by SFace, "
                        "an embedder independent of SimSwap's ArcFace (same person at cosine >= 0.363), and the "
                        "source photos' quality")
    s.add_argument("--report-every", type=positive_int, default=None, metavar="N",
                   help="with --report: score every N-th frame (default 1 for images and folders, 10 for videos "
                        "and animations; at most 256 faces are scored)")
    s.add_argument("--report-source", default=None, metavar="IMAGE|FOLDER",
                   help="with --report and a saved identity (.safetensors) as --source: photos of the source "
                        "person to score against (default: the --source photos)")
    s.add_argument("--mask", default=None,
                   help="box | ellipse | parsing[:regions] | occlusion | sam | sam_parsing (default: box); sam and "
                        "sam_parsing need --sam")
    s.add_argument("--sam", default=None, metavar="NAME|PATH",
                   help="Segment Anything checkpoint for --mask sam / sam_parsing: a name (sam_vit_b, vit_l, ...) "
                        "looked for in the model folders (models/sams) or a file path")
    s.add_argument("--protect", default=None, metavar="MASK.png",
                   help="regions that must never change (a hand, a microphone in front of the face): a grayscale "
                        "image of the target's size, white = keep the original pixel exactly (an image with "
                        "transparency: opaque = keep); for a folder or video target it applies to every frame")
    s.add_argument("--paste", default="default", choices=["default", "official"])
    s.add_argument("--color-match", action="store_true", help="match the swapped face's colours to the target")
    s.add_argument("--if-no-face", choices=["error", "keep"], default=None,
                   help="frames without a selected face: error (default for one image) or keep (default for "
                        "folders and videos)")
    s.add_argument("--smooth", type=smooth_strength, default="auto",
                   help="temporal landmark smoothing of tracked faces, 0 (off) .. 1 (strongest); auto = 0.5 for "
                        "a video or animated target, off for images and folders (frames of a folder may be unrelated "
                        "photos)")
    s.add_argument("--track-gap", type=int_in(0, MAX_TRACK_GAP, f"an integer 0..{MAX_TRACK_GAP} (frames)"),
                   default=8,
                   help="video / animated targets: a face the detector misses for up to N frames keeps its track "
                        "and its swap, filled in from the neighbouring frames (default 8; 0 = no gap filling)")
    s.add_argument("--blend-smoothing", type=smooth_strength, default="auto",
                   help="video / animated targets: smooth each tracked face's blend mask and colour correction "
                        "over time, 0 (off) .. 1 (strongest); auto = 0.5 for a video or animated target, off "
                        "otherwise")
    s.add_argument("--cut-threshold", type=cut_threshold, default=None,
                   help="video / animated targets: how different two frames must be to count as a new shot, where "
                        "every track ends: a number in (0,1) (lower finds more cuts; default: the tracker's) or off")
    s.add_argument("--batch-size", type=positive_int, default=8,
                   help="frames per batch (faces per generator call: from free memory on a GPU, 1 on the CPU)")
    s.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="generator precision: bf16/fp16 autocast (drift against fp32: bench/bench_precision.py)")
    s.add_argument("--compile", action="store_true",
                   help="torch.compile the generator (slow first batch; falls back to eager with a warning)")
    s.add_argument("--cuda-graphs", action="store_true",
                   help="replay the generator from CUDA graphs (CUDA only; not used on the CPU, the output says so)")
    s.add_argument("--crf", type=int, default=17,
                   help="video output quality, x264's crf or NVENC's cq (lower = better)")
    s.add_argument("--decode-device", default="auto", metavar="auto|cpu|cuda[:N]",
                   help="where a video target is decoded: auto (NVDEC through torchcodec when --device is a GPU and "
                        "torchcodec with CUDA is installed, else PyAV on the CPU; the output says which and why), "
                        "cpu, or cuda (fails naming what is missing)")
    s.add_argument("--encoder", default="auto", metavar="auto|libx264|h264_nvenc|hevc_nvenc",
                   help="video output encoder: auto (NVENC when --device is a GPU and NVENC opens, else x264; the "
                        "output says which and why), libx264, h264_nvenc or hevc_nvenc (fails naming what is "
                        "missing)")
    s.add_argument("--no-audio", action="store_true", help="do not copy the audio of a video target")
    s.add_argument("--allow-partial", action="store_true",
                   help="a truncated or damaged video target: swap the frames that decode (a warning names the "
                        "counts) instead of refusing it")
    s.add_argument("--no-label", action="store_true",
                   help="write the output WITHOUT its machine-readable synthetic-media label (XMP / EXIF / PNG text "
                        "/ container tags / C2PA); labelling AI-generated media (EU AI Act, Article 50) is then "
                        "your legal responsibility")
    s.add_argument("--c2pa-cert", default=None, metavar="CHAIN.pem",
                   help="also sign the output with a C2PA manifest: your certificate chain (PEM, signer first; "
                        "with --c2pa-key; needs c2pa-python; default: env SIMSWAP_C2PA_CERT)")
    s.add_argument("--c2pa-key", default=None, metavar="KEY.pem",
                   help="the private key (PEM) of --c2pa-cert (default: env SIMSWAP_C2PA_KEY)")
    add_common(s)
    s.set_defaults(func=cmd_swap)


def identity_percent(text: str) -> float:
    """--identity-strength: a percentage 0..200 (100 = the source identity)."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 200.0:
        raise argparse.ArgumentTypeError(f"expected a percentage 0..200 (100 = the source identity), got {text!r}")
    return value


def report_setup(args: argparse.Namespace) -> list[str] | None:
    """--report checks before any model loads: the report files are new (or --overwrite) and there are photos of
    the source person to score against. Returns the source photo paths (None without --report)."""
    if not getattr(args, "report", None):
        return None
    from ..io.atomic import refuse_existing
    from ..report import report_paths

    if getattr(args, "map", None):
        raise InputError("--report scores against one source person; with --map use 'simswap swap --source' per "
                         "identity, or leave --report out")
    src = getattr(args, "report_source", None) or args.source
    if str(src).endswith(".safetensors"):
        raise InputError(f"--report: the source {src} is a saved identity; SFace needs photos of the source person: "
                         "add --report-source IMAGE|FOLDER")
    if not Path(src).exists():
        raise FileNotFoundError(f"--report-source {src}: no such file or folder")
    for p in report_paths(args.report):
        if Path(p).resolve() in {Path(x).resolve() for x in (args.target, args.out, src) if x}:
            raise InputError(f"--report {args.report}: {p} is an input or the output; choose another name")
        refuse_existing(p, overwrite=args.overwrite)
    return [src]


def cut_threshold(text: str) -> float | str:
    """--cut-threshold: 'off' or a number in (0,1)."""
    return "off" if text.strip().lower() == "off" else unit_float(text)


def source_files(source: str) -> list[Path]:
    """--source image or folder -> the image files (natural order)."""
    from ..io.images import list_images

    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"--source {source}: no such file or folder")
    files = list_images(p) if p.is_dir() else [p]
    if not files:
        raise InputError(f"--source {source}: the folder holds no images")
    return files


def read_sources(source: str, device: torch.device) -> list[torch.Tensor]:
    """--source image or folder -> list of [1,3,H,W] float RGB [0,1] on ``device`` (natural order)."""
    from ..io.images import read_image

    return [read_image(f, device=device).image for f in source_files(source)]


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


def parse_map(values: list[str]) -> list[tuple[str, str, Any]]:
    """--map values -> [(SRC, REF text, ("index" | "track", N) or the reference photo's path)], checked before any
    model is loaded. SRC=REF is split at the first '=' after which the rest is index:N / track:N or an existing
    file, else at the first '=' whose left part exists."""
    out = []
    for value in values:
        text = str(value)
        splits = [i for i, ch in enumerate(text) if ch == "="]
        if not splits:
            raise InputError(f"--map {text!r}: expected SRC=REF (SRC: source image, folder or identity "
                             ".safetensors; REF: a photo of the person to replace, index:N or track:N)")
        cands = [(text[:i], text[i + 1:]) for i in splits]
        src, ref = next(((a, b) for a, b in cands if Path(a).exists()), cands[0])
        if not src:
            raise InputError(f"--map {text!r}: SRC is empty; expected SRC=REF, e.g. --map alice.png=index:0")
        if not Path(src).exists():
            raise FileNotFoundError(f"--map {text}: source {src!r} not found (SRC: an image, a folder of images "
                                    "or a saved identity .safetensors)")
        low = ref.strip().lower()
        target: Any
        if low.startswith(("index:", "track:")):
            kind, _, num = low.partition(":")
            if not (num.isascii() and num.isdigit()) or int(num) > 9999:
                raise InputError(f"--map {text}: {kind}:N needs a number 0..9999 after '{kind}:', got {num!r} "
                                 f"(e.g. --map {src}={kind}:0)")
            target = (kind, int(num))
        elif not ref:
            raise InputError(f"--map {text!r}: REF is empty; expected a photo of the person to replace, index:N or "
                             "track:N")
        elif not Path(ref).is_file():
            raise FileNotFoundError(f"--map {text}: {ref!r} is not index:N, track:N or an existing photo of the "
                                    "person to replace")
        else:
            target = Path(ref)
        out.append((src, ref, target))
    return out


def load_source(source: str, swapper: Any, dev: torch.device, args: argparse.Namespace) -> Any:
    """A source identity: a saved .safetensors identity, or extracted from an image / folder (--source-face,
    --combine)."""
    from ..identity import load_identity

    if str(source).endswith(".safetensors"):
        return load_identity(source)
    return swapper.extract_identity(read_sources(source, dev), select=args.source_face, combine=args.combine)


def build_map(entries: list[tuple[str, str, Any]], swapper: Any, dev: torch.device, args: argparse.Namespace,
              threshold: float) -> Any:
    """The IdentityMap of the parsed --map values (identities extracted / loaded now)."""
    from ..mapping import IdentityMap, MapEntry

    imap = IdentityMap()
    for src, _ref, target in entries:
        ident = load_source(src, swapper, dev, args)
        label = Path(src).name
        if isinstance(target, Path):
            reference = swapper.extract_identity(read_sources(str(target), dev), select="largest")
            entry = MapEntry(ident, "reference", reference=reference, threshold=threshold, label=label)
        else:
            kind, n = target
            entry = MapEntry(ident, kind, index=n if kind == "index" else None, track=n if kind == "track" else None,
                             label=label)
        imap = imap.add(entry)
    return imap


def summary_lines(summary: Any, identity_map: Any, tracked: bool) -> list[str]:
    """The lines after 'wrote ...': identities -> faces, tracks / filled faces / cuts (tracked runs)."""
    lines = []
    per = list(getattr(summary, "faces_per_identity", []) or [])
    if identity_map is not None:
        lines.append(identity_map.summary(per))
        idle = [identity_map.label(k) for k in range(len(identity_map)) if (per[k] if k < len(per) else 0) == 0]
        if idle:
            lines.append(f"warning: no face got {', '.join(idle)}: check its --map target")
    if tracked:
        cuts = list(getattr(summary, "cuts", []) or [])
        text = f"tracks: {getattr(summary, 'tracks', 0)}, faces filled in detection gaps: " \
               f"{getattr(summary, 'faces_filled', 0)}"
        text += f", cuts at frame(s) {', '.join(map(str, cuts[:20]))}{' ...' if len(cuts) > 20 else ''}" if cuts \
            else ", no cut"
        lines.append(text)
    return lines


def load_sam_cli(args: argparse.Namespace, mask: Any, dev: torch.device) -> torch.nn.Module | None:
    """The SAM model of --sam when the --mask kind needs one (None otherwise; a --sam given then is not loaded)."""
    if mask is None or not mask.needs_sam:
        return None
    if not args.sam:
        raise InputError(f"--mask {args.mask}: this mask kind needs a Segment Anything model; add --sam NAME|PATH "
                         "(e.g. --sam sam_vit_b, the official sam_vit_b_01ec64.pth in models/sams)")
    from ..errors import CheckpointError, UnsafeCheckpointError
    from ..models.loaders import load_sam

    path = model_file(args, "sam")
    try:
        return load_sam(path, device=dev)
    except CheckpointError as e:     # another kind of model, a truncated or unsafe file: say which flag gave it
        cls = UnsafeCheckpointError if isinstance(e, UnsafeCheckpointError) else CheckpointError
        raise cls(f"--sam {args.sam}: {e}") from None


def read_protect(path: str, dev: torch.device) -> torch.Tensor:
    """--protect MASK.png -> [1,1,H,W] float32 in [0,1] on ``dev``: the image's alpha when it has transparency
    (opaque = keep), else its luminance (white = keep)."""
    from ..io.images import read_image

    try:
        loaded = read_image(path, dev)
    except (FileNotFoundError, InputError) as e:
        raise InputError(f"--protect {path}: {e}") from None
    alpha = loaded.alpha
    if alpha is not None and bool((alpha < 1).any()):
        return alpha.float().clamp(0, 1)
    rgb = loaded.image.float()
    luma = 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
    return luma.clamp(0, 1)


def cmd_swap(args: argparse.Namespace) -> int:
    """``simswap swap``, with the output's synthetic-media labelling as --no-label / --c2pa-* ask (restored after:
    ``simswap batch`` runs several jobs in one process)."""
    from ..provenance import c2pa_signing, labelling, labelling_enabled

    with labelling(labelling_enabled() and not getattr(args, "no_label", False)), \
            c2pa_signing(getattr(args, "c2pa_cert", None), getattr(args, "c2pa_key", None)):
        return _cmd_swap(args)


def output_label(args: argparse.Namespace, detector: Any, mask: Any) -> Any:
    """The output's synthetic-media label: this pack, "face replaced", the model files used and their sha256
    (found by the same names as ``load_models``); never the source person's identity."""
    from ..provenance import make_label

    return make_label(
        generator=model_file(args, "generator"), arcface=model_file(args, "arcface"),
        detector=getattr(detector, "model_path", None),
        parser=model_file(args, "parser") if mask is not None and mask.needs_parser else None,
        sam=model_file(args, "sam") if mask is not None and mask.needs_sam else None)


def _cmd_swap(args: argparse.Namespace) -> int:
    from ..io.frames import open_sink, open_source
    from ..masks import MaskSpec
    from ..run import run
    from ..swap import FaceSwapper

    if args.map and args.source:
        raise InputError("--source and --map: use --source for one identity, or --map SRC=REF (repeatable) for "
                         "several, each to its own faces; not both")
    if not args.map and not args.source:
        raise InputError("--source: expected the source image, folder or identity .safetensors (or --map SRC=REF "
                         "for several identities)")
    mapped = parse_map(args.map) if args.map else None
    if mapped is not None and args.faces != "all":
        raise InputError(f"--faces {args.faces}: with --map the map chooses the faces (by photo, index:N or "
                         "track:N); leave --faces at all")
    threshold = 0.03 if args.id_threshold is None else args.id_threshold
    if mapped is not None and not (0 < threshold <= 1):
        raise InputError(f"--id-threshold: expected a number in (0,1] (raw ArcFace MSE, official 0.03), got "
                         f"{threshold}")
    dev = device(args.device)
    source = open_source(args.target, dev, allow_partial=args.allow_partial,
                         decode_device=getattr(args, "decode_device", "auto"))
    kind = source.kind
    moving = kind in ("video", "animation")
    if mapped is not None and not moving and any(isinstance(t, tuple) and t[0] == "track" for _s, _r, t in mapped):
        raise InputError(f"--map ...=track:N: track ids follow faces from frame to frame of a video or animated "
                         f"image; the target {args.target} is {'an' if kind == 'image' else 'a'} {kind} (use "
                         "index:N or a photo)")
    chosen, ref_path = selection(args.faces, args.id_threshold)
    refs = [str(t) for _s, _r, t in mapped or [] if isinstance(t, Path)]
    # Check outputs before any model work: never an input, never overwritten unless asked, writable; fail fast.
    sink = open_sink(args.out, source, overwrite=args.overwrite, audio=not args.no_audio, crf=args.crf,
                     inputs=[args.source, ref_path, *[s for s, _r, _t in mapped or []], *refs],
                     encoder=getattr(args, "encoder", "auto"), device=dev)
    if not args.quiet:                     # which decode / encode path a video takes, and why (one line each)
        from ..io.video_devices import describe

        for line in describe([getattr(source, "decode_choice", None), getattr(sink, "encode_choice", None)]):
            print(line, file=sys.stderr)
    report_sources = report_setup(args)    # before any model loads
    args.pending_output = sink.path        # main() says "nothing was written to ..." if the run fails from here
    mask = MaskSpec.parse(args.mask) if args.mask else None
    if mask is not None and mask.needs_sam and not args.sam:
        load_sam_cli(args, mask, dev)               # the error naming --mask and --sam, before any model loads
    protect = read_protect(args.protect, dev) if args.protect else None
    size = getattr(source, "size", None)
    if protect is not None and isinstance(size, tuple) and tuple(protect.shape[-2:]) != size:
        raise InputError(f"--protect {args.protect}: the mask is {protect.shape[-1]}x{protect.shape[-2]} px, the "
                         f"target's frames are {size[1]}x{size[0]}; expected a mask of the target's size")

    cache = getattr(args, "model_cache", None)    # `simswap batch`: each model loaded once per worker (batch/models)
    if cache is not None:
        generator, arcface, detector, parser, sam = cache.load(args, mask, dev)
    else:
        generator, arcface, detector = load_models(args, dev)
        parser = load_parser_cli(args, dev) if mask is not None and mask.needs_parser else None
        sam = load_sam_cli(args, mask, dev)
    swapper = FaceSwapper(generator, arcface, detector, parser=parser, sam=sam, device=dev, crop_size=args.size,
                          precision=args.precision, compile=getattr(args, "compile", False),
                          cuda_graphs=getattr(args, "cuda_graphs", False))
    sink.label = output_label(args, detector, mask)     # before any wrapping sink: the file sink writes it

    identity = load_source(args.source, swapper, dev, args) if args.source else None
    if identity is not None and not args.quiet:
        from ..face_quality import quality_text
        from ..identity import identity_quality

        records = identity_quality(identity)
        if records:
            names = [f.name for f in source_files(args.source)] if not args.source.endswith(".safetensors") else None
            note = f"\n({identity.meta['quality_note']})" if identity.meta.get("quality_note") else ""
            print("source photos:\n" + quality_text(records, names) + note, file=sys.stderr)
    identity_map = build_map(mapped, swapper, dev, args, threshold) if mapped is not None else None
    reference = None
    if ref_path is not None:
        reference = swapper.extract_identity(read_sources(ref_path, dev), select="largest")
    opts: dict[str, Any] = dict(select=chosen, mask=mask, paste_mode=args.paste, color_match=args.color_match,
                                reference=reference, if_no_face=args.if_no_face or ("error" if kind == "image"
                                                                                     else "keep"))
    if identity_map is not None:
        opts["identity_map"] = identity_map
    if getattr(args, "identity_strength", 100.0) != 100.0:
        opts["identity_strength"] = args.identity_strength / 100.0
    if getattr(args, "pixel_boost", 1) != 1:
        opts["pixel_boost"] = args.pixel_boost
    if report_sources is not None:
        from ..report import scoring_sink

        every = args.report_every or (10 if moving else 1)
        sink = scoring_sink(sink, detector, read_sources(report_sources[0], dev), every=every, device=dev)
    if protect is not None:
        opts["protect"] = protect
    strength = (0.5 if moving else 0.0) if args.smooth == "auto" else float(args.smooth)
    blend = (0.5 if moving else 0.0) if args.blend_smoothing == "auto" else float(args.blend_smoothing)
    tracker = None
    if moving:
        from ..temporal import TemporalState
        from ..tracking import FaceTracker

        # one tracker and one temporal state for the whole clip: tracks, their smoothing and identities span
        # batches
        extra: dict[str, Any] = {} if args.cut_threshold is None else \
            {"cut_threshold": None if args.cut_threshold == "off" else args.cut_threshold}
        tracker = FaceTracker(strength, max_gap=args.track_gap, fill_gaps=args.track_gap > 0, **extra)
        opts["temporal"] = TemporalState(blend, blend)
    elif strength > 0 and kind != "image":
        from ..tracking import LandmarkSmoother

        opts["smoothing"] = LandmarkSmoother(strength)  # one smoother for the whole folder: tracks span batches
    # one image: no progress bar (as before); folders and videos: a bar over all frames
    bar = ProgressBar(source.total, "swap", args.quiet) if kind != "image" else None
    bar = getattr(args, "on_progress", None) or bar    # `simswap batch`: frames of this job to its overall bar
    with bar if bar is not None else nullcontext():
        try:
            summary = run(source, swapper, sink, identity, batch_size=args.batch_size, progress=bar,
                          tracker=tracker, **opts)
        except InputError as e:
            if protect is None or not str(e).startswith("protect:"):
                raise
            raise InputError(f"--protect {args.protect}:{str(e)[len('protect:'):]}") from None
    args.pending_output = None
    args.swap_result = (sink.path, summary)            # for `simswap batch` (its manifest record)
    report_lines: list[str] = []
    if report_sources is not None:
        from ..identity import identity_quality
        from ..report import finish_report

        names = [f.name for f in source_files(args.source)] if not args.source.endswith(".safetensors") else None
        report_lines = finish_report(args.report, sink, overwrite=args.overwrite,
                                     inputs={"source": args.source, "target": args.target, "output": sink.path,
                                             "identity_strength": f"{getattr(args, 'identity_strength', 100):g} %"},
                                     source_quality=identity_quality(identity) if identity is not None else [],
                                     source_names=names)
    if not args.quiet:
        without = len(summary.frames_without_face)
        msg = f"wrote {sink.path} ({summary.frames} frame(s), {summary.faces_swapped} face(s) swapped"
        msg += f", {without} frame(s) without a selected face left unchanged)" if without else ")"
        lines = [msg, *summary_lines(summary, identity_map, tracker is not None)]
        if without and kind != "image":
            shown = ", ".join(map(str, summary.frames_without_face[:10]))
            lines.append(f"nothing swapped in frame(s) {shown}{' ...' if without > 10 else ''} (numbered from 0)")
        if args.precision != "fp32" or getattr(args, "compile", False) or getattr(args, "cuda_graphs", False) \
                or dev.type == "cuda":
            lines.append(f"generator: {swapper.acceleration()}")
        for line in [*lines, *report_lines]:
            print(line, file=sys.stderr)
    return 0
