"""simswap_core.io.images: formats, bit depths, alpha, EXIF orientation, atomic no-overwrite writes."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from pipeline_fixtures import astronaut_small
from simswap_core.errors import InputError
from simswap_core.io.images import list_images, natural_key, read_image, write_image, write_like


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _u16(t: torch.Tensor) -> np.ndarray:
    return (t[0].permute(1, 2, 0).numpy() * 65535).round().astype(np.uint16)


def test_rgb_jpeg_matches_pillow(tmp_path):
    a = astronaut_small(128)
    Image.fromarray(a).save(tmp_path / "a.jpg", quality=90)
    img = read_image(tmp_path / "a.jpg")
    assert img.image.shape == (1, 3, 128, 128) and img.image.dtype == torch.float32
    assert img.alpha is None and img.bit_depth == 8 and not img.grayscale
    np.testing.assert_array_equal(_u8(img.image), np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "PA1"])
def test_8bit_modes_round_trip(tmp_path, mode):
    a = astronaut_small(64)
    rgba = np.concatenate([a, (np.arange(64 * 64).reshape(64, 64, 1) % 256).astype(np.uint8)], 2)
    if mode == "RGBA":
        im = Image.fromarray(rgba, "RGBA")
    elif mode == "LA":
        im = Image.fromarray(rgba, "RGBA").convert("LA")
    elif mode == "L":
        im = Image.fromarray(a).convert("L")
    elif mode == "P":
        im = Image.fromarray(a).convert("P")
    else:  # palette with a transparent index
        im = Image.fromarray(a).convert("P")
        im.info["transparency"] = 0
    src = tmp_path / "in.png"
    im.save(src, transparency=0) if mode == "PA1" else im.save(src)
    img = read_image(src)
    assert img.image.shape == (1, 3, 64, 64)
    out = tmp_path / "out.png"
    write_like(out, img.image, img)
    back = Image.open(out)
    if mode == "RGBA":
        assert back.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(back), rgba)
    elif mode == "LA":
        assert back.mode == "LA" and img.grayscale
        np.testing.assert_array_equal(np.asarray(back), np.asarray(im))
    elif mode == "L":
        assert back.mode == "L" and img.grayscale
        np.testing.assert_array_equal(np.asarray(back), np.asarray(im))
    elif mode == "P":
        assert back.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(back), np.asarray(im.convert("RGB")))
    else:
        assert back.mode == "RGBA" and img.alpha is not None
        np.testing.assert_array_equal(np.asarray(back), np.asarray(Image.open(src).convert("RGBA")))


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_kept_exactly(tmp_path, ext, channels):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, size=(24, 40, 4), dtype=np.uint16)
    rgb = torch.from_numpy(a[..., :3].astype(np.float32) / 65535).permute(2, 0, 1)[None]
    if channels == 1:
        rgb = rgb[:, :1].expand(1, 3, -1, -1)
    alpha = torch.from_numpy(a[..., 3].astype(np.float32) / 65535)[None, None] if channels == 4 else None
    p = tmp_path / f"x{ext}"
    write_image(p, rgb, alpha=alpha, bit_depth=16, grayscale=channels == 1)
    img = read_image(p)
    assert img.bit_depth == 16 and img.grayscale == (channels == 1)
    want = a[..., :1] if channels == 1 else a[..., :3]
    np.testing.assert_array_equal(_u16(img.image)[..., :want.shape[2]], want)
    if channels == 4:
        np.testing.assert_array_equal(_u16(img.alpha)[..., 0], a[..., 3])
    # and a second round trip through write_like keeps the file identical in values
    q = tmp_path / f"y{ext}"
    write_like(q, img.image, img)
    again = read_image(q)
    assert again.bit_depth == 16
    assert torch.equal(again.image, img.image)


def test_16bit_gray_png_from_pillow_reads_full_precision(tmp_path):
    a = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 61).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "g.png")  # Pillow writes I;16 as a 16-bit grayscale PNG
    img = read_image(tmp_path / "g.png")
    assert img.bit_depth == 16 and img.grayscale
    np.testing.assert_array_equal(_u16(img.image)[..., 0], a)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_like_pillow(tmp_path, orientation):
    a = astronaut_small(64)[:40]  # not square, so rotations show in the shape
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    p = tmp_path / "o.png"
    im.save(p, exif=exif)
    img = read_image(p)
    np.testing.assert_array_equal(_u8(img.image), np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB")))


def test_never_overwrites_and_atomic(tmp_path):
    p = tmp_path / "out.png"
    p.write_bytes(b"precious")
    img = torch.rand(1, 3, 8, 8)
    with pytest.raises(InputError, match="already exists"):
        write_image(p, img)
    assert p.read_bytes() == b"precious"
    write_image(p, img, overwrite=True)
    assert Image.open(p).size == (8, 8)
    assert [f.name for f in tmp_path.iterdir()] == ["out.png"]  # no temporary files left behind


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="bad.png"):
        read_image(bad)
    with pytest.raises(InputError, match="extension"):
        write_image(tmp_path / "x.xyz", torch.rand(1, 3, 4, 4))
    with pytest.raises(InputError, match=r"\[3,H,W\]"):
        write_image(tmp_path / "x.png", torch.rand(1, 4, 4, 4))


def test_jpeg_drops_alpha_with_warning(tmp_path):
    with pytest.warns(UserWarning, match="alpha"):
        write_image(tmp_path / "x.jpg", torch.rand(1, 3, 8, 8), alpha=torch.ones(1, 1, 8, 8))
    assert Image.open(tmp_path / "x.jpg").mode == "RGB"


def test_natural_order(tmp_path):
    for n in ["f10.png", "f2.png", "f1.png", "F3.png", ".hidden.png", "notes.txt"]:
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["f1.png", "f2.png", "F3.png", "f10.png"]
    assert sorted(["a10", "a9", "a09b"], key=natural_key) == ["a9", "a09b", "a10"]
    assert os.path.exists(tmp_path / "notes.txt")
