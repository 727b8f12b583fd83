"""Read the label back from any output: images with Pillow, videos with PyAV, C2PA with c2pa-python.

``read_provenance(path)`` gives a ``ProvenanceReport``: the label (parsed from the XMP packet), every place it was
found (``carriers``), the human-readable fields a viewer shows, and the C2PA manifest when there is one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .label import ProvenanceLabel
from .xmp import parse_xmp

_VIDEO_EXTS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mpg", ".mpeg")


@dataclass
class ProvenanceReport:
    """What a file says about itself.

    label:     the label parsed from the first XMP packet that holds one (None: unlabelled)
    carriers:  where a label was found, e.g. ["XMP (PNG iTXt)", "PNG tEXt Description", "EXIF ImageDescription"]
    texts:     the human-readable fields (name -> text) a viewer shows
    c2pa:      the active C2PA manifest with its validation state, or None
    notes:     what could not be checked (e.g. c2pa-python not installed)
    """

    path: Path
    label: ProvenanceLabel | None = None
    carriers: list[str] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    c2pa: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def labelled(self) -> bool:
        """True when the file says it is AI-generated (an XMP label or a C2PA manifest)."""
        return self.label is not None or self.c2pa is not None

    def _xmp(self, data: Any, where: str) -> None:
        if data is None:
            return
        found = parse_xmp(data if isinstance(data, (bytes, str)) else bytes(data))
        if found is not None:
            self.carriers.append(where)
            if self.label is None:
                self.label = found

    def _text(self, name: str, value: Any) -> None:
        if value is None:
            return
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if "AI-generated" in text:
            self.carriers.append(name)
        self.texts[name] = text.split("\n", 1)[0]


def _read_image(report: ProvenanceReport) -> None:
    from PIL import Image

    try:
        with Image.open(report.path) as im:
            fmt = str(im.format)
            info = dict(im.info)
            exif = im.getexif()
    except Exception as e:
        raise InputError(f"{report.path}: not a readable image or video ({e})") from None
    report._xmp(info.get("xmp"), f"XMP ({fmt})")
    if fmt == "PNG":
        for key in ("Description", "Software"):
            report._text(f"PNG tEXt {key}", info.get(key))
    if fmt == "GIF":
        comment = info.get("comment")
        report._xmp(comment, "XMP (GIF comment)")
        report._text("GIF comment", comment)
    report._text("EXIF ImageDescription", exif.get(0x010E))
    report._text("EXIF Software", exif.get(0x0131))


def _read_video(report: ProvenanceReport) -> None:
    import av

    try:
        with av.open(str(report.path)) as c:
            tags = {str(k).lower(): str(v) for k, v in c.metadata.items()}
    except av.FFmpegError as e:
        raise InputError(f"{report.path}: not a readable video ({e})") from None
    report._xmp(tags.get("xmp"), "XMP (container tag)")
    for key in ("comment", "description"):
        report._text(f"container {key}", tags.get(key))


def read_provenance(path: str | os.PathLike) -> ProvenanceReport:
    """The label of an image (PNG, JPEG, WebP, TIFF, GIF) or video (MP4, MOV, MKV, WebM, ...) file."""
    from .c2pa import read_manifest, signable

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file")
    report = ProvenanceReport(path=p)
    if p.suffix.lower() in _VIDEO_EXTS:
        _read_video(report)
    else:
        _read_image(report)
    if signable(p):
        try:
            import c2pa  # noqa: F401
        except ImportError:
            report.notes.append("C2PA not checked: c2pa-python is not installed (pip install 'c2pa-python>=0.30')")
        else:
            report.c2pa = read_manifest(p)
            if report.c2pa is not None:
                report.carriers.append(f"C2PA manifest ({report.c2pa.get('validation_state') or 'not validated'})")
    return report
