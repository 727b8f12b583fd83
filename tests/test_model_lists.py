"""What a model file IS, from its header (simswap_core.models.sniff): every SimSwap kind in every container, the
ONNX models of a ReActor / insightface install, bad and hostile files (never an exception, nothing executed, no
weight read), and the cache (path + size + mtime_ns, bounded). The lists built on it are tested in the real
ComfyUI by tests/test_comfyui_model_lists.py."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from model_clutter import write_insightface_clutter, write_scrfd_like, write_torch_clutter

from checkpoint_fixtures import _small_state, arc_state, official_arcface_files  # noqa: F401 - fixtures
from simswap_core import convert_checkpoint
from simswap_core.detection.yunet import find_yunet
from simswap_core.identity import Identity, save_identity
from simswap_core.models import sniff
from simswap_core.models.seeded import write_seeded_checkpoints
from simswap_core.models.sniff import Sniffed, sniff_model_file

pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")


@pytest.fixture(autouse=True)
def _fresh_cache():
    sniff.clear_sniff_cache()
    yield
    sniff.clear_sniff_cache()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    files: dict[str, Path] = {}
    files.update(write_insightface_clutter(root / "insightface"))
    files["scrfd_10g_bnkps.onnx"] = write_scrfd_like(root / "insightface/models/antelopev2/scrfd_10g_bnkps.onnx")
    files["scrfd_500m.onnx"] = write_scrfd_like(root / "insightface/scrfd_500m.onnx", outputs=6)
    files.update(write_torch_clutter(root / "simswap"))
    seeded = write_seeded_checkpoints(root / "simswap")
    files.update({"g224": seeded["g224"], "g512": seeded["g512"], "arcface_r101se.pth": seeded["arcface"]})
    return files


@pytest.mark.parametrize("name,kind,detail", [
    ("inswapper_128.onnx", "swapper", "two inputs"),
    ("w600k_r50.onnx", "recognition", "112x112"),
    ("genderage.onnx", "genderage", "96x96"),           # its weights are also listed among the graph inputs
    ("1k3d68.onnx", "landmarks", "192x192"),
    ("2d106det.onnx", "landmarks", "192x192"),
    ("scrfd_10g_bnkps.onnx", "detector", "scrfd"),
    ("scrfd_500m.onnx", "other", "without key points"),
    ("my_arcface.pth", "arcface", ""),
    ("arcface_r101se.pth", "arcface", ""),
    ("people_swap_v2.pth", "generator", "g224"),
    ("g224", "generator", "g224"),
    ("g512", "generator", "g512"),
    ("GFPGANv1.4.pth", "unknown", ""),
    ("reactor_face.safetensors", "unknown", ""),
])
def test_kinds_of_a_cluttered_folder(folder, name, kind, detail):
    found = sniff_model_file(folder[name])
    assert found.kind == kind, found
    assert detail in found.detail


def test_generator_crop_sizes(folder):
    assert sniff_model_file(folder["g224"]).crop_size == 224
    assert sniff_model_file(folder["g512"]).crop_size == 512


def test_yunet_is_a_detector():
    assert sniff_model_file(find_yunet()) == Sniffed("detector", "yunet")


def test_every_container(tmp_path, official_arcface_files):
    small = _small_state()
    legacy = tmp_path / "legacy_net_G.pth"
    torch.save(small, legacy, _use_new_zipfile_serialization=False)
    assert sniff_model_file(legacy).kind == "generator"
    zipped = tmp_path / "zip_net_G.pth"
    torch.save(small, zipped)
    st = convert_checkpoint(zipped, tmp_path / "converted.safetensors")
    assert sniff_model_file(st) == Sniffed("generator", "g224", 224)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in small.items()}}, wrapped)
    assert sniff_model_file(wrapped).kind == "generator"
    # the official ArcFace pickles (whole pickled module; 2021: a dict holding a DataParallel), every encoding
    for key, path in official_arcface_files.items():
        if not key.startswith("_"):
            assert sniff_model_file(path).kind == "arcface", key
    ident = save_identity(Identity(latent=torch.nn.functional.normalize(torch.randn(512), dim=0),
                                   embedding=torch.randn(512)), tmp_path / "anna.safetensors")
    assert sniff_model_file(ident).kind == "identity"


def test_no_weight_is_read(folder, monkeypatch):
    """Pickles: the zip records of the tensors are never read (only data.pkl); ONNX: a tiny part of the file."""
    from simswap_core.models import pickle_containers

    def refuse(*a, **k):
        raise AssertionError("a tensor storage was read")

    monkeypatch.setattr(pickle_containers, "_read_record", refuse)
    assert sniff_model_file(folder["g512"]).kind == "generator"
    assert sniff_model_file(folder["my_arcface.pth"]).kind == "arcface"

    read = []
    original = sniff._Proto.read
    monkeypatch.setattr(sniff._Proto, "read", lambda self, o, n: read.append(n) or original(self, o, n))
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    big = folder["inswapper_128.onnx"].parent / "big_recognition.onnx"
    w = numpy_helper.from_array(np.ones((1024, 1024, 2), np.float32), "w")  # 8 MiB of weights
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])], [w])
    save(helper.make_model(graph), str(big))
    assert sniff_model_file(big).kind == "recognition"
    assert 0 < sum(read) < 1024, read


@pytest.mark.parametrize("content", [b"", b"not really an onnx file", b"\x08\x07" + b"\xff" * 20, b"PK\x03\x04junk",
                                     b"\x80\x02garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}"])
def test_bad_files_are_unknown_never_an_error(tmp_path, content):
    for suffix in (".onnx", ".pth", ".safetensors"):
        p = tmp_path / f"bad{suffix}"
        p.write_bytes(content)
        found = sniff_model_file(p)
        assert found.kind == "unknown" and found.error, (suffix, content, found)


def test_folders_and_missing_files_are_unknown(tmp_path):
    assert sniff_model_file(tmp_path).kind == "unknown"
    assert sniff_model_file(tmp_path / "missing.pth").kind == "unknown"
    assert sniff.sniff_cache_info()["size"] == 0  # a missing file is not cached


def test_hostile_pickle_is_unknown_and_never_runs(tmp_path):
    sentinel = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    p = tmp_path / "evil.pth"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"first_layer.1.weight": Evil()}, protocol=2))
        z.writestr("archive/version", "3\n")
    found = sniff_model_file(p)
    assert found.kind == "unknown" and "system" in found.error
    assert not sentinel.exists()


def test_cache_hits_and_invalidation(folder, tmp_path):
    path = tmp_path / "g.pth"
    path.write_bytes(folder["g224"].read_bytes())
    assert sniff_model_file(path).kind == "generator"
    assert sniff_model_file(path).kind == "generator"
    assert sniff.sniff_cache_info() == {"hits": 1, "misses": 1, "size": 1}
    # the file is replaced by an ArcFace of another size: the new size/mtime is a new key
    path.write_bytes(folder["my_arcface.pth"].read_bytes())
    assert sniff_model_file(path).kind == "arcface"
    # same size, new mtime (a file rewritten in place) is a miss too
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert sniff_model_file(path).kind == "arcface"
    assert sniff.sniff_cache_info()["misses"] == 3


def test_cache_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(sniff, "CACHE_SIZE", 3)
    paths = []
    for i in range(5):
        p = tmp_path / f"x{i}.onnx"
        p.write_bytes(b"junk %d" % i)
        paths.append(p)
        sniff_model_file(p)
    assert sniff.sniff_cache_info()["size"] == 3
    sniff_model_file(paths[0])  # the oldest was dropped
    assert sniff.sniff_cache_info()["misses"] == 6


def test_missing_message_names_folder_file_source_and_command():
    from simswap_core.models.find import missing_kind_message

    msg = missing_kind_message("generator", "generator_name", "simswap", ["/c/models/simswap"],
                               "(no generator in models/simswap)")
    for part in ("generator_name", "/c/models/simswap", "latest_net_G.pth", "python install.py --download",
                 "https://github.com/neuralchen/SimSwap/releases/download/1.0/checkpoints.zip", "CC BY-NC 4.0"):
        assert part in msg, (part, msg)
    msg = missing_kind_message("generator", "generator_name", "simswap", ["/c/models/simswap"],
                               "550000_net_G.pth", ["latest_net_G.pth"])
    assert "'550000_net_G.pth' not in list: no such" in msg and "latest_net_G.pth" in msg
    assert "python install.py --model simswap_512" in msg and "512_beta/512.zip" in msg
    msg = missing_kind_message("arcface", "arcface", "simswap", [], "(no ArcFace in models/simswap)")
    assert "arcface_checkpoint.tar" in msg and "1.0/arcface_checkpoint.tar" in msg
