"""Synthetic-media labels (simswap_core.provenance): the label survives our writers for PNG / JPEG / WebP / TIFF /
16-bit PNG / GIF / APNG / animated WebP / MP4 / MOV / MKV / WebM, and is read back by ``simswap inspect`` and by
independent readers (Pillow's metadata + ElementTree for XMP, PyAV for container tags); a C2PA manifest signed with a
test certificate chain made here with ``cryptography`` verifies with c2pa-python (and a changed pixel breaks it);
``simswap swap`` labels its outputs with the models' sha256 by default and ``--no-label`` turns it off with the
legal-responsibility warning; the switch (set_labelling / SIMSWAP_LABEL=0) writes nothing.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from provenance_fixtures import fresh_labelling, make_test_signer  # noqa: F401  (autouse fixture)

from pipeline_fixtures import astronaut_small, astronaut_uint8
from simswap_core import provenance
from simswap_core.cli import main
from simswap_core.errors import DependencyError, InputError
from simswap_core.io.animation import write_animation
from simswap_core.io.images import read_image, write_image
from simswap_core.io.video import VideoWriter
from simswap_core.provenance import IPTC_COMPOSITE, make_label, read_provenance

IPTC_NS = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"


@pytest.fixture
def label(tmp_path) -> provenance.ProvenanceLabel:
    model = tmp_path / "simswap_224.pth"
    model.write_bytes(b"seeded model bytes " * 100)
    return make_label(generator=model)


def independent_source_type(xmp: bytes | str) -> str | None:
    """The IPTC DigitalSourceType of an XMP packet, parsed with ElementTree only (not our parser)."""
    text = xmp.decode("utf-8") if isinstance(xmp, bytes) else xmp
    body = text[text.index("<x:xmpmeta"):text.index("</x:xmpmeta>") + len("</x:xmpmeta>")]
    node = ET.fromstring(body).find(f".//{{{IPTC_NS}}}DigitalSourceType")
    return None if node is None else node.text


def _image() -> torch.Tensor:
    return torch.from_numpy(astronaut_small(64).copy()).permute(2, 0, 1)[None].float() / 255.0


# ------------------------------------------------------------------------------------------- the label

def test_label_says_composite_face_replaced_with_model_hashes(label, tmp_path):
    assert label.digital_source_type == IPTC_COMPOSITE
    assert label.action == "face replaced" and label.generator == "ComfyUI-SimSwap" and label.version
    (model,) = label.models
    assert model.role == "generator" and model.name == "simswap_224.pth"
    assert model.sha256 == hashlib.sha256((tmp_path / "simswap_224.pth").read_bytes()).hexdigest()
    dt.datetime.fromisoformat(label.created)                  # an ISO timestamp
    assert label.text().isascii() and "AI-generated" in label.text() and "face replaced" in label.text()
    # never the source person's identity: only what make_label was given (models), nothing else
    assert set(label.as_dict()) == {"digital_source_type", "generator", "version", "action", "created", "models"}
    assert provenance.parse_xmp(provenance.to_xmp(label)) == label
    with pytest.raises(InputError, match="arcface"):
        make_label(arcface=tmp_path / "missing.pth")


def test_source_date_epoch_fixes_the_time(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert make_label().created == "2023-11-14T22:13:20+00:00"


# ------------------------------------------------------------------------------------------- images

@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".tif"])
def test_still_image_round_trip(ext, label, tmp_path, capsys):
    image = _image()
    out = write_image(tmp_path / f"out{ext}", image, label=label)
    plain = write_image(tmp_path / f"plain{ext}", image)
    # independent reader: Pillow's own metadata, XMP parsed with ElementTree, EXIF ImageDescription
    with Image.open(out) as im:
        assert independent_source_type(im.info["xmp"]) == IPTC_COMPOSITE
        assert "AI-generated" in im.getexif()[0x010E] and im.getexif()[0x0131].startswith("ComfyUI-SimSwap")
        if ext == ".png":
            assert "AI-generated" in im.info["Description"]
    with Image.open(plain) as im:
        assert "xmp" not in im.info and 0x010E not in im.getexif()      # no label unless asked
    # our reader and `simswap inspect`
    report = read_provenance(out)
    assert report.label == label and any(c.startswith("XMP") for c in report.carriers)
    assert not read_provenance(plain).labelled
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert IPTC_COMPOSITE in text and "face replaced" in text and label.models[0].sha256 in text
    assert main(["inspect", str(plain)]) == 1 and "no synthetic-media label" in capsys.readouterr().out
    if ext in (".png", ".tif"):          # lossless: the label changes no pixel
        assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(plain)))


def test_sixteen_bit_png_keeps_its_samples(label, tmp_path):
    image = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    out = write_image(tmp_path / "deep.png", image, bit_depth=16, label=label)
    plain = write_image(tmp_path / "plain.png", image, bit_depth=16)
    back = read_image(out)
    assert back.bit_depth == 16 and torch.equal(back.image, read_image(plain).image)
    with Image.open(out) as im:
        assert independent_source_type(im.info["xmp"]) == IPTC_COMPOSITE
    assert read_provenance(out).label == label
    with pytest.raises(InputError, match="8-bit .png"):        # extra text chunks: 8-bit PNG only, never dropped
        write_image(tmp_path / "deep2.png", image, bit_depth=16, label=label, png_text={"workflow": "{}"})


def test_bmp_cannot_carry_a_label_and_says_so(label, tmp_path):
    with pytest.warns(UserWarning, match="cannot carry the synthetic-media label"):
        write_image(tmp_path / "out.bmp", _image(), label=label)
    assert not read_provenance(tmp_path / "out.bmp").labelled


@pytest.mark.parametrize("ext", [".gif", ".webp", ".png"])
def test_animation_round_trip(ext, label, tmp_path):
    frames = [astronaut_small(48), astronaut_small(48)[::-1].copy(), astronaut_small(48)[:, ::-1].copy()]
    out = write_animation(tmp_path / f"anim{ext}", frames, [80, 80, 120], label=label)
    with Image.open(out) as im:
        assert im.n_frames == 3
        xmp = im.info.get("comment") if ext == ".gif" else im.info.get("xmp")
        assert independent_source_type(xmp) == IPTC_COMPOSITE
    assert read_provenance(out).label == label


# ------------------------------------------------------------------------------------------- videos

@pytest.mark.parametrize("ext,codec", [(".mp4", "libx264"), (".mov", "libx264"), (".mkv", "libx264"),
                                       (".webm", "libvpx-vp9")])
def test_video_container_round_trip(ext, codec, label, tmp_path, capsys):
    frames = torch.rand(4, 3, 32, 48, generator=torch.Generator().manual_seed(1))
    with VideoWriter(tmp_path / f"v{ext}", 25, 48, 32, codec=codec, label=label) as w:
        w.write(frames)
    with av.open(str(tmp_path / f"v{ext}")) as c:             # independent reader: PyAV's container tags
        tags = {k.lower(): v for k, v in c.metadata.items()}
        assert sum(1 for _ in c.decode(video=0)) == 4
    assert "AI-generated" in tags["comment"] and independent_source_type(tags["xmp"]) == IPTC_COMPOSITE
    assert read_provenance(tmp_path / f"v{ext}").label == label
    assert main(["inspect", "--json", str(tmp_path / f"v{ext}")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["labelled"] and doc["label"]["models"][0]["sha256"] == label.models[0].sha256
    with VideoWriter(tmp_path / f"plain{ext}", 25, 48, 32, codec=codec) as w:
        w.write(frames)
    assert not read_provenance(tmp_path / f"plain{ext}").labelled


# ------------------------------------------------------------------------------------------- the switch

def test_switch_off_writes_no_label_and_warns(label, tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match="legal responsibility"):
        with provenance.labelling(False):
            write_image(tmp_path / "off.png", _image(), label=label)
            with VideoWriter(tmp_path / "off.mkv", 25, 48, 32, label=label) as w:
                w.write(torch.zeros(1, 3, 32, 48))
    assert provenance.labelling_enabled()                       # restored after the block
    assert not read_provenance(tmp_path / "off.png").labelled
    assert not read_provenance(tmp_path / "off.mkv").labelled
    monkeypatch.setenv("SIMSWAP_LABEL", "0")
    assert not provenance.labelling_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_image(tmp_path / "env.jpg", _image(), label=label)
    assert any("legal responsibility" in str(w.message) for w in caught)
    assert not read_provenance(tmp_path / "env.jpg").labelled
    monkeypatch.setenv("SIMSWAP_LABEL", "1")
    write_image(tmp_path / "on.jpg", _image(), label=label)
    assert read_provenance(tmp_path / "on.jpg").labelled


# ------------------------------------------------------------------------------------------- C2PA

def c2pa_store(path: Path, mime: str) -> dict:
    """The manifest store as c2pa-python reads it (independent of simswap_core.provenance.reader)."""
    import c2pa

    with open(path, "rb") as f, c2pa.Reader(mime, f) as reader:
        return json.loads(reader.json())


def _actions(store: dict) -> list[dict]:
    manifest = store["manifests"][store["active_manifest"]]
    return [a for x in manifest["assertions"] if x["label"].startswith("c2pa.actions") for a in x["data"]["actions"]]


@pytest.mark.parametrize("ext,mime", [(".png", "image/png"), (".jpg", "image/jpeg"), (".mp4", "video/mp4")])
def test_c2pa_signed_and_verified(ext, mime, label, tmp_path, capsys):
    cert, key = make_test_signer(tmp_path)
    with provenance.c2pa_signing(cert, key):
        if ext == ".mp4":
            with VideoWriter(tmp_path / "out.mp4", 25, 48, 32, label=label) as w:
                w.write(torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(2)))
        else:
            write_image(tmp_path / f"out{ext}", _image(), label=label)
    assert provenance.c2pa_config() is None                       # the block restored "no signer"
    out = tmp_path / f"out{ext}"
    store = c2pa_store(out, mime)
    assert store["validation_state"] in ("Valid", "Trusted"), store.get("validation_status")
    (action,) = _actions(store)
    assert action["action"] == "c2pa.created" and action["digitalSourceType"] == IPTC_COMPOSITE
    assert action["description"] == "face replaced"
    report = read_provenance(out)                                  # the XMP label is still there after signing
    assert report.label == label and report.c2pa is not None and any("C2PA" in c for c in report.carriers)
    assert main(["inspect", str(out)]) == 0
    assert "signed by SimSwap test signer" in capsys.readouterr().out
    if ext == ".png":                                              # a changed image byte breaks the signature
        raw = bytearray(out.read_bytes())
        raw[raw.index(b"IDAT") + 8] ^= 0xFF
        tampered = tmp_path / "tampered.png"
        tampered.write_bytes(bytes(raw))
        state = c2pa_store(tampered, mime)
        assert state["validation_state"] == "Invalid", state.get("validation_status")


def test_c2pa_configuration_errors(tmp_path, monkeypatch, label):
    cert, key = make_test_signer(tmp_path)
    with pytest.raises(InputError, match="expected a PEM file"):
        provenance.configure_c2pa(tmp_path / "missing.pem", key)
    monkeypatch.setenv("SIMSWAP_C2PA_CERT", str(cert))
    with pytest.raises(InputError, match="SIMSWAP_C2PA_KEY"):
        provenance.c2pa_config()
    monkeypatch.setenv("SIMSWAP_C2PA_KEY", str(key))
    assert provenance.c2pa_config().alg == "es256"                 # found from the key
    with pytest.warns(UserWarning, match="C2PA cannot sign .gif"):  # configured, format C2PA cannot sign: said
        write_animation(tmp_path / "a.gif", [astronaut_small(32)] * 2, [100, 100], label=label)
    assert read_provenance(tmp_path / "a.gif").label == label
    monkeypatch.setitem(__import__("sys").modules, "c2pa", None)     # c2pa-python missing: a clear error
    with pytest.raises(DependencyError, match="pip install"):
        write_image(tmp_path / "x.png", _image(), label=label)
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------------------- the CLI

@pytest.fixture
def cli_env(pl_models, pl_weights, pl_models_dir, monkeypatch, tmp_path):
    """The CLI with the seeded models dir; model loading memoised by path (as tests/test_cli.py)."""
    import simswap_core.models.loaders as ck

    g, a, _ = pl_models
    cache = {Path(pl_weights["g224"]).resolve(): g, Path(pl_weights["arcface"]).resolve(): a}
    for fn, real in (("load_generator", ck.load_generator), ("load_arcface", ck.load_arcface)):
        monkeypatch.setattr(ck, fn, lambda path, *ar, _real=real, **kw: cache.get(Path(path).resolve()) or
                            _real(path, *ar, **kw))
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src, tgt = tmp_path / "alice.png", tmp_path / "target.png"
    Image.fromarray(astronaut_uint8()).save(src)
    Image.fromarray(astronaut_small(256)[:, ::-1].copy()).save(tgt)
    return src, tgt


@pytest.mark.slow
def test_cli_swap_labels_by_default_and_no_label_turns_it_off(cli_env, fast_generator_path, tmp_path, capsys):
    src, tgt = cli_env
    out = tmp_path / "out.jpg"
    fast = ["--generator", str(fast_generator_path)]          # the seeded generator on 64x64 crops (quick)
    assert main(["swap", "--source", str(src), "--target", str(tgt), "--out", str(out), "-q", *fast]) == 0
    report = read_provenance(out)
    assert report.label is not None and report.label.action == "face replaced"
    records = {m.role: m for m in report.label.models}
    assert set(records) == {"generator", "arcface", "detector"}
    assert records["generator"].sha256 == hashlib.sha256(Path(fast_generator_path).read_bytes()).hexdigest()
    assert records["generator"].name == Path(fast_generator_path).name
    assert records["detector"].name.endswith(".onnx")
    assert b"alice" not in out.read_bytes()                        # nothing about the source person in the file
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert f"generator: {Path(fast_generator_path).name}" in capsys.readouterr().out
    off = tmp_path / "off.png"
    with pytest.warns(UserWarning, match="legal responsibility"):
        rc = main(["swap", "--source", str(src), "--target", str(tgt), "--out", str(off), "-q", "--no-label", *fast])
    assert rc == 0 and not read_provenance(off).labelled
    assert provenance.labelling_enabled()                          # --no-label does not outlive its run
    assert main(["inspect", str(off)]) == 1
    # C2PA flags: both files are needed, checked before any model work; with both the output is signed
    assert main(["swap", "--source", str(src), "--target", str(tgt), "--out", str(tmp_path / "c.png"),
                 "--c2pa-key", str(tmp_path / "nokey.pem")]) == 2
    assert "certificate" in capsys.readouterr().err
    cert, key = make_test_signer(tmp_path)
    signed = tmp_path / "signed.png"
    assert main(["swap", "--source", str(src), "--target", str(tgt), "--out", str(signed), "-q", *fast,
                 "--c2pa-cert", str(cert), "--c2pa-key", str(key)]) == 0
    store = c2pa_store(signed, "image/png")
    assert store["validation_state"] in ("Valid", "Trusted") and _actions(store)[0]["description"] == "face replaced"
    assert provenance.c2pa_config() is None                        # the flags do not outlive the run


def test_training_sample_grids_are_labelled(tmp_path):
    from simswap_core.train.samples import save_grid

    rows = [torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(k)) for k in range(3)]
    report = read_provenance(save_grid(tmp_path / "step_0000001.png", rows))
    assert report.label is not None and report.label.digital_source_type == IPTC_COMPOSITE
