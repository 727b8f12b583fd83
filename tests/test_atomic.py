"""simswap_core.io.atomic: the one atomic writer (temporary file in the same folder, moved into place when
complete, never replacing an existing file unless asked, the temporary file removed on any failure)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from simswap_core.errors import InputError
from simswap_core.io.atomic import AtomicFile, atomic_write, publish, refuse_existing


def _only(folder: Path) -> list[str]:
    """Every name in ``folder`` (temporary files start with a dot, so list them all)."""
    return sorted(p.name for p in folder.iterdir())


def test_writes_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    assert atomic_write(target, lambda tmp: tmp.write_text("hello")) == target
    assert target.read_text() == "hello" and _only(target.parent) == ["out.txt"]


def test_temporary_keeps_the_extension_and_sits_next_to_the_target(tmp_path):
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.exists()                    # created empty, ready to be written
        tmp.write_bytes(b"x")

    atomic_write(tmp_path / "photo.final.png", write)
    tmp = seen[0]
    assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".photo.final.")
    assert ".tmp" in tmp.name and not tmp.exists()


def test_an_existing_file_is_kept(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("mine")
    called = []
    with pytest.raises(InputError, match="already exists"):
        atomic_write(target, lambda tmp: called.append(tmp))
    assert target.read_text() == "mine" and not called and _only(tmp_path) == ["out.txt"]
    with pytest.raises(InputError, match="already exists"):
        refuse_existing(target)
    refuse_existing(target, overwrite=True)
    refuse_existing(tmp_path / "other.txt")


def test_overwrite_replaces(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic_write(target, lambda tmp: tmp.write_text("new"), overwrite=True)
    assert target.read_text() == "new" and _only(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_temporary_removed_when_writing_fails(tmp_path, error):
    target = tmp_path / "out.bin"

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, write)
    assert _only(tmp_path) == []


def test_a_target_that_appears_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "out.txt"

    def write(tmp: Path) -> None:
        tmp.write_text("ours")
        target.write_text("theirs")            # another process finished first

    with pytest.raises(InputError, match="already exists"):
        atomic_write(target, write)
    assert target.read_text() == "theirs" and _only(tmp_path) == ["out.txt"]
    atomic_write(target, write, overwrite=True)
    assert target.read_text() == "ours" and _only(tmp_path) == ["out.txt"]


def test_without_hard_links_an_existing_target_is_still_refused(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "hard links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "out.txt"

    def write(tmp: Path) -> None:
        tmp.write_text("ours")
        target.write_text("theirs")

    with pytest.raises(InputError, match="already exists"):
        atomic_write(target, write)
    assert target.read_text() == "theirs" and _only(tmp_path) == ["out.txt"]
    target.unlink()
    atomic_write(target, lambda tmp: tmp.write_text("ours"))
    assert target.read_text() == "ours" and _only(tmp_path) == ["out.txt"]


def test_atomic_file_commit_and_abort(tmp_path):
    target = tmp_path / "clip.mp4"
    with AtomicFile(target) as f:
        f.tmp.write_bytes(b"frames")
        assert not target.exists()
        assert f.commit() == target
    assert target.read_bytes() == b"frames" and _only(tmp_path) == ["clip.mp4"]
    with pytest.raises(InputError, match="already exists"):
        AtomicFile(target)
    with pytest.raises(KeyboardInterrupt), AtomicFile(target, overwrite=True) as f:
        f.tmp.write_bytes(b"partial")
        raise KeyboardInterrupt                # leaving the block without commit(): temporary removed
    assert target.read_bytes() == b"frames" and _only(tmp_path) == ["clip.mp4"]
    f = AtomicFile(tmp_path / "other.mp4")
    f.abort()
    assert _only(tmp_path) == ["clip.mp4"]


def test_publish_keeps_the_temporary_when_refused_and_accepts_an_error_factory(tmp_path):
    tmp, dest = tmp_path / "a.part", tmp_path / "a.pth"
    tmp.write_bytes(b"new")
    dest.write_bytes(b"user")
    with pytest.raises(FileExistsError, match="custom"):
        publish(tmp, dest, exists_error=lambda p: FileExistsError(f"custom {p}"))
    assert tmp.read_bytes() == b"new" and dest.read_bytes() == b"user"
    dest.unlink()
    assert publish(tmp, dest) == dest and dest.read_bytes() == b"new" and not tmp.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_files_get_the_permissions_open_would_give(tmp_path):
    old = os.umask(0o022)
    try:
        target = atomic_write(tmp_path / "out.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644
