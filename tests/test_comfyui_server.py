"""The pack inside a real ComfyUI server: /object_info, model folders, bad inputs (node errors, never a dead
server) and cancelling a long batch with POST /interrupt."""
from __future__ import annotations

import json
import time

from comfy_harness import PACK_NAME, object_info, server, use_comfy_api  # noqa: F401 (fixtures)

use_comfy_api()  # the pack's V3 node classes are imported here too (to compare with /object_info)

CORE_TYPES = {"IMAGE", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "UPSCALE_MODEL", "VIDEO", "*"}  # *: any


def choices(info: dict, node: str, name: str) -> list:
    """The choices of a combo input in /object_info: V3 ``["COMBO", {"options": [...]}]`` (V1: ``[[...], {}]``)."""
    spec = info[node]["input"]["required"][name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def is_not_in_list_error(error: dict, name: str, value: str) -> bool:
    """A combo value outside its choices, rejected before running: ComfyUI's own check (``value_not_in_list``,
    newer ComfyUI for V3 combos) or the node's validate_inputs (``custom_validation_failed``, ComfyUI 0.3.75)."""
    text = json.dumps(error)
    return (error["extra_info"].get("input_name") == name and value in text
            and (error["type"] == "value_not_in_list"
                 or (error["type"] == "custom_validation_failed" and "not in list" in text)))


def _ours(object_info: dict) -> dict:
    return {k: v for k, v in object_info.items() if PACK_NAME in (v.get("python_module") or "")}


def test_object_info_lists_every_node_with_types_and_tooltips(object_info):
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    ours = _ours(object_info)
    assert sorted(ours) == sorted(NODE_CLASS_MAPPINGS)
    assert {"SimSwapGeneratorLoader", "SimSwapArcFaceLoader", "SimSwapDetectorLoader", "SimSwapParserLoader",
            "SimSwapExtractIdentity", "SimSwapSaveIdentity", "SimSwapLoadIdentity", "SimSwapDetectFaces",
            "SimSwapSwap", "SimSwapFaceMask", "SimSwapPasteFaces"} <= set(ours)
    for name, info in ours.items():
        assert info["category"].split("/")[0] == "SimSwap", (name, info["category"])
        assert info["display_name"] == NODE_DISPLAY_NAME_MAPPINGS[name]
        assert info.get("description"), f"{name}: no description"
        for section in ("required", "optional"):
            for inp, spec in (info["input"].get(section) or {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("tooltip"), f"{name}.{inp}: no tooltip"
                typ = spec[0]
                if isinstance(typ, str) and typ not in CORE_TYPES:
                    assert typ.startswith("SIMSWAP_"), f"{name}.{inp}: own type {typ!r} must be SIMSWAP_-prefixed"
        tips = info.get("output_tooltips") or []
        assert len(tips) == len(info["output"]) and all(tips), f"{name}: output tooltips {tips}"
        assert len(info["output_name"]) == len(info["output"])
        for typ in info["output"]:
            assert typ in CORE_TYPES or typ.startswith("SIMSWAP_"), f"{name}: output type {typ!r}"


def test_model_folders_and_lists(server, object_info):
    gen = choices(object_info, "SimSwapGeneratorLoader", "generator_name")
    assert {"latest_net_G.pth", "550000_net_G.pth"} <= set(gen)
    assert "arcface_checkpoint.tar" in choices(object_info, "SimSwapArcFaceLoader", "arcface_name")
    assert "79999_iter.pth" in choices(object_info, "SimSwapParserLoader", "parser_name")
    det = choices(object_info, "SimSwapDetectorLoader", "detector")
    assert det[0] == "yunet (offline default)"
    # identities are not offered as generators; a new file in the yaml-configured folder shows up at once
    assert not any(n.startswith("identities") for n in gen)
    from model_clutter import write_scrfd_like  # an ONNX file with an SCRFD detector's inputs/outputs

    extra = write_scrfd_like(server.models_dir / "insightface" / "models" / "buffalo_test" / "det_10g.onnx")
    try:
        det = choices(server.object_info(), "SimSwapDetectorLoader", "detector")
        assert "insightface/models/buffalo_test/det_10g.onnx" in det
    finally:
        extra.unlink()


# ------------------------------------------------------------------------------------------------ prompts
def loaders(gen="latest_net_G.pth", threshold=0.5) -> dict:
    return {
        "g": {"class_type": "SimSwapGeneratorLoader",
              "inputs": {"generator_name": gen, "variant": "auto", "crop_size": "auto"}},
        "a": {"class_type": "SimSwapArcFaceLoader", "inputs": {"arcface_name": "arcface_checkpoint.tar"}},
        "d": {"class_type": "SimSwapDetectorLoader",
              "inputs": {"detector": "yunet (offline default)", "threshold": threshold, "det_size": 640}},
        "src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "id": {"class_type": "SimSwapExtractIdentity",
               "inputs": {"source_images": ["src", 0], "generator": ["g", 0], "arcface": ["a", 0],
                          "detector": ["d", 0], "face": "largest", "face_index": 0, "order": "left-right",
                          "combine": "mean", "if_no_face": "error"}},
    }


def swap_prompt(images, **overrides) -> dict:
    inputs = {"images": images, "identity": ["id", 0], "generator": ["g", 0], "arcface": ["a", 0],
              "detector": ["d", 0], "faces": "all", "face_index": "0", "order": "left-right", "mask": "box",
              "mask_regions": "skin,brows,eyes,glasses,nose,lips,mouth", "mask_grow": 0.0, "mask_feather": -1.0,
              "paste_mode": "default", "color_match": False, "if_no_face": "keep", "batch_size": 8}
    inputs.update(overrides)
    return {"swap": {"class_type": "SimSwapSwap", "inputs": inputs},
            "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}


EMPTY = {"empty": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 256, "batch_size": 2,
                                                           "color": 3355443}}}


def small_ok_prompt(tag: int) -> dict:
    """A quick prompt that must still work after an error (a new value each time: never cached)."""
    return {**loaders(threshold=0.5 + tag / 1000),
            "src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
            "faces": {"class_type": "SimSwapDetectFaces",
                      "inputs": {"images": ["src", 0], "detector": ["d", 0], "order": "size"}},
            "out": {"class_type": "PreviewImage", "inputs": {"images": ["faces", 1]}}}


def prune(prompt: dict) -> dict:
    """Drop nodes nothing uses (so a prompt without a swap does not carry the identity nodes)."""
    used, changed = {k for k, v in prompt.items() if v["class_type"] in ("PreviewImage", "SaveImage",
                                                                                 "SimSwapSaveImageLabelled")}, True
    while changed:
        changed = False
        for k in list(used):
            for val in prompt[k]["inputs"].values():
                if isinstance(val, list) and len(val) == 2 and isinstance(val[0], str) and val[0] not in used:
                    used.add(val[0])
                    changed = True
    return {k: v for k, v in prompt.items() if k in used}


_TAG = [0]


def assert_server_still_works(server):
    assert server.alive(), "the ComfyUI process died"
    _TAG[0] += 1
    entry = server.run(prune(small_ok_prompt(_TAG[0])), timeout=120)
    assert server.output_images(entry, "out"), "the follow-up prompt gave no preview"


def execution_error(entry: dict) -> dict:
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors, f"no execution_error in {entry['status']['messages']}"
    return errors[0]


def test_wrong_widget_values_are_validation_errors(server):
    bad = {**loaders(threshold=5.0), **swap_prompt(["src", 0], faces="everyone")}
    status, data = server.queue(bad)
    assert status == 400, data
    assert data["error"]["type"] == "prompt_outputs_failed_validation"
    kinds = {(nid, e["type"], e["extra_info"]["input_name"])
             for nid, ne in data["node_errors"].items() for e in ne["errors"]}
    assert ("d", "value_bigger_than_max", "threshold") in kinds, kinds
    assert any(is_not_in_list_error(e, "faces", "everyone") for e in data["node_errors"]["swap"]["errors"]), data
    # face numbers are checked before anything runs (validate_inputs), with the reason
    status, data = server.queue({**loaders(), **swap_prompt(["src", 0], faces="index", face_index="first")})
    assert status == 400, data
    errs = data["node_errors"]["swap"]["errors"]
    assert all(e["type"] == "custom_validation_failed" for e in errs) and "first" in json.dumps(errs), errs
    assert_server_still_works(server)


def test_missing_model_file_is_a_node_error(server):
    bad = {**loaders(gen="no_such_net_G.pth"), **swap_prompt(["src", 0])}
    status, data = server.queue(bad)
    assert status == 400, data
    errs = data["node_errors"]["g"]["errors"]
    assert any(is_not_in_list_error(e, "generator_name", "no_such_net_G.pth") for e in errs), errs
    assert_server_still_works(server)


def test_broken_model_file_is_refused_naming_it(server):
    """A file that is not a generator is left out of the list (its header is read); a workflow naming it anyway
    is refused before anything runs, saying what the file is."""
    path = server.models_dir / "simswap" / "broken_net_G.pth"
    path.write_bytes(b"this is not a checkpoint" * 10)
    try:
        assert "broken_net_G.pth" not in choices(server.object_info(), "SimSwapGeneratorLoader", "generator_name")
        status, data = server.queue({**loaders(gen="broken_net_G.pth"), **swap_prompt(["src", 0])})
        assert status == 400, data
        errs = data["node_errors"]["g"]["errors"]
        assert any(is_not_in_list_error(e, "generator_name", "broken_net_G.pth") for e in errs), errs
    finally:
        path.unlink()
    assert_server_still_works(server)


def test_no_face_with_error_option_is_a_node_error(server):
    entry = server.run({**loaders(), **EMPTY, **swap_prompt(["empty", 0], if_no_face="error")}, expect="error")
    err = execution_error(entry)
    assert err["node_type"] == "SimSwapSwap"
    assert "face" in err["exception_message"].lower() and "0" in err["exception_message"]
    # the same frames with if_no_face = keep come back unchanged, with an empty mask
    entry = server.run({**loaders(), **EMPTY, **swap_prompt(["empty", 0], if_no_face="keep")})
    frames = server.output_images(entry, "out")
    assert len(frames) == 2 and all(abs(int(f.mean()) - 51) <= 1 for f in frames)
    assert_server_still_works(server)


def test_bad_text_and_missing_inputs_are_node_errors(server):
    entry = server.run({**loaders(), **swap_prompt(["src", 0], faces="reference")}, expect="error")
    assert "reference" in execution_error(entry)["exception_message"]
    entry = server.run({**loaders(), **swap_prompt(["src", 0], mask="parsing")}, expect="error")
    assert "parser" in execution_error(entry)["exception_message"]
    entry = server.run({**loaders(), **EMPTY, "id": {**loaders()["id"], "inputs": {
        **loaders()["id"]["inputs"], "source_images": ["empty", 0]}}, **swap_prompt(["src", 0])}, expect="error")
    err = execution_error(entry)
    assert err["node_type"] == "SimSwapExtractIdentity" and "no face" in err["exception_message"]
    assert_server_still_works(server)


def test_parsing_mask_with_parser_and_reference_selection(server):
    """The optional parser loader and the reference-face mode, end to end (seeded weights)."""
    prompt = {**loaders(), **swap_prompt(["src", 0], faces="reference", reference=["id", 0],
                                         options=["opt", 0], mask="parsing", parser=["p", 0]),
              "opt": {"class_type": "SimSwapSwapOptions", "inputs": {
                  "mask_regions": "skin,nose", "mask_grow": 0.0, "mask_feather": "auto", "paste_mode": "default",
                  "color_match": False, "batch_size": 8, "reference_threshold": 1.0, "temporal_smoothing": 0.0}},
              "p": {"class_type": "SimSwapParserLoader", "inputs": {"parser_name": "79999_iter.pth"}},
              "m": {"class_type": "MaskToImage", "inputs": {"mask": ["swap", 1]}},
              "mout": {"class_type": "PreviewImage", "inputs": {"images": ["m", 0]}}}
    entry = server.run(prompt, timeout=180)
    out, mask = server.output_images(entry, "out"), server.output_images(entry, "mout")
    assert len(out) == 1 and out[0].shape == (512, 512, 3) and mask[0].shape[:2] == (512, 512)


def test_cancelled_batch_stops_promptly(server):
    """Queue a long batch, POST /interrupt once it runs, and check it ends interrupted long before it would
    have finished; the server then keeps working."""
    frames = 120
    prompt = {**loaders(),
              "small": {"class_type": "ImageScale", "inputs": {"image": ["src", 0], "upscale_method": "area",
                                                               "width": 256, "height": 256, "crop": "disabled"}},
              "batch": {"class_type": "RepeatImageBatch", "inputs": {"image": ["small", 0], "amount": frames}},
              **swap_prompt(["batch", 0], batch_size=1, order="score")}
    # warm up the loaders and the identity so the timing below is only the swap loop
    server.run(prune({**loaders(), "out": {"class_type": "PreviewImage", "inputs": {"images": ["src", 0]}}}))
    status, data = server.queue(prompt)
    assert status == 200, data
    pid = data["prompt_id"]
    t_queue = time.monotonic()
    per_frame = None
    try:
        import websocket  # websocket-client (test extra): wait for the swap's own progress events
    except ImportError:
        websocket = None
    if websocket is not None:
        ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}",
                                         timeout=120)
        try:
            first = None
            while True:
                msg = ws.recv()
                if not isinstance(msg, str):
                    continue
                m = json.loads(msg)
                d = m.get("data", {})
                if m["type"] == "progress" and d.get("prompt_id") == pid and d.get("node") == "swap":
                    steps = d["max"] // frames  # bar units per frame (nodes._common.PROGRESS_STEPS)
                    if first is None:
                        first = (time.monotonic(), d["value"])
                    elif d["value"] >= first[1] + 2 * steps:
                        per_frame = (time.monotonic() - first[0]) / (d["value"] - first[1]) * steps
                        assert d["max"] == frames * steps
                        break
        finally:
            ws.close()
    else:
        while pid not in server.running_ids():
            time.sleep(0.2)
        time.sleep(8)
    t_int = time.monotonic()
    server.interrupt()
    entry = server.wait(pid, timeout=120)
    stopped_after = time.monotonic() - t_int
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds
    assert "execution_success" not in kinds
    full = (per_frame or 1.0) * frames
    print(f"interrupt: {per_frame=} {stopped_after=:.2f}s, full batch would take ~{full:.0f}s")
    assert stopped_after < max(15.0, 0.1 * full), (stopped_after, per_frame)
    assert time.monotonic() - t_queue < 0.5 * full + 60
    assert_server_still_works(server)


def test_models_survive_comfyui_unloading_them(server):
    """The generator and encoder are registered with ComfyUI's model management: POST /free (what ComfyUI does
    to make room for a diffusion model) unloads them, and the next run loads them again."""
    prompt = {**loaders(), **swap_prompt(["src", 0], mask_grow=0.01)}
    first = server.output_images(server.run(prompt), "out")
    status, _ = server.request("POST", "/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    time.sleep(1.0)  # /free is handled between prompts by the prompt worker
    prompt["swap"]["inputs"]["mask_grow"] = 0.011  # not cached: the swap really runs again
    second = server.output_images(server.run(prompt), "out")
    assert len(first) == len(second) == 1 and first[0].shape == second[0].shape
    assert abs(int(first[0].astype(int).mean()) - int(second[0].astype(int).mean())) <= 1


def test_512_generator_works_at_512(server):
    """The 512 beta generator (crop size auto = 512, FFHQ alignment): the identity and the crops follow it."""
    prompt = {**loaders(gen="550000_net_G.pth"), **swap_prompt(["src", 0], faces="largest"),
              "split": {"class_type": "SimSwapSplitFaceCrops", "inputs": {"face_crops": ["swap", 2]}},
              "crops": {"class_type": "PreviewImage", "inputs": {"images": ["split", 0]}}}
    entry = server.run(prompt, timeout=240)
    crops = server.output_images(entry, "crops")
    assert len(crops) == 1 and crops[0].shape == (512, 512, 3)
    assert server.output_images(entry, "out")[0].shape == (512, 512, 3)
