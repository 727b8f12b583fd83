"""Download model files safely: mirrors, HTTP Range resume, size/sha256 checks, zip members, atomic no-clobber.

Standard library only (``urllib``); ``tqdm`` draws progress bars when installed. Guarantees:

* a download is written to ``<file>.part`` in the target folder and only appears under its final name (hard link,
  or ``os.replace`` where the file system has no hard links) after its size and sha256 were checked, so an
  interrupted or wrong download never leaves a file at the target path;
* an existing file at the target path is never overwritten, moved or deleted;
* a ``.part`` file is resumed with an HTTP Range request (``If-Range`` guarded) on the next attempt or run.

Catalogue entries are installed by :mod:`.install` (lock records, verification); the CLI is :mod:`.installer_cli`.
"""
from __future__ import annotations

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, InputError, SimSwapError
from ..io import atomic as _atomic
from ..io.atomic import atomic_write

__all__ = [
    "DownloadError",
    "ChecksumError",
    "TargetExistsError",
    "FetchResult",
    "UrlFailed",
    "sha256_file",
    "fetch",
    "fetch_url",
    "extract_member",
    "publish",
    "download_file",
    "url_basename",
]

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 60.0
DEFAULT_RETRIES = 3
USER_AGENT = "ComfyUI-SimSwap-installer/0.1 (python-urllib)"
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


class UrlFailed(Exception):
    """One URL failed (collected into DownloadError by the caller)."""

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


def _unlink_quiet(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def read_json(path: Path) -> dict | None:
    """A JSON object file of our own bookkeeping, or None if absent or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    """Write our own bookkeeping file (never a model file) atomically, replacing an older version."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)


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


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool) -> Any:
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


def fetch_url(url: str, part: Path, *, size: int | None, sha256: str | None, timeout: float, retries: int,
              retry_wait: float, progress: bool, desc: str) -> FetchResult:
    """Download one URL into ``part`` (resuming it), then check size and sha256; raises ``UrlFailed``."""
    meta_path = _meta_path(part)
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        meta = read_json(meta_path) or {}
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
                    raise UrlFailed("HTTP 416 (range not satisfiable) repeatedly") from None
                continue
            e.close()
            if e.code in _RETRY_HTTP and failures < retries:
                failures += 1
                time.sleep(retry_wait * failures)
                continue
            raise UrlFailed(f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
            if _is_transient(e) and failures < retries:
                failures += 1
                time.sleep(retry_wait * failures)
                continue
            reason = e.reason if isinstance(e, urllib.error.URLError) else e
            raise UrlFailed(f"could not connect: {reason}") from None

        with resp:
            status = getattr(resp, "status", None) or 200  # file:// responses carry no status
            headers = resp.headers
            ctype = (headers.get("Content-Type") or "").lower()
            if ctype.startswith("text/html"):
                raise UrlFailed("the server returned an HTML page (an error, login or quota page), not the file")
            if status == 206 and offset:
                cr = _parse_content_range(headers.get("Content-Range"))
                if cr is None or cr[0] != offset:
                    _unlink_quiet(part, meta_path)  # unusable partial response: start over
                    failures += 1
                    if failures > retries:
                        raise UrlFailed("the server answered the Range request with a wrong Content-Range")
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
                raise UrlFailed(f"the server reports {total:,} bytes, expected {size:,}", checksum=True)
            if mode == "wb" or not meta_path.exists():
                write_json(meta_path, {
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
            raise UrlFailed(f"the server sent {got:,} bytes, more than the announced {total:,}")
        if (total is not None and got < total) or dropped is not None:
            failures += 1
            if failures > retries:
                what = f"{got:,} of {total:,} bytes" if total is not None else f"{got:,} bytes"
                raise UrlFailed(f"the connection dropped after {what} ({dropped or 'closed early'}); "
                                 f"the partial download is kept in {part} and is resumed by the next run")
            time.sleep(retry_wait * failures)
            continue
        break

    got = part.stat().st_size
    if size is not None and got != size:
        _unlink_quiet(part, meta_path)
        raise UrlFailed(f"size {got:,} bytes, expected {size:,}", checksum=True)
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256.lower():
        _unlink_quiet(part, meta_path)
        raise UrlFailed(f"sha256 {digest}, expected {sha256.lower()}", checksum=True)
    _unlink_quiet(meta_path)
    return FetchResult(part, got, digest, url)


def raise_all_failed(what: str, failures: Sequence[tuple[str, UrlFailed | Exception]]) -> None:
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
    failures: list[tuple[str, UrlFailed]] = []
    for url in urls:
        try:
            return fetch_url(url, part, size=size, sha256=sha256, timeout=timeout, retries=retries,
                              retry_wait=retry_wait, progress=progress, desc=desc or part.name)
        except UrlFailed as e:
            failures.append((url, e))
    raise_all_failed(part.name.removesuffix(".part"), failures)
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
    """Move a verified temp file (same folder) onto ``dest`` atomically (:func:`simswap_core.io.atomic.publish`),
    never replacing an existing ``dest``: raises ``TargetExistsError`` and keeps the temp file."""
    def refused(path: Path) -> TargetExistsError:
        return TargetExistsError(f"{path} already exists; it was not touched (the new download is kept in {tmp})")

    return _atomic.publish(tmp, dest, exists_error=refused)


def download_file(urls: Sequence[str], dest: str | os.PathLike, *, size: int | None = None,
                  sha256: str | None = None, **kwargs: Any) -> FetchResult:
    """Download ``dest`` from the first working URL via ``dest.part``; refuses if ``dest`` exists."""
    dest = Path(dest)
    if dest.exists():
        raise TargetExistsError(f"{dest} already exists; it was not touched")
    dest.parent.mkdir(parents=True, exist_ok=True)
    res = fetch(urls, dest.with_name(dest.name + ".part"), size=size, sha256=sha256, **kwargs)
    publish(res.path, dest)
    return FetchResult(dest, res.size, res.sha256, res.url)


def url_basename(url: str) -> str:
    """The unquoted last path segment of ``url``."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
