"""The first check of every model file: a regular file of bounded size, never a FIFO, device or folder.

Opening a FIFO blocks until someone writes to it, a character device can be endless, and a symlink loop or a
folder fails with an OS message that names neither the model nor what was expected. :func:`check_model_file`
turns each of these into an error that does, before any byte is read. :func:`sniff_format` then tells the
container from the first bytes (the loader and the installer's format check both dispatch on it).
"""
from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

from ..errors import CheckpointError, MissingModelError

__all__ = ["LEGACY_TORCH_MAGIC", "MAX_MODEL_FILE_BYTES", "check_model_file", "container_of", "sniff_format"]

#: The largest model file read at all (the largest SimSwap file is ~0.3 GB; a studio's fine-tunes stay far below).
MAX_MODEL_FILE_BYTES = 16 * 1024 ** 3
#: The number the legacy (torch < 1.6) stream starts with, as its first pickle.
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_model_file(path: str | os.PathLike, expected: str, max_bytes: int = MAX_MODEL_FILE_BYTES) -> int:
    """Size in bytes of the regular file ``path``; never opens it.

    Raises :class:`MissingModelError` when nothing (or a folder) is there, and :class:`CheckpointError` naming the
    file, what it is and ``expected`` for a symlink loop, a FIFO, a device, a socket or a file over ``max_bytes``.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MissingModelError(f"{path} does not exist; expected {expected}") from None
    except OSError as exc:
        what = "a symbolic link loop" if exc.errno == errno.ELOOP else f"an unreadable path ({exc.strerror})"
        raise CheckpointError(f"{path}: found {what}, expected {expected}") from None
    if stat.S_ISDIR(info.st_mode):
        raise MissingModelError(f"{path} is a folder, not a file; expected {expected}")
    for test, what in _KINDS:
        if test(info.st_mode):
            raise CheckpointError(f"{path}: found {what}, not a regular file; expected {expected}")
    if not stat.S_ISREG(info.st_mode):
        raise CheckpointError(f"{path}: found a special file (mode {oct(info.st_mode)}), expected {expected}")
    if info.st_size > max_bytes:
        raise CheckpointError(f"{path}: found a {info.st_size}-byte file, larger than any model file this loader "
                              f"reads ({max_bytes} bytes); expected {expected}")
    return int(info.st_size)


def sniff_format(path: str | os.PathLike) -> str:
    """The container of the file ``path``, from its first 512 bytes: see :func:`container_of`."""
    with open(path, "rb") as fh:
        return container_of(fh.read(512))


def container_of(head: bytes) -> str:
    """"zip", "legacy" (any pickle: the torch legacy stream is checked for its magic number by the reader),
    "tar", "safetensors", "empty" or "unknown", from the first bytes of a file (at least 512 for "tar")."""
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
