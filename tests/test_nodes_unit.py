"""The node classes without a ComfyUI server: declarations (category, tooltips, SIMSWAP_ types), widget
parsing, and a Swap -> Split -> Paste chain on a real photo with seeded weights (ComfyUI parts absent, so the
models are plain modules)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from nodes._common import FaceCrops, ManagedModel
from nodes.selection import make_mask_spec, make_selection, parse_indices

CORE_TYPES = {"IMAGE", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN"}


@pytest.mark.parametrize("name", sorted(NODE_CLASS_MAPPINGS))
def test_node_declaration(name):
    cls = NODE_CLASS_MAPPINGS[name]
    assert name.startswith("SimSwap") and NODE_DISPLAY_NAME_MAPPINGS[name].startswith("SimSwap")
    assert cls.CATEGORY.split("/")[0] == "SimSwap"
    assert callable(getattr(cls(), cls.FUNCTION))
    assert cls.DESCRIPTION
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    for section in ("required", "optional"):
        for inp, (typ, *rest) in spec.get(section, {}).items():
            assert rest and rest[0].get("tooltip"), f"{name}.{inp}: no tooltip"
            if isinstance(typ, str) and typ not in CORE_TYPES:
                assert typ.startswith("SIMSWAP_"), f"{name}.{inp}: {typ}"
            if isinstance(typ, list) and "default" in rest[0]:
                assert rest[0]["default"] in typ, f"{name}.{inp}: default not among the choices"
    n = len(cls.RETURN_TYPES)
    assert len(cls.RETURN_NAMES) == n and len(cls.OUTPUT_TOOLTIPS) == n and all(cls.OUTPUT_TOOLTIPS)
    for typ in cls.RETURN_TYPES:
        assert typ in CORE_TYPES or typ.startswith("SIMSWAP_"), f"{name}: {typ}"
    # every required input is a parameter of the function; optional ones have Python defaults
    import inspect

    params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
    for inp in spec.get("required", {}):
        assert inp in params, f"{name}.{cls.FUNCTION} has no parameter {inp!r}"
    for inp in spec.get("optional", {}):
        assert inp in params and params[inp].default is not inspect.Parameter.empty, f"{name}.{inp}"


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
    from simswap_core.seeded import write_seeded_checkpoints

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
    from nodes.swap import SimSwapSwap

    gen, arc, det = models
    (identity,) = SimSwapExtractIdentity().extract(astronaut, gen, arc, det, "largest", 0, "left-right", "mean",
                                                   "error")
    blank = torch.full_like(astronaut, 0.3)
    frames = torch.cat([blank, astronaut, blank])  # order must be kept
    images, mask, crops = SimSwapSwap().swap(frames, identity, gen, arc, det, "all", "0", "left-right", "box",
                                             "skin", 0.0, -1.0, "default", False, "keep", 2)
    assert images.shape == frames.shape and mask.shape == frames.shape[:3]
    assert mask[0].max() == 0 and mask[2].max() == 0 and mask[1].max() > 0.9
    assert torch.equal(images[0], frames[0]) and torch.equal(images[2], frames[2])
    outside = mask[1] == 0
    assert torch.equal(images[1][outside], frames[1][outside])
    assert isinstance(crops, FaceCrops) and len(crops) == 1
    assert crops.aligned.frame_index.tolist() == [1]

    split_crops, alignment, crop_masks, originals = SimSwapSplitFaceCrops().split(crops)
    assert split_crops.shape == (1, 224, 224, 3) and originals.shape == (1, 224, 224, 3)
    assert crop_masks.shape == (1, 224, 224)
    # a "2x restorer": crops come back at twice the size and are resized to the alignment's crop size
    big = torch.nn.functional.interpolate(split_crops.movedim(-1, 1), scale_factor=2, mode="bilinear")
    pasted, pmask = SimSwapPasteFaces().paste(frames, big.movedim(1, -1), alignment, "default", False, 0.12,
                                              0.04, crop_masks=crop_masks)
    assert pasted.shape == frames.shape and pmask.shape == mask.shape
    assert pmask[0].max() == 0 and pmask[2].max() == 0 and pmask[1].max() > 0.5
    keep = pmask[1] == 0
    assert torch.equal(pasted[1][keep], frames[1][keep])
    assert (pasted[1] - frames[1]).abs().max() > 0.05


def test_paste_faces_rejects_mismatched_inputs(models, astronaut):
    from simswap_core.errors import InputError
    from nodes.faces import SimSwapAlignFaces, SimSwapPasteFaces, SimSwapSplitFaceCrops
    from nodes.detect import SimSwapDetectFaces

    _gen, _arc, det = models
    faces, preview, count, faces_json = SimSwapDetectFaces().detect(astronaut, det, "left-right")
    assert count == 1 and preview.shape == astronaut.shape and '"index": 0' in faces_json
    (crops,) = SimSwapAlignFaces().align(astronaut, faces, "224", "auto", "all", "0", "left-right")
    split, alignment, _, _ = SimSwapSplitFaceCrops().split(crops)
    with pytest.raises(InputError, match="crops"):
        SimSwapPasteFaces().paste(astronaut, torch.cat([split, split]), alignment, "default", False, 0.1, 0.0)
    with pytest.raises(InputError, match="images"):
        SimSwapPasteFaces().paste(torch.cat([astronaut, astronaut]), split, alignment, "default", False, 0.1, 0.0)
    with pytest.raises(InputError, match="faces"):
        SimSwapAlignFaces().align(torch.cat([astronaut, astronaut]), faces, "224", "auto", "all", "0",
                                  "left-right")


def test_face_mask_from_detected_faces(models, astronaut):
    from simswap_core.errors import InputError
    from nodes.detect import SimSwapDetectFaces
    from nodes.faces import SimSwapFaceMask

    _gen, _arc, det = models
    frames = torch.cat([astronaut, torch.zeros_like(astronaut)])
    faces = SimSwapDetectFaces().detect(frames, det, "size")[0]
    for kind in ("box", "ellipse"):
        mask, crop_masks = SimSwapFaceMask().build(kind, "skin", 0.0, -1.0, faces=faces, images=frames)
        assert mask.shape == frames.shape[:3] and crop_masks.shape == (1, 224, 224)
        assert mask[0].max() > 0.9 and mask[1].max() == 0
        grown = SimSwapFaceMask().build(kind, "skin", 0.05, 0.0, faces=faces, images=frames)[0]
        shrunk = SimSwapFaceMask().build(kind, "skin", -0.05, 0.0, faces=faces, images=frames)[0]
        assert shrunk.sum() < mask.sum() <= grown.sum()  # a box is the whole crop: it cannot grow past it
        if kind == "ellipse":
            assert mask.sum() < grown.sum()
    with pytest.raises(InputError, match="face_crops"):
        SimSwapFaceMask().build("box", "skin", 0.0, -1.0, faces=faces)


def test_detect_faces_keeps_frame_order_over_batches(models, astronaut):
    from nodes.detect import DETECT_BATCH, SimSwapDetectFaces

    _gen, _arc, det = models
    blank = torch.zeros_like(astronaut)
    frames = torch.cat([blank] * DETECT_BATCH + [astronaut, blank, astronaut])
    faces, preview, count, faces_json = SimSwapDetectFaces().detect(frames, det, "left-right")
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
    faces, _, count, _ = SimSwapDetectFaces().detect(frames, det, "left-right")
    assert count == len(with_face)
    (crops,) = SimSwapAlignFaces().align(frames, faces, "224", "auto", "all", "0", "left-right")
    split, alignment, crop_masks, _ = SimSwapSplitFaceCrops().split(crops)
    assert alignment.frame_index.tolist() == with_face
    changed = 1.0 - split  # a "restorer" that visibly changes every crop
    pasted, pmask = SimSwapPasteFaces().paste(frames, changed, alignment, "default", False, 0.1, 0.0,
                                              crop_masks=crop_masks)
    assert pasted.shape == frames.shape and pmask.shape == frames.shape[:3]
    for k, i in enumerate(with_face):
        one, _ = alignment.frames(i, i + 1)
        alone, amask = SimSwapPasteFaces().paste(frames[i:i + 1], changed[k:k + 1], one, "default", False, 0.1,
                                                 0.0, crop_masks=crop_masks[k:k + 1])
        assert torch.equal(pasted[i], alone[0]) and torch.equal(pmask[i], amask[0])
    for i in set(range(20)) - set(with_face):
        assert torch.equal(pasted[i], frames[i]) and pmask[i].max() == 0
