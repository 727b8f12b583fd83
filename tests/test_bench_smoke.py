"""Smoke test of bench/: both benchmarks run end to end on a tiny configuration (no timing is asserted)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipeline_fixtures import t1_path

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


def test_bench_video_smoke(tmp_path, fast_generator_path, pl_weights):
    """bench_video.py end to end on a 3-frame clip: the CLI in a fresh process, peak RSS from wait4, every output
    checked (frame count, order, audio). The seeded weights of the test session are passed in (no new ones)."""
    t1_path()                                        # skips without insightface's photo
    mod = _load("bench_video")
    out = tmp_path / "video.json"
    data = mod.main(["--frames", "3", "--resolution", "192x108", "--threads", "1", "--device", "cpu",
                     "--generator", str(fast_generator_path), "--arcface", str(pl_weights["arcface"]),
                     "--clips-dir", str(tmp_path / "clips"), "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "video" and saved["config"]["frames"] == [3]
    res = data["results"]["3"]
    assert res["output_ok"], res["runs"]
    assert res["faces_swapped"] == 6                 # 2 people x 3 frames, counted by the CLI's own summary
    assert res["peak_rss_mib"] > 100 and res["fps"] > 0
    assert "ratio" not in data["results"]            # one clip length: nothing to compare


def test_bench_video_ratio_of_two_lengths():
    """The side-by-side summary: ratio = long / short of the same run, marginal rate from the wall difference."""
    mod = _load("bench_video")
    run = lambda wall, rss: {"wall_s": wall, "cpu_s": wall, "peak_rss_mib": rss, "frames_ok": True,
                             "order_ok": True, "audio_ok": True, "faces_swapped": None}
    s = mod.summarise({10: [run(20.0, 1000.0)], 100: [run(65.0, 1050.0)]}, [10, 100])
    assert s["ratio"]["of"] == "100/10"
    assert s["ratio"]["peak_rss"] == pytest.approx(1.05)
    assert s["ratio"]["fps"] == pytest.approx((100 / 65) / (10 / 20))
    assert s["marginal_fps"] == pytest.approx(90 / 45)


def test_bench_masks_smoke(weights_dir, tmp_path, fast_generator_path):
    """bench_masks.py end to end: box, ellipse and the small seeded SAM side by side on one astronaut frame with the
    session's crop-64 generator (the parser kinds cost seconds each on this CPU: the full run covers them)."""
    pytest.importorskip("skimage")
    mod = _load("bench_masks")
    out = tmp_path / "masks.json"
    data = mod.main(["--devices", "cpu", "--scene", "1", "--kinds", "sam,ellipse,box", "--repeats", "1",
                     "--warmup", "0", "--generator", str(fast_generator_path), "--weights-dir", str(weights_dir),
                     "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "masks" and saved["crop_size"] == 64
    res = data["devices"]["cpu"]["kinds"]
    assert list(res) == ["box", "sam", "ellipse"]                       # box first: the other kinds' reference
    for r in res.values():
        assert r["faces"] == 1 and r["raw"][0]["out_finite"]
        stages = r["raw"][0]["stages"]
        assert sum(stages.values()) <= r["raw"][0]["total_s"] + 1e-6
        assert 0 <= r["mask_share"]["median"] < 1 and 0 <= r["mask_cpu_share"]["median"] <= 1
    assert res["box"]["frame_ratio_to_box"]["median"] == pytest.approx(1.0)
    assert 0 < res["sam"]["raw"][0]["mask_mean"] < res["box"]["raw"][0]["mask_mean"] == 1.0   # a box is the crop


def test_bench_speed_smoke(tmp_path, fast_generator_path, pl_weights):
    """bench_speed.py --quick: a two-frame 320x180 clip decoded, swapped and encoded end to end through run(), the
    video paths chosen and said (the CPU ones here), per-stage seconds, the generator's share of the measured bf16
    peak, peak RSS, and the side-by-side ratio to the per-face reference pipeline (no timing is asserted)."""
    pytest.importorskip("skimage")
    from simswap_core.io.video import count_frames

    mod = _load("bench_speed")
    out = tmp_path / "speed.json"
    data = mod.main(["--quick", "--device", "cpu", "--generator", str(fast_generator_path), "--arcface",
                     str(pl_weights["arcface"]), "--work-dir", str(tmp_path / "work"), "--json", str(out)])
    assert json.loads(out.read_text())["benchmark"] == "speed"
    res = data["results"]["quick/1"]
    r = res["fp32"]
    assert r["faces"] == 2 and r["fps"] > 0                   # the astronaut in both frames
    assert r["decode"] == "decode: on the CPU (PyAV): the frames are processed on cpu"
    assert r["encode"] == "encode: libx264 on the CPU: the frames are processed on cpu"
    assert set(r["stage_s"]) == {"detect", "align", "generate", "mask", "paste"} and r["stage_s"]["generate"] > 0
    assert 0 < r["generator_peak_share"] and r["memory_mib"] > 100
    assert data["gflop_per_face"] == pytest.approx(96.0 * (64 / 224) ** 2)
    assert res["decode_fps"] > 0 and res["encode_fps"] > 0
    assert set(res["reference"]["ratio"]) == {"fp32"} and res["reference"]["fps"]["reference"] > 0
    assert count_frames(tmp_path / "work" / "out_quick_1_fp32.mp4") == 2
