"""'SimSwap Face Swap' in a real ComfyUI server: what it reports (node text in /history, the server log, the
"simswap.status" websocket event the toasts come from), the wording of its no-face error, the optional arcface,
old API prompts, face-by-face progress of a single photo, and Cancel within one generator call."""
from __future__ import annotations

import json
import time

import pytest

from comfy_harness import server, use_comfy_api  # noqa: F401 (fixtures)

use_comfy_api()

websocket = pytest.importorskip("websocket", reason="websocket-client (test extra) reads the server's events")


def loaders(threshold: float = 0.5) -> dict:
    return {
        "g": {"class_type": "SimSwapGeneratorLoader",
              "inputs": {"generator_name": "latest_net_G.pth", "variant": "auto", "crop_size": "auto"}},
        "a": {"class_type": "SimSwapArcFaceLoader", "inputs": {"arcface_name": "arcface_checkpoint.tar"}},
        "d": {"class_type": "SimSwapDetectorLoader",
              "inputs": {"detector": "yunet (offline default)", "threshold": threshold, "det_size": 640}},
        "src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "t1": {"class_type": "LoadImage", "inputs": {"image": "t1.jpg"}},
        "empty": {"class_type": "EmptyImage", "inputs": {"width": 256, "height": 256, "batch_size": 2,
                                                         "color": 3355443}},
        "id": {"class_type": "SimSwapExtractIdentity",
               "inputs": {"source_images": ["src", 0], "arcface": ["a", 0], "detector": ["d", 0],
                          "face": "largest", "face_index": "0", "order": "left-right", "combine": "mean",
                          "if_no_face": "error"}},
    }


def swap_prompt(images: list, extra: dict | None = None, **inputs) -> dict:
    """A pruned prompt: loaders (+ ``extra`` nodes), the swap (new widgets only, no arcface unless given) and a
    preview."""
    base = {"images": images, "identity": ["id", 0], "generator": ["g", 0], "detector": ["d", 0], "faces": "all",
            "face_index": "0", "order": "left-right", "mask": "box", "if_no_face": "keep"}
    prompt = {**loaders(), **(extra or {}), "swap": {"class_type": "SimSwapSwap", "inputs": {**base, **inputs}},
              "out": {"class_type": "PreviewImage", "inputs": {"images": ["swap", 0]}}}
    used, todo = set(), ["out"]
    while todo:
        k = todo.pop()
        used.add(k)
        for v in prompt[k]["inputs"].values():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] not in used:
                todo.append(v[0])
    return {k: v for k, v in prompt.items() if k in used}


class Events:
    """The server's websocket messages for this test's client, with arrival times."""

    def __init__(self, server):
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}",
                                              timeout=300)
        self.seen: list[tuple[float, str, dict]] = []

    def next(self) -> tuple[float, str, dict]:
        while True:
            msg = self.ws.recv()
            if isinstance(msg, str):
                m = json.loads(msg)
                item = (time.monotonic(), m.get("type", ""), m.get("data") or {})
                self.seen.append(item)
                return item

    def until(self, pred, timeout: float = 300) -> tuple[float, str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            item = self.next()
            if pred(*item):
                return item
        raise TimeoutError("websocket: the expected event did not come")

    def close(self) -> None:
        self.ws.close()


def node_text(entry: dict, node: str = "swap") -> list[str]:
    return entry["outputs"].get(node, {}).get("text", [])


def execution_error(entry: dict) -> dict:
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors, f"no execution_error in {entry['status']['messages']}"
    return errors[0]


def test_swap_node_schema_is_compact(server):
    info = server.object_info()["SimSwapSwap"]
    assert info["display_name"] == "SimSwap Face Swap"
    req, opt = info["input"]["required"], info["input"]["optional"]
    assert "arcface" in opt and "arcface" not in req
    widgets = [k for k, v in {**req, **opt}.items() if v[0] in ("COMBO", "STRING", "FLOAT", "INT", "BOOLEAN")]
    assert widgets == ["faces", "face_index", "order", "mask", "if_no_face", "identity_strength",
                       "restore_visibility", "gender"]
    assert req["face_index"][0] == "STRING"
    assert opt["restore_model"][0] == "UPSCALE_MODEL" and opt["gender_model"][0] == "SIMSWAP_GENDER_MODEL"
    options = server.object_info()["SimSwapSwapOptions"]["input"]["required"]
    assert options["mask_feather"][1]["options"][0] == "auto" and options["mask_feather"][1]["default"] == "auto"
    assert options["mask_regions"][1]["display_name"] == "regions"


def test_full_swap_says_so_and_a_photo_advances_face_by_face(server):
    server.run(swap_prompt(["src", 0]))  # warm: models loaded, identity cached
    ev = Events(server)
    try:
        status, data = server.queue(swap_prompt(["t1", 0]))
        assert status == 200, data
        pid = data["prompt_id"]
        ev.until(lambda t, k, d: k == "executing" and d.get("prompt_id") == pid and d.get("node") is None)
    finally:
        ev.close()
    entry = server.wait(pid)
    assert node_text(entry) == ["swapped 6 faces in 1 frame"]
    values = [d["value"] for _, k, d in ev.seen if k == "progress" and d.get("node") == "swap"]
    top = [d["max"] for _, k, d in ev.seen if k == "progress" and d.get("node") == "swap"][0]
    between = sorted({v for v in values if 0 < v < top})
    assert len(between) >= 5, f"the bar of a 6-face photo should move face by face: {values} of {top}"


def test_nothing_swapped_is_reported_on_the_node_in_the_log_and_as_a_toast(server):
    ev = Events(server)
    try:
        entry_empty = server.run(swap_prompt(["empty", 0]))
        entry_t1 = server.run(swap_prompt(["t1", 0], faces="index", face_index="9"))
        toasts = []
        deadline = time.monotonic() + 30
        while len(toasts) < 2 and time.monotonic() < deadline:
            _, kind, d = ev.next()
            if kind == "simswap.status":
                toasts.append(d)
    finally:
        ev.close()
    (text,) = node_text(entry_empty)
    assert text == "swapped 0 faces in 0 of 2 frames; nothing swapped in frames 0, 1: no face detected", text
    (text9,) = node_text(entry_t1)
    assert "nothing swapped in frame 0: face_index 9 not found: the frame has 6 faces, numbered 0-5" in text9
    assert [t["level"] for t in toasts] == ["warning", "warning"], toasts
    assert "no face detected" in toasts[0]["message"] and "face_index 9" in toasts[1]["message"]
    assert toasts[0]["node"] == "swap"
    log = server.log_text()
    assert "[SimSwap] node swap: SimSwap Face Swap: swapped 0 faces in 0 of 2 frames" in log
    assert "face_index 9 not found" in log


def test_no_face_error_speaks_of_the_widget(server):
    entry = server.run(swap_prompt(["t1", 0], faces="index", face_index="9", if_no_face="error"),
                       expect="error")
    err = execution_error(entry)
    msg = err["exception_message"]
    assert err["node_type"] == "SimSwapSwap"
    assert "face_index 9 not found" in msg and "Set 'if_no_face' to keep" in msg, msg
    assert "if_no_face='keep'" not in msg and "pass " not in msg, msg


def test_arcface_only_for_reference_and_old_api_prompts_still_run(server):
    # no arcface: a plain swap works; faces = reference says what is missing
    entry = server.run(swap_prompt(["src", 0]))
    assert node_text(entry) == ["swapped 1 face in 1 frame"]
    entry = server.run(swap_prompt(["src", 0], faces="reference", reference=["id", 0]), expect="error")
    msg = execution_error(entry)["exception_message"]
    assert "arcface" in msg and "reference" in msg, msg
    entry = server.run(swap_prompt(["src", 0], identity_strength=0.5), expect="error")
    assert "arcface" in execution_error(entry)["exception_message"]
    entry = server.run(swap_prompt(["src", 0], faces="reference", reference=["id", 0], arcface=["a", 0],
                                   identity_strength=0.5))
    assert node_text(entry) == ["swapped 1 face in 1 frame"]
    # a prompt saved before the options node (the widgets now in SimSwap Swap Options, arcface connected)
    old = {"arcface": ["a", 0], "mask_regions": "skin,brows,eyes,glasses,nose,lips,mouth", "mask_grow": 0.0,
           "mask_feather": -1.0, "paste_mode": "default", "color_match": False, "batch_size": 8,
           "reference_threshold": 0.03, "temporal_smoothing": 0.0}
    entry = server.run(swap_prompt(["src", 0], **old))
    assert node_text(entry) == ["swapped 1 face in 1 frame"]
    # gender filter without a gender model: a clear error naming the input
    entry = server.run(swap_prompt(["src", 0], gender="female"), expect="error")
    assert "gender_model" in execution_error(entry)["exception_message"]


def test_cancel_stops_a_single_photo_within_one_generator_call(server):
    """A 6-face photo (t1.jpg): /interrupt once two faces are done; the swap must end after at most the call in
    flight (bound: 3 generator calls, measured in this run), not after the rest of the frame."""
    server.run(swap_prompt(["src", 0], face_index="1"))  # warm (a new input value: the swap itself re-runs)
    ev = Events(server)
    try:
        status, data = server.queue(swap_prompt(["t1", 0], order="size"))
        assert status == 200, data
        pid = data["prompt_id"]
        steps = []
        while len(steps) < 3:
            t, kind, d = ev.next()
            if kind == "progress" and d.get("prompt_id") == pid and d.get("node") == "swap" and d["value"] > 0:
                if not steps or d["value"] > steps[-1][1]:
                    steps.append((t, d["value"]))
        per_call = (steps[2][0] - steps[0][0]) / 2  # two generator calls
        t_int = time.monotonic()
        server.interrupt()
        t_end, _, _ = ev.until(lambda t, k, d: k in ("execution_interrupted", "execution_success",
                                                      "execution_error") and d.get("prompt_id") == pid)
        after = [d["value"] for t, k, d in ev.seen
                 if t > t_int and k == "progress" and d.get("node") == "swap"]
    finally:
        ev.close()
    entry = server.wait(pid)
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds, kinds
    stopped_after = t_end - t_int
    print(f"cancel of a 6-face photo: one generator call {per_call:.2f}s, stopped after {stopped_after:.2f}s, "
          f"progress events after the interrupt: {after}")
    assert len(after) <= 2, after  # the call in flight (and one event already on its way)
    assert stopped_after < 3 * per_call, (stopped_after, per_call)


def test_restore_model_in_the_swap_and_its_visibility(server):
    """A seeded 2x Compact upscaler (spandrel) as the swap's restore_model: the swapped face changes, pixels
    outside the mask stay, visibility 0 gives the plain swap."""
    spandrel = pytest.importorskip("spandrel.architectures.Compact")
    import numpy as np
    import torch

    name = "2x_Compact_swapnode.pth"
    torch.manual_seed(21)
    net = spandrel.Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")
    (server.models_dir / "upscale_models").mkdir(parents=True, exist_ok=True)
    torch.save({"params": net.state_dict()}, server.models_dir / "upscale_models" / name)
    server.object_info()  # the file lists are read afresh
    rm = {"rm": {"class_type": "SimSwapLoadFaceRestorer", "inputs": {"model_name": f"upscale_models/{name}"}}}

    def run(**inputs) -> np.ndarray:
        entry = server.run(swap_prompt(["src", 0], extra=rm, **inputs))
        assert node_text(entry) == ["swapped 1 face in 1 frame"]
        (img,) = server.output_images(entry, "out")
        return img.astype(np.int16)

    plain = run()
    restored = run(restore_model=["rm", 0], restore_visibility=1.0)
    off = run(restore_model=["rm", 0], restore_visibility=0.0)
    assert np.array_equal(off, plain)
    changed = np.abs(restored - plain).max(axis=2) > 2
    assert 0.01 < changed.mean() < 0.5, changed.mean()  # the face went through the restorer, the rest did not


def test_status_extension_is_served(server):
    from comfy_harness import PACK_NAME

    listed = server.get("/extensions")
    path = f"/extensions/{PACK_NAME}/simswap_status.js"
    assert path in listed, listed
    js = server.get_bytes(path).decode()
    assert "simswap.status" in js and "onExecuted" in js


def test_several_identities_onto_several_faces(server):
    """Extract Identity with combine = each (two source faces of t1.jpg) -> the swap's faces 2 and 3."""
    ids = {"ids": {"class_type": "SimSwapExtractIdentity",
                   "inputs": {"source_images": ["t1", 0], "arcface": ["a", 0], "detector": ["d", 0],
                              "face": "index", "face_index": "0,1", "order": "left-right", "combine": "each",
                              "if_no_face": "error"}}}
    entry = server.run(swap_prompt(["t1", 0], extra=ids, identity=["ids", 0], faces="index", face_index="2,3"))
    assert node_text(entry) == ["swapped 2 faces in 1 frame"]
    entry = server.run(swap_prompt(["src", 0], extra=ids, identity=["ids", 0], faces="largest"))
    assert node_text(entry) == ["swapped 1 face in 1 frame (only the first of 2 identities is used with faces = "
                                "largest)"]
