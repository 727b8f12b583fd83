#!/usr/bin/env python
"""Bit-identical outputs before and after a refactor: the check behind "same outputs for the same inputs".

Usage: ``.venv/bin/python scripts/check_same_outputs.py --ref REV [--keep] [--only cli|nodes] [--cases A,B]``

Method
------
1. REV is resolved to a commit and checked out as a git worktree outside the repository
   (``/tmp/simswap_ref_<sha7>``; reused when it exists, removed at the end when this run made it, unless
   ``--keep``). The working tree and index of this repository are never touched.
2. Seeded random weights (``write_seeded_checkpoints(seed=1234)`` from ``simswap_core.seeded`` or
   ``simswap_core.models.seeded``, plus a BiSeNet parser seeded like the tests do) are written ONCE by the reference
   checkout into ``.cache/same_outputs/<sha>/models`` and used by both sides, together with the same input files
   (real photos from the insightface and scikit-image wheels, a frame folder and a 12-frame mp4 made from them).
3. Every case runs in fresh subprocesses, once per checkout, with ``PYTHONPATH`` pointing at that checkout:
   * cli: ``python -m simswap_core.cli swap|faces ... --device cpu --quiet`` (old module or new package);
   * nodes: a real ComfyUI server (``.cache/comfyui``, ``--cpu``) whose only custom node pack is a symlink
     ``ComfyUI-SimSwap`` -> that checkout; the API workflows of the CURRENT checkout's ``workflows/api`` are posted
     to both servers (an input that a checkout's nodes do not declare, e.g. one added since REV, is left out on that
     side and printed: the reference then does what it always did)
     (plus, as ``<name>@ref``, REV's own version of each file changed since: saved
     workflows must keep working), and every image listed in ``/history`` outputs is read back through ``/view``.
4. Outputs are compared decoded: images and video frames pixel for pixel (``np.array_equal``; otherwise the max abs
   difference and the number of differing pixels are shown), JSON by equality, safetensors tensor by tensor.
   Reference results are cached per commit and per case definition, so a second run only recomputes the current
   checkout. Exit status 0 only when every case is identical.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
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
from typing import Any

import av
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
PACK = "ComfyUI-SimSwap"
CASE_VERSION = "3"  # bump when inputs or case definitions change: cached reference results are then recomputed
SEED = 1234
THREADS = "2"  # fixed for both sides: CPU kernels may round differently with another thread count
CLI_TIMEOUT, PROMPT_TIMEOUT, STARTUP_TIMEOUT = 300, 600, 240
SECONDS: dict[str, float] = {}  # case -> wall time of its last run (the current side's, shown in the table)

# name -> extra CLI arguments appended to the base swap command (argparse: a repeated option's last value wins)
CLI_CASES: dict[str, list[str]] = {
    "default": [],
    "mask_ellipse": ["--mask", "ellipse"],
    "mask_parsing": ["--mask", "parsing:skin,nose,lips", "--parser", "{parser}"],
    "paste_official": ["--paste", "official"],
    "official_parsing": ["--paste", "official", "--mask", "parsing", "--parser", "{parser}"],
    "color_match": ["--color-match"],
    "faces_index2": ["--faces", "index:2"],
    "faces_index04": ["--faces", "index:0,4"],
    "faces_largest": ["--faces", "largest"],
    "faces_ref": ["--faces", "ref:{inputs}/ref_face.png", "--id-threshold", "1e6"],  # seeded ArcFace: closest face
    "size512": ["--size", "512", "--generator", "{g512}"],
    "bf16": ["--precision", "bf16"],
    "folder": ["--target", "{inputs}/frames", "--out", "frames_out"],
    "video": ["--target", "{inputs}/clip.mp4", "--out", "clip_out.mp4"],
    "faces_cmd": ["faces", "{inputs}/t1_640.png", "--out", "preview.png", "--json", "faces.json"],
}
BASE_SWAP = ["swap", "--source", "{inputs}/astronaut.png", "--target", "{inputs}/t1_640.png", "--out", "out.png",
             "--generator", "{g224}", "--arcface", "{arcface}"]


def sh(cmd: list[str], **kw: Any) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout.strip()


def photos() -> dict[str, Path]:
    ins, ski = importlib.util.find_spec("insightface"), importlib.util.find_spec("skimage")
    if not (ins and ins.submodule_search_locations and ski and ski.submodule_search_locations):
        raise SystemExit("needs the insightface wheel (data/images/t1.jpg) and scikit-image (astronaut.png)")
    return {"t1.jpg": Path(ins.submodule_search_locations[0]) / "data" / "images" / "t1.jpg",
            "astronaut.png": Path(ski.submodule_search_locations[0]) / "data" / "astronaut.png"}


def ensure_worktree(sha: str, path: Path) -> bool:
    """Check REV out at ``path`` (reused when it exists); True when this call created the worktree."""
    if not path.exists():
        sh(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), sha])
        return True
    if sh(["git", "-C", str(path), "rev-parse", "HEAD"]) != sha:
        if sh(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"]):
            raise SystemExit(f"{path} is at another commit and has local changes; remove it or pick another REV")
        sh(["git", "-C", str(path), "checkout", "--quiet", "--detach", sha])
    return False


def make_inputs(d: Path) -> None:
    """Shared inputs (made once per cache): downscaled t1, astronaut, a reference face, 3 frames, a 12-frame mp4."""
    if (d / "done").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    src = photos()
    full = Image.open(src["t1.jpg"]).convert("RGB")
    t1 = full.resize((640, round(full.height * 640 / full.width)), Image.Resampling.LANCZOS)
    t1.save(d / "t1_640.png")
    astro = Image.open(src["astronaut.png"]).convert("RGB")
    astro.save(d / "astronaut.png")
    full.crop((680, 220, 960, 520)).save(d / "ref_face.png")  # one face (the man in red) of the full-size photo
    (d / "frames").mkdir(exist_ok=True)
    for i, im in enumerate([t1.crop((0, 60, 320, 380)), astro.resize((320, 320), Image.Resampling.LANCZOS),
                            t1.crop((320, 0, 640, 320))]):
        im.save(d / "frames" / f"frame_{i:03d}.png")
    with av.open(str(d / "clip.mp4"), "w") as out:
        st = out.add_stream("libx264", rate=12)
        st.width, st.height, st.pix_fmt, st.options = 320, 240, "yuv420p", {"crf": "12"}
        for i in range(12):
            frame = np.ascontiguousarray(np.asarray(t1.crop((170 + 3 * i, 60 + i, 490 + 3 * i, 300 + i))))
            out.mux(st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(st.encode())
    (d / "done").write_text("ok")


def worker_write_weights(folder: Path) -> None:
    """(Runs with PYTHONPATH=<reference checkout>.) Seeded generator/ArcFace/BiSeNet weights, old or new layout."""
    import torch

    import simswap_core
    if not Path(simswap_core.__file__).resolve().is_relative_to(Path(os.environ["PYTHONPATH"]).resolve()):
        raise SystemExit(f"simswap_core came from {simswap_core.__file__}, not from {os.environ['PYTHONPATH']}")

    def first(*names: str) -> Any:
        for n in names:
            try:
                return importlib.import_module(n)
            except ImportError:
                continue
        raise ImportError(f"none of {names} can be imported")

    seeded = first("simswap_core.models.seeded", "simswap_core.seeded")
    bisenet = first("simswap_core.networks.bisenet", "simswap_core.models.bisenet", "simswap_core.masks.bisenet")
    files = {k: str(v) for k, v in seeded.write_seeded_checkpoints(folder, seed=SEED).items()}
    shutil.copyfile(files["arcface"], folder / "arcface_checkpoint.tar")  # the name the workflows use
    with torch.random.fork_rng():  # as tests/comfy_harness.py write_seeded_parser
        torch.manual_seed(SEED)
        net = bisenet.BiSeNet(bisenet.NUM_CLASSES)
    torch.save(net.state_dict(), folder / "79999_iter.pth")
    files["parser"] = str(folder / "79999_iter.pth")
    (folder / "files.json").write_text(json.dumps(files))


def side_env(pythonpath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CUDA_VISIBLE_DEVICES")}
    env.update(PYTHONPATH=str(pythonpath), OMP_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS, PYTHONHASHSEED="0",
               PYTHONUNBUFFERED="1", TQDM_DISABLE="1", CUDA_VISIBLE_DEVICES="")
    return env


def short(text: str, n: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def run_cli(checkout: Path, out: Path, cases: list[str], subst: dict[str, str]) -> dict[str, str | None]:
    errors: dict[str, str | None] = {}
    for name in cases:
        case_dir = out / name
        shutil.rmtree(case_dir, ignore_errors=True)
        case_dir.mkdir(parents=True)
        extra = CLI_CASES[name]
        args = extra if extra[:1] == ["faces"] else BASE_SWAP + extra
        cmd = [PY, "-m", "simswap_core.cli", *[a.format(**subst) for a in args], "--device", "cpu", "--quiet"]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, cwd=case_dir, env=side_env(checkout), capture_output=True, text=True,
                               timeout=CLI_TIMEOUT)
            errors[name] = None if p.returncode == 0 else f"exit {p.returncode}: {short(p.stderr or p.stdout)}"
        except subprocess.TimeoutExpired:
            errors[name] = f"timed out after {CLI_TIMEOUT} s"
        SECONDS[name] = time.monotonic() - t0
    return errors


def http(base: str, path: str, body: dict | None = None, timeout: float = 30) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        msg = short(e.read().decode(errors="replace"), 3000)
        raise RuntimeError(f"{req.method} {path} -> {e.code}: {msg}") from None


def run_nodes(checkout: Path, out: Path, cases: list[str], workflows: dict[str, str], models: Path,
              keep: bool) -> dict[str, str | None]:
    comfy = Path(os.environ.get("SIMSWAP_COMFYUI_DIR") or REPO / ".cache" / "comfyui")
    root = Path(tempfile.mkdtemp(prefix="simswap_same_comfy_"))
    dirs = {k: root / k for k in ("input", "output", "temp", "user", "custom_nodes", "pypath", "models")}
    for p in dirs.values():
        p.mkdir()
    sim = dirs["models"] / "simswap"
    (sim / "identities").mkdir(parents=True)
    (dirs["models"] / "insightface").mkdir()
    for f in ("latest_net_G.pth", "550000_net_G.pth", "arcface_r101se.pth", "arcface_checkpoint.tar", "79999_iter.pth"):
        (sim / f).symlink_to(models / f)
    (dirs["custom_nodes"] / PACK).symlink_to(checkout, target_is_directory=True)
    (dirs["pypath"] / "simswap_core").symlink_to(checkout / "simswap_core", target_is_directory=True)
    for name, src in photos().items():
        shutil.copyfile(src, dirs["input"] / name)
    (root / "extra.yaml").write_text(f"same_outputs:\n    custom_nodes: {dirs['custom_nodes']}\n"
                                     f"    simswap: {sim}\n    insightface: {dirs['models'] / 'insightface'}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    cmd = [PY, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--extra-model-paths-config", str(root / "extra.yaml"),
           "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK,
           "--input-directory", str(dirs["input"]), "--output-directory", str(dirs["output"]),
           "--temp-directory", str(dirs["temp"]), "--user-directory", str(dirs["user"]),
           "--database-url", "sqlite:///:memory:", "--disable-auto-launch", "--disable-api-nodes", "--disable-metadata",
           "--cache-none"]  # no node results kept between prompts: each workflow runs alone, as on a fresh server
    log_path = root / "comfyui.log"
    errors: dict[str, str | None] = {}
    with open(log_path, "wb") as log:
        # PYTHONPATH holds only a simswap_core symlink, so the checkout's top-level files never shadow ComfyUI's
        proc = subprocess.Popen(cmd, cwd=comfy, stdout=log, stderr=subprocess.STDOUT, env=side_env(dirs["pypath"]))
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ComfyUI did not start:\n{short(log_path.read_text(errors='replace'))}")
                try:
                    http(base, "/system_stats", timeout=2)
                    break
                except (OSError, RuntimeError):
                    time.sleep(0.5)
            text = log_path.read_text(errors="replace")
            pack = dirs["custom_nodes"] / PACK
            if f"(IMPORT FAILED): {pack}" in text or f"Cannot import {pack}" in text:
                raise RuntimeError(f"ComfyUI failed to import the pack:\n{short(text)}")
            info = json.loads(http(base, "/object_info"))
            for name in cases:
                case_dir = out / name
                shutil.rmtree(case_dir, ignore_errors=True)
                case_dir.mkdir(parents=True)
                t0 = time.monotonic()
                try:
                    run_prompt(base, known_inputs_only(json.loads(workflows[name]), info, name), case_dir, proc)
                    for ident in sorted((sim / "identities").glob("*")):  # files written by Save Identity
                        shutil.move(str(ident), case_dir / f"identity_{ident.name}")
                    errors[name] = None
                except Exception as e:  # reported per case
                    errors[name] = f"{type(e).__name__}: {e}"
                for d in (dirs["output"], dirs["temp"]):  # SaveImage counters restart: names don't depend on order
                    shutil.rmtree(d)
                    d.mkdir()
                SECONDS[f"nodes:{name}"] = time.monotonic() - t0
        except Exception as e:  # no server: every case has this error
            errors = {n: errors.get(n, f"{type(e).__name__}: {e}") for n in cases}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if keep:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_path, out / "comfyui.log")
    shutil.rmtree(root, ignore_errors=True)
    return errors


def known_inputs_only(prompt: dict, info: dict, name: str) -> dict:
    """The prompt without inputs this server's nodes do not declare (an input added since the reference, e.g. Swap's
    detected_faces: the reference then does what it always did, here: detect again), each one printed."""
    for node_id, node in prompt.items():
        spec = info.get(node.get("class_type"), {}).get("input", {})
        known = {k for part in ("required", "optional", "hidden") for k in spec.get(part, {})}
        for key in [k for k in node.get("inputs", {}) if spec and k not in known]:
            print(f"[nodes] {name}: node {node_id} {node['class_type']}.{key} is unknown to this checkout; left out",
                  file=sys.stderr)
            del node["inputs"][key]
    return prompt


def run_prompt(base: str, prompt: dict, case_dir: Path, proc: subprocess.Popen) -> None:
    pid = json.loads(http(base, "/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex}))["prompt_id"]
    deadline = time.monotonic() + PROMPT_TIMEOUT
    while (entry := json.loads(http(base, f"/history/{pid}")).get(pid)) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("ComfyUI died" if proc.poll() is not None else f"not done in {PROMPT_TIMEOUT} s")
        time.sleep(0.25)
    status = entry.get("status", {})
    if status.get("status_str") != "success":
        msgs = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
        detail = "; ".join(f"node {m.get('node_id')} {m.get('node_type')}: {m.get('exception_message')}" for m in msgs)
        raise RuntimeError(f"prompt ended {status.get('status_str')!r}: {short(detail or json.dumps(status), 600)}")
    ui: dict[str, Any] = {}
    for node, outputs in sorted(entry.get("outputs", {}).items()):
        ui[node] = {}
        for key, value in outputs.items():
            if key == "images":  # pixels compared as files; temp (preview) names are random, so not compared
                for i, item in enumerate(value):
                    q = urllib.parse.urlencode({k: item.get(k, "") for k in ("filename", "subfolder", "type")})
                    (case_dir / f"node{node}_{i}.png").write_bytes(http(base, f"/view?{q}", timeout=60))
                value = [{"type": it.get("type"), **({"filename": it["filename"]} if it.get("type") == "output"
                                                      else {})} for it in value]
            ui[node][key] = value
    (case_dir / "history_outputs.json").write_text(json.dumps(ui, indent=1, sort_keys=True))


def decode(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"):
        with Image.open(path) as im:
            return np.asarray(im)
    if suffix in (".mp4", ".mov", ".mkv", ".webm", ".avi"):
        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    if suffix == ".json":
        return json.loads(path.read_text())
    if suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            return {"__metadata__": f.metadata(), **{k: f.get_tensor(k) for k in f.keys()}}
    return path.read_bytes()


def diff(a: Any, b: Any) -> tuple[float, int, str] | None:
    """None when equal, else (max abs diff, differing pixels/elements, note)."""
    if isinstance(a, dict) and isinstance(b, dict) and any(isinstance(v, np.ndarray) for v in a.values()):
        if a.keys() != b.keys():
            return 0.0, 0, "different tensor names"
        found = [d for k in a if (d := diff(a[k], b[k])) is not None]
        return (max(d[0] for d in found), sum(d[1] for d in found), "tensors") if found else None
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            return 0.0, 0, f"shape/dtype {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        if np.array_equal(a, b):
            return None
        delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
        per_px = delta.max(axis=-1) if delta.ndim >= 3 and delta.shape[-1] <= 4 else delta
        return float(delta.max()), int(np.count_nonzero(per_px)), ""
    return None if a == b else (0.0, 0, "content differs")


def compare(ref: Path, cur: Path) -> str:
    files = lambda d: {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()}
    fr, fc = files(ref), files(cur)
    if fr != fc:
        return f"DIFFERENT files only in ref {sorted(fr - fc)}, only in current {sorted(fc - fr)}"
    worst, pixels, notes = 0.0, 0, []
    for rel in sorted(fr):
        d = diff(decode(ref / rel), decode(cur / rel))
        if d is not None:
            worst, pixels = max(worst, d[0]), pixels + d[1]
            notes.append(rel + (f" ({d[2]})" if d[2] else ""))
    if not notes:
        return "identical"
    where = ", ".join(notes)
    return f"DIFFERENT max abs diff {worst:g}, {pixels} pixels differ in {where}" if pixels else f"DIFFERENT {where}"


def run_side(label: str, checkout: Path, out: Path, cli: list[str], nodes: list[str], subst: dict[str, str],
             workflows: dict[str, str], models: Path, keep: bool) -> dict[str, str | None]:
    t0 = time.monotonic()
    errors = run_cli(checkout, out / "cli", cli, subst) if cli else {}
    errors.update({f"nodes:{k}": v for k, v in
                   (run_nodes(checkout, out / "nodes", nodes, workflows, models, keep) if nodes else {}).items()})
    print(f"[{label}] {checkout}: {len(cli)} cli + {len(nodes)} node case(s) in {time.monotonic() - t0:.0f} s",
          flush=True)
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", help="reference revision (commit, tag, branch)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the current checkout's outputs, server logs and a reference worktree made by this run")
    ap.add_argument("--only", choices=["cli", "nodes"], help="run only the CLI or only the node cases")
    ap.add_argument("--cases", help="comma-separated case names (cli names or workflow file stems)")
    ap.add_argument("--worktree", help=argparse.SUPPRESS)  # reference worktree path (default /tmp/simswap_ref_<sha7>)
    ap.add_argument("--current", help=argparse.SUPPRESS)  # checkout under test (default: this repository)
    ap.add_argument("--_write-weights", dest="write_weights", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.write_weights:
        worker_write_weights(Path(args.write_weights))
        return 0
    if not args.ref:
        ap.error("--ref REV is required")
    sha = sh(["git", "-C", str(REPO), "rev-parse", "--verify", f"{args.ref}^{{commit}}"])
    current = Path(args.current or REPO).resolve()
    workflows = {p.stem: p.read_text().strip() for p in sorted((current / "workflows" / "api").glob("*.json"))}
    for rel in sh(["git", "-C", str(REPO), "ls-tree", "--name-only", sha, "workflows/api/"]).split():
        text = sh(["git", "-C", str(REPO), "show", f"{sha}:{rel}"]) if rel.endswith(".json") else ""
        if text and text != workflows.get(Path(rel).stem):  # REV's own file, changed since: old files must still run
            workflows[f"{Path(rel).stem}@ref"] = text
    wanted = set(args.cases.split(",")) if args.cases else None
    cli = [c for c in CLI_CASES if args.only != "nodes" and (wanted is None or c in wanted)]
    nodes = [w for w in workflows if args.only != "cli" and (wanted is None or w in wanted)]
    unknown = (wanted or set()) - set(cli) - set(nodes)
    if unknown:
        ap.error(f"unknown case(s) {sorted(unknown)}; known: {list(CLI_CASES)} + {list(workflows)}")
    ref = Path(args.worktree or f"/tmp/simswap_ref_{sha[:7]}").resolve()
    created = ensure_worktree(sha, ref)
    cache = REPO / ".cache" / "same_outputs" / sha
    inputs, models = cache / "inputs", cache / "models"
    make_inputs(inputs)
    if not (models / "files.json").exists():
        subprocess.run([PY, str(Path(__file__).resolve()), "--_write-weights", str(models)], check=True,
                       env=side_env(ref))
    weights = json.loads((models / "files.json").read_text())
    subst = {"inputs": str(inputs), "g224": weights["g224"], "g512": weights["g512"], "arcface": weights["arcface"],
             "parser": weights["parser"]}

    def key(case: str) -> str:
        spec = json.dumps(CLI_CASES[case]) if case in CLI_CASES else workflows[case]
        return hashlib.sha256(f"{CASE_VERSION}\n{spec}".encode()).hexdigest()

    index_path = cache / "ref" / "index.json"
    index: dict[str, dict] = json.loads(index_path.read_text()) if index_path.exists() else {}
    stale = lambda name, case: index.get(name, {}).get("key") != key(case) or index[name]["error"]
    todo_cli = [c for c in cli if stale(c, c)]
    todo_nodes = [w for w in nodes if stale(f"nodes:{w}", w)]
    if todo_cli or todo_nodes:
        got = run_side("ref", ref, cache / "ref", todo_cli, todo_nodes, subst, workflows, models, True)
        for name, err in got.items():
            index[name] = {"key": key(name.split(":", 1)[-1]), "error": err}
        index_path.write_text(json.dumps(index, indent=1))
    else:
        print(f"[ref] {ref}: all {len(cli) + len(nodes)} case(s) cached in {cache / 'ref'}")
    cur_out = Path(tempfile.mkdtemp(prefix="simswap_same_current_"))
    cur_err = run_side("current", current, cur_out, cli, nodes, subst, workflows, models, args.keep)

    rows, details = [], []
    for name in [*cli, *(f"nodes:{w}" for w in nodes)]:
        where, case = ("nodes", name[6:]) if name.startswith("nodes:") else ("cli", name)
        sub = Path(where) / case
        errs = [f"{side}: {e}" for side, e in (("ref", index[name]["error"]), ("current", cur_err.get(name))) if e]
        result = "ERROR " + " | ".join(errs) if errs else compare(cache / "ref" / sub, cur_out / sub)
        rows.append((case, where, f"{SECONDS.get(name, 0):5.1f}", result.splitlines()[0][:110]))
        if result != "identical":
            details.append(f"--- {where} {case}: {result}")
    w = max(len(r[0]) for r in rows) if rows else 4
    print(f"\n{'case':<{w}}  where  time s  result\n{'-' * w}  -----  ------  {'-' * 40}")
    for case, where, secs, res in rows:
        print(f"{case:<{w}}  {where:<5}  {secs:>6}  {res}")
    for d in details:
        print(d)
    bad = sum(r[3] != "identical" for r in rows)
    print(f"\n{len(rows) - bad}/{len(rows)} identical (ref {sha[:10]} at {ref}; current {current})")
    if args.keep:
        print(f"kept: current outputs {cur_out}, reference worktree {ref}, reference outputs {cache / 'ref'}")
    else:
        shutil.rmtree(cur_out, ignore_errors=True)
        if created:  # the reference results stay cached; the worktree is re-made only when a case is stale
            sh(["git", "-C", str(REPO), "worktree", "remove", "--force", str(ref)])
    return 1 if bad or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
