"""Installing catalogue entries into a models folder: verify what is there, download what is missing, and keep
a record of first downloads.

Files without a published checksum get the size and sha256 of their first download recorded in
``<models>/simswap/.simswap-downloads.json``; later downloads and ``--check`` are verified against that record.
An existing file is never overwritten, moved or deleted: it is verified and reported, and a mismatch is refused
with an explanation. Standard library only.
"""
from __future__ import annotations

import datetime as _dt
import os
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingModelError
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
    publish,
    raise_all_failed,
    read_json,
    sha256_file,
    url_basename,
    write_json,
)
from .find import find_model, model_search_dirs

__all__ = ["InstallResult", "CheckResult", "LOCK_NAME", "install_model", "check_model", "read_lock", "lock_path",
           "mirror_urls"]

LOCK_NAME = ".simswap-downloads.json"


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


def _verify_existing(entry: ModelFile, path: Path, record: dict | None, lock: Path | None) -> tuple[str, int, str, str]:
    """(status, size, sha256, message) of an existing file against the published or recorded checksum."""
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
    return "unverified", size, digest, ("no published checksum and no download record to compare with; "
                                        f"sha256 {digest}")


def install_model(entry: ModelFile, models_dir: str | os.PathLike, *, extra_urls: Sequence[str] = (),
                  timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES, retry_wait: float = 1.0,
                  progress: bool = True, log: Callable[[str], None] = print) -> InstallResult:
    """Put ``entry`` at ``<models_dir>/<subfolder>/<filename>``: verify it if present, else download it.

    URLs tried: ``extra_urls`` (user mirrors) then ``entry.urls``. Archive URLs are downloaded next to the target
    as ``<archive>.part`` and deleted after the member was extracted. Raises ``ChecksumError`` if an existing file
    does not match (it is left untouched), ``DownloadError``/``ChecksumError`` if no URL gave the right file.
    """
    models_dir = Path(models_dir).expanduser()
    dest = models_dir / entry.subfolder / entry.filename
    record = read_lock(models_dir).get(entry.relpath)
    lock = lock_path(models_dir)
    if dest.exists():
        status, size, digest, why = _verify_existing(entry, dest, record, lock)
        if status == "mismatch":
            raise ChecksumError(f"{dest} already exists but {why}. It was NOT overwritten or deleted. If it is a "
                                f"file you want, keep it; to download the catalogue file instead, move it away "
                                f"first.")
        state = "present" if status.startswith("ok") else "present-unverified"
        return InstallResult(entry.name, dest, state, size, digest, f"{dest} already present: {why}")

    expected_sha = entry.sha256 or (record or {}).get("sha256")
    expected_size = entry.size if entry.size is not None else (record or {}).get("size")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[str, Exception]] = []
    urls = list(dict.fromkeys([*extra_urls, *entry.urls]))
    for url in urls:
        try:
            if entry.is_archive_url(url):
                part = dest.with_name(url_basename(url) + ".part")
                log(f"[{entry.name}] downloading {url} (archive holding {entry.archive_member})")
                res = fetch_url(url, part, size=entry.archive_size, sha256=entry.archive_sha256,
                                desc=url_basename(url), timeout=timeout, retries=retries, retry_wait=retry_wait,
                                progress=progress)
                tmp = dest.with_name(dest.name + ".extract.part")
                try:
                    size, digest = extract_member(res.path, entry.archive_member or entry.filename, tmp,
                                                  size=expected_size, sha256=expected_sha)
                except ChecksumError:
                    res.path.unlink(missing_ok=True)  # our own temp archive: a wrong one must not be reused
                    raise
                publish(tmp, dest)
                res.path.unlink(missing_ok=True)
                archive = {"url": url, "size": res.size, "sha256": res.sha256, "member": entry.archive_member}
            else:
                log(f"[{entry.name}] downloading {url}")
                res = fetch_url(url, dest.with_name(dest.name + ".part"), size=expected_size,
                                sha256=expected_sha, desc=entry.filename, timeout=timeout, retries=retries,
                                retry_wait=retry_wait, progress=progress)
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
            how = (f"no published checksum: recorded size {size:,} B and sha256 {digest} in {lock}; "
                   f"later copies are verified against this record")
        _record(models_dir, entry.relpath, {
            "name": entry.name, "size": size, "sha256": digest, "url": url, "archive": archive,
            "recorded": (record or {}).get("recorded", _now()),
            "checksum_source": "published" if entry.sha256 else ("first download" if not record else "record"),
        })
        return InstallResult(entry.name, dest, "downloaded", size, digest, f"{dest}: downloaded, {how}")
    try:
        raise_all_failed(f"{entry.filename} ({entry.name})", failures)
    except ChecksumError as e:
        if record and entry.sha256 is None:
            raise ChecksumError(f"{e}\nThe expected size/sha256 are those recorded at the first download in "
                                f"{lock}. If the upstream file legitimately changed, remove the "
                                f"'{entry.relpath}' entry from that file and run again.") from None
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
