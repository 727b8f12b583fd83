"""Identity: combining sources, safe saving (atomic, no overwrite) and loading."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from simswap_core import Identity, combine_identities, load_identity, save_identity
from simswap_core.errors import CheckpointError, InputError


def _sources(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, 512, generator=g) * 3
    return F.normalize(emb, dim=1), emb


def test_mean_median_weighted():
    lat, emb = _sources()
    mean = combine_identities(lat, emb)
    assert mean.num_sources == 3 and mean.meta["combine"] == "mean"
    assert torch.allclose(mean.latent, F.normalize(lat.mean(0), dim=0), atol=1e-6)
    assert torch.allclose(mean.embedding, emb.mean(0), atol=1e-6)
    assert mean.latent.norm().item() == pytest.approx(1.0, abs=1e-5)
    med = combine_identities(lat, emb, method="median")
    assert torch.allclose(med.embedding, emb.median(0).values)
    w = combine_identities(lat, emb, method="weighted", weights=torch.tensor([0.0, 0.0, 2.0]))
    assert torch.allclose(w.latent, lat[2], atol=1e-6) and torch.allclose(w.embedding, emb[2], atol=1e-6)
    one = combine_identities(lat[:1], emb[:1])
    assert torch.allclose(one.latent, lat[0], atol=1e-6)


def test_combine_errors():
    lat, emb = _sources()
    with pytest.raises(InputError, match="method"):
        combine_identities(lat, emb, method="max")
    with pytest.raises(InputError, match="weights"):
        combine_identities(lat, emb, method="weighted")
    with pytest.raises(InputError, match="weights"):
        combine_identities(lat, emb, method="weighted", weights=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(InputError, match="shape"):
        combine_identities(lat, emb[:2])
    with pytest.raises(InputError, match="N >= 1"):
        combine_identities(lat[:0], emb[:0])
    with pytest.raises(InputError, match="zero length"):
        combine_identities(torch.stack([lat[0], -lat[0]]), torch.stack([emb[0], -emb[0]]))


def test_save_load_roundtrip_and_no_overwrite(tmp_path):
    lat, emb = _sources()
    ident = combine_identities(lat, emb)
    ident.meta["source"] = "astronaut.png"
    path = save_identity(ident, tmp_path / "me.safetensors")
    back = load_identity(path)
    assert torch.equal(back.latent, ident.latent) and torch.equal(back.embedding, ident.embedding)
    assert back.num_sources == 3 and back.meta == {"combine": "mean", "source": "astronaut.png"}
    before = path.read_bytes()
    other = Identity(lat[1], emb[1], 1, {})
    with pytest.raises(InputError, match="overwrite"):
        save_identity(other, path)
    assert path.read_bytes() == before
    save_identity(other, path, overwrite=True)
    assert torch.equal(load_identity(path).latent, lat[1])
    assert [p.name for p in tmp_path.iterdir()] == ["me.safetensors"]  # no temp files left behind


def test_bad_identity_files(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not a tensor file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_identity(bad)
    from safetensors.torch import save_file

    save_file({"weights": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="identity file"):
        load_identity(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        load_identity(tmp_path / "missing.safetensors")
    with pytest.raises(InputError, match=".safetensors"):
        save_identity(combine_identities(*_sources()), tmp_path / "x.pt")
    with pytest.raises(InputError, match=r"\[512\]"):
        save_identity(Identity(torch.zeros(3), torch.zeros(3)), tmp_path / "y.safetensors")
    assert not os.path.exists(tmp_path / "y.safetensors")
