"""Download model files safely: mirrors, HTTP Range resume, size/sha256 checks, zip members, atomic no-clobber.

Standard library only (``urllib``); ``tqdm`` draws progress bars when installed. Guarantees:

* a download is written to ``<file>.part`` in the target folder and only appears under its final name (hard link,
  or ``os.replace`` where the file system has no hard links) after its size and sha256 were checked, so an
  interrupted or wrong download never leaves a file at the target path;
* an existing file at the target path is never overwritten, moved or deleted: it is verified and reported, and a
  mismatch is refused with an explanation;
* a ``.part`` file is resumed with an HTTP Range request (``If-Range`` guarded) on the next attempt or run;
* files without a published checksum get the size and sha256 of their first download recorded in
  ``<models>/simswap/.simswap-downloads.json``; later downloads and ``--check`` are verified against that record.

``main`` is the installer CLI (``python install.py ...`` or ``python -m simswap_core.download ...``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import CheckpointError, InputError, MissingModelError, SimSwapError
from . import model_files as _mf
from .model_files import ModelFile

__all__ = [
    "DownloadError",
    "ChecksumError",
    "TargetExistsError",
    "FetchResult",
    "InstallResult",
    "CheckResult",
    "LOCK_NAME",
    "sha256_file",
    "fetch",
    "extract_member",
    "publish",
    "download_file",
    "install_model",
    "check_model",
    "read_lock",
    "lock_path",
    "mirror_urls",
    "main",
]

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
USER_AGENT = "ComfyUI-SimSwap-installer/0.1 (python-urllib)"
LOCK_NAME = ".simswap-downloads.json"
_RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}


class DownloadError(SimSwapError, OSError):
    """A file could not be downloaded from any of its URLs (each URL's failure is in the message)."""


class ChecksumError(DownloadError, CheckpointError):
    """Downloaded or existing data does not have the expected size or sha256."""


class TargetExistsError(DownloadError, FileExistsError):
    """The target path already holds a file; it was left untouched."""


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size: int
    sha256: str
    url: str


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


class _UrlFailed(Exception):
    """One URL failed (internal; collected into DownloadError)."""

    def __init__(self, message: str, *, checksum: bool = False):
        super().__init__(message)
        self.checksum = checksum


# ---------------------------------------------------------------------------------------------------- helpers


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "unknown"
    units = ["B", "KiB", "MiB", "GiB"]
    v = float(n)
    for u in units:
        if v < 1024 or u == units[-1]:
            return f"{n:,} B" if u == "B" else f"{v:.1f} {u} ({n:,} B)"
        v /= 1024
    return f"{n:,} B"


def _unlink_quiet(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write our own bookkeeping file (never a model file) via a temp file + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)


def _parse_content_range(value: str | None) -> tuple[int, int, int | None] | None:
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    total = None if m.group(3) == "*" else int(m.group(3))
    return int(m.group(1)), int(m.group(2)), total


def _unsatisfied_total(value: str | None) -> int | None:
    m = re.match(r"bytes\s+\*/(\d+)", value or "", re.I)
    return int(m.group(1)) if m else None


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a declared dependency; without it we simply show no bar
        return None
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                file=sys.stderr, leave=False, dynamic_ncols=True)


def _is_transient(exc: BaseException) -> bool:
    """Timeouts and dropped connections are retried; DNS failures and refused connections are not."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, (TimeoutError, socket.timeout, ConnectionResetError, ConnectionAbortedError,
                               BrokenPipeError, http.client.HTTPException))


# ---------------------------------------------------------------------------------------------------- fetching


def _fetch_one(url: str, part: Path, *, size: int | None, sha256: str | None, timeout: float, retries: int,
               retry_wait: float, progress: bool, desc: str) -> FetchResult:
    meta_path = _meta_path(part)
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        meta = _read_json(meta_path) or {}
        if offset and meta.get("url") != url and sha256 is None:
            offset = 0  # a .part from another source can only be trusted when a published checksum guards it
        if size is not None and offset > size:
            offset = 0
        if size is not None and offset == size and offset > 0:
            break  # already complete (e.g. interrupted just before verification)
        if offset == 0:
            _unlink_quiet(part, meta_path)

        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
            validator = meta.get("etag") if str(meta.get("etag") or "").startswith('"') else meta.get("last_modified")
            if validator and meta.get("url") == url:
                req.add_header("If-Range", validator)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:
                total = _unsatisfied_total(e.headers.get("Content-Range") if e.headers else None)
                e.close()
                if total == offset or (total is None and size == offset):
                    break  # the .part already holds the whole file
                _unlink_quiet(part, meta_path)
                failures += 1
                if failures > retries:
                    raise _UrlFailed("HTTP 416 (range not satisfiable) repeatedly") from None
                continue
            e.close()
            if e.code in _RETRY_HTTP and failures < retries:
                failures += 1
                time.sleep(retry_wait * failures)
                continue
            raise _UrlFailed(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            if _is_transient(e) and failures < retries:
                failures += 1
                time.sleep(retry_wait * failures)
                continue
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            raise _UrlFailed(f"could not connect: {reason}") from None

        with resp:
            status = getattr(resp, "status", None) or 200  # file:// responses carry no status
            headers = resp.headers
            ctype = (headers.get("Content-Type") or "").lower()
            if ctype.startswith("text/html"):
                raise _UrlFailed("the server returned an HTML page (an error, login or quota page), not the file")
            if status == 206 and offset:
                cr = _parse_content_range(headers.get("Content-Range"))
                if cr is None or cr[0] != offset:
                    _unlink_quiet(part, meta_path)  # unusable partial response: start over
                    failures += 1
                    if failures > retries:
                        raise _UrlFailed("the server answered the Range request with a wrong Content-Range")
                    continue
                total = cr[2]
                mode = "ab"
            else:
                if offset:  # the server ignored the Range (or If-Range found the file changed): restart
                    offset = 0
                length = headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            if size is not None and total is not None and total != size:
                _unlink_quiet(part, meta_path)
                raise _UrlFailed(f"the server reports {total:,} bytes, expected {size:,}", checksum=True)
            if mode == "wb" or not meta_path.exists():
                _write_json_atomic(meta_path, {
                    "url": url, "etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified"),
                    "total": total,
                })
            part.parent.mkdir(parents=True, exist_ok=True)
            bar = _progress_bar(total, offset, desc, progress)
            dropped: BaseException | None = None
            try:
                # read1 returns what has arrived, so a timeout or reset loses nothing already received
                read = getattr(resp, "read1", resp.read)
                with open(part, mode) as f:
                    while True:
                        try:
                            block = read(CHUNK)
                        except (OSError, http.client.HTTPException) as e:  # timeout, reset, incomplete chunk
                            dropped = e
                            break
                        if not block:
                            break
                        f.write(block)
                        if bar is not None:
                            bar.update(len(block))
            finally:
                if bar is not None:
                    bar.close()
        got = part.stat().st_size
        if total is not None and got > total:
            _unlink_quiet(part, meta_path)
            raise _UrlFailed(f"the server sent {got:,} bytes, more than the announced {total:,}")
        if (total is not None and got < total) or dropped is not None:
            failures += 1
            if failures > retries:
                what = f"{got:,} of {total:,} bytes" if total is not None else f"{got:,} bytes"
                raise _UrlFailed(f"the connection dropped after {what} ({dropped or 'closed early'}); "
                                 f"the partial download is kept in {part} and is resumed by the next run")
            time.sleep(retry_wait * failures)
            continue
        break

    got = part.stat().st_size
    if size is not None and got != size:
        _unlink_quiet(part, meta_path)
        raise _UrlFailed(f"size {got:,} bytes, expected {size:,}", checksum=True)
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        _unlink_quiet(part, meta_path)
        raise _UrlFailed(f"sha256 {digest}, expected {sha256.lower()}", checksum=True)
    _unlink_quiet(meta_path)
    return FetchResult(part, got, digest, url)


def _raise_all_failed(what: str, failures: list[tuple[str, _UrlFailed | Exception]]) -> None:
    lines = [f"Could not download {what}:"]
    lines += [f"  {url}: {err}" for url, err in failures]
    msg = "\n".join(lines)
    if failures and all(getattr(err, "checksum", False) or isinstance(err, ChecksumError) for _, err in failures):
        raise ChecksumError(msg + "\nNothing was written at the target path.")
    raise DownloadError(msg)


def fetch(urls: Sequence[str], part: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
          timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES, retry_wait: float = 1.0,
          progress: bool = True, desc: str | None = None) -> FetchResult:
    """Download the first URL that works into ``part`` (resuming an existing ``part``), then check size and sha256.

    Each URL is tried in turn; a dropped connection is resumed up to ``retries`` times per URL. A wrong size or
    sha256 deletes ``part`` and moves on to the next URL. Raises ``ChecksumError`` when every URL gave wrong data,
    ``DownloadError`` otherwise. ``part`` is left in place on success (the caller publishes it).
    """
    part = Path(part)
    if not urls:
        raise InputError("fetch needs at least one URL")
    failures: list[tuple[str, _UrlFailed]] = []
    for url in urls:
        try:
            return _fetch_one(url, part, size=size, sha256=sha256, timeout=timeout, retries=retries,
                              retry_wait=retry_wait, progress=progress, desc=desc or part.name)
        except _UrlFailed as e:
            failures.append((url, e))
    _raise_all_failed(part.name.removesuffix(".part"), failures)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------- archives


def _pick_member(z: zipfile.ZipFile, member: str) -> zipfile.ZipInfo:
    infos = [i for i in z.infolist() if not i.is_dir()]
    for info in infos:
        if info.filename == member:
            return info
    base = member.rsplit("/", 1)[-1]
    same = [i for i in infos if i.filename.rsplit("/", 1)[-1] == base]
    if len(same) == 1:
        return same[0]
    names = [i.filename for i in infos]
    shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
    if not same:
        raise ChecksumError(f"the archive has no member '{member}' (nor any file named '{base}'); it holds: {shown}")
    raise ChecksumError(f"the archive holds several files named '{base}' and none is exactly '{member}': "
                        + ", ".join(i.filename for i in same))


def extract_member(archive: str | os.PathLike, member: str, out: str | os.PathLike, *, size: int | None = None,
                   sha256: str | None = None) -> tuple[int, str]:
    """Copy one zip member to ``out`` (a temp path), checking size and sha256; returns ``(size, sha256)``.

    ``member`` is matched exactly, else by base name when exactly one file has that name. On a mismatch ``out``
    is deleted and ``ChecksumError`` raised.
    """
    out = Path(out)
    try:
        z = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise ChecksumError(f"{archive} is not a readable zip archive: {e}") from None
    with z:
        info = _pick_member(z, member)
        if size is not None and info.file_size != size:
            raise ChecksumError(f"archive member {info.filename} is {info.file_size:,} bytes, expected {size:,}")
        h = hashlib.sha256()
        n = 0
        try:
            with z.open(info) as src, open(out, "wb") as dst:
                while True:
                    block = src.read(CHUNK)
                    if not block:
                        break
                    h.update(block)
                    dst.write(block)
                    n += len(block)
        except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC errors are BadZipFile
            _unlink_quiet(out)
            raise ChecksumError(f"could not extract {info.filename} from {archive}: {e}") from None
    digest = h.hexdigest()
    if (size is not None and n != size) or (sha256 is not None and digest != sha256.lower()):
        _unlink_quiet(out)
        raise ChecksumError(f"archive member {info.filename}: got {n:,} bytes sha256 {digest}, expected "
                            f"{'?' if size is None else format(size, ',')} bytes sha256 {sha256 or '?'}")
    return n, digest


# ---------------------------------------------------------------------------------------------------- publishing


def publish(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Move a verified temp file (same folder) to ``dest`` atomically, never replacing an existing ``dest``.

    Uses a hard link (fails if ``dest`` exists, no race) and falls back to ``os.replace`` after an existence check
    on file systems without hard links. Raises ``TargetExistsError`` (the temp file is kept) if ``dest`` exists.
    """
    tmp, dest = Path(tmp), Path(dest)
    if dest.exists() or dest.is_symlink():
        raise TargetExistsError(f"{dest} already exists; it was not touched (the new download is kept in {tmp})")
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise TargetExistsError(f"{dest} appeared during the download; it was not touched "
                                f"(the new download is kept in {tmp})") from None
    except OSError:  # no hard links here (FAT, some network shares): plain atomic rename
        if dest.exists():
            raise TargetExistsError(f"{dest} already exists; it was not touched") from None
        os.replace(tmp, dest)
        return dest
    os.unlink(tmp)
    return dest


def download_file(urls: Sequence[str], dest: str | os.PathLike, *, size: int | None = None,
                  sha256: str | None = None, **kwargs) -> FetchResult:
    """Download ``dest`` from the first working URL via ``dest.part``; refuses if ``dest`` exists."""
    dest = Path(dest)
    if dest.exists():
        raise TargetExistsError(f"{dest} already exists; it was not touched")
    dest.parent.mkdir(parents=True, exist_ok=True)
    res = fetch(urls, dest.with_name(dest.name + ".part"), size=size, sha256=sha256, **kwargs)
    publish(res.path, dest)
    return FetchResult(dest, res.size, res.sha256, res.url)


# ---------------------------------------------------------------------------------------------------- lock file


def lock_path(models_dir: str | os.PathLike) -> Path:
    """``<models_dir>/simswap/.simswap-downloads.json``: sizes and sha256 of first downloads."""
    return Path(models_dir) / "simswap" / LOCK_NAME


def read_lock(models_dir: str | os.PathLike) -> dict[str, dict]:
    """Records keyed by ``subfolder/filename`` (empty if there is no lock file)."""
    data = _read_json(lock_path(models_dir)) or {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _record(models_dir: Path, relpath: str, record: dict) -> Path:
    path = lock_path(models_dir)
    data = _read_json(path) or {}
    files = data.get("files") if isinstance(data.get("files"), dict) else {}
    files[relpath] = record
    _write_json_atomic(path, {"format": 1, "about": "sha256 and size of model files downloaded by install.py; "
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


def _url_basename(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])


def mirror_urls(entry: ModelFile, prefixes: Sequence[str]) -> list[str]:
    """URLs under each mirror prefix: ``<prefix>/<filename>`` and ``<prefix>/<name of each official asset>``.

    A prefix may also be a local folder, turned into a ``file://`` URL.
    """
    names = [entry.filename] + [_url_basename(u) for u in entry.urls]
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
    kw = dict(timeout=timeout, retries=retries, retry_wait=retry_wait, progress=progress)
    for url in urls:
        try:
            if entry.is_archive_url(url):
                part = dest.with_name(_url_basename(url) + ".part")
                log(f"[{entry.name}] downloading {url} (archive holding {entry.archive_member})")
                res = _fetch_one(url, part, size=entry.archive_size, sha256=entry.archive_sha256,
                                 desc=_url_basename(url), **kw)
                tmp = dest.with_name(dest.name + ".extract.part")
                try:
                    size, digest = extract_member(res.path, entry.archive_member or entry.filename, tmp,
                                                  size=expected_size, sha256=expected_sha)
                except ChecksumError:
                    _unlink_quiet(res.path)  # the archive is our own temp file: a wrong one must not be reused
                    raise
                publish(tmp, dest)
                _unlink_quiet(res.path)
                archive = {"url": url, "size": res.size, "sha256": res.sha256, "member": entry.archive_member}
            else:
                log(f"[{entry.name}] downloading {url}")
                res = _fetch_one(url, dest.with_name(dest.name + ".part"), size=expected_size,
                                 sha256=expected_sha, desc=entry.filename, **kw)
                publish(res.path, dest)
                size, digest, archive = res.size, res.sha256, None
        except TargetExistsError:
            raise
        except (_UrlFailed, ChecksumError) as e:
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
        _raise_all_failed(f"{entry.filename} ({entry.name})", failures)
    except ChecksumError as e:
        if record and entry.sha256 is None:
            raise ChecksumError(f"{e}\nThe expected size/sha256 are those recorded at the first download in "
                                f"{lock}. If the upstream file legitimately changed, remove the "
                                f"'{entry.relpath}' entry from that file and run again.") from None
        raise
    except DownloadError as e:
        names = sorted({entry.filename, *(_url_basename(u) for u in entry.urls)})
        raise DownloadError(f"{e}\nIf these sources are unreachable, get the file elsewhere and put it at {dest} "
                            f"(or pass --mirror with a URL prefix or folder holding one of: {', '.join(names)}).") \
            from None
    raise AssertionError("unreachable")


def check_model(entry: ModelFile, search_dirs: Sequence[str | os.PathLike] | None = None) -> CheckResult:
    """Verify the file ``find_model`` would use for ``entry`` against its published or recorded sha256."""
    dirs = _mf.model_search_dirs(search_dirs)
    try:
        path = _mf.find_model(entry.name, search_dirs=search_dirs)
    except MissingModelError:
        return CheckResult(entry.name, None, "missing", "not found")
    record, lock = _record_for(path, dirs)
    status, size, digest, why = _verify_existing(entry, path, record, lock)
    return CheckResult(entry.name, path, status, why)


# ---------------------------------------------------------------------------------------------------- CLI

_AUTO_ENV = "SIMSWAP_AUTO_DOWNLOAD"


def _selected(args: argparse.Namespace) -> list[ModelFile]:
    names: list[str] = []
    if args.all:
        names = list(_mf.CATALOGUE)
    elif args.model:
        names = list(args.model)
    elif args.download:
        names = list(_mf.RECOMMENDED)
    out: list[ModelFile] = []
    for name in names:
        entry = _mf.resolve_entry(name)
        if entry is None:
            raise InputError(f"unknown model {name!r}; known: {', '.join(_mf.CATALOGUE)} (see --list)")
        if entry not in out:
            out.append(entry)
    return out


def _print_list(search: list[Path], out: Callable[[str], None]) -> None:
    out("Model files (* = recommended set):")
    for entry in _mf.CATALOGUE.values():
        try:
            where = f"installed: {_mf.find_model(entry.name, search_dirs=search)}"
        except MissingModelError:
            where = "MISSING"
        mark = "*" if entry.recommended else " "
        out(f"{mark} {entry.name:<12} {entry.kind:<9} {entry.relpath}")
        size = _fmt_size(entry.size)
        if entry.archive_member and entry.archive_size is not None:
            size += f"; archive {_fmt_size(entry.archive_size)}"
        out(f"    size: {size}   sha256: {entry.sha256 or 'not published (recorded at first download)'}")
        out(f"    licence: {entry.license}" + ("   [NON-COMMERCIAL]" if entry.noncommercial else ""))
        out(f"    {where}")
        for url in entry.urls:
            out(f"    url: {url}" + (f"  (zip member {entry.archive_member})" if entry.is_archive_url(url) else ""))
    out("Folders searched, in order: " + ", ".join(str(p) for p in search))


def _print_licence_notice(entries: list[ModelFile], out: Callable[[str], None]) -> None:
    nc = [e for e in entries if e.noncommercial]
    if not nc:
        return
    out("LICENCE NOTICE: the following weights are licensed for NON-COMMERCIAL use only:")
    for e in nc:
        out(f"  {e.name} ({e.filename}): {e.license}")
    out("By downloading them you accept these terms. Do not use them, or images made with them, commercially.")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="install.py",
        description=("Download and verify SimSwap model files. Without arguments nothing is downloaded: the status "
                     f"of the recommended set is printed (set {_AUTO_ENV}=1 to download it instead)."),
    )
    p.add_argument("--list", action="store_true", help="list every known file: size, licence, installed or not")
    p.add_argument("--check", action="store_true", help="verify present files against published/recorded sha256")
    p.add_argument("--model", nargs="+", metavar="NAME", help="download these files (names from --list)")
    p.add_argument("--all", action="store_true", help="download every file in the catalogue")
    p.add_argument("--download", action="store_true", help="download the recommended set")
    p.add_argument("--models-dir", metavar="DIR", help="models folder to install into (default: $SIMSWAP_MODELS_DIR, "
                   "else ComfyUI/models when this pack sits in ComfyUI/custom_nodes, else ~/.cache/simswap/models)")
    p.add_argument("--mirror", action="append", default=[], metavar="URL",
                   help="extra source tried first: a URL prefix or a local folder holding the files or archives")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="network timeout in seconds")
    p.add_argument("--retries", type=int, default=DEFAULT_RETRIES, help="resume attempts per URL")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None, *, out: Callable[[str], None] = print) -> int:
    """Installer CLI; returns the exit code (0 = fine, 1 = a download failed or a file mismatched, 2 = usage)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.retries < 0:
        parser.error("--timeout must be > 0 and --retries >= 0")
    models_dir = Path(args.models_dir).expanduser() if args.models_dir else _mf.default_install_dir()
    search = _mf.model_search_dirs([models_dir])
    search = [Path(os.path.abspath(models_dir))] + [p for p in search if p != Path(os.path.abspath(models_dir))]
    try:
        entries = _selected(args)
    except InputError as e:
        parser.error(str(e))
        return 2
    auto = os.environ.get(_AUTO_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    did_something = False
    code = 0

    if args.list:
        _print_list(search, out)
        did_something = True
    if args.check:
        out("Checking model files:")
        for entry in _mf.CATALOGUE.values():
            res = check_model(entry, search)
            where = f" {res.path}" if res.path else ""
            out(f"  {res.status.upper():<11} {entry.name}:{where} - {res.message}")
            if res.status == "mismatch":
                code = 1
        did_something = True
    if not entries and not did_something and auto:
        out(f"{_AUTO_ENV} is set: downloading the recommended set.")
        entries = [_mf.CATALOGUE[n] for n in _mf.RECOMMENDED]
    if not entries:
        if not did_something:
            _print_status(search, models_dir, out)
        return code

    out(f"Installing into {models_dir}")
    _print_licence_notice(entries, out)
    for entry in entries:
        try:
            res = install_model(entry, models_dir, extra_urls=mirror_urls(entry, args.mirror), timeout=args.timeout,
                                retries=args.retries, progress=not args.no_progress, log=out)
            out(f"  OK    {entry.name}: {res.message}")
        except (DownloadError, OSError) as e:
            out(f"  FAIL  {entry.name}: {e}")
            code = 1
        except KeyboardInterrupt:
            out(f"Interrupted. Nothing incomplete was written under a final name; partial downloads (*.part) in "
                f"{models_dir} are resumed when you run the same command again.")
            return 130
    if code:
        out("Some files could not be installed (see above). Files already on disk were not modified.")
    return code


def _print_status(search: list[Path], models_dir: Path, out: Callable[[str], None]) -> None:
    """What ``python install.py`` without arguments prints (ComfyUI-Manager runs it so): status, no download."""
    out("ComfyUI-SimSwap model files (nothing is downloaded without an explicit flag):")
    missing = []
    for name in _mf.RECOMMENDED:
        entry = _mf.CATALOGUE[name]
        try:
            out(f"  found    {name}: {_mf.find_model(name, search_dirs=search)}")
        except MissingModelError:
            out(f"  MISSING  {name}: {entry.relpath}")
            missing.append(name)
    if missing:
        out(f"To download the missing recommended files into {models_dir}:")
        out(f"  {_mf.fetch_command(missing, models_dir)}")
        out(f"or run install.py with --download, or set {_AUTO_ENV}=1 before installing. "
            "--list shows every file, its size and licence; --check verifies files.")
    else:
        out("All recommended files are present (run with --check to verify them).")


if __name__ == "__main__":  # python -m simswap_core.download
    sys.exit(main())
