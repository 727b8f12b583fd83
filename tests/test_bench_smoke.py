"""Smoke test of bench/: both benchmarks run end to end on a tiny configuration (no timing is asserted)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}_smoke", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench_weights")


def test_bench_generator_smoke(weights_dir, tmp_path):
    mod = _load("bench_generator")
    out = tmp_path / "gen.json"
    data = mod.main(["--device", "cpu", "--size", "224", "--modes", "fp32", "--batches", "1,2",
                     "--channels-last", "off", "--repeats", "1", "--warmup", "1", "--b1-calls", "1",
                     "--weights-dir", str(weights_dir), "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "generator"
    rows = {(r["mode"], r["batch"], r["channels_last"]): r for r in data["results"]}
    assert set(rows) == {("fp32", 1, False), ("fp32", 2, False)}
    assert rows[("fp32", 1, False)]["ratio_to_fp32_b1"] == pytest.approx(1.0)
    assert rows[("fp32", 1, False)]["max_abs_diff"] == 0.0
    assert all(r["faces_per_s"] > 0 for r in rows.values())


def test_bench_pipeline_smoke(weights_dir, tmp_path):
    pytest.importorskip("insightface")
    pytest.importorskip("skimage")
    mod = _load("bench_pipeline")
    out = tmp_path / "pipe.json"
    data = mod.main(["--device", "cpu", "--frames", "1", "--scenes", "1", "--repeats", "1", "--warmup", "0",
                     "--weights-dir", str(weights_dir), "--json", str(out)])
    assert json.loads(out.read_text())["benchmark"] == "pipeline"
    res = data["results"]["1"]
    assert res["faces_swapped"] == 1
    for name in ("batched", "reference"):
        shares = res[name]["stage_share"]
        assert set(shares) == {"detect", "align", "identity", "generate", "mask", "paste", "other"}
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6)
    # the two pipelines must agree (a correctness property of the comparison, not a timing)
    assert res["max_abs_diff_images"] < 1e-4
