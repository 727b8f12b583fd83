"""The occlusion-aware parsing mask: only the face itself is swapped (skin, brows, eyes, nose, lips, mouth), the
edge is feathered inward in proportion to the face, and whatever the parse labels as non-face (a hand drawn over
a real photo here) survives a real swap bit for bit."""
from __future__ import annotations

import pytest
import torch
from sam_fixtures import ColourKeyParser, draw_hand

from simswap_core.errors import InputError
from simswap_core.masks import (
    OCCLUDER_REGIONS,
    REGIONS,
    MaskSpec,
    build_crop_masks,
    inward_feather,
    occlusion_masks,
)

torch.set_num_threads(2)


def label_map(size: int = 512) -> torch.Tensor:
    """[1,size,size] labels: skin background square with hair on top, glasses band, a nose block, lips."""
    lab = torch.zeros(1, size, size, dtype=torch.int64)
    u = size // 16
    lab[:, 2 * u:14 * u, 3 * u:13 * u] = REGIONS["skin"][0]
    lab[:, 2 * u:5 * u, 3 * u:13 * u] = REGIONS["hair"][0]
    lab[:, 6 * u:7 * u, 4 * u:12 * u] = REGIONS["glasses"][0]
    lab[:, 8 * u:10 * u, 7 * u:9 * u] = REGIONS["nose"][0]
    lab[:, 11 * u:12 * u, 6 * u:10 * u] = REGIONS["lips"][0]
    return lab


def test_keeps_the_face_and_never_the_occluders():
    lab = label_map()
    m = occlusion_masks(lab, MaskSpec(kind="occlusion").regions, 224, feather=0.03)
    assert m.shape == (1, 1, 224, 224)
    small = torch.nn.functional.interpolate(lab[:, None].float(), size=(224, 224), mode="nearest")[:, 0].long()
    for region in ("hair", "glasses"):
        assert m[0, 0][small[0] == REGIONS[region][0]].max() == 0          # exactly 0 on an occluder
    assert m[0, 0][small[0] == 0].max() == 0                               # and on anything that is not face
    assert m[0, 0, 180, 112] > 0.99 and m[0, 0, 126, 112] > 0.99           # skin and the nose block inside
    assert set(OCCLUDER_REGIONS) >= {"glasses", "hair", "hat"}


def test_the_feather_is_inward_and_proportional_to_the_face():
    hard = torch.zeros(1, 1, 224, 224)
    hard[..., 40:184, 40:184] = 1
    soft = inward_feather(hard, 2.0)
    assert soft[hard == 0].max() == 0 and soft[..., 112, 112] > 0.999
    assert 0 < soft[..., 112, 46] < soft[..., 112, 52] < 1                 # the ramp lies inside the region
    lab = torch.zeros(1, 512, 512, dtype=torch.int64)
    lab[:, 96:416, 96:416] = REGIONS["skin"][0]
    big = occlusion_masks(lab, ("skin",), 224, feather=0.05)
    small = occlusion_masks(lab, ("skin",), 112, feather=0.05)
    # the edge (where the mask crosses 0.5) lies the same fraction of the crop inside the region, within a pixel
    d_big = int((big[0, 0, 112] > 0.5).nonzero()[0]) - 42                   # the region starts at 96/512*S
    d_small = int((small[0, 0, 56] > 0.5).nonzero()[0]) - 21
    assert d_big > 4 and abs(d_big / 224 - d_small / 112) <= 1.5 / 112
    assert (big > 0).sum() < (occlusion_masks(lab, ("skin",), 224, feather=0.0) > 0).sum()


def test_spec_and_bad_inputs(astronaut, pl_swapper):
    spec = MaskSpec.parse("occlusion:feather=0.05")
    assert spec.kind == "occlusion" and spec.needs_parser and spec.feather_fraction == 0.05
    assert MaskSpec(kind="occlusion").feather_fraction == 0.03
    aligned = pl_swapper.align(astronaut, pl_swapper.detector.detect(astronaut))
    with pytest.raises(InputError, match="needs a face parser"):
        build_crop_masks(aligned, "occlusion")
    with pytest.raises(InputError, match="never swaps"):
        build_crop_masks(aligned, MaskSpec(kind="occlusion", regions=("hair", "glasses")), labels=label_map())
    with pytest.raises(InputError, match="parsing labels"):
        build_crop_masks(aligned, "occlusion", labels=torch.zeros(3, 512, 512, dtype=torch.int64))
    keep = build_crop_masks(aligned, MaskSpec(kind="occlusion", regions=("skin", "hair")), labels=label_map())
    assert torch.equal(keep, build_crop_masks(aligned, MaskSpec(kind="occlusion", regions=("skin",)),
                                              labels=label_map()))


def test_a_hand_over_the_face_survives_a_real_swap(astronaut, pl_identity, pl_models,
                                                   fast_generator_path):
    from simswap_core.models.loaders import load_generator
    from simswap_core.swap import FaceSwapper

    _g, arcface, detector = pl_models
    swapper = FaceSwapper(load_generator(fast_generator_path), arcface, detector, parser=ColourKeyParser(),
                          device="cpu")
    faces = detector.detect(astronaut)                    # found on the clean photo (the hand hides the mouth)
    box = faces.boxes[0]
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] * 0.15 + box[3] * 0.85)
    occluded, hand = draw_hand(astronaut, cx, cy, float(box[2] - box[0]) * 0.4)
    out = swapper.swap(occluded, pl_identity, faces=faces, mask=MaskSpec(kind="occlusion")).images
    assert torch.equal(out[:, :, hand], occluded[:, :, hand])                  # the hand, bit for bit
    eyes = faces.points[0, :2].round().long()
    assert all((out[0, :, y, x] - occluded[0, :, y, x]).abs().max() > 0 for x, y in eyes.tolist())  # face swapped
    plain = swapper.swap(occluded, pl_identity, faces=faces, mask=MaskSpec(kind="parsing")).images
    assert not torch.equal(plain[:, :, hand], occluded[:, :, hand])            # the centred feather bleeds over it
