"""Hostile and clumsy identity files and names (issue 8, deliverable 2).

Every file here is written by hand (safetensors / torch.save / raw bytes), never by ``save_identity``, so the
loader sees what a stranger could hand it. Loading must give a CheckpointError naming the file, what was found
and what was expected; saving refuses a bad identity before a byte is written; names stay inside the folder.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from simswap_core import Identity, load_identity, save_identity
from simswap_core.errors import CheckpointError, InputError, MissingModelError
from simswap_core.identity import MAX_IDENTITY_FILE_BYTES, check_identity, identity_file

REPO = Path(__file__).resolve().parents[1]
GOOD_META = {"format": "simswap-identity", "format_version": "1", "num_sources": "1"}


def _unit(seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(512, generator=torch.Generator().manual_seed(seed)), dim=0)


def _write(path: Path, latent: torch.Tensor | None = None, embedding: torch.Tensor | None = None,
           meta: dict | None = None, extra: dict | None = None) -> Path:
    tensors = {"latent": _unit() if latent is None else latent,
               "embedding": _unit(1) * 7 if embedding is None else embedding, **(extra or {})}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=GOOD_META | (meta or {}))
    return path


def test_a_hand_written_good_file_loads(tmp_path):
    ident = load_identity(_write(tmp_path / "ok.safetensors"))
    assert torch.equal(ident.latent, _unit()) and ident.num_sources == 1


# ------------------------------------------------------------------------------------------ bad latents
@pytest.mark.parametrize("latent,found", [
    (torch.full((512,), float("nan")), "NaN/inf"),
    (_unit().index_fill(0, torch.tensor([3]), float("inf")), "NaN/inf"),
    (torch.zeros(512), "length 0"),
    (_unit() * 1000, "length 1000"),
    (_unit() * 0.5, "length 0.5"),
    ((_unit() * 100).long(), "int64"),
    (torch.ones(512, dtype=torch.uint8), "uint8"),
    (torch.ones(512, dtype=torch.bool), "bool"),
    (torch.zeros(511), "(511,)"),
    (_unit().reshape(1, 512), "(1, 512)"),
    (torch.zeros(2, 512), "(2, 512)"),
    (torch.zeros(0), "(0,)"),
])
def test_bad_latent_files_are_refused_naming_the_file(tmp_path, latent, found):
    path = _write(tmp_path / "bad.safetensors", latent=latent)
    with pytest.raises(CheckpointError) as e:
        load_identity(path)
    msg = str(e.value)
    assert str(path) in msg and found in msg, msg
    assert "expected" in msg, msg


@pytest.mark.parametrize("embedding,found", [
    (torch.full((512,), float("nan")), "embedding has 512 NaN/inf"),
    (torch.full((512,), float("-inf")), "embedding has 512 NaN/inf"),
    (torch.arange(512), "int64"),
])
def test_bad_embeddings_are_refused(tmp_path, embedding, found):
    path = _write(tmp_path / "bad.safetensors", embedding=embedding)
    with pytest.raises(CheckpointError, match=found) as e:
        load_identity(path)
    assert str(path) in str(e.value)


# ------------------------------------------------------------------------------------------ bad metadata, keys
@pytest.mark.parametrize("meta,found", [
    ({"num_sources": "abc"}, "num_sources is 'abc'"),
    ({"num_sources": "0"}, "num_sources is '0'"),
    ({"num_sources": "-3"}, "num_sources is '-3'"),
    ({"num_sources": "1" + "0" * 30}, "num_sources is '1000"),
    ({"num_sources": "1.5"}, "num_sources is '1.5'"),
    ({"format_version": "2"}, "format version '2'"),
    ({"format": "something-else"}, "format 'something-else'"),
])
def test_bad_metadata_is_refused(tmp_path, meta, found):
    path = _write(tmp_path / "meta.safetensors", meta=meta)
    with pytest.raises(CheckpointError, match=found) as e:
        load_identity(path)
    assert str(path) in str(e.value) and "expected" in str(e.value) or "reads version" in str(e.value)


def test_extra_or_missing_tensors_are_refused(tmp_path):
    path = _write(tmp_path / "extra.safetensors", extra={"payload": torch.zeros(4)})
    with pytest.raises(CheckpointError, match=r"found tensors \['embedding', 'latent', 'payload'\]"):
        load_identity(path)
    path = tmp_path / "missing.safetensors"
    save_file({"latent": _unit()}, str(path), metadata=GOOD_META)
    with pytest.raises(CheckpointError, match="exactly the tensors 'latent' and 'embedding'"):
        load_identity(path)


def test_user_metadata_is_kept_as_strings(tmp_path):
    path = _write(tmp_path / "m.safetensors", meta={"meta.source": "a.png", "unknown_key": "ignored"})
    assert load_identity(path).meta == {"source": "a.png"}


@pytest.mark.parametrize("content", [
    b"", b"\x00" * 7, b"<html><body>login</body></html>", os.urandom(2048),
    struct.pack("<Q", 1 << 40) + b"{}",                                     # header claims a terabyte
    struct.pack("<Q", 10) + b'{"a":1}xyz',                                  # header that is not a tensor table
])
def test_files_that_are_not_safetensors(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load_identity(path)
    assert str(path) in str(e.value)


def test_a_pickle_named_safetensors_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.safetensors"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"latent": Evil()}, path)
    with pytest.raises(CheckpointError, match=str(path)):
        load_identity(path)
    assert not marker.exists()


def test_oversized_identity_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fh:             # sparse: no disk used, but 1 GiB by its size
        fh.truncate(1 << 30)
    with pytest.raises(CheckpointError, match=f"{1 << 30} bytes; an identity file is a few KiB"):
        load_identity(path)


def test_oversized_file_is_refused_quickly_in_a_fresh_process(tmp_path):
    """Measured in a child process: CPU time of load_identity on a 4 GiB (sparse) file, under a 2 GiB RLIMIT_AS
    on top of what the interpreter already holds (reading it would need the whole file)."""
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fh:
        header = json.dumps({"__metadata__": GOOD_META,
                             "latent": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 1 << 32]},
                             "embedding": {"dtype": "F32", "shape": [512], "data_offsets": [0, 2048]}}).encode()
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + (1 << 32))
    code = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(REPO)!r})
        from simswap_core.identity import load_identity
        from simswap_core.errors import CheckpointError
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), hard))
        t0 = resource.getrusage(resource.RUSAGE_SELF)
        try:
            load_identity({str(path)!r})
            outcome = 'loaded'
        except CheckpointError as e:
            outcome = 'refused: ' + str(e)
        t1 = resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({{'outcome': outcome, 'cpu_s': (t1.ru_utime + t1.ru_stime) - (t0.ru_utime + t0.ru_stime)}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print("oversized identity file:", result)
    assert result["outcome"].startswith("refused") and "bytes; an identity file" in result["outcome"]
    assert result["cpu_s"] < 1.0, result


def test_missing_file_is_a_missing_model_error(tmp_path):
    with pytest.raises(MissingModelError, match="does not exist"):
        load_identity(tmp_path / "nope.safetensors")


def test_save_refuses_metadata_that_load_would_refuse(tmp_path):
    with pytest.raises(InputError, match="bytes of text"):
        save_identity(_identity(meta={"note": "x" * MAX_IDENTITY_FILE_BYTES}), tmp_path / "big.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_limit_is_generous_for_real_metadata(tmp_path):
    path = _write(tmp_path / "m.safetensors", meta={"meta.note": "x" * 10_000})
    assert path.stat().st_size < MAX_IDENTITY_FILE_BYTES
    assert load_identity(path).meta["note"] == "x" * 10_000


# ------------------------------------------------------------------------------------------ saving
def _identity(**kw) -> Identity:
    fields = {"latent": _unit(), "embedding": _unit(1) * 7, "num_sources": 1, "meta": {}} | kw
    return Identity(**fields)


@pytest.mark.parametrize("bad,found", [
    (_identity(latent=torch.full((512,), float("nan"))), "NaN/inf"),
    (_identity(latent=torch.zeros(512)), "length 0"),
    (_identity(latent=_unit() * 1000), "length 1000"),
    (_identity(latent=torch.ones(512, dtype=torch.int64)), "int64"),
    (_identity(embedding=torch.full((512,), float("inf"))), "embedding has 512"),
    (_identity(num_sources="abc"), "num_sources must be an integer"),
    (_identity(num_sources=0), "num_sources must be an integer"),
    (_identity(num_sources=True), "num_sources must be an integer"),
    (_identity(meta={"k": 3}), "meta must be a dict of strings"),
    (_identity(meta="x"), "meta must be a dict of strings"),
    ("not an identity", "expected an Identity"),
])
def test_save_refuses_bad_identities_and_writes_nothing(tmp_path, bad, found):
    path = tmp_path / "x.safetensors"
    with pytest.raises(InputError, match=found) as e:
        save_identity(bad, path)
    assert str(path) in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_save_into_a_folder_that_is_a_file(tmp_path):
    blocker = tmp_path / "identities"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match=f"identity folder {blocker} is not a folder"):
        save_identity(_identity(), blocker / "me.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        save_identity(_identity(), tmp_path / "missing" / "me.safetensors")
    assert blocker.read_text() == "not a folder"


def test_save_never_replaces_silently(tmp_path):
    path = save_identity(_identity(), tmp_path / "me.safetensors")
    before = path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        save_identity(_identity(latent=_unit(5)), path)
    assert path.read_bytes() == before
    save_identity(_identity(latent=_unit(5)), path, overwrite=True)
    assert torch.equal(load_identity(path).latent, _unit(5))


def test_save_into_a_read_only_folder_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(InputError, match=f"cannot write into {ro}"):
            save_identity(_identity(), ro / "me.safetensors")
    finally:
        ro.chmod(0o755)


def test_check_identity_accepts_row_latents_and_refuses_others():
    check_identity(_identity(latent=_unit().reshape(1, 512)))
    check_identity(_identity(latent=_unit().half()))
    with pytest.raises(InputError, match=r"latent is torch.float32 \(512, 1\); expected a float \[512\] tensor"):
        check_identity(_identity(latent=_unit().reshape(512, 1)))


# ------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("name", [
    "../x", "../x.safetensors", "a/../../x", "sub/../../x", "/etc/passwd", "x\x00y", "", "   ", ".hidden",
    "..", ".", "a\\..\\x", "C:x", "a//b", "a/", "x\n", "sub/.x", "a" * 300,
])
def test_identity_names_are_confined(tmp_path, name):
    with pytest.raises(InputError, match="identity name"):
        identity_file(tmp_path, name)


@pytest.mark.parametrize("name,rel", [
    ("anna", "anna.safetensors"), ("anna.safetensors", "anna.safetensors"), ("team/anna", "team/anna.safetensors"),
    ("Anna Smith-2", "Anna Smith-2.safetensors"), ("a.b", "a.b.safetensors"),
])
def test_plain_names_resolve_inside(tmp_path, name, rel):
    assert identity_file(tmp_path, name) == tmp_path / rel


def test_symlinks_leading_out_are_refused(tmp_path):
    folder = tmp_path / "identities"
    folder.mkdir()
    outside = _write(tmp_path / "secret.safetensors")
    (folder / "link.safetensors").symlink_to(outside)
    (folder / "sub").symlink_to(tmp_path)
    for name in ("link", "link.safetensors", "sub/secret"):
        with pytest.raises(InputError, match="outside the identities folder"):
            identity_file(folder, name)
    inside = _write(folder / "real.safetensors")
    (folder / "alias.safetensors").symlink_to(inside)
    assert identity_file(folder, "alias") == folder / "alias.safetensors"



def test_combine_refuses_non_finite_or_integer_sources():
    from simswap_core import combine_identities

    lat = torch.stack([_unit(0), _unit(1)])
    emb = lat * 5
    bad = lat.clone()
    bad[1, 7] = float("nan")
    with pytest.raises(InputError, match=r"source\(s\) \[1\] contain NaN/inf"):
        combine_identities(bad, emb)
    with pytest.raises(InputError, match="must be float tensors"):
        combine_identities(lat.long(), emb)
