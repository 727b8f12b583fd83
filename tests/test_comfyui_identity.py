"""The identity nodes in a real ComfyUI server: Save Identity names the file it actually wrote in its UI output
(the history entry the frontend reads), and the next /object_info offers the new files in Load Identity without a
restart; Extract Identity with combine = each (one identity per face) -> Save (one file per identity), Blend
Identities and Face Similarity run from the Run button's API; an old workflow's integer face_index still runs."""
from __future__ import annotations

import uuid

from comfy_harness import object_info, server  # noqa: F401 (fixtures)

DETECTOR = "yunet (offline default)"


def _choices(info: dict, node: str, name: str) -> list:
    spec = info[node]["input"]["required"][name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def _models(threshold: float) -> dict:
    """Loaders; a distinct threshold makes ComfyUI run the nodes after them again (no cached outputs)."""
    return {
        "a": {"class_type": "SimSwapArcFaceLoader", "inputs": {"arcface_name": "arcface_checkpoint.tar"}},
        "d": {"class_type": "SimSwapDetectorLoader",
              "inputs": {"detector": DETECTOR, "threshold": threshold, "det_size": 640}},
    }


def _extract(image: str, face: str, face_index, combine: str) -> dict:
    return {"src": {"class_type": "LoadImage", "inputs": {"image": image}},
            "id": {"class_type": "SimSwapExtractIdentity",
                   "inputs": {"source_images": ["src", 0], "arcface": ["a", 0], "detector": ["d", 0], "face": face,
                              "face_index": face_index, "order": "left-right", "combine": combine,
                              "if_no_face": "error"}}}


def _save(name: str) -> dict:
    return {"save": {"class_type": "SimSwapSaveIdentity",
                     "inputs": {"identity": ["id", 0], "name": name, "if_exists": "increment"}}}


def _ui_text(entry: dict, node: str) -> str:
    return " ".join(entry["outputs"][node]["text"])


def test_save_twice_names_both_files_and_lists_them(server):
    name = f"e_{uuid.uuid4().hex[:8]}"
    texts = []
    for k in range(2):
        # face_index 0 as an INTEGER, as workflows saved before it became text carry it
        prompt = {**_models(0.5 + (k + 1) / 997), **_extract("astronaut.png", "largest", 0, "mean"), **_save(name)}
        entry = server.run(prompt)
        texts.append(_ui_text(entry, "save"))
    assert texts[0].startswith(f"saved {name}.safetensors (in ") and "identities" in texts[0]
    assert texts[1].startswith(f"saved {name}_001.safetensors (in ")
    folder = server.models_dir / "simswap" / "identities"
    assert (folder / f"{name}.safetensors").is_file() and (folder / f"{name}_001.safetensors").is_file()
    listed = _choices(server.object_info(), "SimSwapLoadIdentity", "identity_name")
    assert {f"{name}.safetensors", f"{name}_001.safetensors"} <= set(listed)
    # and the new file loads (its name passes the combo validation of a fresh schema)
    load = {"load": {"class_type": "SimSwapLoadIdentity", "inputs": {"identity_name": f"{name}_001.safetensors"}},
            **_models(0.5), **{"img": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}}},
            "sim": {"class_type": "SimSwapFaceSimilarity",
                    "inputs": {"identity": ["load", 0], "images": ["img", 0], "arcface": ["a", 0],
                               "detector": ["d", 0], "crop_size": "auto"}},
            "show": {"class_type": "PreviewAny", "inputs": {"source": ["sim", 1]}}}
    entry = server.run(load)
    report = _ui_text(entry, "sim")
    assert "image 0 face 0: source 1.000" in report  # the saved identity of this very photo


def test_each_save_blend_and_similarity(server, object_info):
    assert "each" in _choices(object_info, "SimSwapExtractIdentity", "combine")
    spec = object_info["SimSwapExtractIdentity"]["input"]["required"]["face_index"]
    assert spec[0] == "STRING" and spec[1]["default"] == "0"
    for node in ("SimSwapBlendIdentities", "SimSwapFaceSimilarity", "SimSwapLoadGenderModel"):
        assert object_info[node]["display_name"].startswith("SimSwap ")
    name = f"pair_{uuid.uuid4().hex[:8]}"
    prompt = {**_models(0.5 + 3 / 997), **_extract("t1.jpg", "index", "1, 0", "each"), **_save(name)}
    entry = server.run(prompt)
    assert _ui_text(entry, "id").startswith("2 identities (one per face): image 0 face 1, image 0 face 0")
    assert _ui_text(entry, "save").startswith(f"saved 2 identities: {name}_0.safetensors, {name}_1.safetensors")
    listed = _choices(server.object_info(), "SimSwapLoadIdentity", "identity_name")
    assert {f"{name}_0.safetensors", f"{name}_1.safetensors"} <= set(listed)
    blend = {**_models(0.5 + 4 / 997),
             "la": {"class_type": "SimSwapLoadIdentity", "inputs": {"identity_name": f"{name}_0.safetensors"}},
             "lb": {"class_type": "SimSwapLoadIdentity", "inputs": {"identity_name": f"{name}_1.safetensors"}},
             "blend": {"class_type": "SimSwapBlendIdentities",
                       "inputs": {"identity_a": ["la", 0], "identity_b": ["lb", 0], "weight_a": 1.0,
                                  "weight_b": 3.0, "weight_c": 1.0, "weight_d": 1.0}},
             "img": {"class_type": "LoadImage", "inputs": {"image": "t1.jpg"}},
             "sim": {"class_type": "SimSwapFaceSimilarity",
                     "inputs": {"identity": ["blend", 0], "images": ["img", 0], "arcface": ["a", 0],
                                "detector": ["d", 0], "original_images": ["img", 0]}},
             "show": {"class_type": "PreviewAny", "inputs": {"source": ["sim", 1]}}}
    entry = server.run(blend)
    assert _ui_text(entry, "blend") == "blend of A 25%, B 75%"
    report = _ui_text(entry, "sim")
    assert report.count("original target 1.000") == 6 and "mean similarity to the source" in report
    # a list into Blend is refused with the input's name, and the server carries on
    bad = {**_models(0.5 + 5 / 997), **_extract("t1.jpg", "index", "0,1", "each"),
           "blend": {"class_type": "SimSwapBlendIdentities",
                     "inputs": {"identity_a": ["id", 0], "identity_b": ["id", 0], "weight_a": 1.0, "weight_b": 1.0,
                                "weight_c": 1.0, "weight_d": 1.0}},
           "save": {"class_type": "SimSwapSaveIdentity",
                    "inputs": {"identity": ["blend", 0], "name": "never", "if_exists": "error"}}}
    entry = server.run(bad, expect="error")
    assert "identity_a: a list of 2 identities" in str(entry["status"]["messages"])
    assert not list((server.models_dir / "simswap" / "identities").glob("never*"))


def test_bad_face_index_is_a_validation_error(server):
    prompt = {**_models(0.5), **_extract("astronaut.png", "index", "first", "mean"), **_save("never2")}
    status, data = server.queue(prompt)
    assert status == 400 and "face_index: expected face numbers" in str(data)
