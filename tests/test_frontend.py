"""The pack in the REAL ComfyUI frontend (headless chromium driven by scripts/frontend_check.py / .mjs).

One run of the browser check feeds every test of this module. It uses the session's ComfyUI (tests/comfy_harness.py,
seeded model files) and starts a second one with EMPTY model folders:

* the node search: "face swap", "swap face", "faceswap" and "reactor" typed into the search box that a double click
  on the canvas opens list the swap nodes (display names saying "SimSwap") among the first results;
* every example workflow loads without a dialog, with widget values valid for the node definitions, a
  ``graphToPrompt`` equal to its API copy, no two nodes overlapping (title bars included), and every node inside
  the free canvas (right of the side bar, below the top bar) in the view the file restores;
* workflow 01 dropped into a ComfyUI without model files opens the missing-models dialog listing
  ``simswap / latest_net_G.pth`` with its official URL;
* the Templates menu shows the pack's templates in their numbered order, with their titles, descriptions and
  thumbnails (``<name>.svg`` drawn by scripts/make_workflows.py, not the frontend's stock picture).

Needs Node.js, ``playwright-core`` in ``.cache/node`` (``bash setup.sh`` installs it with npm) and chromium
(``apt-get install chromium``, or $CHROMIUM). Missing: the tests FAIL in CI ($CI set), like the ComfyUI tests, and
are skipped elsewhere.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfy_harness import REPO, get_server, in_ci, require_comfyui

pytestmark = pytest.mark.slow  # about 60-90 s on two CPU cores (two ComfyUI start-ups and the browser)

SWAP_QUERIES = ("face swap", "swap face", "faceswap", "reactor")


def _requirements() -> list[str]:
    missing = []
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        missing.append("chromium (apt-get install -y chromium, or set $CHROMIUM)")
    if not shutil.which("node"):
        missing.append("Node.js (apt-get install -y nodejs)")
    modules = [Path(p) for p in (os.environ.get("SIMSWAP_NODE_MODULES"), REPO / ".cache" / "node" / "node_modules")
               if p]
    if not any((m / "playwright-core" / "package.json").is_file() for m in modules):
        missing.append("playwright-core (npm install --prefix .cache/node playwright-core@1.65.1; setup.sh does it)")
    return missing


@pytest.fixture(scope="module")
def check(tmp_path_factory) -> dict:
    """Run scripts/frontend_check.py once; its JSON results plus the exit status and the printed report."""
    require_comfyui()
    missing = _requirements()
    if missing:
        msg = "the browser check needs " + "; ".join(missing)
        if in_ci():
            pytest.fail(msg + " (browser tests are never skipped in CI)", pytrace=False)
        pytest.skip(msg)
    out = tmp_path_factory.mktemp("frontend") / "results.json"
    # the session's ComfyUI (seeded models; started once for all ComfyUI tests) serves the checks; the check starts
    # only the second one, with empty model folders, for the missing-models dialog
    srv = get_server()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "frontend_check.py"), "--json", str(out),
                           "--url", srv.base, "--seed-settings"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    report = proc.stdout + proc.stderr
    if not out.is_file():
        pytest.fail(f"the browser check wrote no results (exit {proc.returncode}):\n{report[-6000:]}", pytrace=False)
    res = json.loads(out.read_text())
    res["_rc"], res["_report"] = proc.returncode, report
    return res


def _fails(check: dict, *words: str) -> list[str]:
    return [f for f in check["fails"] if any(w in f for w in words)]


def test_search_lists_the_swap_nodes(check):
    results = {r["query"]: r for r in check.get("search") or []}
    assert sorted(results) == sorted(SWAP_QUERIES), f"queries run: {sorted(results)}\n{check['_report'][-3000:]}"
    for q in SWAP_QUERIES:
        opts = results[q].get("options") or []
        assert any(o.startswith("SimSwap") and "Swap" in o for o in opts[:3]), \
            f"search {q!r}: the first results are {opts[:10]}"
    assert not _fails(check, "search "), _fails(check, "search ")


def test_workflows_load_cleanly_without_overlaps_in_the_free_canvas(check):
    assert check["workflows"], check["_report"][-3000:]
    bad = {name: wf["fails"] for name, wf in check["workflows"].items() if wf["fails"]}
    assert not bad, json.dumps(bad, indent=1)[:6000]


def test_workflow_01_without_models_opens_the_missing_models_dialog(check):
    mm = check.get("missing_models")
    assert mm is not None, check["_report"][-3000:]
    text = "\n".join(mm.get("dialogs") or [])
    assert "simswap / latest_net_G.pth" in text, text or mm
    assert "https://github.com/neuralchen/SimSwap/releases/download/" in text, text
    assert not _fails(check, "missing models"), _fails(check, "missing models")


def test_templates_menu_shows_thumbnails_titles_in_order(check):
    tm = check.get("templates_menu") or {}
    names = [c["name"] for c in tm.get("cards", []) if c["name"] in check["templates"]]
    assert names and names == sorted(check["templates"]), (names, check["templates"])
    for c in tm["cards"]:  # <name>.svg shown, not the frontend's stock picture (the server check GETs each one)
        if c["name"] in names:
            assert all(f["status"] == 200 for f in tm["fetched"] if f["url"].endswith(f"/{c['name']}.svg")), c
            assert any(i["width"] > 0 and "default-template" not in (i["src"] or "") for i in c["images"]), c
    assert not _fails(check, "template", "thumbnail"), _fails(check, "template", "thumbnail")


def test_the_whole_browser_check_passes(check):
    assert check["_rc"] == 0, check["_report"][-8000:]
