"""Several identities in one pass (simswap_core.mapping): the assignment rules on hand-made faces, then real swaps
of t1.jpg with the crop-64 seeded generator (two identities onto two people by reference / index / track id).

Seeded ArcFace weights are random, so raw-embedding distances are large (a person's own crop ~0.3, another person
~1.0): the reference tests use threshold 0.6, between the two, instead of the official 0.03.
"""
from __future__ import annotations

import pytest
import torch

from simswap_core.detection.select import order_faces
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces
from simswap_core.identity import Identity
from simswap_core.mapping import IdentityMap, MapEntry, assign_faces, check_identity_map, reference_distances

THRESHOLD = 0.6  # seeded ArcFace: own crop 0.29-0.36, other people >= 0.99 for persons 1 and 4 of t1.jpg


def ident(seed: int) -> Identity:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(512, generator=g)
    return Identity(torch.nn.functional.normalize(e, dim=0), e)


def faces_at(xs_per_frame: list[list[float]], tracks: list[list[int]] | None = None) -> DetectedFaces:
    """Faces of 50 px boxes at the given x positions, per frame (left-right order = the order of x)."""
    boxes, fi = [], []
    for i, xs in enumerate(xs_per_frame):
        for x in xs:
            boxes.append([x, 10.0, x + 50, 60.0])
            fi.append(i)
    b = torch.tensor(boxes).reshape(-1, 4)
    pts = (b[:, None, :2] + 25).expand(-1, 5, -1).clone()
    track_id = torch.tensor([t for ts in tracks for t in ts], dtype=torch.int64) if tracks is not None else None
    return DetectedFaces(b, pts, torch.ones(len(b)), torch.tensor(fi, dtype=torch.int64),
                         [(100, 800)] * len(xs_per_frame), track_id)


A, B, C = ident(1), ident(2), ident(3)
RA, RB = ident(11), ident(12)


def ref_map(*refs: Identity, threshold: float = 0.03) -> IdentityMap:
    m = IdentityMap()
    for k, r in enumerate(refs):
        m = m.add(MapEntry([A, B, C][k], "reference", reference=r, threshold=threshold))
    return m


# ------------------------------------------------------------------------------------------ rules, no models

def test_reference_rule_closest_pairs_first_and_one_face_each():
    faces = faces_at([[0, 100, 200], [0, 100]])
    d = torch.tensor([[0.010, 0.005],    # frame 0: face 0 is closest to both references: B (0.005) takes it
                      [0.020, 0.100],    # ... so A goes to its next closest face below 0.03
                      [0.500, 0.500],    # ... too far from both
                      [0.050, 0.020],    # frame 1: A above its threshold everywhere; B closest here
                      [0.040, 0.025]])   # ... and B, below its threshold here too, is already used in this frame
    keep, slots = assign_faces(faces, ref_map(RA, RB), distances=d, track_slots=None)
    assert slots.tolist() == [1, 0, -1, 1, -1]
    assert keep.tolist() == [True, True, False, True, False]
    # a reference's own threshold
    m = IdentityMap().add(MapEntry(A, "reference", reference=RA, threshold=0.015)) \
        .add(MapEntry(B, "reference", reference=RB, threshold=0.03))
    assert assign_faces(faces, m, distances=d, track_slots=None)[1].tolist() == [1, -1, -1, 1, -1]


def test_reference_distances_match_the_official_mse():
    emb = torch.randn(4, 512)
    d = reference_distances(emb, ref_map(RA, RB))
    want = torch.stack([((emb - r.embedding[None]) ** 2).mean(1) for r in (RA, RB)], 1)
    assert d.shape == (4, 2) and torch.allclose(d, want, atol=1e-4)


def test_index_and_track_entries_and_unmapped_faces():
    faces = faces_at([[300, 0, 150], [0, 150]], tracks=[[7, 3, 9], [3, 7]])
    m = IdentityMap(order="left-right").add(MapEntry(A, "index", index=1)).add(MapEntry(B, "track", track=7))
    keep, slots = assign_faces(faces, m, distances=None, track_slots=None)
    # frame 0: x=150 is number 1 -> A; track 7 -> B; x=0 (track 3) unmapped. frame 1: track 3 at number 0, unmapped;
    # track 7 at number 1: the track entry comes first, so index 1 finds its face taken
    assert slots.tolist() == [1, -1, 0, -1, 1]
    m2 = IdentityMap(order="score").add(MapEntry(A, "index", index=0))
    f2 = faces_at([[0, 100]]).replace(scores=torch.tensor([0.5, 0.9]))
    assert assign_faces(f2, m2, distances=None, track_slots=None)[1].tolist() == [-1, 0]


def test_sticky_reference_keeps_a_turned_head_until_someone_matches_better():
    # track 5 matches A in frame 0, turns away in frame 1 (distance 0.2), and in frame 2 another face (track 6)
    # matches A better: it takes A, track 5 loses it and forgets it
    faces = faces_at([[0], [0], [0, 200], [0]], tracks=[[5], [5], [5, 6], [5]])
    d = torch.tensor([[0.01], [0.20], [0.20], [0.02], [0.20]])
    memory: dict[int, int] = {}
    keep, slots = assign_faces(faces, ref_map(RA), distances=d, track_slots=memory)
    assert slots.tolist() == [0, 0, -1, 0, -1]
    assert memory == {6: 0}
    # without memory the turned head is not swapped
    assert assign_faces(faces, ref_map(RA), distances=d, track_slots=None)[1].tolist() == [0, -1, -1, 0, -1]


def test_sticky_memory_lasts_across_calls_and_index_identities_follow_people_who_change_places():
    m = IdentityMap().add(MapEntry(A, "index", index=0)).add(MapEntry(B, "index", index=1))
    memory: dict[int, int] = {}
    first = faces_at([[0, 300]], tracks=[[1, 2]])
    assert assign_faces(first, m, distances=None, track_slots=memory)[1].tolist() == [0, 1]
    # next call: they changed places (track 2 now on the left), and a newcomer (track 3) stands in the middle
    later = faces_at([[0, 150, 300]], tracks=[[2, 3, 1]])
    assert assign_faces(later, m, distances=None, track_slots=memory)[1].tolist() == [1, -1, 0]
    assert memory == {1: 0, 2: 1}


def test_map_is_immutable_and_describes_itself():
    m0 = IdentityMap()
    m1 = m0.add(MapEntry(A, "reference", reference=RA, label="alice.png"))
    m2 = m1.add(MapEntry(B, "index", index=2)).add(MapEntry(C, "track", track=4))
    assert len(m0) == 0 and len(m1) == 1 and len(m2) == 3
    assert m2.identities == [A, B, C] and m2.references == [RA]
    assert m2.needs_arcface and m2.needs_tracks and not IdentityMap((MapEntry(A, "index", index=0),)).needs_arcface
    assert m2.describe() == ("alice.png -> reference (threshold 0.03); #1 -> face index 2 (left-right); "
                             "#2 -> track 4")


@pytest.mark.parametrize("make, words", [
    (lambda: MapEntry(A, "nose"), "by"),
    (lambda: MapEntry(A, "reference"), "reference identity"),
    (lambda: MapEntry(A, "index", index=-1), "index must be"),
    (lambda: MapEntry(A, "track", track=None), "track must be"),
    (lambda: MapEntry(A, "reference", reference=RA, threshold=0.0), "threshold"),
    (lambda: check_identity_map(IdentityMap()), "empty"),
    (lambda: check_identity_map("A"), "expected an IdentityMap"),
    (lambda: check_identity_map(IdentityMap().add(MapEntry(A, "index", index=1)).add(MapEntry(B, "index", index=1))),
     "mapped twice"),
    (lambda: IdentityMap().add(MapEntry(A, "index", index=0)).add(MapEntry(B, "index", index=1), order="size"),
     "same order"),
    (lambda: assign_faces(faces_at([[0]]), ref_map(RA), distances=None, track_slots=None), "distances"),
])
def test_bad_maps_are_clear_errors(make, words):
    with pytest.raises(InputError, match=words):
        make()


# ------------------------------------------------------------------------------------------ real swaps

PEOPLE = (1, 4)  # t1.jpg faces (left-right) used as "two people": their seeded-ArcFace distances separate best


@pytest.fixture(scope="module")
def scene(fast_swapper, t1, astronaut):
    """t1.jpg, its faces, the numbers of PEOPLE among them, a reference identity of each person extracted from
    a crop of the photo around them, and two source identities (the astronaut and t1's face 0)."""
    faces = fast_swapper.detect(t1)
    rank = order_faces(faces, "left-right")
    refs, which = [], []
    for person in PEOPLE:
        i = int((rank == person).nonzero()[0])
        x1, y1, x2, y2 = faces.boxes[i].tolist()
        w = x2 - x1
        crop = t1[:, :, int(max(0, y1 - w)):int(y2 + w), int(max(0, x1 - w)):int(x2 + w)]
        refs.append(fast_swapper.extract_identity(crop))
        which.append(i)
    sources = [fast_swapper.extract_identity(astronaut), fast_swapper.extract_identity(t1, select="index:0")]
    return {"faces": faces, "which": which, "refs": refs, "sources": sources}


def person_region(faces: DetectedFaces, i: int, shape: tuple[int, ...]) -> torch.Tensor:
    """[1,1,H,W] bool: the box of face i grown by half its size (where its swap is pasted)."""
    x1, y1, x2, y2 = faces.boxes[i].tolist()
    g = (x2 - x1) / 2
    m = torch.zeros(1, 1, *shape[-2:], dtype=torch.bool)
    m[..., int(max(0, y1 - g)):int(y2 + g), int(max(0, x1 - g)):int(x2 + g)] = True
    return m


def check_two_people(res, scene, t1, slot_of_person):
    faces = scene["faces"]
    got = {int(torch.cdist(res.faces.boxes[k:k + 1], faces.boxes).argmin()): int(res.identity_slots[k])
           for k in range(len(res.faces))}
    assert got == {scene["which"][p]: s for p, s in enumerate(slot_of_person)}, "each person gets their identity"
    assert res.frames_without_face == []
    # unmapped faces (and everything else outside the mask) bit-identical
    changed = (res.images != t1).any(1, keepdim=True)
    assert not (changed & (res.mask == 0)).any()
    for i in range(len(faces)):
        if i not in scene["which"]:
            assert not changed[person_region(faces, i, t1.shape)].any(), f"unmapped face {i} changed"


def test_two_identities_onto_two_people_by_reference_then_reversed(fast_swapper, scene, t1):
    src0, src1 = scene["sources"]
    ref0, ref1 = scene["refs"]

    def mapped(a, b):
        m = IdentityMap().add(MapEntry(a, "reference", reference=ref0, threshold=THRESHOLD, label="a")) \
            .add(MapEntry(b, "reference", reference=ref1, threshold=THRESHOLD, label="b"))
        return fast_swapper.swap(t1, None, faces=scene["faces"], identity_map=m, if_no_face="keep")

    res = mapped(src0, src1)
    check_two_people(res, scene, t1, [0, 1])
    # the same faces with the identities exchanged: both people's swapped pixels change
    rev = mapped(src1, src0)
    check_two_people(rev, scene, t1, [0, 1])
    for p in range(2):
        region = person_region(scene["faces"], scene["which"][p], t1.shape) & (res.mask > 0)
        assert region.any()
        diff = (res.images - rev.images).abs().amax(1, keepdim=True)[region]
        assert diff.mean() > 0.02, f"person {p}: the two identities give the same pixels"
    # and each person's pixels are exactly what a one-identity swap of that face gives
    for p, src in enumerate((src0, src1)):
        single = fast_swapper.swap(t1, src, faces=scene["faces"], select=f"index:{PEOPLE[p]}")
        region = person_region(scene["faces"], scene["which"][p], t1.shape)
        assert torch.equal(single.images.expand(1, 3, -1, -1)[region.expand(1, 3, -1, -1)],
                           res.images[region.expand(1, 3, -1, -1)])


def test_two_identities_by_index_and_by_track(fast_swapper, scene, t1):
    src0, src1 = scene["sources"]
    m = IdentityMap().add(MapEntry(src1, "index", index=PEOPLE[0])).add(MapEntry(src0, "index", index=PEOPLE[1]))
    by_index = fast_swapper.swap(t1, None, faces=scene["faces"], identity_map=m)
    check_two_people(by_index, scene, t1, [0, 1])
    faces = scene["faces"]
    tracks = torch.arange(len(faces), dtype=torch.int64) + 10
    m = IdentityMap().add(MapEntry(src1, "track", track=int(tracks[scene["which"][0]]))) \
        .add(MapEntry(src0, "track", track=int(tracks[scene["which"][1]])))
    by_track = fast_swapper.swap(t1, None, faces=faces.replace(track_id=tracks), identity_map=m)
    check_two_people(by_track, scene, t1, [0, 1])
    assert torch.equal(by_track.images, by_index.images)
    assert by_track.faces.track_id.tolist() == [int(tracks[i]) for i in sorted(scene["which"])]


def test_no_mapped_face_is_reported_and_bad_calls_name_the_argument(fast_swapper, scene, t1):
    src0 = scene["sources"][0]
    m = IdentityMap().add(MapEntry(src0, "index", index=9))
    res = fast_swapper.swap(t1, None, identity_map=m, if_no_face="keep")
    assert len(res.faces) == 0 and torch.equal(res.images, t1)
    assert res.no_face_reasons[0].startswith("no face matched the identity map: 6 faces detected")
    assert "numbered 0-5 (left-right)" in res.summary()
    with pytest.raises(InputError, match="either identity or identity_map"):
        fast_swapper.swap(t1, src0, identity_map=m)
    with pytest.raises(InputError, match="select"):
        fast_swapper.swap(t1, None, identity_map=m, select="largest")
    with pytest.raises(InputError, match="not tracked"):
        fast_swapper.swap(t1, None, identity_map=IdentityMap().add(MapEntry(src0, "track", track=1)))


# ------------------------------------------------------------------------------------------ temporal hooks

@pytest.fixture(scope="module")
def two_faces(t1):
    """Two people of t1.jpg (faces 1 and 2, left-right) in a 360x320 crop: frame 0 as is, frame 1 shifted by 6 px."""
    crop = t1[:, :, 120:440, 240:600]
    return torch.cat([crop, torch.roll(crop, shifts=(3, 6), dims=(2, 3))])


def test_temporal_state_smooths_masks_and_colours_of_tracked_faces_only(fast_swapper, t1, scene):
    from simswap_core.masks import MaskSpec
    from simswap_core.temporal import TemporalState

    src = scene["sources"][0]
    one = t1[:, :, 100:320, 220:420]                                   # person 1 of t1.jpg
    frames = torch.cat([one, torch.roll(one, shifts=(3, 6), dims=(2, 3))])
    faces = fast_swapper.detect(frames)
    assert faces.counts() == [1, 1]
    tracked = faces.replace(track_id=torch.tensor([0, 0]))
    two_faces = frames
    common = dict(mask=MaskSpec.parse("ellipse"), color_match=True)
    plain = fast_swapper.swap(two_faces, src, faces=tracked, **common)
    masks = fast_swapper.swap(two_faces, src, faces=tracked, temporal=TemporalState(0.9, 0.0), **common)
    colours = fast_swapper.swap(two_faces, src, faces=tracked, temporal=TemporalState(0.0, 0.9), **common)
    for res in (masks, colours):
        assert torch.equal(res.images[0], plain.images[0]), "the first frame starts each track's filter"
        assert (res.images[1] - plain.images[1]).abs().max() > 0.01, "the second frame is filtered"
        changed = (res.images[1] != plain.images[1]).any(0)
        assert not (changed & (plain.mask[1, 0] == 0) & (res.mask[1, 0] == 0)).any()
    assert not torch.equal(masks.mask[1], plain.mask[1]) and torch.equal(colours.mask[1], plain.mask[1])
    # untracked faces (no track ids) go through unchanged, as without a TemporalState
    untracked = fast_swapper.swap(two_faces, src, faces=faces, temporal=TemporalState(0.9, 0.9), **common)
    assert torch.equal(untracked.images, plain.images)


def test_track_slots_of_the_temporal_state_last_across_calls(fast_swapper, two_faces, scene):
    """Two people mapped by index; in the next call (the same stream) they changed places: with the stream's
    TemporalState each keeps the identity their track got, without it the numbers decide."""
    from simswap_core.temporal import TemporalState

    src0, src1 = scene["sources"]
    m = IdentityMap().add(MapEntry(src0, "index", index=0)).add(MapEntry(src1, "index", index=1))
    frame = two_faces[:1]
    faces = fast_swapper.detect(frame)
    state = TemporalState(0.0, 0.0)
    first = fast_swapper.swap(frame, None, faces=faces.replace(track_id=torch.tensor([4, 9])), identity_map=m,
                              temporal=state)
    assert first.identity_slots.tolist() == [0, 1] and state.track_slots == {4: 0, 9: 1}
    swapped_places = faces.replace(track_id=torch.tensor([9, 4]))
    later = fast_swapper.swap(frame, None, faces=swapped_places, identity_map=m, temporal=state)
    assert later.identity_slots.tolist() == [1, 0]
    fresh = fast_swapper.swap(frame, None, faces=swapped_places, identity_map=m)
    assert fresh.identity_slots.tolist() == [0, 1]
    assert torch.equal(fresh.images, first.images) and not torch.equal(later.images, first.images)
