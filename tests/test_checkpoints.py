"""Checkpoint loading and conversion: official pickled ArcFace (both generations), malicious pickles, bad files,
.safetensors conversion with metadata.

All weights are the seeded RANDOM weights of spec section 8.1, written at test time into temporary files in the
official formats. The official pickled ArcFace is rebuilt here with stand-in classes under the official class paths
(``models.arcface_models.*`` for the 2023 file, ``models.*`` for the 2021 one); those stand-ins are removed from
``sys.modules`` / ``sys.path`` before loading, so a loader that imported them would fail.
"""
from __future__ import annotations

import functools
import importlib
import io
import os
import pickle
import struct
import sys
import textwrap
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from simswap_core import convert_checkpoint, inspect_checkpoint, load_arcface, load_generator
from simswap_core.errors import CheckpointError, InputError, MissingModelError, UnsafeCheckpointError
from simswap_core.models.checkpoints import read_checkpoint
from simswap_core.models.pickle_containers import restricted_load
from simswap_core.models.seeded import seeded_state_dict

torch.set_num_threads(2)
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")

# ------------------------------------------------------------------------------------------ stand-in classes
# A copy of the structure of SimSwap's models/arcface_models.py (foamliu InsightFace-v2): enough to hold the
# official r101(-SE) keys. Forward code is irrelevant (a pickle never stores it).
_STANDIN_CLASSES = textwrap.dedent('''
    import math
    import torch
    from torch import nn
    from torch.nn import Parameter

    def conv3x3(in_planes, out_planes, stride=1):
        return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)

    class SEBlock(nn.Module):
        def __init__(self, channel, reduction=16):
            super(SEBlock, self).__init__()
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Sequential(nn.Linear(channel, channel // reduction), nn.PReLU(),
                                    nn.Linear(channel // reduction, channel), nn.Sigmoid())

    class IRBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None, use_se=True):
            super(IRBlock, self).__init__()
            self.bn0 = nn.BatchNorm2d(inplanes)
            self.conv1 = conv3x3(inplanes, inplanes)
            self.bn1 = nn.BatchNorm2d(inplanes)
            self.prelu = nn.PReLU()
            self.conv2 = conv3x3(inplanes, planes, stride)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample
            self.stride = stride
            self.use_se = use_se
            if self.use_se:
                self.se = SEBlock(planes)

    class ResNet(nn.Module):
        def __init__(self, block, layers, use_se=True):
            self.inplanes = 64
            self.use_se = use_se
            super(ResNet, self).__init__()
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.prelu = nn.PReLU()
            self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
            self.layer1 = self._make_layer(block, 64, layers[0])
            self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
            self.bn2 = nn.BatchNorm2d(512)
            self.dropout = nn.Dropout()
            self.fc = nn.Linear(512 * 7 * 7, 512)
            self.bn3 = nn.BatchNorm1d(512)

        def _make_layer(self, block, planes, blocks, stride=1):
            downsample = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes * block.expansion))
            layers = [block(self.inplanes, planes, stride, downsample, use_se=self.use_se)]
            self.inplanes = planes
            for _ in range(1, blocks):
                layers.append(block(self.inplanes, planes, use_se=self.use_se))
            return nn.Sequential(*layers)

    class ArcMarginModel(nn.Module):
        def __init__(self, num_classes=10, emb_size=512, margin_m=0.5, margin_s=64.0, easy_margin=False):
            super(ArcMarginModel, self).__init__()
            self.weight = Parameter(torch.FloatTensor(num_classes, emb_size))
            nn.init.xavier_uniform_(self.weight)
            self.easy_margin = easy_margin
            self.m = margin_m
            self.s = margin_s
            self.cos_m = math.cos(self.m)
            self.sin_m = math.sin(self.m)
            self.th = math.cos(math.pi - self.m)
            self.mm = math.sin(math.pi - self.m) * self.m
''')


class _StandIn:
    """Temporarily importable ``models`` package; everything it added to sys.modules/sys.path is removed on exit."""

    def __init__(self, root: Path, generation: str) -> None:
        pkg = root / "models"
        pkg.mkdir(parents=True)
        if generation == "2023":  # models.arcface_models.ResNet / IRBlock / SEBlock
            (pkg / "__init__.py").write_text("")
            (pkg / "arcface_models.py").write_text(_STANDIN_CLASSES)
        else:  # 2021: the classes were importable as models.ResNet & co.
            (pkg / "__init__.py").write_text(_STANDIN_CLASSES)
        self.root, self.generation = str(root), generation

    def __enter__(self):
        assert "models" not in sys.modules, "a 'models' package is already imported; the test cannot prove anything"
        sys.path.insert(0, self.root)
        importlib.invalidate_caches()
        name = "models.arcface_models" if self.generation == "2023" else "models"
        return importlib.import_module(name)

    def __exit__(self, *exc):
        for name in [n for n in sys.modules if n == "models" or n.startswith("models.")]:
            del sys.modules[name]
        sys.path.remove(self.root)
        sys.path_importer_cache.pop(self.root, None)
        importlib.invalidate_caches()
        return False


def _standin_resnet(mod, state, use_se=True):
    with torch.device("meta"):
        model = mod.ResNet(mod.IRBlock, [3, 4, 23, 3], use_se=use_se)
    # official keys, strictly; copies, so that training steps on the stand-in leave ``state`` alone
    model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    return model


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def arc_state():
    return seeded_state_dict("arcface", seed=1234)


@pytest.fixture(scope="module")
def official_arcface_files(tmp_path_factory, arc_state):
    """The official pickled ArcFace in several encodings: name -> path."""
    root = tmp_path_factory.mktemp("official_arcface")
    files: dict[str, Path] = {}
    with _StandIn(root / "pkg2023", "2023") as mod:
        model = _standin_resnet(mod, arc_state)
        assert type(model).__module__ == "models.arcface_models"
        for name, kwargs in {
            "2023_zip_p2": dict(pickle_protocol=2),
            "2023_zip_p4": dict(pickle_protocol=4),  # torch's default is 2 (the line above); 4 as a variant
            "2023_legacy_p2": dict(pickle_protocol=2, _use_new_zipfile_serialization=False),
        }.items():
            files[name] = root / f"{name}_arcface_checkpoint.tar"
            torch.save(model, files[name], **kwargs)
        del model
    with _StandIn(root / "pkg2021", "2021") as mod:
        model = _standin_resnet(mod, arc_state)
        assert type(model).__qualname__ == "ResNet" and type(model).__module__ == "models"
        dp = torch.nn.DataParallel(model)
        # what a DataParallel built on a GPU machine carries (CPU-only construction leaves these out)
        dp.device_ids, dp.output_device, dp.src_device_obj, dp.dim = [0], 0, torch.device("cuda", 0), 0
        metric_fc = mod.ArcMarginModel(num_classes=10)
        optimizer = torch.optim.SGD([{"params": model.parameters()}, {"params": metric_fc.parameters()}],
                                    lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        # a few momentum buffers (a real file holds them for every parameter), keyed by the parameters themselves
        for p in (metric_fc.weight, model.fc.weight, model.bn3.bias):
            p.grad = torch.ones_like(p)
        with torch.no_grad():
            optimizer.step()
        for p in (metric_fc.weight, model.fc.weight, model.bn3.bias):
            p.grad = None
        model_state_after_step = {k: v.detach().clone() for k, v in model.state_dict().items()}
        ckpt = {"epoch": 41, "epochs_since_improvement": 0, "model": dp, "metric_fc": metric_fc,
                "optimizer": optimizer}
        for name, kwargs in {
            "2021_legacy_p2": dict(pickle_protocol=2, _use_new_zipfile_serialization=False),
            "2021_zip_default": {},
        }.items():
            files[name] = root / f"{name}_arcface_checkpoint.tar"
            torch.save(ckpt, files[name], **kwargs)
        del ckpt, dp, model, optimizer
    files["_2021_state"] = model_state_after_step  # type: ignore[assignment]
    assert "models" not in sys.modules
    return files


@pytest.fixture(scope="module")
def arcface_reference(official_arcface_files):
    """A 2023-format file loaded once (shared by the tests that only need some ArcFace module)."""
    return load_arcface(official_arcface_files["2023_zip_p2"])


def _arc_raw_error(model, golden):
    with torch.inference_mode():
        out = model(torch.from_numpy(golden["arc_input"]))
    ref = torch.from_numpy(golden["arc_output"])
    return (out - ref).abs().max().item() / ref.abs().max().item(), out


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


# ---------------------------------------------------------------------------------- 2. malicious pickles
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(callee: bytes, *args: bytes) -> bytes:
    return callee + b"(" + b"".join(args) + b"tR"


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _proto2(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


def _stack_global(module: str, name: str) -> bytes:  # protocol 4 style global
    return _str(module) + _str(name) + b"\x93"


class _ReduceTo:
    """Pickles as ``fn(*args)`` (what an attacker's object with __reduce__ does)."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(s: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes that would create file ``s`` when unpickled normally, refused global)."""
    touch = f"touch '{s}'"
    py = f"open({str(s)!r}, 'w').close() or {{}}"
    exec_bytes = pickle.dumps(_ReduceTo(exec, py), protocol=2)
    assert b"c__builtin__\nexec\n" in exec_bytes  # protocol 2 writes Python 2 names
    return {
        "os.system": (_proto2(_call(_global("os", "system"), _str(touch))), "os.system"),
        "posix.system": (_proto2(_call(_global("posix", "system"), _str(touch))), "posix.system"),
        "builtins.eval": (_proto2(_call(_global("builtins", "eval"), _str(py))), "builtins.eval"),
        "subprocess.Popen": (_proto2(_call(_global("subprocess", "Popen"), _tuple(_str("touch"), _str(str(s))))),
                             "subprocess.Popen"),
        "reduce_exec": (exec_bytes, "__builtin__.exec"),
        "stack_global_eval": (b"\x80\x04" + _call(_stack_global("builtins", "eval"), _str(py)) + b".",
                              "builtins.eval"),
        # an allowed rebuild function whose storage argument is an os.system call
        "nested_rebuild": (_proto2(b"}" + _str("w") + _call(
            _global("torch._utils", "_rebuild_tensor_v2"),
            _call(_global("os", "system"), _str(touch)), b"K\x00", _tuple(b"K\x01"), _tuple(b"K\x01"), b"\x89",
            _call(_global("collections", "OrderedDict"))) + b"s"), "os.system"),
        # an allowed container rebuilt from an eval result
        "nested_ordereddict": (_proto2(_call(_global("collections", "OrderedDict"),
                                             _call(_global("builtins", "eval"), _str(py)))), "builtins.eval"),
        # GLOBAL tricks: names reached through the allowed module path
        "models_os": (_proto2(_call(_global("models.arcface_models", "os"), _str(touch))), "models.arcface_models.os"),
        "models_os_system": (b"\x80\x04" + _call(_stack_global("models.arcface_models", "os.system"), _str(touch))
                             + b".", "models.arcface_models.os.system"),
        "torch_nn_os": (_proto2(_call(_global("torch.nn.modules.conv", "os"), _str(touch))),
                        "torch.nn.modules.conv.os"),
        "resnet_globals": (b"\x80\x04" + _call(_stack_global("models.arcface_models", "ResNet.__init__"), _str(touch))
                           + b".", "models.arcface_models.ResNet.__init__"),
    }


_CONTROL_SAFE = {"os.system", "posix.system", "builtins.eval", "subprocess.Popen", "reduce_exec", "stack_global_eval",
                 "nested_ordereddict"}


def _write_zip_torch(path: Path, data_pkl: bytes) -> Path:
    """A torch.save zip archive whose data.pkl is replaced (other records kept as torch wrote them)."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = data_pkl if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)
    return path


def _legacy_magic() -> bytes:
    return pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)


def _legacy_header() -> bytes:
    return _legacy_magic() + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)


def _containers(tmp: Path, name: str, payload: bytes) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    out = {
        "plain_pickle": tmp / f"{name}_plain.tar",
        "legacy_main": tmp / f"{name}_legacy.pth",
        "legacy_sysinfo": tmp / f"{name}_legacy_sysinfo.pth",
        "legacy_keys": tmp / f"{name}_legacy_keys.pth",
    }
    out["plain_pickle"].write_bytes(payload)
    out["legacy_main"].write_bytes(_legacy_header() + payload + pickle.dumps([], protocol=2))
    out["legacy_sysinfo"].write_bytes(_legacy_magic() + payload)
    out["legacy_keys"].write_bytes(_legacy_header() + pickle.dumps({}, protocol=2) + payload)
    out["zip"] = _write_zip_torch(tmp / f"{name}_zip.pth", payload)
    return out


def _wait_absent(path: Path) -> bool:
    deadline = time.monotonic() + 0.3  # Popen would run asynchronously
    while time.monotonic() < deadline:
        if path.exists():
            return False
        time.sleep(0.05)
    return not path.exists()


@pytest.mark.parametrize("payload_name", sorted(_payloads(Path("x"))))
def test_malicious_pickles_are_refused_and_nothing_runs(payload_name, tmp_path):
    if payload_name in _CONTROL_SAFE:  # control: the payload is live when unpickled normally
        control = tmp_path / "control_ran"
        result = pickle.loads(_payloads(control)[payload_name][0])
        if hasattr(result, "wait"):
            result.wait()
        assert control.exists(), "the control payload did not run; the test would prove nothing"
    sentinel = tmp_path / "pwned"
    payload, refused = _payloads(sentinel)[payload_name]
    imported_before = set(sys.modules)
    for container, path in _containers(tmp_path / "files", payload_name, payload).items():
        for loader in (load_arcface, load_generator, read_checkpoint, restricted_load):
            with pytest.raises(UnsafeCheckpointError) as info:
                loader(path)
            msg = str(info.value)
            assert str(path) in msg and f"'{refused}'" in msg, (container, loader.__name__, msg)
            assert "nothing from the file was executed" in msg
    assert _wait_absent(sentinel), f"{payload_name}: the payload ran"
    assert set(sys.modules) - imported_before == set()  # not even a module was imported


def test_real_torch_save_of_reduce_objects_is_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    evil = {
        "exec": _ReduceTo(exec, f"open({str(sentinel)!r}, 'w').close()"),
        "system": _ReduceTo(os.system, f"touch '{sentinel}'"),
    }
    for which, obj in evil.items():
        for kwargs in ({}, {"_use_new_zipfile_serialization": False}):
            path = tmp_path / f"{which}_{len(kwargs)}.pth"
            torch.save({"state_dict": _small_state() if which == "exec" and not kwargs else {},
                        "extra": obj}, path, **kwargs)
            dst = tmp_path / f"{which}_{len(kwargs)}.safetensors"
            for call in (lambda path=path: load_generator(path),
                         lambda path=path, dst=dst: convert_checkpoint(path, dst)):
                with pytest.raises(UnsafeCheckpointError, match=r"'(__builtin__\.exec|posix\.system)'") as info:
                    call()
                assert str(path) in str(info.value)
            assert not dst.exists()
    assert _wait_absent(sentinel)


def test_evil_argument_to_an_allowed_global_runs_nothing(tmp_path):
    sentinel = tmp_path / "pwned"
    touch = _str(f"touch '{sentinel}'")
    cases = {
        # an allowed rebuild function handed a shell command instead of a storage
        "rebuild_str": _proto2(_call(_global("torch._utils", "_rebuild_tensor_v2"), touch, b"K\x00",
                                     _tuple(b"K\x01"), _tuple(b"K\x01"))),
        # an allowed model class "constructed" with a command: only a record, never an instance of anything real
        "resnet_args": _proto2(b"}" + _str("model") + _call(_global("models.arcface_models", "ResNet"), touch) + b"s"),
        "ordered_dict_str": _proto2(_call(_global("collections", "OrderedDict"), touch)),
        "size_huge": _proto2(_call(_global("torch._utils", "_rebuild_tensor_v2"), b"N", b"K\x00",
                                   _tuple(b"J\xff\xff\xff\x7f"), _tuple(b"K\x01"))),
    }
    for name, payload in cases.items():
        for container, path in _containers(tmp_path / name, name, payload).items():
            with pytest.raises(CheckpointError) as info:
                load_arcface(path)
            assert str(path) in str(info.value), (name, container, str(info.value))
    assert _wait_absent(sentinel)


def test_build_on_allowed_globals_cannot_tamper_with_the_loader(tmp_path):
    """A BUILD opcode on an allowed function (e.g. setting its __defaults__) must not alter it for later loads."""
    from simswap_core.models import safe_pickle

    before = (safe_pickle._rebuild_tensor.__defaults__, dict(safe_pickle._rebuild_tensor.__dict__))
    slot_state = b"N}" + _str("__defaults__") + _tuple(b"K\x01", b"K\x02") + b"s\x86"
    cases = {
        "rebuild_defaults": _proto2(_global("torch._utils", "_rebuild_tensor_v2") + slot_state + b"b"),
        "rebuild_dict": _proto2(_global("torch._utils", "_rebuild_tensor_v2") + b"}" + _str("x") + b"K\x01sb"),
        "defaultdict": _proto2(_global("collections", "defaultdict") + slot_state + b"b"),
        "tensor_marker": _proto2(_global("torch", "Tensor") + b"}" + _str("x") + b"K\x01sb"),
        "storage_type": _proto2(_global("torch", "FloatStorage") + b"}" + _str("dtype") + b"K\x01sb"),
    }
    for name, payload in cases.items():
        path = _write_zip_torch(tmp_path / f"{name}.pth", payload)
        with pytest.raises(UnsafeCheckpointError) as info:
            restricted_load(path)
        assert str(path) in str(info.value)
    assert (safe_pickle._rebuild_tensor.__defaults__, dict(safe_pickle._rebuild_tensor.__dict__)) == before
    # immutable allowed types are refused too (as damaged data), and stay unchanged
    for module, name in (("collections", "OrderedDict"), ("torch", "Size"), ("builtins", "set")):
        path = _write_zip_torch(tmp_path / f"{name}.pth", _proto2(_global(module, name) + b"}" + _str("x")
                                                                  + b"K\x01sb"))
        with pytest.raises(CheckpointError, match=str(path)):
            restricted_load(path)
    assert not hasattr(torch.Size, "x")


def test_globals_are_never_imported(tmp_path, monkeypatch):
    sentinel = tmp_path / "imported"
    (tmp_path / "evil_import_probe.py").write_text(f"open({str(sentinel)!r}, 'w').close()\nrun = print\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module, name in (("evil_import_probe", "run"), ("models.arcface_models", "ResNet"),
                         ("torch.nn.modules.evil_import_probe", "Conv2d")):
        path = _write_zip_torch(tmp_path / f"{module}.pth", _proto2(b"}" + _str("x") + _call(_global(module, name))
                                                                    + b"s"))
        with pytest.raises(CheckpointError):  # refused (unsafe), or a record that holds no weights
            load_arcface(path)
    assert not sentinel.exists() and "evil_import_probe" not in sys.modules and "models" not in sys.modules


# -------------------------------------------------------------------------------------------- 3. bad files
@pytest.fixture(scope="module")
def g224_file(seeded_checkpoints):
    return seeded_checkpoints["g224"]


@functools.lru_cache(maxsize=1)
def _small_state_once():
    return {k: v for k, v in seeded_state_dict("g224").items()
            if not k.startswith("BottleNeck.") or k.startswith("BottleNeck.0.")}


def _small_state():
    """The seeded g224 weights with only the first of the 9 ID blocks: a valid (1-block) generator, 6x smaller.
    A fresh copy each call (tests modify it)."""
    return {k: v.clone() for k, v in _small_state_once().items()}


@pytest.fixture(scope="module")
def small_state():
    return _small_state()


@pytest.fixture(scope="module")
def small_file(tmp_path_factory, small_state):
    return _save(tmp_path_factory.mktemp("small") / "small_net_G.pth", small_state)


@pytest.fixture(scope="module")
def small_model(small_file):
    G = load_generator(small_file)
    assert G.config.n_blocks == 1
    return G


@pytest.fixture(scope="module")
def g224_legacy(tmp_path_factory, small_state):
    path = tmp_path_factory.mktemp("legacy") / "small_net_G.pth"
    torch.save(small_state, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def small_safetensors(tmp_path_factory, small_file):
    return convert_checkpoint(small_file, tmp_path_factory.mktemp("st") / "small_net_G.safetensors")


def _assert_named(exc: BaseException, path: Path, found: str) -> None:
    msg = str(exc)
    assert str(path) in msg, msg
    assert "expected" in msg, msg
    assert found.lower() in msg.lower(), f"{found!r} not in {msg!r}"


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


# -------------------------------------------------------------------------------------------- 4. conversion
def _meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata())


def _gen_out(G, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=g)
    lat = torch.nn.functional.normalize(torch.randn(2, 512, generator=g), dim=1)
    with torch.inference_mode():
        return G(x, lat)


@pytest.mark.parametrize("kind", ["g224", "g512"])
def test_convert_generator_metadata_bit_exact_and_golden(kind, tmp_path, seeded_checkpoints, golden):
    src = seeded_checkpoints[kind]
    before = load_generator(src)
    dst = convert_checkpoint(src, tmp_path / f"{kind}.safetensors")
    assert dst == tmp_path / f"{kind}.safetensors"
    meta = _meta(dst)
    assert meta["kind"] == "generator" and meta["variant"] == "official" and meta["arch"] == kind
    assert meta["crop_size"] == {"g224": "224", "g512": "512"}[kind] and meta["format"] == "simswap"
    assert meta["source_file"] == src.name
    after = load_generator(dst)
    assert not after.training and after.arch == kind and after.variant == "official"
    assert all(p.dtype == torch.float32 for p in after.parameters())
    a, b = before.state_dict(), after.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(_gen_out(before), _gen_out(after))
    info = inspect_checkpoint(dst)
    assert info["kind"] == "generator" and info["arch"] == kind and info["source"] == "safetensors"
    # golden parity loading from .safetensors (the .pth path is tested in test_generator.py)
    target = torch.from_numpy(golden[f"{kind}_target_u8"]).float() / 255
    with torch.inference_mode():
        out = after(target, torch.from_numpy(golden[f"{kind}_latent"]))
    assert (out - torch.from_numpy(golden[f"{kind}_output"])).abs().max().item() <= 1e-4


def test_convert_variant_fix_is_kept_and_explicit_variant_wins(tmp_path, small_file, small_model):
    dst = convert_checkpoint(small_file, tmp_path / "fix.safetensors", variant="train")
    assert _meta(dst)["variant"] == "fix"
    G = load_generator(dst)
    assert G.variant == "fix" and not any(isinstance(m, torch.nn.Tanh) for m in G.modules())
    assert inspect_checkpoint(dst)["variant"] == "fix"
    # the caller's explicit choice overrides the metadata (documented: variant=None means "use the metadata")
    G_off = load_generator(dst, variant="official")
    assert G_off.variant == "official"
    assert torch.equal(_gen_out(G_off), _gen_out(small_model))
    assert not torch.equal(_gen_out(G), _gen_out(small_model))
    # re-converting a converted file keeps its variant unless told otherwise
    again = convert_checkpoint(dst, tmp_path / "fix2.safetensors")
    assert _meta(again)["variant"] == "fix"
    forced = convert_checkpoint(dst, tmp_path / "off.safetensors", variant="official")
    assert _meta(forced)["variant"] == "official"
    with pytest.raises(InputError, match="variant"):
        convert_checkpoint(small_file, tmp_path / "bad.safetensors", variant="tanh-ish")
    assert not (tmp_path / "bad.safetensors").exists()


def test_convert_official_pickled_arcface(tmp_path, official_arcface_files, arcface_reference, golden):
    dst = convert_checkpoint(official_arcface_files["2023_legacy_p2"], tmp_path / "arcface.safetensors")
    meta = _meta(dst)
    assert meta["kind"] == "arcface" and meta["arch"] == "ir_se_101" and meta["use_se"] == "true"
    assert meta["layers"] == "3,4,23,3" and "variant" not in meta
    assert "models" not in sys.modules
    A = load_arcface(dst)
    assert not A.training and A.arch == "ir_se_101"
    a, b = arcface_reference.state_dict(), A.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.from_numpy(golden["arc_input"])
    with torch.inference_mode():
        assert torch.equal(arcface_reference(x), A(x))
    with pytest.raises(InputError, match="generators only"):
        convert_checkpoint(official_arcface_files["2023_legacy_p2"], tmp_path / "a2.safetensors", variant="fix")
    assert not (tmp_path / "a2.safetensors").exists()
    # the 2021 dict converts too
    dst21 = convert_checkpoint(official_arcface_files["2021_zip_default"], tmp_path / "arcface21.safetensors")
    assert _meta(dst21)["kind"] == "arcface"
    assert _meta(dst21)["source_file"] == official_arcface_files["2021_zip_default"].name


def test_convert_never_overwrites_unless_asked(tmp_path, small_file, seeded_checkpoints):
    dst = tmp_path / "mine.safetensors"
    dst.write_bytes(b"the user's own file")
    with pytest.raises(InputError, match="already exists"):
        convert_checkpoint(small_file, dst)
    assert dst.read_bytes() == b"the user's own file"
    convert_checkpoint(small_file, dst, overwrite=True)
    assert _meta(dst)["kind"] == "generator"
    convert_checkpoint(seeded_checkpoints["arcface"], dst, overwrite=True)
    assert _meta(dst)["kind"] == "arcface"
    with pytest.raises(InputError, match=".safetensors"):
        convert_checkpoint(small_file, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
    # a failed conversion leaves neither the target nor temp files behind
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError):
        convert_checkpoint(bad, tmp_path / "bad.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth", "mine.safetensors"]


def test_state_dict_variants_load(tmp_path, arc_state, arcface_reference, small_state, small_model):
    state = small_state
    ref_sd = small_model.state_dict()
    ref_out = _gen_out(small_model)
    variants = {
        "no_nbt": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
        "module_prefix": {f"module.{k}": v for k, v in state.items()},
        "wrapped": {"state_dict": state, "epoch": 3},
        "half": {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()},
    }
    assert len(variants["no_nbt"]) < len(state)
    for name, sd in variants.items():
        G = load_generator(_save(tmp_path / f"{name}.pth", sd))
        assert not G.training and all(v.dtype == torch.float32 for v in G.state_dict().values()
                                      if v.is_floating_point()), name
        sd = G.state_dict()
        assert list(sd) == list(ref_sd), name
        if name == "half":
            assert (_gen_out(G) - ref_out).abs().max().item() < 0.05
        else:
            assert all(torch.equal(sd[k], ref_sd[k]) for k in sd), name
    # ArcFace state dict without num_batches_tracked and with a module. prefix (a DataParallel state_dict())
    sd = {f"module.{k}": v for k, v in arc_state.items() if not k.endswith("num_batches_tracked")}
    A = load_arcface(_save(tmp_path / "arc.pth", sd))
    a, b = arcface_reference.state_dict(), A.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert int(b["bn1.num_batches_tracked"]) == 0
    # the same without the missing keys tolerated elsewhere: a really missing weight is an error
    del sd["module.layer2.1.conv1.weight"]
    path = _save(tmp_path / "arc_missing.pth", sd)
    with pytest.raises(CheckpointError, match="missing 1 keys.*layer2.1.conv1.weight") as info:
        load_arcface(path)
    assert str(path) in str(info.value)


def test_extra_keys_are_refused(tmp_path):
    state = _small_state()
    state["BottleNeck.0.extra.weight"] = torch.zeros(1)
    path = _save(tmp_path / "extra.pth", state)
    with pytest.raises(CheckpointError, match="unexpected 1 keys") as info:
        load_generator(path)
    assert str(path) in str(info.value)


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path
