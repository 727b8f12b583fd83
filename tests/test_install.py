"""Installer and downloader against a local HTTP server on 127.0.0.1 (no internet): mirrors, resume, checksums,
archive members, never overwriting user files, atomic publication, lock file."""
from __future__ import annotations

import os
import time

import pytest

from install_fixtures import (  # noqa: F401
    FAST,
    REPO,
    _entry,
    _Handler,
    _isolated,
    _onnx_file,
    _payload,
    _sha,
    _torch_file,
    _zip,
    catalogue,
    server,
)
from simswap_core.models import download as dl
from simswap_core.models import install as inst

# ------------------------------------------------------------------------------------------------ fetch / download


def test_download_with_sha256_check(server, tmp_path):
    data = _payload(5000, 1)
    server.routes["/a.pth"] = {"data": data}
    dest = tmp_path / "m" / "a.pth"
    res = dl.download_file([server.url + "/a.pth"], dest, size=len(data), sha256=_sha(data), **FAST)
    assert dest.read_bytes() == data and res.sha256 == _sha(data) and res.size == len(data)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.pth"]  # no .part / .json left behind


def test_mirror_fallback(server, tmp_path):
    data = _payload(3000, 2)
    server.routes["/bad/a.pth"] = {"status": 500}
    server.routes["/html/a.pth"] = {"data": b"<html>quota exceeded</html>", "type": "text/html; charset=utf-8"}
    server.routes["/good/a.pth"] = {"data": data}
    urls = [server.url + p for p in ("/missing/a.pth", "/bad/a.pth", "/html/a.pth", "/good/a.pth")]
    dest = tmp_path / "a.pth"
    res = dl.download_file(urls, dest, sha256=_sha(data), retries=1, **FAST)
    assert res.url.endswith("/good/a.pth") and dest.read_bytes() == data
    paths = [r["path"] for r in server.requests]
    assert paths == ["/missing/a.pth", "/bad/a.pth", "/bad/a.pth", "/html/a.pth", "/good/a.pth"]


def test_all_mirrors_fail_names_each_url(server, tmp_path):
    server.routes["/html/a.pth"] = {"data": b"<html></html>", "type": "text/html"}
    with pytest.raises(dl.DownloadError) as info:
        dl.download_file([server.url + "/x/a.pth", server.url + "/html/a.pth"], tmp_path / "a.pth", retries=0, **FAST)
    msg = str(info.value)
    assert "/x/a.pth: HTTP 404" in msg and "HTML page" in msg
    assert not (tmp_path / "a.pth").exists()


def test_dropped_connection_is_resumed_with_range(server, tmp_path):
    data = _payload(20000, 3)
    server.routes["/a.pth"] = {"data": data, "drops": 1, "cut": 7000}
    dest = tmp_path / "a.pth"
    dl.download_file([server.url + "/a.pth"], dest, sha256=_sha(data), retries=2, **FAST)
    assert dest.read_bytes() == data
    assert [r["range"] for r in server.requests] == [None, "bytes=7000-"]
    assert server.requests[1]["if_range"] == f'"{_sha(data)[:16]}"'  # guarded by the ETag of the first response


def test_stalled_connection_times_out_and_resumes(server, tmp_path):
    data = _payload(12000, 22)
    server.routes["/a.pth"] = {"data": data, "stalls": 1, "cut": 3000, "stall_s": 1.5}
    dest = tmp_path / "a.pth"
    t0 = time.monotonic()
    dl.download_file([server.url + "/a.pth"], dest, sha256=_sha(data), timeout=0.3, retries=1, retry_wait=0.0,
                     progress=False)
    assert time.monotonic() - t0 < 1.4  # gave up on the silent connection after the timeout, did not wait it out
    assert dest.read_bytes() == data and [r["range"] for r in server.requests] == [None, "bytes=3000-"]


def test_interrupted_download_leaves_no_target_and_resumes_next_run(server, tmp_path):
    data = _payload(20000, 4)
    server.routes["/a.pth"] = {"data": data, "drops": 99, "cut": 5000}
    dest = tmp_path / "a.pth"
    with pytest.raises(dl.DownloadError, match=r"\(5,000 bytes from .*/a.pth\) is kept in .*a.pth.part; the next run "
                       r"resumes it if"):
        dl.download_file([server.url + "/a.pth"], dest, retries=0, **FAST)
    assert not dest.exists()  # nothing partial at the target path
    part = tmp_path / "a.pth.part"
    assert part.read_bytes() == data[:5000]
    server.routes["/a.pth"]["drops"] = 0
    dl.download_file([server.url + "/a.pth"], dest, sha256=_sha(data), retries=0, **FAST)
    assert dest.read_bytes() == data and not part.exists()
    assert server.requests[-1]["range"] == "bytes=5000-"


def test_existing_part_file_is_resumed(server, tmp_path):
    data = _payload(9000, 5)
    server.routes["/a.pth"] = {"data": data}
    part = tmp_path / "a.pth.part"
    part.write_bytes(data[:4000])  # no sidecar: allowed because a published sha256 guards the result
    dl.download_file([server.url + "/a.pth"], tmp_path / "a.pth", sha256=_sha(data), **FAST)
    assert (tmp_path / "a.pth").read_bytes() == data
    assert server.requests[0]["range"] == "bytes=4000-"


def test_unknown_part_without_checksum_is_restarted(server, tmp_path):
    data = _payload(9000, 6)
    server.routes["/a.pth"] = {"data": data}
    (tmp_path / "a.pth.part").write_bytes(b"x" * 4000)  # origin unknown and nothing to verify it against
    dl.download_file([server.url + "/a.pth"], tmp_path / "a.pth", **FAST)
    assert (tmp_path / "a.pth").read_bytes() == data
    assert server.requests[0]["range"] is None


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    data = _payload(9000, 7)
    server.routes["/a.pth"] = {"data": data, "ranges": False}
    (tmp_path / "a.pth.part").write_bytes(data[:3000])
    dl.download_file([server.url + "/a.pth"], tmp_path / "a.pth", sha256=_sha(data), **FAST)
    assert (tmp_path / "a.pth").read_bytes() == data


def test_complete_part_gets_416_and_is_accepted(server, tmp_path):
    data = _payload(4000, 8)
    server.routes["/a.pth"] = {"data": data}
    (tmp_path / "a.pth.part").write_bytes(data)
    dl.download_file([server.url + "/a.pth"], tmp_path / "a.pth", sha256=_sha(data), **FAST)
    assert (tmp_path / "a.pth").read_bytes() == data


def test_checksum_mismatch_leaves_nothing_and_explains(server, tmp_path):
    data = _payload(4000, 9)
    server.routes["/a.pth"] = {"data": data}
    wanted = _sha(b"something else")
    dest = tmp_path / "a.pth"
    with pytest.raises(dl.ChecksumError) as info:
        dl.download_file([server.url + "/a.pth"], dest, sha256=wanted, **FAST)
    msg = str(info.value)
    assert wanted in msg and _sha(data) in msg and "Nothing was written" in msg
    assert isinstance(info.value, ValueError)  # a CheckpointError too
    assert list(tmp_path.iterdir()) == []  # no target, no .part


def test_announced_size_mismatch_is_refused_before_downloading(server, tmp_path):
    server.routes["/a.pth"] = {"data": _payload(4000, 10)}
    with pytest.raises(dl.ChecksumError, match="4,000 bytes, expected 3,999"):
        dl.download_file([server.url + "/a.pth"], tmp_path / "a.pth", size=3999, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_never_overwritten(server, tmp_path):
    data = _payload(4000, 11)
    server.routes["/a.pth"] = {"data": data}
    dest = tmp_path / "a.pth"
    dest.write_bytes(b"user file")
    os.utime(dest, (1_000_000_000, 1_000_000_000))
    with pytest.raises(dl.TargetExistsError):
        dl.download_file([server.url + "/a.pth"], dest, **FAST)
    assert dest.read_bytes() == b"user file" and dest.stat().st_mtime == 1_000_000_000
    assert server.requests == []


def test_publish_refuses_a_target_that_appeared_meanwhile(tmp_path):
    tmp = tmp_path / "a.pth.part"
    tmp.write_bytes(b"new")
    dest = tmp_path / "a.pth"
    dest.write_bytes(b"appeared")
    with pytest.raises(dl.TargetExistsError):
        dl.publish(tmp, dest)
    assert dest.read_bytes() == b"appeared" and tmp.read_bytes() == b"new"
    dest.unlink()
    assert dl.publish(tmp, dest) == dest and dest.read_bytes() == b"new" and not tmp.exists()


def test_publish_without_hard_links_still_never_overwrites(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise PermissionError(1, "hard links not supported here")

    monkeypatch.setattr(dl.os, "link", no_links)
    tmp, dest = tmp_path / "a.part", tmp_path / "a.pth"
    tmp.write_bytes(b"new")
    dest.write_bytes(b"user")
    with pytest.raises(dl.TargetExistsError):
        dl.publish(tmp, dest)
    assert dest.read_bytes() == b"user" and tmp.exists()
    dest.unlink()
    dl.publish(tmp, dest)
    assert dest.read_bytes() == b"new" and not tmp.exists()


# ------------------------------------------------------------------------------------------------ install_model




def test_archive_member_extraction_and_lock_record(server, tmp_path):
    member = _onnx_file(12)
    archive = _zip({"pack/readme.txt": b"hi", "pack/det.onnx": member, "other/x.onnx": b"x"})
    server.routes["/pack.zip"] = {"data": archive}
    entry = _entry([server.url + "/pack.zip"], filename="det.onnx", subfolder="insightface/models/pack",
                   archive_member="det.onnx", archive_size=len(archive), sha256=_sha(member), size=len(member))
    models = tmp_path / "models"
    res = inst.install_model(entry, models, log=lambda s: None, **FAST)
    dest = models / "insightface" / "models" / "pack" / "det.onnx"
    assert res.status == "downloaded" and res.path == dest and dest.read_bytes() == member
    assert sorted(p.name for p in dest.parent.iterdir()) == ["det.onnx"]  # archive .part deleted
    rec = inst.read_lock(models)["insightface/models/pack/det.onnx"]
    assert rec["sha256"] == _sha(member) and rec["archive"]["sha256"] == _sha(archive)
    assert rec["archive"]["member"] == "det.onnx"


def test_archive_member_missing_or_wrong_is_refused(server, tmp_path):
    archive = _zip({"a/model.pth": b"abc"})
    server.routes["/w.zip"] = {"data": archive}
    entry = _entry([server.url + "/w.zip"], filename="model.pth", archive_member="a/model.pth", sha256=_sha(b"x"))
    with pytest.raises(dl.ChecksumError, match="sha256"):
        inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    entry2 = _entry([server.url + "/w.zip"], filename="gone.pth", archive_member="x/gone.pth")
    with pytest.raises(dl.ChecksumError, match="no member 'x/gone.pth'.*a/model.pth"):
        inst.install_model(entry2, tmp_path, log=lambda s: None, **FAST)
    assert not any(p.is_file() for p in (tmp_path / "simswap").iterdir())


def test_mirror_of_the_extracted_file_is_used_directly(server, tmp_path):
    member = _torch_file(3000, 13)
    server.routes["/mirror/g.pth"] = {"data": member}
    entry = _entry([server.url + "/gone.zip", server.url + "/mirror/g.pth"], filename="g.pth",
                   archive_member="ck/people/g.pth")
    res = inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    assert res.path.read_bytes() == member
    assert inst.read_lock(tmp_path)["simswap/g.pth"]["url"].endswith("/mirror/g.pth")


def test_first_download_is_recorded_and_later_downloads_verified(server, tmp_path):
    data = _torch_file(4000, 14)
    server.routes["/t.pth"] = {"data": data}
    entry = _entry([server.url + "/t.pth"], filename="t.pth")
    res = inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    assert f"size {len(data):,} B and sha256 {_sha(data)} were recorded" in res.message
    assert str(inst.lock_path(tmp_path)) in res.message
    rec = inst.read_lock(tmp_path)["simswap/t.pth"]
    assert rec["sha256"] == _sha(data) and rec["checksum_source"] == "first download"
    # the file is gone and upstream now serves something else: refused against the record
    res.path.unlink()
    server.routes["/t.pth"] = {"data": _torch_file(4000, 15)}
    with pytest.raises(dl.ChecksumError, match="recorded at the first download"):
        inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    assert not res.path.exists()


def test_existing_user_file_is_verified_never_replaced(server, tmp_path):
    data = _torch_file(4000, 16)
    server.routes["/t.pth"] = {"data": data}
    entry = _entry([server.url + "/t.pth"], filename="t.pth", sha256=_sha(data))
    dest = tmp_path / "simswap" / "t.pth"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"a different user file")
    os.utime(dest, (1_100_000_000, 1_100_000_000))
    with pytest.raises(dl.ChecksumError) as info:
        inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    assert "NOT overwritten" in str(info.value) and str(dest) in str(info.value)
    assert dest.read_bytes() == b"a different user file" and dest.stat().st_mtime == 1_100_000_000
    assert server.requests == []
    dest.write_bytes(data)
    assert inst.install_model(entry, tmp_path, log=lambda s: None, **FAST).status == "present"
    unverified = _entry([server.url + "/t.pth"], filename="t.pth")
    res = inst.install_model(unverified, tmp_path, log=lambda s: None, **FAST)
    assert res.status == "present-unverified" and _sha(data) in res.message
    assert server.requests == []
