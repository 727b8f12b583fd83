#!/usr/bin/env python3
"""Load every UI-format example workflow in the real ComfyUI frontend (headless chromium) and check it.

    .venv/bin/python scripts/frontend_check.py                 # check; exit 1 on any failure
    .venv/bin/python scripts/frontend_check.py --screenshots   # also write docs/workflow_basic_swap.png and
                                                               # docs/templates_menu.png
    .venv/bin/python scripts/frontend_check.py --thumbnails DIR   # also DIR/<name>.jpg per workflow: a screenshot
                                                               # of each graph (the Templates menu shows the .svg
                                                               # drawings of scripts/make_workflows.py instead)
    .venv/bin/python scripts/frontend_check.py --url http://127.0.0.1:8188 [FILES/DIRS]   # a running ComfyUI

Needs: ``apt-get install -y chromium`` (or ``--chromium PATH``), Node.js, and
``npm install --prefix .cache/node playwright-core@1.65.1`` (no browser download; ``.cache/`` is git-ignored),
and the ComfyUI tree of ``scripts/install_comfyui.sh`` (``.cache/comfyui`` or ``$SIMSWAP_COMFYUI_DIR``).

What it does:

* starts ComfyUI (``tests/comfy_harness.ComfyServer``: ``main.py --cpu``, this checkout as the custom-node pack
  ``ComfyUI-SimSwap``, seeded model files), or uses ``--url`` of a running one;
* every photo in the server's input folder that is not public domain is replaced by the public-domain
  astronaut (skimage; NASA) under the same name, so nothing else can show up in a screenshot;
* opens the frontend in headless chromium (every non-loopback request aborted), and for every UI workflow
  (``workflows/*.json``, ``example_workflows/*.json`` or the paths given) calls ``app.loadGraphData`` and
  checks: all node types registered (no "missing nodes" dialog), widget values against the node definitions
  (count incl. hidden values such as LoadImage's upload value, combo choices, number ranges, types), links
  against the node definitions, required inputs connected, console errors;
* compares ``app.graphToPrompt().output`` with the API-format copy (``<dir>/api/<name>.json``,
  ``workflows/api/<name>.json``, ``<name>_api.json`` or ``<name>.api.json``): class_type and every input,
  links included; and validates the prompt against ``/object_info``;
* checks that ``/api/workflow_templates`` lists the pack's templates and that each one and its ``<name>.jpg``
  thumbnail are served;
* layout: no two nodes overlap (title bars included, with the sizes the frontend gives them), and in the view the
  file restores every node lies in the free canvas (right of the side bar, below the top bar);
* node search: types each of ``SEARCH_QUERIES`` ("face swap", "reactor", ...) into the search box a double click
  on the canvas opens; the pack's swap nodes must be among the first results;
* Templates menu: the pack's cards in numbered order, with the titles/descriptions of web/simswap_templates.json and
  their own thumbnails (not the frontend's stock picture);
* missing models: starts a second ComfyUI with EMPTY model folders (also with ``--url``; ``--no-missing-models``
  skips it), loads the basic workflow and expects the missing-models dialog to list every ``properties.models``
  entry of the file (folder, name, official URL).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK = "ComfyUI-SimSwap"
TEMPLATE_FOLDERS = ["example_workflows", "example", "examples", "workflow", "workflows"]  # app/custom_node_manager.py
UI_DIRS = ["workflows", "example_workflows"]
SETTINGS = {  # user settings seeded before the page opens: no first-run dialog, clean screenshots
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
    "Comfy.NodeBadge.NodeSourceBadgeMode": "Show all",
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,  # never the text-less low-detail rendering of zoomed-out nodes
}
# what users of other face-swap packs type in the node search (double click on the canvas): each must list the
# pack's swap nodes (SWAP_NODES that the server has) among the first SEARCH_TOP results
SEARCH_QUERIES = ("face swap", "swap face", "faceswap", "reactor")
SWAP_NODES = ("SimSwapSwap", "SimSwapQuickSwap")
SEARCH_TOP = 10
# console messages that come from the offline sandbox, not from the workflow
BENIGN_CONSOLE = ("Content Security Policy", "api.comfy.org", "net::ERR_NAME_NOT_RESOLVED", "net::ERR_FAILED",
                  "ERR_INTERNET_DISCONNECTED", "Failed to fetch", "registry", "Failed to load resource")


# ---------------------------------------------------------------------------------------------- discovery
def is_ui(d) -> bool:
    return isinstance(d, dict) and isinstance(d.get("nodes"), list)


def is_api(d) -> bool:
    return isinstance(d, dict) and bool(d) and all(isinstance(v, dict) and "class_type" in v for v in d.values())


def load_json(p: Path):
    try:
        return json.loads(p.read_text())
    except Exception as e:
        return e


def api_copy_for(ui: Path) -> Path | None:
    stem = ui.stem
    for c in (ui.parent / "api" / f"{stem}.json", REPO / "workflows" / "api" / f"{stem}.json",
              REPO / "example_workflows" / "api" / f"{stem}.json",
              ui.parent / f"{stem}_api.json", ui.parent / f"{stem}.api.json", ui.parent / f"{stem}-api.json",
              ui.parent / "api" / f"{stem}_api.json", REPO / "workflows" / "api" / f"{stem}_api.json"):
        if c.is_file() and c.resolve() != ui.resolve():
            return c
    return None


def discover(paths: list[str]) -> tuple[list[Path], list[str], list[str]]:
    """(UI workflow files, failures, notes) from the given files/folders (default: the pack's folders)."""
    fails, notes, uis = [], [], []
    cands: list[Path] = []
    if paths:
        for p in map(Path, paths):
            cands += sorted(p.glob("*.json")) if p.is_dir() else [p]
    else:
        for d in UI_DIRS:
            cands += sorted((REPO / d).glob("*.json"))
    for p in cands:
        d = load_json(p)
        rel = p.relative_to(REPO) if p.is_relative_to(REPO) else p
        if isinstance(d, Exception):
            fails.append(f"{rel}: not valid JSON ({d})")
        elif is_ui(d):
            uis.append(p)
        elif is_api(d):
            if p.parent.name in TEMPLATE_FOLDERS and p.parent.parent == REPO:
                fails.append(f"{rel}: an API-format file directly in {p.parent.name}/, which ComfyUI serves as a "
                             f"template (Templates menu); the frontend cannot open it as a UI workflow")
            elif not any(api_copy_for(u) == p for u in cands):
                notes.append(f"{rel}: API-format file with no UI workflow of the same name")
        elif not (p.name.endswith("_api.json") or p.name.endswith(".api.json")):
            fails.append(f"{rel}: neither a UI workflow (no 'nodes' list) nor an API prompt")
    # the same workflow in two folders must be the same file
    by_name: dict[str, list[Path]] = {}
    for u in uis:
        by_name.setdefault(u.name, []).append(u)
    for ps in by_name.values():
        if len(ps) > 1:
            a = json.loads(ps[0].read_text())
            for other in ps[1:]:
                if json.loads(other.read_text()) != a:
                    notes.append(f"{ps[0].relative_to(REPO)} and {other.relative_to(REPO)} differ")
    return uis, fails, notes


# ---------------------------------------------------------------------------------------------- server
def public_domain_photo() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is needed for the public-domain astronaut photo")
    return Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png"


VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")


def astronaut_clip(path: Path, frames: int = 12) -> None:
    """A short silent H.264 clip of the astronaut photo (what a video in the input folder is replaced by)."""
    import av
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(public_domain_photo()).convert("RGB").resize((320, 320)))
    path.unlink()
    with av.open(str(path), mode="w") as c:
        stream = c.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 320, 320, "yuv420p"
        for _ in range(frames):
            c.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(stream.encode(None))


def only_public_domain_inputs(input_dir: Path) -> dict[str, str]:
    """Replace every image in input_dir by the astronaut (same name and format) and every video by a clip of it;
    returns name -> sha256."""
    from PIL import Image

    astro = public_domain_photo()
    out = {}
    for p in sorted(input_dir.rglob("*")):
        if not p.is_file():
            continue
        if p.name == "astronaut.png":
            shutil.copyfile(astro, p)
        elif p.suffix.lower() in VIDEO_EXTS:
            astronaut_clip(p)
        else:
            im = Image.open(astro).convert("RGB")
            fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}.get(p.suffix.lower(), "PNG")
            im.save(p, format=fmt)
        out[str(p.relative_to(input_dir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Server:
    def __init__(self, url: str | None, keep: bool, seed_models: bool = True):
        self.url, self.keep, self.server, self.root = url, keep, None, None
        self.seed_models = seed_models

    def __enter__(self):
        if self.url:
            return self
        sys.path.insert(0, str(REPO / "tests"))
        sys.path.insert(0, str(REPO))
        from comfy_harness import ComfyServer, comfyui_dir  # the project's own test harness

        comfy = comfyui_dir()
        if not (comfy / "main.py").is_file():
            raise SystemExit(f"no ComfyUI tree at {comfy}: run `bash scripts/install_comfyui.sh {comfy}`")
        self.root = Path(tempfile.mkdtemp(prefix="simswap_frontend_"))
        self.server = ComfyServer(self.root, comfy)
        self.server.prepare(seed_models=self.seed_models)
        self.inputs = only_public_domain_inputs(self.server.input_dir)
        self.server.start()
        self.url = self.server.base
        return self

    def __exit__(self, *exc):
        if self.server:
            self.server.stop()
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)
            else:
                print(f"kept {self.root}")

    def request(self, method: str, path: str, body=None, raw=False):
        data = None if body is None else json.dumps(body).encode()
        assert self.url is not None, "Server.request: use the Server as a context manager"
        r = urllib.request.Request(self.url + path, data=data, method=method,
                                   headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(r, timeout=60) as resp:
                b, status = resp.read(), resp.status
        except urllib.error.HTTPError as e:
            b, status = e.read(), e.code
        if raw:
            return status, b
        try:
            return status, json.loads(b) if b else None
        except json.JSONDecodeError:
            return status, b


# ---------------------------------------------------------------------------------------------- comparisons
from workflow_compare import compare_prompts, validate_prompt  # noqa: E402


def check_templates(srv: Server) -> tuple[list[str], list[str], list[str]]:
    """(listed names, failures, notes) for /api/workflow_templates and the served files."""
    fails: list[str] = []
    notes: list[str] = []
    status, listing = srv.request("GET", "/api/workflow_templates")
    if status != 200 or not isinstance(listing, dict):
        return [], [f"GET /api/workflow_templates -> {status}: {listing!r:.200}"], notes
    listed = listing.get(PACK, [])
    expected: list[str] = []
    present = [f for f in TEMPLATE_FOLDERS if (REPO / f).is_dir()]
    for f in present:
        expected += [p.stem for p in sorted((REPO / f).glob("*.json"))]
    if "example_workflows" not in present:
        notes.append("no example_workflows/ folder: ComfyUI also serves workflows/ as templates (and logs \"consider "
                     "renaming it to 'example_workflows'\"), but example_workflows/ is the documented name")
    if len(present) > 1:
        notes.append(f"{len(present)} template folders ({', '.join(present)}): ComfyUI lists the .json files of "
                     f"all of them, but serves /api/workflow_templates/{PACK}/<name>.json from the first route "
                     f"only; keep the templates in example_workflows/ alone")
    if sorted(listed) != sorted(expected):
        fails.append(f"/api/workflow_templates lists {sorted(listed)} for {PACK}, expected {sorted(expected)}")
    dupes = sorted({n for n in listed if listed.count(n) > 1})
    if dupes:
        fails.append(f"template names listed twice (same name in two template folders): {dupes}")
    for name in sorted(set(listed)):
        st, body = srv.request("GET", f"/api/workflow_templates/{PACK}/{urllib.parse.quote(name)}.json", raw=True)
        if st != 200:
            fails.append(f"template {name!r} is listed but GET /api/workflow_templates/{PACK}/{name}.json -> {st}")
            continue
        try:
            d = json.loads(body)
        except json.JSONDecodeError:
            fails.append(f"template {name!r}: served file is not JSON")
            continue
        if not is_ui(d):
            fails.append(f"template {name!r}: served file is not a UI workflow (the Templates menu cannot open it)")
        st, _ = srv.request("GET", f"/api/workflow_templates/{PACK}/{urllib.parse.quote(name)}.svg", raw=True)
        if st != 200:
            fails.append(f"template {name!r}: no thumbnail (GET /api/workflow_templates/{PACK}/{name}.svg -> {st}; "
                         f"scripts/make_workflows.py writes it)")
    return listed, fails, notes


# ---------------------------------------------------------------------------------------------- main
def find_node() -> str:
    node = shutil.which("node")
    if not node:
        raise SystemExit("Node.js is needed (apt-get install -y nodejs)")
    return node


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*",
                    help="UI workflow files or folders (default: workflows/ and example_workflows/)")
    ap.add_argument("--url", help="use a running ComfyUI (with this pack loaded) instead of starting one")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium"))
    ap.add_argument("--screenshots", action="store_true",
                    help="write docs/workflow_basic_swap.png and docs/templates_menu.png")
    ap.add_argument("--shot-workflow", help="UI workflow for the README screenshot (default: the basic swap one)")
    ap.add_argument("--shot-dir", default=str(REPO / "docs"))
    ap.add_argument("--run", action="store_true", help="with --screenshots: queue the workflow from the UI first")
    ap.add_argument("--scale", type=float, default=1.0, help="device scale factor of the screenshots (2 = hi-dpi)")
    ap.add_argument("--thumbnails", metavar="DIR", help="also write DIR/<workflow name>.jpg for every UI workflow "
                    "(ComfyUI shows <name>.jpg next to a template as its thumbnail in the Templates menu)")
    ap.add_argument("--json", help="write the full results (incl. the frontend's prompts) here")
    ap.add_argument("--keep", action="store_true", help="keep the server's temp folder")
    ap.add_argument("--seed-settings", action="store_true",
                    help="with --url: set the check's user settings (no first-run dialogs) on that server too")
    ap.add_argument("--no-search", action="store_true", help="skip the node search check")
    ap.add_argument("--no-templates-menu", action="store_true", help="skip the Templates menu check")
    ap.add_argument("--no-missing-models", action="store_true",
                    help="skip the missing-models check (a ComfyUI with empty model folders, started here)")
    args = ap.parse_args(argv)

    uis, fails, notes = discover(args.paths)
    if not uis:
        fails.append("no UI workflows found" + ("" if args.paths else " in workflows/ or example_workflows/"))
    if not Path(args.chromium).exists():
        raise SystemExit(f"chromium not found at {args.chromium} (apt-get install -y chromium, or --chromium)")
    if (args.screenshots or args.thumbnails) and args.url:
        raise SystemExit("--screenshots starts its own server (only public-domain photos in its input folder); "
                         "drop --url")
    node = find_node()
    per_wf: dict[str, dict] = {}
    names: dict[Path, str] = {}
    for u in uis:  # unique display names
        n = u.stem if u.stem not in names.values() else f"{u.parent.name}/{u.stem}"
        names[u] = n

    missing_wf = next((u for u in uis if "basic" in u.stem), uis[0] if uis else None)
    want_missing = not args.no_missing_models and missing_wf is not None
    with contextlib.ExitStack() as stack:
        bare, bare_started = None, None
        if want_missing:  # a second ComfyUI with EMPTY model folders, started while the first one starts
            bare = Server(None, args.keep, seed_models=False)
            stack.callback(bare.__exit__)
            pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(1))
            bare_started = pool.submit(bare.__enter__)
        srv = stack.enter_context(Server(args.url, args.keep))
        if bare_started is not None:
            bare_started.result()
        for own in (srv, bare):  # never change the settings of someone's ComfyUI (unless --seed-settings)
            if own is not None and (own.server is not None or args.seed_settings):
                for k, v in SETTINGS.items():
                    own.request("POST", f"/api/settings/{k}", v)
        st, info = srv.request("GET", "/object_info")
        if st != 200:
            raise SystemExit(f"GET /object_info -> {st}")
        pack_nodes = sorted(k for k, v in info.items() if PACK in str(v.get("python_module", "")))
        if not pack_nodes:
            fails.append(f"the server has no {PACK} nodes (pack not loaded?)")
        listed, tf, tn = check_templates(srv)
        fails += tf
        notes += tn

        tmp = Path(tempfile.mkdtemp(prefix="simswap_fcjob_"))
        job = {"url": srv.url, "chromium": args.chromium, "results": str(tmp / "results.json"),
               "width": 1600, "height": 1000, "scale": args.scale,
               "workflows": [{"name": names[u], "path": str(u)} for u in uis],
               "screenshots": [], "templates_shot": None,
               "search": None if args.no_search else {"queries": list(SEARCH_QUERIES)},
               "templates_menu": {"pack": PACK} if listed and not args.no_templates_menu else None,
               "missing_models": {"url": bare.url, "workflow": str(missing_wf)} if bare is not None else None}
        if args.screenshots:
            shot_dir = Path(args.shot_dir)
            shot_dir.mkdir(parents=True, exist_ok=True)
            wf = Path(args.shot_workflow) if args.shot_workflow else next(
                (u for u in uis if "basic" in u.stem),
                next((u for u in uis if "swap" in u.stem), uis[0] if uis else None))
            if wf is not None:
                job["screenshots"].append({"workflow": str(wf), "name": wf.stem, "run": args.run,
                                           "out": str(shot_dir / "workflow_basic_swap.png")})
            if listed:
                job["templates_shot"] = {"pack": PACK, "out": str(shot_dir / "templates_menu.png")}
        if args.thumbnails:
            Path(args.thumbnails).mkdir(parents=True, exist_ok=True)
            for u in uis:
                job["screenshots"].append({"workflow": str(u), "name": u.stem, "run": False,
                                           "out": str(Path(args.thumbnails) / f"{u.stem}.jpg")})
        (tmp / "job.json").write_text(json.dumps(job, indent=1))
        proc = subprocess.run([node, str(REPO / "scripts" / "frontend_check.mjs"), str(tmp / "job.json")],
                              cwd=REPO, timeout=900)
        if not (tmp / "results.json").is_file():
            raise SystemExit(f"the browser script failed (exit {proc.returncode}) without results")
        res = json.loads((tmp / "results.json").read_text())
        shutil.rmtree(tmp, ignore_errors=True)
        if res.get("fatal"):
            fails.append(f"browser: {res['fatal'][:1500]}")
        # the rule: only public-domain photos may be on screen
        if (args.screenshots or args.thumbnails) and srv.server is not None:
            astro_only = all(hashlib.sha256(p.read_bytes()).hexdigest() == srv.inputs.get(str(p.relative_to(
                srv.server.input_dir))) for p in srv.server.input_dir.rglob("*") if p.is_file())
            if not astro_only:
                fails.append("the input folder changed during the screenshots: check that only the astronaut shows")

    for r in res.get("workflows", []):
        name = r["name"]
        wfails, wnotes = [], []
        if r.get("error"):
            wfails.append(f"load failed: {r['error'][:800]}")
        for t in r.get("missing_types", []):
            wfails.append(f"node type {t!r} is not registered (missing node)")
        wfails += r.get("node_problems", [])
        wfails += r.get("link_problems", [])
        for dlg in r.get("dialogs", []):
            wfails.append("the frontend opened a dialog: " + " | ".join(dlg.split("\n"))[:400])
        if r.get("loaded_nodes") is not None and r.get("loaded_nodes") != r.get("expected_nodes"):
            wfails.append(f"{r.get('loaded_nodes')} nodes in app.graph, {r.get('expected_nodes')} in the file")
        if r.get("loaded_links") is not None and r.get("loaded_links") != r.get("expected_links"):
            wfails.append(f"{r.get('loaded_links')} links in app.graph, {r.get('expected_links')} in the file")
        for m in r.get("console", []):
            if m["type"] in ("error", "pageerror") and not any(b in m["text"] for b in BENIGN_CONSOLE):
                wfails.append(f"console {m['type']}: {m['text'][:300]}")
        v = r.get("view") or {}
        if v.get("offscreen"):
            free = v.get("free") or {}
            wfails.append(f"opened in a {v['window'][0]:.0f}x{v['window'][1]:.0f} canvas with the file's saved view "
                          f"(extra.ds scale {v['scale']:.2f}, offset {[round(x) for x in v['offset']]}), "
                          f"{len(v['offscreen'])} node(s) are not wholly in the free canvas (right of the side bar, "
                          f"below the top bar: x {free.get('left', 0):.0f}..{free.get('right', 0):.0f}, "
                          f"y {free.get('top', 0):.0f}..{free.get('bottom', 0):.0f}): {', '.join(v['offscreen'])}")
        for pair in v.get("overlaps") or []:
            wfails.append(f"nodes overlap (title bars included): {pair}")
        prompt = r.get("prompt")
        if r.get("prompt_error"):
            wfails.append(f"graphToPrompt failed: {r['prompt_error'][:500]}")
        api_path = api_copy_for(Path(r["path"]))
        if prompt is not None:
            wfails += [f"prompt: {m}" for m in validate_prompt(prompt, info)]
            if api_path is None:
                wnotes.append("no API-format copy found (looked in <dir>/api/, workflows/api/, <name>_api.json)")
            else:
                want = load_json(api_path)
                if not is_api(want):
                    wfails.append(f"{api_path.relative_to(REPO) if api_path.is_relative_to(REPO) else api_path}: "
                                  f"not an API-format prompt")
                else:
                    mism, n2 = compare_prompts(prompt, want)
                    wfails += [f"vs {api_path.name}: {m}" for m in mism]
                    wnotes += n2
        per_wf[name] = {"path": r["path"], "api": str(api_path) if api_path else None, "fails": wfails,
                        "notes": wnotes, "prompt": prompt, "console": r.get("console", []),
                        "frontend_only_nodes": r.get("frontend_only", []),
                        "counts": {k: r.get(k) for k in ("expected_nodes", "loaded_nodes", "expected_links",
                                                          "loaded_links")}}

    ext = res.get("extensions") or {}
    swap_names = [info[n]["display_name"] for n in SWAP_NODES if n in info]
    for n in SWAP_NODES:
        if n in info and "SimSwap" not in info[n]["display_name"]:
            fails.append(f"{n}: display name {info[n]['display_name']!r} does not say SimSwap")
    search_lines = []
    for q in res.get("search") or []:
        opts = q.get("options") or []
        if q.get("error"):
            fails.append(f"search {q['query']!r}: {q['error'][:400]}")
            continue
        pos = {nm: next((i for i, o in enumerate(opts) if o == nm or o.startswith(nm + " ")), None)
               for nm in swap_names}
        search_lines.append(f"{q['query']!r}: " + ", ".join(f"{nm} #{p + 1}" if p is not None else f"{nm} missing"
                                                              for nm, p in pos.items()))
        for nm, p in pos.items():
            if p is None or p >= SEARCH_TOP:
                fails.append(f"search {q['query']!r}: {nm!r} is not among the first {SEARCH_TOP} results "
                             f"{opts[:SEARCH_TOP]} (search-alias extension: {ext.get('search_aliases')})")
    tm = res.get("templates_menu")
    templates_info = {}
    if (REPO / "web" / "simswap_templates.json").is_file():
        templates_info = json.loads((REPO / "web" / "simswap_templates.json").read_text()).get("templates", {})
    if tm is not None:
        if tm.get("error"):
            fails.append(f"templates menu: {tm['error'][:600]}")
        cards = [c for c in tm.get("cards", []) if c["name"] in listed]
        shown = [c["name"] for c in cards]
        if sorted(shown) != sorted(set(listed)):
            fails.append(f"templates menu shows {shown} for {PACK}, the server lists {sorted(listed)}")
        elif shown != sorted(shown):
            fails.append(f"templates menu order {shown}, expected {sorted(shown)}")
        for c in cards:
            # the menu fetches <name>.jpg and shows it (as a blob: URL); without one it shows a stock picture
            imgs = c.get("images") or []
            got = [f["status"] for f in tm.get("fetched", [])
                   if f["url"].split("?")[0].endswith(f"/{urllib.parse.quote(c['name'])}.jpg")]
            visible = [i for i in imgs if i["complete"] and i["width"] > 0
                       and "default-template" not in (i["src"] or "")]
            if not visible or (got and 200 not in got):  # requests are seen only when not answered from cache
                fails.append(f"templates menu: {c['name']}: its thumbnail {c['name']}.jpg is not shown (requests: "
                             f"{got}, images: {[i.get('src') for i in imgs]})")
            meta = templates_info.get(c["name"])
            if meta and (meta["title"] not in c["text"] or meta["description"] not in c["text"]):
                fails.append(f"templates menu: {c['name']}: shows {c['text']!r}, not the title/description "
                             f"{meta['title']!r} / {meta['description']!r} (web/simswap_templates.js)")
    mm = res.get("missing_models")
    if mm is not None:
        text = "\n".join(mm.get("dialogs") or [])
        want = [m for n in (load_json(Path(missing_wf)) if missing_wf else {}).get("nodes", [])
                for m in (n.get("properties") or {}).get("models", [])]
        if mm.get("error"):
            fails.append(f"missing models: {mm['error'][:600]}")
        if not want:
            fails.append(f"missing models: {missing_wf} carries no properties.models")
        for m in want:
            listed_text = text + json.dumps(mm.get("items"))
            if m["name"] not in text or m["directory"] not in text or m["url"] not in listed_text:
                fails.append(f"missing models: loading {Path(str(missing_wf)).name} into a ComfyUI without model files "
                             f"did not list {m['directory']} / {m['name']} with {m['url']} (dialogs: {text[:600]!r})")

    shots = []
    for s in res.get("screenshots", []):
        if s.get("ok"):
            shots.append(s["out"])
            if s["out"].endswith(".jpg"):  # template thumbnails: the menu's cards show them at most 256 px high
                from PIL import Image

                im = Image.open(s["out"]).convert("RGB")
                if im.width > 512:
                    im = im.resize((512, round(512 * im.height / im.width)), Image.Resampling.LANCZOS)
                im.save(s["out"], quality=85)
        else:
            fails.append(f"screenshot {s.get('out')}: {str(s.get('error'))[:600]}")
    t = res.get("templates")
    if t:
        if t.get("ok"):
            shots.append(t["out"])
        else:
            fails.append(f"templates menu screenshot: {str(t.get('error'))[:600]}")

    # ------------------------------------------------------------------ summary
    rel = lambda p: str(Path(p).relative_to(REPO)) if Path(p).is_relative_to(REPO) else str(p)
    print(f"frontend check: ComfyUI at {srv.url}, {len(pack_nodes)} {PACK} node types, "
          f"{len(per_wf)} UI workflow(s)")
    for r in per_wf.values():
        api = rel(r["api"]) if r["api"] else "no API copy"
        print(f"  {'FAIL' if r['fails'] else 'ok  '} {rel(r['path'])}  (vs {api})")
        for m in r["fails"]:
            print(f"         - {m}")
        for m in r["notes"]:
            print(f"         note: {m}")
    print(f"  templates listed for {PACK}: {sorted(listed) if listed else 'none'}")
    print(f"  pack extensions: {ext.get('registered')} (search aliases: {ext.get('search_aliases')})")
    for line in search_lines:
        print(f"  search {line}")
    if tm is not None:
        print(f"  templates menu: {[c['name'] for c in tm.get('cards', []) if c['name'] in listed]}")
    if mm is not None:
        print(f"  missing-models dialog (empty model folders): {' | '.join(mm.get('dialogs') or ['none'])[:300]!r}")
    for m in fails:
        print(f"  FAIL {m}")
    for m in notes:
        print(f"  note: {m}")
    for p in shots:
        print(f"  screenshot: {rel(p)}")
    if res.get("blocked"):
        print(f"  ({len(res['blocked'])} non-loopback requests aborted, e.g. {res['blocked'][0][:80]})")
    n_fail = len(fails) + sum(1 for r in per_wf.values() if r["fails"])
    print(f"frontend check: {'FAILED' if n_fail else 'passed'} ({n_fail} failing item(s))")
    if args.json:
        Path(args.json).write_text(json.dumps({"workflows": per_wf, "fails": fails, "notes": notes,
                                               "templates": listed, "screenshots": shots,
                                               "search": res.get("search"), "templates_menu": tm,
                                               "missing_models": mm, "extensions": ext}, indent=1))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
