"""Face selection specs, per-frame ordering and batched selection, and the preview drawing."""
from __future__ import annotations

import pytest
import torch

from simswap_core.detection import FaceSelection, draw_faces, order_faces, select_faces
from simswap_core.detection.draw import SELECTED, UNSELECTED
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces


def _faces(rows: list[tuple[int, list[float], float]], num_frames: int) -> DetectedFaces:
    """rows: (frame, [x1,y1,x2,y2], score); points are placed inside each box."""
    boxes = torch.tensor([r[1] for r in rows], dtype=torch.float32).reshape(-1, 4)
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    pts = c[:, None, :] + torch.tensor([[-5, -5], [5, -5], [0, 0], [-4, 5], [4, 5]], dtype=torch.float32)
    return DetectedFaces(boxes, pts, torch.tensor([r[2] for r in rows], dtype=torch.float32).reshape(-1),
                         torch.tensor([r[0] for r in rows], dtype=torch.int64).reshape(-1),
                         [(400, 400)] * num_frames)


# frame 0: A (middle, medium, 0.9), C (right, top, small, 0.95), B (left, bottom, largest, 0.7)
# frame 1: no face; frame 2: D alone; frame 3: E and F with equal size and score (ties)
A, C, B = [100, 50, 150, 100], [300, 10, 340, 50], [10, 200, 90, 300]
D = [50, 50, 100, 100]
E, F = [200, 100, 250, 150], [20, 100, 70, 150]
FACES = _faces([(0, A, 0.9), (0, C, 0.95), (0, B, 0.7), (2, D, 0.8), (3, E, 0.6), (3, F, 0.6)], 4)
#               0            1             2             3            4            5


def _idx(mask: torch.Tensor) -> list[int]:
    assert mask.dtype == torch.bool and mask.shape == (len(FACES),)
    return mask.nonzero().flatten().tolist()


# ----------------------------------------------------------------------------------------------- parse
@pytest.mark.parametrize("spec,expected", [
    ("all", FaceSelection("all")),
    ("largest", FaceSelection("largest")),
    ("best", FaceSelection("best")),
    ("index:0", FaceSelection("index", (0,))),
    ("index:0,2", FaceSelection("index", (0, 2))),
    ("  Index : 2, 0 @ Size ", FaceSelection("index", (2, 0), "size")),
    ("index:1@top-bottom", FaceSelection("index", (1,), "top-bottom")),
    ("index:0@score", FaceSelection("index", (0,), "score")),
    ("reference", FaceSelection("reference", threshold=0.03)),
    ("ref", FaceSelection("reference")),
    ("reference:0.05", FaceSelection("reference", threshold=0.05)),
    ("reference:all", FaceSelection("reference", all_matches=True)),
    ("ref:all:0.1", FaceSelection("reference", threshold=0.1, all_matches=True)),
])
def test_parse(spec, expected):
    sel = FaceSelection.parse(spec)
    assert sel == expected
    assert FaceSelection.parse(str(sel)) == sel, "str() gives a spec that parses back"
    assert FaceSelection.parse(sel) is sel


def test_parse_overrides():
    assert FaceSelection.parse("index:1", order="size") == FaceSelection("index", (1,), "size")
    assert FaceSelection.parse("reference", threshold=0.2).threshold == 0.2
    assert FaceSelection.parse("index:0,0,1").indices == (0, 1)


@pytest.mark.parametrize("spec,message", [
    ("index:x", "comma-separated face numbers"),
    ("index:", "comma-separated face numbers"),
    ("index:0,,1", "comma-separated face numbers"),
    ("index:0@diagonal", "unknown order 'diagonal'"),
    ("foo", "unknown mode 'foo'"),
    ("", "unknown mode ''"),
    ("all:3", "takes no argument"),
    ("largest:1", "takes no argument"),
    ("reference:bar", "reference:<threshold>"),
    ("reference:-1", "must be > 0"),
])
def test_parse_errors(spec, message):
    with pytest.raises(InputError, match=message) as e:
        FaceSelection.parse(spec)
    assert isinstance(e.value, ValueError)
    if spec not in ("reference:-1",):
        assert repr(spec) in str(e.value) or spec == "", "the message names the bad spec"


def test_constructor_and_type_errors():
    with pytest.raises(InputError, match="at least one face number"):
        FaceSelection("index")
    with pytest.raises(InputError, match="unknown order"):
        FaceSelection("index", (0,), "random")
    with pytest.raises(InputError, match="expected a string"):
        FaceSelection.parse(3)
    with pytest.raises(InputError, match="unknown order"):
        FaceSelection.parse("index:0", order="diag")


# ----------------------------------------------------------------------------------------------- order
def test_order_faces():
    #                                    A  C  B  D  E  F
    assert order_faces(FACES).tolist() == [1, 2, 0, 0, 1, 0]                 # left-right (default)
    assert order_faces(FACES, "top-bottom").tolist() == [1, 0, 2, 0, 1, 0]   # E, F same y: ties left-right
    assert order_faces(FACES, "size").tolist() == [1, 2, 0, 0, 1, 0]        # E, F same size: left first
    assert order_faces(FACES, "score").tolist() == [1, 0, 2, 0, 1, 0]
    with pytest.raises(InputError, match="unknown order"):
        order_faces(FACES, "random")
    assert order_faces(DetectedFaces.empty([(8, 8)])).shape == (0,)


# ----------------------------------------------------------------------------------------------- select
def test_select_simple_modes():
    assert _idx(select_faces(FACES, "all")) == [0, 1, 2, 3, 4, 5]
    assert _idx(select_faces(FACES, "largest")) == [2, 3, 4]      # B; D; E/F tie -> first stored (E)
    assert _idx(select_faces(FACES, "best")) == [1, 3, 4]         # C; D; tie -> first stored (E)
    assert _idx(select_faces(FACES, FaceSelection("best"))) == [1, 3, 4]


def test_select_index_modes():
    assert _idx(select_faces(FACES, "index:0")) == [2, 3, 5]      # left-most: B, D, F
    assert _idx(select_faces(FACES, "index:0,2")) == [1, 2, 3, 5]  # B and C in frame 0; no 3rd face elsewhere
    assert _idx(select_faces(FACES, "index:1")) == [0, 4]          # A; E
    assert _idx(select_faces(FACES, "index:5")) == []              # out of range everywhere: nothing, no error
    assert _idx(select_faces(FACES, "index:0@top-bottom")) == [1, 3, 5]
    assert _idx(select_faces(FACES, "index:0@size")) == [2, 3, 5]
    assert _idx(select_faces(FACES, "index:0@score")) == [1, 3, 5]


def test_select_reference():
    dist = torch.tensor([0.02, 0.01, 0.05, 0.04, 0.029, 0.03])
    #                     A     C     B     D     E      F
    assert _idx(select_faces(FACES, "reference", reference_distance=dist)) == [1, 4]  # D 0.04 >= 0.03: none
    assert _idx(select_faces(FACES, "reference:all", reference_distance=dist)) == [0, 1, 4]  # F == thr: no
    assert _idx(select_faces(FACES, "reference:0.045", reference_distance=dist)) == [1, 3, 4]
    assert _idx(select_faces(FACES, "reference:all:1", reference_distance=dist)) == [0, 1, 2, 3, 4, 5]
    tie = torch.tensor([0.01, 0.01, 0.5, 0.5, 0.5, 0.5])
    assert _idx(select_faces(FACES, "reference", reference_distance=tie)) == [0]
    with pytest.raises(InputError, match="reference_distance"):
        select_faces(FACES, "reference")
    with pytest.raises(InputError, match="3 values for 6 faces"):
        select_faces(FACES, "reference", reference_distance=torch.zeros(3))


def test_select_empty():
    empty = DetectedFaces.empty([(10, 10)] * 2)
    for spec in ("all", "largest", "best", "index:0", "index:3"):
        assert select_faces(empty, spec).shape == (0,)
    assert select_faces(empty, "reference", reference_distance=torch.zeros(0)).shape == (0,)


@pytest.mark.parametrize("spec", ["all", "largest", "best", "index:0", "index:1,3@size", "index:0@top-bottom",
                                  "index:2@score", "reference", "reference:all:0.3"])
def test_batched_equals_per_frame(spec):
    g = torch.Generator().manual_seed(5)
    counts = [0, 3, 1, 5, 2, 0, 4]
    fi = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    n = int(fi.shape[0])
    xy = torch.rand(n, 2, generator=g) * 300
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 80 + 10], 1)
    faces = DetectedFaces(boxes, torch.rand(n, 5, 2, generator=g), torch.rand(n, generator=g), fi,
                          [(400, 400)] * len(counts))
    dist = torch.rand(n, generator=g) * 0.6
    whole = select_faces(faces, spec, reference_distance=dist)
    parts = []
    for f in range(len(counts)):
        m = fi == f
        parts.append(select_faces(faces.for_frame(f), spec, reference_distance=dist[m]))
    assert torch.equal(whole, torch.cat(parts))
    if spec in ("largest", "best", "reference"):
        assert (torch.bincount(fi[whole], minlength=len(counts)) <= 1).all(), "at most one face per frame"


# ----------------------------------------------------------------------------------------------- draw
def test_draw_faces_colours_and_untouched_pixels():
    frames = torch.full((4, 3, 400, 400), 0.5)
    keep = select_faces(FACES, "index:0")  # B, D, F selected; A, C, E not
    out = draw_faces(frames, FACES, selected=keep, line_width=2)
    assert out.shape == frames.shape and out.dtype == torch.float32 and out.device == frames.device
    px = lambda f, x, y: tuple((out[f, :, y, x] * 255).round().int().tolist())
    assert px(0, 50, 300) == SELECTED          # bottom edge of B (selected)
    assert px(0, 125, 100) == UNSELECTED       # bottom edge of A
    assert px(3, 225, 150) == UNSELECTED and px(3, 45, 150) == SELECTED
    assert torch.equal(out[1], frames[1]), "a frame without faces is unchanged"
    assert torch.equal(out[:, :, 380:, 380:], frames[:, :, 380:, 380:]), "far from faces: unchanged"
    assert not torch.equal(out[0], frames[0])
    with pytest.raises(ValueError, match="4 frames of faces for 2 frames"):
        draw_faces(frames[:2], FACES)
