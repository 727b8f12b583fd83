"""Shared pytest fixtures.

Everything reads reference data from tests/fixtures/ (never from outside the repo). Seeded weights are RANDOM
(simswap_core.models.seeded), regenerated once per session into a temporary folder in the official file formats.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

# The shared session fixtures (seeded weights, swappers, photos) are registered ONCE here, so every module uses the
# same instances; importing them into a test module would make a private copy rebuilt for that module.
pytest_plugins = ["pipeline_fixtures"]

FIXTURES = Path(__file__).parent / "fixtures"
BENCH = Path(__file__).resolve().parents[1] / "bench"
if str(BENCH) not in sys.path:   # bench/pipeline_reference.py: the per-face reference the tests compare with
    sys.path.append(str(BENCH))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures."""
    return FIXTURES


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    """Arrays of tests/fixtures/golden_public.npz (official outputs for seed-1234 weights)."""
    with np.load(FIXTURES / "golden_public.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def official_keys() -> dict[str, list]:
    """official_keys.json merged with official_keys_variants.json: name -> [[key, shape, dtype], ...]."""
    keys = json.loads((FIXTURES / "official_keys.json").read_text())
    keys.update(json.loads((FIXTURES / "official_keys_variants.json").read_text()))
    return keys


@pytest.fixture(scope="session")
def seeded_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Official-format seeded checkpoint files (seed 1234): {"g224": latest_net_G.pth, "g512": 550000_net_G.pth,
    "arcface": arcface_r101se.pth (state dict)}. Random weights, not a model. Do not modify the files."""
    from simswap_core.models.seeded import write_seeded_checkpoints

    return write_seeded_checkpoints(tmp_path_factory.mktemp("seeded_official"), seed=1234)
