"""Animated images (GIF, animated WebP, APNG) as frame sequences: every frame with its duration, read and
written with Pillow.

    info = probe_animation("clip.gif")                 # frame count, per-frame durations (ms), loop, size
    for frames in iter_animation_frames("clip.gif", 8): ...   # [B,3,H,W] float32 RGB [0,1]
    write_animation("out.webp", frames_uint8, info.durations_ms, loop=info.loop)   # atomic, like write_image

Frames are composited by Pillow (disposal and partial frames applied) and converted to RGB; transparency of an
animated input is not kept (the swap works on RGB), which ``probe_animation`` reports in ``has_alpha``.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageSequence

from ..errors import InputError
from .atomic import atomic_write

if TYPE_CHECKING:
    from ..provenance.label import ProvenanceLabel

ANIMATED_EXTS = (".gif", ".webp", ".png", ".apng")
_FORMATS = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG", ".apng": "PNG"}
DEFAULT_DURATION_MS = 100    # a frame without a duration (GIF allows 0) is shown for 1/10 s, as browsers do


@dataclass
class AnimationInfo:
    """path; n_frames; durations_ms (one per frame, > 0); loop (0 = forever); size (H, W); format (Pillow's);
    has_alpha (a frame has transparent pixels, dropped on reading)."""

    path: Path
    n_frames: int
    durations_ms: list[int]
    loop: int
    size: tuple[int, int]
    format: str
    has_alpha: bool

    @property
    def fps(self) -> Fraction:
        """The average frame rate (frames / total duration), for writing the frames as a video."""
        return Fraction(1000 * self.n_frames, sum(self.durations_ms)).limit_denominator(1001)


def is_animated(path: str | os.PathLike) -> bool:
    """True when ``path`` has an animated-image extension and Pillow reads more than one frame from it."""
    p = Path(path)
    if p.suffix.lower() not in ANIMATED_EXTS or not p.is_file():
        return False
    try:
        with Image.open(p) as im:
            return int(getattr(im, "n_frames", 1)) > 1
    except Exception:
        return False


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: animated image not found")
    try:
        return Image.open(path)
    except Exception as e:
        raise InputError(f"{path}: not a readable animated image (expected GIF, WebP or APNG): {e}") from e


def probe_animation(path: str | os.PathLike) -> AnimationInfo:
    """Frame count and per-frame durations (every frame is decoded once, so a damaged one is found here)."""
    path = Path(path)
    with _open(path) as im:
        durations: list[int] = []
        has_alpha = False
        try:
            for frame in ImageSequence.Iterator(im):
                frame.load()                     # WebP sets a frame's duration when it is loaded
                d = frame.info.get("duration", 0)
                durations.append(int(d) if isinstance(d, (int, float)) and d > 0 else DEFAULT_DURATION_MS)
                if not has_alpha and (frame.mode in ("RGBA", "LA", "PA", "P") or "transparency" in frame.info):
                    has_alpha = frame.convert("RGBA").getchannel("A").getextrema()[0] < 255   # type: ignore[operator]
        except Exception as e:
            raise InputError(f"{path}: damaged animated image: frame {len(durations) + 1} could not be read "
                             f"({e}); {len(durations)} frame(s) read before it; nothing was written") from None
        loop = im.info.get("loop", 0)
        return AnimationInfo(path, len(durations), durations, int(loop) if isinstance(loop, int) else 0,
                             (im.height, im.width), str(im.format), has_alpha)


def iter_animation_frames(path: str | os.PathLike, batch_size: int = 16,
                          device: torch.device | str | None = None) -> Iterator[torch.Tensor]:
    """Every frame of an animated image, in order, as [B,3,H,W] float32 RGB [0,1] (B <= batch_size).

    A frame that cannot be decoded raises InputError naming the file and the frames read before it.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    path = Path(path)
    buf: list[np.ndarray] = []
    read = 0
    with _open(path) as im:
        frames = ImageSequence.Iterator(im)
        while True:
            try:
                frame = next(frames, None)
                if frame is None:
                    break
                buf.append(np.asarray(frame.convert("RGB")))
            except Exception as e:
                raise InputError(f"{path}: damaged animated image: frame {read + 1} could not be decoded ({e}); "
                                 f"{read} frame(s) decoded before it") from None
            read += 1
            if len(buf) == batch_size:
                yield _stack(buf, device)
                buf = []
    if buf:
        yield _stack(buf, device)


def _stack(arrays: list[np.ndarray], device: torch.device | str | None) -> torch.Tensor:
    t = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    return t.to(device) if device is not None else t


def write_animation(path: str | os.PathLike, frames: Sequence[np.ndarray], durations_ms: Sequence[int], *,
                    loop: int = 0, overwrite: bool = False, label: ProvenanceLabel | None = None) -> Path:
    """Write [H,W,3] uint8 frames as an animated GIF / WebP / APNG (by extension) with per-frame durations.

    Atomic (temporary file, then rename; ``overwrite`` as ``write_image``). InputError for another extension,
    no frames, or a durations list of another length. label: the synthetic-media label (as ``write_image``:
    XMP + text chunks in APNG / WebP, a comment with the XMP packet in GIF; C2PA when configured and the format
    can be signed).
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: an animated image must be .gif, .webp or .png (APNG), got {path.suffix!r}")
    if not frames:
        raise InputError(f"{path}: no frames to write")
    if len(durations_ms) != len(frames):
        raise InputError(f"{path}: {len(frames)} frame(s) but {len(durations_ms)} duration(s)")
    images = [Image.fromarray(np.ascontiguousarray(a), "RGB") for a in frames]
    options: dict[str, object] = {"save_all": True, "append_images": images[1:],
                                  "duration": [int(d) for d in durations_ms], "loop": int(loop)}
    if fmt == "WEBP":
        options["lossless"] = True
    if fmt == "GIF":
        options["disposal"] = 1   # frames are full, opaque: keep the previous one under it (no flicker)

    from ..provenance.label import embedded_label

    mark = embedded_label(label)

    def save(tmp: Path) -> None:
        from ..provenance.images import save_options

        images[0].save(tmp, format=fmt, **options, **save_options(mark, fmt))
        if mark is not None:
            from ..provenance.c2pa import sign_in_place

            sign_in_place(tmp, mark, name=path.name)

    return atomic_write(path, save, overwrite=overwrite)
