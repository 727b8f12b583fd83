"""`simswap batch` against the same jobs run as separate `simswap swap` calls, side by side, in this process.

    python bench/bench_batch.py [--jobs 4] [--frames 8] [--device cpu]

K jobs (a small synthetic clip of two people from t1.jpg each, seeded weights, the crop-64 generator) run twice:
(a) one `simswap swap` per job (each call loads its models, as a shell loop over clips would), (b) one
`simswap batch` over a job file with the same jobs (models loaded once). Prints wall seconds, frames/s and the
ratio b/a; the outputs of both are checked byte-identical (labels off). Figures depend on the machine: the ratio
is what grows with the number of short clips (model loading amortised), not an absolute speed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for p in (REPO, REPO / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    import numpy as np
    from PIL import Image
    from video_fixtures import make_clip

    from simswap_core.cli import main as cli
    from simswap_core.models.loaders import convert_checkpoint
    from simswap_core.models.seeded import write_seeded_checkpoints

    os.environ["SIMSWAP_LABEL"] = "0"
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        d = Path(tmp)
        w = write_seeded_checkpoints(d / "w", seed=1234, kinds=("g224", "arcface"))
        (d / "models" / "simswap").mkdir(parents=True)
        (d / "models" / "simswap" / "latest_net_G.pth").symlink_to(w["g224"])
        (d / "models" / "simswap" / "arcface_checkpoint.tar").symlink_to(w["arcface"])
        os.environ["SIMSWAP_MODELS_DIR"] = str(d / "models")
        g = convert_checkpoint(w["g224"], d / "fast.safetensors", crop_size=64)
        from skimage import data

        Image.fromarray(np.ascontiguousarray(data.astronaut())).save(d / "source.png")
        for k in range(a.jobs):
            make_clip(d / f"clip{k}.mp4", frames=a.frames, size=(320, 180), people=2, audio=False, seed=k)
        flags = ["--generator", str(g), "--device", a.device, "--batch-size", "4", "--crf", "0"]

        t0 = time.perf_counter()
        for k in range(a.jobs):
            assert cli(["swap", "--source", str(d / "source.png"), "--target", str(d / f"clip{k}.mp4"), "--out",
                        str(d / "a" / f"o{k}.mp4"), *flags, "-q"]) == 0
        t_swap = time.perf_counter() - t0

        rows = [{"source": "source.png", "target": f"clip{k}.mp4", "out": f"b/o{k}.mp4", "generator": str(g),
                 "batch_size": 4, "crf": 0} for k in range(a.jobs)]
        (d / "jobs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        t0 = time.perf_counter()
        assert cli(["batch", str(d / "jobs.jsonl"), "--device", a.device, "-q"]) == 0
        t_batch = time.perf_counter() - t0

        same = all(hashlib.sha256((d / "a" / f"o{k}.mp4").read_bytes()).digest() ==
                   hashlib.sha256((d / "b" / f"o{k}.mp4").read_bytes()).digest() for k in range(a.jobs))
        n = a.jobs * a.frames
        print(f"{a.jobs} jobs x {a.frames} frames (320x180, 2 faces, crop 64, {a.device})")
        print(f"{'run':<34} {'seconds':>8} {'frames/s':>9}")
        print(f"{'simswap swap per job':<34} {t_swap:>8.1f} {n / t_swap:>9.2f}")
        print(f"{'simswap batch (models once)':<34} {t_batch:>8.1f} {n / t_batch:>9.2f}")
        print(f"speed-up batch / per-job swap: {t_swap / t_batch:.2f}x; outputs byte-identical: {same}")


if __name__ == "__main__":
    main()
