"""Malicious pickles: code-running payloads (os.system, eval, Popen, exec via __reduce__, STACK_GLOBAL, evil
arguments to allowed names, module tricks) in every checkpoint container and through every loader are refused,
and nothing they carry ever runs (a sentinel file proves it)."""
from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from checkpoint_fixtures import _small_state
from simswap_core import convert_checkpoint, load_arcface, load_generator
from simswap_core.errors import CheckpointError, UnsafeCheckpointError
from simswap_core.models.checkpoints import read_checkpoint
from simswap_core.models.pickle_containers import restricted_load

torch.set_num_threads(2)
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")


@pytest.fixture(scope="module", autouse=True)
def _loaders_warmed_up(tmp_path_factory):
    """Each loader once on a harmless file of each container, so the modules a first load imports (zip codecs,
    torch's serialization config) are in place before the tests check that a payload imports nothing."""
    codecs.lookup("cp437")      # zipfile's codec for member names without the UTF-8 flag
    folder = tmp_path_factory.mktemp("warm")
    for kwargs in ({}, {"_use_new_zipfile_serialization": False}):
        path = folder / f"warm_{len(kwargs)}.pth"
        torch.save({"state_dict": _small_state()}, path, **kwargs)
        read_checkpoint(path)
        restricted_load(path)


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
