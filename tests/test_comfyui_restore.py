"""Face restoration in a real ComfyUI: seeded GFPGAN in models/facerestore_models, a seeded 2x upscaler in
models/upscale_models; Swap -> Restore Faces -> Paste Faces changes the frame only inside the paste mask; our
loader's UPSCALE_MODEL works in the core "Upscale Image (using Model)" and the core "Load Upscale Model" output works
in "SimSwap Restore Faces"."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from comfy_harness import server  # noqa: F401 (fixture)

pytest.importorskip("spandrel")

GFPGAN_NAME = "GFPGANv1.4.pth"
UPSCALER_NAME = "2x_Compact_seeded.pth"


@pytest.fixture(scope="module")
def info(server):
    """/object_info after the seeded restoration models were written (the file lists are read at object_info
    time, so they show up without a restart)."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(11)
    gfpgan = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                    fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    torch.save({"params_ema": gfpgan.state_dict()}, server.models_dir / "facerestore_models" / GFPGAN_NAME)
    del gfpgan
    torch.manual_seed(12)
    compact = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")
    torch.save({"params": compact.state_dict()}, server.models_dir / "upscale_models" / UPSCALER_NAME)
    return server.object_info()


def _options(info: dict, node: str, name: str) -> list:
    spec = info[node]["input"]["required"][name]
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def _auto_inputs(info: dict, node: str, links: dict, **overrides) -> dict:
    """The required inputs of ``node`` from /object_info: links by socket type, widgets at their defaults (so the
    prompt follows the node's current schema), then ``overrides``."""
    inputs: dict = {}
    for name, spec in info[node]["input"]["required"].items():
        typ, opts = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(typ, str) and typ in links:
            inputs[name] = links[typ]
        elif "default" in opts:
            inputs[name] = opts["default"]
        elif typ == "COMBO":
            inputs[name] = opts["options"][0]
        elif isinstance(typ, list):
            inputs[name] = typ[0]
    inputs.update(overrides)
    return inputs


def _swap_nodes(info: dict) -> tuple[dict, int]:
    """Loaders, identity and a one-face swap of astronaut.png, built from /object_info, and the index of the
    swap's SIMSWAP_FACE_CROPS output."""
    links = {"IMAGE": ["src", 0], "SIMSWAP_IDENTITY": ["id", 0], "SIMSWAP_GENERATOR": ["g", 0],
             "SIMSWAP_ARCFACE": ["a", 0], "SIMSWAP_DETECTOR": ["d", 0]}
    nodes = {
        "g": {"class_type": "SimSwapGeneratorLoader",
              "inputs": _auto_inputs(info, "SimSwapGeneratorLoader", links, generator_name="latest_net_G.pth")},
        "a": {"class_type": "SimSwapArcFaceLoader",
              "inputs": _auto_inputs(info, "SimSwapArcFaceLoader", links, arcface_name="arcface_checkpoint.tar")},
        "d": {"class_type": "SimSwapDetectorLoader",
              "inputs": _auto_inputs(info, "SimSwapDetectorLoader", links, detector="yunet (offline default)")},
        "src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "id": {"class_type": "SimSwapExtractIdentity", "inputs": _auto_inputs(info, "SimSwapExtractIdentity", links)},
        "swap": {"class_type": "SimSwapSwap", "inputs": _auto_inputs(info, "SimSwapSwap", links, faces="largest",
                                                                  identity=["id", 0])},  # optional since the map
    }
    return nodes, info["SimSwapSwap"]["output"].index("SIMSWAP_FACE_CROPS")


def _paste(name: str, crops_from: str) -> dict:
    return {
        f"split_{name}": {"class_type": "SimSwapSplitFaceCrops", "inputs": {"face_crops": crops_from}},
        f"paste_{name}": {"class_type": "SimSwapPasteFaces",
                          "inputs": {"images": ["src", 0], "crops": [f"split_{name}", 0],
                                     "alignment": [f"split_{name}", 1], "crop_masks": [f"split_{name}", 2],
                                     "paste_mode": "default", "color_match": False, "feather": 0.12,
                                     "erode": 0.04}},
        f"out_{name}": {"class_type": "PreviewImage", "inputs": {"images": [f"paste_{name}", 0]}},
        f"mask_{name}": {"class_type": "MaskToImage", "inputs": {"mask": [f"paste_{name}", 1]}},
        f"outmask_{name}": {"class_type": "PreviewImage", "inputs": {"images": [f"mask_{name}", 0]}},
    }


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    """Boolean [H,W] mask grown by ``r`` pixels (square neighbourhood)."""
    padded = np.pad(mask, r)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def test_restorer_lists_and_node_schema(info):
    names = _options(info, "SimSwapLoadFaceRestorer", "model_name")
    assert f"facerestore_models/{GFPGAN_NAME}" in names and f"upscale_models/{UPSCALER_NAME}" in names
    assert names.index(f"facerestore_models/{GFPGAN_NAME}") < names.index(f"upscale_models/{UPSCALER_NAME}")
    assert info["SimSwapLoadFaceRestorer"]["output"] == ["UPSCALE_MODEL"]
    assert "non-commercial" in info["SimSwapLoadFaceRestorer"]["description"]
    req = info["SimSwapRestoreFaces"]["input"]["required"]
    assert req["restore_model"][0] == "UPSCALE_MODEL" and req["face_crops"][0] == "SIMSWAP_FACE_CROPS"
    assert info["SimSwapRestoreFaces"]["output"] == ["SIMSWAP_FACE_CROPS"]
    # the core loader lists our seeded upscaler too: the same folder
    assert UPSCALER_NAME in _options(info, "UpscaleModelLoader", "model_name")


@pytest.mark.slow  # ~60 s on two CPU cores: a swap plus GFPGAN at 512 inside the server
def test_swap_restore_paste_changes_only_inside_the_mask(server, info):
    nodes, crops_out = _swap_nodes(info)
    prompt = {
        **nodes,
        "rm": {"class_type": "SimSwapLoadFaceRestorer", "inputs": {"model_name": f"facerestore_models/{GFPGAN_NAME}"}},
        "restore": {"class_type": "SimSwapRestoreFaces",
                    "inputs": {"face_crops": ["swap", crops_out], "restore_model": ["rm", 0], "visibility": 1.0,
                               "codeformer_fidelity": 0.5}},
        **_paste("plain", ["swap", crops_out]),
        **_paste("restored", ["restore", 0]),
    }
    entry = server.run(prompt, timeout=400)
    plain = server.output_images(entry, "out_plain")[0].astype(int)
    restored = server.output_images(entry, "out_restored")[0].astype(int)
    mask = server.output_images(entry, "outmask_restored")[0][..., 0]
    mask_plain = server.output_images(entry, "outmask_plain")[0][..., 0]
    assert plain.shape == restored.shape and mask.shape == plain.shape[:2]
    assert np.array_equal(mask, mask_plain)  # same alignment and masks: the restored crops kept them
    inside = mask > 0
    assert inside.any() and (~inside).any()
    diff = np.abs(plain - restored).max(-1)
    # a mask value below 0.5/255 shows as 0 in the 8-bit preview yet lets a change of under half a level through,
    # which rounding can turn into 1 level: outside the 8-bit mask at most 1, and 0 away from the mask's edge
    assert diff[~inside].max() <= 1, f"restoration changed pixels outside the paste mask by {diff[~inside].max()}"
    far = ~_grow(inside, 3)
    assert far.any() and (diff[far] == 0).all(), "restoration changed pixels away from the paste mask"
    assert diff[inside].max() > 10, "restoration changed nothing inside the mask"
    # the node tells what it did
    text = entry["outputs"].get("restore", {}).get("text", [])
    assert text and "restored 1 face" in text[0] and "GFPGAN" in text[0]


def test_core_upscale_nodes_interoperate(server, info):
    """Our loader's output in the core 'Upscale Image (using Model)', the core loader's output in our node."""
    nodes, crops_out = _swap_nodes(info)
    prompt = {
        **nodes,
        "ours": {"class_type": "SimSwapLoadFaceRestorer", "inputs": {"model_name": f"upscale_models/{UPSCALER_NAME}"}},
        "core": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": UPSCALER_NAME}},
        "up": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["ours", 0], "image": ["src", 0]}},
        "up_out": {"class_type": "PreviewImage", "inputs": {"images": ["up", 0]}},
        "restore": {"class_type": "SimSwapRestoreFaces",
                    "inputs": {"face_crops": ["swap", crops_out], "restore_model": ["core", 0], "visibility": 0.5,
                               "codeformer_fidelity": 0.5}},
        **_paste("core", ["restore", 0]),
    }
    entry = server.run(prompt, timeout=300)
    up = server.output_images(entry, "up_out")[0]
    src = server.output_images(entry, "out_core")[0]
    assert up.shape[0] == 2 * src.shape[0] and up.shape[1] == 2 * src.shape[1]
    text = entry["outputs"].get("restore", {}).get("text", [])
    assert text and "visibility 0.50" in text[0] and "Compact" in text[0]


def test_bad_restorer_file_is_a_node_error_not_a_dead_server(server, info):
    bad = server.models_dir / "facerestore_models" / "broken.pth"
    bad.write_bytes(b"this is not a model")
    try:
        assert "facerestore_models/broken.pth" in _options(server.object_info(), "SimSwapLoadFaceRestorer",
                                                           "model_name")
        prompt = {"rm": {"class_type": "SimSwapLoadFaceRestorer",
                         "inputs": {"model_name": "facerestore_models/broken.pth"}},
                  "src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
                  "up": {"class_type": "ImageUpscaleWithModel",
                         "inputs": {"upscale_model": ["rm", 0], "image": ["src", 0]}},
                  "out": {"class_type": "PreviewImage", "inputs": {"images": ["up", 0]}}}
        entry = server.run(prompt, expect="error")
        errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
        assert errors and errors[0]["node_type"] == "SimSwapLoadFaceRestorer", entry["status"]
        assert "broken.pth" in errors[0]["exception_message"] and "expected" in errors[0]["exception_message"]
        status, _ = server.request("GET", "/system_stats")
        assert status == 200
    finally:
        bad.unlink()


# ------------------------------------------------------------------------------------------------ without a server
def _compact_descriptor(seed: int = 5):
    from spandrel import ModelLoader
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")
    return ModelLoader().load_from_state_dict(net.state_dict()).eval()


def test_restore_faces_node_keeps_the_alignment_and_blends():
    """SimSwapRestoreFaces.execute as ComfyUI calls it: same alignment/mask objects, visibility 0 = the crops
    unchanged, 1 = make_restorer's output, ComfyUI's model management holds the network."""
    from comfy_harness import use_comfy_api

    use_comfy_api()
    from nodes._common import FaceCrops
    from nodes.restore import SimSwapRestoreFaces, make_restorer
    from simswap_core.errors import InputError

    model = _compact_descriptor()
    aligned, spec = object(), object()  # passed through untouched
    crops = torch.rand(3, 3, 40, 40)
    fc = FaceCrops(crops=crops, aligned=aligned, mask_spec=spec)  # type: ignore[arg-type]
    restorer = make_restorer(model)
    assert type(restorer).__name__ == "ComfyFaceRestorer"
    full = restorer(crops)
    out = SimSwapRestoreFaces.execute(face_crops=fc, restore_model=model, visibility=1.0, codeformer_fidelity=0.5)
    got = out.result[0]
    assert got.aligned is aligned and got.mask_spec is spec and got.crops.shape == crops.shape
    torch.testing.assert_close(got.crops, full, atol=1e-6, rtol=0)
    assert "restored 3 face(s)" in out.ui["text"][0]
    zero = SimSwapRestoreFaces.execute(face_crops=fc, restore_model=model, visibility=0.0).result[0]
    assert torch.equal(zero.crops, crops)
    half = SimSwapRestoreFaces.execute(face_crops=fc, restore_model=model, visibility=0.5).result[0]
    torch.testing.assert_close(half.crops, torch.lerp(crops, full, 0.5), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="restore_model"):
        make_restorer(None)
    with pytest.raises(InputError, match="restore_model"):
        make_restorer("GFPGANv1.4.pth")


def test_restorer_files_and_load_by_name(tmp_path):
    """The helpers other nodes use (Quick Swap): names as folder/file, GFPGAN first, a cached model per file
    version, and a missing name that says where models go."""
    from comfy_harness import use_comfy_api

    use_comfy_api()
    import folder_paths

    from nodes import restore as r
    from simswap_core.errors import MissingModelError

    face_dir, up_dir = tmp_path / "facerestore_models", tmp_path / "upscale_models"
    face_dir.mkdir()
    up_dir.mkdir()
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(1)
    sd = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu").state_dict()
    torch.save({"params": sd}, face_dir / "zz_restorer.pth")
    torch.save({"params": sd}, face_dir / "GFPGANv1.4.pth")  # named like GFPGAN: listed first (names only)
    torch.save(sd, up_dir / "2x_test.pth")
    (face_dir / "GPEN-BFR-512.onnx").write_bytes(b"onnx")  # ReActor's ONNX restorers are not listed
    r.register_restore_folders()
    folder_paths.add_model_folder_path(r.FACERESTORE_FOLDER, str(face_dir), is_default=True)
    folder_paths.add_model_folder_path(r.UPSCALE_FOLDER, str(up_dir), is_default=True)
    names = r.restorer_files()
    assert names[:2] == ["facerestore_models/GFPGANv1.4.pth", "facerestore_models/zz_restorer.pth"]
    assert "upscale_models/2x_test.pth" in names and not any(n.endswith(".onnx") for n in names)
    first = r.load_restorer_by_name("upscale_models/2x_test.pth")
    again = r.load_restorer_by_name("upscale_models/2x_test.pth")
    assert first.model is again.model and first.arch == "Compact"  # read once per file version
    out = first(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32)
    with pytest.raises(MissingModelError) as err:
        r.load_restorer_by_name("facerestore_models/missing.pth", widget="face_restore_model")
    assert "face_restore_model" in str(err.value) and str(face_dir) in str(err.value) and "GFPGAN" in str(err.value)
    assert r.SimSwapLoadFaceRestorer.validate_inputs("facerestore_models/missing.pth") is not True
    assert r.SimSwapLoadFaceRestorer.validate_inputs("upscale_models/2x_test.pth") is True
