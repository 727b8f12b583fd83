"""Checkpoint loading: the official pickled ArcFace (both generations) without its classes, state-dict layouts, and
bad files (missing, empty, foreign, truncated, corrupted, non-finite, wrong kind): every error names the file, what
was found and what was expected. Weights are seeded RANDOM weights written at test time in the official formats."""
from __future__ import annotations

import io
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from checkpoint_fixtures import (  # noqa: F401
    _arc_raw_error,
    _assert_named,
    _save,
    _small_state,
    _small_state_once,
    _StandIn,
    _standin_resnet,
    arc_state,
    arcface_reference,
    g224_file,
    g224_legacy,
    official_arcface_files,
    small_file,
    small_model,
    small_safetensors,
    small_state,
)
from simswap_core import convert_checkpoint, inspect_checkpoint, load_arcface, load_generator
from simswap_core.errors import CheckpointError, MissingModelError, UnsafeCheckpointError
from simswap_core.models.checkpoints import read_checkpoint
from simswap_core.models.pickle_containers import restricted_load
from simswap_core.models.seeded import seeded_state_dict

torch.set_num_threads(2)
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")


# -------------------------------------------------------------------------- 1. official pickled ArcFace
@pytest.mark.parametrize("name", ["2023_zip_p2", "2023_zip_p4", "2023_legacy_p2"])
def test_official_2023_pickled_module_loads_without_its_classes(name, official_arcface_files, golden, arc_state,
                                                                monkeypatch):
    # no folder called `models` importable (the ComfyUI tree that other test modules put on sys.path has one)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (Path(p or ".") / "models").is_dir()])
    assert "models" not in sys.modules and not any(n.startswith("models.") for n in sys.modules)
    path = official_arcface_files[name]
    with pytest.raises(Exception):  # the file really needs the (absent) classes: plain torch.load cannot read it
        torch.load(path, map_location="cpu", weights_only=False)
    assert "models" not in sys.modules
    model = load_arcface(path)
    assert "models" not in sys.modules and not any(n.startswith("models.") for n in sys.modules)
    assert type(model).__module__ == "simswap_core.networks.arcface"
    assert not model.training and model.arch == "ir_se_101" and len(model.layer3) == 23
    assert all(v.dtype == torch.float32 for v in model.state_dict().values() if v.is_floating_point())
    sd = model.state_dict()
    assert list(sd) == list(arc_state) and all(torch.equal(sd[k], v) for k, v in arc_state.items())
    err, out = _arc_raw_error(model, golden)
    assert err <= 2e-5
    l2 = torch.nn.functional.normalize(out, dim=1)
    assert (l2 - torch.from_numpy(golden["arc_output_l2"])).abs().max().item() <= 1e-5
    info = read_checkpoint(path)
    assert info.kind == "arcface" and info.source == "pickled module models.arcface_models.ResNet"


def test_latents_from_the_official_pickled_file(arcface_reference, golden):
    from simswap_core import identity_latent

    for name in ("pipe224", "pipe512"):
        crops = torch.from_numpy(golden[f"{name}_id_u8"]).float() / 255
        latent = identity_latent(arcface_reference, crops)
        assert (latent - torch.from_numpy(golden[f"{name}_latent"])).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["2021_legacy_p2", "2021_zip_default"])
def test_official_2021_dict_with_dataparallel_and_optimizer_loads(name, official_arcface_files, golden, arc_state):
    path = official_arcface_files[name]
    assert "models" not in sys.modules
    model = load_arcface(path)
    assert "models" not in sys.modules
    assert not model.training and model.arch == "ir_se_101"
    # the weights are those of the pickled model (the optimizer step moved fc.weight and bn3.bias)
    expected = official_arcface_files["_2021_state"]
    sd = model.state_dict()
    assert list(sd) == list(expected) and all(torch.equal(sd[k], v) for k, v in expected.items())
    info = read_checkpoint(path)
    assert info.source == "pickled module models.ResNet['model']"
    # the step changed two tensors; with the seeded values restored the output is the golden one
    model.fc.weight.data.copy_(arc_state["fc.weight"])
    model.bn3.bias.data.copy_(arc_state["bn3.bias"])
    err, _ = _arc_raw_error(model, golden)
    assert err <= 2e-5


def test_2021_optimizer_and_margin_are_inert_records(official_arcface_files):
    obj = restricted_load(official_arcface_files["2021_legacy_p2"])
    assert set(obj) == {"epoch", "epochs_since_improvement", "model", "metric_fc", "optimizer"}
    assert obj["epoch"] == 41
    opt = obj["optimizer"]
    assert opt.pickle_global == "torch.optim.sgd.SGD"
    assert type(opt).__module__ == "simswap_core.models.safe_pickle" and not hasattr(opt, "step")
    state = opt.pickle_state
    assert state["param_groups"][0]["momentum"] == 0.9 and state["param_groups"][1]["nesterov"] is True
    assert len(state["state"]) == 3 and all("momentum_buffer" in v for v in state["state"].values())
    assert obj["metric_fc"].pickle_global == "models.ArcMarginModel"
    assert obj["metric_fc"].pickle_state["_parameters"]["weight"].shape == (10, 512)
    dp = obj["model"]
    assert dp.pickle_global == "torch.nn.parallel.data_parallel.DataParallel"
    assert dp.pickle_state["src_device_obj"].pickle_args == ("cuda", 0)  # a record, no torch.device was made


def test_no_se_official_pickled_module(tmp_path, official_keys):
    """No-SE r101, pickled as a module by a torch old enough to have no num_batches_tracked buffers."""
    state = seeded_state_dict("arcface_no_se", seed=1234)
    assert [k for k in state] == [k for k, _, _ in official_keys["arcface_alt_no_se"]]
    path = tmp_path / "arcface_checkpoint.tar"
    with _StandIn(tmp_path / "pkg", "2023") as mod:
        model = _standin_resnet(mod, state, use_se=False)
        assert not hasattr(model.layer1[0], "se")
        for m in model.modules():
            m._buffers.pop("num_batches_tracked", None)
        assert not any(k.endswith("num_batches_tracked") for k in model.state_dict())
        torch.save(model, path, _use_new_zipfile_serialization=False)
        del model
    assert "models" not in sys.modules
    loaded = load_arcface(path)
    assert "models" not in sys.modules
    assert loaded.arch == "ir_101" and loaded.layer1[0].se is None and len(loaded.layer3) == 23
    assert not any(".se." in k for k in loaded.state_dict())
    sd = loaded.state_dict()
    assert list(sd) == [k for k, _, _ in official_keys["arcface_alt_no_se"]]
    assert all(torch.equal(sd[k], v) for k, v in state.items())
    assert inspect_checkpoint(path)["arch"] == "ir_101"
    assert read_checkpoint(path).source == "pickled module models.arcface_models.ResNet"


@pytest.mark.parametrize("zip_format", [True, False])
def test_cuda_saved_storages_load_on_cpu(tmp_path, zip_format):
    """The 2021 file was saved from a GPU: its storage records say 'cuda:0'; the allow-list reader ignores that."""
    w = torch.arange(6.0).view(2, 3)
    lin = torch.nn.Linear(2, 2)
    buf = io.BytesIO()
    torch.save({"w": w, "m": lin}, buf, _use_new_zipfile_serialization=zip_format)
    raw, cpu, cuda = buf.getvalue(), b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"
    path = tmp_path / "gpu_saved.pth"
    if zip_format:
        with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith("/data.pkl"):
                    assert data.count(cpu) == 1  # memoised: every storage refers to this one string
                    data = data.replace(cpu, cuda)
                dst.writestr(info.filename, data)
    else:
        assert raw.count(cpu) == 1
        path.write_bytes(raw.replace(cpu, cuda))
    obj = restricted_load(path)
    assert obj["w"].device.type == "cpu" and torch.equal(obj["w"], w)
    weight = obj["m"].pickle_state["_parameters"]["weight"]
    assert weight.device.type == "cpu" and torch.equal(weight, lin.weight.detach())


def test_missing_file(tmp_path):
    for loader in (load_generator, load_arcface, inspect_checkpoint):
        with pytest.raises(MissingModelError, match=str(tmp_path / "nope.pth")):
            loader(tmp_path / "nope.pth")
    with pytest.raises(MissingModelError):
        convert_checkpoint(tmp_path / "nope.pth", tmp_path / "out.safetensors")
    with pytest.raises(MissingModelError):
        load_generator(tmp_path)  # a folder
    assert not (tmp_path / "out.safetensors").exists()


def test_empty_random_text_and_foreign_files(tmp_path):
    rng = np.random.default_rng(0)
    cases = {
        "empty.pth": (b"", "empty"),
        "random.pth": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "neither"),
        "notes.pth": (b"this is a text file, not weights\n" * 40, "neither"),
        "html.safetensors": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "neither"),
        "plain_pickle.pth": (pickle.dumps({"a": 1}, protocol=2), "not a PyTorch checkpoint"),
    }
    for name, (data, found) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for loader in (load_generator, load_arcface):
            with pytest.raises(CheckpointError) as info:
                loader(path)
            assert not isinstance(info.value, UnsafeCheckpointError)
            _assert_named(info.value, path, found)
    # a zip that is not a torch checkpoint
    path = tmp_path / "weights.zip.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    _assert_named(info.value, path, "data.pkl")
    # a TorchScript archive
    path = tmp_path / "scripted.pth"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before torch.load would consider dispatching it to torch.jit
        with pytest.raises(CheckpointError) as info:
            load_arcface(path)
    _assert_named(info.value, path, "TorchScript")
    # a tar archive (pre-2018 torch format)
    import tarfile

    path = tmp_path / "old.tar"
    with tarfile.open(path, "w") as tf:
        (tmp_path / "x").write_bytes(b"123")
        tf.add(tmp_path / "x", arcname="x")
    with pytest.raises(CheckpointError) as info:
        load_arcface(path)
    _assert_named(info.value, path, "tar")


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_truncated_pth(fmt, tmp_path, g224_file, g224_legacy):
    src = (g224_file if fmt == "zip" else g224_legacy).read_bytes()
    n = len(src)
    for cut in (1, 16, 200, 5000, n // 3, n - 4096, n - 23, n - 1):
        path = tmp_path / f"cut_{cut}.pth"
        path.write_bytes(src[:cut])
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        assert not isinstance(info.value, UnsafeCheckpointError)
        found = "truncated" if cut >= 16 else ""
        _assert_named(info.value, path, found)
        path.unlink()


def test_corrupted_tensor_bytes_in_zip_are_detected(tmp_path, small_file):
    """A flipped byte inside a tensor record: the zip CRC no longer matches; silently wrong weights are not OK."""
    data = bytearray(small_file.read_bytes())
    with zipfile.ZipFile(small_file) as zf:
        info = next(i for i in zf.infolist() if "/data/" in i.filename and i.file_size > 100_000)
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[offset + info.file_size // 2] ^= 0x40
    path = tmp_path / "bitflip.pth"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        load_generator(path)
    _assert_named(exc.value, path, "corrupt")
    # the same through the allow-list reader (used for the pickled ArcFace), on a small file
    small = tmp_path / "small.pth"
    torch.save({"w": torch.arange(50_000, dtype=torch.float32)}, small)
    data = bytearray(small.read_bytes())
    with zipfile.ZipFile(small) as zf:
        info = next(i for i in zf.infolist() if "/data/" in i.filename)
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[offset + 1000] ^= 0x01
    small.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        restricted_load(small)
    _assert_named(exc.value, small, "corrupt")


@pytest.mark.parametrize("key,index,value", [("down1.0.weight", (0, 0, 0, 0), float("nan")),
                                             ("last_layer.1.bias", (2,), float("inf")),
                                             ("BottleNeck.0.style2.linear.weight", (1023, 511), -float("inf"))])
def test_non_finite_weights_are_refused(tmp_path, key, index, value):
    state = _small_state()
    state[key][index] = value
    path = tmp_path / "nan_G.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=f"NaN or infinity in tensor {key}") as info:
        load_generator(path)
    _assert_named(info.value, path, "found NaN")


def test_wrong_kind(seeded_checkpoints, official_arcface_files, small_safetensors):
    for path, found in ((seeded_checkpoints["g224"], "found a SimSwap generator"),
                        (seeded_checkpoints["g512"], "found a SimSwap generator"),
                        (small_safetensors, "found a generator checkpoint (its metadata says kind='generator')")):
        with pytest.raises(CheckpointError) as info:
            load_arcface(path)
        _assert_named(info.value, path, found)
        assert "ArcFace" in str(info.value).split("expected")[1]
    for path in (seeded_checkpoints["arcface"], official_arcface_files["2023_zip_p2"]):
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        _assert_named(info.value, path, "found an ArcFace")
        assert "generator" in str(info.value).split("expected")[1]


def test_bad_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(3), "bar": torch.ones(2)}, str(path))
    for loader, wanted in ((load_generator, "generator"), (load_arcface, "ArcFace")):
        with pytest.raises(CheckpointError) as info:
            loader(path)
        _assert_named(info.value, path, "'foo.weight'")
        assert wanted in str(info.value)
    # generator keys with one missing and one of the wrong shape
    state = _small_state()
    del state["BottleNeck.0.conv2.1.weight"]
    state["up1.1.weight"] = torch.zeros(3)
    path = tmp_path / "incomplete.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    _assert_named(info.value, path, "missing 1 keys ['BottleNeck.0.conv2.1.weight']")
    assert "up1.1.weight (3,)" in str(info.value)
    # truncated at several points (header, data)
    src = convert_checkpoint(_save(tmp_path / "s.pth", _small_state()), tmp_path / "s.safetensors").read_bytes()
    for cut in (4, 9, 100, len(src) // 2, len(src) - 1):
        path = tmp_path / f"cut_{cut}.safetensors"
        path.write_bytes(src[:cut])
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        _assert_named(info.value, path, "")
        path.unlink()
    # metadata that contradicts the weights
    path = tmp_path / "liar.safetensors"
    save_file(_small_state(), str(path), metadata={"format": "simswap", "kind": "arcface"})
    with pytest.raises(CheckpointError, match="kind='arcface'") as info:
        load_generator(path)
    _assert_named(info.value, path, "found an arcface checkpoint (its metadata says")
    path = tmp_path / "badvariant.safetensors"
    save_file(_small_state(), str(path), metadata={"kind": "generator", "variant": "weird"})
    with pytest.raises(CheckpointError, match="'weird'"):
        load_generator(path)
