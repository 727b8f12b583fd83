#!/usr/bin/env python3
"""Print how far simswap_core is from the official SimSwap outputs in tests/fixtures/golden_public.npz.

Seeded weights (spec section 8.1, seed 1234) are written in the official file formats into a temp folder, loaded
through the public API and run on the stored inputs. The tests assert the same bounds (generators <= 1e-4,
ArcFace <= 2e-5 x max|ref|, latents <= 1e-5); this script only reports the figures.

    .venv/bin/python scripts/golden_parity.py
"""
import tempfile
from pathlib import Path

import numpy as np
import torch

import simswap_core as ss
from simswap_core.models.seeded import write_seeded_checkpoints

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "golden_public.npz"


def main() -> None:
    z = np.load(GOLDEN)
    with tempfile.TemporaryDirectory() as d, torch.inference_mode():
        files = write_seeded_checkpoints(d, seed=1234)
        for kind in ("g224", "g512"):
            g = ss.load_generator(files[kind])
            out = g(torch.from_numpy(z[f"{kind}_target_u8"]).float() / 255, torch.from_numpy(z[f"{kind}_latent"]))
            err = float((out - torch.from_numpy(z[f"{kind}_output"])).abs().max())
            print(f"{kind} generator        max|d| {err:.2e}  (bound 1e-4)")
        arc = ss.load_arcface(files["arcface"])
        ref = torch.from_numpy(z["arc_output"])
        rel = float((arc(torch.from_numpy(z["arc_input"])) - ref).abs().max() / ref.abs().max())
        print(f"arcface raw embedding max|d| / max|ref| {rel:.2e}  (bound 2e-5)")
        for kind in ("pipe224", "pipe512"):
            lat = ss.identity_latent(arc, torch.from_numpy(z[f"{kind}_id_u8"]).float() / 255)
            err = float((lat - torch.from_numpy(z[f"{kind}_latent"])).abs().max())
            print(f"{kind} identity latent max|d| {err:.2e}  (bound 1e-5)")


if __name__ == "__main__":
    main()
