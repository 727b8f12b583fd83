"""``simswap prepare-faces``: detect, align and cache face crops of raw photos and videos as a training set.

    simswap prepare-faces RAW/ DATA/ --crop-size 224            # RAW/<person>/*.jpg|*.mp4 -> DATA/<person>/*.png
    simswap prepare-faces clip.mp4 DATA/ --crop-size 512 --identity actor --every 5

The output is what ``simswap_core.train.data.FaceCropDataset`` reads: ``OUT/<identity>/<name>_<frame>_<k>.png``
(k = the face's number in its frame, largest first; frame 0 for a photo). Detection and alignment are our swap
pipeline's (``detection``, ``align.py``), batched over frames. Alignment ``auto`` is the official choice per size:
224 -> "none" (the 5 insightface pose templates, what SimSwap's 224 model sees at swap time; the maintainers say
their training crops were made with insightface's detection and alignment), 512 -> "ffhq" (the VGGFace2-HQ /
512-model template). Re-runs are idempotent: an input whose marker ``OUT/.prepare-faces/<identity>/<file>.json``
exists is skipped, an existing crop is never replaced (unless --overwrite), and the settings of the first run
(``OUT/.prepare-faces.json``) must match. Inputs are never written: OUT may not lie inside INPUT or contain it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, NoFaceError
from .common import add_common, device, int_in, parse_size, positive_int, unit_float

ALIGN_CHOICES = ("auto", "none", "ffhq")
FACE_CHOICES = ("largest", "best", "all")
SETTINGS_FILE = ".prepare-faces.json"
MARKER_DIR = ".prepare-faces"


_non_negative_int = int_in(0, None, "an integer >= 0")
_quality = int_in(1, 100, "an integer 1..100")


def add_parser(sub: Any) -> None:
    """Register ``prepare-faces`` and its flags on the subparsers ``sub``."""
    p = sub.add_parser(
        "prepare-faces", help="detect, align and save face crops of photos/videos as a training set",
        description="Detect, align and save the face crops of raw photos and videos as a training set "
                    "(OUT/<identity>/<name>_<frame>_<k>.png, the layout `simswap train` reads). INPUT is a folder "
                    "of identity folders (one per person) of photos and/or videos, or, with --identity NAME, one "
                    "folder, photo or video of one person. Re-runs skip inputs already done and never replace a "
                    "crop (unless --overwrite); inputs are never written.")
    p.add_argument("input", help="folder of identity folders, or (with --identity) a folder/photo/video of one person")
    p.add_argument("out", help="output folder (OUT/<identity>/...)")
    p.add_argument("--crop-size", type=parse_size, required=True, help="224 or 512")
    p.add_argument("--align", choices=ALIGN_CHOICES, default="auto",
                   help="auto (224: none = pose templates, 512: ffhq, as the official models) | none | ffhq")
    p.add_argument("--identity", default=None, help="INPUT is one person: write to OUT/NAME/")
    p.add_argument("--per-identity", choices=["auto", "folder"], default="auto",
                   help="folder: every sub-folder of INPUT is a person; auto (default): the same when INPUT has "
                        "sub-folders, else INPUT is one person named after it")
    p.add_argument("--faces", choices=FACE_CHOICES, default="largest",
                   help="faces kept per image/frame: largest (default), best (highest score) or all")
    p.add_argument("--min-face", type=_non_negative_int, default=64,
                   help="skip faces whose box is smaller than this many pixels (shorter side; default 64)")
    p.add_argument("--every", type=positive_int, default=10, help="videos: use every Nth frame (default 10)")
    p.add_argument("--max-per-video", type=positive_int, default=300,
                   help="videos: at most this many frames used per video (default 300)")
    p.add_argument("--format", choices=["png", "jpg"], default="png", help="png (lossless, default) or jpg")
    p.add_argument("--jpg-quality", type=_quality, default=95, help="JPEG quality for --format jpg (default 95)")
    p.add_argument("--detector", default="yunet", help="yunet | antelopev2 | buffalo_l | PATH.onnx")
    p.add_argument("--det-threshold", type=unit_float, default=None, help="detection score threshold")
    p.add_argument("--batch-size", type=positive_int, default=16, help="frames per detection batch (default 16)")
    add_common(p)
    p.set_defaults(func=cmd_prepare)


# ------------------------------------------------------------------------------------------------- inputs

@dataclass
class MediaFile:
    """One input file of one identity, and the stem its crops are named after."""

    path: Path
    identity: str
    stem: str
    video: bool


@dataclass
class Summary:
    """What a run did (counts, and skipped files with reasons)."""

    identities: set[str] = field(default_factory=set)
    images: int = 0
    videos: int = 0
    frames: int = 0
    written: int = 0
    existing: int = 0
    done_before: int = 0
    done_before_faces: int = 0
    no_face: int = 0
    tiny: int = 0
    skipped: dict[str, str] = field(default_factory=dict)     # file -> reason

    def line(self, out: Path) -> str:
        parts = [f"prepare-faces: {len(self.identities)} identities, {self.images} image(s) and {self.videos} "
                 f"video(s) read ({self.frames} frame(s) searched), {self.written} face crop(s) written to {out}"]
        if self.existing:
            parts.append(f"{self.existing} crop(s) already there kept")
        if self.done_before:
            parts.append(f"{self.done_before} input(s) done by an earlier run skipped")
        if self.no_face:
            parts.append(f"{self.no_face} image(s)/frame(s) without a usable face")
        if self.tiny:
            parts.append(f"{self.tiny} face(s) below --min-face skipped")
        if self.skipped:
            kinds = Counter(r.split(":")[0] for r in self.skipped.values())
            first = next(iter(self.skipped.items()))
            parts.append(f"skipped {len(self.skipped)} file(s): "
                         + ", ".join(f"{n} {k}" for k, n in kinds.most_common())
                         + f" (e.g. {first[0]}: {first[1]})")
        return "; ".join(parts)


def _reason(path: Path, e: BaseException) -> str:
    """An error's message without the file name it starts with (the summary names the file)."""
    text = " ".join(str(e).split())
    for prefix in (f"{path}: ", f"{path.name}: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return text


def _check_name(name: str, what: str) -> str:
    if not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f"{what} {name!r}: expected a plain folder name (no path separators, not hidden)")
    return name


def _media(paths: list[Path], identity: str, summary: Summary) -> list[MediaFile]:
    """Photos and videos among ``paths`` (other files are skipped and counted), with collision-free stems."""
    from ..io.images import is_image_path
    from ..io.video import is_video_path

    found: list[tuple[Path, bool]] = []
    for p in paths:
        if is_image_path(p):
            found.append((p, False))
        elif is_video_path(p):
            found.append((p, True))
        else:
            summary.skipped[str(p)] = "not a photo or video: unknown extension"
    stems = Counter(p.stem for p, _ in found)
    return [MediaFile(p, identity, p.stem if stems[p.stem] == 1 else f"{p.stem}-{p.suffix.lstrip('.').lower()}",
                      video) for p, video in found]


def _files(folder: Path) -> list[Path]:
    from ..io.images import natural_key

    return sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def collect_inputs(inp: Path, identity: str | None, per_identity: str, summary: Summary,
                   log: Callable[[str], None]) -> list[MediaFile]:
    """The input files of every identity, in a fixed order (identities by name, files by natural name order)."""
    if not inp.exists():
        raise InputError(f"INPUT {inp}: not found")
    if identity is not None:
        name = _check_name(identity, "--identity")
        if inp.is_dir():
            nested = [d for d in inp.iterdir() if d.is_dir() and not d.name.startswith(".")]
            if nested:
                log(f"prepare-faces: --identity {name}: {len(nested)} sub-folder(s) of {inp} ignored (e.g. "
                    f"{nested[0].name}); only the files directly inside are this person's")
        return _media([inp] if inp.is_file() else _files(inp), name, summary)
    if inp.is_file():
        if per_identity == "folder":
            raise InputError(f"INPUT {inp}: --per-identity folder needs a folder of identity folders; pass "
                             "--identity NAME for one photo or video")
        log(f"prepare-faces: {inp.name} is one person, written to identity {inp.stem!r} (--identity sets the name)")
        return _media([inp], _check_name(inp.stem, "identity (from the file name)"), summary)
    subfolders = sorted((d for d in inp.iterdir() if d.is_dir() and not d.name.startswith(".")),
                        key=lambda d: d.name)
    if not subfolders:
        if per_identity == "folder":
            raise InputError(f"INPUT {inp}: no identity sub-folders (expected INPUT/<person>/*.jpg|*.mp4); pass "
                             "--identity NAME if the folder is one person")
        log(f"prepare-faces: {inp} has no sub-folders: it is one person, written to identity {inp.name!r} "
            "(--identity sets the name)")
        return _media(_files(inp), _check_name(inp.resolve().name, "identity (from the folder name)"), summary)
    out: list[MediaFile] = []
    for p in _files(inp):
        summary.skipped[str(p)] = "not in an identity folder: pass --identity NAME to treat INPUT as one person"
    for d in subfolders:
        out += _media(_files(d), _check_name(d.name, "identity folder"), summary)
    return out


# ------------------------------------------------------------------------------------------------- frames

@dataclass
class _Frames:
    """A batch of same-size frames [N,3,H,W] RGB [0,1] with, per frame, its input file and frame number."""

    frames: torch.Tensor
    owners: list[MediaFile]
    numbers: list[int]


def _photo_batches(photos: list[MediaFile], batch_size: int, summary: Summary,
                   unreadable: Callable[[MediaFile], None]) -> Iterator[_Frames]:
    """Photos in batches of consecutive same-size images (unreadable ones skipped with the reason, and passed to
    ``unreadable``)."""
    from ..io.images import read_image

    buf: list[tuple[MediaFile, torch.Tensor]] = []
    for m in photos:
        try:
            img = read_image(m.path).image
        except (InputError, OSError) as e:
            summary.skipped[str(m.path)] = f"unreadable image: {_reason(m.path, e)}"
            unreadable(m)
            continue
        summary.images += 1
        if buf and (buf[0][1].shape != img.shape or len(buf) == batch_size):
            yield _Frames(torch.cat([t for _, t in buf]), [f for f, _ in buf], [0] * len(buf))
            buf = []
        buf.append((m, img))
    if buf:
        yield _Frames(torch.cat([t for _, t in buf]), [f for f, _ in buf], [0] * len(buf))


def _video_batches(video: MediaFile, batch_size: int, every: int, limit: int, summary: Summary) -> Iterator[_Frames]:
    """Every ``every``-th frame of a video (at most ``limit``), in batches; a damaged video keeps the frames before
    the damage (the skip is reported)."""
    from ..io.video import iter_video_frames

    number, used = 0, 0
    frames: list[torch.Tensor] = []
    numbers: list[int] = []
    try:
        summary.videos += 1
        for batch in iter_video_frames(video.path, batch_size=batch_size):
            pick = [i for i in range(batch.shape[0]) if (number + i) % every == 0][: limit - used]
            for i in pick:
                frames.append(batch[i:i + 1])
                numbers.append(number + i)
            used += len(pick)
            number += batch.shape[0]
            if len(frames) >= batch_size:
                yield _Frames(torch.cat(frames), [video] * len(frames), numbers)
                frames, numbers = [], []
            if used >= limit:
                break
    except (InputError, OSError) as e:
        summary.skipped[str(video.path)] = f"unreadable video: {_reason(video.path, e)}"
    if frames:
        yield _Frames(torch.cat(frames), [video] * len(frames), numbers)


# ------------------------------------------------------------------------------------------------- the run

@dataclass
class Settings:
    """The settings that decide the crops (a re-run into the same OUT must use the same)."""

    crop_size: int
    align: str
    faces: str
    min_face: int
    every: int
    max_per_video: int
    format: str
    detector: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Writer:
    """Writes the crops of one batch and the markers of finished inputs, atomically, never replacing a file."""

    def __init__(self, out: Path, settings: Settings, quality: int, overwrite: bool, summary: Summary) -> None:
        self.out, self.settings, self.quality, self.overwrite, self.summary = out, settings, quality, overwrite, \
            summary
        self.per_input: Counter[Path] = Counter()
        self.settings_written = False

    def _settings(self) -> None:
        from ..io.atomic import atomic_write

        if self.settings_written:
            return
        path = self.out / SETTINGS_FILE
        if self.overwrite or not path.exists():
            atomic_write(path, lambda t: t.write_text(json.dumps(self.settings.as_dict(), indent=2)),
                         overwrite=self.overwrite)
        self.settings_written = True

    def crops(self, batch: _Frames, crops: torch.Tensor, frame_index: list[int], rank: list[int]) -> None:
        from ..io.images import write_image

        if len(crops):
            self._settings()
        ext = "jpg" if self.settings.format == "jpg" else "png"
        cpu = crops.detach().float().clamp(0, 1).cpu()
        for crop, fi, k in zip(cpu, frame_index, rank):
            m = batch.owners[fi]
            path = self.out / m.identity / f"{m.stem}_{batch.numbers[fi]}_{k}.{ext}"
            self.summary.identities.add(m.identity)
            self.per_input[m.path] += 1
            if path.exists() and not self.overwrite:
                self.summary.existing += 1
                continue
            write_image(path, crop, overwrite=self.overwrite, quality=self.quality)
            self.summary.written += 1

    def marker(self, m: MediaFile) -> Path:
        return self.out / MARKER_DIR / m.identity / f"{m.path.name}.json"

    def finish(self, m: MediaFile) -> None:
        """Mark ``m`` done (its crops are all written): later runs skip it."""
        from ..io.atomic import atomic_write

        doc = {"input": str(m.path), "faces": self.per_input[m.path],
               "skipped": self.summary.skipped.get(str(m.path))}
        atomic_write(self.marker(m), lambda t: t.write_text(json.dumps(doc)), overwrite=True)


def _check_settings(out: Path, settings: Settings, overwrite: bool) -> None:
    path = out / SETTINGS_FILE
    if overwrite or not path.is_file():
        return
    try:
        before = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"OUT {out}: {path.name} is unreadable ({e}); pass --overwrite to start again") from None
    diff = {k: (before.get(k), v) for k, v in settings.as_dict().items() if before.get(k) != v}
    if diff:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise InputError(f"OUT {out}: was prepared with other settings ({what}); use another folder, the same "
                         "settings, or --overwrite to redo every crop")


def _process(batch: _Frames, detector: Any, settings: Settings, mode: str, writer: _Writer, summary: Summary,
             dev: torch.device) -> None:
    """Detect, keep (min size, largest/best/all), align and write the faces of one batch of frames."""
    from ..align import align_faces
    from ..detection.select import order_faces, select_faces

    frames = batch.frames.to(dev)
    faces = detector.detect(frames).to(dev)
    wh = faces.boxes[:, 2:] - faces.boxes[:, :2]
    big = wh.min(1).values >= settings.min_face
    summary.tiny += int((~big).sum())
    faces = faces.select(big)
    if settings.faces != "all":
        faces = faces.select(select_faces(faces, settings.faces))
    summary.frames += frames.shape[0]
    summary.no_face += frames.shape[0] - len(set(faces.frame_index.tolist()))
    if not len(faces):
        return
    aligned = align_faces(frames, faces, settings.crop_size, mode)
    rank = order_faces(faces, "size").tolist()
    writer.crops(batch, aligned.crops, faces.frame_index.tolist(), rank)


def prepare_faces(inp: str | Path, out: str | Path, *, crop_size: int, align: str = "auto",
                  identity: str | None = None, per_identity: str = "auto", faces: str = "largest",
                  min_face: int = 64, every: int = 10, max_per_video: int = 300, fmt: str = "png",
                  quality: int = 95, detector: Any = None, detector_name: str = "yunet",
                  det_threshold: float | None = None, batch_size: int = 16,
                  overwrite: bool = False, dev: torch.device | None = None, quiet: bool = False,
                  log: Callable[[str], None] | None = None) -> Summary:
    """Crops of every face (per ``faces``) of the photos and videos under ``inp`` into ``out`` (see module doc).

    detector: a FaceDetector (default: ``detector_name`` / ``det_threshold`` loaded once the inputs are checked).
    Returns the Summary; raises NoFaceError when no crop exists afterwards (none now, none from an earlier run).
    Inputs that could not be read are not marked done (a re-run tries them again).
    """
    from tqdm import tqdm

    from ..align import default_mode
    from ..io.output_guard import is_inside, probe_writable, refuse_input_as_output

    inp, out = Path(inp), Path(out)
    say: Callable[[str], None] = log or (lambda s: None if quiet else print(s, file=sys.stderr))
    if align not in ALIGN_CHOICES:
        raise InputError(f"--align: expected one of {ALIGN_CHOICES}, got {align!r}")
    if faces not in FACE_CHOICES:
        raise InputError(f"--faces: expected one of {FACE_CHOICES}, got {faces!r}")
    if per_identity not in ("auto", "folder"):
        raise InputError(f"--per-identity: expected auto or folder, got {per_identity!r}")
    if fmt not in ("png", "jpg"):
        raise InputError(f"--format: expected png or jpg, got {fmt!r}")
    mode = default_mode(crop_size) if align == "auto" else align
    settings = Settings(crop_size, mode, faces, min_face, every, max_per_video, fmt, detector_name)
    summary = Summary()
    media = collect_inputs(inp, identity, per_identity, summary, say)
    refuse_input_as_output("OUT", out, [inp])
    if inp.exists() and is_inside(inp, out):
        raise InputError(f"OUT {out}: contains INPUT {inp}; crops would be written among the inputs (choose "
                         "another folder)")
    if out.exists() and not out.is_dir():
        raise InputError(f"OUT {out}: exists and is not a folder")
    probe_writable("OUT", out, folder=True)
    _check_settings(out, settings, overwrite)
    if not media:
        raise NoFaceError(f"INPUT {inp}: no photo or video found ({summary.line(out)}); nothing was written")
    writer = _Writer(out, settings, quality, overwrite, summary)
    todo = []
    for m in media:
        summary.identities.add(m.identity)
        if not overwrite and writer.marker(m).is_file():
            summary.done_before += 1
            try:
                summary.done_before_faces += int(json.loads(writer.marker(m).read_text()).get("faces", 0))
            except (OSError, ValueError, AttributeError, TypeError):
                pass
            continue
        todo.append(m)
    dev = dev or torch.device("cpu")
    if detector is None and todo:
        from .common import load_detector_cli

        detector = load_detector_cli(detector_name, det_threshold, dev)
    bar = tqdm(total=len(todo), desc="prepare-faces", unit="file", disable=quiet, dynamic_ncols=True)
    try:
        photos = [m for m in todo if not m.video]
        pending = {m.path: m for m in photos}

        def close_photo(m: MediaFile, ok: bool = True) -> None:
            pending.pop(m.path)
            if ok:
                writer.finish(m)
            bar.update(1)

        for batch in _photo_batches(photos, batch_size, summary, lambda m: close_photo(m, ok=False)):
            _process(batch, detector, settings, mode, writer, summary, dev)
            for m in batch.owners:
                close_photo(m)
            bar.set_postfix(crops=summary.written)
        for m in [m for m in todo if m.video]:
            for batch in _video_batches(m, batch_size, every, max_per_video, summary):
                _process(batch, detector, settings, mode, writer, summary, dev)
            if str(m.path) not in summary.skipped:
                writer.finish(m)
            bar.update(1)
            bar.set_postfix(crops=summary.written)
    finally:
        bar.close()
    if summary.written + summary.existing + summary.done_before_faces == 0:
        raise NoFaceError(f"no face crop was written ({summary.line(out)}); check the inputs, --min-face "
                          f"{min_face} and the detection threshold; nothing was written")
    return summary


def cmd_prepare(args: argparse.Namespace) -> int:
    """Run ``prepare-faces``; prints the summary line (stderr) unless --quiet."""
    dev = device(args.device)
    summary = prepare_faces(args.input, args.out, crop_size=args.crop_size, align=args.align,
                            identity=args.identity, per_identity=args.per_identity, faces=args.faces,
                            min_face=args.min_face, every=args.every, max_per_video=args.max_per_video,
                            fmt=args.format, quality=args.jpg_quality, detector_name=args.detector,
                            det_threshold=args.det_threshold, batch_size=args.batch_size, overwrite=args.overwrite,
                            dev=dev, quiet=args.quiet)
    if not args.quiet:
        print(summary.line(Path(args.out)), file=sys.stderr)
    return 0
