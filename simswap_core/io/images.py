"""Read and write still images as torch tensors, keeping what the user's file had.

Reading gives `[1,3,H,W]` float32 RGB in [0,1] plus what is needed to write the result back the same way:
alpha (`[1,1,H,W]` in [0,1], re-attached on save), grayscale, 8 or 16 bits per channel, EXIF orientation
applied. 16-bit PNG/TIFF files are decoded with PyAV (Pillow truncates 16-bit RGB to 8 bits) so no precision is
lost; they are written back as 16-bit. Writes are atomic (temporary file + rename) and never replace an existing
file unless `overwrite=True`.
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from .atomic import atomic_write

if TYPE_CHECKING:
    from ..provenance.label import ProvenanceLabel

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_ALPHA_EXTS = (".png", ".webp", ".tif", ".tiff")
_SIXTEEN_BIT_EXTS = (".png", ".tif", ".tiff")
_PIL_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
               ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class LoadedImage:
    """An image read from disk.

    image:     [1,3,H,W] float32 RGB in [0,1] (grayscale files are replicated to 3 channels).
    alpha:     [1,1,H,W] float32 in [0,1], or None when the file has no alpha.
    bit_depth: 8 or 16 (bits per channel of the file).
    grayscale: True when the file had one luminance channel (L, LA, I;16).
    path:      the file that was read.
    """

    image: torch.Tensor
    alpha: torch.Tensor | None
    bit_depth: int
    grayscale: bool
    path: Path

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def natural_key(name: str) -> list:
    """Sort key that orders 'frame2' before 'frame10' (digit runs compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside `folder`, sorted naturally by name (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of images")
    files = [p for p in folder.iterdir() if p.is_file() and is_image_path(p) and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


# ---------------------------------------------------------------------------------------------- reading

def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 25 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return 8
    return int(head[24])


def _file_bit_depth(im: Image.Image, path: Path) -> int:
    if im.format == "PNG":
        return 16 if _png_bit_depth(path) == 16 else 8
    if im.format == "TIFF":
        from PIL.TiffImagePlugin import TiffImageFile  # loaded already: Pillow opened a TIFF

        assert isinstance(im, TiffImageFile)
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 if max(bits) == 16 else 8
    return 16 if im.mode.startswith("I;16") else 8


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation (1..8) applied to an [H,W,C] array, same result as PIL.ImageOps.exif_transpose."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = np.transpose(a, (1, 0, 2))
    elif orientation == 6:
        a = np.rot90(a, -1)
    elif orientation == 7:
        a = np.rot90(np.transpose(a, (1, 0, 2)), 2)
    elif orientation == 8:
        a = np.rot90(a, 1)
    return np.ascontiguousarray(a)


def _read_16bit(path: Path) -> np.ndarray:
    """[H,W,C] uint16 (C = 1, 2, 3 or 4) decoded by PyAV/FFmpeg."""
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
    except (av.FFmpegError, StopIteration) as e:
        raise InputError(f"{path}: could not decode this 16-bit image ({e})") from e
    fmt = frame.format.name
    has_alpha = "a" in fmt.replace("gray", "")
    if fmt.startswith("gray") or fmt.startswith("ya"):
        target = "ya16le" if fmt.startswith("ya") else "gray16le"
        ch = 2 if fmt.startswith("ya") else 1
    else:
        target, ch = ("rgba64le", 4) if has_alpha else ("rgb48le", 3)
    if fmt != target:
        frame = frame.reformat(format=target)
    a = frame.to_ndarray()
    if a.dtype != np.uint16:
        raise InputError(f"{path}: expected 16-bit samples, FFmpeg gave {a.dtype} ({fmt})")
    return a.reshape(a.shape[0], a.shape[1], ch)


def read_image(path: str | os.PathLike, device: torch.device | str | None = None) -> LoadedImage:
    """Read an image file (PNG, JPEG, WebP, BMP, TIFF; 8 or 16 bits; RGB, RGBA, L, LA, palette).

    Returns image [1,3,H,W] float32 RGB [0,1] on `device`, alpha [1,1,H,W] or None. EXIF orientation is applied.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: image file not found")
    if not path.is_file():
        raise InputError(f"{path}: expected an image file, found a folder or special file")
    try:
        im: Image.Image = Image.open(path)
        im.load()
    except Exception as e:
        raise InputError(f"{path}: not a readable image (expected PNG, JPEG, WebP, BMP or TIFF): {e}") from e
    n_frames = getattr(im, "n_frames", 1)
    if n_frames > 1:
        warnings.warn(f"{path}: has {n_frames} frames; only the first is used", stacklevel=2)
    bit_depth = _file_bit_depth(im, path)
    orientation = _orientation(im)
    if bit_depth == 16:
        a = _read_16bit(path)
        scale = 65535.0
    else:
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode in ("1", "I", "F", "I;16", "I;16B", "I;16L"):
            im = im.convert("L")
        elif mode == "PA":
            im = im.convert("RGBA")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        elif mode == "RGBa":
            im = im.convert("RGBA")
        elif mode == "La":
            im = im.convert("LA")
        a = np.asarray(im)
        if a.ndim == 2:
            a = a[:, :, None]
        scale = 255.0
    a = _apply_orientation(a, orientation)
    ch = a.shape[2]
    grayscale = ch in (1, 2)
    t = torch.from_numpy(a.astype(np.float32) / np.float32(scale)).permute(2, 0, 1).unsqueeze(0)
    alpha = None
    if ch in (2, 4):
        alpha = t[:, -1:].contiguous()
        t = t[:, :-1]
    if grayscale:
        t = t.expand(1, 3, -1, -1)
    image = t.contiguous()
    if device is not None:
        image = image.to(device)
        alpha = alpha.to(device) if alpha is not None else None
    return LoadedImage(image=image, alpha=alpha, bit_depth=bit_depth, grayscale=grayscale, path=path)


# ---------------------------------------------------------------------------------------------- writing

def to_gray(image: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] RGB -> [N,1,H,W] luma (ITU-R 601, the weights Pillow uses). Equal channels stay exact."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * w).sum(1, keepdim=True)


def _quantize(t: torch.Tensor, bit_depth: int) -> np.ndarray:
    """[C,H,W] float [0,1] -> [H,W,C] uint8/uint16, rounded to nearest."""
    top = 65535.0 if bit_depth == 16 else 255.0
    q = (t.detach().float().clamp(0, 1) * top).round().to(torch.int32)
    a = q.permute(1, 2, 0).cpu().numpy()
    return a.astype(np.uint16 if bit_depth == 16 else np.uint8)


def _encode_16bit(a: np.ndarray, ext: str) -> bytes:
    import av

    ch = a.shape[2]
    codec: Literal["png", "tiff"] = "png" if ext == ".png" else "tiff"
    end = "be" if codec == "png" else "le"
    fmt = {1: f"gray16{end}", 2: f"ya16{end}", 3: f"rgb48{end}", 4: f"rgba64{end}"}[ch]
    if ch == 2:  # FFmpeg cannot take gray+alpha 16-bit from numpy: store as RGBA (same values, kept precision)
        a, ch, fmt = np.concatenate([np.repeat(a[..., :1], 3, 2), a[..., 1:]], 2), 4, f"rgba64{end}"
    arr = a[..., 0] if ch == 1 else a
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr.astype(np.uint16)), format=fmt)
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = a.shape[1], a.shape[0], fmt
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def write_image(path: str | os.PathLike, image: torch.Tensor, *, alpha: torch.Tensor | None = None,
                bit_depth: int = 8, grayscale: bool = False, overwrite: bool = False,
                quality: int = 95, label: ProvenanceLabel | None = None,
                png_text: Mapping[str, str] | None = None) -> Path:
    """Write one image atomically.

    image: [1,3,H,W] or [3,H,W] float RGB in [0,1] (any device). alpha: [1,1,H,W]/[1,H,W]/[H,W] in [0,1] or None;
    re-attached when the format can hold it (PNG, WebP, TIFF), otherwise dropped with a warning.
    bit_depth 16 is written for PNG/TIFF (other formats fall back to 8 with a warning). grayscale writes one
    luminance channel. Raises InputError if `path` exists and overwrite is False.
    label: the synthetic-media label to embed (``provenance``: XMP + PNG text / EXIF, and a C2PA manifest when a
    signing key is configured); None writes none. A format that cannot hold it (BMP, 16-bit TIFF) gets a warning.
    png_text: extra tEXt chunks of an 8-bit PNG (e.g. ComfyUI's prompt and workflow); InputError otherwise.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _PIL_FORMAT:
        raise InputError(f"{path}: unsupported output image extension {ext!r}; expected one of "
                         f"{', '.join(sorted(_PIL_FORMAT))}")
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise InputError(f"write_image: expected one image [1,3,H,W], got {tuple(image.shape)}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise InputError(f"write_image: expected [3,H,W] RGB, got {tuple(image.shape)}")
    if bit_depth not in (8, 16):
        raise InputError(f"write_image: bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and ext not in _SIXTEEN_BIT_EXTS:
        warnings.warn(f"{path}: {ext} cannot hold 16-bit samples; writing 8-bit", stacklevel=2)
        bit_depth = 8
    if alpha is not None and ext not in _ALPHA_EXTS:
        warnings.warn(f"{path}: {ext} has no alpha channel; the alpha of the input is dropped", stacklevel=2)
        alpha = None
    chans = to_gray(image[None])[0] if grayscale else image
    if alpha is not None:
        alpha = alpha.reshape(1, *image.shape[-2:]).to(chans.device, chans.dtype)
        chans = torch.cat([chans, alpha], 0)
    if png_text and (ext != ".png" or bit_depth != 8):
        raise InputError(f"{path}: extra text chunks (png_text) need an 8-bit .png output")
    a = _quantize(chans, bit_depth)
    from ..provenance.label import embedded_label

    mark = embedded_label(label)
    fmt = _PIL_FORMAT[ext]
    if mark is not None and (fmt == "BMP" or (bit_depth == 16 and fmt == "TIFF")):
        warnings.warn(f"{path}: {'16-bit TIFF' if fmt == 'TIFF' else fmt} output cannot carry the synthetic-media "
                      "label (no metadata written); use PNG, JPEG, WebP or 8-bit TIFF for a labelled file",
                      stacklevel=2)
        mark = None

    def write_to(tmp: Path) -> None:
        from ..provenance import images as labels

        if bit_depth == 16:
            data = _encode_16bit(a, ext)
            tmp.write_bytes(labels.label_png_bytes(data, mark) if mark is not None and fmt == "PNG" else data)
            _sign(tmp, mark, path)
            return
        ch = a.shape[2]
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[ch]
        if ext == ".webp" and mode == "LA":
            im = Image.fromarray(np.concatenate([np.repeat(a[..., :1], 3, 2), a[..., 1:]], 2), "RGBA")
        else:
            im = Image.fromarray(a[..., 0] if ch == 1 else a, mode)
        kwargs: dict[str, object] = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        if fmt == "JPEG":
            kwargs["subsampling"] = 0
        kwargs.update(labels.save_options(mark, fmt))
        if png_text:
            from PIL.PngImagePlugin import PngInfo

            info = kwargs.get("pnginfo")
            info = info if isinstance(info, PngInfo) else PngInfo()
            for key, value in png_text.items():
                info.add_text(str(key), str(value))
            kwargs["pnginfo"] = info
        im.save(tmp, format=fmt, **kwargs)
        _sign(tmp, mark, path)

    atomic_write(path, write_to, overwrite=overwrite)
    return path


def _sign(tmp: Path, label: ProvenanceLabel | None, path: Path) -> None:
    """A C2PA manifest of ``label`` on the written temporary file, when a signing key is configured."""
    if label is not None:
        from ..provenance.c2pa import sign_in_place

        sign_in_place(tmp, label, name=path.name)


def write_like(path: str | os.PathLike, image: torch.Tensor, like: LoadedImage, *, overwrite: bool = False,
               label: ProvenanceLabel | None = None) -> Path:
    """Write `image` [1,3,H,W] with the alpha, bit depth and grayscale-ness of the file `like` was read from
    (label: as ``write_image``)."""
    return write_image(path, image, alpha=like.alpha, bit_depth=like.bit_depth, grayscale=like.grayscale,
                       overwrite=overwrite, label=label)


def image_to_uint8(image: torch.Tensor) -> np.ndarray:
    """[1,3,H,W] or [3,H,W] float RGB [0,1] -> [H,W,3] uint8 numpy (for previews)."""
    if image.dim() == 4:
        image = image[0]
    return _quantize(image, 8)


def uint8_to_image(a: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """[H,W,3] (or [H,W]) uint8 numpy -> [1,3,H,W] float32 RGB [0,1]."""
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, 2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.dtype != np.uint8:
        raise InputError(f"expected an [H,W,3] uint8 array, got {a.shape} {a.dtype}")
    t = torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1)[None].float().div_(255.0)
    return t.to(device) if device is not None else t
