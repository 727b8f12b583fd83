"""The central directory of a zip archive (a PyTorch checkpoint, a model pack, a wheel), checked before any record
is inflated. Standard library only: the installer checks downloads with it before torch is installed, the loader
(:mod:`.pickle_containers`) before it reads a checkpoint.

:func:`check_zip_directory` refuses a directory that describes more than the file can honestly hold: too many
records, records or totals over the limits, the compression ratio of a zip bomb, unknown compression, duplicate
names, local headers that disagree with the directory, and records that overlap or leave the file.
:func:`torch_zip_prefix` checks the record layout ``torch.save`` writes (one ``<folder>/data.pkl``, nothing
outside that folder, no TorchScript).
"""
from __future__ import annotations

import struct
import zipfile
from typing import BinaryIO

from ..errors import CheckpointError

__all__ = ["MAX_INFLATE_RATIO", "MAX_RECORD_BYTES", "MAX_TOTAL_BYTES", "MAX_ZIP_RECORDS", "check_zip_directory",
           "torch_zip_prefix"]

MAX_ZIP_RECORDS = 100_000
MAX_RECORD_BYTES = 8 * 1024 ** 3
MAX_TOTAL_BYTES = 16 * 1024 ** 3
#: A deflated record may inflate to at most this many times its stored size (deflate on float weights gives ~1.1;
#: torch itself never compresses), so a small file cannot expand into gigabytes.
MAX_INFLATE_RATIO = 20
_SLACK = 1024 * 1024  # small records (version, byteorder, a wheel's text files) are exempt from the ratio
_LOCAL_HEADER = 30


def check_zip_directory(zf: zipfile.ZipFile, fh: BinaryIO, file_size: int, source: str, expected: str) -> None:
    """Refuse (CheckpointError naming ``source``, what was found and ``expected``) a zip whose central directory
    is over the limits or inconsistent with the file ``fh`` of ``file_size`` bytes; reads only the local headers."""
    infos = zf.infolist()
    if len(infos) > MAX_ZIP_RECORDS:
        raise CheckpointError(f"{source}: found a zip with {len(infos):,} records (limit {MAX_ZIP_RECORDS:,}); "
                              f"expected {expected}")
    names: set[str] = set()
    total = 0
    spans: list[tuple[int, int, str]] = []
    for info in infos:
        name = info.filename
        if name in names:
            raise CheckpointError(f"{source}: found the zip record '{name}' twice; expected {expected} with unique "
                                  f"record names")
        names.add(name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CheckpointError(f"{source}: record '{name}' uses compression method {info.compress_type}; expected "
                                  f"{expected} with stored or deflated records")
        if info.file_size > MAX_RECORD_BYTES:
            raise CheckpointError(f"{source}: record '{name}' declares {info.file_size:,} bytes (limit "
                                  f"{MAX_RECORD_BYTES:,}); expected {expected}")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise CheckpointError(f"{source}: stored record '{name}' declares {info.file_size:,} bytes but occupies "
                                  f"{info.compress_size:,} (a damaged or forged zip); expected {expected}")
        if info.file_size > MAX_INFLATE_RATIO * info.compress_size + _SLACK:
            raise CheckpointError(f"{source}: record '{name}' would inflate {info.compress_size:,} bytes to "
                                  f"{info.file_size:,} (more than {MAX_INFLATE_RATIO}x): refused as a zip bomb; "
                                  f"expected {expected}")
        total += info.file_size
        fh.seek(info.header_offset)
        local = fh.read(_LOCAL_HEADER)
        if len(local) != _LOCAL_HEADER or local[:4] != b"PK\x03\x04":
            raise CheckpointError(f"{source}: the local header of record '{name}' is missing (truncated or forged "
                                  f"zip); expected {expected}")
        flags, _method, _t, _d, crc, csize, usize, nlen, elen = struct.unpack("<HHHHIIIHH", local[6:30])
        if not flags & 0x08 and csize != 0xFFFFFFFF and (csize, usize, crc) != (
                info.compress_size, info.file_size, info.CRC):
            raise CheckpointError(f"{source}: record '{name}' has sizes/CRC {usize}/{csize}/{crc:08x} in its local "
                                  f"header but {info.file_size}/{info.compress_size}/{info.CRC:08x} in the directory "
                                  f"(a forged zip); expected {expected}")
        spans.append((info.header_offset, info.header_offset + _LOCAL_HEADER + nlen + elen + info.compress_size,
                      name))
    if total > MAX_TOTAL_BYTES:
        raise CheckpointError(f"{source}: the zip's records add up to {total:,} bytes (limit {MAX_TOTAL_BYTES:,}); "
                              f"expected {expected}")
    spans.sort()
    directory = min(file_size, _directory_offset(zf, file_size))
    previous_stop, previous = 0, ""
    for start, stop, name in spans:
        if start < previous_stop:
            raise CheckpointError(f"{source}: zip records '{previous}' and '{name}' overlap (a zip bomb or forged "
                                  f"archive); expected {expected} with separate records")
        previous_stop, previous = stop, name
    if previous_stop > directory:
        raise CheckpointError(f"{source}: zip record '{previous}' runs past the start of the directory or the end of "
                              f"the file (truncated or spliced); expected {expected}")


def _directory_offset(zf: zipfile.ZipFile, file_size: int) -> int:
    """Where the central directory starts (zipfile keeps it as ``start_dir``)."""
    start = getattr(zf, "start_dir", None)
    return int(start) if isinstance(start, int) else file_size


def torch_zip_prefix(names: list[str], source: str, expected: str) -> str:
    """The folder (``'archive/'``) of a ``torch.save`` zip with these record names: exactly one
    ``<folder>/data.pkl`` and every record inside that folder; a TorchScript archive is refused."""
    if any(n.endswith("/constants.pkl") for n in names):
        raise CheckpointError(f"{source}: found a TorchScript archive (torch.jit.save), not a checkpoint; expected "
                              f"{expected}")
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(f"{source}: found a zip with {len(pickles)} '<folder>/data.pkl' records; expected "
                              f"{expected} with exactly one")
    prefix = pickles[0][: -len("data.pkl")]
    strays = [n for n in names if not n.startswith(prefix)]
    if strays:
        raise CheckpointError(f"{source}: found records outside the checkpoint folder {prefix!r}: {strays[:5]}; "
                              f"expected {expected}")
    return prefix
