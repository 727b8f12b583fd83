"""Checks made on an output path before any work: it is not one of the inputs, and its folder can be written.

    refuse_input_as_output("--out", out, [target, source])   # InputError if out IS an input (even with --overwrite)
    probe_writable("--out", out)                              # InputError naming out if its folder is not writable

"The same file" means ``os.path.samefile`` (hard links, symlinks, a different case on a case-insensitive disk)
or the same resolved path; an output inside an input folder counts as an input of that folder.
"""
from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError

__all__ = ["is_same_file", "is_inside", "refuse_input_as_output", "probe_writable"]

_PROBE_BYTES = 64 * 1024   # written and flushed by probe_writable, so a full disk fails before the run


def is_same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same file or folder (also through links or case differences)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` is ``folder`` or lies (after resolving links) anywhere below it."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    if p == f or f in p.parents:
        return True
    # a folder reached through another name (bind mount, case difference): compare the existing ancestors
    for ancestor in (p, *p.parents):
        if ancestor.exists():
            return any(is_same_file(a, f) for a in (ancestor, *ancestor.parents) if a.exists())
    return False


def refuse_input_as_output(flag: str, out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """InputError if ``out`` is one of ``inputs`` (files) or lies inside one of them (folders).

    This is refused whatever ``--overwrite`` says: the run reads the input while it writes the output.
    """
    out_path = Path(out)
    for item in inputs:
        if item is None:
            continue
        inp = Path(item)
        if not inp.exists():
            continue
        if inp.is_dir():
            if is_inside(out_path, inp):
                raise InputError(f"{flag} {out_path}: lies inside the input folder {inp}; the output must not "
                                 "be written where the inputs are read (choose another folder)")
        elif is_same_file(out_path, inp):
            raise InputError(f"{flag} {out_path}: is the input file {inp}; an input is never replaced, even with "
                             "--overwrite (choose another output name)")


def probe_writable(flag: str, out: str | os.PathLike, *, folder: bool = False) -> None:
    """InputError naming ``out`` unless a file can be created (and ``_PROBE_BYTES`` written) where ``out`` goes.

    folder=False: ``out`` is a file, probed in its parent folder; folder=True: ``out`` is a folder, probed inside
    it (or in the nearest existing parent when it does not exist yet). The probe file is removed again.
    """
    out_path = Path(out)
    where = out_path if folder else out_path.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        raise InputError(f"{flag} {out_path}: {where} is not a folder")
    probe = where / f".simswap-probe-{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            left = memoryview(b"\0" * _PROBE_BYTES)
            while left:                               # a short write means the limit is near: write the rest
                left = left[os.write(fd, left):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        reason = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise InputError(f"{flag} {out_path}: cannot write in {where} ({reason}); nothing was written") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
