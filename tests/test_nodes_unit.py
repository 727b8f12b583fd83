"""The node classes without a ComfyUI server: V3 declarations (category, tooltips, SIMSWAP_ types), widget
parsing and validation, and Swap -> Split -> Paste chains on a real photo with seeded weights. The V3 classes
need ComfyUI's ``comfy_api`` (comfy_harness.use_comfy_api puts the installed tree on sys.path); nodes are called
as ComfyUI calls them, ``Node.execute(...)``."""
from __future__ import annotations

import asyncio
import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from comfy_harness import use_comfy_api

use_comfy_api()

from comfy_api.latest import io  # noqa: E402

from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, NODES  # noqa: E402
from nodes._common import FaceCrops, ManagedModel  # noqa: E402
from nodes.selection import make_mask_spec, make_selection, parse_indices  # noqa: E402

# + ComfyUI's own
CORE_TYPES = {"IMAGE", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "UPSCALE_MODEL", "VIDEO", "*"}


@pytest.mark.parametrize("name", sorted(NODE_CLASS_MAPPINGS))
def test_node_declaration(name):
    cls = NODE_CLASS_MAPPINGS[name]
    assert issubclass(cls, io.ComfyNode)
    schema = cls.GET_SCHEMA()  # what ComfyUI does on load (validates the schema too)
    assert schema.node_id == name and name.startswith("SimSwap")
    assert schema.display_name == NODE_DISPLAY_NAME_MAPPINGS[name] and schema.display_name.startswith("SimSwap")
    assert schema.category.split("/")[0] == "SimSwap"
    assert schema.description
    for inp in schema.inputs:
        assert inp.tooltip, f"{name}.{inp.id}: no tooltip"
        typ = inp.get_io_type()
        assert typ in CORE_TYPES or typ.startswith("SIMSWAP_"), f"{name}.{inp.id}: {typ}"
        if isinstance(inp, io.Combo.Input) and inp.default is not None:
            assert inp.default in inp.options, f"{name}.{inp.id}: default not among the choices"
    for out in schema.outputs:
        assert out.display_name and out.tooltip, f"{name}: output {out.io_type} without name or tooltip"
        assert out.io_type in CORE_TYPES or out.io_type.startswith("SIMSWAP_"), f"{name}: {out.io_type}"
    # execute takes every input by name; optional ones have Python defaults (old prompts lack them)
    params = inspect.signature(cls.execute).parameters
    for inp in schema.inputs:
        assert inp.id in params, f"{name}.execute has no parameter {inp.id!r}"
        if inp.optional:
            assert params[inp.id].default is not inspect.Parameter.empty, f"{name}.{inp.id}"
    # validate_inputs names only inputs of the node (each named input skips ComfyUI's own range check)
    if "validate_inputs" in cls.__dict__:
        for arg in inspect.signature(cls.validate_inputs).parameters:
            assert arg in params, f"{name}.validate_inputs({arg})"


def test_extension_registers_the_folders_and_lists_every_node():
    import folder_paths

    from nodes import comfy_entrypoint

    ext = asyncio.run(comfy_entrypoint())
    assert asyncio.run(ext.get_node_list()) == NODES and len(NODES) == len(NODE_CLASS_MAPPINGS) >= 14
    assert "simswap" in folder_paths.folder_names_and_paths and "insightface" in folder_paths.folder_names_and_paths
    assert ".onnx" in folder_paths.folder_names_and_paths["insightface"][1]


def test_combo_values_are_validated_before_running():
    from nodes.loaders import SimSwapDetectorLoader
    from nodes.swap import SimSwapSwap

    ok = dict(faces="all", face_index="0", order="left-right", mask="box", if_no_face="keep", gender="any")
    assert SimSwapSwap.validate_inputs(**ok) is True
    assert SimSwapSwap.validate_inputs(**{**ok, "faces": None}) is True  # a linked (converted) widget
    err = SimSwapSwap.validate_inputs(**{**ok, "faces": "everyone"})
    assert isinstance(err, str) and "faces" in err and "everyone" in err
    assert "face_index" in SimSwapSwap.validate_inputs(**{**ok, "face_index": "first"})
    assert "no_such.onnx" in SimSwapDetectorLoader.validate_inputs(detector="no_such.onnx")


def test_widget_parsing_errors_are_clear():
    from simswap_core.errors import InputError

    assert parse_indices("0, 2;3") == (0, 2, 3)
    for bad in ("", "x", "-1", "1,,a"):
        with pytest.raises(InputError, match="face_index"):
            parse_indices(bad)
    assert make_selection("index", "1,0", "size").indices == (1, 0)
    with pytest.raises(InputError):
        make_selection("bogus")
    spec = make_mask_spec("ellipse", " skin , nose ", 0.05, -1.0)
    assert spec.kind == "ellipse" and spec.regions == ("skin", "nose") and spec.feather is None
    with pytest.raises(InputError, match="mask_regions"):
        make_mask_spec("parsing", " , ", 0.0, 0.0)


# ------------------------------------------------------------------------------------------------ a real chain
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from simswap_core import load_arcface, load_generator
    from simswap_core.detection import load_detector
    from simswap_core.models.seeded import write_seeded_checkpoints

    files = write_seeded_checkpoints(tmp_path_factory.mktemp("seeded_nodes"), kinds=("g224", "arcface"))
    gen = load_generator(files["g224"])
    return (ManagedModel(gen, kind="generator", name="g224", path=str(files["g224"]), crop_size=224),
            ManagedModel(load_arcface(files["arcface"]), kind="arcface", name="arc", path=str(files["arcface"])),
            load_detector("yunet"))


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    path = Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png"
    img = np.asarray(Image.open(path).convert("RGB").resize((256, 256)), dtype=np.float32) / 255.0
    return torch.from_numpy(img)[None]  # ComfyUI IMAGE [1,H,W,3]


def test_swap_split_paste_chain(models, astronaut):
    from nodes.faces import SimSwapPasteFaces, SimSwapSplitFaceCrops
    from nodes.identity import SimSwapExtractIdentity
    from nodes.swap import SimSwapSwap, SwapSettings

    gen, arc, det = models
    (identity,) = SimSwapExtractIdentity.execute(astronaut, arc, det, "largest", 0, "left-right", "mean", "error",
                                                 generator=gen).args
    blank = torch.full_like(astronaut, 0.3)
    frames = torch.cat([blank, astronaut, blank])  # order must be kept
    images, mask, crops = SimSwapSwap.execute(frames, identity, gen, det, "all", "0", "left-right", "box", "keep",
                                              arcface=arc, options=SwapSettings(mask_regions="skin", batch_size=2)).args
    assert images.shape == frames.shape and mask.shape == frames.shape[:3]
    assert mask[0].max() == 0 and mask[2].max() == 0 and mask[1].max() > 0.9
    assert torch.equal(images[0], frames[0]) and torch.equal(images[2], frames[2])
    outside = mask[1] == 0
    assert torch.equal(images[1][outside], frames[1][outside])
    assert isinstance(crops, FaceCrops) and len(crops) == 1
    assert crops.aligned.frame_index.tolist() == [1]

    split_crops, alignment, crop_masks, originals = SimSwapSplitFaceCrops.execute(crops).args
    assert split_crops.shape == (1, 224, 224, 3) and originals.shape == (1, 224, 224, 3)
    assert crop_masks.shape == (1, 224, 224)
    # a "2x restorer": crops come back at twice the size and are resized to the alignment's crop size
    big = torch.nn.functional.interpolate(split_crops.movedim(-1, 1), scale_factor=2, mode="bilinear")
    pasted, pmask = SimSwapPasteFaces.execute(frames, big.movedim(1, -1), alignment, "default", False, 0.12,
                                              0.04, crop_masks=crop_masks).args
    assert pasted.shape == frames.shape and pmask.shape == mask.shape
    assert pmask[0].max() == 0 and pmask[2].max() == 0 and pmask[1].max() > 0.5
    keep = pmask[1] == 0
    assert torch.equal(pasted[1][keep], frames[1][keep])
    assert (pasted[1] - frames[1]).abs().max() > 0.05


def test_paste_faces_rejects_mismatched_inputs(models, astronaut):
    from nodes.detect import SimSwapDetectFaces
    from nodes.faces import SimSwapAlignFaces, SimSwapPasteFaces, SimSwapSplitFaceCrops
    from simswap_core.errors import InputError

    _gen, _arc, det = models
    faces, preview, count, faces_json = SimSwapDetectFaces.execute(astronaut, det, "left-right").args
    assert count == 1 and preview.shape == astronaut.shape and '"index": 0' in faces_json
    (crops,) = SimSwapAlignFaces.execute(astronaut, faces, "224", "auto", "all", "0", "left-right").args
    split, alignment, _, _ = SimSwapSplitFaceCrops.execute(crops).args
    with pytest.raises(InputError, match="crops"):
        SimSwapPasteFaces.execute(astronaut, torch.cat([split, split]), alignment, "default", False, 0.1, 0.0)
    with pytest.raises(InputError, match="images"):
        SimSwapPasteFaces.execute(torch.cat([astronaut, astronaut]), split, alignment, "default", False, 0.1, 0.0)
    with pytest.raises(InputError, match="faces"):
        SimSwapAlignFaces.execute(torch.cat([astronaut, astronaut]), faces, "224", "auto", "all", "0",
                                  "left-right")


def test_face_mask_from_detected_faces(models, astronaut):
    from nodes.detect import SimSwapDetectFaces
    from nodes.faces import SimSwapFaceMask
    from simswap_core.errors import InputError

    _gen, _arc, det = models
    frames = torch.cat([astronaut, torch.zeros_like(astronaut)])
    faces = SimSwapDetectFaces.execute(frames, det, "size")[0]
    for kind in ("box", "ellipse"):
        mask, crop_masks = SimSwapFaceMask.execute(kind, "skin", 0.0, -1.0, faces=faces, images=frames).args
        assert mask.shape == frames.shape[:3] and crop_masks.shape == (1, 224, 224)
        assert mask[0].max() > 0.9 and mask[1].max() == 0
        grown = SimSwapFaceMask.execute(kind, "skin", 0.05, 0.0, faces=faces, images=frames)[0]
        shrunk = SimSwapFaceMask.execute(kind, "skin", -0.05, 0.0, faces=faces, images=frames)[0]
        assert shrunk.sum() < mask.sum() <= grown.sum()  # a box is the whole crop: it cannot grow past it
        if kind == "ellipse":
            assert mask.sum() < grown.sum()
    with pytest.raises(InputError, match="face_crops"):
        SimSwapFaceMask.execute("box", "skin", 0.0, -1.0, faces=faces)


def test_detect_faces_keeps_frame_order_over_batches(models, astronaut):
    from nodes.detect import DETECT_BATCH, SimSwapDetectFaces

    _gen, _arc, det = models
    blank = torch.zeros_like(astronaut)
    frames = torch.cat([blank] * DETECT_BATCH + [astronaut, blank, astronaut])
    faces, preview, count, faces_json = SimSwapDetectFaces.execute(frames, det, "left-right").args
    assert count == 2 and faces.frame_index.tolist() == [DETECT_BATCH, DETECT_BATCH + 2]
    assert faces.num_frames == frames.shape[0] and preview.shape == frames.shape
    import json

    per_frame = json.loads(faces_json)
    assert len(per_frame) == frames.shape[0] and [len(f) for f in per_frame].count(1) == 2


def test_paste_faces_over_a_long_batch_in_chunks(models, astronaut):
    """Paste Faces works a few frames at a time (bounded device memory): 20 frames with a face in frames 0, 15, 16
    and 19 (across the 16-frame chunk border) give the same frames as pasting each face's frame on its own."""
    from nodes.detect import SimSwapDetectFaces
    from nodes.faces import PASTE_FRAMES_PER_CALL, SimSwapAlignFaces, SimSwapPasteFaces, SimSwapSplitFaceCrops

    _gen, _arc, det = models
    with_face = [0, 15, 16, 19]
    assert PASTE_FRAMES_PER_CALL < 20
    frames = torch.full((20, *astronaut.shape[1:]), 0.3)
    for i in with_face:
        frames[i] = astronaut[0].roll(2 * i, dims=1)
    faces, _, count, _ = SimSwapDetectFaces.execute(frames, det, "left-right").args
    assert count == len(with_face)
    (crops,) = SimSwapAlignFaces.execute(frames, faces, "224", "auto", "all", "0", "left-right").args
    split, alignment, crop_masks, _ = SimSwapSplitFaceCrops.execute(crops).args
    assert alignment.frame_index.tolist() == with_face
    changed = 1.0 - split  # a "restorer" that visibly changes every crop
    pasted, pmask = SimSwapPasteFaces.execute(frames, changed, alignment, "default", False, 0.1, 0.0,
                                              crop_masks=crop_masks)
    assert pasted.shape == frames.shape and pmask.shape == frames.shape[:3]
    for k, i in enumerate(with_face):
        one, _ = alignment.frames(i, i + 1)
        alone, amask = SimSwapPasteFaces.execute(frames[i:i + 1], changed[k:k + 1], one, "default", False, 0.1,
                                                 0.0, crop_masks=crop_masks[k:k + 1])
        assert torch.equal(pasted[i], alone[0]) and torch.equal(pmask[i], amask[0])
    for i in set(range(20)) - set(with_face):
        assert torch.equal(pasted[i], frames[i]) and pmask[i].max() == 0



def test_paste_faces_protect_keeps_pixels_bit_identical(models, astronaut):
    """Paste Faces' protect MASK (one [H,W] mask for every frame, or one per frame): pixels where it is 1 are the
    input frame's exactly and out of the returned mask, the rest is pasted as without it; a mask of another size is
    refused naming 'protect'."""
    from nodes.detect import SimSwapDetectFaces
    from nodes.faces import SimSwapAlignFaces, SimSwapPasteFaces, SimSwapSplitFaceCrops

    _gen, _arc, det = models
    frames = torch.cat([astronaut, astronaut.roll(3, dims=2)])          # IMAGE batches are [N,H,W,3]
    faces, _, count, _ = SimSwapDetectFaces.execute(frames, det, "left-right").args
    assert count == 2
    (crops,) = SimSwapAlignFaces.execute(frames, faces, "224", "auto", "all", "0", "left-right").args
    split, alignment, crop_masks, _ = SimSwapSplitFaceCrops.execute(crops).args
    changed = 1.0 - split
    plain, plain_mask = SimSwapPasteFaces.execute(frames, changed, alignment, "default", False, 0.1, 0.0).args
    h, w = frames.shape[1:3]
    keep = torch.zeros(h, w)
    keep[h // 3:h // 2, w // 3:2 * w // 3] = 1.0           # a band across the eyes and nose
    inside = keep.bool()
    assert (plain[0][inside] != frames[0][inside]).any()   # the band is changed without protect
    for protect in (keep, torch.stack([keep, keep])):
        out, mask = SimSwapPasteFaces.execute(frames, changed, alignment, "default", False, 0.1, 0.0,
                                              protect=protect).args
        assert torch.equal(out[:, inside], frames[:, inside]) and mask[:, inside].max() == 0
        assert torch.equal(out[:, ~inside], plain[:, ~inside]) and torch.equal(mask[:, ~inside], plain_mask[:, ~inside])
    from simswap_core.errors import InputError

    with pytest.raises(InputError, match="protect"):
        SimSwapPasteFaces.execute(frames, changed, alignment, "default", False, 0.1, 0.0, protect=keep[:-1])

class CountingDetector:
    """A detector that counts its calls (and forwards them)."""

    def __init__(self, detector):
        self.detector, self.calls = detector, 0

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def detect(self, frames):
        self.calls += 1
        return self.detector.detect(frames)


def test_swap_with_detected_faces_does_not_detect_again(models, astronaut):
    """Detect Faces -> Swap (workflow 02): with its faces connected the swap runs no detector and gives the same
    frames, mask and crops as the swap that detects on its own."""
    from nodes.detect import SimSwapDetectFaces
    from nodes.identity import SimSwapExtractIdentity
    from nodes.swap import SimSwapSwap, SwapSettings

    gen, arc, det = models
    (identity,) = SimSwapExtractIdentity.execute(astronaut, arc, det, "largest", 0, "left-right", "mean",
                                                 "error").args
    frames = torch.cat([astronaut, torch.full_like(astronaut, 0.3), astronaut.flip(2)])
    widgets = ("index", "0", "left-right", "ellipse", "keep")
    opts = SwapSettings(mask_regions="skin", batch_size=2)
    counting = CountingDetector(det)
    alone = SimSwapSwap.execute(frames, identity, gen, counting, *widgets, options=opts).args
    assert counting.calls > 0
    faces = SimSwapDetectFaces.execute(frames, det, "left-right")[0]
    counting.calls = 0
    given = SimSwapSwap.execute(frames, identity, gen, counting, *widgets, detected_faces=faces, options=opts).args
    assert counting.calls == 0, "Swap detected again although faces were connected"
    assert torch.equal(given[0], alone[0]) and torch.equal(given[1], alone[1])
    assert torch.equal(given[2].crops, alone[2].crops) and given[2].crops.device == given[0].device
    from simswap_core.errors import InputError

    with pytest.raises(InputError, match="detected_faces"):  # faces of other frames
        SimSwapSwap.execute(frames[:2], identity, gen, det, *widgets, detected_faces=faces, options=opts)


def test_extract_identity_needs_no_generator(models, astronaut):
    """crop_size auto = the connected generator's crop size (read from the loader's record, never loaded: the
    stand-in below has no model at all), else 224; the same identity either way for a 224 generator."""
    from nodes.identity import SimSwapExtractIdentity

    gen, arc, det = models

    class RecordOnly:  # what Extract Identity may use of a generator: its loader's info, nothing else
        info = {"crop_size": 224}

    args = (astronaut, arc, det, "largest", 0, "left-right", "mean", "error")
    with_gen = SimSwapExtractIdentity.execute(*args, generator=gen)[0]
    for kwargs in ({}, {"generator": RecordOnly()}, {"crop_size": "224"}, {"generator": RecordOnly(),
                                                                             "crop_size": "auto"}):
        ident = SimSwapExtractIdentity.execute(*args, **kwargs)[0]
        assert torch.equal(ident.latent, with_gen.latent) and torch.equal(ident.embedding, with_gen.embedding)
    at_512 = SimSwapExtractIdentity.execute(*args, crop_size="512")[0]
    assert not torch.equal(at_512.latent, with_gen.latent)


def test_swap_options_pixel_boost(models, astronaut):
    """Swap Options' pixel_boost reaches the swap (crops at twice the model's size) and is checked."""
    from nodes.identity import SimSwapExtractIdentity
    from nodes.swap import SimSwapSwap, SimSwapSwapOptions
    from simswap_core.errors import InputError

    gen, arc, det = models
    (identity,) = SimSwapExtractIdentity.execute(astronaut, arc, det, "largest", 0, "left-right", "mean", "error",
                                                 generator=gen).args
    base = dict(mask_regions="skin", mask_grow=0.0, mask_feather="auto", color_match=False, batch_size=1,
                reference_threshold=0.03, temporal_smoothing=0.0)
    (opts,) = SimSwapSwapOptions.execute(paste_mode="default", pixel_boost=2, **base).args
    images, mask, crops = SimSwapSwap.execute(astronaut, identity, gen, det, "largest", "0", "left-right", "box",
                                              "error", options=opts).args
    assert crops.crops.shape[-1] == 448 and crops.aligned.crop_size == 448
    assert mask.max() > 0.9 and torch.equal(images[mask == 0], astronaut[mask == 0])
    with pytest.raises(InputError, match="pixel_boost"):
        SimSwapSwapOptions.execute(paste_mode="official", pixel_boost=2, **base)
    with pytest.raises(InputError, match="pixel_boost"):
        SimSwapSwapOptions.execute(paste_mode="default", pixel_boost=5, **base)
