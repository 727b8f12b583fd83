"""The label in video containers (PyAV / FFmpeg metadata), set on the output container before its header.

    every container   "comment" and "description": the human-readable line (what players and file managers show)
    every container   "XMP": the XMP packet (Matroska / WebM: a global tag; MP4 / MOV: an ``mdta`` key, written
                      with the muxer flag ``movflags=use_metadata_tags``, which also keeps comment / description)

FFmpeg's MP4 muxer drops keys it does not know unless ``use_metadata_tags`` is set; it is added to any movflags
already chosen. ``read_container_label`` (reader.py) reads them back with PyAV.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .label import ProvenanceLabel
from .xmp import to_xmp

XMP_KEY = "XMP"
_MOV_EXTS = (".mp4", ".m4v", ".mov")


def container_metadata(label: ProvenanceLabel) -> dict[str, str]:
    """The container tags of ``label`` (key -> value)."""
    return {"comment": label.text(), "description": label.text(), XMP_KEY: to_xmp(label)}


def label_container(container: Any, label: ProvenanceLabel | None, path: str | Path) -> None:
    """Put ``label`` (None: nothing) into an output PyAV container opened for ``path``, before anything is muxed."""
    if label is None:
        return
    if Path(path).suffix.lower() in _MOV_EXTS:
        flags = [f for f in str(container.options.get("movflags", "")).split("+") if f]
        if "use_metadata_tags" not in flags:
            container.options["movflags"] = "+".join([*flags, "use_metadata_tags"])
    for key, value in container_metadata(label).items():
        container.metadata[key] = value
