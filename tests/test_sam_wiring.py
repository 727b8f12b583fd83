"""SAM mask kinds wired through the swap: ``FaceSwapper(..., sam=)`` (one image embedding per frame of each batch,
the occluder left out), the refusal of a SAM kind without a SAM model (naming --sam / the 'sam' input), a seeded
small SAM in the official format (simswap_core.models.seeded.write_seeded_sam) through the whole pipeline, and the
'sam' / 'protect' inputs of SimSwap Face Swap and SimSwap Swap Video (in process, as ComfyUI calls execute).

ColourKeySam / ColourKeyParser (tests/sam_fixtures.py) are stand-ins whose answer is known: everything in the
prompt box except pure green; the hand drawn over the mouth is pure green. The swapper is the crop-64 seeded one."""
from __future__ import annotations

import pytest
import torch
from sam_fixtures import ColourKeyParser, ColourKeySam, draw_hand

from pipeline_fixtures import astronaut_small, to_tensor
from simswap_core.errors import InputError
from simswap_core.swap import FaceSwapper

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def scene(pl_models):
    """(frame [1,3,256,256] with a green hand over the mouth, hand [256,256] bool)."""
    frame = to_tensor(astronaut_small(256))
    box = pl_models[2].detect(frame).boxes[0]
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] * 0.15 + box[3] * 0.85)
    return draw_hand(frame, cx, cy, float(box[2] - box[0]) * 0.45)


@pytest.fixture(scope="module")
def identity(fast_swapper):
    return fast_swapper.extract_identity(to_tensor(astronaut_small(256)))


def with_sam(fast_swapper, sam, parser=None) -> FaceSwapper:
    return FaceSwapper(fast_swapper.generator, fast_swapper.arcface, fast_swapper.detector, parser=parser, sam=sam,
                       device="cpu")


def test_sam_kind_leaves_the_hand_and_embeds_each_frame_once(fast_swapper, identity, scene):
    occluded, hand = scene
    sam = ColourKeySam()
    swapper = with_sam(fast_swapper, sam)
    assert swapper.sam is sam
    frames = torch.cat([occluded, occluded.flip(-1)])
    result = swapper.swap(frames, identity, mask="sam", batch_size=2)
    assert sam.embedded == [2] and sam.decoded == [2]          # one embedding per frame, one decode for all faces
    assert torch.equal(result.images[0][:, hand], frames[0][:, hand])          # the hand is not swapped
    assert torch.equal(result.images[1][:, hand.flip(-1)], frames[1][:, hand.flip(-1)])
    assert result.mask[0, 0][hand].max() == 0 and result.mask[0].max() > 0.9   # the face around it is
    box = fast_swapper.swap(occluded, identity, mask="box")
    assert not torch.equal(box.images[0][:, hand], occluded[0][:, hand])       # a box mask would cover it


def test_sam_parsing_kind_with_parser_and_sam(fast_swapper, identity, scene):
    occluded, hand = scene
    result = with_sam(fast_swapper, ColourKeySam(), ColourKeyParser()).swap(occluded, identity, mask="sam_parsing")
    assert torch.equal(result.images[0][:, hand], occluded[0][:, hand]) and result.mask[0].max() > 0.5
    with pytest.raises(InputError, match="needs a face parser"):
        with_sam(fast_swapper, ColourKeySam()).swap(occluded, identity, mask="sam_parsing")


def test_seeded_small_sam_through_the_pipeline(fast_swapper, identity, scene, tmp_path):
    from simswap_core.masks import MASKERS
    from simswap_core.models.loaders import load_sam
    from simswap_core.models.seeded import write_seeded_sam

    sam = load_sam(write_seeded_sam(tmp_path / "sam_small_seeded.pth"))
    swapper = with_sam(fast_swapper, sam)
    occluded, _hand = scene
    a = swapper.swap(occluded, identity, mask="sam")
    b = swapper.swap(occluded, identity, mask="sam")
    assert torch.equal(a.images, b.images) and torch.equal(a.mask, b.mask)      # deterministic
    assert len(a.faces) == 1 and a.mask.shape == (1, 1, 256, 256)
    outside = a.mask == 0
    assert torch.equal(a.images[outside.expand_as(a.images)], occluded[outside.expand_as(occluded)])
    assert MASKERS["sam"].needs_sam and not MASKERS["ellipse"].needs_sam


@pytest.mark.parametrize("kind", ["sam", "sam_parsing"])
def test_sam_kind_without_a_sam_model_names_the_flag_and_the_input(fast_swapper, identity, scene, kind):
    swapper = with_sam(fast_swapper, None, ColourKeyParser())
    with pytest.raises(InputError, match=rf"mask kind '{kind}' needs a Segment Anything model.*--sam.*'sam' input"):
        swapper.swap(scene[0], identity, mask=kind)


# ------------------------------------------------------------------------------------------------ nodes
@pytest.fixture(scope="module")
def node_models(fast_generator_path, pl_models):
    from comfy_harness import use_comfy_api

    use_comfy_api()
    from nodes._common import ManagedModel
    from simswap_core.models.loaders import load_generator

    gen = ManagedModel(load_generator(fast_generator_path), kind="generator", name="fast",
                       path=str(fast_generator_path), crop_size=64)
    return gen, pl_models[2]


def test_swap_node_sam_input(node_models, identity, scene):
    from nodes import _types as t
    from nodes._common import ManagedModel
    from nodes.swap import SimSwapSwap

    gen, det = node_models
    occluded, hand = scene
    image = occluded.movedim(1, -1)
    inputs = {i.id: i for i in SimSwapSwap.GET_SCHEMA().inputs}
    assert inputs["sam"].optional and inputs["sam"].io_type == t.Sam.io_type and inputs["sam"].tooltip
    assert {"sam", "sam_parsing"} <= set(inputs["mask"].options)
    sam = ManagedModel(ColourKeySam(), kind="sam", name="colour-key", path="")
    images, mask, _ = SimSwapSwap.execute(image, identity, gen, det, "all", "0", "left-right", "sam", "keep",
                                          sam=sam).args
    assert torch.equal(images[0][hand], image[0][hand]) and mask[0][hand].max() == 0 and mask.max() > 0.9
    with pytest.raises(InputError, match="^sam: mask = sam needs a Segment Anything model.*SimSwap Load SAM"):
        SimSwapSwap.execute(image, identity, gen, det, "all", "0", "left-right", "sam", "keep")
    with pytest.raises(InputError, match="^sam: expected the output of 'SimSwap Load SAM'"):
        SimSwapSwap.execute(image, identity, gen, det, "all", "0", "left-right", "sam", "keep", sam=gen)


def test_video_node_sam_and_protect_inputs(node_models, identity, scene, tmp_path, monkeypatch):
    from comfy_api.latest import InputImpl
    from comfy_api.latest._util import VideoComponents

    import nodes.video as nv
    from nodes import _types as t
    from nodes._common import ManagedModel

    gen, det = node_models
    inputs = {i.id: i for i in nv.SimSwapSwapVideo.GET_SCHEMA().inputs}
    assert inputs["sam"].optional and inputs["sam"].io_type == t.Sam.io_type
    assert inputs["protect"].optional and inputs["protect"].io_type == "MASK"
    assert "every frame" in inputs["protect"].tooltip and "per frame" in inputs["protect"].tooltip
    monkeypatch.setattr(nv, "work_folder", lambda: tmp_path)
    occluded, hand = scene
    video = InputImpl.VideoFromComponents(VideoComponents(images=occluded.movedim(1, -1).repeat(2, 1, 1, 1),
                                                          frame_rate=30))
    args = dict(faces="all", face_index="0", order="left-right", if_no_face="keep", identity=identity)
    with pytest.raises(InputError, match="^sam: mask = sam needs"):
        nv.SimSwapSwapVideo.execute(video, gen, det, mask="sam", **args)
    with pytest.raises(InputError, match="^protect: .*one per frame .*\\[2,1,H,W\\], got 3 masks"):
        nv.SimSwapSwapVideo.execute(video, gen, det, mask="box", protect=hand.float()[None].repeat(3, 1, 1), **args)
    with pytest.raises(InputError, match="^protect: expected a mask the size of the frames"):
        nv.SimSwapSwapVideo.execute(video, gen, det, mask="box", protect=hand.float()[None, :128], **args)
    assert not list(tmp_path.iterdir()), "a refused run leaves no file"
    sam = ColourKeySam()
    out = nv.SimSwapSwapVideo.execute(video, gen, det, mask="sam", sam=ManagedModel(sam, kind="sam", name="k", path=""),
                                      protect=hand.float()[None], **args)
    assert out.ui["text"][0].startswith("swapped 2 faces in 2 frames"), out.ui
    assert sum(sam.embedded) == 2                                               # each frame embedded once
