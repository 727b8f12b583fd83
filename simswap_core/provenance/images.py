"""The label in still and animated images, as Pillow save options (and PNG chunks for bytes made elsewhere).

    PNG / APNG   iTXt "XML:com.adobe.xmp" (the XMP packet), tEXt "Description" and "Software", eXIf
                 (ImageDescription, Software)
    JPEG         APP1 Exif (ImageDescription, Software) + APP1 XMP
    WebP         EXIF and XMP chunks (still and animated)
    TIFF         tags ImageDescription (270), Software (305), XMLPacket (700)
    GIF          a comment extension: the human-readable line, then the XMP packet (Pillow writes no GIF XMP)
    BMP          no metadata at all: ``NO_METADATA`` formats get a warning, never a silent unlabelled file
"""
from __future__ import annotations

import struct
import zlib
from typing import Any

from PIL import Image, PngImagePlugin

from .label import ProvenanceLabel
from .xmp import to_xmp

LABEL_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "GIF")
NO_METADATA = ("BMP",)
PNG_XMP_KEY = "XML:com.adobe.xmp"
_EXIF_DESCRIPTION, _EXIF_SOFTWARE = 0x010E, 0x0131


def _exif(label: ProvenanceLabel) -> Image.Exif:
    exif = Image.Exif()
    exif[_EXIF_DESCRIPTION] = label.text()
    exif[_EXIF_SOFTWARE] = label.software()
    return exif


def png_info(label: ProvenanceLabel) -> PngImagePlugin.PngInfo:
    """PNG text chunks: iTXt XMP, tEXt Description and Software."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt(PNG_XMP_KEY, to_xmp(label), zip=False)
    info.add_text("Description", label.text())
    info.add_text("Software", label.software())
    return info


def save_options(label: ProvenanceLabel | None, fmt: str) -> dict[str, Any]:
    """Extra ``Image.save`` options that embed ``label`` in a file of Pillow format ``fmt`` ({} for None or a
    format that holds no metadata)."""
    if label is None:
        return {}
    xmp = to_xmp(label).encode("utf-8")
    if fmt == "PNG":
        return {"pnginfo": png_info(label), "exif": _exif(label)}
    if fmt in ("JPEG", "WEBP"):
        return {"exif": _exif(label), "xmp": xmp}
    if fmt == "TIFF":
        return {"tiffinfo": {_EXIF_DESCRIPTION: label.text(), _EXIF_SOFTWARE: label.software(), 700: xmp}}
    if fmt == "GIF":
        return {"comment": label.text() + "\n" + to_xmp(label)}
    return {}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def label_png_bytes(data: bytes, label: ProvenanceLabel) -> bytes:
    """A PNG file's bytes (e.g. a 16-bit PNG encoded by FFmpeg) with the label's iTXt / tEXt chunks inserted
    right after IHDR (before any image data). ValueError if ``data`` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    end_ihdr = 8 + 12 + struct.unpack(">I", data[8:12])[0]
    xmp = to_xmp(label).encode("utf-8")
    chunks = (_chunk(b"iTXt", PNG_XMP_KEY.encode("latin-1") + b"\x00\x00\x00\x00\x00" + xmp)
              + _chunk(b"tEXt", b"Description\x00" + label.text().encode("latin-1", "replace"))
              + _chunk(b"tEXt", b"Software\x00" + label.software().encode("latin-1", "replace")))
    return data[:end_ihdr] + chunks + data[end_ihdr:]
