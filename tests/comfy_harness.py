"""A real ComfyUI server in a subprocess, with this checkout loaded as a custom-node pack (test tooling).

* ComfyUI is found in $SIMSWAP_COMFYUI_DIR or <repo>/.cache/comfyui (installed by scripts/install_comfyui.sh).
  Missing: the tests fail when $CI is set (ComfyUI tests are never skipped in CI), otherwise they are skipped.
* The server runs ``python main.py --cpu`` on a free loopback port with temp input/output/temp/user dirs,
  ``--disable-all-custom-nodes --whitelist-custom-nodes ComfyUI-SimSwap`` and an ``--extra-model-paths-config``
  yaml that points ``custom_nodes`` at a temp folder holding a symlink ``ComfyUI-SimSwap`` -> this checkout, and
  ``simswap`` / ``insightface`` at temp model folders filled with seeded (random, reproducible) weights.
  The seeded files use the official names (latest_net_G.pth, 550000_net_G.pth, arcface_checkpoint.tar - also as
  arcface_r101se.pth -, 79999_iter.pth), which is what the workflows in workflows/ name.
* Real photos (skimage astronaut, insightface t1.jpg) are copied into the input dir at start, with a short synthetic
  two-person clip (``INPUT_CLIP``, made from t1.jpg faces by tests/video_fixtures.py) for Load Video.
* One server per pytest session: every test module asks ``get_server()`` which starts it once; it is stopped at exit.
  Scripts (scripts/make_workflows.py) use ``start_standalone()``.
* $SIMSWAP_KEEP_COMFY_TMP=1 keeps the temp folder (server log: <tmp>/comfyui.log).
"""
from __future__ import annotations

import atexit
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-SimSwap"
STARTUP_TIMEOUT = float(os.environ.get("SIMSWAP_COMFYUI_STARTUP_TIMEOUT", "180"))


def comfyui_dir() -> Path:
    return Path(os.environ.get("SIMSWAP_COMFYUI_DIR") or REPO / ".cache" / "comfyui")


def require_comfyui(module_level: bool = False) -> Path:
    """The ComfyUI tree, or fail (in CI) / skip (elsewhere) with the command that installs it. ``module_level``:
    called while a test module is imported (skips the whole module)."""
    d = comfyui_dir()
    if not (d / "main.py").is_file():
        msg = (f"no ComfyUI tree at {d} (set SIMSWAP_COMFYUI_DIR, or run "
               f"`bash scripts/install_comfyui.sh {d}`)")
        if in_ci():
            pytest.fail(msg + "; ComfyUI tests are never skipped in CI", pytrace=False)
        pytest.skip(msg, allow_module_level=module_level)
    return d


def use_comfy_api() -> Path:
    """Make ComfyUI's own packages (``comfy_api`` for the V3 node classes, ``comfy``, ``folder_paths``) importable
    in this process, for tests that import the pack's ``nodes`` without a server. The tree is APPENDED to sys.path
    so this repository's ``nodes`` package still wins over ComfyUI's ``nodes.py``. Call it at module level, before
    ``import nodes``: a missing ComfyUI fails the module in CI and skips it elsewhere."""
    d = require_comfyui(module_level=True)
    if str(d) not in sys.path:
        sys.path.append(str(d))
    from comfy.cli_args import args  # ComfyUI's defaults (no argv parsing); as `main.py --cpu` on this machine

    if not torch_has_accelerator():
        args.cpu = True  # before anything imports comfy.model_management (it would probe CUDA)
    return d


@pytest.fixture()
def identities_folder(tmp_path, monkeypatch):
    """models/simswap registered in ComfyUI's folder_paths, pointing at a temp folder (restored afterwards); yields
    its identities/ folder. Import it into a test module that uses the pack's nodes without a server."""
    use_comfy_api()
    import folder_paths

    from nodes._common import register_model_folders

    register_model_folders()
    _paths, exts = folder_paths.folder_names_and_paths["simswap"]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "simswap", ([str(tmp_path)], exts))
    folder_paths.filename_list_cache.pop("simswap", None)
    yield tmp_path / "identities"
    folder_paths.filename_list_cache.pop("simswap", None)


def torch_has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo_paths() -> dict[str, Path]:
    """Real photos from installed packages: astronaut (512x512, 1 face), t1 (1280x886, 6 faces)."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the test photos need `pip install --no-deps insightface==2.1` (its data/images/t1.jpg)")
    t1 = Path(spec.submodule_search_locations[0]) / "data" / "images" / "t1.jpg"
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the test photos need scikit-image (skimage.data.astronaut)")
    astronaut = Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png"
    return {"t1.jpg": t1, "astronaut.png": astronaut}


#: the synthetic two-person clip in the input folder (workflows/07 names it in its Load Video node)
INPUT_CLIP = "two_people.mp4"


def write_input_clip(path: Path, frames: int = 12) -> Path:
    """A short 640x360 two-person clip with audio (tests/video_fixtures.make_clip: faces from insightface's t1.jpg)."""
    tests = str(Path(__file__).resolve().parent)
    if tests not in sys.path:
        sys.path.append(tests)
    from video_fixtures import make_clip

    make_clip(path, frames=frames, size=(640, 360), people=2, audio=True)
    return path


def _model_clutter():
    """tests/model_clutter.py, importable whether this module was imported from tests/ or by a script."""
    tests = str(Path(__file__).resolve().parent)
    if tests not in sys.path:
        sys.path.append(tests)
    import model_clutter

    return model_clutter


def write_seeded_parser(path: Path, seed: int = 1234) -> Path:
    """A BiSeNet state dict with reproducible random weights (stand-in for 79999_iter.pth, which is not on PyPI)."""
    import torch

    from simswap_core.networks.bisenet import NUM_CLASSES, BiSeNet

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = BiSeNet(NUM_CLASSES)
    torch.save(net.state_dict(), path)
    return path


class ComfyServer:
    """A running ComfyUI server and a small HTTP client for it."""

    def __init__(self, root: Path, comfy_dir: Path):
        self.root = root
        self.comfy_dir = comfy_dir
        self.input_dir = root / "input"
        self.output_dir = root / "output"
        self.temp_dir = root / "temp"
        self.user_dir = root / "user"
        self.models_dir = root / "models"
        self.custom_nodes_dir = root / "custom_nodes"
        self.log_path = root / "comfyui.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.client_id = uuid.uuid4().hex
        self.model_files: dict[str, Path] = {}
        self.clutter: dict[str, Path] = {}  # other packs' model files in the model folders (model_clutter.py)

    # ------------------------------------------------------------------ setup
    def prepare(self, seed_models: bool = True) -> None:
        """Folders, the pack link and the photos; ``seed_models=False`` leaves the model folders EMPTY (a ComfyUI
        without the weights, e.g. for the frontend's missing-models dialog)."""
        for d in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir, self.custom_nodes_dir,
                  self.models_dir / "simswap" / "identities", self.models_dir / "insightface",
                  self.models_dir / "facerestore_models", self.models_dir / "upscale_models"):
            d.mkdir(parents=True, exist_ok=True)
        (self.custom_nodes_dir / PACK_NAME).symlink_to(REPO, target_is_directory=True)
        if not seed_models:
            self._copy_photos_and_paths()
            return
        from simswap_core.models.seeded import write_seeded_checkpoints

        self.model_files = {k: Path(v) for k, v in write_seeded_checkpoints(self.models_dir / "simswap").items()}
        # the official ArcFace file name (what the workflows in workflows/ name); a state dict inside is fine
        official_arcface = self.models_dir / "simswap" / "arcface_checkpoint.tar"
        shutil.copyfile(self.model_files["arcface"], official_arcface)
        self.model_files["arcface_official"] = official_arcface
        self.model_files["parser"] = write_seeded_parser(self.models_dir / "simswap" / "79999_iter.pth")
        # what a ReActor / insightface install leaves next to them (the model lists must leave it out): ONNX
        # models with the signatures of inswapper_128, w600k_r50, genderage, 1k3d68, 2d106det; unofficial names
        self.clutter = {**_model_clutter().write_insightface_clutter(self.models_dir / "insightface"),
                        **_model_clutter().write_torch_clutter(self.models_dir / "simswap")}
        self._copy_photos_and_paths()

    def _copy_photos_and_paths(self) -> None:
        for name, src in photo_paths().items():
            shutil.copyfile(src, self.input_dir / name)
        write_input_clip(self.input_dir / INPUT_CLIP)
        yaml = (f"simswap_tests:\n"
                f"    custom_nodes: {self.custom_nodes_dir}\n"
                f"    simswap: {self.models_dir / 'simswap'}\n"
                f"    insightface: {self.models_dir / 'insightface'}\n"
                f"    facerestore_models: {self.models_dir / 'facerestore_models'}\n"  # restoration tests
                f"    upscale_models: {self.models_dir / 'upscale_models'}\n")
        (self.root / "extra_model_paths.yaml").write_text(yaml)

    def start(self) -> None:
        cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--extra-model-paths-config", str(self.root / "extra_model_paths.yaml"),
               "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME,
               "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir),
               "--temp-directory", str(self.temp_dir), "--user-directory", str(self.user_dir),
               "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch", "--disable-api-nodes", "--disable-metadata"]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "2")
        env["PYTHONUNBUFFERED"] = "1"
        # the pack must find simswap_core on its own (installed package or its sys.path fallback); no PYTHONPATH
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_dir, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} during start-up:\n"
                                   f"{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"ComfyUI did not answer within {STARTUP_TIMEOUT:.0f} s:\n{self.log_tail()}")
        log = self.log_text()
        pack_path = str(self.custom_nodes_dir / PACK_NAME)
        if f"(IMPORT FAILED): {pack_path}" in log or f"Cannot import {pack_path}" in log:
            self.stop()
            raise RuntimeError(f"ComfyUI failed to import the pack {pack_path}:\n{log[-8000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if getattr(self, "_log", None):
            self._log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 6000) -> str:
        return self.log_text()[-n:]

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw

    def get(self, path: str, timeout: float = 30):
        status, data = self.request("GET", path, timeout=timeout)
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}: {data}")
        return data

    def get_bytes(self, path: str, timeout: float = 30) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
            return r.read()

    def object_info(self) -> dict:
        return self.get("/object_info")

    def queue(self, prompt: dict) -> tuple[int, dict]:
        """POST /prompt; returns (status, json) without raising (400 = validation error)."""
        return self.request("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id})

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """The /history entry of a finished prompt (success, error or interrupted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.get(f"/history/{prompt_id}")
            if prompt_id in h:  # ComfyUI writes the history entry only once the prompt has finished
                return h[prompt_id]
            if not self.alive():
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 300, expect: str = "success") -> dict:
        """Queue an API-format prompt and wait for it; asserts the final status (``expect``)."""
        status, data = self.queue(prompt)
        assert status == 200, f"POST /prompt -> {status}: {json.dumps(data, indent=1)[:4000]}"
        entry = self.wait(data["prompt_id"], timeout)
        got = entry["status"].get("status_str")
        if expect and got != expect:
            raise AssertionError(f"prompt ended with status {got!r}, expected {expect!r}:\n"
                                 f"{json.dumps(entry['status'].get('messages'), indent=1)[:6000]}\n"
                                 f"{self.log_tail(3000)}")
        return entry

    def interrupt(self) -> None:
        status, data = self.request("POST", "/interrupt", {})
        assert status == 200, f"POST /interrupt -> {status}: {data}"

    def queue_state(self) -> dict:
        """GET /queue: {"queue_running": [[number, prompt_id, ...], ...], "queue_pending": [...]}."""
        return self.get("/queue")

    def running_ids(self) -> list[str]:
        return [item[1] for item in self.queue_state().get("queue_running", [])]

    def view(self, item: dict) -> bytes:
        q = urllib.parse.urlencode({"filename": item["filename"], "subfolder": item.get("subfolder", ""),
                                    "type": item.get("type", "output")})
        return self.get_bytes(f"/view?{q}")

    def output_images(self, entry: dict, node_id: str) -> list[np.ndarray]:
        """The images a node of a finished prompt showed (SaveImage/PreviewImage), as uint8 arrays via /view."""
        from PIL import Image

        items = entry["outputs"].get(str(node_id), {}).get("images", [])
        return [np.array(Image.open(io.BytesIO(self.view(it)))) for it in items]


_SERVER: ComfyServer | None = None
_SERVER_ERROR: str | None = None


def start_standalone() -> ComfyServer:
    """A server for scripts (no pytest): started now, stopped and cleaned up at interpreter exit."""
    comfy = comfyui_dir()
    if not (comfy / "main.py").is_file():
        raise SystemExit(f"no ComfyUI tree at {comfy}; run `bash scripts/install_comfyui.sh {comfy}`")
    root = Path(tempfile.mkdtemp(prefix="simswap_comfy_"))
    server = ComfyServer(root, comfy)
    atexit.register(lambda: (server.stop(), shutil.rmtree(root, ignore_errors=True)))
    server.prepare()
    server.start()
    return server


def get_server() -> ComfyServer:
    """Start (once per process) and return the shared server; stopped at interpreter exit."""
    global _SERVER, _SERVER_ERROR
    comfy = require_comfyui()
    if _SERVER_ERROR:
        pytest.fail(_SERVER_ERROR, pytrace=False)
    if _SERVER is None or not _SERVER.alive():
        root = Path(tempfile.mkdtemp(prefix="simswap_comfy_"))
        server = ComfyServer(root, comfy)
        try:
            server.prepare()
            server.start()
        except Exception as e:  # remember it: every later test fails fast with the same reason
            _SERVER_ERROR = f"could not start ComfyUI: {e}"
            pytest.fail(_SERVER_ERROR, pytrace=False)
        _SERVER = server

        def _cleanup(s=server, r=root):
            s.stop()
            if not os.environ.get("SIMSWAP_KEEP_COMFY_TMP"):
                shutil.rmtree(r, ignore_errors=True)

        atexit.register(_cleanup)
    return _SERVER


# Fixtures for the test modules (import them by name: `from comfy_harness import server, object_info`).
# Module scope: every module gets an /object_info fetched when it starts (earlier modules may add model files).
@pytest.fixture(scope="module")
def server() -> ComfyServer:
    return get_server()


@pytest.fixture(scope="module")
def object_info(server) -> dict:
    return server.object_info()
