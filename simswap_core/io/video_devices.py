"""Where a video is decoded and encoded: NVDEC (torchcodec) / NVENC (PyAV) on a GPU, PyAV and x264 on the CPU.

    caps = probe_capabilities(encoders=("h264_nvenc",))          # what this machine can do (cached)
    dec = choose_decoder("auto", torch.device("cuda"), caps)     # DecodeChoice: backend, device, why
    enc = choose_encoder("auto", torch.device("cuda"), 1280, 720, ".mp4", caps)   # EncodeChoice: codec, why
    print(dec.message(), enc.message())

The choice is plain logic over a ``VideoCapabilities`` record, so tests inject any machine (a GPU with or without
torchcodec, NVENC present or not) on the CPU. "auto" never fails: it takes the GPU path only when the frames are
processed on a CUDA device and the GPU path is usable, otherwise the CPU path, and the choice's ``reason`` says
why (the CLI prints it; ``VideoSource.decode_choice`` / ``VideoSink.encode_choice`` keep it). An explicit request
("cuda", "h264_nvenc") that cannot be met raises ``DependencyError`` / ``InputError`` naming what is missing.

Decoding on the GPU: torchcodec's ``VideoDecoder(device="cuda")`` (NVDEC) gives uint8 frames already on the
device; its colour conversion is NVDEC/NPP's, not swscale's, so frames may differ from PyAV's by a few levels.
torchcodec needs a build matching torch (torchcodec >= 0.14 for torch >= 2.11) and FFmpeg's shared libraries;
a torchcodec that is not installed or does not load is a reason, never an error, under "auto".
Encoding on the GPU: PyAV's bundled FFmpeg has ``h264_nvenc`` / ``hevc_nvenc``; whether they open is probed by
opening a small encoder (needs an NVIDIA driver with NVENC). Frames still reach PyAV as host RGB (the encoder
uploads them); NVENC takes the encoding, the heaviest CPU work of a video run, off the CPU.
"""
from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import DependencyError, InputError

log = logging.getLogger("simswap.video")

GPU_VIDEO_PIP = "pip install 'torchcodec>=0.14'  (or: pip install 'comfyui-simswap[gpu-video]'; needs FFmpeg's " \
                "shared libraries and a torchcodec build matching your torch)"
NVENC_ENCODERS = ("h264_nvenc", "hevc_nvenc")
ENCODER_ALIASES = {"x264": "libx264", "h264": "libx264", "nvenc": "h264_nvenc", "h264_nvenc": "h264_nvenc",
                   "hevc_nvenc": "hevc_nvenc", "libx264": "libx264", "auto": "auto"}
# containers that hold H.264 / HEVC (an NVENC stream); others (.webm, ...) keep the writer's own default
_H26X_CONTAINERS = (".mp4", ".m4v", ".mov", ".mkv", ".ts")


@dataclass(frozen=True)
class VideoCapabilities:
    """What this machine can do for video (a probe's result, or a test's invention).

    cuda: torch sees a CUDA device. torchcodec: its version when it imports, else None; torchcodec_error: why it
    does not (not installed, library failed to load). torchcodec_cuda: the torchcodec build decodes on CUDA (not a
    ``+cpu`` build). encoders: for each probed hardware encoder, None when it opened, else why not.
    """

    cuda: bool
    torchcodec: str | None = None
    torchcodec_error: str | None = "not installed"
    torchcodec_cuda: bool = False
    encoders: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class DecodeChoice:
    """backend "pyav" (frames decoded on the CPU, then moved to ``device``) or "torchcodec" (decoded on ``device``
    by NVDEC); reason: why, in words."""

    backend: Literal["pyav", "torchcodec"]
    device: torch.device
    reason: str

    def message(self) -> str:
        where = f"on {self.device} (NVDEC through torchcodec)" if self.backend == "torchcodec" else \
            "on the CPU (PyAV)"
        return f"decode: {where}: {self.reason}"


@dataclass(frozen=True)
class EncodeChoice:
    """codec: the FFmpeg encoder name given to ``VideoWriter`` (libx264, h264_nvenc, hevc_nvenc); reason: why."""

    codec: str
    reason: str

    @property
    def hardware(self) -> bool:
        return self.codec.endswith("_nvenc")

    def message(self) -> str:
        where = "on the GPU (NVENC)" if self.hardware else "on the CPU"
        return f"encode: {self.codec} {where}: {self.reason}"


# ------------------------------------------------------------------------------------------ probes

def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def probe_torchcodec() -> tuple[str | None, str | None, bool]:
    """(version or None, why it is not usable or None, CUDA build). Importing torchcodec loads FFmpeg's shared
    libraries: any failure there is a reason, not an error."""
    import importlib.util

    if importlib.util.find_spec("torchcodec") is None:
        return None, "not installed", False
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the decoder library)
    except Exception as e:          # OSError / RuntimeError from a library that does not load
        return None, f"installed but does not load ({_first_line(e)})", False
    version = str(getattr(torchcodec, "__version__", "?"))
    return version, None, "+cpu" not in version


def probe_encoder(name: str) -> str | None:
    """None when PyAV's FFmpeg has encoder ``name`` and it opens on this machine (a 256x256 yuv420p encoder is
    opened and closed: needs the NVIDIA driver for NVENC), else why not."""
    import av

    if name not in av.codecs_available:
        return f"{name} is not compiled into this PyAV/FFmpeg build"
    try:
        ctx: Any = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 256, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.open()             # freed with the object
    except Exception as e:
        return f"{name} is in PyAV's FFmpeg but does not open here (no NVIDIA driver/GPU with NVENC?: " \
               f"{_first_line(e)})"
    return None


@functools.lru_cache(maxsize=8)
def _probe(encoders: tuple[str, ...]) -> VideoCapabilities:
    version, error, tc_cuda = probe_torchcodec()
    return VideoCapabilities(torch.cuda.is_available(), version, error, tc_cuda,
                             {name: probe_encoder(name) for name in encoders})


def probe_capabilities(*, encoders: Sequence[str] = ()) -> VideoCapabilities:
    """This machine's capabilities (cached per set of encoders probed)."""
    return _probe(tuple(sorted(set(encoders))))


# ------------------------------------------------------------------------------------------ choices

def parse_decode_device(request: str | torch.device | None) -> str:
    """--decode-device / decode_device: "auto" (default), "cpu" or "cuda[:N]"; InputError otherwise."""
    text = "auto" if request is None else str(request).strip().lower()
    if text in ("auto", "cpu") or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise InputError(f"decode_device: expected auto, cpu or cuda[:N], got {request!r}")


def parse_encoder(request: str | None) -> str:
    """--encoder / encoder: auto (default), libx264 (x264), h264_nvenc (nvenc), hevc_nvenc; InputError otherwise."""
    text = "auto" if request is None else str(request).strip().lower()
    if text not in ENCODER_ALIASES:
        raise InputError(f"encoder: expected auto, libx264 (x264), h264_nvenc (nvenc) or hevc_nvenc, got "
                         f"{request!r}")
    return ENCODER_ALIASES[text]


def choose_decoder(request: str | torch.device | None, frames_device: torch.device | str | None,
                   caps: VideoCapabilities | None = None) -> DecodeChoice:
    """Where to decode a video whose frames are processed on ``frames_device``.

    request "auto": torchcodec (NVDEC) on the frames' CUDA device when torch sees CUDA and a CUDA build of
    torchcodec loads, else PyAV on the CPU (the reason names what was missing). "cpu": PyAV. "cuda[:N]": NVDEC
    or DependencyError / InputError naming what is missing. caps: injected capabilities (default: probed).
    """
    want = parse_decode_device(request)
    dev = torch.device(frames_device) if frames_device is not None else torch.device("cpu")
    if want == "cpu":
        return DecodeChoice("pyav", torch.device("cpu"), "asked for (decode device cpu)")
    if want == "auto" and dev.type != "cuda":
        return DecodeChoice("pyav", torch.device("cpu"), f"the frames are processed on {dev.type}")
    target = dev if want == "auto" else torch.device(want)
    caps = caps if caps is not None else probe_capabilities()
    missing = None
    if not caps.cuda:
        missing = "torch sees no CUDA device"
    elif caps.torchcodec is None:
        missing = f"torchcodec is {caps.torchcodec_error or 'not usable'}; for NVDEC: {GPU_VIDEO_PIP}"
    elif not caps.torchcodec_cuda:
        missing = f"torchcodec {caps.torchcodec} is a CPU-only build; for NVDEC: {GPU_VIDEO_PIP}"
    if missing is None:
        return DecodeChoice("torchcodec", target, f"torchcodec {caps.torchcodec} with CUDA; frames stay on the GPU")
    if want != "auto":
        err = InputError if not caps.cuda else DependencyError
        raise err(f"decode_device {want}: cannot decode on the GPU: {missing}")
    return DecodeChoice("pyav", torch.device("cpu"), f"not on the GPU: {missing}")


def choose_encoder(request: str | None, frames_device: torch.device | str | None, width: int, height: int,
                   suffix: str, caps: VideoCapabilities | None = None) -> EncodeChoice:
    """The encoder of a ``width`` x ``height`` video written to a file ending in ``suffix`` (".mp4").

    request "auto": h264_nvenc when the frames are on a CUDA device, the container holds H.264, the size is even
    and NVENC opens here; else libx264 (the reason says which condition failed). "libx264": x264. "h264_nvenc" /
    "hevc_nvenc": that encoder or InputError / DependencyError naming what is missing.
    """
    want = parse_encoder(request)
    dev = torch.device(frames_device) if frames_device is not None else torch.device("cpu")
    ext = suffix.lower()
    if want == "libx264":
        return EncodeChoice("libx264", "asked for")
    name = "h264_nvenc" if want == "auto" else want
    if want == "auto" and dev.type != "cuda":
        return EncodeChoice("libx264", f"the frames are processed on {dev.type}")
    problem = None
    if ext not in _H26X_CONTAINERS:
        problem = f"a {ext or 'extensionless'} file does not hold {name}'s stream (use {', '.join(_H26X_CONTAINERS)})"
    elif width % 2 or height % 2:
        problem = f"the frames are {width}x{height}: NVENC's yuv420p needs even sizes"
    else:
        caps = caps if caps is not None else probe_capabilities(encoders=(name,))
        problem = caps.encoders[name] if name in caps.encoders else probe_encoder(name)
    if problem is None:
        return EncodeChoice(name, "NVENC opened on this machine; the CPU is left to decoding and compositing")
    if want != "auto":
        err = InputError if ext not in _H26X_CONTAINERS or width % 2 or height % 2 else DependencyError
        raise err(f"encoder {want}: cannot use it: {problem}")
    return EncodeChoice("libx264", f"not NVENC: {problem}")


# ------------------------------------------------------------------------------------------ NVDEC reading

def open_torchcodec(path: str | os.PathLike, device: torch.device) -> Any:
    """torchcodec's VideoDecoder on ``device`` (NCHW uint8, exact seek mode: every frame indexed once)."""
    from torchcodec.decoders import VideoDecoder

    return VideoDecoder(str(path), device=str(device), dimension_order="NCHW", seek_mode="exact")


def cpu_fallback_note(decoder: Any) -> str | None:
    """torchcodec's own note when its CUDA decoder fell back to the CPU (a codec NVDEC lacks), else None."""
    status = getattr(decoder, "cpu_fallback", None)
    return str(status) if status is not None and bool(status) else None


def iter_torchcodec_frames(path: str | os.PathLike, batch_size: int, device: torch.device,
                           time_base: Fraction | None, *, allow_partial: bool = False, decoder: Any = None
                           ) -> Iterator[tuple[torch.Tensor, list[int | None]]]:
    """Every frame of the first video stream in presentation order, decoded by torchcodec on ``device``:
    ([B,3,H,W] float32 RGB [0,1] on ``device``, their pts in ``time_base`` units (None when time_base is
    unknown)). A frame that does not decode raises InputError naming the file and the frames decoded before it
    (with ``allow_partial``: a warning, the frames before it are kept)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    path = Path(path)
    dec = decoder if decoder is not None else open_torchcodec(path, device)
    total = len(dec)
    start = 0
    while start < total:
        stop = min(start + batch_size, total)
        try:
            batch = dec.get_frames_in_range(start, stop)
        except Exception as e:          # torchcodec raises RuntimeError for damaged data
            from .video import damaged_video

            damaged_video(f"{path}: damaged or truncated video: frames {start + 1}..{stop} could not be decoded "
                          f"({_first_line(e)}); {start} frame(s) decoded before them", allow_partial)
            return
        frames = batch.data.to(device, non_blocking=True).float().div_(255.0)
        seconds = batch.pts_seconds.tolist()     # torchcodec keeps pts on the CPU: no device sync
        if time_base is not None and time_base > 0:
            unit = float(time_base)
            stamps: list[int | None] = [int(round(s / unit)) for s in seconds]
        else:
            stamps = [None] * len(seconds)
        yield frames, stamps
        start = stop


def describe(choices: Sequence[DecodeChoice | EncodeChoice | None]) -> list[str]:
    """The one-line messages of the choices made (for the CLI's output and the log)."""
    lines = [c.message() for c in choices if c is not None]
    for line in lines:
        log.info(line)
    return lines


def open_decoder(choice: DecodeChoice, path: str | os.PathLike, *, explicit: bool) -> tuple[DecodeChoice, Any]:
    """Open the torchcodec decoder of a "torchcodec" choice: (the choice, updated with what happened, and the
    decoder; None for PyAV). When it does not open (a codec NVDEC lacks, a broken install): ``explicit`` (the
    GPU was asked for) raises InputError naming the file and the reason, "auto" warns and falls back to PyAV.
    When torchcodec itself fell back to decoding on the CPU, its note is added to the reason."""
    if choice.backend != "torchcodec":
        return choice, None
    try:
        decoder = open_torchcodec(path, choice.device)
    except Exception as e:
        why = f"torchcodec could not open {Path(path).name} on {choice.device} ({_first_line(e)})"
        if explicit:
            raise InputError(f"{path}: decode_device {choice.device}: {why}") from None
        warnings.warn(f"{path}: {why}; decoding on the CPU with PyAV instead", stacklevel=3)
        return DecodeChoice("pyav", torch.device("cpu"), f"not on the GPU: {why}"), None
    note = cpu_fallback_note(decoder)
    if note is not None:
        choice = DecodeChoice(choice.backend, choice.device,
                              f"{choice.reason}; but torchcodec decodes this file on the CPU: {note}")
    return choice, decoder
