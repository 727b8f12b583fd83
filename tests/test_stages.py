"""The pipeline as stages: faces given to swap() are not detected again, per-batch records join into one result,
identity extraction without a generator, tracked faces carry track ids, mask kinds register themselves, the
official parsing mask is a crop mask, the frame-space union of crop masks, swapped crops on the frames' device."""
from __future__ import annotations

import torch

from simswap_core.align import AlignedFaces
from simswap_core.faces import DetectedFaces
from simswap_core.identity import extract_identity
from simswap_core.masks import MASKERS, CropMasker, MaskSpec, build_crop_masks, official_parsing_crop_masks
from simswap_core.paste import frame_masks, paste_faces
from simswap_core.swap import SwapResult
from simswap_core.tracking import LandmarkSmoother


class CountingDetector:
    """Wraps a detector and counts its calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.name, self.threshold = inner.name, inner.threshold

    def detect(self, frames):
        self.calls += 1
        return self.inner.detect(frames)


def test_given_faces_are_not_detected_again(pl_swapper, pl_identity, astronaut):
    frames = torch.cat([astronaut, astronaut.flip(3), astronaut])
    faces = pl_swapper.detector.detect(frames)
    want = pl_swapper.swap(frames, pl_identity, batch_size=2)
    counting = CountingDetector(pl_swapper.detector)
    detector, pl_swapper.detector = pl_swapper.detector, counting
    try:
        got = pl_swapper.swap(frames, pl_identity, faces=faces, batch_size=2)
    finally:
        pl_swapper.detector = detector
    assert counting.calls == 0
    assert torch.equal(got.images, want.images) and torch.equal(got.mask, want.mask)
    assert got.faces.frame_index.tolist() == want.faces.frame_index.tolist() == [0, 1, 2]


def test_given_faces_must_belong_to_the_frames(pl_swapper, pl_identity, astronaut):
    import pytest

    from simswap_core.errors import InputError

    faces = pl_swapper.detector.detect(astronaut)
    with pytest.raises(InputError, match="faces: expected the DetectedFaces of these 2 frame"):
        pl_swapper.swap(torch.cat([astronaut, astronaut]), pl_identity, faces=faces)


def test_batches_join_into_one_result(pl_swapper, pl_identity, astronaut):
    coffee = torch.zeros(1, 3, 512, 512)
    frames = torch.cat([astronaut, coffee, astronaut.flip(3)])
    whole = pl_swapper.swap(frames, pl_identity, if_no_face="keep", batch_size=1)
    parts = [pl_swapper.swap(frames[i:i + 1], pl_identity, if_no_face="keep", batch_size=1) for i in range(3)]
    joined = SwapResult.concat(parts)
    assert torch.equal(joined.images, whole.images) and torch.equal(joined.mask, whole.mask)
    assert joined.frames_without_face == whole.frames_without_face == [1]
    assert joined.faces.frame_index.tolist() == whole.faces.frame_index.tolist() == [0, 2]
    assert joined.aligned.frame_index.tolist() == [0, 2] and len(joined.aligned.frame_sizes) == 3
    assert torch.equal(joined.swapped, whole.swapped)


def test_swapped_crops_come_back_on_the_frames_device(pl_swapper, pl_identity, astronaut):
    res = pl_swapper.swap(astronaut, pl_identity)
    for t in (res.images, res.mask, res.swapped, res.aligned.crops, res.faces.boxes):
        assert t.device == astronaut.device


def test_extract_identity_without_a_generator(pl_models, pl_swapper, astronaut):
    _, arcface, detector = pl_models
    want = pl_swapper.extract_identity(astronaut)
    got = extract_identity(arcface, detector, astronaut, crop_size=224)
    assert torch.equal(got.latent, want.latent) and torch.equal(got.embedding, want.embedding)
    other = extract_identity(arcface, detector, astronaut, crop_size=512)
    assert not torch.equal(other.latent, want.latent)          # FFHQ alignment at 512: another crop


def test_detected_faces_frames_and_track_ids(pl_swapper, astronaut):
    frames = torch.cat([astronaut, astronaut, astronaut.flip(3)])
    faces = pl_swapper.detector.detect(frames)
    part = faces.frames(1, 3)
    assert part.num_frames == 2 and part.frame_index.tolist() == [0, 1]
    assert torch.equal(part.boxes, faces.boxes[1:])
    tracked = LandmarkSmoother(0.5)(faces)
    assert tracked.track_id is not None and tracked.track_id.tolist()[:2] == [0, 0]   # same face, same track
    joined = DetectedFaces.concat([tracked.frames(0, 1), tracked.frames(1, 3)])
    assert joined.track_id.tolist() == tracked.track_id.tolist()


def test_a_new_mask_kind_is_one_class(pl_swapper, astronaut):
    class CircleMasker(CropMasker):
        kind = "test_circle"
        order = 99

        def __call__(self, aligned, spec, parser=None, *, labels=None):
            s = aligned.crop_size
            yx = torch.stack(torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")).float()
            inside = ((yx - s / 2) ** 2).sum(0) < (s / 3) ** 2
            return inside.float().expand(len(aligned), 1, s, s)

    try:
        spec = MaskSpec.parse("test_circle")
        faces = pl_swapper.detector.detect(astronaut)
        aligned = pl_swapper.align(astronaut, faces)
        masks = build_crop_masks(aligned, spec)
        assert masks.shape == (1, 1, 224, 224) and 0 < masks.mean() < 1
    finally:
        MASKERS.pop("test_circle")


def test_official_parsing_paste_is_a_crop_mask(pl_swapper, astronaut):
    """paste_faces has no parser: the official parsing composition comes in as crop masks."""
    faces = pl_swapper.detector.detect(astronaut)
    aligned = pl_swapper.align(astronaut, faces)
    labels = torch.zeros(1, 512, 512, dtype=torch.int64)
    labels[:, 100:400, 120:390] = 1                                  # "skin"
    m = official_parsing_crop_masks(aligned, labels=labels)
    assert m.shape == (1, 1, 224, 224) and m.max() == 1 and m.min() == 0
    swapped = torch.rand_like(aligned.crops)
    out, _ = paste_faces(astronaut, swapped, aligned, m, mode="official")
    plain, _ = paste_faces(astronaut, swapped, aligned, None, mode="official")
    assert not torch.equal(out, plain)


def test_frame_masks_is_the_union_of_crop_masks(pl_swapper, t1):
    faces = pl_swapper.detector.detect(t1)
    aligned: AlignedFaces = pl_swapper.align(t1, faces)
    crop = build_crop_masks(aligned, "ellipse")
    union = frame_masks(aligned, crop)
    assert union.shape == (1, 1, *t1.shape[-2:])
    per_face = [frame_masks(aligned.select(torch.tensor([i])), crop[i:i + 1]) for i in range(len(aligned))]
    assert torch.allclose(union, 1 - torch.stack([1 - p for p in per_face]).prod(0), atol=1e-5)
