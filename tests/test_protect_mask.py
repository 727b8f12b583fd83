"""The protect mask (issue 12 item 3): regions that must never change stay BIT-identical through the swap, the
paste, ``run`` (one mask per frame, sliced per batch, or one for every frame) and the SimSwap Face Swap node; the
returned mask is 0 there; a half-strength protect is the lerp of the swapped and the original pixels. Bad protect
masks (wrong size, count, range, dtype) are refused naming ``protect``.

A hand-shaped pure-green patch (tests/sam_fixtures.draw_hand) is drawn over the mouth of a real photo (skimage's
astronaut); the swapper is the crop-64 seeded one (pipeline_fixtures.fast_swapper): a few faces in all."""
from __future__ import annotations

import pytest
import torch
from sam_fixtures import draw_hand

from pipeline_fixtures import astronaut_small, to_tensor
from simswap_core.errors import InputError
from simswap_core.paste import paste_faces

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def scene(pl_models):
    """(frame [1,3,256,256] with a green hand over the mouth, hand [256,256] bool, protect [1,1,256,256] float)."""
    frame = to_tensor(astronaut_small(256))
    faces = pl_models[2].detect(frame)
    box = faces.boxes[0]
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] * 0.15 + box[3] * 0.85)
    occluded, hand = draw_hand(frame, cx, cy, float(box[2] - box[0]) * 0.45)
    return occluded, hand, hand.float()[None, None]


@pytest.fixture(scope="module")
def identity(fast_swapper):
    return fast_swapper.extract_identity(to_tensor(astronaut_small(256)))


@pytest.fixture(scope="module")
def plain(fast_swapper, identity, scene):
    """The swap without protection (the reference the protected swaps are compared with)."""
    return fast_swapper.swap(scene[0], identity)


def test_protected_pixels_are_bit_identical_and_out_of_the_mask(fast_swapper, identity, scene, plain):
    occluded, hand, protect = scene
    assert not torch.equal(plain.images[:, :, hand], occluded[:, :, hand])     # the swap covers the hand
    result = fast_swapper.swap(occluded, identity, protect=protect)
    assert torch.equal(result.images[:, :, hand], occluded[:, :, hand])        # ... not with protect
    assert result.mask[0, 0][hand].max() == 0
    assert torch.equal(result.images[:, :, ~hand], plain.images[:, :, ~hand])  # the rest is the same swap
    assert torch.equal(result.mask[0, 0][~hand], plain.mask[0, 0][~hand])
    assert len(result.faces) == 1


def test_soft_protect_is_the_lerp_of_swapped_and_original(fast_swapper, identity, scene, plain):
    occluded, hand, _ = scene
    soft = torch.zeros(1, 1, *hand.shape)
    soft[:, :, :, :128] = 0.25                                                  # the left half, a quarter kept
    result = fast_swapper.swap(occluded, identity, protect=soft)
    assert torch.allclose(result.images, torch.lerp(plain.images, occluded, soft), atol=1e-6)
    assert torch.allclose(result.mask, plain.mask * (1 - soft), atol=1e-7)
    assert torch.equal(result.images[..., 128:], plain.images[..., 128:])      # protect 0: exactly the swap


@pytest.mark.parametrize("tracked", [False, True])
def test_run_slices_one_protect_mask_per_frame(fast_swapper, identity, scene, tracked):
    from simswap_core.io.frames import TensorSink, TensorSource
    from simswap_core.run import run
    from simswap_core.tracking import FaceTracker

    occluded, hand, protect = scene
    frames = torch.cat([occluded, occluded.flip(-1)])
    per_frame = torch.cat([protect, protect.flip(-1)])                          # the hand follows the mirror
    sink = TensorSink()
    tracker = FaceTracker(0.5, max_gap=2) if tracked else None                  # frames released by the tracker
    run(TensorSource(frames), fast_swapper, sink, identity, batch_size=1, prefetch=0, protect=per_frame,
        tracker=tracker)
    out = sink.result()
    assert torch.equal(out.images[0][:, hand], frames[0][:, hand])
    assert torch.equal(out.images[1][:, hand.flip(-1)], frames[1][:, hand.flip(-1)])
    assert out.mask[1, 0][hand.flip(-1)].max() == 0 and out.mask[1, 0][hand].max() > 0   # frame 1 got ITS mask
    with pytest.raises(InputError, match=r"^protect: .*\[2,1,H,W\], got 3 masks"):
        run(TensorSource(frames), fast_swapper, TensorSink(), identity, batch_size=1, prefetch=0,
            protect=torch.zeros(3, 1, 256, 256))


@pytest.mark.parametrize("protect, words", [
    (torch.zeros(1, 1, 128, 256), r"^protect: expected a mask the size of the frames.*256x128 px, frames are 256x256"),
    (torch.zeros(2, 1, 256, 256), r"^protect: .*\[1,1,256,256\].*got shape \(2, 1, 256, 256\)"),
    (torch.zeros(256, 256), r"^protect: expected a mask the size of the frames"),
    (torch.full((1, 1, 256, 256), 2.0), r"^protect"),
    (torch.full((1, 1, 256, 256), float("nan")), r"^protect"),
    (torch.ones(1, 1, 256, 256, dtype=torch.uint8), r"^protect: expected float values in \[0,1\]"),
    ("mask.png", r"^protect: expected a mask tensor"),
])
def test_bad_protect_masks_are_refused_naming_protect(fast_swapper, identity, scene, protect, words):
    with pytest.raises(InputError, match=words):
        fast_swapper.swap(scene[0], identity, protect=protect)


def test_paste_faces_protect_without_a_generator(pl_models, scene):
    """paste_faces itself: protect 1 -> the input pixel (``where``), the union mask times (1 - protect)."""
    from simswap_core.align import align_faces

    occluded, hand, protect = scene
    aligned = align_faces(occluded, pl_models[2].detect(occluded), 96)
    noise = torch.rand(aligned.crops.shape, generator=torch.Generator().manual_seed(0))
    free, free_mask = paste_faces(occluded, noise, aligned)
    out, mask = paste_faces(occluded, noise, aligned, protect=protect)
    assert torch.equal(out[:, :, hand], occluded[:, :, hand]) and mask[0, 0][hand].max() == 0
    assert torch.equal(out[:, :, ~hand], free[:, :, ~hand]) and torch.equal(mask, free_mask * (1 - protect))
    with pytest.raises(InputError, match="^protect"):
        paste_faces(occluded, noise, aligned, protect=protect[..., :100])


def test_swap_node_protect_input(fast_generator_path, pl_models, identity, scene):
    """SimSwap Face Swap with a MASK on its 'protect' input (in process, as ComfyUI calls execute)."""
    from comfy_harness import use_comfy_api

    use_comfy_api()
    from nodes._common import ManagedModel
    from nodes.swap import SimSwapSwap
    from simswap_core.models.loaders import load_generator

    occluded, hand, protect = scene
    gen = ManagedModel(load_generator(fast_generator_path), kind="generator", name="fast",
                       path=str(fast_generator_path), crop_size=64)
    det = pl_models[2]
    schema = {i.id: i for i in SimSwapSwap.GET_SCHEMA().inputs}
    assert schema["protect"].optional and schema["protect"].io_type == "MASK" and schema["protect"].tooltip
    image = occluded.movedim(1, -1)                                             # IMAGE [1,H,W,3]
    images, mask, _crops = SimSwapSwap.execute(image, identity, gen, det, "all", "0", "left-right", "box", "keep",
                                               protect=protect[:, 0]).args
    assert torch.equal(images[0][hand], image[0][hand]) and mask[0][hand].max() == 0
    assert not torch.equal(images, image)                                      # the face around it was swapped
    with pytest.raises(InputError, match="^protect: expected a mask the size of the frames"):
        SimSwapSwap.execute(image, identity, gen, det, "all", "0", "left-right", "box", "keep",
                            protect=protect[:, 0, :200])
    with pytest.raises(InputError, match=r"^protect: expected a MASK \[N,H,W\]"):
        SimSwapSwap.execute(image, identity, gen, det, "all", "0", "left-right", "box", "keep", protect=protect)
