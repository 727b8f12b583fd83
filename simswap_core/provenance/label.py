"""What the synthetic-media label of an output says, and the switch that turns labelling off.

A face swap keeps the target's pixels and replaces the face region with what a trained network generated, so the
label uses the IPTC digital source type ``compositeWithTrainedAlgorithmicMedia`` ("the compositing of trained
algorithmic media with some other media"), not ``trainedAlgorithmicMedia`` (media created wholly by a model: the
background, body and the rest of the frame here are the original camera pixels). The label records who made the
change (this pack and its version), the kind of change ("face replaced"), the models used (file name and sha256 of
each model file, so a result can be traced to exact weights) and when. It never records anything about the source
person: no identity file or photo names, no embeddings, no face crops.

Labelling is on by default. ``set_labelling(False)`` (or the environment variable ``SIMSWAP_LABEL=0``) turns it
off for this process; the writers then warn once that labelling the output as synthetic media (EU AI Act,
Article 50) is the user's legal responsibility.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import InputError

IPTC_COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
IPTC_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR_NAME = "ComfyUI-SimSwap"
ACTION_FACE_REPLACED = "face replaced"
OFF_MESSAGE = ("synthetic-media labelling is OFF: outputs carry no machine-readable mark that they are AI-generated; "
               "labelling them (EU AI Act, Article 50) is now your legal responsibility")
_ENV = "SIMSWAP_LABEL"
_state: dict[str, bool | None] = {"enabled": None, "warned": False}
_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def pack_version() -> str:
    """This pack's version (installed metadata, else the pyproject.toml next to the package, else "unknown")."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("comfyui-simswap")
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        for line in pyproject.read_text(encoding="utf-8").splitlines():
            if line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


def now_utc() -> str:
    """ISO 8601 UTC time, to the second; ``SOURCE_DATE_EPOCH`` (reproducible builds) fixes it when set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return when.replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ModelRecord:
    """One model that made the output: role ("generator", "arcface", "detector", ...), file name, sha256 (hex;
    "" when the file could not be read)."""

    role: str
    name: str
    sha256: str


@dataclass(frozen=True)
class ProvenanceLabel:
    """The label written into an output file.

    digital_source_type: an IPTC NewsCodes URI (``IPTC_COMPOSITE`` for a face swap).
    generator / version: the software that made the change. action: the kind of change.
    models: the models used (never the source person's identity). created: ISO 8601 UTC time of the run.
    """

    digital_source_type: str = IPTC_COMPOSITE
    generator: str = GENERATOR_NAME
    version: str = field(default_factory=pack_version)
    action: str = ACTION_FACE_REPLACED
    models: tuple[ModelRecord, ...] = ()
    created: str = field(default_factory=lambda: now_utc())

    @property
    def source_type_name(self) -> str:
        """The IPTC term without its URI prefix, e.g. "compositeWithTrainedAlgorithmicMedia"."""
        return self.digital_source_type.rsplit("/", 1)[-1]

    def text(self) -> str:
        """The one line a viewer shows (EXIF ImageDescription, PNG Description, container comment); ASCII."""
        return (f"AI-generated content (synthetic media): {self.action} by {self.generator} {self.version}; IPTC "
                f"digital source type {self.source_type_name}")

    def software(self) -> str:
        """ "ComfyUI-SimSwap 0.1.0" (EXIF Software, PNG Software, xmp:CreatorTool)."""
        return f"{self.generator} {self.version}"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the form `simswap inspect --json` prints)."""
        return {"digital_source_type": self.digital_source_type, "generator": self.generator,
                "version": self.version, "action": self.action, "created": self.created,
                "models": [{"role": m.role, "name": m.name, "sha256": m.sha256} for m in self.models]}

    def with_models(self, **paths: str | os.PathLike | None) -> ProvenanceLabel:
        """A copy with the models of ``paths`` (role=path; None skipped) added, their sha256 computed."""
        extra = tuple(model_record(role, p) for role, p in paths.items() if p is not None)
        return replace(self, models=self.models + extra)


_hash_cache: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file, cached per (resolved path, size, mtime) for this process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _hash_cache.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = _hash_cache[key] = h.hexdigest()
    return digest


def model_record(role: str, path: str | os.PathLike) -> ModelRecord:
    """The record of the model file ``path`` (InputError when it is not a readable file)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"provenance label: model {role} {p}: expected a readable model file")
    return ModelRecord(role=str(role), name=p.name, sha256=file_sha256(p))


def make_label(**models: str | os.PathLike | None) -> ProvenanceLabel:
    """A face-swap label now, recording the model files given as role=path (None entries are skipped), e.g.
    ``make_label(generator="simswap_224.pth", arcface="arcface.pth", detector="yunet.onnx")``."""
    return ProvenanceLabel().with_models(**models)


def set_labelling(enabled: bool) -> None:
    """Turn synthetic-media labelling on or off for this process (overrides ``SIMSWAP_LABEL``). Turning it off
    warns that labelling is then the user's legal responsibility."""
    with _lock:
        _state["enabled"] = bool(enabled)
        _state["warned"] = False
    if not enabled:
        warn_if_off()


@contextmanager
def labelling(enabled: bool) -> Iterator[None]:
    """Within: labelling on or off (as ``set_labelling``), then back to what it was (a CLI job, a node run)."""
    with _lock:
        before = dict(_state)
    set_labelling(enabled)
    try:
        yield
    finally:
        with _lock:
            _state.update(before)


def labelling_enabled() -> bool:
    """True unless ``set_labelling(False)`` or the environment variable ``SIMSWAP_LABEL`` is 0/false/off/no."""
    chosen = _state["enabled"]
    if chosen is not None:
        return bool(chosen)
    return os.environ.get(_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def warn_if_off() -> bool:
    """When labelling is off: warn once per process (``OFF_MESSAGE``) and return True."""
    if labelling_enabled():
        return False
    with _lock:
        first = not _state["warned"]
        _state["warned"] = True
    if first:
        warnings.warn(OFF_MESSAGE, stacklevel=3)
    return True


def embedded_label(label: ProvenanceLabel | None) -> ProvenanceLabel | None:
    """What a writer embeds: ``label``, or None when none was given or labelling is off (then warned once)."""
    if label is None or warn_if_off():
        return None
    return label


def output_label(label: ProvenanceLabel | None) -> ProvenanceLabel:
    """The label of a swap output: ``label``, else a face-swap label without model records (the sinks' default,
    so every swap output is labelled even when the caller built none)."""
    return label if label is not None else ProvenanceLabel()
