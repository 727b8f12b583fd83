"""Video and frame-sequence I/O with PyAV: frames in batches as tensors, same count, order and fps out, audio copied.

Frames are `[B,3,H,W]` float32 RGB in [0,1]. Every decoded frame is yielded exactly once, in decode
(presentation) order, optionally with its presentation timestamp (``iter_video_frames_with_pts``); the writer
gives each frame the timestamp it is handed (same time base: a variable frame rate is kept), else i/fps, so the
output has the same frame count, order and timing as the input. Audio packets of the source are copied without
re-encoding when the output container accepts the codec, otherwise re-encoded to AAC.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch

from ..errors import InputError, OutputError
from .atomic import AtomicFile
from .images import LoadedImage, list_images, read_image

if TYPE_CHECKING:  # PyAV is imported where it is used (importing this module stays light)
    from av.audio.resampler import AudioResampler
    from av.audio.stream import AudioStream
    from av.container import InputContainer, OutputContainer
    from av.packet import Packet
    from av.video.stream import VideoStream

    from ..provenance.label import ProvenanceLabel

_MP4_AUDIO = ("aac", "mp3", "alac", "ac3", "eac3", "opus", "flac")
_MOV_AUDIO = _MP4_AUDIO + ("pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


@dataclass
class VideoInfo:
    """What the writer needs to reproduce a video: size, frame rate (average), frame count (None if unknown),
    audio, and the time base of the frames' timestamps (seconds per pts unit; None when not known)."""

    path: Path
    width: int
    height: int
    fps: Fraction
    frame_count: int | None
    has_audio: bool
    codec: str
    time_base: Fraction | None = None


def _open(path: Path):
    import av

    if not path.exists():
        raise FileNotFoundError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except av.FFmpegError as e:
        raise InputError(f"{path}: not a readable video ({e})") from e
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    return container


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Size, fps, frame count (from the header; None if the container does not say) and audio presence."""
    path = Path(path)
    with _open(path) as c:
        s = c.streams.video[0]
        fps = s.average_rate or s.guessed_rate or s.base_rate or Fraction(25)
        count = int(s.frames) if s.frames else None
        return VideoInfo(path, s.codec_context.width, s.codec_context.height, Fraction(fps), count,
                         bool(c.streams.audio), s.codec_context.name,
                         Fraction(s.time_base) if s.time_base else None)


def iter_video_frames(path: str | os.PathLike, batch_size: int = 16,
                      device: torch.device | str | None = None, *, allow_partial: bool = False
                      ) -> Iterator[torch.Tensor]:
    """Yield every frame of the first video stream, in order, as [B,3,H,W] float32 RGB [0,1] (B <= batch_size).

    A frame that cannot be decoded (truncated or damaged file) raises InputError naming the file and the number of
    frames decoded before it; with ``allow_partial`` a warning is given instead and the frames before it are kept.
    """
    for frames, _pts in iter_video_frames_with_pts(path, batch_size, device, allow_partial=allow_partial):
        yield frames


def iter_video_frames_with_pts(path: str | os.PathLike, batch_size: int = 16,
                               device: torch.device | str | None = None, *, allow_partial: bool = False
                               ) -> Iterator[tuple[torch.Tensor, list[int | None]]]:
    """As ``iter_video_frames``, each batch with its frames' presentation timestamps (in the stream's time base,
    ``VideoInfo.time_base``; None for a frame without one)."""
    import av

    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    path = Path(path)
    with _open(path) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        buf: list[np.ndarray] = []
        stamps: list[int | None] = []
        decoded = 0
        frames = c.decode(stream)
        while True:
            try:
                frame = next(frames, None)
            except av.FFmpegError as e:
                damaged_video(f"{path}: damaged or truncated video: frame {decoded + 1} could not be decoded "
                              f"({e}); {decoded} frame(s) decoded before it", allow_partial)
                break
            if frame is None:
                break
            buf.append(frame.to_ndarray(format="rgb24"))
            stamps.append(None if frame.pts is None else int(frame.pts))
            decoded += 1
            if len(buf) == batch_size:
                yield _stack(buf, device), stamps
                buf, stamps = [], []
        if buf:
            yield _stack(buf, device), stamps


def damaged_video(what: str, allow_partial: bool) -> None:
    """A decode error part-way through a video: InputError naming it, or with ``allow_partial`` a warning (the
    frames decoded before it are then used)."""
    if not allow_partial:
        raise InputError(what + "; pass --allow-partial (allow_partial=True) to use them") from None
    warnings.warn(what + "; only those are used (allow_partial)", stacklevel=3)


@dataclass
class PacketScan:
    """What demuxing (no decoding) a video's first stream found: complete packets, damaged ones, and empty ones
    (a repeated frame in some AVI files: counted by the header, nothing to decode)."""

    good: int
    corrupt: int
    error: str | None
    empty: int = 0


def scan_video_packets(path: str | os.PathLike) -> PacketScan:
    """Read every packet of the first video stream without decoding (fast: file I/O only) to find truncation."""
    import av

    good = corrupt = empty = 0
    error = None
    with _open(Path(path)) as c:
        try:
            for pkt in c.demux(c.streams.video[0]):
                if pkt.size == 0:
                    empty += pkt.dts is not None        # the demuxer's final flush packet has no dts
                    continue
                if pkt.is_corrupt:
                    corrupt += 1
                else:
                    good += 1
        except av.FFmpegError as e:
            error = str(e)
    return PacketScan(good, corrupt, error, empty)


def check_video_complete(info: VideoInfo, *, allow_partial: bool = False) -> int | None:
    """The number of frames that decoding ``info.path`` must give: InputError if the file holds fewer complete
    frames than its header declares, or damaged packets (naming the file, frames found and expected), unless
    ``allow_partial`` (then a warning, and None). None when the header declares no count."""
    scan = scan_video_packets(info.path)
    expected = None if info.frame_count is None else info.frame_count - scan.empty
    problems = []
    if expected is not None and scan.good < expected:
        problems.append(f"holds {scan.good} complete frame(s) of the {expected} its header declares")
    if scan.corrupt:
        problems.append(f"{scan.corrupt} damaged frame(s)")
    if scan.error is not None:
        problems.append(f"reading stopped after {scan.good + scan.corrupt} frame(s): {scan.error}")
    if not problems:
        return expected
    what = f"{info.path}: truncated or damaged video: " + "; ".join(problems)
    if not allow_partial:
        raise InputError(what + "; nothing was written (pass --allow-partial to swap the frames that decode)")
    warnings.warn(what + "; only the frames that decode are used (allow_partial)", stacklevel=2)
    return None


def _stack(arrays: list[np.ndarray], device) -> torch.Tensor:
    t = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    if device is not None:
        t = t.to(device)
    return t.float().div_(255.0)


# BT.601 limited range, what swscale uses for rgb24 -> yuv420p (rows: Y, Cb, Cr; input RGB in [0,1])
_YUV601 = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))


def to_yuv420p(frames: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] float RGB [0,1] (even H and W), on any device -> [B, H*3/2, W] uint8 yuv420p planes (Y, then U,
    then V, PyAV's ``from_ndarray(format="yuv420p")`` layout), BT.601 limited range like swscale's conversion,
    chroma the mean of each 2x2 block. Converted on the frames' device, then one copy of half the bytes of RGB to
    the host (no swscale work on the CPU: the GPU path of ``VideoWriter``)."""
    b, _c, h, w = frames.shape
    rgb = frames.detach().float().clamp(0, 1)
    m = torch.tensor(_YUV601, dtype=rgb.dtype, device=rgb.device)
    yuv = torch.einsum("kc,bchw->bkhw", m, rgb)
    y = (yuv[:, 0] + 16.0).round().clamp(0, 255).to(torch.uint8).reshape(b, -1)
    uv = torch.nn.functional.avg_pool2d(yuv[:, 1:], 2)
    uv = (uv + 128.0).round().clamp(0, 255).to(torch.uint8).reshape(b, -1)
    return torch.cat([y, uv], dim=1).reshape(b, h * 3 // 2, w).cpu().numpy()


def to_uint8_hwc(frames: torch.Tensor) -> np.ndarray:
    """[B,3,H,W] float RGB [0,1] -> [B,H,W,3] uint8 (rounded), on the CPU."""
    return (frames.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class VideoWriter:
    """Write frames to a video file, optionally copying the audio of another file.

    Use as a context manager; `write(frames[B,3,H,W], pts=None, time_base=None)` as often as needed: each frame gets
    the timestamp it is handed (``pts`` in ``time_base`` units, e.g. a decoded video's own: a variable frame rate
    is kept), else frame i gets i/fps. ``time_base``: the stream's time base (default 1/fps; give the source's
    to keep its timestamps exactly). Timestamps are kept strictly increasing (a repeated or missing one becomes the
    one before plus one unit). The file is written to a temporary name and moved into place on a clean close (never
    left half-written, never replaces an existing file unless overwrite=True). Odd sizes use yuv444p (yuv420p
    needs even sizes). codec: the FFmpeg encoder (libx264: x264 at ``crf``; h264_nvenc / hevc_nvenc: NVENC at
    constant quality ``crf`` (its cq), chosen by ``video_devices.choose_encoder``).
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, width: int, height: int, *,
                 audio_from: str | os.PathLike | None = None, codec: str = "libx264", crf: int = 17,
                 overwrite: bool = False, time_base: Fraction | None = None, label: ProvenanceLabel | None = None):
        import av

        from ..provenance.label import embedded_label

        self.path = Path(path)
        self._label = embedded_label(label)   # the synthetic-media label (container tags, C2PA); None: unlabelled
        self.overwrite = overwrite
        self._file = AtomicFile(self.path, overwrite=overwrite)   # refuses an existing file unless overwrite
        self._tmp = self._file.tmp
        self._out: OutputContainer | None = None
        self._audio_in: InputContainer | None = None
        try:
            self._start(av, fps, width, height, audio_from, codec, crf, time_base)
        except BaseException:
            self.abort()
            raise

    def _start(self, av: Any, fps: Fraction | float, width: int, height: int,
               audio_from: str | os.PathLike | None, codec: str, crf: int, time_base: Fraction | None) -> None:
        """Open the container on the temporary file and set up the video (and audio) streams."""
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        if self.fps <= 0:
            raise InputError(f"{self.path}: frame rate must be > 0, got {fps}")
        if time_base is not None and Fraction(time_base) <= 0:
            raise InputError(f"{self.path}: time base must be > 0, got {time_base}")
        self.width, self.height = int(width), int(height)
        self.frames_written = 0
        self.device_yuv: bool | None = None      # RGB -> YUV on the frames' device: None = when they are on CUDA
        self._last_pts: int | None = None        # pts of the last frame written (in self._tb)
        self._shift: int | None = None           # added to every pts (moves a negative first pts to 0)
        fmt = "mp4" if self.path.suffix.lower() in (".mp4", ".m4v") else None
        self._out = av.open(str(self._tmp), mode="w", format=fmt)
        from ..provenance.video import label_container

        label_container(self._out, self._label, self.path)
        if codec not in av.codecs_available:
            raise InputError(f"video codec {codec!r} is not available in this PyAV/FFmpeg build")
        # a video codec by its (run-time) name: PyAV's overloads only know literal names
        self._v = cast("VideoStream", self._out.add_stream(codec, rate=self.fps))
        self._v.width, self._v.height = self.width, self.height
        even = self.width % 2 == 0 and self.height % 2 == 0
        self._v.pix_fmt = "yuv420p" if even or codec not in ("libx264",) else "yuv444p"
        # kept here: the muxer may change stream.time_base (MP4 picks its own timescale)
        self._tb = Fraction(time_base) if time_base is not None else Fraction(1, 1) / self.fps
        self._v.time_base = self._tb
        self._v.codec_context.time_base = self._tb    # frames reach the encoder in this time base, unrounded
        if codec == "libx264":
            self._v.options = {"crf": str(crf), "preset": "medium"}
        elif codec.endswith("_nvenc"):      # NVENC constant quality (cq ~ x264's crf scale), bit rate left free
            self._v.options = {"preset": "p5", "tune": "hq", "rc": "vbr", "cq": str(crf)}
        self._audio_in = None
        self._audio_out: AudioStream | None = None
        self._audio_packets: Iterator[Packet[AudioStream]] | None = None
        self._pending: Packet[AudioStream] | None = None
        self._audio_transcode: AudioResampler | None = None
        if audio_from is not None:
            self._setup_audio(Path(audio_from))

    # -- audio ---------------------------------------------------------------------------------------------
    def _setup_audio(self, src: Path) -> None:
        import av

        inp = av.open(str(src))
        if not inp.streams.audio:
            inp.close()
            return
        a = inp.streams.audio[0]
        self._audio_in = inp
        assert self._out is not None        # _start opened it
        name = a.codec_context.name
        ext = self.path.suffix.lower()
        copy_ok = {".mkv": None, ".mov": _MOV_AUDIO, ".mp4": _MP4_AUDIO, ".m4v": _MP4_AUDIO,
                   ".webm": ("opus", "vorbis")}.get(ext, ())
        if copy_ok is None or name in copy_ok:
            self._audio_out = self._out.add_stream_from_template(a)
        else:
            # The container cannot hold this codec as is (e.g. PCM in MP4): decode and re-encode.
            codec: Literal["libopus", "aac"] = "libopus" if ext == ".webm" else "aac"
            if codec not in av.codecs_available:
                warnings.warn(f"{src}: cannot copy its {name} audio into {ext} and no {codec} encoder is "
                              "available; the output has no audio", stacklevel=3)
                inp.close()
                self._audio_in = None
                return
            rate = 48000 if codec == "libopus" else (a.rate or 48000)
            audio_out = self._audio_out = self._out.add_stream(codec, rate=rate)
            # by channel count: a WAV's layout may be unnamed ("1 channels"), which the encoders refuse
            layout = "mono" if a.layout is not None and a.layout.nb_channels == 1 else "stereo"
            audio_out.layout = layout
            formats = audio_out.codec_context.codec.audio_formats
            assert formats, f"{codec} encoder lists no sample formats"
            fmt = formats[0].name
            self._audio_transcode = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        self._audio_packets = inp.demux(a)

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy source audio packets up to `seconds` (None = all) so audio and video stay interleaved."""
        if self._audio_packets is None:
            return
        assert self._out is not None and self._audio_out is not None    # set up together by _setup_audio
        while True:
            pkt = self._pending
            self._pending = None
            if pkt is None:
                pkt = next(self._audio_packets, None)
                if pkt is None:
                    self._audio_packets = None
                    return
            if pkt.dts is None and pkt.size == 0:
                continue
            t = float(pkt.pts * pkt.time_base) if pkt.pts is not None else 0.0
            if seconds is not None and t > seconds:
                self._pending = pkt
                return
            if self._audio_transcode is None:
                pkt.stream = self._audio_out
                self._out.mux(pkt)
            else:
                for fr in pkt.decode():
                    for rf in self._audio_transcode.resample(fr):
                        rf.pts = None
                        self._out.mux(self._audio_out.encode(rf))

    # -- video ---------------------------------------------------------------------------------------------
    def write(self, frames: torch.Tensor, pts: torch.Tensor | list[int] | None = None,
              time_base: Fraction | None = None) -> None:
        """Append frames [B,3,H,W] (or [3,H,W]) float RGB [0,1], any device; pts: [B] their presentation
        timestamps in ``time_base`` units (None: 1/fps apart)."""
        import av

        if frames.dim() == 3:
            frames = frames[None]
        if frames.dim() != 4 or frames.shape[1] != 3 or tuple(frames.shape[-2:]) != (self.height, self.width):
            raise InputError(f"VideoWriter: expected frames [B,3,{self.height},{self.width}], "
                             f"got {tuple(frames.shape)}")
        assert self._out is not None, "VideoWriter: write after close"
        stamps = self._stamps(int(frames.shape[0]), pts, time_base)
        # frames on a GPU for a yuv420p stream: converted there (device_yuv None = auto, True / False forces it)
        yuv = self._v.pix_fmt == "yuv420p" and (frames.device.type == "cuda" if self.device_yuv is None
                                                else self.device_yuv)
        try:
            for a, stamp in zip(to_yuv420p(frames) if yuv else to_uint8_hwc(frames), stamps):
                vf = av.VideoFrame.from_ndarray(a, format="yuv420p" if yuv else "rgb24")
                vf.pts = stamp
                vf.time_base = self._tb
                self._out.mux(self._v.encode(vf))
                self.frames_written += 1
                self._last_pts = stamp
            if self._last_pts is not None:
                self._mux_audio_until(float(self._last_pts * self._tb + 1 / self.fps))
        except (OSError, av.FFmpegError) as e:
            self.abort()
            raise OutputError(f"{self.path}: could not be written ({_reason(e)}); nothing was written") from e

    def _stamps(self, n: int, pts: torch.Tensor | list[int] | None, time_base: Fraction | None) -> list[int]:
        """The pts (in the stream's time base) of the next ``n`` frames: the given ones rescaled, else i/fps;
        strictly increasing."""
        if pts is None:
            want = [round(Fraction(self.frames_written + i) / self.fps / self._tb) for i in range(n)]
        else:
            values = pts.tolist() if isinstance(pts, torch.Tensor) else list(pts)
            if len(values) != n:
                raise InputError(f"VideoWriter: {len(values)} timestamp(s) for {n} frame(s)")
            if time_base is None or Fraction(time_base) <= 0:
                raise InputError(f"VideoWriter: timestamps need their time base (> 0), got {time_base!r}")
            scale = Fraction(time_base) / self._tb
            want = [int(v) if scale == 1 else round(int(v) * scale) for v in values]
        if self._shift is None:
            self._shift = -want[0] if want and want[0] < 0 else 0
        out = []
        last = self._last_pts
        for w in want:
            stamp = w + self._shift
            if last is not None and stamp <= last:
                stamp = last + 1
            out.append(stamp)
            last = stamp
        return out

    def close(self) -> Path:
        """Flush the encoder, copy the remaining audio and move the file into place."""
        import av

        if self._out is None:
            return self.path
        try:
            self._out.mux(self._v.encode(None))
            self._mux_audio_until(None)
            if self._audio_out is not None and self._audio_transcode is not None:
                for rf in self._audio_transcode.resample(None):
                    rf.pts = None
                    self._out.mux(self._audio_out.encode(rf))
                self._out.mux(self._audio_out.encode(None))
            self._out.close()
        except (OSError, av.FFmpegError) as e:
            self.abort()
            raise OutputError(f"{self.path}: could not be written ({_reason(e)}); nothing was written") from e
        self._out = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None
        self._verify()
        self._sign()
        return self._file.commit()   # never replaces a file that appeared meanwhile (unless overwrite)

    def _sign(self) -> None:
        """A C2PA manifest of the label, when a signing key is configured (``provenance.configure_c2pa``)."""
        if self._label is None:
            return
        from ..provenance.c2pa import sign_in_place

        try:
            sign_in_place(self._tmp, self._label, name=self.path.name)
        except BaseException:
            self.abort()
            raise

    def _verify(self) -> None:
        """The closed temporary file holds every frame written (read back by demuxing); else abort, InputError."""
        scan = scan_video_packets(self._tmp)
        if scan.good != self.frames_written or scan.corrupt or scan.error:
            self.abort()
            raise InputError(f"{self.path}: the written video reads back as {scan.good} frame(s) of the "
                             f"{self.frames_written} written ({scan.error or 'incomplete'}); nothing was written")

    def abort(self) -> None:
        """Drop the partial file (used on errors)."""
        if self._out is not None:
            try:
                self._out.close()
            except Exception:
                pass
            self._out = None
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None
        self._file.abort()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _reason(e: BaseException) -> str:
    """An OS or FFmpeg error's reason without the (temporary) file name it may carry."""
    return str(getattr(e, "strerror", None) or e)


def count_frames(path: str | os.PathLike) -> int:
    """Exact frame count by decoding every frame (slow but certain)."""
    with _open(Path(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def iter_image_folder(folder: str | os.PathLike, batch_size: int = 16, device: torch.device | str | None = None
                      ) -> Iterator[tuple[list[LoadedImage], torch.Tensor]]:
    """Images of a folder in natural name order, batched as ([LoadedImage...], [B,3,H,W]).

    A batch holds consecutive images of the same size only (a size change starts a new batch), so every image
    is yielded once and order is kept.
    """
    files = list_images(folder)
    if not files:
        raise InputError(f"{folder}: contains no images (expected {', '.join(('.png', '.jpg', '.tif', '...'))})")
    from .animation import is_animated

    batch: list[LoadedImage] = []
    for p in files:
        if is_animated(p):
            raise InputError(f"{p}: an animated image in a folder of frames (only its first frame would be used); "
                             "swap it on its own as --target, or move it out of the folder")
        img = read_image(p)
        if batch and (img.size != batch[0].size or len(batch) == batch_size):
            yield batch, _cat(batch, device)
            batch = []
        batch.append(img)
    if batch:
        yield batch, _cat(batch, device)


def _cat(batch: list[LoadedImage], device) -> torch.Tensor:
    t = torch.cat([b.image for b in batch])
    return t.to(device) if device is not None else t

