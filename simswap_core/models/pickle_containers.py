"""The containers of PyTorch checkpoint files, read without running anything from them.

Storages are read from the zip archive (torch >= 1.6 format) with :mod:`zipfile`, or from the legacy
(torch < 1.6) stream format; the pickles inside go through the allow-list unpickler of :mod:`.safe_pickle`.
The very old tar format and TorchScript archives are refused. :func:`restricted_load` is the entry point.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor

from ..errors import CheckpointError, UnsafeCheckpointError
from .safe_pickle import PickledModule, RestrictedUnpickler, Storage, StorageType, plain_load

__all__ = ["restricted_load", "sniff_format"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def sniff_format(path: str | os.PathLike) -> str:
    """"zip", "legacy", "tar", "safetensors", "empty" or "unknown", from the first bytes of the file."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "empty"
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return "zip"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "legacy"
    if len(head) >= 9:
        n = struct.unpack("<Q", head[:8])[0]
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def _load_zip(path: Path, source: str) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{source}: not a readable PyTorch zip checkpoint ({exc}); the file may be truncated "
                              f"or corrupted") from None
    with zf:
        names = zf.namelist()
        if any(n.endswith("/constants.pkl") for n in names):
            raise CheckpointError(f"{source}: this is a TorchScript archive (torch.jit.save), not a checkpoint; "
                                  f"expected a state dict or the official pickled model")
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(f"{source}: zip archive without a single '<archive>/data.pkl' record (found "
                                  f"{len(pkls)}); expected a torch.save checkpoint")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{source}: unknown byte order record {byteorder!r}")
        storages: dict[str, Storage] = {}

        def persistent_load(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                raise CheckpointError(f"{source}: unexpected persistent reference {pid!r}")
            _, stype, key, _location, numel = pid
            if not isinstance(stype, StorageType) or not isinstance(key, str) or not isinstance(numel, int):
                raise CheckpointError(f"{source}: malformed storage reference {pid!r}")
            if key in storages:
                return storages[key]
            name = f"{prefix}data/{key}"
            nbytes = numel * torch.empty((), dtype=stype.dtype).element_size()
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise CheckpointError(f"{source}: storage record '{name}' is missing from the zip archive "
                                      f"(truncated or incomplete file)") from None
            if info.file_size != nbytes:
                raise CheckpointError(f"{source}: storage '{name}' holds {info.file_size} bytes, expected {nbytes}")
            data = torch.empty(nbytes, dtype=torch.uint8)
            try:
                # ZipFile.open gives a ZipExtFile (an io.BufferedIOBase); typeshed types it as IO[bytes], no readinto
                with cast(io.BufferedIOBase, zf.open(info)) as fh:
                    got = fh.readinto(data.numpy().data) if nbytes else 0
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise CheckpointError(f"{source}: cannot read storage '{name}' ({exc}); corrupted file") from None
            if got != nbytes:
                raise CheckpointError(f"{source}: storage '{name}' is truncated ({got} of {nbytes} bytes)")
            if byteorder != sys.byteorder and stype.dtype.itemsize > 1:
                data = data.view(-1, stype.dtype.itemsize).flip(1).reshape(-1).clone()
            storages[key] = Storage(data, stype.dtype)
            return storages[key]

        try:
            payload = zf.read(pkls[0])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CheckpointError(f"{source}: cannot read '{pkls[0]}' ({exc}); corrupted file") from None
        return RestrictedUnpickler(io.BytesIO(payload), source, persistent_load).load()


def _load_legacy(path: Path, source: str) -> Any:
    with open(path, "rb") as fh:
        magic = plain_load(fh, source)
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{source}: a pickle, but not a PyTorch checkpoint (no torch magic number)")
        protocol = plain_load(fh, source)
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{source}: legacy PyTorch protocol {protocol!r} is not supported (expected 1001)")
        sys_info = plain_load(fh, source)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
            raise CheckpointError(f"{source}: big-endian legacy checkpoints are not supported")
        roots: dict[str, tuple[Tensor, torch.dtype]] = {}
        views: dict[str, Storage] = {}

        def persistent_load(pid: Any) -> Any:
            if not isinstance(pid, tuple) or not pid:
                raise CheckpointError(f"{source}: unexpected persistent reference {pid!r}")
            kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
            if kind == "module" and len(pid) == 4:
                if not isinstance(pid[1], type) or not issubclass(pid[1], PickledModule):
                    raise CheckpointError(f"{source}: module reference to {pid[1]!r}")
                return pid[1]  # the class stand-in; the saved source code is ignored
            if kind != "storage" or len(pid) != 6:
                raise CheckpointError(f"{source}: unexpected persistent reference {pid!r}")
            _, stype, key, _location, numel, view = pid
            if not isinstance(stype, StorageType) or not isinstance(numel, int) or numel < 0:
                raise CheckpointError(f"{source}: malformed storage reference {pid!r}")
            key = str(key)
            itemsize = torch.empty((), dtype=stype.dtype).element_size()
            if key not in roots:
                if numel * itemsize > os.path.getsize(path):
                    raise CheckpointError(f"{source}: storage {key} claims {numel} elements, more than the file holds")
                roots[key] = (torch.empty(numel * itemsize, dtype=torch.uint8), stype.dtype)
            data, dtype = roots[key]
            if view is None:
                return Storage(data, dtype)
            vkey, offset, vsize = view
            if str(vkey) not in views:
                lo, hi = offset * itemsize, (offset + vsize) * itemsize
                if not (0 <= lo <= hi <= data.numel()):
                    raise CheckpointError(f"{source}: storage view {vkey} is out of bounds")
                views[str(vkey)] = Storage(data[lo:hi], dtype)
            return views[str(vkey)]

        result = RestrictedUnpickler(fh, source, persistent_load).load()
        keys = plain_load(fh, source)
        if not isinstance(keys, list):
            raise CheckpointError(f"{source}: malformed storage key list")
        for key in keys:
            key = str(key)
            if key not in roots:
                raise CheckpointError(f"{source}: storage key {key} listed but never referenced")
            data, dtype = roots[key]
            itemsize = torch.empty((), dtype=dtype).element_size()
            header = fh.read(8)
            if len(header) != 8:
                raise CheckpointError(f"{source}: truncated before the data of storage {key}")
            numel = struct.unpack("<q", header)[0]
            if numel * itemsize != data.numel():
                raise CheckpointError(f"{source}: storage {key} has {numel} elements on disk, expected "
                                      f"{data.numel() // itemsize}")
            got = fh.readinto(data.numpy().data) if data.numel() else 0
            if got != data.numel():
                raise CheckpointError(f"{source}: storage {key} is truncated ({got} of {data.numel()} bytes)")
        return result


_EXPECTED = ("expected a complete PyTorch checkpoint (torch.save zip or legacy pickle: a state dict or the official "
             "pickled ArcFace model)")


def restricted_load(path: str | os.PathLike) -> Any:
    """Unpickle a torch checkpoint (zip or legacy format) with the allow-list; returns plain data.

    Tensors come back as CPU tensors, pickled modules as :class:`PickledModule` trees. Raises
    :class:`UnsafeCheckpointError` for a non-allow-listed global and :class:`CheckpointError` for a damaged file.
    """
    path = Path(path)
    source = str(path)
    fmt = sniff_format(path)
    try:
        if fmt == "zip":
            return _load_zip(path, source)
        if fmt == "legacy":
            return _load_legacy(path, source)
    except UnsafeCheckpointError as exc:
        if source not in str(exc):  # raised by a helper that does not know the file: name it
            raise UnsafeCheckpointError(f"{source}: {exc}; nothing from the file was executed") from None
        raise
    except CheckpointError as exc:
        msg = str(exc) if source in str(exc) else f"{source}: {exc}"
        if "expected" not in msg:
            msg += f"; {_EXPECTED}"
        if msg != str(exc):
            raise CheckpointError(msg) from None
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            struct.error, RecursionError, MemoryError, OverflowError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{source}: found a corrupted or truncated pickle ({type(exc).__name__}: {exc}); "
                              f"{_EXPECTED}") from None
    if fmt == "tar":
        raise CheckpointError(f"{source}: a tar archive in the pre-2018 torch format is not supported; "
                              f"expected a torch.save checkpoint (zip or legacy pickle) or .safetensors")
    if fmt == "empty":
        raise CheckpointError(f"{source}: the file is empty; expected a PyTorch checkpoint")
    raise CheckpointError(f"{source}: found {fmt} data, expected a PyTorch checkpoint (zip or legacy pickle)")
