"""Crop-space masks as data: box, ellipse from landmarks, parsing regions; grow/shrink/feather semantics; value
range and shapes; the official SoftErosion and the 5000 threshold of the parsing mask.

Landmarks are the astronaut's 5 points (skimage photo) aligned by simswap_core.align; no detector, no weights.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simswap_core.align import AlignedFaces, align_faces, templates
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces
from simswap_core.masks import (
    MaskSpec,
    SoftErosion,
    box_masks,
    build_crop_masks,
    crop_border_mask,
    ellipse_masks,
    feather_mask,
    grow_mask,
    official_parsing_mask,
    soft_erosion,
)

S = 224
ASTRONAUT_POINTS = [[200.1, 101.8], [247.2, 102.6], [220.3, 124.7], [198.9, 143.2], [239.8, 143.9]]


@pytest.fixture(scope="module")
def aligned(astronaut) -> AlignedFaces:
    # face 2: a longer face (mouth 8 px lower), not a similarity of face 1, so its crop landmarks differ
    longer = [[p[0], p[1] + (8 if i >= 3 else 0)] for i, p in enumerate(ASTRONAUT_POINTS)]
    pts = torch.tensor([ASTRONAUT_POINTS, longer])
    faces = DetectedFaces(torch.zeros(2, 4), pts, torch.ones(2), torch.zeros(2, dtype=torch.int64), [(512, 512)])
    return align_faces(astronaut, faces, S)


def _check(m: torch.Tensor, f: int) -> None:
    assert m.shape == (f, 1, S, S) and m.dtype == torch.float32
    assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0 and torch.isfinite(m).all()


def _band(row: torch.Tensor, lo=0.02, hi=0.98) -> int:
    return int(((row > lo) & (row < hi)).sum())


# ------------------------------------------------------------------------------------ MaskSpec

def test_mask_spec_parse_and_validate():
    assert MaskSpec.parse("box") == MaskSpec("box")
    e = MaskSpec.parse(" Ellipse:grow=0.02,feather=0.1 ")
    assert (e.kind, e.grow, e.feather) == ("ellipse", 0.02, 0.1)
    assert MaskSpec.parse("box:shrink=0.05").grow == -0.05
    p = MaskSpec.parse("parsing:skin,nose,lips,feather=0.05")
    assert p.regions == ("skin", "nose", "lips") and p.feather == 0.05
    assert MaskSpec.parse("parsing").regions == ("skin", "brows", "eyes", "glasses", "nose", "lips", "mouth")
    for spec in (e, p, MaskSpec.parse("box:shrink=0.05"), MaskSpec("parsing")):
        assert MaskSpec.parse(str(spec)) == spec
    assert MaskSpec("box").feather_fraction == 0.0 and MaskSpec("ellipse").feather_fraction == 0.06
    assert MaskSpec("parsing").feather_fraction == 0.03
    for bad, msg in [("star", "kind"), ("box:skin", "only valid"), ("parsing:beard", "unknown"),
                     ("ellipse:grow=x", "number"), ("ellipse:size=1", "unknown option"), ("", "expected"),
                     ("box:grow=0.9", "grow"), ("box:feather=-1", "feather")]:
        with pytest.raises(InputError, match=msg):
            MaskSpec.parse(bad)


# ------------------------------------------------------------------------------------ box

def test_box_masks_grow_shrink_feather():
    full = box_masks(3, S)
    _check(full, 3)
    assert torch.equal(full, torch.ones(3, 1, S, S))
    sh = box_masks(1, S, grow=-0.1, feather=0.0)
    _check(sh, 1)
    k = round(0.1 * S)                                  # 22 px off each edge
    row = sh[0, 0, S // 2]
    assert row[:k].sum() == 0 and row[k + 1:S - k - 1].min() == 1 and int(row.sum()) == S - 2 * k
    assert torch.equal(sh[0, 0], sh[0, 0].T)            # same on both axes
    soft = box_masks(1, S, grow=-0.1, feather=0.1)
    row = soft[0, 0, S // 2]
    assert abs(float(row[k]) - 0.5) < 0.1                # the edge (50 %) sits where the hard edge was
    assert abs(_band(row) / 2 - 0.1 * S) <= 0.15 * 0.1 * S     # 2-98 % band = feather * S on each side
    assert bool((row[: S // 2].diff() >= -1e-7).all())    # monotone ramp


# ------------------------------------------------------------------------------------ ellipse

def test_ellipse_from_landmarks(aligned):
    m = build_crop_masks(aligned, "ellipse:feather=0")
    _check(m, 2)
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
    pts = aligned.points.round().long()
    for f in range(2):
        assert (m[f, 0, pts[f, :, 1], pts[f, :, 0]] == 1).all()          # covers eyes, nose and mouth corners
        assert m[f, 0, 0, 0] == 0 and m[f, 0, -1, -1] == 0               # not the crop corners
    assert not torch.equal(m[0], m[1])                                   # per-face landmarks
    area = m.sum((1, 2, 3))
    assert ((area / (S * S) > 0.2) & (area / (S * S) < 0.8)).all()
    grown = build_crop_masks(aligned, "ellipse:grow=0.05,feather=0")
    shrunk = build_crop_masks(aligned, "ellipse:shrink=0.05,feather=0")
    assert (grown >= m).all() and (shrunk <= m).all()
    assert (grown.sum() > 1.1 * m.sum()) and (shrunk.sum() < 0.9 * m.sum())
    # grow moves the edge by grow*S along the horizontal axis through the centre
    row = lambda t: t[0, 0, int(aligned.points[0, :, 1].mean())]
    assert abs((row(grown).sum() - row(m).sum()) / 2 - 0.05 * S) <= 2.5


def test_ellipse_feather_width_and_default(aligned):
    hard = build_crop_masks(aligned, "ellipse:feather=0")
    soft = build_crop_masks(aligned, "ellipse:feather=0.1")
    _check(soft, 2)
    assert float(soft.max()) > 0.999
    y = int(aligned.points[0, :, 1].mean())
    right = soft[0, 0, y, S // 2:]
    assert abs(_band(right) - 0.1 * S) <= 0.15 * 0.1 * S               # soft band = feather * S
    # the 50 % contour is the hard ellipse (area nearly equal)
    assert abs(float((soft > 0.5).sum()) - float(hard.sum())) < 0.02 * float(hard.sum())
    default = build_crop_masks(aligned, "ellipse")
    assert abs(_band(default[0, 0, y, S // 2:]) - 0.06 * S) <= 0.15 * 0.06 * S
    # template points when the aligned faces carry none
    bare = AlignedFaces(aligned.crops, aligned.matrices, aligned.frame_index, aligned.frame_sizes, S, "none")
    t = build_crop_masks(bare, "ellipse:feather=0")
    assert torch.equal(t[0], t[1])
    tpl = templates(S, "none")[2].round().long()
    assert (t[0, 0, tpl[:, 1], tpl[:, 0]] == 1).all()
    direct = ellipse_masks(aligned.points, S, 0.0, 0.0)
    assert torch.equal(direct, hard)


# ------------------------------------------------------------------------------------ parsing

def _labels() -> torch.Tensor:
    """Two 512x512 label maps: vertical stripes of every label (27 px each) and one all-skin map."""
    lab = (torch.arange(512) // 27).clamp(max=18).view(1, 512).expand(512, 512)
    return torch.stack([lab, torch.ones(512, 512, dtype=torch.int64)])


def test_parsing_regions_select_labels(aligned):
    labels = _labels()
    for regions, keep in [(("skin",), {1}), (("brows", "eyes"), {2, 3, 4, 5}), (("glasses",), {6}),
                          (("nose",), {10}), (("lips",), {12, 13}), (("mouth",), {11}),
                          (("skin", "brows", "eyes", "glasses", "nose", "lips", "mouth"),
                           {1, 2, 3, 4, 5, 6, 10, 11, 12, 13})]:
        spec = MaskSpec("parsing", regions=regions, feather=0.0)
        m = build_crop_masks(aligned, spec, labels=labels)
        _check(m, 2)
        # column x of the crop sees label (x*512/S)//27 (bilinear resize of the 512 map: exact away from stripe edges)
        cols = torch.arange(S)
        lab_of_col = ((cols.float() + 0.5) * 512 / S - 0.5).round().long() // 27
        far = ((((cols.float() + 0.5) * 512 / S - 0.5) % 27) - 13).abs() < 10
        want = torch.tensor([int(int(v) in keep) for v in lab_of_col.clamp(max=18)], dtype=torch.float32)
        got = m[0, 0, S // 2]
        assert torch.equal(got[far], want[far]), regions
        assert torch.equal(m[1], torch.full_like(m[1], float(1 in keep)))


def test_parsing_grow_shrink_feather(aligned):
    lab = torch.zeros(2, 512, 512, dtype=torch.int64)
    lab[:, 128:384, 128:384] = 1                                   # a skin square, half the crop wide
    base = build_crop_masks(aligned, "parsing:skin,feather=0", labels=lab)
    assert int(base[0, 0, S // 2].sum()) == S // 2
    g = build_crop_masks(aligned, "parsing:skin,grow=0.05,feather=0", labels=lab)
    s = build_crop_masks(aligned, "parsing:skin,shrink=0.05,feather=0", labels=lab)
    k = round(0.05 * S)
    assert int(g[0, 0, S // 2].sum()) == S // 2 + 2 * k and int(s[0, 0, S // 2].sum()) == S // 2 - 2 * k
    f = build_crop_masks(aligned, "parsing:skin,feather=0.1", labels=lab)
    _check(f, 2)
    row = f[0, 0, S // 2]
    assert abs(_band(row[: S // 2]) - 0.1 * S) <= 0.2 * 0.1 * S
    assert abs(float(row[S // 4]) - 0.5) < 0.05                    # 50 % at the original edge
    with pytest.raises(InputError, match="parser"):
        build_crop_masks(aligned, "parsing")
    with pytest.raises(InputError, match="labels"):
        build_crop_masks(aligned, "parsing", labels=lab[:1])


# ------------------------------------------------------------------------------------ official pieces

def test_soft_erosion_matches_numpy_reference():
    from test_paste import _soft_erosion_np

    g = torch.Generator().manual_seed(0)
    m = torch.zeros(2, 1, S, S)
    m[0, 0, 40:180, 50:170] = 1
    m[1, 0, 60:200, 30:150] = torch.rand(140, 120, generator=g) * 0.3 + 0.7
    got, hard = SoftErosion(17, 0.9, 7)(m)
    for f in range(2):
        ref = _soft_erosion_np(m[f, 0].numpy())
        np.testing.assert_allclose(got[f, 0].numpy(), ref, rtol=0, atol=2e-5)
        assert np.array_equal(hard[f, 0].numpy(), _raw_hard(m[f, 0].numpy()))
    assert torch.equal(soft_erosion(m), got)
    # the kernel: w = max(d) - d normalised, 17x17
    w = SoftErosion(17, 0.9, 7).weight[0, 0]
    assert w.shape == (17, 17) and abs(float(w.sum()) - 1) < 1e-6 and float(w[8, 8]) == float(w.max())


def _raw_hard(m: np.ndarray) -> np.ndarray:
    import scipy.ndimage as ndi

    y, x = np.mgrid[0:17, 0:17].astype(np.float64)
    d = np.sqrt((x - 8) ** 2 + (y - 8) ** 2)
    k = (d.max() - d) / (d.max() - d).sum()
    m = m.astype(np.float64)
    for _ in range(6):
        m = np.minimum(m, ndi.correlate(m, k, mode="constant"))
    return ndi.correlate(m, k, mode="constant") >= 0.9


def test_official_parsing_mask_threshold():
    lab = torch.zeros(3, 512, 512, dtype=torch.int64)
    lab[0].view(-1)[:19] = 1                                      # 19 * 255 = 4845 < 5000: parsing ignored
    lab[1].view(-1)[:20] = 11                                     # 20 * 255 = 5100 >= 5000 (mouth counts)
    lab[2, 100:400, 120:380] = 13
    lab[2, 200:260, 200:300] = 17                                  # hair hole: excluded
    m, ok = official_parsing_mask(lab, S)
    assert ok.tolist() == [False, True, True]
    _check(m, 3)
    assert torch.equal(m[0], torch.ones(1, S, S))                  # fallback: the whole swapped crop
    assert float(m[2, 0, 0, 0]) < 0.01 and float(m[2, 0, S // 2, S // 5]) < 0.01
    assert float(m[2, 0, 130, S // 2 - 20]) == 1.0 and float(m[2, 0, S // 2 + 5, S // 2]) < 0.5
    lab17 = lab.clone()
    lab17[2, 100:400, 120:380] = 14                                # neck is excluded too
    assert official_parsing_mask(lab17, S)[1].tolist() == [False, True, False]


def test_crop_border_grow_feather_helpers():
    b = crop_border_mask(S, 0.04, 0.12)
    assert b.shape == (1, 1, S, S) and float(b[0, 0, 0, S // 2]) == 0 and float(b[0, 0, S // 2, S // 2]) == 1
    e = round(0.04 * S)
    assert b[0, 0, S // 2, :e].sum() == 0 and float(b[0, 0, S // 2, e + 1]) > 0
    assert abs(_band(b[0, 0, S // 2, : S // 2], 0.0, 1.0) - 0.12 * S) <= 2
    assert torch.equal(crop_border_mask(S, 0, 0), torch.ones(1, 1, S, S))
    m = torch.zeros(1, 1, 32, 32)
    m[..., 10:20, 10:20] = 1
    assert int(grow_mask(m, 3).sum()) == 16 * 16 and int(grow_mask(m, -3).sum()) == 4 * 4
    assert torch.equal(grow_mask(torch.ones(1, 1, 8, 8), -2), torch.ones(1, 1, 8, 8))   # crop edge is neutral
    fm = feather_mask(m, 2.0)
    assert abs(float(fm.sum()) - 100) < 1 and float(fm.max()) < 1 and float(fm[0, 0, 0, 0]) < 1e-3
    assert torch.equal(feather_mask(m, 0), m)
