"""`simswap batch` in one process: the job file, the manifest (skip / redo), bad jobs failing alone, and outputs
bit-identical to `simswap swap` with the same flags.

Seeded weights (pipeline_fixtures) found through $SIMSWAP_MODELS_DIR, the crop-64 fast generator, YuNet; targets
are the astronaut photo and a tiny synthetic clip of two people from t1.jpg (video_fixtures). Labels are switched
off (SIMSWAP_LABEL=0) where files are compared byte for byte: the synthetic-media label carries the time of the
run; with labels on the decoded frames are compared instead. Videos are written lossless (crf 0) where compared:
lossy x264 encodes (crf 17) of the same frames were seen to differ from run to run on this loaded 2-core machine
(in the pytest process and in Ray workers; never in a plain CLI process), so crf 17 would test x264, not the batch.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_fixtures import astronaut_small, astronaut_uint8
from simswap_core.batch.jobs import parse_jobs
from simswap_core.batch.manifest import Manifest
from simswap_core.cli import main

REPO = Path(__file__).resolve().parents[1]


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture
def loaded(pl_models, pl_weights, monkeypatch) -> list[Path]:
    """Model loading memoised by resolved path across the test's CLI calls (the seeded r101 ArcFace costs ~10 s
    per load on this CPU); resolution, the detector and everything else run for real. Returns the paths loaded."""
    import simswap_core.models.loaders as ck

    g, a, _ = pl_models
    cache = {Path(pl_weights["g224"]).resolve(): g, Path(pl_weights["arcface"]).resolve(): a}
    calls: list[Path] = []

    def memo(real):
        def load(path, *args, **kw):
            p = Path(path).resolve()
            calls.append(p)
            if p not in cache:
                cache[p] = real(path, *args, **kw)
            return cache[p]
        return load

    monkeypatch.setattr(ck, "load_generator", memo(ck.load_generator))
    monkeypatch.setattr(ck, "load_arcface", memo(ck.load_arcface))
    return calls


@pytest.fixture
def env(pl_models_dir, loaded, monkeypatch, tmp_path):
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SIMSWAP_LABEL", "0")
    monkeypatch.delenv("SIMSWAP_DEBUG", raising=False)
    return loaded


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    from video_fixtures import make_clip

    d = tmp_path_factory.mktemp("batch_media")
    Image.fromarray(astronaut_uint8()).save(d / "source.png")
    Image.fromarray(astronaut_small(256)[:, ::-1].copy()).save(d / "target.png")
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(d / "noface.png")
    make_clip(d / "clip.mp4", frames=5, size=(320, 180), people=2, audio=False)
    return {"source": d / "source.png", "target": d / "target.png", "noface": d / "noface.png",
            "clip": d / "clip.mp4"}


def write_jobs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------- the job file

def test_job_file_csv_and_jsonl_errors_name_their_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    csv = tmp_path / "jobs.csv"
    csv.write_text("id,source,target,out,size,color_match,map\n"
                   "first,a.png,t.mp4,out/one.mp4,224,yes,\n"
                   "# a comment line\n"
                   ",a.png,t.mp4,out/two.mp4,300,,\n"          # size 300: swap's own check
                   ",a.png,t.mp4,out/one.mp4,,,\n"             # the same output as line 2
                   ",,t.mp4,out/three.mp4,,maybe,\n"           # not a switch value
                   ",,t.mp4,out/four.mp4,,,a.png=index:0;a.png=index:1\n")
    jobs = parse_jobs(csv)
    assert [j.line for j in jobs] == [2, 4, 5, 6, 7]
    ok, bad_size, dup, bad_bool, mapped = jobs
    assert ok.error is None and ok.name == "first"
    assert ok.out == str(tmp_path / "out" / "one.mp4")           # relative to the job file
    assert "--color-match" in ok.argv and str(tmp_path / "a.png") in ok.argv
    assert bad_size.error.startswith("jobs.csv:4:") and "--size" in bad_size.error and "300" in bad_size.error
    assert dup.error.startswith("jobs.csv:5:") and "line 2" in dup.error
    assert bad_bool.error.startswith("jobs.csv:6:") and "color_match" in bad_bool.error
    assert mapped.error is None and mapped.argv.count("--map") == 2
    assert f"{tmp_path / 'a.png'}=index:1" in mapped.argv

    jl = write_jobs(tmp_path / "jobs.jsonl", [{"source": "a.png", "target": "t.mp4", "out": "x.mp4",
                                               "mask": "ellipse", "no_audio": True}])
    with open(jl, "a") as f:
        f.write("{not json\n[1, 2]\n")
        f.write(json.dumps({"source": "a.png", "target": "t.mp4", "out": "y.mp4", "colour_match": True}) + "\n")
        f.write(json.dumps({"source": "a.png", "target": "t.mp4", "out": "z.mp4", "device": "cuda"}) + "\n")
        f.write(json.dumps({"source": "a.png", "out": "w.mp4"}) + "\n")
    good, not_json, not_obj, unknown, batch_level, no_target = parse_jobs(jl)
    assert good.error is None and "--no-audio" in good.argv and good.argv[good.argv.index("--mask") + 1] == "ellipse"
    assert not_json.error.startswith("jobs.jsonl:2: not valid JSON")
    assert not_obj.error.startswith("jobs.jsonl:3: expected a JSON object")
    assert "unknown key 'colour_match'" in unknown.error and "did you mean 'color_match'" in unknown.error
    assert "simswap batch --device" in batch_level.error
    assert no_target.error.startswith("jobs.jsonl:6:") and "--target" in no_target.error

    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    with pytest.raises(Exception, match="no jobs"):
        parse_jobs(empty)


def test_batch_never_imports_ray_outside_the_ray_runner():
    """Only simswap_core/batch/ray_runner.py mentions ray, and importing the CLI and the batch modules (the Ray
    runner's module too) does not import it."""
    import re

    pattern = re.compile(r"^\s*(import ray\b|from ray\b)", re.M)
    files = [p for folder in ("simswap_core", "nodes") for p in (REPO / folder).rglob("*.py")]
    users = sorted(str(p.relative_to(REPO)) for p in files if pattern.search(p.read_text(encoding="utf-8")))
    assert users == ["simswap_core/batch/ray_runner.py"]
    code = ("import sys, simswap_core, simswap_core.cli.main, simswap_core.batch.driver, simswap_core.batch.local, "
            "simswap_core.batch.manifest, simswap_core.batch.ray_runner;"
            "from simswap_core.cli.main import build_parser; build_parser();"
            "assert 'ray' not in sys.modules, 'ray was imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_ray_missing_is_a_dependency_error(monkeypatch):
    import builtins

    from simswap_core.batch import ray_runner
    from simswap_core.errors import DependencyError

    real = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(DependencyError, match=r"pip install \"ray>=2.40\""):
        ray_runner.import_ray()


# ------------------------------------------------------------------------------------------- running jobs

@pytest.mark.slow
def test_batch_same_as_swap_manifest_rerun_and_bad_jobs(env, media, fast_generator_path, tmp_path, capsys):
    g = str(fast_generator_path)
    ref = tmp_path / "ref"
    # the reference outputs: `simswap swap` with the same flags
    assert main(["swap", "--source", str(media["source"]), "--target", str(media["clip"]), "--out",
                 str(ref / "clip.mp4"), "--generator", g, "--batch-size", "2", "--crf", "0", "-q"]) == 0
    assert main(["swap", "--source", str(media["source"]), "--target", str(media["target"]), "--out",
                 str(ref / "photo.png"), "--generator", g, "--mask", "ellipse", "-q"]) == 0
    jobs = write_jobs(tmp_path / "jobs.jsonl", [
        {"id": "clip", "source": str(media["source"]), "target": str(media["clip"]), "out": "out/clip.mp4",
         "generator": g, "batch_size": 2, "crf": 0},
        {"id": "photo", "source": str(media["source"]), "target": str(media["target"]), "out": "out/photo.png",
         "generator": g, "mask": "ellipse"},
        {"id": "missing", "source": str(media["source"]), "target": "nowhere.mp4", "out": "out/missing.mp4",
         "generator": g},
        {"id": "noface", "source": str(media["source"]), "target": str(media["noface"]), "out": "out/noface.png",
         "generator": g},
        {"id": "typo", "source": str(media["source"]), "target": str(media["target"]), "out": "out/typo.png",
         "maks": "box"},
    ])
    capsys.readouterr()
    rc = main(["batch", str(jobs)])
    err = capsys.readouterr().err
    assert rc == 1                                              # some jobs failed ...
    out = tmp_path / "out"
    assert sha(out / "clip.mp4") == sha(ref / "clip.mp4")     # ... the others finished, bit-identical to swap
    assert sha(out / "photo.png") == sha(ref / "photo.png")
    assert not (out / "missing.mp4").exists() and not (out / "noface.png").exists()
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "photo.png"]     # no temporary or lock files
    for name, words in (("missing", "nowhere.mp4"), ("noface", "face"), ("typo", "unknown key 'maks'")):
        line = next(x for x in err.splitlines() if x.startswith(f"failed: {name}:"))
        assert words in line, line
    assert "5 job(s): 2 done, 0 skipped, 3 failed" in err

    manifest = json.loads((tmp_path / "jobs.manifest.json").read_text())["jobs"]
    rec = manifest[str(out / "clip.mp4")]
    assert rec["state"] == "done" and rec["frames"] == 5 and rec["faces"] > 0
    assert rec["output"]["sha256"] == sha(out / "clip.mp4")
    assert rec["output"]["size"] == (out / "clip.mp4").stat().st_size
    assert rec["models"]["generator"]["sha256"] == sha(fast_generator_path)
    assert set(rec["models"]) >= {"generator", "arcface", "detector"}
    assert "--batch-size" in rec["settings"]["argv"]
    assert manifest[str(out / "noface.png")]["state"] == "failed"
    assert "face" in manifest[str(out / "noface.png")]["error"]

    # a rerun skips the finished jobs (outputs untouched), the failed ones fail again
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["batch", str(jobs), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "skip  clip" in dry and "skip  photo" in dry and "redo  noface" in dry and "FAIL  typo" in dry
    assert main(["batch", str(jobs)]) == 1
    err = capsys.readouterr().err
    assert "2 skipped" in err and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps

    # an interrupted attempt (started record, a killed writer's temporary file) is redone, the leftover removed
    data = json.loads((tmp_path / "jobs.manifest.json").read_text())
    data["jobs"][str(out / "clip.mp4")]["state"] = "started"
    (tmp_path / "jobs.manifest.json").write_text(json.dumps(data))
    (out / "clip.mp4").unlink()
    (out / ".clip.0badc0de.tmp.mp4").write_bytes(b"half a video")
    # and a changed setting redoes that job only
    rows = [json.loads(x) for x in jobs.read_text().splitlines()]
    rows[1]["mask"] = "box"
    write_jobs(jobs, rows)
    assert main(["batch", str(jobs), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "redo  clip: " in dry and "interrupted" in dry and "settings or inputs changed" in dry
    assert main(["batch", str(jobs)]) == 1
    capsys.readouterr()
    assert sha(out / "clip.mp4") == sha(ref / "clip.mp4")
    assert not (out / ".clip.0badc0de.tmp.mp4").exists()
    assert sha(out / "photo.png") != sha(ref / "photo.png")      # box mask now: redone with the new setting
    assert main(["swap", "--source", str(media["source"]), "--target", str(media["target"]), "--out",
                 str(ref / "photo_box.png"), "--generator", g, "--mask", "box", "-q"]) == 0
    assert sha(out / "photo.png") == sha(ref / "photo_box.png")


def test_existing_output_not_in_the_manifest_is_not_replaced(env, media, fast_generator_path, tmp_path, capsys):
    out = tmp_path / "mine.png"
    out.write_bytes(b"someone else's file")
    jobs = write_jobs(tmp_path / "j.jsonl", [{"source": str(media["source"]), "target": str(media["noface"]),
                                              "out": str(out), "generator": str(fast_generator_path)}])
    assert main(["batch", str(jobs)]) == 1
    err = capsys.readouterr().err
    assert "already exists and this manifest did not write it; pass --overwrite" in err
    assert out.read_bytes() == b"someone else's file"
    assert main(["batch", str(jobs), "--workers", "3"]) == 2          # several workers need --ray
    assert "--workers 3" in capsys.readouterr().err


def test_batch_progress_reaches_every_frame_labels_on(env, media, fast_generator_path, tmp_path,
                                                               monkeypatch):
    """Frames done reach each job's total; with labelling on, the same job twice gives the same frames."""
    from simswap_core.batch.driver import LocalRunner, plan, run_batch
    from simswap_core.io.video import probe_video

    monkeypatch.delenv("SIMSWAP_LABEL")
    g = str(fast_generator_path)
    jobs = write_jobs(tmp_path / "j.jsonl", [
        {"source": str(media["source"]), "target": str(media["clip"]), "out": f"o{k}.mp4", "generator": g,
         "batch_size": 2, "crf": 0} for k in range(2)])
    manifest = Manifest(tmp_path / "m.json")
    rows = plan(parse_jobs(jobs), manifest)
    assert [r.frames_expected for r in rows] == [5, 5]
    seen: dict[str, int] = {}
    report = run_batch(rows, manifest, LocalRunner(), progress=lambda o, d, t, w: seen.__setitem__(o, d))
    assert [r.status for r in report.rows] == ["done", "done"]
    assert seen == {str(tmp_path / "o0.mp4"): 5, str(tmp_path / "o1.mp4"): 5}
    assert probe_video(tmp_path / "o0.mp4").frame_count == 5

    import av

    def frames(p):
        with av.open(str(p)) as c:
            return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]

    assert all(np.array_equal(a, b) for a, b in zip(frames(tmp_path / "o0.mp4"), frames(tmp_path / "o1.mp4")))
