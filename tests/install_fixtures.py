"""The local HTTP server on 127.0.0.1 and the fixtures of the installer tests (test_install, test_installer_cli,
test_hostile_downloads): payloads with known hashes, real model files of each format (a torch checkpoint, an ONNX
model), a handler that can drop, stall, ignore ranges, serve archives, send endless or encoded bodies and count
the bytes it served, a throw-away catalogue, and every test isolated from the user's model folders."""
from __future__ import annotations

import hashlib
import io
import re
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simswap_core.models import catalogue as mc
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


def _torch_file(n: int, seed: int) -> bytes:
    """A real PyTorch zip checkpoint (torch.save) holding ``n`` payload bytes as a uint8 tensor."""
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.frombuffer(bytearray(_payload(n, seed)), dtype=torch.uint8)}, buf)
    return buf.getvalue()


def _onnx_file(seed: int) -> bytes:
    """A real (tiny) ONNX model; ``seed`` goes into its doc string so each seed gives other bytes."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, doc_string=f"test model {seed}")
    onnx.checker.check_model(model)
    return model.SerializeToString()


# ------------------------------------------------------------------------------------------------ local server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range"),
                             "if_range": self.headers.get("If-Range"),
                             "accept_encoding": self.headers.get("Accept-Encoding")})
        route = srv.routes.get(self.path)
        if route is None or route.get("status"):
            code = route.get("status", 404) if route else 404
            body = b"nope"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if route.get("endless"):  # 200, no Content-Length, the data repeated until the client hangs up
            self.send_response(200)
            self.send_header("Content-Type", route.get("type", "application/octet-stream"))
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                while srv.served.get(self.path, 0) < route.get("max_bytes", 1 << 30):
                    self.wfile.write(route["data"])
                    srv.served[self.path] = srv.served.get(self.path, 0) + len(route["data"])
            except OSError:
                pass
            return
        if route.get("hold") is not None:  # wait until the test releases the route
            route["hold"].wait(10)
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
        if route.get("length", True):
            self.send_header("Content-Length", str(len(body)))
        else:
            self.close_connection = True
        etag = route.get("etag", f'"{_sha(data)[:16]}"')
        if etag:
            self.send_header("ETag", etag)
        for key, value in route.get("headers", {}).items():
            self.send_header(key, value)
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
        srv.served[self.path] = srv.served.get(self.path, 0) + len(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.routes = {}
    srv.requests = []
    srv.served = {}  # path -> body bytes written to the socket
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

def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()
