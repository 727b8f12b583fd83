"""Official mode cost: OpenCV 4.x-exact warps (simswap_core/cvwarp.py) against the default exact-bilinear ones.

On insightface's t1.jpg (6 faces, 1280x886), side by side, round by round (order alternating):
  crops:  align_official (float64 fit, uint8 frame, 4.x warp)  vs  align_faces (grid_sample)
  paste:  paste_faces(mode="official") (4.x warps, float64 blend) vs paste_faces(mode="default")
Prints the median and best time of each and the ratios official / default. Run from the repository root:

    .venv/bin/python bench/bench_official.py [--rounds 5] [--crop 224] [--device cpu|cuda] [--threads N]
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench_util as U
from simswap_core.align import align_faces
from simswap_core.faces import DetectedFaces
from simswap_core.official import align_official
from simswap_core.paste import paste_faces

T1_POINTS = [  # ArcFace order, frame pixels of t1.jpg (as tests/test_align.py)
    [[488.5, 323.6], [539.9, 329.7], [507.0, 354.7], [484.1, 372.6], [528.9, 379.2]],
    [[767.1, 402.2], [809.5, 403.9], [776.9, 428.2], [768.9, 446.4], [805.6, 447.5]],
    [[1143.3, 321.8], [1190.1, 319.8], [1160.8, 340.6], [1149.5, 363.7], [1190.1, 362.7]],
    [[921.0, 121.7], [946.1, 116.7], [920.3, 150.3], [934.7, 171.8], [959.0, 167.2]],
    [[87.3, 321.6], [137.5, 311.3], [118.0, 340.1], [101.1, 363.8], [145.9, 356.1]],
    [[283.0, 207.2], [322.2, 193.1], [299.3, 229.8], [307.0, 252.9], [337.9, 241.8]],
]


def t1_frames(device: torch.device) -> torch.Tensor:
    from simswap_core.io.images import read_image

    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs insightface installed (its t1.jpg sample photo)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    return read_image(path).image.to(device)


def timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--crop", type=int, default=224, choices=(224, 512))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    U.set_threads(args.threads)
    dev = U.resolve_device(args.device)
    frames = t1_frames(dev)
    h, w = frames.shape[-2:]
    pts = torch.tensor(T1_POINTS, device=dev)
    faces = DetectedFaces(torch.zeros(6, 4, device=dev), pts, torch.ones(6, device=dev),
                          torch.zeros(6, dtype=torch.int64, device=dev), [(h, w)])
    al_off = align_official(frames, faces, args.crop)
    al_def = align_faces(frames, faces, args.crop)
    swapped = torch.rand(6, 3, args.crop, args.crop, generator=torch.Generator().manual_seed(0)).to(dev)
    cases = {
        "crops official": lambda: align_official(frames, faces, args.crop),
        "crops default": lambda: align_faces(frames, faces, args.crop),
        "paste official": lambda: paste_faces(frames, swapped, al_off, mode="official", uint8_truncate=True),
        "paste default": lambda: paste_faces(frames, swapped, al_def, mode="default"),
    }
    for fn in cases.values():
        fn()                                                    # warm-up
    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(args.rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            times[k].append(timed(cases[k]))
    print(f"t1.jpg 6 faces, crop {args.crop}, {dev}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    print(f"{'case':<16} {'median ms':>10} {'best ms':>9}")
    out: dict[str, float] = {}
    for k in names:
        med, best = statistics.median(times[k]) * 1e3, min(times[k]) * 1e3
        out[k] = med
        print(f"{k:<16} {med:>10.1f} {best:>9.1f}")
    for what in ("crops", "paste"):
        ratio = out[f"{what} official"] / out[f"{what} default"]
        out[f"{what} ratio"] = ratio
        print(f"{what}: official / default = {ratio:.2f}x (median)")
    return out


if __name__ == "__main__":
    main()
