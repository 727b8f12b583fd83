"""One writer at a time per target file, across processes: ``with target_lock(path): ...``.

The lock is an advisory OS lock (``fcntl.flock``; ``msvcrt.locking`` on Windows) on a lock file beside the target,
``.<name>.lock``, which holds the owner's pid and label so a second process can say who it is waiting for. The
operating system releases the lock when its process dies (also on SIGKILL), so a crashed writer never leaves a
lock that blocks the next run; the lock file itself is removed on release. Standard library only (the model
installer uses it before torch is installed).
"""
from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SimSwapError

__all__ = ["TargetLockedError", "lock_file_for", "target_lock"]

_POLL_S = 0.1


class TargetLockedError(SimSwapError, OSError):
    """Another process holds the lock of the target (the message names the file and that process)."""


def lock_file_for(path: str | os.PathLike) -> Path:
    """The lock file of ``path``: ``.<name>.lock`` in the same folder."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

    _OWNER_OFFSET = 1  # byte 0 is the locked byte; Windows refuses reads of a locked range

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

    _OWNER_OFFSET = 0


def _holder(lock: Path) -> str:
    """``pid N on HOST (label)`` as written by the holder, or ``pid unknown`` while it has not written it yet."""
    try:
        with open(lock, "rb") as f:
            f.seek(_OWNER_OFFSET)
            text = f.read(300).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def _same_file(fd: int, lock: Path) -> bool:
    """True when ``fd`` is still the file named ``lock`` (a releasing holder may have unlinked it meanwhile)."""
    try:
        st = os.stat(lock)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


@contextmanager
def target_lock(path: str | os.PathLike, *, wait: bool | float = True, label: str = "simswap",
                log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the lock of ``path`` for the ``with`` block; yields the lock file's path.

    ``wait``: True waits as long as needed, False refuses at once, a number waits at most that many seconds.
    While waiting, ``log`` (if given) gets one line naming the file and the process holding it. Refusal or timeout
    raises :class:`TargetLockedError` naming both. The folder of ``path`` must exist.
    """
    target = Path(path)
    lock = lock_file_for(target)
    deadline = None if wait is True or wait is False else time.monotonic() + float(wait)
    told = False
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise TargetLockedError(f"cannot create the lock file {lock} for {target}: {e.strerror or e} (is "
                                    f"{target.parent} writable?)") from None
        if _try_lock(fd):
            if _same_file(fd, lock):
                break
            os.close(fd)  # the previous holder removed that lock file as we locked it: lock the new one
            continue
        os.close(fd)
        holder = _holder(lock)
        if wait is False or (deadline is not None and time.monotonic() >= deadline):
            waited = "" if wait is False else f" after waiting {float(wait):g} s"
            raise TargetLockedError(f"{target} is being written by another process ({holder}); refused{waited}. "
                                    f"Let it finish, or stop it, then run again (its lock file is {lock}).")
        if not told and log is not None:
            log(f"{target} is being written by another process ({holder}); waiting for it to finish...")
            told = True
        time.sleep(_POLL_S)
    try:
        owner = f"pid {os.getpid()} on {socket.gethostname()} ({label})\n".encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, _OWNER_OFFSET, os.SEEK_SET)
        os.write(fd, owner)
        yield lock
    finally:
        try:
            lock.unlink()  # while still holding it: a waiter then re-opens a fresh file (checked by _same_file)
        except OSError:
            pass
        try:
            _unlock(fd)
        finally:
            os.close(fd)
