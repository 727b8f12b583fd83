"""Is a downloaded file really a model file of its kind? Structural checks of its bytes, standard library only.

The installer runs these before torch is installed, on every download and before it records the sha256 of a
first download, so an HTML login page, a truncated body, gzip bytes or a file spliced from two versions is refused
instead of trusted. Nothing is unpickled or executed: pickles are only scanned opcode by opcode, under the same
resource limits as the loader's (:func:`~.pickle_scan.scan_pickle`), protobuf only field by field.

* ``torch``: a PyTorch zip checkpoint (one ``*/data.pkl`` record, every record's CRC and offsets valid) or a legacy
  torch stream (the torch magic number, the protocol, system-info, object and storage-key pickles, then each
  declared storage's element count and bytes, ending exactly at the end of the file);
* ``onnx``: an ONNX ModelProto (top-level and graph fields well formed and ending exactly at the end of the file,
  with an ir_version and a graph);
* ``safetensors``: the header as the loader reads it (:func:`~.safetensors_header.read_safetensors_header`):
  known dtypes, shapes, offsets that tile the data section exactly;
* ``zip``: a readable zip archive (a model pack or a wheel) whose records lie inside the file.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import CheckpointError
from .model_file import LEGACY_TORCH_MAGIC, container_of
from .pickle_scan import PickleLimits, scan_pickle
from .safetensors_header import read_safetensors_header
from .zip_directory import check_zip_directory, torch_zip_prefix

__all__ = ["FORMATS", "check_file_format", "describe_text", "format_of_name"]

FORMATS = ("torch", "onnx", "safetensors", "zip")

_EXTENSIONS = {".pth": "torch", ".pt": "torch", ".tar": "torch", ".ckpt": "torch", ".bin": "torch",
               ".onnx": "onnx", ".safetensors": "safetensors", ".zip": "zip", ".whl": "zip"}
_LEGACY_HEADER = b"\x80\x02\x8a\x0a" + LEGACY_TORCH_MAGIC.to_bytes(10, "little") + b"."  # its magic pickle
_STACK_KEEP = 4096  # values kept on the tracking stack (a persistent id is built from the last few)
_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32 = 0, 1, 2, 5


def format_of_name(name: str) -> str | None:
    """The format a model file of this name must have (``torch``, ``onnx``, ``safetensors``, ``zip``), or None."""
    return _EXTENSIONS.get(Path(name.split("?", 1)[0]).suffix.lower())


def describe_text(head: bytes) -> str | None:
    """What a body that is text rather than a binary model file looks like, or None if it looks binary.

    ``head`` is the first bytes (up to about 1 KiB). Used to refuse login pages, error pages and JSON errors
    however the server labelled them.
    """
    if not head:
        return "an empty body"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = stripped[:1024].lower()
    excerpt = " ".join(stripped[:80].decode("utf-8", "replace").split())
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in low:
        return f"an HTML page (a login or error page?) starting '{excerpt}'"
    if low.startswith((b"<?xml", b"<")) and _is_text(head):
        return f"an XML/HTML document (an error page?) starting '{excerpt}'"
    if low.startswith((b"{", b"[")) and _is_text(head):
        return f"a JSON document (an API error?) starting '{excerpt}'"
    if _is_text(head):
        return f"plain text starting '{excerpt}'"
    return None


def _is_text(data: bytes) -> bool:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(data) - 3:  # a multi-byte character cut at the end of the sample is still text
            return False
        text = data[: e.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def check_file_format(path: str | os.PathLike, fmt: str, *, source: str | None = None) -> str:
    """Check that ``path`` is a well-formed ``fmt`` file; returns a short description of what it is.

    Raises :class:`~simswap_core.errors.CheckpointError` naming ``source`` (default: the path), what was found and
    what was expected. Reads the file once at most (zip records are CRC-checked), never executes anything.
    """
    p = Path(path)
    name = source or str(p)
    if fmt not in FORMATS:
        raise ValueError(f"unknown model file format {fmt!r}; known: {', '.join(FORMATS)}")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read ({e.strerror or e})") from None
    text = describe_text(head)
    if text is not None:
        raise CheckpointError(f"{name}: {text}, not {_WANTED[fmt]}")
    if head[:3] == b"\x1f\x8b\x08":
        raise CheckpointError(f"{name}: gzip-compressed bytes, not {_WANTED[fmt]} (the server sent the file "
                              f"compressed without saying so?)")
    try:
        if fmt == "torch":
            return _check_torch(p, head, size, name)
        if fmt == "onnx":
            return _check_onnx(p, size, name)
        if fmt == "safetensors":
            return _check_safetensors(p, name)
        return _check_zip(p, name)
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read ({e.strerror or e})") from None


_WANTED = {
    "torch": "a PyTorch checkpoint (a zip with a data.pkl record, or the legacy torch stream)",
    "onnx": "an ONNX model (a ModelProto with a graph)",
    "safetensors": "a safetensors file",
    "zip": "a zip archive",
}


# ------------------------------------------------------------------------------------------------ zip


def _open_zip(p: Path, name: str, wanted: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(p)
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CheckpointError(f"{name}: not a readable zip ({e}); expected {wanted}. The file is truncated, "
                              f"damaged or not a zip at all") from None


def _check_records(z: zipfile.ZipFile, p: Path, size: int, name: str, expected: str) -> None:
    """The directory within the limits and consistent with the file (:func:`~.zip_directory.check_zip_directory`),
    then every record's CRC (catches splices and truncation)."""
    with open(p, "rb") as fh:
        check_zip_directory(z, fh, size, name, expected)
    try:
        bad = z.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as e:
        raise CheckpointError(f"{name}: a zip record cannot be read ({e}): truncated, spliced or damaged") from None
    if bad is not None:
        raise CheckpointError(f"{name}: the record {bad} fails its CRC check: the file is damaged or spliced "
                              f"from two versions")


def _check_zip(p: Path, name: str) -> str:
    size = p.stat().st_size
    with _open_zip(p, name, _WANTED["zip"]) as z:
        _check_records(z, p, size, name, _WANTED["zip"])
        return f"a zip archive of {len(z.infolist())} records"


# ------------------------------------------------------------------------------------------------ torch


def _check_torch(p: Path, head: bytes, size: int, name: str) -> str:
    container = container_of(head)
    if container == "zip":
        return _check_torch_zip(p, size, name)
    if container == "legacy":
        if head.startswith(_LEGACY_HEADER):
            return _check_torch_legacy(p, name)
        raise CheckpointError(f"{name}: a pickle without the torch magic number, not {_WANTED['torch']}")
    if container == "tar":
        raise CheckpointError(f"{name}: a tar archive (the pre-2018 torch format, unsupported), not "
                              f"{_WANTED['torch']}")
    if container == "safetensors":
        raise CheckpointError(f"{name}: a safetensors file, not {_WANTED['torch']} (a .safetensors name is "
                              f"expected for it)")
    raise CheckpointError(f"{name}: starts with bytes {head[:8].hex(' ')}, not {_WANTED['torch']}")


def _check_torch_zip(p: Path, size: int, name: str) -> str:
    with _open_zip(p, name, _WANTED["torch"]) as z:
        infos = z.infolist()
        prefix = torch_zip_prefix([i.filename for i in infos], name, _WANTED["torch"])
        pickle_info = z.getinfo(prefix + "data.pkl")
        limit = PickleLimits().max_bytes
        if pickle_info.file_size > limit:
            raise CheckpointError(f"{name}: its data.pkl declares {pickle_info.file_size:,} bytes, more than the "
                                  f"{limit:,} a checkpoint's object pickle may have")
        _check_records(z, p, size, name, _WANTED["torch"])
        scan_pickle(z.read(pickle_info), f"{name} (its data.pkl)")
        return f"a PyTorch zip checkpoint of {len(infos)} records"


_OPAQUE = object()
_MARK = object()
_ATOMS = {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "BINSTRING", "SHORT_BINSTRING", "STRING",
          "BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4"}
_STORAGE_ITEM = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
                 "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
                 "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16}


class _PersistentIds:
    """Collects the storages a legacy torch pickle declares, from its persistent ids
    ``('storage', torch.<Type>Storage, key, location, numel, view)``, by tracking only the values those ids are
    built from (strings, ints, None, globals, tuples, the memo). Nothing is constructed or called."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stack: list[Any] = []
        self.memo: dict[int, Any] = {}
        self.memo_count = 0
        self.storages: dict[str, tuple[str, int]] = {}  # key -> (storage type name, numel)
        self.tracked = False  # whether the last opcode pushed a value we track (else a BINPUT memoizes an object)

    def __call__(self, op: str, arg: Any) -> None:
        tracked = True
        if len(self.stack) > 2 * _STACK_KEEP:
            del self.stack[:-_STACK_KEEP]
        if op in _ATOMS:
            self.stack.append(arg)
        elif op == "NONE":
            self.stack.append(None)
        elif op == "GLOBAL":
            self.stack.append(("global", arg))
        elif op == "MARK":
            self.stack.append(_MARK)
            tracked = False
        elif op == "EMPTY_TUPLE":
            self.stack.append(())
        elif op == "TUPLE":
            items: list[Any] = []
            while self.stack and self.stack[-1] is not _MARK:
                items.append(self.stack.pop())
            if self.stack:
                self.stack.pop()
            self.stack.append(tuple(reversed(items)))
        elif op in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(op[-1])
            items = self.stack[-n:] if len(self.stack) >= n else [_OPAQUE] * n
            del self.stack[-n:]
            self.stack.append(tuple(items))
        elif op in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            self.memo_count += 1  # how many entries the memo holds is bounded by scan_pickle
            if self.tracked and self.stack:
                self.memo[self.memo_count - 1 if op == "MEMOIZE" else int(arg)] = self.stack[-1]
            tracked = self.tracked
        elif op in ("BINGET", "LONG_BINGET", "GET"):
            self.stack.append(self.memo.get(int(arg), _OPAQUE))
        elif op == "BINPERSID":
            pid = self.stack.pop() if self.stack else _OPAQUE
            if (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], tuple)
                    and isinstance(pid[2], str) and isinstance(pid[4], int)):
                self.storages[pid[2]] = (str(pid[1][1]).rsplit(" ", 1)[-1], pid[4])
            tracked = False
        else:
            tracked = False
        self.tracked = tracked



class _Strings:
    """Collects the strings of a pickle (the legacy storage-key list)."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def __call__(self, op: str, arg: Any) -> None:
        if op in _ATOMS and isinstance(arg, str):  # how many is bounded by scan_pickle's opcode limit
            self.values.append(arg)


def _check_torch_legacy(p: Path, name: str) -> str:
    size = p.stat().st_size
    ids, keys = _PersistentIds(name), _Strings()
    with open(p, "rb") as f:
        f.seek(len(_LEGACY_HEADER))
        limit = PickleLimits().max_bytes
        for what, visit in (("protocol", None), ("system-info", None), ("object", ids), ("storage-key", keys)):
            start = f.tell()
            chunk = f.read(limit + 1)  # scan_pickle refuses a pickle longer than the limit
            stats = scan_pickle(chunk, f"{name} (its legacy {what} pickle)", visit=visit)
            f.seek(start + stats.nbytes)
        if set(keys.values) != set(ids.storages):
            raise CheckpointError(f"{name}: the legacy storage list names {len(keys.values)} storages but the object "
                                  f"refers to {len(ids.storages)}; the file is damaged")
        for key in keys.values:
            kind, numel = ids.storages[key]
            item = _STORAGE_ITEM.get(kind)
            if item is None:
                raise CheckpointError(f"{name}: storage {key} has the type {kind!r}; expected one of "
                                      f"{', '.join(_STORAGE_ITEM)}")
            raw = f.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"{name}: the file ends before the data of storage {key} (truncated at "
                                      f"{size:,} bytes)")
            stored = int.from_bytes(raw, "little")
            if stored != numel:
                raise CheckpointError(f"{name}: storage {key} holds {stored:,} elements, its declaration says "
                                      f"{numel:,}; the file is damaged")
            end = f.tell() + numel * item
            if end > size:
                raise CheckpointError(f"{name}: storage {key} needs {numel * item:,} bytes at offset {f.tell():,}, "
                                      f"past the end of the {size:,}-byte file (truncated)")
            f.seek(end)
        if f.tell() != size:
            raise CheckpointError(f"{name}: {size - f.tell():,} bytes follow the last storage; the file is damaged or "
                                  f"spliced")
    return f"a legacy PyTorch checkpoint of {len(keys.values)} storages"


# ------------------------------------------------------------------------------------------------ safetensors


def _check_safetensors(p: Path, name: str) -> str:
    return read_safetensors_header(p, name).describe()


# ------------------------------------------------------------------------------------------------ onnx


def read_varint(f: BinaryIO, name: str) -> int | None:
    """A protobuf varint, or None at the end of the stream."""
    value = shift = 0
    while True:
        b = f.read(1)
        if not b:
            if shift:
                raise CheckpointError(f"{name}: a protobuf field is cut off (truncated)")
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise CheckpointError(f"{name}: a protobuf varint is longer than 10 bytes; not an ONNX model")


def _walk_message(f: BinaryIO, end: int, name: str, what: str) -> dict[int, tuple[int, int]]:
    """Walk one protobuf message's fields between ``f.tell()`` and ``end``; returns field -> (offset, length) of
    the last length-delimited occurrence (or (0, 0) for scalars)."""
    fields: dict[int, tuple[int, int]] = {}
    while f.tell() < end:
        key = read_varint(f, name)
        if key is None:
            break
        number, wire = key >> 3, key & 7
        if number == 0 or wire not in (_WIRE_VARINT, _WIRE_I64, _WIRE_LEN, _WIRE_I32):
            raise CheckpointError(f"{name}: field {number} of the {what} has wire type {wire}; not an ONNX model")
        if wire == _WIRE_VARINT:
            if read_varint(f, name) is None:
                raise CheckpointError(f"{name}: the {what} is cut off (truncated)")
            fields[number] = (0, 0)
            continue
        length = {_WIRE_I64: 8, _WIRE_I32: 4}.get(wire)
        if length is None:
            length = read_varint(f, name)
            if length is None:
                raise CheckpointError(f"{name}: the {what} is cut off (truncated)")
        start = f.tell()
        if start + length > end:
            raise CheckpointError(f"{name}: field {number} of the {what} needs {length:,} bytes at offset "
                                  f"{start:,}, past the end of its {end:,} bytes (truncated or not an ONNX model)")
        fields[number] = (start, length)
        f.seek(start + length)
    if f.tell() != end:
        raise CheckpointError(f"{name}: the {what} does not end where its length says (damaged)")
    return fields


def _check_onnx(p: Path, size: int, name: str) -> str:
    with open(p, "rb") as f:
        model = _walk_message(f, size, name, "ModelProto")
        if 1 not in model or 7 not in model or model[7][1] == 0:
            raise CheckpointError(f"{name}: a protobuf without {'an ir_version' if 1 not in model else 'a graph'}; "
                                  f"expected {_WANTED['onnx']}")
        start, length = model[7]
        f.seek(start)
        graph = _walk_message(f, start + length, name, "GraphProto")
        if 1 not in graph:
            raise CheckpointError(f"{name}: its graph has no nodes; expected {_WANTED['onnx']}")
    return "an ONNX model"
