"""Frame sources and sinks: where the frames of a run come from and where the swapped frames go.

A ``FrameSource`` (one image, a folder of images, a video, an animated GIF / WebP / APNG, or an in-memory
``[N,3,H,W]`` tensor) yields
``FrameBatch`` es: frames ``[B,3,H,W]`` float32 RGB in [0,1] on the source's device, the index of the batch's first
frame in the whole source, for image files the per-file details (alpha, bit depth, grayscale, name) the sink
needs to write each result like its input, and for videos each frame's presentation timestamp (kept by the video
sink: a variable frame rate stays variable). A ``FrameSink`` takes each batch with its swap result and commits the
output in ``close()`` only (the temporary file / staging folder is dropped by ``abort()``), so an interrupted run
never leaves a complete-looking output. ``open_source`` / ``open_sink`` pick the kind from a path and check
before any model work: a damaged video or image is refused, and an output that is an input (``output_guard``),
exists, cannot hold the source's frames or cannot be written is refused. ``frame_ranges`` is the one chunking
helper of the package. Every file sink labels its output as synthetic media (``provenance``; the sink's
``label``, set by the caller with the models' hashes, else a label without model records) unless labelling is off.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import torch

from ..checks import check_images
from ..errors import InputError
from ..provenance.label import ProvenanceLabel, output_label
from .animation import (
    ANIMATED_EXTS,
    AnimationInfo,
    is_animated,
    iter_animation_frames,
    probe_animation,
    write_animation,
)
from .atomic import make_folders, publish, remove_empty_folders
from .images import LoadedImage, is_image_path, list_images, read_image, write_image, write_like
from .output_guard import is_same_file, probe_writable, refuse_input_as_output
from .video import (
    VideoInfo,
    VideoWriter,
    check_video_complete,
    is_video_path,
    iter_image_folder,
    iter_video_frames_with_pts,
    probe_video,
    to_uint8_hwc,
)
from .video_devices import (
    DecodeChoice,
    EncodeChoice,
    VideoCapabilities,
    choose_decoder,
    choose_encoder,
    iter_torchcodec_frames,
    open_decoder,
    parse_decode_device,
)

Device = torch.device | str | None


def frame_ranges(total: int, batch_size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of at most ``batch_size`` frames covering ``0..total-1``."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"frame_ranges: batch_size must be an integer >= 1, got {batch_size!r}")
    if total < 0:
        raise ValueError(f"frame_ranges: total must be >= 0, got {total}")
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)


# ------------------------------------------------------------------------------------------------ batches

@dataclass
class FrameBatch:
    """Consecutive frames of a source.

    frames:    [B,3,H,W] float32 RGB in [0,1], on the source's device.
    start:     index of frames[0] in the whole source (frames[i] is frame start + i).
    items:     per-frame file details (alpha, bit depth, grayscale, path) for image and folder sources, else None.
    pts:       [B] int64 (CPU) presentation timestamps of the frames in ``time_base`` units (video sources), else
               None (a video sink then spaces the frames 1/fps apart).
    time_base: seconds per ``pts`` unit (e.g. Fraction(1, 15360)), with ``pts``.
    """

    frames: torch.Tensor
    start: int
    items: list[LoadedImage] | None = None
    pts: torch.Tensor | None = None
    time_base: Fraction | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def stop(self) -> int:
        """Index one past the batch's last frame."""
        return self.start + len(self)

    def slice(self, a: int, b: int) -> FrameBatch:
        """Frames a..b-1 of the batch (views, no copies) as a batch starting at ``start + a``."""
        if not 0 <= a <= b <= len(self):
            raise ValueError(f"FrameBatch.slice: range {a}..{b} outside the batch's {len(self)} frames")
        return FrameBatch(self.frames[a:b], self.start + a, None if self.items is None else self.items[a:b],
                          None if self.pts is None else self.pts[a:b], self.time_base)

    @staticmethod
    def cat(batches: Sequence[FrameBatch]) -> FrameBatch:
        """Consecutive batches (each starting where the one before stops, frames of one size) joined into one.
        items / pts are kept when every batch has them (pts: in one time base), else None."""
        if not batches:
            raise ValueError("FrameBatch.cat: expected at least one batch")
        if len(batches) == 1:
            return batches[0]
        for before, after in zip(batches, batches[1:]):
            if after.start != before.stop:
                raise ValueError(f"FrameBatch.cat: batches are not consecutive (frames {before.start}.."
                                 f"{before.stop - 1} then {after.start}..)")
            if after.frames.shape[1:] != before.frames.shape[1:]:
                raise ValueError(f"FrameBatch.cat: frames of different sizes ({tuple(before.frames.shape[1:])} and "
                                 f"{tuple(after.frames.shape[1:])}) cannot be joined")
        items = None
        if all(b.items is not None for b in batches):
            items = [it for b in batches for it in (b.items or [])]
        pts, time_base = None, batches[0].time_base
        if all(b.pts is not None and b.time_base == time_base for b in batches):
            pts = torch.cat([b.pts for b in batches if b.pts is not None])
        return FrameBatch(torch.cat([b.frames for b in batches]), batches[0].start, items, pts,
                          time_base if pts is not None else None)


def _numbered(parts: Iterator[tuple[torch.Tensor, list[LoadedImage] | None]]) -> Iterator[FrameBatch]:
    """FrameBatches with running start indices from (frames [B,3,H,W], items) pairs."""
    start = 0
    for frames, items in parts:
        batch = FrameBatch(frames, start, items)
        start = batch.stop
        yield batch


# ------------------------------------------------------------------------------------------------ sources

class FrameSource(Protocol):
    """Frames of one input. total: frame count (None if unknown, e.g. a video without a count in its header).
    name: file or folder name (an output folder gets ``out/name``). kind: "image", "folder", "video", "tensor"."""

    total: int | None
    name: str
    kind: str

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        """Every frame once, in order, in batches of at most ``batch_size`` frames."""
        ...


class _FileSource:
    """A source read from one file (``path``) onto ``device``; ``name`` is the file name."""

    kind = "file"

    def __init__(self, path: str | os.PathLike, device: Device = None):
        self.path = Path(path)
        self.device = device
        self.name = self.path.name
        self.total: int | None = None


class ImageSource(_FileSource):
    """One image file as a one-frame source (the file's alpha, bit depth and grayscale-ness travel in items)."""

    kind = "image"

    def __init__(self, path: str | os.PathLike, device: Device = None):
        super().__init__(path, device)
        self.total = 1
        self.image = read_image(self.path, device=self.device)   # read now: a damaged file fails before any work

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        next(frame_ranges(1, batch_size))  # checks batch_size
        yield FrameBatch(self.image.image, 0, [self.image])


class FolderSource:
    """The images of a folder in natural name order ('f2' before 'f10'). A batch holds consecutive images of
    one size only (a size change starts a new batch)."""

    kind = "folder"

    def __init__(self, folder: str | os.PathLike, device: Device = None):
        self.folder = Path(folder)
        self.device = device
        self.name = self.folder.name
        self.files = list_images(self.folder)
        self.total: int | None = len(self.files)

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        return _numbered((frames, items) for items, frames in
                         iter_image_folder(self.folder, batch_size, device=self.device))


class VideoSource(_FileSource):
    """The frames of a video's first stream in presentation order; ``info`` (fps, size, audio) for the sink.

    A truncated or damaged file (fewer complete frames than its header declares, damaged packets, a frame that
    does not decode, fewer frames decoded than declared) raises InputError naming the file and the frames found
    and expected: at once when the packets show it, else while reading. ``allow_partial=True`` warns instead and
    keeps the frames that decode (never silently: the warning names the counts).

    decode_device: "auto" (NVDEC through torchcodec when ``device`` is a CUDA device and torchcodec with CUDA
    loads, else PyAV on the CPU), "cpu" or "cuda[:N]" (``video_devices.choose_decoder``); ``decode_choice`` says
    which path was taken and why (``decode_choice.message()``). capabilities: injected (tests), else probed.
    """

    kind = "video"

    def __init__(self, path: str | os.PathLike, device: Device = None, *, allow_partial: bool = False,
                 decode_device: str = "auto", capabilities: VideoCapabilities | None = None):
        super().__init__(path, device)
        self.info: VideoInfo = probe_video(self.path)
        self.allow_partial = allow_partial
        self.total = check_video_complete(self.info, allow_partial=allow_partial)
        self.audio_path: Path | None = self.path
        self.decode_device = parse_decode_device(decode_device)
        choice = choose_decoder(self.decode_device, device, capabilities)
        self.decode_choice: DecodeChoice
        self.decode_choice, self._decoder = open_decoder(choice, self.path, explicit=self.decode_device != "auto")

    @property
    def fps(self) -> Fraction:
        return self.info.fps

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.info.height, self.info.width

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        """Every frame once, in presentation order, with its pts in ``info.time_base`` (None where the file has
        none)."""
        start = 0
        for frames, pts in self._checked_frames(batch_size):
            stamps = None if any(p is None for p in pts) else torch.tensor(pts, dtype=torch.int64)
            batch = FrameBatch(frames, start, None, stamps, self.info.time_base if stamps is not None else None)
            start = batch.stop
            yield batch

    def _checked_frames(self, batch_size: int) -> Iterator[tuple[torch.Tensor, list[int | None]]]:
        decoded = 0
        choice, decoder = self.decode_choice, self._decoder
        self._decoder = None
        if choice.backend == "torchcodec" and decoder is None:     # a second pass over the source
            choice, decoder = open_decoder(choice, self.path, explicit=self.decode_device != "auto")
        batches: Iterator[tuple[torch.Tensor, list[int | None]]]
        if decoder is not None:                  # NVDEC: frames arrive on choice.device
            batches = iter_torchcodec_frames(self.path, batch_size, choice.device, self.info.time_base,
                                             allow_partial=self.allow_partial, decoder=decoder)
        else:
            batches = iter_video_frames_with_pts(self.path, batch_size, device=self.device,
                                                 allow_partial=self.allow_partial)
        for frames, pts in batches:
            decoded += int(frames.shape[0])
            yield frames, pts
        if self.total is not None and decoded != self.total:
            what = (f"{self.path}: truncated or damaged video: {decoded} frame(s) decoded of the {self.total} "
                    "its header declares")
            if not self.allow_partial:
                raise InputError(what + "; nothing was written (pass --allow-partial to keep the frames that decode)")
            warnings.warn(what + "; only those are used (allow_partial)", stacklevel=2)


class AnimatedImageSource(_FileSource):
    """The frames of an animated GIF / WebP / APNG, in order; ``animation`` (durations, loop) for the sink."""

    kind = "animation"

    def __init__(self, path: str | os.PathLike, device: Device = None):
        super().__init__(path, device)
        self.animation: AnimationInfo = probe_animation(self.path)
        self.total = self.animation.n_frames
        self.audio_path: Path | None = None
        if self.animation.has_alpha:
            warnings.warn(f"{self.path}: the transparency of the animation is not kept (frames are swapped as RGB)",
                          stacklevel=2)

    @property
    def info(self) -> VideoInfo:
        """The animation as a video would describe it (for writing it as a video)."""
        h, w = self.animation.size
        return VideoInfo(self.path, w, h, self.animation.fps, self.total, False, self.animation.format)

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        return _numbered((frames, None) for frames in iter_animation_frames(self.path, batch_size, self.device))


class TensorSource:
    """In-memory frames [N,3,H,W] float RGB [0,1] (e.g. a ComfyUI IMAGE batch), sliced without copies."""

    kind = "tensor"

    def __init__(self, frames: torch.Tensor, name: str = "frames"):
        self.frames = check_images(frames, "TensorSource frames", allow_single=True, allow_empty=True)
        self.name = name
        self.total: int | None = int(self.frames.shape[0])

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        for start, stop in frame_ranges(int(self.frames.shape[0]), batch_size):
            yield FrameBatch(self.frames[start:stop], start)


AnySource = ImageSource | FolderSource | VideoSource | AnimatedImageSource


def open_source(path: str | os.PathLike, device: Device = None, *, allow_partial: bool = False,
                decode_device: str = "auto") -> AnySource:
    """The source for a path, by kind: a folder, an animated image (GIF, or WebP / PNG with several frames), an
    image file (by extension) or a video file. allow_partial, decode_device: see ``VideoSource``."""
    target = Path(path)
    if not target.exists():
        raise FileNotFoundError(f"--target {target}: no such file or folder")
    if target.is_dir():
        return FolderSource(target, device)
    if target.suffix.lower() in (".gif", ".apng") or is_animated(target):
        return AnimatedImageSource(target, device)
    if is_image_path(target):
        return ImageSource(target, device)
    if is_video_path(target):
        return VideoSource(target, device, allow_partial=allow_partial, decode_device=decode_device)
    raise InputError(f"--target {target}: expected an image (.png .jpg .webp .bmp .tif), an animated image (.gif "
                     f".webp .png), a folder of images or a video (.mp4 .mov .mkv .avi .webm ...)")


# ------------------------------------------------------------------------------------------------ sinks

class FrameSink(Protocol):
    """Where swapped frames go. write() takes each batch with its swap result (``run.FrameResult``: ``.images``
    [B,3,H,W] float RGB [0,1], ``.mask``, ``.faces``, ...; the full ``SwapResult`` when the sink has a true
    ``keep_crops`` attribute); close() commits the output; abort() drops everything written. ``run`` calls write()
    from its writer thread (in order, one at a time) and close() / abort() from the caller's thread after the last
    write returned."""

    def write(self, batch: FrameBatch, result: Any) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def _refuse_existing(path: Path, overwrite: bool, what: str = "") -> None:
    if path.exists() and not overwrite:
        raise InputError(f"{what}{path}: already exists; pass --overwrite to replace it")


def _write_frame(path: Path, image: torch.Tensor, like: LoadedImage | None, overwrite: bool,
                 label: ProvenanceLabel | None = None) -> None:
    """image [1,3,H,W] written like the input file ``like`` (alpha, bit depth, grayscale), or as plain RGB;
    with the synthetic-media ``label``."""
    if like is not None:
        write_like(path, image, like, overwrite=overwrite, label=label)
    else:
        write_image(path, image, overwrite=overwrite, label=label)


class ImageSink:
    """One image file, written like its input (``write_like``) when the run closes."""

    label: ProvenanceLabel | None = None    # every file sink: the swap's label (None: one without model records)

    def __init__(self, path: str | os.PathLike, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        _refuse_existing(self.path, overwrite)
        self._pending: tuple[torch.Tensor, LoadedImage | None] | None = None

    def write(self, batch: FrameBatch, result: Any) -> None:
        if len(batch) != 1 or self._pending is not None:
            raise InputError(f"{self.path}: an image output holds one frame; use a folder or video output")
        self._pending = (result.images, batch.items[0] if batch.items else None)

    def close(self) -> None:
        if self._pending is None:
            raise InputError(f"{self.path}: no frame was written")
        image, like = self._pending
        self._pending = None
        _write_frame(self.path, image, like, self.overwrite, output_label(self.label))

    def abort(self) -> None:
        self._pending = None


class FolderSink:
    """A folder of images, each named and written like its input file (frames without a file: ``000123.png``).

    Frames are written into a hidden staging folder and moved into place by ``close()`` only, after every frame
    was written: when ``folder`` does not exist yet, the staging folder (``.<name>.simswap-partial-*`` next to it)
    is renamed to ``folder`` in one step; otherwise (staging folder inside ``folder``) each file is moved in, and an
    interruption while moving removes the files moved so far. ``abort()`` removes the staging folder, so an
    interrupted run leaves no complete-looking set of frames.
    """

    label: ProvenanceLabel | None = None

    def __init__(self, folder: str | os.PathLike, overwrite: bool = False):
        self.path = Path(folder)
        self.overwrite = overwrite
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path}: expected a folder for the output frames, found a file")
        self.names: list[str] = []
        self._stage: Path | None = None
        self._whole = False     # True: the staging folder becomes `path` (path did not exist)
        self._created: list[Path] = []     # parent folders made for the staging folder (removed by abort if empty)

    def _staging(self) -> Path:
        if self._stage is None:
            if self.path.exists():
                self._stage = Path(tempfile.mkdtemp(prefix=".simswap-partial-", dir=self.path))
            else:
                self._created = make_folders(self.path.parent)
                self._stage = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.simswap-partial-",
                                                    dir=self.path.parent))
                self._whole = True
        return self._stage

    def write(self, batch: FrameBatch, result: Any) -> None:
        stage = self._staging()
        for i in range(len(batch)):
            like = batch.items[i] if batch.items else None
            name = like.path.name if like is not None else f"{batch.start + i:06d}.png"
            if name in self.names:
                raise InputError(f"{self.path}: two frames would be written as {name}")
            _refuse_existing(self.path / name, self.overwrite)
            _write_frame(stage / name, result.images[i:i + 1], like, False, output_label(self.label))
            self.names.append(name)

    def close(self) -> None:
        stage = self._staging()
        missing = [n for n in self.names if not (stage / n).is_file()]
        if missing:
            self.abort()
            raise InputError(f"{self.path}: {len(missing)} frame(s) missing from the staging folder (e.g. "
                             f"{missing[0]}); nothing was written")
        if self._whole:
            os.chmod(stage, 0o777 & ~_umask())          # mkdtemp made it 0700: a normal folder follows the umask
            try:
                os.rename(stage, self.path)           # fails if `path` appeared meanwhile: never merged blindly
                self._stage = None
                return
            except OSError:
                if not self.path.is_dir():
                    self.abort()
                    raise
                # someone created the folder meanwhile: move the files in one by one below
        moved: list[Path] = []
        try:
            for name in self.names:
                existed = (self.path / name).exists()
                publish(stage / name, self.path / name, overwrite=self.overwrite)
                if not existed:
                    moved.append(self.path / name)
        except BaseException:
            for done in moved:                        # no partial set of frames is left behind
                done.unlink(missing_ok=True)
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            self._stage = None

    def abort(self) -> None:
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
            remove_empty_folders(self._created)
        self.names = []


def _umask() -> int:
    """The process umask, read without changing it where the system tells (Linux), else set and restored."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


class VideoSink:
    """A video with the fps and size of ``source`` (a video, or an animated image: its average frame rate), with
    the video's audio unless ``audio=False``, x264 at ``crf``. Each frame is written with the timestamp it came
    with (``FrameBatch.pts``, in the same time base: a variable frame rate is kept), else i/fps.

    source: a ``VideoSource`` / ``AnimatedImageSource``, or a plain ``VideoInfo`` (frames from elsewhere, e.g. a
    tensor; its audio then comes from ``audio_from`` only). audio_from: the file whose first audio stream is
    copied (default: the source's own file; None with a ``VideoInfo``).
    The file is written under a temporary name (``VideoWriter``), created on the first frame, and moved into place
    by ``close()`` after the closed file read back with every frame written; ``abort()`` deletes it.
    encoder: "auto" (NVENC when ``device`` is a CUDA device and NVENC opens here, else x264), "libx264",
    "h264_nvenc" / "hevc_nvenc" (``video_devices.choose_encoder``); ``encode_choice`` says which and why.
    """

    def __init__(self, path: str | os.PathLike, source: VideoSource | AnimatedImageSource | VideoInfo, *,
                 audio: bool = True, crf: int = 17, overwrite: bool = False,
                 audio_from: str | os.PathLike | None = None, encoder: str = "auto", device: Device = None,
                 capabilities: VideoCapabilities | None = None):
        self.path = Path(path)
        self.source = source
        self.info: VideoInfo = source if isinstance(source, VideoInfo) else source.info
        if audio_from is None and not isinstance(source, VideoInfo):
            audio_from = source.audio_path
        self.audio_from = None if audio_from is None or not audio else Path(audio_from)
        self.audio = audio
        self.crf = crf
        self.overwrite = overwrite
        _refuse_existing(self.path, overwrite)
        self.encode_choice: EncodeChoice = choose_encoder(encoder, device, self.info.width, self.info.height,
                                                          self.path.suffix, capabilities)
        self._writer: VideoWriter | None = None

    label: ProvenanceLabel | None = None

    def _open(self, batch: FrameBatch | None = None) -> VideoWriter:
        if self._writer is None:
            info = self.info
            # the time base of the first frames' timestamps (a video's own), else 1/fps
            time_base = batch.time_base if batch is not None and batch.pts is not None else None
            self._writer = VideoWriter(self.path, info.fps, info.width, info.height, overwrite=self.overwrite,
                                       audio_from=self.audio_from, crf=self.crf, time_base=time_base,
                                       codec=self.encode_choice.codec, label=output_label(self.label))
        return self._writer

    @property
    def frames_written(self) -> int:
        return 0 if self._writer is None else self._writer.frames_written

    def write(self, batch: FrameBatch, result: Any) -> None:
        self._open(batch).write(result.images, pts=batch.pts, time_base=batch.time_base)

    def close(self) -> None:
        self._open().close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


class AnimatedImageSink:
    """An animated GIF / WebP / APNG with the per-frame durations and loop count of ``source`` (an animated image).

    Frames are kept in memory (as 8-bit RGB) and written in ``close()`` only, atomically, when their count is
    the source's frame count; ``abort()`` drops them.
    """

    def __init__(self, path: str | os.PathLike, source: AnimatedImageSource, *, overwrite: bool = False):
        self.path = Path(path)
        self.source = source
        self.overwrite = overwrite
        _refuse_existing(self.path, overwrite)
        self.frames: list[Any] = []

    label: ProvenanceLabel | None = None

    def write(self, batch: FrameBatch, result: Any) -> None:
        self.frames.extend(to_uint8_hwc(result.images))

    def close(self) -> None:
        info = self.source.animation
        if len(self.frames) != info.n_frames:
            raise InputError(f"{self.path}: {len(self.frames)} frame(s) written of the {info.n_frames} of "
                             f"{info.path.name}; nothing was written")
        frames, self.frames = self.frames, []
        write_animation(self.path, frames, info.durations_ms, loop=info.loop, overwrite=self.overwrite,
                        label=output_label(self.label))

    def abort(self) -> None:
        self.frames = []


class TensorSink:
    """Keeps each batch's result in memory; ``result()`` joins them (``type(result).concat``, e.g.
    ``run.FrameResult.concat``). device: where the results' ``images`` and ``mask`` are kept (None: as they come).
    keep_crops: ask ``run`` for the full swap results (``SwapResult``: aligned and swapped crops too) instead of
    the light ``FrameResult`` s (images, mask, faces)."""

    def __init__(self, device: Device = None, *, keep_crops: bool = False):
        self.device = device
        self.keep_crops = keep_crops
        self.path: Path | None = None
        self.parts: list[Any] = []
        self.closed = False
        self.label: ProvenanceLabel | None = None      # unused: results stay in memory (no file to label)

    def write(self, batch: FrameBatch, result: Any) -> None:
        if self.device is not None:
            result = dataclasses.replace(result, images=result.images.to(self.device),
                                         mask=result.mask.to(self.device))
        self.parts.append(result)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.parts = []

    def result(self) -> Any:
        """The results of all batches as one (frame indices refer to the whole source)."""
        if not self.parts:
            raise InputError("TensorSink: no frames were written")
        return self.parts[0] if len(self.parts) == 1 else type(self.parts[0]).concat(self.parts)


AnySink = ImageSink | FolderSink | VideoSink | AnimatedImageSink | TensorSink
_FILE_EXTS = (*ANIMATED_EXTS, ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".mp4", ".mov", ".mkv", ".avi", ".webm",
              ".m4v", ".mpg", ".mpeg", ".ts")


def open_sink(out: str | os.PathLike | None, source: FrameSource, *, overwrite: bool = False, audio: bool = True,
              crf: int = 17, inputs: Iterable[str | os.PathLike | None] = (), encoder: str = "auto",
              device: Device = None) -> AnySink:
    """The sink for ``source``'s kind, checked before any model work.

    Refused (InputError naming ``out``): an output that is an input (the source's file or folder, or any of
    ``inputs``: the --source, a reference photo) or lies inside an input folder, even with ``overwrite``; an
    existing output unless ``overwrite``; an output kind that cannot hold the source (a video or animation into
    a still image, a folder into a file name); a folder where no file can be created (read-only, full disk).
    An existing folder as ``out`` of an image, video or animation gets ``out/<source name>``; a folder target
    needs a folder ``out``. ``out=None``: keep the results in memory. encoder, device (where the frames are
    processed): the video encoder's choice, see ``VideoSink``.
    """
    if out is None:
        return TensorSink()
    out = Path(out)
    read = [getattr(source, "folder", None) or getattr(source, "path", None), *inputs]
    if isinstance(source, (FolderSource, TensorSource)):
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: the target is a folder of frames, so --out must be a folder")
        if not out.exists() and out.suffix.lower() in _FILE_EXTS:
            raise InputError(f"--out {out}: the target is a folder of frames, so --out must be a folder (a name "
                             f"without a file extension), got a {out.suffix} file name")
        refuse_input_as_output("--out", out, read)
        if isinstance(source, FolderSource):
            for f in source.files:
                if (out / f.name).exists() and is_same_file(out / f.name, f):
                    raise InputError(f"--out {out}: {out / f.name} is the input file {f}; an input is never "
                                     "replaced, even with --overwrite")
            clash = [out / f.name for f in source.files if (out / f.name).exists()]
            if clash and not overwrite:
                raise InputError(f"--out {out}: {len(clash)} output file(s) already exist (e.g. {clash[0].name}); "
                                 "pass --overwrite to replace them")
        probe_writable("--out", out, folder=True)
        return FolderSink(out, overwrite)
    if out.is_dir():
        out = out / source.name
    refuse_input_as_output("--out", out, read)
    _refuse_existing(out, overwrite, "--out ")
    ext = out.suffix.lower()
    sink: AnySink
    if isinstance(source, (VideoSource, AnimatedImageSource)):
        if is_video_path(out):
            sink = VideoSink(out, source, audio=audio, crf=crf, overwrite=overwrite, encoder=encoder, device=device)
        elif isinstance(source, AnimatedImageSource) and ext in ANIMATED_EXTS:
            sink = AnimatedImageSink(out, source, overwrite=overwrite)
        else:
            kinds = "a video (.mp4 .mov .mkv .webm ...)" + (
                " or an animated image (.gif .webp .png)" if isinstance(source, AnimatedImageSource) else "")
            raise InputError(f"--out {out}: the target {source.name} has {source.total or 'several'} frame(s), so "
                             f"--out must be {kinds}, got {ext or 'no extension'}; nothing was written")
    else:
        if not is_image_path(out):
            raise InputError(f"--out {out}: the target {source.name} is one image, so --out must be an image "
                             f"(.png .jpg .webp .bmp .tif), got {ext or 'no extension'}")
        sink = ImageSink(out, overwrite)
    probe_writable("--out", out)
    return sink
