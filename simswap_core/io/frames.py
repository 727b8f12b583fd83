"""Frame sources and sinks: where the frames of a run come from and where the swapped frames go.

A ``FrameSource`` (one image, a folder of images, a video, or an in-memory ``[N,3,H,W]`` tensor) yields
``FrameBatch`` es: frames ``[B,3,H,W]`` float32 RGB in [0,1] on the source's device, the index of the batch's first
frame in the whole source, and for image files the per-file details (alpha, bit depth, grayscale, name) the sink
needs to write each result like its input. A ``FrameSink`` takes each batch with its swap result and commits the
output in ``close()`` only (the temporary file / staging folder is dropped by ``abort()``), so an interrupted run
never leaves a complete-looking output. ``open_source`` / ``open_sink`` pick the kind from a path and check the
output before any model work. ``frame_ranges`` is the one chunking helper of the package.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import torch

from ..checks import check_images
from ..errors import InputError
from .atomic import publish
from .images import LoadedImage, is_image_path, list_images, read_image, write_image, write_like
from .video import VideoInfo, VideoWriter, is_video_path, iter_image_folder, iter_video_frames, probe_video

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

    frames: [B,3,H,W] float32 RGB in [0,1], on the source's device.
    start:  index of frames[0] in the whole source (frames[i] is frame start + i).
    items:  per-frame file details (alpha, bit depth, grayscale, path) for image and folder sources, else None.
    """

    frames: torch.Tensor
    start: int
    items: list[LoadedImage] | None = None

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def stop(self) -> int:
        """Index one past the batch's last frame."""
        return self.start + len(self)


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

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        next(frame_ranges(1, batch_size))  # checks batch_size
        img = read_image(self.path, device=self.device)
        yield FrameBatch(img.image, 0, [img])


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
    """The frames of a video's first stream in presentation order; ``info`` (fps, size, audio) for the sink."""

    kind = "video"

    def __init__(self, path: str | os.PathLike, device: Device = None):
        super().__init__(path, device)
        self.info: VideoInfo = probe_video(self.path)
        self.total = self.info.frame_count

    @property
    def fps(self) -> Fraction:
        return self.info.fps

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return self.info.height, self.info.width

    def batches(self, batch_size: int) -> Iterator[FrameBatch]:
        return _numbered((frames, None) for frames in iter_video_frames(self.path, batch_size, device=self.device))


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


def open_source(path: str | os.PathLike, device: Device = None) -> ImageSource | FolderSource | VideoSource:
    """The source for a path, by kind: a folder, an image file (by extension) or a video file."""
    target = Path(path)
    if not target.exists():
        raise FileNotFoundError(f"--target {target}: no such file or folder")
    if target.is_dir():
        return FolderSource(target, device)
    if is_image_path(target):
        return ImageSource(target, device)
    if is_video_path(target):
        return VideoSource(target, device)
    raise InputError(f"--target {target}: expected an image (.png .jpg .webp .bmp .tif), a folder of images or "
                     f"a video (.mp4 .mov .mkv .avi .webm ...)")


# ------------------------------------------------------------------------------------------------ sinks

class FrameSink(Protocol):
    """Where swapped frames go. write() takes each batch with its swap result (``.images`` [B,3,H,W] float RGB
    [0,1], ``.mask``, ``.faces``, ...); close() commits the output; abort() drops everything written."""

    def write(self, batch: FrameBatch, result: Any) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def _refuse_existing(path: Path, overwrite: bool, what: str = "") -> None:
    if path.exists() and not overwrite:
        raise InputError(f"{what}{path}: already exists; pass --overwrite to replace it")


def _write_frame(path: Path, image: torch.Tensor, like: LoadedImage | None, overwrite: bool) -> None:
    """image [1,3,H,W] written like the input file ``like`` (alpha, bit depth, grayscale), or as plain RGB."""
    if like is not None:
        write_like(path, image, like, overwrite=overwrite)
    else:
        write_image(path, image, overwrite=overwrite)


class ImageSink:
    """One image file, written like its input (``write_like``) when the run closes."""

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
        _write_frame(self.path, image, like, self.overwrite)

    def abort(self) -> None:
        self._pending = None


class FolderSink:
    """A folder of images, each named and written like its input file (frames without a file: ``000123.png``).

    Frames are written into a hidden staging folder inside ``folder`` and moved into place by ``close()``;
    ``abort()`` removes the staging folder (and ``folder`` itself when this sink created it and it is empty).
    """

    def __init__(self, folder: str | os.PathLike, overwrite: bool = False):
        self.path = Path(folder)
        self.overwrite = overwrite
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path}: expected a folder for the output frames, found a file")
        self.names: list[str] = []
        self._stage: Path | None = None
        self._created = False

    def _staging(self) -> Path:
        if self._stage is None:
            self._created = not self.path.exists()
            self.path.mkdir(parents=True, exist_ok=True)
            self._stage = Path(tempfile.mkdtemp(prefix=".simswap-partial-", dir=self.path))
        return self._stage

    def write(self, batch: FrameBatch, result: Any) -> None:
        stage = self._staging()
        for i in range(len(batch)):
            like = batch.items[i] if batch.items else None
            name = like.path.name if like is not None else f"{batch.start + i:06d}.png"
            if name in self.names:
                raise InputError(f"{self.path}: two frames would be written as {name}")
            _refuse_existing(self.path / name, self.overwrite)
            _write_frame(stage / name, result.images[i:i + 1], like, False)
            self.names.append(name)

    def close(self) -> None:
        stage = self._staging()
        try:
            for name in self.names:
                publish(stage / name, self.path / name, overwrite=self.overwrite)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            self._stage = None

    def abort(self) -> None:
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
            if self._created:
                try:
                    self.path.rmdir()      # only when empty
                except OSError:
                    pass
        self.names = []


class VideoSink:
    """A video with the fps and size of ``source`` (and its audio unless ``audio=False``), x264 at ``crf``.

    The file is written under a temporary name (``VideoWriter``), created on the first frame, and moved into place
    by ``close()``; ``abort()`` deletes it.
    """

    def __init__(self, path: str | os.PathLike, source: VideoSource, *, audio: bool = True, crf: int = 17,
                 overwrite: bool = False):
        self.path = Path(path)
        self.source = source
        self.audio = audio
        self.crf = crf
        self.overwrite = overwrite
        _refuse_existing(self.path, overwrite)
        self._writer: VideoWriter | None = None

    def _open(self) -> VideoWriter:
        if self._writer is None:
            info = self.source.info
            self._writer = VideoWriter(self.path, info.fps, info.width, info.height, overwrite=self.overwrite,
                                       audio_from=self.source.path if self.audio else None, crf=self.crf)
        return self._writer

    @property
    def frames_written(self) -> int:
        return 0 if self._writer is None else self._writer.frames_written

    def write(self, batch: FrameBatch, result: Any) -> None:
        self._open().write(result.images)

    def close(self) -> None:
        self._open().close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()


class TensorSink:
    """Keeps each batch's result in memory; ``result()`` joins them (``type(result).concat``, e.g.
    ``SwapResult.concat``). device: where the results' ``images`` and ``mask`` are kept (None: as they come)."""

    def __init__(self, device: Device = None):
        self.device = device
        self.path: Path | None = None
        self.parts: list[Any] = []
        self.closed = False

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


def open_sink(out: str | os.PathLike | None, source: FrameSource, *, overwrite: bool = False, audio: bool = True,
              crf: int = 17) -> ImageSink | FolderSink | VideoSink | TensorSink:
    """The sink for ``source``'s kind, checked before any model work: an existing output is refused unless
    ``overwrite``; an existing folder as ``out`` of an image or video gets ``out/<source name>``; a folder target
    needs a folder ``out`` that is not the target folder. ``out=None``: keep the results in memory."""
    if out is None:
        return TensorSink()
    out = Path(out)
    if isinstance(source, FolderSource):
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: the target is a folder, so --out must be a folder")
        if out.resolve() == source.folder.resolve():
            raise InputError("--out must differ from the --target folder (inputs are never overwritten)")
        clash = [out / f.name for f in source.files if (out / f.name).exists()]
        if clash and not overwrite:
            raise InputError(f"--out {out}: {len(clash)} output file(s) already exist (e.g. {clash[0].name}); "
                             "pass --overwrite to replace them")
        return FolderSink(out, overwrite)
    if isinstance(source, TensorSource):
        return FolderSink(out, overwrite)
    if out.is_dir():
        out = out / source.name
    _refuse_existing(out, overwrite, "--out ")
    if isinstance(source, VideoSource):
        return VideoSink(out, source, audio=audio, crf=crf, overwrite=overwrite)
    return ImageSink(out, overwrite)
