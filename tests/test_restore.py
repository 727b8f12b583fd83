"""simswap_core.restore: face restoration of aligned crops with spandrel models, files read by our safe readers.

The networks are spandrel's own architecture classes with seeded random weights, written with the official key
names (GFPGAN's ``params_ema`` wrapper) into .pth / .safetensors files, then loaded through ``load_restorer``.
A tiny 2x Compact (RealESRGAN-family) upscaler carries the cheap checks; GFPGAN (86 M parameters, ~4 s per face at
512 on two CPU cores) is run on two faces once per session.
"""
from __future__ import annotations

import io
import pickle
import sys

import pytest
import torch
import torch.nn.functional as F

from simswap_core.errors import CheckpointError, DependencyError, InputError, MissingModelError

spandrel = pytest.importorskip("spandrel")

from simswap_core.restore import (  # noqa: E402
    FACE_MODEL_SIZE,
    SPANDREL_INSTALL,
    FaceRestorer,
    load_restorer,
    load_restorer_model,
    read_restorer_state,
    resize_crops,
    restore_faces,
)

GFPGAN_ARGS = dict(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                   num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)


def gfpgan_network(seed: int = 7) -> torch.nn.Module:
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    return GFPGAN(**GFPGAN_ARGS).eval()


def compact_network(seed: int = 3, scale: int = 2) -> torch.nn.Module:
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=scale, act_type="prelu").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.3)
    return net


def crops_batch(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth face-like test crops [n,3,size,size] in [0,1] (low-frequency noise, not flat)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


@pytest.fixture(scope="module")
def compact_file(tmp_path_factory) -> tuple[str, torch.nn.Module]:
    net = compact_network()
    path = tmp_path_factory.mktemp("restore") / "2x_Compact_seeded.pth"
    torch.save({"params": net.state_dict()}, path)  # BasicSR's layout of RealESRGAN compact files
    return str(path), net


@pytest.fixture(scope="module")
def gfpgan_file(tmp_path_factory) -> tuple[str, torch.nn.Module]:
    net = gfpgan_network()
    path = tmp_path_factory.mktemp("restore") / "GFPGANv1.4.pth"
    torch.save({"params_ema": net.state_dict()}, path)  # the official GFPGANv1.3/v1.4 layout
    return str(path), net


# ------------------------------------------------------------------------------------------------ reading files
def test_read_state_unwraps_official_layouts_without_torch_load(compact_file, tmp_path, monkeypatch):
    path, net = compact_file

    def forbidden(*a, **k):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", forbidden)
    state = read_restorer_state(path)
    assert set(state) == set(net.state_dict())
    for k, v in net.state_dict().items():
        assert torch.equal(state[k], v)
    # module. prefix (DataParallel) and a safetensors copy read the same
    from safetensors.torch import save_file

    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "dp.pth")
    assert set(read_restorer_state(tmp_path / "dp.pth")) == set(state)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "c.safetensors"),
              metadata={"format": "pt"})
    st = read_restorer_state(tmp_path / "c.safetensors")
    assert all(torch.equal(st[k], state[k]) for k in state)


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    pickle.dump({"params_ema": {"w": Evil()}}, buf, protocol=2)
    bad = tmp_path / "evil.pth"
    bad.write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError) as err:
        load_restorer(bad)
    assert str(bad) in str(err.value)
    assert not marker.exists()


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(MissingModelError, match="does not exist"):
        load_restorer(tmp_path / "nope.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_restorer(empty)
    onnx = tmp_path / "GPEN-BFR-512.onnx"
    onnx.write_bytes(b"\x08\x07\x12\x07pytorch" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="ONNX"):
        load_restorer(onnx)
    unknown = tmp_path / "unknown.pth"
    torch.save({"foo.weight": torch.zeros(3, 3)}, unknown)
    with pytest.raises(CheckpointError, match="spandrel does not recognise") as err:
        load_restorer(unknown)
    assert str(unknown) in str(err.value) and "GFPGAN" in str(err.value)
    text = tmp_path / "notes.pth"
    text.write_text("not a model")
    with pytest.raises(CheckpointError, match=str(text)):
        load_restorer(text)


def test_truncated_file_is_refused(compact_file, tmp_path):
    path, _ = compact_file
    data = open(path, "rb").read()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(cut)):
        load_restorer(cut)


def test_missing_spandrel_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel -> ImportError
    with pytest.raises(DependencyError) as err:
        load_restorer_model(state={"x": torch.zeros(1)})
    assert SPANDREL_INSTALL in str(err.value)


# ------------------------------------------------------------------------------------------------ running
def test_upscaler_restores_at_crop_size(compact_file):
    path, net = compact_file
    restorer = load_restorer(path, batch_size=2)
    assert restorer.arch == "Compact" and restorer.scale == 2 and not restorer.is_face_model
    assert restorer.native_size is None
    crops = crops_batch(3, 64)
    out = restorer(crops)
    assert out.shape == crops.shape and out.dtype == crops.dtype and out.device == crops.device
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    # the documented path: the crop at its size through the 2x network, shrunk back with antialiased bicubic
    with torch.no_grad():
        ref = resize_crops(net(crops).clamp(0, 1), 64).clamp(0, 1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert float((out - crops).abs().mean()) > 1e-3  # the network changed something


def test_batched_equals_one_by_one(compact_file):
    restorer = load_restorer(compact_file[0], batch_size=4)
    crops = crops_batch(5, 48, seed=2)
    together = restorer(crops)
    alone = torch.cat([restorer(crops[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    restorer.batch_size = 2  # chunks of 2, 2, 1
    torch.testing.assert_close(restorer(crops), together, atol=1e-5, rtol=0)


def test_visibility_blend(compact_file):
    restorer = load_restorer(compact_file[0])
    crops = crops_batch(2, 32, seed=4)
    assert restore_faces(crops, restorer, 0.0) is crops
    assert restore_faces(crops, None, 1.0) is crops
    full = restorer(crops)
    torch.testing.assert_close(restore_faces(crops, restorer, 1.0), full, atol=0, rtol=0)
    half = restore_faces(crops, restorer, 0.25)
    torch.testing.assert_close(half, crops + 0.25 * (full - crops), atol=1e-6, rtol=0)
    for bad in (-0.1, 1.5, float("nan"), "0.5"):
        with pytest.raises(InputError, match="visibility"):
            restore_faces(crops, restorer, bad)  # type: ignore[arg-type]


def test_bad_crops_are_refused(compact_file):
    restorer = load_restorer(compact_file[0])
    with pytest.raises(InputError, match="crops"):
        restorer(torch.rand(2, 3, 32, 32) * 255)
    with pytest.raises(InputError, match="crops"):
        restorer(torch.rand(2, 4, 32, 32))
    with pytest.raises(InputError, match="square"):
        restorer(torch.rand(1, 3, 32, 40))
    assert restorer(torch.zeros(0, 3, 32, 32)).shape == (0, 3, 32, 32)
    with pytest.raises(InputError, match="ImageModelDescriptor"):
        FaceRestorer(torch.nn.Conv2d(3, 3, 1))


@pytest.mark.slow  # ~15 s alone on two CPU cores (three GFPGAN passes at 512), more when the cores are shared
def test_gfpgan_is_recognised_and_runs_in_its_convention(gfpgan_file):
    """GFPGAN: spandrel's detection on our safely read state dict, 512 native size, [-1,1] network convention,
    stored noise (deterministic), batched equals one-by-one. Two faces of a 224 swap."""
    path, net = gfpgan_file
    restorer = load_restorer(path, batch_size=2)
    assert restorer.model.architecture.id == "GFPGAN" and restorer.model.purpose == "FaceSR"
    assert restorer.is_face_model and restorer.native_size == FACE_MODEL_SIZE == 512
    crops = crops_batch(2, 224, seed=5)
    out = restorer(crops)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert float((out - crops).abs().mean()) > 1e-3
    # reference for face 1 alone, written out: 224 -> 512 bicubic, x*2-1, network with its stored noise,
    # (y+1)/2, 512 -> 224 antialiased bicubic
    x = F.interpolate(crops[1:], size=(512, 512), mode="bicubic", align_corners=False).clamp(0, 1)
    with torch.inference_mode():
        y = (net(x * 2 - 1, return_rgb=False, randomize_noise=False)[0] + 1) / 2
    ref = F.interpolate(y, size=(224, 224), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    torch.testing.assert_close(out[1:], ref, atol=2e-4, rtol=0)
    # visibility: the blend of that output with the input
    half = torch.lerp(crops, out, 0.5)
    assert float((half - crops).abs().max()) > 0 and float((half - out).abs().max()) > 0


def test_gfpgan_safetensors_copy_loads(gfpgan_file, tmp_path):
    from safetensors.torch import save_file

    _, net = gfpgan_file
    st = tmp_path / "GFPGANv1.4.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    assert load_restorer_model(st).architecture.id == "GFPGAN"


def test_library_import_does_not_need_spandrel_or_torchvision():
    import subprocess

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('spandrel', 'torchvision'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import simswap_core, simswap_core.restore as r\n"
            "try:\n"
            "    r.load_restorer_model(state={})\n"
            "except r.DependencyError as e:\n"
            "    print('DEP', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "DEP" in out.stdout and SPANDREL_INSTALL in out.stdout
