"""SimSwap Quick Face Swap and SimSwap Unload Models in a real ComfyUI: the swap changes the target only inside
the returned mask, a photo without a face comes back unchanged with the reason on the node, face numbers are
checked with the widget's name, a second run reuses the cached models (the server log's load lines, never
timings) and Unload Models frees them (the next run loads again)."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from comfy_harness import object_info, photo_paths, server  # noqa: F401 (fixtures)

_TAG = [0]


def quick(target: list | None = None, **overrides) -> dict:
    """A Quick Face Swap prompt: astronaut -> t1 (6 faces), its image and its mask previewed."""
    inputs = {"source_image": ["src", 0], "target_image": target or ["tgt", 0], "generator": "latest_net_G.pth",
              "arcface": "arcface_checkpoint.tar", "detector": "yunet (offline default)",
              "source_faces_index": "0", "target_faces_index": "0", "mask": "box", "color_match": False}
    inputs.update(overrides)
    return {"src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
            "tgt": {"class_type": "LoadImage", "inputs": {"image": "t1.jpg"}},
            "q": {"class_type": "SimSwapQuickSwap", "inputs": inputs},
            "out": {"class_type": "PreviewImage", "inputs": {"images": ["q", 0]}},
            "m": {"class_type": "MaskToImage", "inputs": {"mask": ["q", 1]}},
            "mout": {"class_type": "PreviewImage", "inputs": {"images": ["m", 0]}}}


def node_text(entry: dict, node_id: str) -> str:
    return " ".join(entry["outputs"].get(node_id, {}).get("text", []))


def loads(server, slot: str) -> int:
    return server.log_text().count(f"SimSwap Quick Face Swap: loading {slot} ")


def execution_error(entry: dict) -> dict:
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors, f"no execution_error in {entry['status']['messages']}"
    return errors[0]


def test_node_is_listed_with_the_model_lists(object_info):
    info = object_info["SimSwapQuickSwap"]
    assert info["display_name"] == "SimSwap Quick Face Swap"
    req = info["input"]["required"]
    assert req["generator"][1]["options"][0] == "latest_net_G.pth"
    assert req["generator"][1]["options"] == object_info["SimSwapGeneratorLoader"]["input"]["required"][
        "generator_name"][1]["options"]
    assert req["detector"][1]["options"] == object_info["SimSwapDetectorLoader"]["input"]["required"]["detector"][1][
        "options"]
    assert info["output"] == ["IMAGE", "MASK"]
    unload = object_info["SimSwapUnloadModels"]
    assert unload["display_name"] == "SimSwap Unload Models" and unload["output"] == ["*"]


def test_swap_changes_the_target_only_inside_the_mask(server):
    entry = server.run(quick(target_faces_index="0,2"))
    out = server.output_images(entry, "out")[0].astype(int)
    mask = server.output_images(entry, "mout")[0][..., 0].astype(int)
    target = np.array(Image.open(photo_paths()["t1.jpg"]).convert("RGB")).astype(int)
    assert out.shape == target.shape and mask.shape == target.shape[:2]
    outside, inside = mask == 0, mask == 255
    assert inside.sum() > 2000, "no face was swapped"
    assert np.abs(out[outside] - target[outside]).max() <= 1  # untouched (8-bit round trip)
    assert np.abs(out[inside] - target[inside]).mean() > 5  # the seeded generator changes the faces
    text = node_text(entry, "q")
    assert "wapped 2 faces in 1 frame" in text, entry["outputs"].get("q")


def test_second_run_reuses_the_models_and_unload_frees_them(server):
    server.run(quick(target_faces_index="1"))
    before = {s: loads(server, s) for s in ("generator", "arcface", "detector")}
    assert all(before.values()), before  # the first Quick Face Swap run of the session loaded them
    entry = server.run(quick(target_faces_index="3", color_match=True))  # another run of the node, same models
    assert {s: loads(server, s) for s in before} == before, "the second run read the model files again"
    assert "wapped 1 face" in node_text(entry, "q")
    # Unload Models passes its input through and names what it freed; the next Quick Face Swap loads again
    _TAG[0] += 1
    prompt = {"e": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1,
                                                          "color": _TAG[0]}},
              "u": {"class_type": "SimSwapUnloadModels", "inputs": {"value": ["e", 0]}},
              "p": {"class_type": "PreviewImage", "inputs": {"images": ["u", 0]}}}
    entry = server.run(prompt)
    text = node_text(entry, "u")
    assert "cached generator: latest_net_G.pth" in text and "cached arcface: arcface_checkpoint.tar" in text, text
    assert server.output_images(entry, "p")[0].shape == (64, 64, 3)
    server.run(quick(target_faces_index="4"))
    assert loads(server, "generator") == before["generator"] + 1
    assert loads(server, "arcface") == before["arcface"] + 1


def test_photo_without_a_face_is_reported_and_unchanged(server):
    empty = {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 256, "batch_size": 1, "color": 3355443}}
    entry = server.run({**quick(target=["empty", 0]), "empty": empty})
    text = node_text(entry, "q")
    assert "nothing swapped" in text and "no face" in text, entry["outputs"].get("q")
    frame = server.output_images(entry, "out")[0]
    assert abs(int(frame.mean()) - 51) <= 1
    assert server.output_images(entry, "mout")[0].max() == 0
    assert "SimSwap Quick Face Swap: " in server.log_text()  # and in the server log


def test_several_source_faces_onto_several_target_faces(server):
    prompt = quick(source_faces_index="0,1", target_faces_index="1,0")
    prompt["src"]["inputs"]["image"] = "t1.jpg"
    entry = server.run(prompt)
    assert "wapped 2 faces" in node_text(entry, "q") and "2 source faces" in node_text(entry, "q")


def test_bad_face_numbers_name_the_widget(server):
    entry = server.run(quick(target_faces_index="first"), expect="error")
    assert "target_faces_index" in execution_error(entry)["exception_message"]
    entry = server.run(quick(source_faces_index="4"), expect="error")  # the astronaut photo has one face
    msg = execution_error(entry)["exception_message"]
    assert "source_faces_index" in msg, msg


def test_missing_model_is_named_before_the_run(server):
    status, data = server.queue(quick(generator="no_such_net_G.pth"))
    assert status == 400, data
    text = json.dumps(data["node_errors"]["q"])
    assert "no_such_net_G.pth" in text and "python install.py" in text, text


def test_face_restoration_in_the_quick_swap(server):
    """A restoration model picked in the node restores the swapped faces only (a seeded 2x Compact upscaler of
    models/upscale_models stands in for GFPGAN): the result changes inside the mask, never outside."""
    import pytest

    pytest.importorskip("spandrel")
    import torch
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(21)
    path = server.models_dir / "upscale_models" / "2x_quick_seeded.pth"
    torch.save({"params": Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2,
                                  act_type="prelu").state_dict()}, path)
    try:
        spec = server.object_info()["SimSwapQuickSwap"]["input"]["optional"]["face_restore_model"]
        assert spec[1]["options"][0] == "none" and "upscale_models/2x_quick_seeded.pth" in spec[1]["options"]
        plain = server.run(quick(target_faces_index="2"))
        restored = server.run(quick(target_faces_index="2", face_restore_model="upscale_models/2x_quick_seeded.pth",
                                    face_restore_visibility=1.0))
        a = server.output_images(plain, "out")[0].astype(int)
        b = server.output_images(restored, "out")[0].astype(int)
        mask = server.output_images(restored, "mout")[0][..., 0]
        assert (mask == 255).sum() > 1000
        assert np.abs(a[mask == 0] - b[mask == 0]).max() <= 1
        assert np.abs(a[mask == 255] - b[mask == 255]).mean() > 2
    finally:
        path.unlink()
