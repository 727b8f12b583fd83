"""The model lists in a real ComfyUI's /object_info, next to the clutter of a ReActor install (tests/model_clutter.py,
seeded by comfy_harness): each list holds exactly the files of its kind, recognised from their headers (unofficial
names too), with the defaults of the example workflows; a broken or hostile file never breaks /object_info; and
with no model file a run is refused naming the folder, the file expected, its source and the install command."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile

import pytest

from comfy_harness import object_info, server  # noqa: F401 (fixtures)

YUNET = "yunet (offline default)"


def options(info: dict, node: str, name: str) -> list:
    spec = info[node]["input"]["required"][name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def test_each_list_holds_exactly_its_kind(object_info):
    # 224 generators first (the official latest_net_G.pth, the default of the example workflows), then 512
    assert options(object_info, "SimSwapGeneratorLoader", "generator_name") == [
        "latest_net_G.pth", "people_swap_v2.pth", "550000_net_G.pth"]
    # SimSwap ArcFace files whatever their name; w600k_r50.onnx (another network) is not one
    assert options(object_info, "SimSwapArcFaceLoader", "arcface_name") == [
        "arcface_checkpoint.tar", "arcface_r101se.pth", "my_arcface.pth"]
    assert options(object_info, "SimSwapParserLoader", "parser_name") == ["79999_iter.pth"]
    # inswapper_128, w600k_r50, genderage, 1k3d68, 2d106det are not detectors
    assert options(object_info, "SimSwapDetectorLoader", "detector") == [YUNET]
    quick = object_info["SimSwapQuickSwap"]["input"]["required"]
    assert quick["generator"][1]["options"][0] == "latest_net_G.pth"
    assert quick["arcface"][1]["options"][0] == "arcface_checkpoint.tar"
    for node, name in (("SimSwapGeneratorLoader", "generator_name"), ("SimSwapArcFaceLoader", "arcface_name")):
        spec = object_info[node]["input"]["required"][name][1]
        assert spec.get("default", spec["options"][0]) == spec["options"][0]


def test_a_detector_file_shows_up_at_once(server):
    from model_clutter import write_scrfd_like

    scrfd = server.models_dir / "insightface" / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx"
    nokps = server.models_dir / "insightface" / "scrfd_500m.onnx"
    write_scrfd_like(scrfd)
    write_scrfd_like(nokps, outputs=6)  # SCRFD without key points: cannot align faces, not listed
    try:
        det = options(server.object_info(), "SimSwapDetectorLoader", "detector")
        assert det == [YUNET, "insightface/models/antelopev2/scrfd_10g_bnkps.onnx"]
    finally:
        shutil.rmtree(scrfd.parent)
        nokps.unlink()


def test_broken_and_hostile_files_never_break_object_info(server):
    folder = server.models_dir / "simswap"
    sentinel = server.root / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    evil = folder / "evil_net_G.pth"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"first_layer.1.weight": Evil()}, protocol=2))
    garbage = folder / "garbage.pth"
    garbage.write_bytes(b"\x80\x02" + b"\xff" * 100)
    fake_onnx = server.models_dir / "insightface" / "fake.onnx"
    fake_onnx.write_bytes(b"not really an onnx file")
    try:
        info = server.object_info()
        for node, name in (("SimSwapGeneratorLoader", "generator_name"), ("SimSwapArcFaceLoader", "arcface_name"),
                           ("SimSwapParserLoader", "parser_name"), ("SimSwapDetectorLoader", "detector")):
            listed = " ".join(options(info, node, name))
            assert "evil" not in listed and "garbage" not in listed and "fake" not in listed
        assert not sentinel.exists()
        # chosen anyway (an old workflow): refused before the run, saying what the file is
        status, data = server.queue(loader_prompt(gen="evil_net_G.pth"))
        assert status == 400, data
        text = json.dumps(data["node_errors"]["g"])
        assert "evil_net_G.pth" in text and "not in list" in text and "header" in text, text
        # another kind picked in a widget: the message says what the file is
        status, data = server.queue(loader_prompt(gen="my_arcface.pth"))
        assert status == 400 and "an arcface model, not a generator" in json.dumps(data["node_errors"]["g"]), data
        prompt = {"d": {"class_type": "SimSwapDetectorLoader",
                        "inputs": {"detector": "insightface/inswapper_128.onnx", "threshold": 0.5, "det_size": 640}},
                  "show": {"class_type": "PreviewAny", "inputs": {"source": ["d", 0]}}}
        status, data = server.queue(prompt)
        assert status == 400 and "a swapper" in json.dumps(data["node_errors"]["d"]), data
    finally:
        for p in (evil, garbage, fake_onnx):
            p.unlink()


def loader_prompt(gen: str = "latest_net_G.pth") -> dict:
    """Load Generator shown by the core 'Preview as Text' node (the smallest graph that validates it)."""
    return {"g": {"class_type": "SimSwapGeneratorLoader",
                  "inputs": {"generator_name": gen, "variant": "auto", "crop_size": "auto"}},
            "show": {"class_type": "PreviewAny", "inputs": {"source": ["g", 0]}}}


@pytest.fixture()
def no_generators(server):
    """Every generator file parked outside the model folders (a ComfyUI without the weights), put back after."""
    parked = server.root / "parked"
    parked.mkdir(exist_ok=True)
    moved = []
    for name in ("latest_net_G.pth", "550000_net_G.pth", "people_swap_v2.pth"):
        src = server.models_dir / "simswap" / name
        src.rename(parked / name)
        moved.append((parked / name, src))
    try:
        yield server
    finally:
        for src, dst in moved:
            src.rename(dst)


def test_no_model_file_names_folder_file_source_and_command(no_generators):
    srv = no_generators
    info = srv.object_info()
    placeholder = options(info, "SimSwapGeneratorLoader", "generator_name")
    assert placeholder == ["(no generator in models/simswap)"]
    folder = str(srv.models_dir / "simswap")
    # a new node (the placeholder) and a saved workflow (latest_net_G.pth) get the same clear message
    for value in (placeholder[0], "latest_net_G.pth"):
        status, data = srv.queue(loader_prompt(gen=value))
        assert status == 400, data
        text = json.dumps(data["node_errors"]["g"])
        for part in ("generator_name", folder, "latest_net_G.pth", "python install.py --download",
                     "https://github.com/neuralchen/SimSwap/releases/download/1.0/checkpoints.zip"):
            assert part in text, (value, part, text)
    quick = {"src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
             "q": {"class_type": "SimSwapQuickSwap",
                   "inputs": {"source_image": ["src", 0], "target_image": ["src", 0],
                              "generator": "latest_net_G.pth", "arcface": "arcface_checkpoint.tar",
                              "detector": YUNET, "source_faces_index": "0", "target_faces_index": "0",
                              "mask": "box", "color_match": False}},
             "out": {"class_type": "PreviewImage", "inputs": {"images": ["q", 0]}}}
    status, data = srv.queue(quick)
    assert status == 400, data
    assert "python install.py --download" in json.dumps(data["node_errors"]["q"])
