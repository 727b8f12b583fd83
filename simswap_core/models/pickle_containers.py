"""The containers of PyTorch checkpoint files, read without running anything from them.

Storages are read from the zip archive (torch >= 1.6 format) with :mod:`zipfile`, or from the legacy
(torch < 1.6) stream format; the pickles inside go through the allow-list unpickler of :mod:`.safe_pickle`.
The very old tar format and TorchScript archives are refused. :func:`restricted_load` is the entry point;
:func:`load_checkpoint_pickle` lets a caller check the declared tensors before any is read.

Nothing is trusted before it is checked: the file is a regular file (:mod:`.model_file`), a zip's central directory
is checked before a record is inflated (:mod:`.zip_directory`: record and total sizes, inflate ratio, duplicate
names, local headers that disagree with the directory, overlapping records), every pickle passes
:func:`~.pickle_scan.scan_pickle` before it is unpickled, every declared storage must be stored in full (zip record
of the declared size; legacy storage in the key list, inside the file), and tensor records are lazy views whose
layout is checked against their storage.
"""
from __future__ import annotations

import functools
import io
import os
import pickle
import reprlib
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from torch import Tensor

from ..errors import CheckpointError, UnsafeCheckpointError
from .model_file import LEGACY_TORCH_MAGIC, check_model_file, sniff_format
from .pickle_scan import PickleLimits, scan_pickle
from .safe_pickle import PickledModule, PickledObject, RestrictedUnpickler, Storage, StorageType, materialize
from .zip_directory import check_zip_directory, torch_zip_prefix

__all__ = ["load_checkpoint_pickle", "materialize_tree", "restricted_load"]

T = TypeVar("T")

_LEGACY_PROTOCOL = 1001


def _read_record(zf: zipfile.ZipFile, info: zipfile.ZipInfo, nbytes: int, source: str) -> Tensor:
    """The bytes of one zip record (CRC-32 checked by zipfile at the end of the record)."""
    data = torch.empty(nbytes, dtype=torch.uint8)
    try:
        # ZipFile.open gives a ZipExtFile (an io.BufferedIOBase); typeshed types it as IO[bytes], no readinto
        with cast(io.BufferedIOBase, zf.open(info)) as fh:
            got = fh.readinto(data.numpy().data) if nbytes else 0
            if nbytes and fh.read(1):
                got += 1
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CheckpointError(f"{source}: cannot read storage '{info.filename}' ({exc}); the file is corrupted "
                              f"(download or copy it again)") from None
    if got != nbytes:
        raise CheckpointError(f"{source}: storage '{info.filename}' is truncated ({got} of {nbytes} bytes)")
    return data


_EXPECTED_ZIP = "a torch.save checkpoint (a state dict or the official pickled model)"


def _load_zip(path: Path, source: str, file_size: int, finish: Callable[[Any], T]) -> T:
    with open(path, "rb") as raw:
        try:
            zf = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise CheckpointError(f"{source}: not a readable PyTorch zip checkpoint ({exc}); the file may be "
                                  f"truncated or corrupted") from None
        with zf:
            check_zip_directory(zf, raw, file_size, source, _EXPECTED_ZIP)
            names = zf.namelist()
            prefix = torch_zip_prefix(names, source, _EXPECTED_ZIP)
            data_pkl = prefix + "data.pkl"
            byteorder = "little"
            if prefix + "byteorder" in names:
                if zf.getinfo(prefix + "byteorder").file_size > 16:
                    raise CheckpointError(f"{source}: oversized byte order record; expected 'little' or 'big'")
                byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
                if byteorder not in ("little", "big"):
                    raise CheckpointError(f"{source}: unknown byte order record {byteorder!r}")
            storages: dict[str, Storage] = {}

            def persistent_load(pid: Any) -> Any:
                if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                    raise CheckpointError(f"{source}: unexpected persistent reference {_short(pid)}")
                _, stype, key, _location, numel = pid
                if not isinstance(stype, StorageType) or not isinstance(key, str) or type(numel) is not int \
                        or numel < 0:
                    raise CheckpointError(f"{source}: malformed storage reference {_short(pid)}")
                if key in storages:
                    return storages[key]
                name = f"{prefix}data/{key}"
                nbytes = numel * stype.dtype.itemsize
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    raise CheckpointError(f"{source}: storage record '{name}' is missing from the zip archive "
                                          f"(truncated or incomplete file); expected every declared storage "
                                          f"stored") from None
                if info.file_size != nbytes:
                    raise CheckpointError(f"{source}: storage '{name}' holds {info.file_size} bytes, expected "
                                          f"{nbytes} ({numel} {stype.dtype} elements)")

                def read(info: zipfile.ZipInfo = info, nbytes: int = nbytes, itemsize: int = stype.dtype.itemsize
                         ) -> Tensor:
                    data = _read_record(zf, info, nbytes, source)
                    if byteorder != sys.byteorder and itemsize > 1:
                        data = data.view(-1, itemsize).flip(1).reshape(-1).clone()
                    return data

                storages[key] = Storage(stype.dtype, nbytes, read, f"'{name}'")
                return storages[key]

            info = zf.getinfo(data_pkl)
            if info.file_size > PickleLimits().max_bytes:
                raise CheckpointError(f"{source}: its '{data_pkl}' declares {info.file_size} bytes (limit "
                                      f"{PickleLimits().max_bytes}); expected a checkpoint pickle")
            try:
                payload = zf.read(data_pkl)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise CheckpointError(f"{source}: cannot read '{data_pkl}' ({exc}); corrupted file") from None
            scan_pickle(payload, source)
            obj = RestrictedUnpickler(io.BytesIO(payload), source, persistent_load).load()
            return finish(obj)


def _short(value: Any, limit: int = 200) -> str:
    """``repr`` for messages, bounded (the value comes from a file)."""
    text = reprlib.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _load_legacy(path: Path, source: str, file_size: int, finish: Callable[[Any], T]) -> T:
    limits = PickleLimits()
    with open(path, "rb") as fh:
        head = fh.read(min(file_size, limits.max_bytes * 2))
        offset = 0

        def next_pickle(persistent_load: Any = None) -> Any:
            nonlocal offset
            stats = scan_pickle(head, source, limits, offset)
            stream = io.BytesIO(head)
            stream.seek(offset)
            offset += stats.nbytes
            return RestrictedUnpickler(stream, source, persistent_load).load()

        magic = next_pickle()
        if magic != LEGACY_TORCH_MAGIC:
            raise CheckpointError(f"{source}: a pickle, but not a PyTorch checkpoint (no torch magic number)")
        protocol = next_pickle()
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{source}: legacy PyTorch protocol {_short(protocol)} is not supported (expected "
                                  f"1001)")
        sys_info = next_pickle()
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
            raise CheckpointError(f"{source}: big-endian legacy checkpoints are not supported")
        roots: dict[str, tuple[torch.dtype, int]] = {}     # key -> (dtype, bytes)
        root_storages: dict[str, Storage] = {}
        views: dict[str, Storage] = {}
        where: dict[str, int] = {}                           # key -> offset of its bytes in the file

        def read_root(key: str) -> Tensor:
            dtype, nbytes = roots[key]
            data = torch.empty(nbytes, dtype=torch.uint8)
            fh.seek(where[key])
            got = fh.readinto(data.numpy().data) if nbytes else 0
            if got != nbytes:
                raise CheckpointError(f"{source}: storage {key} is truncated ({got} of {nbytes} bytes)")
            return data

        def persistent_load(pid: Any) -> Any:
            if not isinstance(pid, tuple) or not pid:
                raise CheckpointError(f"{source}: unexpected persistent reference {_short(pid)}")
            kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
            if kind == "module" and len(pid) == 4:
                if not isinstance(pid[1], type) or not issubclass(pid[1], PickledModule):
                    raise CheckpointError(f"{source}: module reference to {_short(pid[1])}")
                return pid[1]  # the class stand-in; the saved source code is ignored
            if kind != "storage" or len(pid) != 6:
                raise CheckpointError(f"{source}: unexpected persistent reference {_short(pid)}")
            _, stype, key, _location, numel, view = pid
            if not isinstance(stype, StorageType) or type(numel) is not int or numel < 0 or not isinstance(
                    key, (str, int)):
                raise CheckpointError(f"{source}: malformed storage reference {_short(pid)}")
            key = str(key)
            itemsize = stype.dtype.itemsize
            if key not in roots:
                nbytes = numel * itemsize
                if nbytes + sum(n for _, n in roots.values()) > file_size:
                    raise CheckpointError(f"{source}: storage {key} claims {numel} elements, more than the file "
                                          f"holds ({file_size} bytes)")
                roots[key] = (stype.dtype, nbytes)
                root_storages[key] = Storage(stype.dtype, nbytes, functools.partial(read_root, key), key)
            dtype, nbytes = roots[key]
            if dtype != stype.dtype:
                raise CheckpointError(f"{source}: storage {key} is declared as {dtype} and as {stype.dtype}")
            if view is None:
                return root_storages[key]
            if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int for v in view[1:])):
                raise CheckpointError(f"{source}: malformed storage view {_short(view)}")
            vkey, voffset, vsize = view
            if str(vkey) not in views:
                lo, hi = voffset * itemsize, (voffset + vsize) * itemsize
                if not (0 <= lo <= hi <= nbytes):
                    raise CheckpointError(f"{source}: storage view {_short(vkey)} is out of bounds")
                root = root_storages[key]
                views[str(vkey)] = Storage(dtype, hi - lo, functools.partial(_slice, root, lo, hi), str(vkey))
            return views[str(vkey)]

        result = next_pickle(persistent_load)
        keys = next_pickle()
        if not isinstance(keys, list):
            raise CheckpointError(f"{source}: malformed storage key list")
        position = offset
        for key in keys:
            key = str(key)
            if key not in roots:
                raise CheckpointError(f"{source}: storage key {_short(key)} listed but never referenced")
            if key in where:
                raise CheckpointError(f"{source}: storage key {_short(key)} listed twice")
            dtype, nbytes = roots[key]
            fh.seek(position)
            header = fh.read(8)
            if len(header) != 8:
                raise CheckpointError(f"{source}: truncated before the data of storage {key}")
            numel = struct.unpack("<q", header)[0]
            if numel * dtype.itemsize != nbytes:
                raise CheckpointError(f"{source}: storage {key} has {numel} elements on disk, expected "
                                      f"{nbytes // dtype.itemsize}")
            where[key] = position + 8
            position += 8 + nbytes
            if position > file_size:
                raise CheckpointError(f"{source}: storage {key} is truncated (the file ends {position - file_size} "
                                      f"bytes before its end)")
        never = [k for k in roots if k not in where]
        if never:
            raise CheckpointError(f"{source}: storages {never[:4]} are declared but never stored (the file would "
                                  f"load with uninitialised weights); expected every declared storage stored")
        return finish(result)


def _slice(root: Storage, lo: int, hi: int) -> Tensor:
    return root.data()[lo:hi]


def materialize_tree(obj: Any) -> Any:
    """``obj`` with every lazy tensor record read (dicts, lists and pickled records updated in place)."""
    seen: dict[int, Any] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, Tensor):
            return materialize(value)
        key = id(value)
        if key in seen:
            return seen[key]
        if isinstance(value, dict):
            seen[key] = value
            for k in list(value):
                value[k] = walk(value[k])
        elif isinstance(value, list):
            seen[key] = value
            value[:] = [walk(v) for v in value]
        elif isinstance(value, tuple) and not isinstance(value, torch.Size):
            seen[key] = tuple(walk(v) for v in value)
            return seen[key]
        elif isinstance(value, PickledObject):
            seen[key] = value
            for attr in ("pickle_state", "pickle_args"):
                if attr in value.__dict__:
                    value.__dict__[attr] = walk(value.__dict__[attr])
        return value

    return walk(obj)


_EXPECTED = ("expected a complete PyTorch checkpoint (torch.save zip or legacy pickle: a state dict or the official "
             "pickled ArcFace model)")


def restricted_load(path: str | os.PathLike) -> Any:
    """Unpickle a torch checkpoint (zip or legacy format) with the allow-list; returns plain data.

    Tensors come back as CPU tensors, pickled modules as :class:`PickledModule` trees. Raises
    :class:`UnsafeCheckpointError` for a non-allow-listed global and :class:`CheckpointError` for a damaged file.
    """
    return load_checkpoint_pickle(path, materialize_tree)


def load_checkpoint_pickle(path: str | os.PathLike, finish: Callable[[Any], T]) -> T:
    """Unpickle a torch checkpoint with the allow-list and return ``finish(obj)``.

    ``obj`` holds lazy tensor records (meta tensors, see :func:`~.safe_pickle.materialize`): ``finish`` checks
    what the file declares and reads only the tensors it needs, while the file is still open. The pickle's
    resource limits (:mod:`.pickle_scan`), the zip directory and every declared storage are checked before any
    weight is read. Errors as :func:`restricted_load`.
    """
    path = Path(path)
    source = str(path)
    file_size = check_model_file(path, "a PyTorch checkpoint")
    fmt = sniff_format(path)
    try:
        if fmt == "zip":
            return _load_zip(path, source, file_size, finish)
        if fmt == "legacy":
            return _load_legacy(path, source, file_size, finish)
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
        raise CheckpointError(f"{source}: found a corrupted or truncated pickle ({type(exc).__name__}: "
                              f"{str(exc)[:300]}); {_EXPECTED}") from None
    if fmt == "tar":
        raise CheckpointError(f"{source}: a tar archive in the pre-2018 torch format is not supported; "
                              f"expected a torch.save checkpoint (zip or legacy pickle) or .safetensors")
    if fmt == "empty":
        raise CheckpointError(f"{source}: the file is empty; expected a PyTorch checkpoint")
    raise CheckpointError(f"{source}: found {fmt} data, expected a PyTorch checkpoint (zip or legacy pickle)")
