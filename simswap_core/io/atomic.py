"""The one way this package writes a file: under a temporary name in the same folder, moved into place only
when complete, never replacing an existing file unless asked.

    atomic_write(path, lambda tmp: tmp.write_text("..."), overwrite=False)   # one call
    with AtomicFile(path) as f: ...write f.tmp...; f.commit()                   # streaming writers (video)
    publish(tmp, path)                                                          # a temp file made elsewhere

The temporary file is ``.<stem>.<random>.tmp<suffix>`` (it keeps the extension, so format sniffing by name
works), created with the permissions ``open()`` would give (umask applied), and removed if writing fails or is
interrupted (also by Ctrl-C), so a failed run never leaves a complete-looking file. Without ``overwrite`` a file
that already exists, or one that appears while writing, is never replaced: ``InputError`` ("already exists").
Standard library only (the model installer uses it before torch is installed).
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import InputError, OutputError

__all__ = ["AtomicFile", "atomic_write", "make_folders", "publish", "refuse_existing", "remove_empty_folders"]


def _exists_error(path: Path) -> InputError:
    return InputError(f"{path}: already exists; pass --overwrite (overwrite=True) to replace it")


def refuse_existing(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Raise the writer's InputError if ``path`` exists and ``overwrite`` is False (to fail before slow work)."""
    if not overwrite and os.path.lexists(path):
        raise _exists_error(Path(path))


def publish(tmp: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False,
            exists_error: Callable[[Path], Exception] = _exists_error) -> Path:
    """Move the finished ``tmp`` (same folder) onto ``path`` atomically; returns ``path``.

    Without ``overwrite`` an existing ``path`` (also one that appeared while writing) is never replaced: a hard link
    fails if it exists (no race); file systems without hard links get an existence check and ``os.replace``. Then
    ``exists_error(path)`` is raised (default: InputError "already exists") and ``tmp`` is left for the caller.
    """
    tmp, path = Path(tmp), Path(path)
    if overwrite:
        os.replace(tmp, path)
        return path
    try:
        os.link(tmp, path)                   # fails if `path` exists: never clobbers
    except FileExistsError:
        raise exists_error(path) from None
    except OSError:                          # file systems without hard links
        if os.path.lexists(path):
            raise exists_error(path) from None
        os.replace(tmp, path)
    else:
        tmp.unlink(missing_ok=True)
    return path


def _create_temp(path: Path) -> Path:
    """A new empty file ``.<stem>.<random>.tmp<suffix>`` next to ``path`` (mode 0o666 less the umask)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary file next to {path}")


def make_folders(folder: Path) -> list[Path]:
    """``folder.mkdir(parents=True)``; returns the folders it created, deepest first (for ``remove_empty_folders``)."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) that is empty; a folder with anything in it is kept."""
    for f in folders:
        try:
            f.rmdir()
        except OSError:
            break


class AtomicFile:
    """A temporary file next to ``path`` (``.tmp``), moved onto ``path`` by ``commit()``; ``abort()`` (or leaving
    the ``with`` block without ``commit()``, e.g. on an exception or Ctrl-C) removes it.

    Raises InputError at once if ``path`` exists and ``overwrite`` is False.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        refuse_existing(self.path, overwrite=overwrite)
        self.created_folders = make_folders(self.path.parent)
        self.tmp = _create_temp(self.path)
        self.done = False

    def commit(self) -> Path:
        """Move the temporary file onto ``path``; the temporary file is gone afterwards, also on failure."""
        try:
            return publish(self.tmp, self.path, overwrite=self.overwrite)
        finally:
            self.done = True
            self.tmp.unlink(missing_ok=True)

    def abort(self) -> None:
        """Remove the temporary file (and the folders made for it, when empty); ``path`` is not touched."""
        self.done = True
        self.tmp.unlink(missing_ok=True)
        remove_empty_folders(self.created_folders)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.done:
            self.abort()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)``, then move the temporary file onto ``path``; returns ``path``.

    Raises InputError ("already exists") if ``path`` exists, before or after writing, and ``overwrite`` is False;
    OutputError naming ``path`` (not the temporary file) if writing fails (disk full, permissions).
    """
    with AtomicFile(path, overwrite=overwrite) as f:
        try:
            write(f.tmp)
        except OSError as e:
            raise OutputError(f"{f.path}: could not be written ({e.strerror or e}); nothing was written") from e
        return f.commit()
