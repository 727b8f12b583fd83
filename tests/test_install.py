"""Installer and downloader against a local HTTP server on 127.0.0.1 (no internet): mirrors, resume, checksums,
archive members, never overwriting user files, atomic publication, lock file, --list/--check and install.py."""
from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simswap_core.models import catalogue as mc
from simswap_core.models import download as dl
from simswap_core.models import install as inst
from simswap_core.models import installer_cli
from simswap_core.models.catalogue import ModelFile

REPO = Path(__file__).resolve().parent.parent
FAST = dict(timeout=5.0, retry_wait=0.0, progress=False)


def _payload(n: int, seed: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ local server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range"),
                             "if_range": self.headers.get("If-Range")})
        route = srv.routes.get(self.path)
        if route is None or route.get("status"):
            code = route.get("status", 404) if route else 404
            body = b"nope"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data: bytes = route["data"]
        ctype = route.get("type", "application/octet-stream")
        start = 0
        rng = self.headers.get("Range")
        if rng and route.get("ranges", True):
            m = re.fullmatch(r"bytes=(\d+)-", rng)
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{_sha(data)[:16]}"')
        self.end_headers()
        if route.get("stalls", 0) > 0:  # send part of the body, then go silent (client must time out)
            route["stalls"] -= 1
            self.wfile.write(body[: route.get("cut", len(body) // 2)])
            self.wfile.flush()
            time.sleep(route.get("stall_s", 1.0))
            self.close_connection = True
            return
        if route.get("drops", 0) > 0:  # send part of the body, then drop the connection
            route["drops"] -= 1
            self.wfile.write(body[: route.get("cut", len(body) // 2)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.routes = {}
    srv.requests = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SIMSWAP_MODELS_DIR", raising=False)
    monkeypatch.delenv("SIMSWAP_AUTO_DOWNLOAD", raising=False)
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)


def _entry(urls, *, name="tiny", filename="tiny.pth", subfolder="simswap", size=None, sha256=None, **kw) -> ModelFile:
    return ModelFile(name=name, filename=filename, subfolder=subfolder, kind="generator", urls=tuple(urls),
                     size=size, sha256=sha256, license=kw.pop("license", "test licence"),
                     description="generated test payload", **kw)


@pytest.fixture
def catalogue(monkeypatch):
    """Replace the catalogue with test entries: ``catalogue({name: entry}, recommended=(...))``."""

    def install(entries: dict[str, ModelFile], recommended=()):
        monkeypatch.setattr(mc, "CATALOGUE", dict(entries))
        monkeypatch.setattr(mc, "ALIASES", {})
        monkeypatch.setattr(mc, "RECOMMENDED", tuple(recommended))

    return install


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
    with pytest.raises(dl.DownloadError, match="resumed by the next run"):
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


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_archive_member_extraction_and_lock_record(server, tmp_path):
    member = _payload(6000, 12)
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
    member = _payload(3000, 13)
    server.routes["/mirror/g.pth"] = {"data": member}
    entry = _entry([server.url + "/gone.zip", server.url + "/mirror/g.pth"], filename="g.pth",
                   archive_member="ck/people/g.pth")
    res = inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    assert res.path.read_bytes() == member
    assert inst.read_lock(tmp_path)["simswap/g.pth"]["url"].endswith("/mirror/g.pth")


def test_first_download_is_recorded_and_later_downloads_verified(server, tmp_path):
    data = _payload(4000, 14)
    server.routes["/t.pth"] = {"data": data}
    entry = _entry([server.url + "/t.pth"], filename="t.pth")
    res = inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    assert "recorded size 4,000 B and sha256" in res.message and str(inst.lock_path(tmp_path)) in res.message
    rec = inst.read_lock(tmp_path)["simswap/t.pth"]
    assert rec["sha256"] == _sha(data) and rec["checksum_source"] == "first download"
    # the file is gone and upstream now serves something else: refused against the record
    res.path.unlink()
    server.routes["/t.pth"] = {"data": _payload(4000, 15)}
    with pytest.raises(dl.ChecksumError, match="recorded at the first download"):
        inst.install_model(entry, tmp_path, log=lambda s: None, **FAST)
    assert not res.path.exists()


def test_existing_user_file_is_verified_never_replaced(server, tmp_path):
    data = _payload(4000, 16)
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


# ------------------------------------------------------------------------------------------------ CLI


def _run_main(argv) -> tuple[int, str]:
    lines: list[str] = []
    code = installer_cli.main(argv, out=lines.append)
    return code, "\n".join(lines)


def test_cli_list_real_catalogue(tmp_path):
    models = tmp_path / "models"
    g = models / "simswap" / "latest_net_G.pth"
    g.parent.mkdir(parents=True)
    g.write_bytes(b"g")
    code, out = _run_main(["--list", "--models-dir", str(models)])
    assert code == 0
    for name in mc.CATALOGUE:
        assert name in out
    assert f"installed: {g}" in out and "MISSING" in out
    assert "NON-COMMERCIAL" in out and "CC BY-NC 4.0" in out and "256,461,775 B" in out
    assert "https://github.com/neuralchen/SimSwap/releases/download/1.0/checkpoints.zip" in out
    assert "not published" in out


def test_cli_check_reports_each_state(server, tmp_path, catalogue):
    good, bad = _payload(1000, 17), _payload(1000, 18)
    server.routes["/rec.pth"] = {"data": good}
    entries = {
        "pub": _entry(["https://example.invalid/pub.pth"], name="pub", filename="pub.pth", sha256=_sha(good)),
        "badpub": _entry(["https://example.invalid/b.pth"], name="badpub", filename="b.pth", sha256=_sha(good)),
        "rec": _entry([server.url + "/rec.pth"], name="rec", filename="rec.pth"),
        "free": _entry(["https://example.invalid/free.pth"], name="free", filename="free.pth"),
        "gone": _entry(["https://example.invalid/gone.pth"], name="gone", filename="gone.pth"),
    }
    catalogue(entries)
    models = tmp_path / "models"
    (models / "simswap").mkdir(parents=True)
    (models / "simswap" / "pub.pth").write_bytes(good)
    (models / "simswap" / "b.pth").write_bytes(bad)
    (models / "simswap" / "free.pth").write_bytes(bad)
    inst.install_model(entries["rec"], models, log=lambda s: None, **FAST)
    code, out = _run_main(["--check", "--models-dir", str(models)])
    assert code == 1  # one mismatch
    assert re.search(r"OK +pub:", out) and re.search(r"MISMATCH +badpub:", out)
    assert re.search(r"OK-RECORDED +rec:", out) and re.search(rf"UNVERIFIED +free:.*{_sha(bad)}", out)
    assert re.search(r"MISSING +gone:", out)
    (models / "simswap" / "rec.pth").write_bytes(bad)  # tampered after download
    code, out = _run_main(["--check", "--models-dir", str(models)])
    assert re.search(r"MISMATCH +rec:.*recorded at its first download", out)


def test_cli_downloads_with_licence_notice_first(server, tmp_path, catalogue):
    data = _payload(2000, 19)
    server.routes["/nc.pth"] = {"data": data}
    catalogue({"nc": _entry([server.url + "/nc.pth"], name="nc", filename="nc.pth", noncommercial=True,
                            license="CC BY-NC 4.0 test")})
    code, out = _run_main(["--model", "nc", "--models-dir", str(tmp_path), "--no-progress"])
    assert code == 0 and (tmp_path / "simswap" / "nc.pth").read_bytes() == data
    assert out.index("LICENCE NOTICE") < out.index("downloading")
    assert "NON-COMMERCIAL" in out and "CC BY-NC 4.0 test" in out


def test_cli_unknown_model_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        installer_cli.main(["--model", "nonexistent", "--models-dir", str(tmp_path)], out=lambda s: None)
    assert info.value.code == 2 and "unknown model 'nonexistent'" in capsys.readouterr().err


def test_cli_mirror_folder_and_failure_exit_code(server, tmp_path, catalogue):
    data = _payload(2000, 20)
    local = tmp_path / "usb"
    local.mkdir()
    (local / "official.zip").write_bytes(_zip({"ck/m.pth": data}))
    catalogue({
        "m": _entry([server.url + "/official.zip"], name="m", filename="m.pth", archive_member="ck/m.pth",
                    sha256=_sha(data)),
        "n": _entry([server.url + "/none.pth"], name="n", filename="n.pth"),
    })
    models = tmp_path / "models"
    code, out = _run_main(["--model", "m", "--models-dir", str(models), "--mirror", str(local), "--no-progress"])
    assert code == 0, out
    assert (models / "simswap" / "m.pth").read_bytes() == data
    assert server.requests == []  # the local mirror was tried first and worked
    code, out = _run_main(["--model", "n", "--models-dir", str(models), "--retries", "0", "--no-progress"])
    assert code == 1 and "FAIL  n:" in out and "HTTP 404" in out


def test_no_args_downloads_nothing_but_env_opt_in_does(server, tmp_path, catalogue, monkeypatch):
    data = _payload(2000, 21)
    server.routes["/r.pth"] = {"data": data}
    catalogue({"r": _entry([server.url + "/r.pth"], name="r", filename="r.pth", recommended=True)},
              recommended=("r",))
    models = tmp_path / "models"
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(models))
    code, out = _run_main([])
    assert code == 0 and "MISSING  r" in out and "--model r --models-dir" in out and "--download" in out
    assert server.requests == [] and not models.exists()
    monkeypatch.setenv("SIMSWAP_AUTO_DOWNLOAD", "1")
    code, out = _run_main(["--no-progress"])
    assert code == 0 and (models / "simswap" / "r.pth").read_bytes() == data


def test_install_py_no_args_is_quiet_offline_and_does_not_import_torch(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SIMSWAP_MODELS_DIR", "SIMSWAP_AUTO_DOWNLOAD")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    code = (
        "import runpy, sys\n"
        "sys.argv = ['install.py']\n"
        "try:\n    runpy.run_path('install.py', run_name='__main__')\n"
        "except SystemExit as e:\n    print('EXIT', e.code)\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "EXIT 0" in proc.stdout and "NO-TORCH" in proc.stdout
    assert "nothing is downloaded without an explicit flag" in proc.stdout
    assert "MISSING  simswap_224" in proc.stdout and "--download" in proc.stdout
    assert not (tmp_path / "xdg").exists()  # nothing written


def test_requirements_txt_follows_comfyui_manager_rules():
    lines = [ln.split("#", 1)[0].strip() for ln in (REPO / "requirements.txt").read_text().splitlines()]
    reqs = [ln for ln in lines if ln]
    names = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}
    assert names == {"numpy", "safetensors", "pillow", "kornia", "av", "tqdm", "onnx"}
    assert all("==" not in r and "<" not in r for r in reqs)  # loose lower bounds only
