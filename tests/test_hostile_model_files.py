"""Hostile and malformed model files: resource bombs are refused before the work (pickle memo/nesting/opcode
bombs, zip bombs, forged zip directories, stride-0 and out-of-storage tensors, undeclared storages, foreign dtypes,
shapes that do not fit the architecture, safetensors headers and metadata out of range), and every malformed file
(wrong types, truncation, garbage, special files) is a CheckpointError naming the file, what was found and what was
expected. The costly cases are measured in a fresh process (CPU seconds, under an address-space limit)."""
from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

from checkpoint_fixtures import _small_state, small_file, small_safetensors, small_state  # noqa: F401 (fixtures)
from simswap_core import load_generator
from simswap_core.errors import CheckpointError, MissingModelError
from simswap_core.models.checkpoints import read_checkpoint
from simswap_core.models.pickle_containers import restricted_load
from simswap_core.models.pickle_scan import scan_pickle

torch.set_num_threads(2)
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")

REPO = Path(__file__).resolve().parents[1]
CPU_LIMIT_S = 5.0   # generous on a loaded 2-core machine; the real figures are printed (about 0.3 s after import)
EXTRA_ADDRESS_SPACE = 1536 * 1024 ** 2  # address space a refusal may add to the process after importing torch


# ------------------------------------------------------------------------------------------------ builders
def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _int(v: int) -> bytes:
    return b"J" + struct.pack("<i", v) if -2 ** 31 <= v < 2 ** 31 else b"\x8a\x08" + struct.pack("<q", v)


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def memo_bomb(levels: int = 120) -> bytes:
    """~1 KB: list_k = [list_{k-1}, list_{k-1}] through the memo; expands to 2**levels objects."""
    body = b"]q\x000"  # empty list, memo 0, popped
    for k in range(1, levels):
        body += b"(h" + bytes([k - 1]) + b"h" + bytes([k - 1]) + b"lq" + bytes([k]) + b"0"
    return b"\x80\x02" + body + b"h" + bytes([levels - 1]) + b"."


def deep_nesting(depth: int = 200_000) -> bytes:
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def many_opcodes(n: int = 3_000_000) -> bytes:
    return b"\x80\x02" + b"N0" * n + b"N."


def _tensor_record(key: str, numel: int, size: tuple[int, ...], stride: tuple[int, ...], offset: int = 0,
                   storage: str = "FloatStorage") -> bytes:
    pid = _tuple(_str("storage"), _global("torch", storage), _str(key), _str("cpu"), _int(numel))
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"Q" + _int(offset)
            + _tuple(*map(_int, size)) + _tuple(*map(_int, stride)) + b"\x89" + _global("collections", "OrderedDict")
            + b")Rt" + b"R")


def torch_zip(path: Path, data_pkl: bytes, records: dict[str, bytes], compress: set[str] = frozenset()) -> Path:
    """A torch-style zip: ``archive/data.pkl``, ``archive/byteorder`` and ``archive/data/<key>`` records."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        for key, data in records.items():
            kind = zipfile.ZIP_DEFLATED if key in compress else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(f"archive/data/{key}"), data, compress_type=kind)
        zf.writestr("archive/version", "3\n")
    return path


def _state_pickle(records: dict[str, bytes]) -> bytes:
    return b"\x80\x02}(" + b"".join(_str(k) + v for k, v in records.items()) + b"u."


def _legacy_pickles(path: Path) -> list[tuple[int, int]]:
    data = path.read_bytes()
    spans, offset = [], 0
    for _ in range(5):
        n = scan_pickle(data, str(path), offset=offset).nbytes
        spans.append((offset, offset + n))
        offset += n
    return spans


# ------------------------------------------------------------------------------------------------ fresh process
_PROBE = textwrap.dedent("""
    import json, resource, sys, time
    sys.path.insert(0, {repo!r})
    import torch
    from simswap_core.models.checkpoints import read_checkpoint
    from simswap_core.errors import SimSwapError
    with open("/proc/self/status") as fh:
        vm = [int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:")][0]
    limit = vm + {extra}
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    try:
        read_checkpoint({path!r})
        outcome, message = "loaded", ""
    except SimSwapError as exc:
        outcome, message = type(exc).__name__, str(exc)
    except BaseException as exc:
        outcome, message = "RAW " + type(exc).__name__, str(exc)[:500]
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(json.dumps(dict(outcome=outcome, message=message[:500], cpu=cpu, wall=time.monotonic() - wall0,
                          address_space_limit=limit)))
""")


def refuse_in_fresh_process(path: Path) -> dict:
    """read_checkpoint(path) in a new interpreter under an address-space limit; its outcome and CPU seconds."""
    code = _PROBE.format(repo=str(REPO), extra=EXTRA_ADDRESS_SPACE, path=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{path.name}: {result['outcome']} in {result['cpu']:.3f} s CPU ({result['wall']:.3f} s wall)")
    return result


def _assert_refused(result: dict, path: Path, *words: str) -> None:
    assert result["outcome"] == "CheckpointError", result
    assert str(path) in result["message"] and "expected" in result["message"], result["message"]
    for word in words:
        assert word.lower() in result["message"].lower(), (word, result["message"])
    assert result["cpu"] < CPU_LIMIT_S, result


# ------------------------------------------------------------------------------------------------ 1. pickle bombs
@pytest.mark.parametrize("name,payload,words", [
    ("memo_bomb", memo_bomb(), ("memo bomb",)),
    ("deep_nesting", deep_nesting(), ("nesting",)),
    ("nesting_5000", deep_nesting(5000), ("nesting depth",)),
    ("many_opcodes", many_opcodes(), ("opcode count",)),
])
def test_pickle_bombs_are_refused_before_unpickling(tmp_path, name, payload, words):
    if name == "memo_bomb":
        assert len(payload) < 1100
    zipped = torch_zip(tmp_path / f"{name}.pth", payload, {})
    legacy = tmp_path / f"{name}_legacy.pth"
    legacy.write_bytes(payload)  # a bare pickle is read as the legacy stream format
    for path in (zipped, legacy):
        _assert_refused(refuse_in_fresh_process(path), path, *words)


def test_cyclic_and_malformed_pickle_structures(tmp_path):
    cases = {
        "self_list": b"\x80\x02]q\x00h\x00a.",        # a list that holds itself
        "get_unset": b"\x80\x02h\x05.",                # memo read before it is set
        "no_stop": b"\x80\x02}q\x00",                  # truncated
        "two_left": b"\x80\x02NN.",                    # garbage left on the stack
    }
    for name, payload in cases.items():
        path = torch_zip(tmp_path / f"{name}.pth", payload, {})
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        assert str(path) in str(info.value) and "expected" in str(info.value)


# ------------------------------------------------------------------------------------------------ 2. zip containers
def test_zip_bomb_record_is_refused_from_the_directory(tmp_path):
    numel = 64 * 1024 ** 2  # 256 MiB of float32 zeros, deflated to ~260 KB
    pkl = _state_pickle({"w": _tensor_record("0", numel, (numel,), (1,))})
    path = torch_zip(tmp_path / "bomb.pth", pkl, {"0": bytes(numel * 4)}, compress={"0"})
    assert path.stat().st_size < 400_000
    _assert_refused(refuse_in_fresh_process(path), path, "zip bomb")


def test_forged_zip_directories(tmp_path):
    good = torch_zip(tmp_path / "good.pth", _state_pickle({"w": _tensor_record("0", 4, (4,), (1,))}),
                     {"0": struct.pack("<4f", 1, 2, 3, 4)})
    assert torch.equal(restricted_load(good)["w"], torch.tensor([1.0, 2, 3, 4]))
    data = good.read_bytes()
    # local header of the storage record says another size than the central directory
    at = data.rindex(b"PK\x03\x04", 0, data.index(b"archive/data/0"))
    forged = bytearray(data)
    forged[at + 22:at + 26] = struct.pack("<I", 1 << 28)
    (tmp_path / "local.pth").write_bytes(forged)
    with pytest.raises(CheckpointError, match="local header"):
        read_checkpoint(tmp_path / "local.pth")
    # the storage record claims 40 more bytes in both headers: its data now covers the next record (overlap)
    central = data.rindex(b"PK\x01\x02", 0, data.rindex(b"archive/data/0"))  # its central directory entry
    assert data[central + 46:central + 60] == b"archive/data/0"
    forged = bytearray(data)
    for header, field in ((at, 18), (central, 20)):  # compressed and uncompressed sizes of both headers
        size = struct.unpack("<I", forged[header + field:header + field + 4])[0]
        forged[header + field:header + field + 8] = struct.pack("<II", size + 40, size + 40)
    (tmp_path / "overlap.pth").write_bytes(forged)
    with pytest.raises(CheckpointError, match="overlap") as info:
        read_checkpoint(tmp_path / "overlap.pth")
    assert str(tmp_path / "overlap.pth") in str(info.value)
    # two records of the same name
    with zipfile.ZipFile(tmp_path / "twice.pth", "w") as zf:
        with pytest.warns(UserWarning, match="Duplicate"):
            for _ in range(2):
                zf.writestr("archive/data.pkl", b"\x80\x02}.")
    with pytest.raises(CheckpointError, match="twice"):
        read_checkpoint(tmp_path / "twice.pth")


@pytest.mark.parametrize("name,record,words", [
    ("stride0_2pow33", _tensor_record("0", 4, (2 ** 33,), (0,)), "overlaps itself"),
    ("past_storage_end", _tensor_record("0", 4, (4,), (1,), offset=3), "holds 4"),
    ("negative_size", _tensor_record("0", 4, (-4,), (1,)), "negative"),
    ("overlapping_dims", _tensor_record("0", 4, (2, 2), (1, 1)), "overlaps itself"),
])
def test_tensor_records_outside_their_storage(tmp_path, name, record, words):
    path = torch_zip(tmp_path / f"{name}.pth", _state_pickle({"w": record}), {"0": bytes(16)})
    result = refuse_in_fresh_process(path) if name == "stride0_2pow33" else None
    if result is not None:
        _assert_refused(result, path, words)
    with pytest.raises(CheckpointError, match=words) as info:
        restricted_load(path)
    assert str(path) in str(info.value)


def test_declared_storage_must_be_stored(tmp_path):
    # zip: the record of a declared storage is missing
    path = torch_zip(tmp_path / "missing.pth", _state_pickle({"w": _tensor_record("7", 4, (4,), (1,))}), {})
    with pytest.raises(CheckpointError, match="missing from the zip"):
        read_checkpoint(path)
    # legacy: a storage referenced by a tensor but left out of the stored key list (uninitialised weights)
    legacy = tmp_path / "legacy.pth"
    torch.save({"a": torch.ones(3), "b": torch.full((5,), 2.0)}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    spans = _legacy_pickles(legacy)
    keys = pickle.loads(data[spans[4][0]:spans[4][1]])
    assert len(keys) == 2
    count = struct.unpack("<q", data[spans[4][1]:spans[4][1] + 8])[0]  # elements of the first stored storage
    assert count in (3, 5)
    first_end = spans[4][1] + 8 + count * 4  # keep the first storage only
    dropped = data[:spans[4][0]] + pickle.dumps(keys[:1], protocol=2) + data[spans[4][1]:first_end]
    (tmp_path / "dropped.pth").write_bytes(dropped)
    with pytest.raises(CheckpointError, match="never stored") as info:
        read_checkpoint(tmp_path / "dropped.pth")
    assert str(tmp_path / "dropped.pth") in str(info.value)


# ------------------------------------------------------------------------------------------------ 3. dtypes, shapes
@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.complex64, torch.bool, torch.int32])
def test_foreign_dtypes_in_a_generator_are_refused_by_key(tmp_path, dtype):
    state = _small_state()
    state["first_layer.1.weight"] = torch.zeros(state["first_layer.1.weight"].shape, dtype=dtype)
    for kwargs in ({}, {"_use_new_zipfile_serialization": False}):
        if kwargs and dtype == torch.float8_e4m3fn:
            continue  # the legacy format cannot store float8
        path = tmp_path / f"g_{str(dtype)[6:]}_{len(kwargs)}.pth"
        torch.save(state, path, **kwargs)
        with pytest.raises(CheckpointError) as info:
            load_generator(path)
        msg = str(info.value)
        assert str(path) in msg and "first_layer.1.weight" in msg and str(dtype)[6:] in msg and "expected" in msg


def test_shapes_are_checked_against_the_architecture_before_reading(tmp_path, monkeypatch):
    from simswap_core.models import pickle_containers

    state = _small_state()
    key = next(k for k in state if k.startswith("BottleNeck.0.") and state[k].dim() == 4)
    state[key] = torch.zeros(3, 3)
    path = tmp_path / "wrong_shape.pth"
    torch.save(state, path)

    def no_reading(*args):
        raise AssertionError("a storage was read before the shapes were checked")

    monkeypatch.setattr(pickle_containers, "_read_record", no_reading)
    with pytest.raises(CheckpointError, match="wrong shapes") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value) and key in str(info.value)


# ------------------------------------------------------------------------------------------------ 4. safetensors
def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("meta,words", [
    ({"crop_size": "100000"}, "crop_size"), ({"crop_size": "-224"}, "crop_size"), ({"crop_size": "abc"}, "crop_size"),
    ({"variant": "evil"}, "variant"), ({"kind": "rootkit"}, "kind"), ({"use_se": "maybe"}, "use_se"),
    ({"arch": "g224; rm -rf"}, "arch"), ({"arch": "g512"}, "arch"), ({"format": "other"}, "format"),
])
def test_safetensors_metadata_out_of_range(tmp_path, small_safetensors, meta, words):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(small_safetensors), framework="pt") as fh:
        metadata = {**fh.metadata(), **meta}
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    path = tmp_path / "meta.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=words) as info:
        load_generator(path)
    assert str(path) in str(info.value) and "expected" in str(info.value)


def test_crop_size_must_fit_the_layout(tmp_path, small_safetensors):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(small_safetensors), framework="pt") as fh:
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        metadata = {**fh.metadata(), "crop_size": "230"}
    path = save_file(tensors, str(tmp_path / "odd.safetensors"), metadata=metadata) or tmp_path / "odd.safetensors"
    with pytest.raises(CheckpointError, match="multiple of 8"):
        load_generator(path)


def test_convert_refuses_out_of_range_crop_sizes(tmp_path, small_file):
    from simswap_core import convert_checkpoint
    from simswap_core.errors import InputError

    for crop in (100000, -224, 230):
        with pytest.raises(InputError, match="crop_size"):
            convert_checkpoint(small_file, tmp_path / f"c{crop}.safetensors", crop_size=crop)
        assert not (tmp_path / f"c{crop}.safetensors").exists()


def test_huge_keys_are_not_echoed_in_full(tmp_path):
    path = tmp_path / "long_keys.pth"
    torch.save({"k" * 1_000_000: torch.zeros(1)}, path)
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert str(path) in str(info.value) and len(str(info.value)) < 2000


def test_malformed_safetensors_headers(tmp_path):
    f32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    cases = {
        "huge_header": struct.pack("<Q", 2 ** 40) + b"{}",
        "overlap": ({"a": f32, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)),
        "past_end": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)),
        "shape_mismatch": ({"a": {"dtype": "F32", "shape": [2 ** 33], "data_offsets": [0, 8]}}, bytes(8)),
        "negative_shape": ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)),
        "float8": ({"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, bytes(1)),
        "metadata_types": ({"__metadata__": {"crop_size": 224}, "a": f32}, bytes(8)),
        "not_an_object": ([1, 2], b""),
        "deep_json": (None, b""),
    }
    for name, case in cases.items():
        path = tmp_path / f"{name}.safetensors"
        if isinstance(case, bytes):
            path.write_bytes(case)
        elif case[0] is None:
            raw = b"[" * 100_000 + b"]" * 100_000
            path.write_bytes(struct.pack("<Q", len(raw)) + raw)
        else:
            _safetensors(path, case[0], case[1])
        with pytest.raises((CheckpointError, MissingModelError)) as info:
            read_checkpoint(path)
        assert isinstance(info.value, CheckpointError), (name, info.value)
        assert str(path) in str(info.value) and "expected" in str(info.value), (name, str(info.value))


# ------------------------------------------------------------------------------------------------ 5. malformed files
def test_malformed_but_harmless_pickles_name_the_file(tmp_path):
    module = _global("models.arcface_models", "ResNet")
    cases = {
        "root_list": b"\x80\x02]q\x00.",
        "dict_of_ints": pickle.dumps({"conv1.weight": 1, "fc.weight": 2}, protocol=2),
        "dict_where_tensor": b"\x80\x02}(" + _str("model") + b"}(" + _str("w") + b"}ueu.",
        "module_without_state": module + b")\x81.",
        "module_bad_state": module + b")\x81" + _str("oops") + b"b.",
        "module_params_list": module + b")\x81}" + _str("_parameters") + b"]sb.",
        "wrong_persistent": b"\x80\x02" + _str("x") + b"Q.",
        "storage_wrong_type": b"\x80\x02" + _tuple(_str("storage"), b"K\x01", _str("0"), _str("cpu"), b"K\x01")
                              + b"Q.",
    }
    for name, payload in cases.items():
        for path in (torch_zip(tmp_path / f"{name}.pth", payload, {}), tmp_path / f"{name}_bare.pth"):
            if not path.exists():
                path.write_bytes(payload)
            for reader in (read_checkpoint, load_generator):
                with pytest.raises(CheckpointError) as info:
                    reader(path)
                assert str(path) in str(info.value) and "expected" in str(info.value), (name, str(info.value))


def test_special_files_never_block(tmp_path):
    """A FIFO would block open() forever; it, a symlink loop and a device are refused from their stat()."""
    fifo = tmp_path / "net_G.pth"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.pth"
    loop.symlink_to(tmp_path / "loop2.pth")
    (tmp_path / "loop2.pth").symlink_to(loop)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from simswap_core.models.checkpoints import read_checkpoint
        from simswap_core.errors import CheckpointError
        for path in ({str(fifo)!r}, {str(loop)!r}, "/dev/zero"):
            try:
                read_checkpoint(path)
            except CheckpointError as exc:
                print(type(exc).__name__, exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3, (done.stdout, done.stderr[-2000:])
    assert "FIFO" in lines[0] and str(fifo) in lines[0]
    assert "symbolic link loop" in lines[1] and str(loop) in lines[1]
    assert "character device" in lines[2] and "/dev/zero" in lines[2]
    with pytest.raises(MissingModelError, match="folder"):
        read_checkpoint(tmp_path)


def test_truncated_and_random_files(tmp_path):
    state = {"w": torch.arange(64, dtype=torch.float32)}
    for kwargs in ({}, {"_use_new_zipfile_serialization": False}):
        buf = io.BytesIO()
        torch.save(state, buf, **kwargs)
        raw = buf.getvalue()
        for cut in range(0, len(raw), max(1, len(raw) // 40)):
            path = tmp_path / f"cut_{len(kwargs)}_{cut}.pth"
            path.write_bytes(raw[:cut])
            with pytest.raises(CheckpointError) as info:
                read_checkpoint(path)
            assert str(path) in str(info.value) and "expected" in str(info.value)
    rng = torch.Generator().manual_seed(0)
    for i in range(20):
        noise = torch.randint(0, 256, (4096,), generator=rng, dtype=torch.uint8).numpy().tobytes()
        for head in (b"", b"\x80\x02", b"PK\x03\x04"):
            path = tmp_path / f"noise_{i}_{len(head)}.pth"
            path.write_bytes(head + noise)
            with pytest.raises(CheckpointError) as info:
                read_checkpoint(path)
            assert str(path) in str(info.value)


# ------------------------------------------------------------------------------------------------ 6. ONNX detectors
def _onnx_identity(external: bool, folder: Path) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "w")
    if external:  # what onnx.save(..., save_as_external_data=True) writes: a reference to a file next to the model
        (folder / "secret.bin").write_bytes(np.ones(3, np.float32).tobytes())
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "secret.bin"), ("offset", "0"), ("length", "12")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_onnx_files_are_self_contained_and_parse_errors_are_named(tmp_path):
    pytest.importorskip("onnxruntime")
    from simswap_core.detection.onnx_session import create_session, read_onnx_model

    good = tmp_path / "good.onnx"
    good.write_bytes(_onnx_identity(False, tmp_path))
    session, _ = create_session(good, "cpu")
    assert [o.name for o in session.get_outputs()] == ["y"]
    cases = {
        "external.onnx": (_onnx_identity(True, tmp_path), "external data"),
        "garbage.onnx": (b"\xff" * 300, "not an ONNX model"),
        "empty.onnx": (b"", "without a graph"),
        "html.onnx": (b"<!DOCTYPE html><html>login</html>", "not an ONNX model"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for call in (lambda p=path: read_onnx_model(p), lambda p=path: create_session(p, "cpu")):
            with pytest.raises(CheckpointError, match=words) as info:
                call()
            assert str(path) in str(info.value) and "expected" in str(info.value)
    # a graph that parses but onnxruntime cannot run (an unknown operator): named, not a raw onnxruntime error
    import onnx

    model = onnx.load_from_string(_onnx_identity(False, tmp_path))
    model.graph.node[0].op_type = "NoSuchOperator"
    path = tmp_path / "unknown_op.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(CheckpointError, match="onnxruntime cannot load it") as info:
        create_session(path, "cpu")
    assert str(path) in str(info.value)
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="FIFO"):
        read_onnx_model(fifo)
