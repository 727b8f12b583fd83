"""Installing catalogue entries into a models folder: verify what is there, download what is missing, and keep
a record of first downloads.

Files without a published checksum get the size and sha256 of their first download recorded in
``<models>/simswap/.simswap-downloads.json``; later downloads and ``--check`` are verified against that record.
An existing file is never overwritten, moved or deleted: it is verified and reported, and a mismatch is refused
with an explanation. Every download must also pass the format check of its kind (:mod:`.file_checks`) before it
is published or its sha256 recorded, is bounded by its known size (else a cap per kind), and only one installer at
a time writes a given file (:func:`simswap_core.io.locks.target_lock`). Standard library only.
"""
from __future__ import annotations

import datetime as _dt
import os
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, MissingModelError
from ..io.locks import target_lock
from .catalogue import ModelFile
from .download import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ChecksumError,
    DownloadError,
    TargetExistsError,
    UrlFailed,
    extract_member,
    fetch_url,
    partial_note,
    publish,
    raise_all_failed,
    read_json,
    sha256_file,
    url_basename,
    write_json,
)
from .file_checks import check_file_format, format_of_name
from .find import find_model, model_search_dirs

__all__ = ["InstallResult", "CheckResult", "LOCK_NAME", "MAX_BYTES", "install_model", "check_model", "read_lock",
           "lock_path", "mirror_urls", "forget_record"]

LOCK_NAME = ".simswap-downloads.json"

_GIB = 1 << 30
#: The most bytes a download of each kind may have when no size is published or recorded (the largest known
#: files: the 2021 arcface_checkpoint.tar ~730 MiB, checkpoints.zip ~245 MiB; SAM's sam_vit_h_4b8939.pth ~2.4 GiB);
#: "archive" is a zip/wheel source.
MAX_BYTES: dict[str, int] = {"generator": 2 * _GIB, "arcface": 2 * _GIB, "parser": 1 * _GIB, "detector": 1 * _GIB,
                             "sam": 3 * _GIB, "archive": 4 * _GIB}


@dataclass(frozen=True)
class InstallResult:
    name: str
    path: Path
    status: str  # "downloaded" | "present" (verified) | "present-unverified"
    size: int
    sha256: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    name: str
    path: Path | None
    status: str  # "ok" | "ok-recorded" | "unverified" | "mismatch" | "missing"
    message: str


# ---------------------------------------------------------------------------------------------------- lock file


def lock_path(models_dir: str | os.PathLike) -> Path:
    """``<models_dir>/simswap/.simswap-downloads.json``: sizes and sha256 of first downloads."""
    return Path(models_dir) / "simswap" / LOCK_NAME


def read_lock(models_dir: str | os.PathLike) -> dict[str, dict]:
    """Records keyed by ``subfolder/filename`` (empty if there is no lock file)."""
    data = read_json(lock_path(models_dir)) or {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _record(models_dir: Path, relpath: str, record: dict) -> Path:
    path = lock_path(models_dir)
    data = read_json(path) or {}
    files = data.get("files")
    if not isinstance(files, dict):
        files = {}
    files[relpath] = record
    write_json(path, {"format": 1, "about": "sha256 and size of model files downloaded by install.py; "
                      "files without a published checksum are verified against these records", "files": files})
    return path


def forget_record(entry: ModelFile, models_dir: str | os.PathLike) -> dict | None:
    """Remove ``entry``'s first-download record from ``models_dir``'s record file; returns the removed record."""
    path = lock_path(models_dir)
    data = read_json(path) or {}
    files = data.get("files")
    if not isinstance(files, dict) or entry.relpath not in files:
        return None
    removed = files.pop(entry.relpath)
    write_json(path, data)
    return removed if isinstance(removed, dict) else {}


def _record_for(path: Path, search_dirs: Iterable[Path]) -> tuple[dict | None, Path | None]:
    """The lock record of an existing file: looked up in the lock of each search dir that contains it."""
    rp = os.path.abspath(path)
    for folder in search_dirs:
        root = os.path.abspath(folder)
        if rp.startswith(root.rstrip(os.sep) + os.sep):
            rel = Path(os.path.relpath(rp, root)).as_posix()
            rec = read_lock(root).get(rel)
            if rec:
                return rec, lock_path(root)
    return None, None


# ---------------------------------------------------------------------------------------------------- installing


def mirror_urls(entry: ModelFile, prefixes: Sequence[str]) -> list[str]:
    """URLs under each mirror prefix: ``<prefix>/<filename>`` and ``<prefix>/<name of each official asset>``.

    A prefix may also be a local folder, turned into a ``file://`` URL.
    """
    names = [entry.filename] + [url_basename(u) for u in entry.urls]
    out: list[str] = []
    for prefix in prefixes:
        if "://" not in prefix:
            prefix = Path(prefix).expanduser().resolve().as_uri()
        for name in names:
            url = prefix.rstrip("/") + "/" + urllib.parse.quote(name)
            if url not in out:
                out.append(url)
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _format_problem(entry: ModelFile, path: Path) -> str | None:
    """Why ``path`` is not a well-formed file of ``entry``'s format (None if it is, or the format is unknown)."""
    fmt = format_of_name(entry.filename)
    if fmt is None:
        return None
    try:
        check_file_format(path, fmt, source=str(path))
    except CheckpointError as e:
        return str(e)
    return None


def _verify_existing(entry: ModelFile, path: Path, record: dict | None, lock: Path | None) -> tuple[str, int, str, str]:
    """(status, size, sha256, message) of an existing file against the published or recorded checksum; a file
    with neither is at least checked for the format of its kind."""
    size = path.stat().st_size
    digest = sha256_file(path)
    if entry.sha256 is not None:
        if digest == entry.sha256 and (entry.size is None or size == entry.size):
            return "ok", size, digest, "matches the published sha256"
        return "mismatch", size, digest, (f"sha256 {digest} ({size:,} B) differs from the published "
                                          f"{entry.sha256}" + (f" ({entry.size:,} B)" if entry.size else ""))
    if record and record.get("sha256"):
        if digest == record["sha256"] and size == record.get("size", size):
            return "ok-recorded", size, digest, f"matches the sha256 recorded at its first download ({lock})"
        return "mismatch", size, digest, (f"sha256 {digest} ({size:,} B) differs from the sha256 "
                                          f"{record['sha256']} recorded at its first download in {lock}")
    if entry.size is not None and size != entry.size:
        return "mismatch", size, digest, f"size {size:,} B differs from the published {entry.size:,} B"
    problem = _format_problem(entry, path)
    if problem is not None:
        return "mismatch", size, digest, f"it is not a usable model file: {problem}"
    return "unverified", size, digest, ("no published checksum and no download record to compare with (its format "
                                        f"is valid); sha256 {digest}")


def _check_for(entry: ModelFile) -> Callable[[Path], object] | None:
    """The format check of ``entry``'s file, as ``fetch_url``'s ``check`` argument."""
    fmt = format_of_name(entry.filename)
    if fmt is None:
        return None
    return lambda path: check_file_format(path, fmt, source=f"the download of {entry.filename}")


def _archive_check(path: Path) -> object:
    return check_file_format(path, "zip", source=f"the downloaded archive {path.name.removesuffix('.part')}")


def install_model(entry: ModelFile, models_dir: str | os.PathLike, *, extra_urls: Sequence[str] = (),
                  timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES, retry_wait: float = 1.0,
                  progress: bool = True, log: Callable[[str], None] = print,
                  wait: bool | float = True) -> InstallResult:
    """Put ``entry`` at ``<models_dir>/<subfolder>/<filename>``: verify it if present, else download it.

    URLs tried: ``extra_urls`` (user mirrors) then ``entry.urls``. Archive URLs are downloaded next to the target
    as ``<archive>.part`` and deleted after the member was extracted. Every download is bounded by its known size
    (else :data:`MAX_BYTES` of its kind) and must pass the format check of its kind before it is published or
    recorded. One installer at a time per target: another one holding it is waited for (``wait``: True, False or
    seconds; see :func:`simswap_core.io.locks.target_lock`), then the file it wrote is verified. Raises
    ``ChecksumError`` if an existing file does not match (it is left untouched), ``DownloadError``/
    ``ChecksumError`` if no URL gave the right file, ``TargetLockedError`` if refused by the lock.
    """
    models_dir = Path(models_dir).expanduser()
    dest = models_dir / entry.subfolder / entry.filename
    if dest.exists():  # verified without the lock: a file under its final name is complete (read-only shares work)
        return _existing(entry, models_dir, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with target_lock(dest, wait=wait, label="SimSwap installer", log=log):
        if dest.exists():  # another installer wrote it while we waited
            return _existing(entry, models_dir, dest)
        return _download_locked(entry, models_dir, dest, extra_urls=extra_urls, timeout=timeout, retries=retries,
                                retry_wait=retry_wait, progress=progress, log=log)


def _existing(entry: ModelFile, models_dir: Path, dest: Path) -> InstallResult:
    """The result for a file already at ``dest``, verified; a mismatch raises ChecksumError (the file is kept)."""
    status, size, digest, why = _verify_existing(entry, dest, read_lock(models_dir).get(entry.relpath),
                                                 lock_path(models_dir))
    if status == "mismatch":
        raise ChecksumError(f"{dest} already exists but {why}. It was NOT overwritten or deleted. If it is a "
                            f"file you want, keep it; to download the catalogue file instead, move it away first.")
    state = "present" if status.startswith("ok") else "present-unverified"
    return InstallResult(entry.name, dest, state, size, digest, f"{dest} already present: {why}")


def _download_locked(entry: ModelFile, models_dir: Path, dest: Path, *, extra_urls: Sequence[str], timeout: float,
                     retries: int, retry_wait: float, progress: bool, log: Callable[[str], None]) -> InstallResult:
    """Download ``entry`` to the absent ``dest`` (the caller holds its lock), then record it."""
    record = read_lock(models_dir).get(entry.relpath)
    lock = lock_path(models_dir)

    expected_sha = entry.sha256 or (record or {}).get("sha256")
    expected_size = entry.size if entry.size is not None else (record or {}).get("size")
    cap = MAX_BYTES.get(entry.kind, MAX_BYTES["generator"])
    failures: list[tuple[str, Exception]] = []
    parts: list[Path] = []
    urls = list(dict.fromkeys([*extra_urls, *entry.urls]))
    for url in urls:
        try:
            if entry.is_archive_url(url):
                part = dest.with_name(url_basename(url) + ".part")
                parts.append(part)
                log(f"[{entry.name}] downloading {url} (archive holding {entry.archive_member})")
                with target_lock(part, wait=True, label="SimSwap installer", log=log):
                    res = fetch_url(url, part, size=entry.archive_size, sha256=entry.archive_sha256,
                                    desc=url_basename(url), timeout=timeout, retries=retries,
                                    retry_wait=retry_wait, progress=progress, max_size=MAX_BYTES["archive"],
                                    check=_archive_check)
                    tmp = dest.with_name(dest.name + ".extract.part")
                    try:
                        size, digest = extract_member(res.path, entry.archive_member or entry.filename, tmp,
                                                      size=expected_size, sha256=expected_sha, max_size=cap)
                    except ChecksumError:
                        res.path.unlink(missing_ok=True)  # our own temp archive: a wrong one must not be reused
                        raise
                    problem = _format_problem(entry, tmp)
                    if problem is not None:
                        tmp.unlink(missing_ok=True)
                        res.path.unlink(missing_ok=True)
                        raise UrlFailed(f"the archive member {entry.archive_member} is not a valid model file: "
                                        f"{problem}", checksum=True)
                    publish(tmp, dest)
                    res.path.unlink(missing_ok=True)
                archive = {"url": url, "size": res.size, "sha256": res.sha256, "member": entry.archive_member}
            else:
                log(f"[{entry.name}] downloading {url}")
                part = dest.with_name(dest.name + ".part")
                parts.append(part)
                res = fetch_url(url, part, size=expected_size, sha256=expected_sha, desc=entry.filename,
                                timeout=timeout, retries=retries, retry_wait=retry_wait, progress=progress,
                                max_size=cap, check=_check_for(entry))
                publish(res.path, dest)
                size, digest, archive = res.size, res.sha256, None
        except TargetExistsError:
            raise
        except (UrlFailed, ChecksumError) as e:
            failures.append((url, e))
            continue
        if entry.sha256 is not None:
            how = "matches the published sha256"
        elif record:
            how = f"matches the sha256 recorded at the first download ({lock})"
        else:
            how = (f"no published checksum: its format was checked, then size {size:,} B and sha256 {digest} "
                   f"were recorded in {lock}; later copies are verified against this record")
        _record(models_dir, entry.relpath, {
            "name": entry.name, "size": size, "sha256": digest, "url": url, "archive": archive,
            "recorded": (record or {}).get("recorded", _now()),
            "checksum_source": "published" if entry.sha256 else ("first download" if not record else "record"),
        })
        return InstallResult(entry.name, dest, "downloaded", size, digest, f"{dest}: downloaded, {how}")
    note = partial_note(list(dict.fromkeys(parts)))
    try:
        raise_all_failed(f"{entry.filename} ({entry.name})", failures, note)
    except ChecksumError as e:
        if record and entry.sha256 is None:
            rec_size = record.get("size")
            shown = f"{rec_size:,} B" if isinstance(rec_size, int) else "size not recorded"
            raise ChecksumError(
                f"{e}\nThe expected size/sha256 ({shown}, {record.get('sha256')}) are those "
                f"recorded at the first download of {entry.relpath} on {record.get('recorded', '?')} from "
                f"{record.get('url', '?')}, kept in {lock}. If the upstream file legitimately changed, forget that "
                f"record with 'python install.py --forget-record {entry.name} --models-dir {models_dir}' (or "
                f"remove the '{entry.relpath}' entry from that file) and run again.") from None
        raise
    except DownloadError as e:
        names = sorted({entry.filename, *(url_basename(u) for u in entry.urls)})
        raise DownloadError(f"{e}\nIf these sources are unreachable, get the file elsewhere and put it at {dest} "
                            f"(or pass --mirror with a URL prefix or folder holding one of: {', '.join(names)}).") \
            from None
    raise AssertionError("unreachable")


def check_model(entry: ModelFile, search_dirs: Sequence[str | os.PathLike] | None = None) -> CheckResult:
    """Verify the file ``find_model`` would use for ``entry`` against its published or recorded sha256."""
    dirs = model_search_dirs(search_dirs)
    try:
        path = find_model(entry.name, search_dirs=search_dirs)
    except MissingModelError:
        return CheckResult(entry.name, None, "missing", "not found")
    record, lock = _record_for(path, dirs)
    status, size, digest, why = _verify_existing(entry, path, record, lock)
    return CheckResult(entry.name, path, status, why)
