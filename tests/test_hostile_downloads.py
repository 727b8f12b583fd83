"""Hostile and broken servers against the downloader and installer (issue 8, deliverable 5), all on 127.0.0.1:
endless and oversized bodies, HTML/JSON/text served as the file, short bodies, Content-Encoding, gzip bytes as the
file, files spliced from two versions, two installers on one file, the truth of the "kept for resuming" message,
and first-download hashes recorded only after the format check. Resource figures are measured in a fresh process.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from checkpoint_fixtures import arc_state, official_arcface_files  # noqa: F401 (fixtures)
from install_fixtures import (  # noqa: F401
    FAST,
    REPO,
    _entry,
    _isolated,
    _onnx_file,
    _payload,
    _sha,
    _torch_file,
    _zip,
    catalogue,
    server,
)
from simswap_core.errors import CheckpointError
from simswap_core.io.locks import TargetLockedError, lock_file_for, target_lock
from simswap_core.models import download as dl
from simswap_core.models import install as inst
from simswap_core.models import installer_cli
from simswap_core.models.file_checks import check_file_format

QUIET = dict(log=lambda s: None, **FAST)
# A child's own peak memory, for the measurements below: ru_maxrss survives execve on Linux, so a child of this
# torch-laden pytest process would report the parent's peak; VmHWM is the child's own address space.
PEAK_KB = """def peak_kb():
    try:
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------------------ bounded sizes


def test_endless_body_for_a_file_of_known_size_stops_one_byte_after_it(server, tmp_path):
    server.routes["/e.pth"] = {"endless": True, "data": b"\0" * 65536, "max_bytes": 256 << 20}
    size = 100_000
    entry = _entry([server.url + "/e.pth"], filename="e.pth", size=size)
    with pytest.raises(dl.ChecksumError) as info:
        inst.install_model(entry, tmp_path, **QUIET)
    msg = str(info.value)
    assert f"more than the expected {size:,} bytes; stopped after {size + 1:,}" in msg and "/e.pth" in msg
    assert _files(tmp_path / "simswap") == [] and inst.read_lock(tmp_path) == {}
    served = server.served.get("/e.pth", 0)
    print(f"endless body: expected {size:,} B, the server could write {served:,} B before the client hung up")
    # the client reads size + 1 bytes; what the server could write beyond that is the kernel's socket buffers
    assert served <= size + (16 << 20)


def test_endless_body_of_unknown_size_stops_at_the_cap(server, tmp_path):
    server.routes["/e.pth"] = {"endless": True, "data": b"x\0" * 32768, "max_bytes": 256 << 20}
    cap = 300_000
    with pytest.raises(dl.ChecksumError, match=f"more than the {cap:,} allowed bytes; stopped after {cap + 1:,}"):
        dl.download_file([server.url + "/e.pth"], tmp_path / "e.pth", max_size=cap, retries=0, **FAST)
    assert _files(tmp_path) == []


def test_catalogue_kinds_have_a_cap_and_an_oversized_announcement_is_refused_before_reading(server, tmp_path,
                                                                                          monkeypatch):
    for kind in ("generator", "arcface", "parser", "detector", "archive"):
        assert 0 < inst.MAX_BYTES[kind] <= 4 << 30
    monkeypatch.setitem(inst.MAX_BYTES, "generator", 5000)
    server.routes["/big.pth"] = {"data": _torch_file(9000, 1)}
    with pytest.raises(dl.ChecksumError, match="more than the 5,000 bytes a file of this kind can be; refused before"):
        inst.install_model(_entry([server.url + "/big.pth"], filename="big.pth"), tmp_path, **QUIET)
    assert _files(tmp_path / "simswap") == []


def test_endless_body_refusal_costs_little_cpu_and_memory_in_a_fresh_process(server, tmp_path):
    """The refusal measured in a child process (no torch: the installer's own footprint)."""
    server.routes["/e.bin"] = {"endless": True, "data": b"\1" * 65536, "max_bytes": 1 << 30}
    script = f"""
import resource, sys, time, types
{PEAK_KB}
pkg = types.ModuleType("simswap_core"); pkg.__path__ = [{str(REPO / "simswap_core")!r}]
sys.modules["simswap_core"] = pkg
from simswap_core.models import download as dl
t0 = time.monotonic()
try:
    dl.download_file([{server.url + "/e.bin"!r}], {str(tmp_path / "e.bin")!r}, size=20_000_000, retries=0,
                     timeout=10, progress=False)
except dl.ChecksumError as e:
    print("REFUSED", str(e).splitlines()[1])
ru = resource.getrusage(resource.RUSAGE_SELF)
print("CPU", ru.ru_utime + ru.ru_stime, "WALL", time.monotonic() - t0, "MAXRSS_KB", peak_kb(),
      "TORCH", "torch" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    assert "REFUSED" in proc.stdout and "stopped after 20,000,001" in proc.stdout
    fields = proc.stdout.split("CPU", 1)[1].split()
    cpu, rss_kb = float(fields[0]), int(fields[4])
    assert fields[6] == "False"
    assert cpu < 10 and rss_kb < 300_000  # generous: ~20 MB streamed through a 1 MiB buffer


# ------------------------------------------------------------------------------------------------ text bodies


@pytest.mark.parametrize("body, what", [
    (b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>login</body></html>",
     "an HTML page (a login or error page?)"),
    (b'{"error": "quota exceeded", "code": 403}', "a JSON document (an API error?)"),
    (b"Access denied. Too many requests from your address.\n", "plain text"),
    (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "an XML/HTML document"),
])
def test_text_served_as_octet_stream_is_refused_and_never_recorded(server, tmp_path, body, what):
    server.routes["/m/x.pth"] = {"data": body, "type": "application/octet-stream"}
    entry = _entry([server.url + "/m/x.pth"], filename="x.pth")
    with pytest.raises(dl.DownloadError) as info:
        inst.install_model(entry, tmp_path, **QUIET)
    msg = str(info.value)
    assert f"{server.url}/m/x.pth: the server sent {what}" in msg and "Content-Type application/octet-stream" in msg
    assert inst.read_lock(tmp_path) == {} and _files(tmp_path / "simswap") == []


def test_html_page_at_an_archive_url_is_refused_then_the_mirror_used(server, tmp_path):
    member = _onnx_file(3)
    server.routes["/pack.zip"] = {"data": b"<html><body>Please log in</body></html>" * 50}
    server.routes["/mirror/det.onnx"] = {"data": member}
    entry = _entry([server.url + "/pack.zip", server.url + "/mirror/det.onnx"], filename="det.onnx",
                   archive_member="pack/det.onnx")
    res = inst.install_model(entry, tmp_path, **QUIET)
    assert res.path.read_bytes() == member and inst.read_lock(tmp_path)["simswap/det.onnx"]["sha256"] == _sha(member)
    assert _files(tmp_path / "simswap") == [inst.LOCK_NAME, "det.onnx"]  # the refused archive's .part is gone


# ------------------------------------------------------------------------------------------------ short bodies


def test_short_body_with_a_matching_content_length_is_refused_against_the_known_size(server, tmp_path):
    data = _torch_file(4000, 4)
    server.routes["/s.pth"] = {"data": data[:1000]}
    entry = _entry([server.url + "/s.pth"], filename="s.pth", size=len(data))
    with pytest.raises(dl.ChecksumError, match=f"reports 1,000 bytes, expected {len(data):,}"):
        inst.install_model(entry, tmp_path, **QUIET)


def test_short_body_without_length_or_known_size_fails_the_format_check(server, tmp_path):
    data = _torch_file(4000, 5)
    server.routes["/s.pth"] = {"data": data[: len(data) * 6 // 10], "length": False}
    entry = _entry([server.url + "/s.pth"], filename="s.pth")
    with pytest.raises(dl.ChecksumError, match="not a valid model file: .*not a readable zip.*truncated"):
        inst.install_model(entry, tmp_path, **QUIET)
    assert inst.read_lock(tmp_path) == {} and _files(tmp_path / "simswap") == []


def test_body_longer_than_its_content_length_for_a_known_size_is_refused(server, tmp_path):
    data = _torch_file(4000, 6)
    server.routes["/l.pth"] = {"data": data + b"trailing junk", "length": False}
    with pytest.raises(dl.ChecksumError, match=f"more than the expected {len(data):,} bytes"):
        dl.download_file([server.url + "/l.pth"], tmp_path / "l.pth", size=len(data), retries=0, **FAST)


# ------------------------------------------------------------------------------------------------ encodings


@pytest.mark.parametrize("encoding, encode", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_declared_content_encoding_is_decoded(server, tmp_path, encoding, encode):
    data = _torch_file(20000, 7)
    server.routes["/z.pth"] = {"data": encode(data), "headers": {"Content-Encoding": encoding}}
    res = inst.install_model(_entry([server.url + "/z.pth"], filename="z.pth"), tmp_path, **QUIET)
    assert res.path.read_bytes() == data and res.sha256 == _sha(data)
    assert server.requests[0]["accept_encoding"] == "identity"  # the plain file was asked for


def test_gzip_bomb_declared_as_encoding_stops_at_the_expected_size(server, tmp_path):
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    server.routes["/b.pth"] = {"data": bomb, "headers": {"Content-Encoding": "gzip"}}
    with pytest.raises(dl.ChecksumError, match="more than the expected 5,000 bytes; stopped after 5,001"):
        dl.download_file([server.url + "/b.pth"], tmp_path / "b.pth", size=5000, retries=0, **FAST)
    assert _files(tmp_path) == []


def test_undecodable_encodings_are_refused_by_name(server, tmp_path):
    server.routes["/br.pth"] = {"data": b"\x1b\x00\x00", "headers": {"Content-Encoding": "br"}}
    server.routes["/bad.pth"] = {"data": b"not gzip at all", "headers": {"Content-Encoding": "gzip"}}
    with pytest.raises(dl.DownloadError) as info:
        dl.download_file([server.url + "/br.pth", server.url + "/bad.pth"], tmp_path / "x.pth", retries=0, **FAST)
    msg = str(info.value)
    assert "Content-Encoding 'br', which this installer cannot decode" in msg
    assert "declared Content-Encoding 'gzip' but the body cannot be decoded" in msg
    assert _files(tmp_path) == []


def test_gzip_bytes_served_as_the_file_fail_the_format_check(server, tmp_path):
    server.routes["/g.pth"] = {"data": gzip.compress(_torch_file(4000, 8))}
    entry = _entry([server.url + "/g.pth"], filename="g.pth")
    with pytest.raises(dl.ChecksumError, match="gzip-compressed bytes, not a PyTorch checkpoint"):
        inst.install_model(entry, tmp_path, **QUIET)
    assert inst.read_lock(tmp_path) == {}


# ------------------------------------------------------------------------------------------------ splices


def test_resume_after_the_file_changed_upstream_restarts_instead_of_splicing(server, tmp_path):
    old, new = _torch_file(30000, 9), _torch_file(30000, 10)
    assert len(old) == len(new) and old != new
    server.routes["/v.pth"] = {"data": old, "drops": 1, "cut": 12000}
    entry = _entry([server.url + "/v.pth"], filename="v.pth")
    with pytest.raises(dl.DownloadError, match="is kept in"):
        inst.install_model(entry, tmp_path, retries=0, log=lambda s: None, timeout=5.0, retry_wait=0.0,
                           progress=False)
    server.routes["/v.pth"] = {"data": new}  # a new upload; this server ignores If-Range but its ETag changed
    res = inst.install_model(entry, tmp_path, retries=0, log=lambda s: None, timeout=5.0, retry_wait=0.0,
                             progress=False)  # a changed file is restarted, not counted as a failed retry
    assert res.path.read_bytes() == new
    assert [r["range"] for r in server.requests[1:]] == ["bytes=12000-", None]  # the 206 was not appended


def test_spliced_resume_without_validators_is_caught_by_the_format_check_and_redone(server, tmp_path):
    old, new = _torch_file(30000, 11), _torch_file(30000, 12)
    server.routes["/v.pth"] = {"data": old, "drops": 1, "cut": 12000, "etag": None}
    entry = _entry([server.url + "/v.pth"], filename="v.pth")
    with pytest.raises(dl.DownloadError):
        inst.install_model(entry, tmp_path, retries=0, log=lambda s: None, timeout=5.0, retry_wait=0.0,
                           progress=False)
    server.routes["/v.pth"] = {"data": new, "etag": None}  # nothing tells the versions apart but the bytes
    res = inst.install_model(entry, tmp_path, **QUIET)
    assert res.path.read_bytes() == new and inst.read_lock(tmp_path)["simswap/v.pth"]["sha256"] == _sha(new)
    assert [r["range"] for r in server.requests[1:]] == ["bytes=12000-", None]


def test_part_from_another_url_is_not_resumed(server, tmp_path):
    data = _torch_file(8000, 13)
    server.routes["/b/p.pth"] = {"data": data}
    part = tmp_path / "p.pth.part"
    part.write_bytes(b"\0" * 3000)
    (tmp_path / "p.pth.part.json").write_text(json.dumps({"url": server.url + "/a/p.pth", "total": 8000}))
    dl.download_file([server.url + "/b/p.pth"], tmp_path / "p.pth", sha256=_sha(data), **FAST)
    assert (tmp_path / "p.pth").read_bytes() == data and server.requests[0]["range"] is None


def _stored_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def test_spliced_archive_is_refused_by_the_zip_check(server, tmp_path):
    a = _stored_zip({"ck/m.pth": _torch_file(20000, 14)})
    b = _stored_zip({"ck/m.pth": _torch_file(20000, 15)})
    assert len(a) == len(b)
    spliced = a[: len(a) // 2] + b[len(b) // 2:]
    server.routes["/ck.zip"] = {"data": spliced}
    entry = _entry([server.url + "/ck.zip"], filename="m.pth", archive_member="ck/m.pth")
    with pytest.raises(dl.ChecksumError, match="CRC|spliced|not a readable zip"):
        inst.install_model(entry, tmp_path, **QUIET)
    assert inst.read_lock(tmp_path) == {} and _files(tmp_path / "simswap") == []


def test_zip_bomb_member_is_refused_before_extraction(server, tmp_path, monkeypatch):
    monkeypatch.setitem(inst.MAX_BYTES, "generator", 1 << 20)
    archive = _zip({"ck/m.pth": b"\0" * (32 << 20)})  # 32 MiB of zeros in ~32 KiB
    server.routes["/ck.zip"] = {"data": archive}
    entry = _entry([server.url + "/ck.zip"], filename="m.pth", archive_member="ck/m.pth")
    with pytest.raises(dl.ChecksumError, match="refused as a zip bomb|refused before extracting"):
        inst.install_model(entry, tmp_path, **QUIET)
    assert _files(tmp_path / "simswap") == []


def test_archive_member_that_is_not_a_model_is_refused_and_not_recorded(server, tmp_path):
    archive = _zip({"ck/m.pth": _payload(5000, 16)})
    server.routes["/ck.zip"] = {"data": archive}
    entry = _entry([server.url + "/ck.zip"], filename="m.pth", archive_member="ck/m.pth")
    with pytest.raises(dl.ChecksumError, match="member ck/m.pth is not a valid model file"):
        inst.install_model(entry, tmp_path, **QUIET)
    assert inst.read_lock(tmp_path) == {} and _files(tmp_path / "simswap") == []


# ------------------------------------------------------------------------------------------------ first-download record


def test_hash_is_recorded_only_after_the_format_check_and_a_changed_file_explains_the_reset(server, tmp_path,
                                                                                           catalogue):
    html = b"<html><body>Sign in to continue</body></html>"
    real, changed = _torch_file(6000, 17), _torch_file(6000, 18)
    server.routes["/r.pth"] = {"data": html}
    entry = _entry([server.url + "/r.pth"], name="r", filename="r.pth")
    catalogue({"r": entry})
    with pytest.raises(dl.DownloadError, match="HTML page"):
        inst.install_model(entry, tmp_path, **QUIET)
    assert inst.read_lock(tmp_path) == {}  # the login page was not trusted
    server.routes["/r.pth"] = {"data": real}
    res = inst.install_model(entry, tmp_path, **QUIET)
    assert res.sha256 == _sha(real) and inst.read_lock(tmp_path)["simswap/r.pth"]["sha256"] == _sha(real)
    res.path.unlink()
    server.routes["/r.pth"] = {"data": changed}
    with pytest.raises(dl.ChecksumError) as info:
        inst.install_model(entry, tmp_path, **QUIET)
    msg = str(info.value)
    assert f"sha256 {_sha(changed)}, expected {_sha(real)}" in msg and str(inst.lock_path(tmp_path)) in msg
    assert "--forget-record r" in msg and "'simswap/r.pth' entry" in msg
    lines: list[str] = []
    assert installer_cli.main(["--forget-record", "r", "--models-dir", str(tmp_path)], out=lines.append) == 0
    assert "Forgot the record of simswap/r.pth" in "\n".join(lines) and inst.read_lock(tmp_path) == {}
    res = inst.install_model(entry, tmp_path, **QUIET)
    assert res.path.read_bytes() == changed


def test_existing_file_without_checksum_that_is_not_a_model_is_reported(tmp_path):
    entry = _entry(["https://example.invalid/u.pth"], filename="u.pth")
    dest = tmp_path / "simswap" / "u.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"<html>login</html>")
    with pytest.raises(dl.ChecksumError, match="not a usable model file: .*HTML page.*NOT overwritten"):
        inst.install_model(entry, tmp_path, **QUIET)
    assert dest.read_bytes() == b"<html>login</html>"


# ------------------------------------------------------------------------------------------------ partial downloads


def test_kept_for_resuming_is_only_said_when_true(server, tmp_path):
    data = _torch_file(20000, 19)
    server.routes["/a/k.pth"] = {"data": data, "drops": 5, "cut": 5000}
    server.routes["/b/k.pth"] = {"data": b"<html>mirror says no</html>"}
    entry = _entry([server.url + "/a/k.pth", server.url + "/b/k.pth"], filename="k.pth")
    kw = dict(log=lambda s: None, timeout=5.0, retry_wait=0.0, progress=False, retries=0)
    with pytest.raises(dl.DownloadError) as info:
        inst.install_model(entry, tmp_path, **kw)
    assert "is kept in" not in str(info.value)  # the mirror's body replaced the partial download, then was refused
    assert not (tmp_path / "simswap" / "k.pth.part").exists()

    server.routes["/b/k.pth"] = {"status": 404}  # now the mirror fails without touching the partial download
    with pytest.raises(dl.DownloadError) as info:
        inst.install_model(entry, tmp_path, **kw)
    assert f"(5,000 bytes from {server.url}/a/k.pth) is kept in" in str(info.value)
    assert (tmp_path / "simswap" / "k.pth.part").stat().st_size == 5000

    server.routes["/a/k.pth"]["drops"] = 0  # and the next run does resume it
    res = inst.install_model(entry, tmp_path, **kw)
    assert res.path.read_bytes() == data and server.requests[-1]["range"] == "bytes=5000-"


# ---------------------------------------------------------------------------------------------- one installer at a time


def test_second_installer_waits_with_a_message_then_finds_the_file(server, tmp_path):
    data = _torch_file(8000, 20)
    release = threading.Event()
    server.routes["/c.pth"] = {"data": data, "hold": release}
    entry = _entry([server.url + "/c.pth"], filename="c.pth")
    results: dict[str, object] = {}

    def first() -> None:
        results["first"] = inst.install_model(entry, tmp_path, **QUIET)

    t = threading.Thread(target=first)
    t.start()
    dest = tmp_path / "simswap" / "c.pth"
    for _ in range(200):  # until the first installer holds the lock
        if lock_file_for(dest).exists() and server.requests:
            break
        threading.Event().wait(0.02)
    with pytest.raises(TargetLockedError) as info:
        inst.install_model(entry, tmp_path, wait=False, **QUIET)
    msg = str(info.value)
    assert str(dest) in msg and f"pid {os.getpid()}" in msg and "SimSwap installer" in msg

    said: list[str] = []
    threading.Timer(0.3, release.set).start()
    second = inst.install_model(entry, tmp_path, log=said.append, **FAST)
    t.join(10)
    assert results["first"].status == "downloaded" and second.status == "present"  # type: ignore[attr-defined]
    assert any("is being written by another process" in s and "waiting" in s for s in said)
    assert dest.read_bytes() == data and len([r for r in server.requests if r["path"] == "/c.pth"]) == 1
    assert _files(dest.parent) == [inst.LOCK_NAME, "c.pth"]  # the record; no .part, no lock file left


def test_lock_is_held_across_processes_and_names_the_holder(tmp_path):
    dest = tmp_path / "m.pth"
    script = f"""
import sys, types
pkg = types.ModuleType("simswap_core"); pkg.__path__ = [{str(REPO / "simswap_core")!r}]
sys.modules["simswap_core"] = pkg
from simswap_core.io.locks import TargetLockedError, target_lock
try:
    with target_lock({str(dest)!r}, wait=0.3):
        print("ACQUIRED")
except TargetLockedError as e:
    print("REFUSED", e)
"""
    with target_lock(dest, label="test holder"):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"REFUSED {dest} is being written by another process (pid {os.getpid()}" in proc.stdout
    assert "test holder" in proc.stdout and "after waiting 0.3 s" in proc.stdout
    assert not lock_file_for(dest).exists()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "ACQUIRED" in proc.stdout  # released with the holder


def test_two_installer_processes_on_one_file_download_it_once(server, tmp_path):
    """Two real ``python install.py`` processes on the same file: the second waits, saying for whom, then verifies
    the file the first wrote (the real catalogue's bisenet entry, served by a --mirror on 127.0.0.1)."""
    data = _torch_file(6000, 23)
    release = threading.Event()
    server.routes["/mirror/79999_iter.pth"] = {"data": data, "hold": release}
    models = tmp_path / "models"
    env = {k: v for k, v in os.environ.items() if k not in ("SIMSWAP_MODELS_DIR", "SIMSWAP_AUTO_DOWNLOAD")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    cmd = [sys.executable, "-u", "install.py", "--model", "bisenet", "--models-dir", str(models), "--mirror",
           server.url + "/mirror", "--no-progress", "--retries", "0"]
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):
            if any(r["path"] == "/mirror/79999_iter.pth" for r in server.requests):
                break
            threading.Event().wait(0.05)
        second = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        seen: list[str] = []
        assert second.stdout is not None
        for line in second.stdout:
            seen.append(line)
            if "waiting for it to finish" in line:
                break
        release.set()
        out2 = "".join(seen) + second.communicate(timeout=120)[0]
        out1 = first.communicate(timeout=120)[0]
    finally:
        release.set()
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0 and second.returncode == 0, out1 + out2
    dest = models / "simswap" / "79999_iter.pth"
    assert f"{dest} is being written by another process (pid {first.pid} on" in out2
    assert "already present: matches the sha256 recorded at its first download" in out2
    assert "OK    bisenet" in out1 and dest.read_bytes() == data
    assert len([r for r in server.requests if r["path"] == "/mirror/79999_iter.pth"]) == 1
    assert _files(dest.parent) == [inst.LOCK_NAME, "79999_iter.pth"]


def test_a_present_file_is_verified_without_taking_the_lock(tmp_path):
    """Read-only shared model folders: a file already installed is checked without creating a lock file there."""
    data = _torch_file(3000, 24)
    entry = _entry(["https://example.invalid/p.pth"], filename="p.pth", sha256=_sha(data))
    dest = tmp_path / "simswap" / "p.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(data)
    with target_lock(dest, label="someone else"):
        res = inst.install_model(entry, tmp_path, wait=False, **QUIET)
    assert res.status == "present" and dest.read_bytes() == data


def test_cli_no_wait_reports_the_lock_and_exits_1(server, tmp_path, catalogue):
    catalogue({"w": _entry([server.url + "/w.pth"], name="w", filename="w.pth")})
    dest = tmp_path / "simswap" / "w.pth"
    dest.parent.mkdir(parents=True)
    lines: list[str] = []
    with target_lock(dest, label="other installer"):
        code = installer_cli.main(["--model", "w", "--models-dir", str(tmp_path), "--no-wait", "--no-progress"],
                                  out=lines.append)
    out = "\n".join(lines)
    assert code == 1 and "FAIL  w:" in out and "being written by another process" in out and "other installer" in out
    assert server.requests == []


# ------------------------------------------------------------------------------------------------ format checks


def test_format_checks_accept_real_files_and_refuse_damaged_ones(tmp_path):
    torch_zip, onnx = _torch_file(5000, 21), _onnx_file(21)
    cases = {
        "ok.pth": (torch_zip, "torch", None),
        "ok.onnx": (onnx, "onnx", None),
        "cut.pth": (torch_zip[:-200], "torch", "not a readable zip"),
        "cut.onnx": (onnx[:-3], "onnx", "truncated"),
        "zip_as.onnx": (torch_zip, "onnx", "not an ONNX model"),
        "pickle.pth": (b"\x80\x04\x95" + b"\0" * 40, "torch", "without the torch magic number"),
        "empty.pth": (b"", "torch", "an empty body"),
    }
    for name, (data, fmt, error) in cases.items():
        (tmp_path / name).write_bytes(data)
        if error is None:
            check_file_format(tmp_path / name, fmt)
        else:
            with pytest.raises(CheckpointError, match=error) as info:
                check_file_format(tmp_path / name, fmt)
            assert name in str(info.value)


def test_legacy_torch_stream_is_checked_to_its_last_storage(tmp_path):
    import torch

    model = torch.nn.DataParallel(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8)))
    buf = io.BytesIO()
    torch.save({"model": model, "epoch": 3}, buf, _use_new_zipfile_serialization=False)  # like the 2021 arcface
    data = buf.getvalue()
    path = tmp_path / "arcface_checkpoint.tar"
    path.write_bytes(data)
    assert "legacy PyTorch checkpoint of 7 storages" in check_file_format(path, "torch")
    for damaged, error in [(data[: len(data) // 2], "malformed or truncated|truncated"),
                           (data[:-100], "truncated"), (data + b"\0" * 10, "10 bytes follow the last storage")]:
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=error):
            check_file_format(path, "torch")


def test_hostile_pickles_in_a_download_are_walked_with_bounded_cpu_and_memory_in_a_fresh_process(tmp_path):
    """A 20 MiB legacy object pickle of 20 M opcodes, and a memo-heavy one: refused by the installer's format check
    (which walks, never builds) within generous CPU and memory limits, measured in a child without torch."""
    header = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    small = b"\x80\x02M\xe9\x03.\x80\x02}q\x00."  # protocol 1001, then an empty dict as system info
    long_pickle = header + small + b"\x80\x02" + b"N0" * (10 << 20) + b"N."
    memo_pickle = header + small + b"\x80\x02" + b"Nr\x00\x00\x00\x00" * ((1 << 19) + 10) + b"."
    (tmp_path / "long.pth").write_bytes(long_pickle)
    (tmp_path / "memo.pth").write_bytes(memo_pickle)
    script = f"""
import resource, sys, types
{PEAK_KB}
pkg = types.ModuleType("simswap_core"); pkg.__path__ = [{str(REPO / "simswap_core")!r}]
sys.modules["simswap_core"] = pkg
from simswap_core.errors import CheckpointError
from simswap_core.models.file_checks import check_file_format
for name in ("long.pth", "memo.pth"):
    try:
        check_file_format({str(tmp_path)!r} + "/" + name, "torch")
        print("ACCEPTED", name)
    except CheckpointError as e:
        print("REFUSED", e)
ru = resource.getrusage(resource.RUSAGE_SELF)
print("CPU", ru.ru_utime + ru.ru_stime, "MAXRSS_KB", peak_kb())
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    assert "ACCEPTED" not in proc.stdout and proc.stdout.count("REFUSED") == 2
    # the installer applies the loader's pickle limits (pickle_scan.PickleLimits): opcodes, then the stack
    assert "opcode count exceeds" in proc.stdout and "stack holds more than" in proc.stdout
    fields = proc.stdout.split("CPU", 1)[1].split()
    assert float(fields[0]) < 15 and int(fields[2]) < 400_000  # measured: ~1 s, ~50 MB on a shared 2-core box


def test_safetensors_offsets_are_checked_against_the_file(tmp_path):
    def st(header: dict, data: bytes) -> bytes:
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(8, "little") + raw + data

    good = st({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 16)
    (tmp_path / "ok.safetensors").write_bytes(good)
    assert "1 tensors" in check_file_format(tmp_path / "ok.safetensors", "safetensors")
    (tmp_path / "cut.safetensors").write_bytes(good[:-4])
    with pytest.raises(CheckpointError, match="outside the 12 data bytes"):
        check_file_format(tmp_path / "cut.safetensors", "safetensors")
    (tmp_path / "lie.safetensors").write_bytes(st({"w": {"dtype": "F32", "shape": [1 << 33],
                                                        "data_offsets": [0, 16]}}, b"\0" * 16))
    with pytest.raises(CheckpointError, match="needs 34,359,738,368 bytes but its offsets span 16"):
        check_file_format(tmp_path / "lie.safetensors", "safetensors")


def test_official_sized_checkpoints_pass_the_installers_check_well_inside_the_pickle_limits(
        official_arcface_files, seeded_checkpoints):
    """The installer's format check (one set of pickle limits, shared with the loader) accepts every encoding of the
    official files at their real size, with the measured pickle figures far below each limit."""
    from simswap_core.models.pickle_scan import PickleLimits, scan_pickle

    limits = PickleLimits()
    files = {k: v for k, v in official_arcface_files.items() if not k.startswith("_")} | seeded_checkpoints
    for name, path in files.items():
        started = time.process_time()
        what = check_file_format(path, "torch")
        cpu = time.process_time() - started
        if not zipfile.is_zipfile(path):  # legacy stream: its pickles are scanned inside check_file_format
            print(f"{name}: {what}; check_file_format {cpu:.2f} s CPU")
            continue
        with zipfile.ZipFile(path) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
        stats = scan_pickle(data, name)
        print(f"{name}: {what}; data.pkl {stats}; check_file_format {cpu:.2f} s CPU")
        assert stats.nbytes < limits.max_bytes // 4 and stats.opcodes < limits.max_opcodes // 2
        assert stats.memo < limits.max_memo // 4 and stats.depth < limits.max_depth // 2
        assert stats.expanded < limits.max_expanded // 4


def test_safetensors_written_by_the_library_pass_and_any_gap_or_overlap_is_refused(tmp_path):
    """One header reader for the installer and the loader: a file from safetensors.torch.save_file (metadata, empty
    tensors) passes both; bytes between or after the tensors, or shared by two, are refused by both."""
    import torch
    from safetensors.torch import save_file

    from simswap_core.models.safetensors_header import read_safetensors_header

    path = tmp_path / "lib.safetensors"
    save_file({"a": torch.zeros(3), "empty": torch.zeros(0, 4), "h": torch.ones(2, 2, dtype=torch.float16)},
              str(path), metadata={"kind": "generator", "crop_size": "224"})
    assert "3 tensors" in check_file_format(path, "safetensors")
    header = read_safetensors_header(path)
    assert header.metadata == {"kind": "generator", "crop_size": "224"}
    assert header.tensors["empty"][:2] == ("F32", (0, 4))
    assert header.meta_state()["h"].dtype == torch.float16

    def st(tensors: dict, data: bytes) -> Path:
        raw = json.dumps(tensors).encode()
        out = tmp_path / "forged.safetensors"
        out.write_bytes(len(raw).to_bytes(8, "little") + raw + data)
        return out

    f32 = {"dtype": "F32", "shape": [2]}
    cases = {
        "unused bytes before tensor 'b'": ({"a": f32 | {"data_offsets": [0, 8]},
                                             "b": f32 | {"data_offsets": [12, 20]}}, bytes(20)),
        "extra bytes after the last tensor": ({"a": f32 | {"data_offsets": [0, 8]}}, bytes(12)),
        "overlapping offsets": ({"a": f32 | {"data_offsets": [0, 8]}, "b": f32 | {"data_offsets": [4, 12]},
                                 "c": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, bytes(16)),
        "exactly dtype, shape and data_offsets": ({"a": f32 | {"data_offsets": [0, 8], "x": 1}}, bytes(8)),
    }
    for words, (tensors, data) in cases.items():
        forged = st(tensors, data)
        for check in (lambda p: check_file_format(p, "safetensors"), read_safetensors_header):
            with pytest.raises(CheckpointError, match=re.escape(words)) as info:
                check(forged)
            assert str(forged) in str(info.value) and "expected" in str(info.value)


def test_zip_directory_checks_are_shared_by_the_installer_and_the_loader(tmp_path):
    """A model pack with two records of one name, or a record that inflates like a zip bomb, is refused by the
    installer's format check with the loader's own words (one implementation: models/zip_directory.py)."""
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as z, pytest.warns(UserWarning, match="Duplicate"):
        for _ in range(2):
            z.writestr("pack/model.onnx", b"x" * 100)
    with pytest.raises(CheckpointError, match="found the zip record 'pack/model.onnx' twice"):
        check_file_format(twice, "zip")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("pack/model.onnx", bytes(8 << 20))
    with pytest.raises(CheckpointError, match="refused as a zip bomb"):
        check_file_format(bomb, "zip")
