#!/usr/bin/env python
"""What the synthetic-media label costs, measured side by side in one run: writing a frame without a label, with
the XMP / text / EXIF label, and with a signed C2PA manifest on top (a test certificate made at run time with
``cryptography``, tests/provenance_fixtures.py), plus the sha256 of a model file (once per process, then cached).

    .venv/bin/python bench/bench_provenance.py                     # 1280x720 PNG and JPEG, 6 rounds interleaved
    .venv/bin/python bench/bench_provenance.py --size 1920x1080 --rounds 3

Each round writes plain, labelled and signed files in turn (interleaved, so a busy machine slows all three alike);
the table shows the fastest round of each and the ratio to the plain write.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from provenance_fixtures import make_test_signer  # noqa: E402

from simswap_core import provenance  # noqa: E402
from simswap_core.io.images import write_image  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720", help="WxH of the frame")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    image = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cert, key = make_test_signer(d)
        model = d / "model.bin"
        model.write_bytes(bytes(200 << 20))
        t0 = time.perf_counter()
        label = provenance.make_label(generator=model)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        provenance.make_label(generator=model)
        cached = time.perf_counter() - t0
        print(f"{'format':<8}{'plain ms':>10}{'labelled ms':>13}{'ratio':>7}{'+C2PA ms':>10}{'ratio':>7}")
        for ext in ("png", "jpg"):
            best = {"plain": 1e9, "labelled": 1e9, "c2pa": 1e9}
            for i in range(args.rounds):
                for kind in best:
                    t0 = time.perf_counter()
                    if kind == "c2pa":
                        with provenance.c2pa_signing(cert, key):
                            write_image(d / f"{kind}{i}.{ext}", image, label=label)
                    else:
                        write_image(d / f"{kind}{i}.{ext}", image, label=label if kind == "labelled" else None)
                    best[kind] = min(best[kind], time.perf_counter() - t0)
            p, lab, c = best["plain"], best["labelled"], best["c2pa"]
            print(f"{ext:<8}{p * 1e3:>10.0f}{lab * 1e3:>13.0f}{lab / p:>7.2f}{c * 1e3:>10.0f}{c / p:>7.2f}")
    print(f"sha256 of a 200 MiB model file: {first:.2f} s the first time, {cached * 1e3:.1f} ms cached")


if __name__ == "__main__":
    main()
