"""Download model files safely: mirrors, HTTP Range resume, size/sha256 checks, zip members, atomic no-clobber.

Standard library only (``urllib``); ``tqdm`` draws progress bars when installed. Guarantees:

* a download is written to ``<file>.part`` in the target folder and only appears under its final name (hard link,
  or ``os.replace`` where the file system has no hard links) after its size and sha256 were checked, so an
  interrupted or wrong download never leaves a file at the target path;
* an existing file at the target path is never overwritten, moved or deleted;
* a ``.part`` file is resumed with an HTTP Range request (``If-Range`` guarded) on the next attempt or run, only
  when it was started from the same URL for a file of the same size, ETag and Last-Modified (never spliced);
* no more than the expected size (else the caller's cap) is ever read: an endless body stops one byte later;
* a body that is an HTML page, JSON or plain text is refused whatever its Content-Type; gzip/deflate
  Content-Encoding is decoded (bounded), other encodings refused;
* a caller's format check (:mod:`.file_checks`) runs before a file is accepted;
* one process at a time per target (:mod:`simswap_core.io.locks`).

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
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, InputError, SimSwapError
from ..io import atomic as _atomic
from ..io.atomic import atomic_write
from ..io.locks import target_lock
from .file_checks import describe_text

__all__ = [
    "DownloadError",
    "ChecksumError",
    "TargetExistsError",
    "FetchResult",
    "UrlFailed",
    "sha256_file",
    "fetch",
    "fetch_url",
    "partial_note",
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

_DECODABLE = {"gzip", "x-gzip", "deflate"}
_SNIFF_BYTES = 1024


class _Body:
    """The response body as decoded blocks: identity bodies as they arrive, gzip/deflate bodies inflated (each
    block at most the size asked for, so a compression bomb never inflates past the download's limit)."""

    def __init__(self, resp: Any, encoding: str):
        self._read = getattr(resp, "read1", resp.read)  # read1: what has arrived, so a drop loses nothing received
        self._decoder = zlib.decompressobj(32 + zlib.MAX_WBITS) if encoding in _DECODABLE else None
        self.encoding = encoding

    def next(self, n: int) -> bytes:
        """Up to ``n`` bytes of the file (decoded); ``b""`` at its end. Raises OSError/HTTPException on a drop."""
        if self._decoder is None:
            return bytes(self._read(n))
        while True:
            data = self._decoder.unconsumed_tail
            if not data:
                if self._decoder.eof:
                    return b""
                data = self._read(CHUNK)
                if not data:
                    raise http.client.IncompleteRead(b"", None)  # the compressed stream stops before its end
            try:
                out = self._decoder.decompress(data, n)
            except zlib.error as e:
                raise UrlFailed(f"the server declared Content-Encoding '{self.encoding}' but the body cannot be "
                                f"decoded ({e})") from None
            if out:
                return out


def _resumable(meta: dict, url: str, size: int | None, sha256: str | None, part_exists: bool) -> bool:
    """May an existing ``.part`` be resumed from ``url``? Only one started from that very URL, not decoded from a
    compressed body, and announcing the expected size; a ``.part`` of unknown origin only under a published
    sha256 (which then checks the result)."""
    if not part_exists:
        return False
    if not meta:
        return sha256 is not None
    if meta.get("url") != url or meta.get("encoding") not in (None, "identity"):
        return False
    return size is None or meta.get("total") in (None, size)


def _changed_upstream(meta: dict, headers: Any, total: int | None) -> str | None:
    """Why a Range response belongs to another version of the file than the ``.part`` (None if it does not)."""
    if meta.get("total") is not None and total is not None and meta["total"] != total:
        return f"the file is now {total:,} bytes, the partial download was of a {meta['total']:,}-byte file"
    for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
        now, then = headers.get(header), meta.get(key)
        if now and then and now != then:
            return f"its {header} changed from {then} to {now}"
    return None


def _transfer(url: str, part: Path, *, size: int | None, limit: int | None, sha256: str | None, timeout: float,
              retries: int, retry_wait: float, progress: bool, desc: str) -> bool:
    """Download ``url`` into ``part``, resuming a ``.part`` of the same origin; never more than ``limit`` bytes.

    Returns True when bytes from an earlier attempt were kept (resumed), so the caller may redo a fresh download
    if the result fails verification. Raises ``UrlFailed``.
    """
    meta_path = _meta_path(part)
    failures = 0
    resumed = restarted = False
    while True:
        offset = part.stat().st_size if part.exists() else 0
        meta = read_json(meta_path) or {}
        if offset and not _resumable(meta, url, size, sha256, part.exists()):
            offset = 0  # another source, another version or a decoded body: start over, never splice
        if limit is not None and offset > limit:
            offset = 0
        if size is not None and offset == size and offset > 0:
            return True  # already complete (e.g. interrupted just before verification)
        # with offset 0 an existing .part (another source's) is only replaced once this URL sends a body

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
                whole = _unsatisfied_total(e.headers.get("Content-Range") if e.headers else None)
                e.close()
                if whole == offset or (whole is None and size == offset):
                    return True  # the .part already holds the whole file
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
            encoding = (headers.get("Content-Encoding") or "identity").strip().lower()
            if encoding not in _DECODABLE and encoding != "identity":
                raise UrlFailed(f"the server sent the file with Content-Encoding '{encoding}', which this installer "
                                f"cannot decode (it asked for the plain file)")
            length = headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
            if status == 206 and offset:
                cr = _parse_content_range(headers.get("Content-Range"))
                changed = _changed_upstream(meta, headers, cr[2] if cr else None)
                if cr is None or cr[0] != offset or encoding != "identity" or changed:
                    _unlink_quiet(part, meta_path)  # unusable partial response: start over
                    if not restarted:  # a new version upstream is not a failure of this URL: one fresh start
                        restarted = True
                        continue
                    failures += 1
                    if failures > retries:
                        why = changed or "the server answered the Range request with a wrong Content-Range"
                        raise UrlFailed(f"cannot resume: {why}")
                    continue
                total = cr[2]
                mode = "ab"
                resumed = True
            else:
                offset = 0  # a full body (the server ignored the Range, or If-Range found the file changed)
                total = announced if encoding == "identity" else None  # Content-Length counts compressed bytes
                mode = "wb"
            if size is not None and total is not None and total != size:
                _unlink_quiet(part, meta_path)
                raise UrlFailed(f"the server reports {total:,} bytes, expected {size:,}", checksum=True)
            if size is None and limit is not None and total is not None and total > limit:
                _unlink_quiet(part, meta_path)
                raise UrlFailed(f"the server reports {total:,} bytes, more than the {limit:,} bytes a file of this "
                                f"kind can be; refused before downloading", checksum=True)
            body = _Body(resp, encoding)
            got = offset
            dropped: BaseException | None = None
            part.parent.mkdir(parents=True, exist_ok=True)
            bar = _progress_bar(total, offset, desc, progress)
            try:
                with open(part, mode) as f:
                    if mode == "wb":
                        write_json(meta_path, {"url": url, "etag": headers.get("ETag"), "encoding": encoding,
                                               "last_modified": headers.get("Last-Modified"), "total": total})
                    sniffed = mode == "ab"
                    head = b""
                    while True:
                        want = CHUNK if limit is None else max(1, min(CHUNK, limit + 1 - got))
                        try:
                            block = body.next(want)
                        except (OSError, http.client.HTTPException) as e:  # timeout, reset, incomplete chunk
                            dropped = e
                            block = b""
                        if not sniffed:
                            head += block[: _SNIFF_BYTES - len(head)]
                            if len(head) >= _SNIFF_BYTES or not block:
                                sniffed = True
                                text = describe_text(head) if (head or dropped is None) else None
                                if text is not None:
                                    raise UrlFailed(f"the server sent {text} instead of the model file (Content-Type "
                                                    f"{headers.get('Content-Type') or 'not given'})")
                        if not block:
                            break
                        f.write(block)
                        got += len(block)
                        if bar is not None:
                            bar.update(len(block))
                        if limit is not None and got > limit:
                            expected = f"the expected {limit:,}" if size is not None else f"the {limit:,} allowed"
                            raise UrlFailed(f"the server sent more than {expected} bytes; stopped after "
                                            f"{got:,} (an endless or wrong body)", checksum=True)
            except UrlFailed:
                _unlink_quiet(part, meta_path)
                raise
            finally:
                if bar is not None:
                    bar.close()
        got = part.stat().st_size
        if total is not None and got > total:
            _unlink_quiet(part, meta_path)
            raise UrlFailed(f"the server sent {got:,} bytes, more than the announced {total:,}")
        if (total is not None and got < total) or dropped is not None:
            if encoding != "identity":
                _unlink_quiet(part, meta_path)  # a decoded body cannot be resumed with a byte range
            failures += 1
            if failures > retries:
                what = f"{got:,} of {total:,} bytes" if total is not None else f"{got:,} bytes"
                raise UrlFailed(f"the connection dropped after {what} ({dropped or 'closed early'})")
            time.sleep(retry_wait * failures)
            continue
        return resumed


def fetch_url(url: str, part: Path, *, size: int | None, sha256: str | None, timeout: float, retries: int,
              retry_wait: float, progress: bool, desc: str, max_size: int | None = None,
              check: Callable[[Path], object] | None = None) -> FetchResult:
    """Download one URL into ``part`` (resuming it), then check size, sha256 and ``check(part)``; raises UrlFailed.

    At most ``size`` bytes (else ``max_size``) are read: a longer or endless body is cut at one byte more and
    refused. A body that is an HTML page, JSON or plain text is refused whatever its Content-Type. ``check`` is
    the format check of the file's kind (raising CheckpointError). When a resumed download fails verification,
    it is downloaded once more from the start before the URL is given up.
    """
    meta_path = _meta_path(part)
    limit = size if size is not None else max_size
    for fresh in (False, True):
        resumed = _transfer(url, part, size=size, limit=limit, sha256=sha256, timeout=timeout, retries=retries,
                            retry_wait=retry_wait, progress=progress, desc=desc)
        got = part.stat().st_size
        problem: str | None = None
        if size is not None and got != size:
            problem = f"size {got:,} bytes, expected {size:,}"
        digest = sha256_file(part)
        if problem is None and sha256 is not None and digest != sha256.lower():
            problem = f"sha256 {digest}, expected {sha256.lower()}"
        if problem is None and check is not None:
            try:
                check(part)
            except CheckpointError as e:
                problem = f"not a valid model file: {e}"
        if problem is None:
            _unlink_quiet(meta_path)
            return FetchResult(part, got, digest, url)
        _unlink_quiet(part, meta_path)
        if not resumed or fresh:
            raise UrlFailed(problem + (" (also after downloading it again from the start)" if fresh else ""),
                            checksum=True)
    raise AssertionError("unreachable")


def partial_note(parts: Sequence[Path]) -> str:
    """The truth about partial downloads after a failure: which ``.part`` files are kept for resuming, if any."""
    notes = []
    for part in parts:
        meta = read_json(_meta_path(part))
        if part.exists() and part.stat().st_size > 0:
            source = f" from {meta['url']}" if meta and meta.get("url") else ""
            again = (f"the next run resumes it if {meta['url']} is the first source that answers, else starts over"
                     if meta and meta.get("url") else "the next run resumes it only under a published sha256")
            notes.append(f"The partial download ({part.stat().st_size:,} bytes{source}) is kept in {part}; {again}.")
    return "\n".join(notes)


def raise_all_failed(what: str, failures: Sequence[tuple[str, UrlFailed | Exception]], note: str = "") -> None:
    """Raise ChecksumError (every URL gave wrong data) or DownloadError listing each URL's failure and ``note``."""
    lines = [f"Could not download {what}:"]
    lines += [f"  {url}: {err}" for url, err in failures]
    if note:
        lines.append(note)
    msg = "\n".join(lines)
    if failures and all(getattr(err, "checksum", False) or isinstance(err, ChecksumError) for _, err in failures):
        raise ChecksumError(msg + "\nNothing was written at the target path.")
    raise DownloadError(msg)


def fetch(urls: Sequence[str], part: str | os.PathLike, *, size: int | None = None, sha256: str | None = None,
          timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES, retry_wait: float = 1.0,
          progress: bool = True, desc: str | None = None, max_size: int | None = None,
          check: Callable[[Path], object] | None = None) -> FetchResult:
    """Download the first URL that works into ``part`` (resuming an existing ``part``), then check it.

    Each URL is tried in turn; a dropped connection is resumed up to ``retries`` times per URL. A wrong size,
    sha256 or format (``check``) deletes ``part`` and moves on to the next URL. Raises ``ChecksumError`` when every
    URL gave wrong data, ``DownloadError`` otherwise. ``part`` is left in place on success (the caller publishes
    it). See :func:`fetch_url` for ``max_size`` and ``check``.
    """
    part = Path(part)
    if not urls:
        raise InputError("fetch needs at least one URL")
    failures: list[tuple[str, UrlFailed]] = []
    for url in urls:
        try:
            return fetch_url(url, part, size=size, sha256=sha256, timeout=timeout, retries=retries,
                             retry_wait=retry_wait, progress=progress, desc=desc or part.name, max_size=max_size,
                             check=check)
        except UrlFailed as e:
            failures.append((url, e))
    raise_all_failed(part.name.removesuffix(".part"), failures, partial_note([part]))
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
                   sha256: str | None = None, max_size: int | None = None) -> tuple[int, str]:
    """Copy one zip member to ``out`` (a temp path), checking size and sha256; returns ``(size, sha256)``.

    ``member`` is matched exactly, else by base name when exactly one file has that name. On a mismatch ``out``
    is deleted and ``ChecksumError`` raised. Without a known ``size``, a member declaring more than ``max_size``
    bytes is refused before anything is inflated (a zip bomb).
    """
    out = Path(out)
    try:
        z = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ChecksumError(f"{archive} is not a readable zip archive: {e}") from None
    with z:
        info = _pick_member(z, member)
        if size is not None and info.file_size != size:
            raise ChecksumError(f"archive member {info.filename} is {info.file_size:,} bytes, expected {size:,}")
        if size is None and max_size is not None and info.file_size > max_size:
            raise ChecksumError(f"archive member {info.filename} declares {info.file_size:,} bytes, more than the "
                                f"{max_size:,} a file of this kind can be; refused before extracting")
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
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error) as e:  # CRC: BadZip
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
                  sha256: str | None = None, wait: bool | float = True, log: Callable[[str], None] | None = None,
                  **kwargs: Any) -> FetchResult:
    """Download ``dest`` from the first working URL via ``dest.part``; refuses if ``dest`` exists.

    One process at a time per ``dest`` (:func:`simswap_core.io.locks.target_lock`; ``wait`` and ``log`` as
    there); other keyword arguments as :func:`fetch` (e.g. ``check`` for a format check, ``max_size``).
    """
    dest = Path(dest)
    if dest.exists():
        raise TargetExistsError(f"{dest} already exists; it was not touched")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with target_lock(dest, wait=wait, label="SimSwap download", log=log):
        if dest.exists():
            raise TargetExistsError(f"{dest} already exists (written by another process meanwhile); it was not "
                                    f"touched")
        res = fetch(urls, dest.with_name(dest.name + ".part"), size=size, sha256=sha256, **kwargs)
        publish(res.path, dest)
    return FetchResult(dest, res.size, res.sha256, res.url)


def url_basename(url: str) -> str:
    """The unquoted last path segment of ``url``."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
