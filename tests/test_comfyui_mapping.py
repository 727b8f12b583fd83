"""'SimSwap Map Identity' chained into 'SimSwap Face Swap' in a real ComfyUI server: two identities onto two people
of t1.jpg in one pass (one by a reference photo cropped from t1, one by face number), the other faces untouched;
an IMAGE batch of video frames tracked (temporal_smoothing) with a track-id entry; clear errors naming the widget or
input. Uses a crop-64 seeded generator (fast on the CPU) put into the server's models/simswap for this module."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from comfy_harness import photo_paths, server, use_comfy_api  # noqa: F401 (fixtures)

use_comfy_api()

FAST_GENERATOR = "simswap_map_test_crop64.safetensors"
PEOPLE = [(270, 146, 370, 277), (898, 56, 1006, 198)]  # t1.jpg faces 1 and 4 (left-right) as YuNet finds them


@pytest.fixture(scope="module")
def fast_generator(server):
    from simswap_core.models.loaders import convert_checkpoint

    path = server.models_dir / "simswap" / FAST_GENERATOR
    path.unlink(missing_ok=True)
    convert_checkpoint(server.model_files["g224"], path, crop_size=64)
    yield FAST_GENERATOR
    path.unlink(missing_ok=True)


def base(fast_generator: str) -> dict:
    x1, y1, x2, y2 = PEOPLE[0]
    w = x2 - x1
    return {
        "g": {"class_type": "SimSwapGeneratorLoader",
              "inputs": {"generator_name": fast_generator, "variant": "auto", "crop_size": "auto"}},
        "a": {"class_type": "SimSwapArcFaceLoader", "inputs": {"arcface_name": "arcface_checkpoint.tar"}},
        "d": {"class_type": "SimSwapDetectorLoader",
              "inputs": {"detector": "yunet (offline default)", "threshold": 0.5, "det_size": 640}},
        "src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "t1": {"class_type": "LoadImage", "inputs": {"image": "t1.jpg"}},
        # a photo of the person to replace: a crop of t1 around person 1
        "crop": {"class_type": "ImageCrop", "inputs": {"image": ["t1", 0], "width": 3 * w, "height": 3 * w,
                                                        "x": x1 - w, "y": y1 - w}},
        "id_a": {"class_type": "SimSwapExtractIdentity",
                 "inputs": {"source_images": ["src", 0], "arcface": ["a", 0], "detector": ["d", 0], "face": "largest",
                            "face_index": "0", "order": "left-right", "combine": "mean", "if_no_face": "error"}},
        "id_b": {"class_type": "SimSwapExtractIdentity",
                 "inputs": {"source_images": ["t1", 0], "arcface": ["a", 0], "detector": ["d", 0], "face": "index",
                            "face_index": "0", "order": "left-right", "combine": "mean", "if_no_face": "error"}},
        "ref": {"class_type": "SimSwapExtractIdentity",
                "inputs": {"source_images": ["crop", 0], "arcface": ["a", 0], "detector": ["d", 0],
                           "face": "largest", "face_index": "0", "order": "left-right", "combine": "mean",
                           "if_no_face": "error"}},
    }


def map_node(identity: str, target: str, *, previous: str | None = None, **widgets) -> dict:
    inputs = {"identity": [identity, 0], "target": target, "face_index": 0, "track_id": 0, "threshold": 0.03,
              "order": "left-right", **widgets}
    if previous is not None:
        inputs["identity_map"] = [previous, 0]
    return {"class_type": "SimSwapMapIdentity", "inputs": inputs}


def swap(images: list, **inputs) -> dict:
    return {"class_type": "SimSwapSwap",
            "inputs": {"images": images, "generator": ["g", 0], "detector": ["d", 0], "faces": "all",
                       "face_index": "0", "order": "left-right", "mask": "box", "if_no_face": "keep", **inputs}}


def prune(prompt: dict, *outputs: str) -> dict:
    used, todo = set(), list(outputs)
    while todo:
        k = todo.pop()
        used.add(k)
        for v in prompt[k]["inputs"].values():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] not in used:
                todo.append(v[0])
    return {k: v for k, v in prompt.items() if k in used}


def texts(entry: dict, node: str) -> list[str]:
    return entry["outputs"].get(node, {}).get("text", [])


def execution_error(entry: dict) -> str:
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors, f"no execution_error in {entry['status']['messages']}"
    return errors[0]["exception_message"]


def test_map_node_schema(server):
    info = server.object_info()["SimSwapMapIdentity"]
    assert info["display_name"] == "SimSwap Map Identity" and info["output"] == ["SIMSWAP_IDENTITY_MAP"]
    req, opt = info["input"]["required"], info["input"]["optional"]
    assert list(req) == ["identity", "target", "face_index", "track_id", "threshold", "order"]
    assert req["target"][1]["options"] == ["reference", "face index", "track id"]
    assert list(opt) == ["reference", "identity_map"]
    assert all(spec[1].get("tooltip") for spec in {**req, **opt}.values())
    swap_opt = server.object_info()["SimSwapSwap"]["input"]["optional"]
    assert swap_opt["identity_map"][0] == "SIMSWAP_IDENTITY_MAP" and "identity" in swap_opt
    options = server.object_info()["SimSwapSwapOptions"]["input"]
    assert list(options["optional"]) == ["track_gap", "blend_smoothing", "pixel_boost"]   # after the saved widgets


def test_two_identities_onto_two_people_in_one_pass(server, fast_generator):
    prompt = {**base(fast_generator),
              "m1": map_node("id_a", "reference", reference=["ref", 0], threshold=0.6),
              "m2": map_node("id_b", "face index", previous="m1", face_index=4),
              "swap": swap(["t1", 0], identity_map=["m2", 0], arcface=["a", 0]),
              "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    entry = server.run(prune(prompt, "out"))
    assert texts(entry, "swap") == ["swapped 2 faces in 1 frame\nidentities: #0 -> 1 face (reference (threshold "
                                    "0.6)); #1 -> 1 face (face index 4 (left-right))"]
    assert texts(entry, "m2") == ["#0 -> reference (threshold 0.6); #1 -> face index 4 (left-right)"]
    out = server.output_images(entry, "out")[0].astype(int)
    target = np.array(Image.open(photo_paths()["t1.jpg"]).convert("RGB")).astype(int)
    changed = np.abs(out - target).max(2) > 1            # 8-bit round trip
    near = np.zeros(changed.shape, bool)
    for x1, y1, x2, y2 in PEOPLE:
        assert changed[y1:y2, x1:x2].mean() > 0.3, "a mapped person was not swapped"
        g = (x2 - x1) // 2
        near[max(0, y1 - g):y2 + g, max(0, x1 - g):x2 + g] = True
    assert not changed[~near].any(), "faces no entry names must stay as they were"


def test_video_frames_are_tracked_and_a_track_id_gets_its_identity(server, fast_generator):
    prompt = {**base(fast_generator),
              "frames": {"class_type": "RepeatImageBatch", "inputs": {"image": ["t1", 0], "amount": 2}},
              "m1": map_node("id_a", "face index", face_index=1),
              "m2": map_node("id_b", "track id", previous="m1", track_id=5),
              "opts": {"class_type": "SimSwapSwapOptions",
                       "inputs": {"mask_regions": "skin,brows,eyes,glasses,nose,lips,mouth", "mask_grow": 0.0,
                                  "mask_feather": "auto", "paste_mode": "default", "color_match": True,
                                  "batch_size": 2, "reference_threshold": 0.03, "temporal_smoothing": 0.5,
                                  "track_gap": 4, "blend_smoothing": 0.5}},
              "swap": swap(["frames", 0], identity_map=["m2", 0], options=["opts", 0]),
              "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    entry = server.run(prune(prompt, "out"))
    text = texts(entry, "swap")[0].split("\n")
    # six faces a frame get track ids 0..5 in the first frame; track 5 and face 1 get their identities in both
    assert text == ["swapped 4 faces in 2 frames",
                    "identities: #0 -> 2 faces (face index 1 (left-right)); #1 -> 2 faces (track 5)",
                    "tracks: 2, faces filled in detection gaps: 0, no cut"], text


def test_clear_errors_name_the_input(server, fast_generator):
    nodes = base(fast_generator)
    both = {**nodes, "m1": map_node("id_a", "face index"),
            "swap": swap(["t1", 0], identity=["id_b", 0], identity_map=["m1", 0]),
            "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    entry = server.run(prune(both, "out"), expect="error")
    assert "identity: connect either 'identity'" in execution_error(entry) and "not both" in execution_error(entry)
    neither = {**nodes, "swap": swap(["t1", 0]),
               "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    assert "got neither" in execution_error(server.run(prune(neither, "out"), expect="error"))
    no_ref = {**nodes, "m1": map_node("id_a", "reference"),
              "swap": swap(["t1", 0], identity_map=["m1", 0], arcface=["a", 0]),
              "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    assert "reference: target = reference needs the 'reference' input" in execution_error(
        server.run(prune(no_ref, "out"), expect="error"))
    no_arc = {**nodes, "m1": map_node("id_a", "reference", reference=["ref", 0]),
              "swap": swap(["t1", 0], identity_map=["m1", 0]),
              "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    assert "arcface: the identity_map matches faces by reference" in execution_error(
        server.run(prune(no_arc, "out"), expect="error"))
    twice = {**nodes, "m1": map_node("id_a", "face index", face_index=2),
             "m2": map_node("id_b", "face index", previous="m1", face_index=2),
             "swap": swap(["t1", 0], identity_map=["m2", 0]),
             "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    assert "face_index: face 2 already has an identity" in execution_error(server.run(prune(twice, "out"),
                                                                                      expect="error"))
    faces = {**nodes, "m1": map_node("id_a", "face index"),
             "swap": swap(["t1", 0], identity_map=["m1", 0], faces="largest"),
             "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    assert "faces: with an identity_map the map chooses the faces" in execution_error(
        server.run(prune(faces, "out"), expect="error"))
