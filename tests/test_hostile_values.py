"""Bad values at every public entry (issue 8, deliverable 4): NaN/inf pixels, 0..255 floats, negative values,
integer dtypes and wrong shapes for every function that takes images; bad identities; out-of-range, non-finite
and overflowing options; the same through the node functions and through a real ComfyUI server.

Each bad value must be an InputError (a SimSwapError and ValueError) naming the argument and what was expected,
raised before any model work - never a raw OverflowError/AttributeError, a silent fallback or a wrong result.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from comfy_harness import server, use_comfy_api  # noqa: F401 (fixture)
from simswap_core import Identity
from simswap_core.align import align_faces
from simswap_core.checks import check_images, check_integer, check_number
from simswap_core.color import match_color
from simswap_core.detection import load_detector
from simswap_core.detection.select import FaceSelection, select_faces
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces
from simswap_core.identity import extract_identity, identity_embedding
from simswap_core.masks import MaskSpec
from simswap_core.paste import paste_faces
from simswap_core.swap import FaceSwapper
from simswap_core.tracking import LandmarkSmoother

SIZE = 64


@pytest.fixture
def comfy_api() -> None:
    """ComfyUI's packages for the node tests (only these need them: the library tests run without ComfyUI)."""
    use_comfy_api()


def _frames(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(n))


def _faces(n: int = 3) -> DetectedFaces:
    """One plausible face per frame (box and 5 landmarks inside a 64x64 frame)."""
    pts = torch.tensor([[22.0, 26], [42, 26], [32, 36], [24, 46], [40, 46]])
    return DetectedFaces(torch.tensor([[12.0, 12, 52, 56]]).repeat(n, 1), pts.repeat(n, 1, 1), torch.full((n,), 0.9),
                         torch.arange(n), [(SIZE, SIZE)] * n)


def _identity(latent: torch.Tensor | None = None) -> Identity:
    lat = F.normalize(torch.randn(512, generator=torch.Generator().manual_seed(1)), dim=0) if latent is None else latent
    return Identity(lat, torch.randn(512), 1, {})


def _with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[1, 0, :2, :6] = float("nan")                       # 12 NaN values in item 1
    return x


def _with_inf(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[2, 1, 5, 5] = float("inf")
    return x


# name -> (make the bad batch from a good one, what the message must say)
BAD_BATCHES = {
    "nan": (_with_nan, r"\[1\] has 12 NaN and 0 inf values"),
    "inf": (_with_inf, r"\[2\] has 0 NaN and 1 inf values"),
    "0..255 floats": (lambda x: x * 255, r"looks like 0\.\.255 values: divide by 255"),
    "far out of range": (lambda x: x * 1e6, r"values up to \d"),
    "negative": (lambda x: x - 0.9, r"values down to -0\.\d+ \(negative values"),
    "uint8": (lambda x: (x * 255).to(torch.uint8), r"dtype torch\.uint8 \(divide uint8 by 255\)"),
    "int64": (lambda x: (x * 255).long(), r"dtype torch\.int64"),
    "bool": (lambda x: x > 0.5, r"dtype torch\.bool"),
    "complex": (lambda x: torch.complex(x, x), r"dtype torch\.complex64"),
    "4 channels": (lambda x: torch.cat([x, x[:, :1]], 1), r"3 channels first"),
    "HWC layout": (lambda x: x.permute(0, 2, 3, 1), r"3 channels first"),
    "not a tensor": (lambda x: x.numpy(), r"expected a torch tensor"),
}


def _entry_points(pl_swapper, pl_models):
    """name -> (a good input, the call, the name the message must carry)."""
    gen, arc, det = pl_models
    faces, ident = _faces(), _identity()
    good = _frames()
    aligned = align_faces(good, faces, 224)
    return {
        "FaceSwapper.swap": (good, lambda x: pl_swapper.swap(x, ident, faces=faces), "swap frames"),
        "FaceSwapper.extract_identity": (good, lambda x: pl_swapper.extract_identity(x), "extract_identity images"),
        "extract_identity": (good, lambda x: extract_identity(arc, det, x), "extract_identity images"),
        "extract_identity list": (good, lambda x: extract_identity(arc, det, [good[:1], x]),
                                  "extract_identity images"),
        "align_faces": (good, lambda x: align_faces(x, faces, 224), "align_faces frames"),
        "paste_faces frames": (good, lambda x: paste_faces(x, aligned.crops, aligned), "paste_faces frames"),
        "paste_faces faces": (aligned.crops, lambda x: paste_faces(good, x, aligned), "paste_faces"),
        "detector.detect": (good, lambda x: det.detect(x), "frames"),
        "identity_embedding": (aligned.crops, lambda x: identity_embedding(arc, x), "identity crops"),
    }


ENTRY_NAMES = ["FaceSwapper.swap", "FaceSwapper.extract_identity", "extract_identity", "extract_identity list",
               "align_faces", "paste_faces frames", "paste_faces faces", "detector.detect", "identity_embedding"]
SHAPE_CASES = {"4 channels", "HWC layout", "not a tensor"}


@pytest.mark.parametrize("bad", sorted(BAD_BATCHES))
@pytest.mark.parametrize("entry", ENTRY_NAMES)
def test_bad_image_batches_are_refused_at_every_entry(pl_swapper, pl_models, entry, bad):
    good, call, what = _entry_points(pl_swapper, pl_models)[entry]
    make, message = BAD_BATCHES[bad]
    if entry == "paste_faces faces" and bad in SHAPE_CASES:
        message = r"faces must be \[3,3,224,224\] like the aligned crops"   # checked against the alignment first
    with pytest.raises(InputError, match=message) as e:
        call(make(good))
    assert what in str(e.value), str(e.value)


def test_the_check_accepts_resampling_overshoot_and_empty_batches():
    x = _frames()
    x[0, 0, 0, 0], x[0, 0, 0, 1] = -0.1, 1.1               # bicubic/Lanczos overshoot at sharp edges
    assert check_images(x, "frames") is x
    assert check_images(x.half(), "frames").dtype == torch.float16
    assert check_images(torch.zeros(0, 3, 8, 8), "frames", allow_empty=True).shape[0] == 0


def test_match_color_refuses_non_finite_and_out_of_range_options():
    x = _frames()
    for kwargs, message in [({"strength": float("nan")}, "strength"), ({"strength": 2.0}, "strength"),
                            ({"max_ratio": 0.5}, "max_ratio"), ({"max_ratio": float("inf")}, "max_ratio"),
                            ({"weight": torch.full((3, 1, SIZE, SIZE), float("nan"))}, "weight"),
                            ({"weight": torch.ones(2, 1, SIZE, SIZE)}, "weight")]:
        with pytest.raises(InputError, match=message):
            match_color(x, x, **kwargs)


# ------------------------------------------------------------------------------------------ identities in swap()
@pytest.mark.parametrize("identity,message", [
    (_identity(torch.full((512,), float("nan"))), "latent has 512 NaN/inf values"),
    (_identity(torch.zeros(512)), "latent has length 0"),
    (_identity(F.normalize(torch.randn(512), dim=0) * 1000), "latent has length 1000"),
    (_identity(torch.ones(512, dtype=torch.int64)), "latent is torch.int64"),
    (_identity(torch.ones(256)), r"latent is torch.float32 \(256,\)"),
    (Identity(F.normalize(torch.randn(512), dim=0), torch.full((512,), float("inf"))), "embedding has 512"),
    ("anna.safetensors", "expected an Identity"),
])
def test_swap_refuses_bad_identities(pl_swapper, identity, message):
    with pytest.raises(InputError, match=message):
        pl_swapper.swap(_frames(), identity, faces=_faces())
    with pytest.raises(InputError, match=message):            # the same as a reference
        pl_swapper.swap(_frames(), _identity(), faces=_faces(), select="reference", reference=identity)


# ------------------------------------------------------------------------------------------ options
VALID_FORMS = "valid forms"


@pytest.mark.parametrize("spec,message", [
    ("index:-1", VALID_FORMS), ("index:1e30", VALID_FORMS), ("index:abc", VALID_FORMS), ("index:", VALID_FORMS),
    ("index:" + "9" * 40, VALID_FORMS), ("index:10000", VALID_FORMS), ("index:0,-2", VALID_FORMS),
    ("index:٣", VALID_FORMS), ("reference:nan", "finite"), ("reference:inf", "finite"),
    ("reference:-1", "must be > 0"), ("reference:0", "must be > 0"), ("everyone", "unknown mode"),
])
def test_bad_selection_strings(pl_swapper, pl_models, spec, message):
    with pytest.raises(InputError, match=message):
        FaceSelection.parse(spec)
    with pytest.raises(InputError, match=message):
        pl_swapper.swap(_frames(), _identity(), faces=_faces(), select=spec, reference=_identity())
    if not spec.startswith("reference"):
        with pytest.raises(InputError, match=message):
            extract_identity(pl_models[1], pl_models[2], _frames(), select=spec)


@pytest.mark.parametrize("kwargs,message", [
    ({"how": "index", "indices": (10**30,)}, "0..9999"), ({"how": "index", "indices": (-1,)}, "0..9999"),
    ({"how": "index", "indices": (1.5,)}, "0..9999"), ({"how": "index", "indices": (True,)}, "0..9999"),
    ({"how": "reference", "threshold": float("nan")}, "finite"), ({"how": "reference", "threshold": "0.1"}, "finite"),
])
def test_selection_objects_are_checked_too(kwargs, message):
    with pytest.raises(InputError, match=message):
        FaceSelection(**kwargs)


def test_selection_overrides_are_checked():
    for kwargs in ({"threshold": float("nan")}, {"threshold": -1.0}, {"threshold": "x"}, {"order": 3},
                   {"order": "diagonal"}):
        with pytest.raises(InputError):
            FaceSelection.parse("reference" if "threshold" in kwargs else "index:0", **kwargs)
    assert select_faces(_faces(), "index:9999").sum() == 0         # a valid number with no such face: nothing


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, r"batch_size: expected an integer in \[1, inf\], got 0"),
    ({"batch_size": 2.5}, "batch_size: expected an integer, got float"),
    ({"batch_size": True}, "batch_size: expected an integer, got bool"),
    ({"batch_size": "8"}, "batch_size: expected an integer, got str"),
    ({"face_batch_size": -1}, "face_batch_size"),
    ({"face_batch_size": float("nan")}, "face_batch_size"),
    ({"color_match": "no"}, "color_match: expected True or False"),
    ({"paste_mode": "fancy"}, "paste_mode"),
    ({"if_no_face": "skip"}, "if_no_face"),
    ({"mask": "ellipse:grow=nan"}, "mask grow"),
    ({"mask": "box:feather=inf"}, "mask feather"),
    ({"mask": 3}, "mask: expected"),
    ({"smoothing": "yes"}, "smoothing"),
    ({"progress": 5}, "progress"),
])
def test_bad_swap_options(pl_swapper, kwargs, message):
    with pytest.raises(InputError, match=message):
        pl_swapper.swap(_frames(), _identity(), faces=_faces(), **kwargs)


@pytest.mark.parametrize("crop_size", [100000, -224, 224.5, "224", float("nan")])
def test_bad_crop_sizes(pl_models, crop_size):
    gen, arc, det = pl_models
    with pytest.raises(InputError, match="crop_size"):
        FaceSwapper(gen, arc, det, device="cpu", crop_size=crop_size)
    with pytest.raises(InputError, match="crop_size"):
        align_faces(_frames(), _faces(), crop_size)
    with pytest.raises(InputError, match="crop_size"):
        extract_identity(arc, det, _frames(), crop_size=crop_size)


@pytest.mark.parametrize("field", ["boxes", "points", "scores"])
def test_faces_with_non_finite_coordinates(pl_swapper, field):
    faces = _faces()
    bad = getattr(faces, field).clone()
    bad.view(-1)[0] = float("nan")
    faces = faces.replace(**{field: bad})
    with pytest.raises(InputError, match="NaN/inf"):
        align_faces(_frames(), faces, 224)
    with pytest.raises(InputError, match="faces: boxes, points or scores contain NaN/inf"):
        pl_swapper.swap(_frames(), _identity(), faces=faces)


@pytest.mark.parametrize("kwargs,message", [
    ({"feather": float("nan")}, "feather"), ({"feather": -0.1}, "feather"), ({"feather": 0.6}, "feather"),
    ({"erode": float("inf")}, "erode"), ({"erode": "0.1"}, "erode"), ({"detail": float("nan")}, "detail"),
    ({"detail": 2.0}, "detail"),
    ({"crop_masks": torch.full((3, 1, 224, 224), float("nan"))}, r"crop_masks\[0\] has"),
    ({"crop_masks": torch.full((3, 1, 224, 224), 255.0)}, "crop_masks"),
    ({"crop_masks": torch.ones(3, 1, 100, 100)}, r"crop_masks: expected \[3,1,224,224\]"),
])
def test_bad_paste_options(kwargs, message):
    frames = _frames()
    aligned = align_faces(frames, _faces(), 224)
    with pytest.raises(InputError, match=message):
        paste_faces(frames, aligned.crops, aligned, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"grow": float("nan")}, "mask grow"), ({"grow": 0.7}, "mask grow"), ({"grow": "abc"}, "mask grow"),
    ({"feather": float("inf")}, "mask feather"), ({"feather": -0.1}, "mask feather"), ({"feather": 2}, "mask feather"),
])
def test_bad_mask_specs(kwargs, message):
    with pytest.raises(InputError, match=message):
        MaskSpec(kind="ellipse", **kwargs)


@pytest.mark.parametrize("kwargs", [
    {"strength": float("nan")}, {"strength": float("inf")}, {"strength": -0.1}, {"strength": 1.5},
    {"strength": "0.5"}, {"beta": float("nan")}, {"d_cutoff": 0.0}, {"iou_threshold": float("nan")},
    {"max_gap": 1.5}, {"max_gap": -1},
])
def test_bad_smoothing_options(kwargs):
    with pytest.raises(InputError, match="smoothing strength|LandmarkSmoother"):
        LandmarkSmoother(**kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"threshold": float("nan")}, "threshold"), ({"threshold": -0.1}, "threshold"), ({"threshold": 1.5}, "threshold"),
    ({"det_size": -1}, "det_size"), ({"det_size": 10**9}, "det_size"), ({"det_size": 640.5}, "det_size"),
])
def test_bad_detector_options(kwargs, message):
    with pytest.raises(InputError, match=message):
        load_detector("yunet", **kwargs)


def test_number_checks_name_range_and_value():
    with pytest.raises(InputError, match=r"x: expected a finite number in \(0, 1\], got nan"):
        check_number(math.nan, "x", low=0, high=1, low_open=True)
    with pytest.raises(InputError, match="a 31-digit number"):
        check_integer(10**30, "n", low=0, high=99)
    assert check_number(0.5, "x", low=0, high=1) == 0.5 and check_integer(3, "n", low=0) == 3


# ------------------------------------------------------------------------------------------ node functions
def test_node_widget_parsers(comfy_api):
    from nodes.selection import make_mask_spec, make_selection, parse_indices, validate_face_index

    for text in ("1" + "0" * 30, "10^30", "-1", "", "1e3", "0,,x", "٣"):
        with pytest.raises(InputError, match="face_index: expected face numbers 0..9999"):
            parse_indices(text)
        assert "0..9999" in validate_face_index(text)
    assert parse_indices(" 0, 2 ") == (0, 2)
    with pytest.raises(InputError, match="reference_threshold"):
        make_selection("reference", "0", "left-right", float("nan"))
    with pytest.raises(InputError, match="mask_feather"):
        make_mask_spec("ellipse", "skin", 0.0, float("nan"))
    with pytest.raises(InputError, match="mask_feather"):
        make_mask_spec("ellipse", "skin", 0.0, -5.0)
    with pytest.raises(InputError, match="mask_grow"):
        make_mask_spec("ellipse", "skin", float("inf"), -1.0)


def test_node_image_and_mask_conversions_check_values(comfy_api):
    from nodes._common import image_to_nchw, mask_to_n1hw

    good = torch.rand(2, SIZE, SIZE, 3)
    assert image_to_nchw(good).shape == (2, 3, SIZE, SIZE)
    with pytest.raises(InputError, match=r"images\[1\] has 1 NaN"):
        bad = good.clone()
        bad[1, 0, 0, 0] = float("nan")
        image_to_nchw(bad, "images")
    with pytest.raises(InputError, match="divide by 255"):
        image_to_nchw(good * 255, "images")
    with pytest.raises(InputError, match="dtype torch.uint8"):
        image_to_nchw((good * 255).to(torch.uint8), "images")
    with pytest.raises(InputError, match=r"crop_masks\[0\] has"):
        mask_to_n1hw(torch.full((1, 8, 8), float("inf")), "crop_masks")


def _managed(pl_models):
    from nodes._common import ManagedModel

    gen, arc, _ = pl_models
    return (ManagedModel(gen, kind="generator", name="g", path="g", crop_size=224),
            ManagedModel(arc, kind="arcface", name="a", path="a"))


@pytest.mark.parametrize("override,message", [
    ({"temporal_smoothing": float("nan")}, "temporal_smoothing"),
    ({"temporal_smoothing": -1.0}, "temporal_smoothing"),
    ({"reference_threshold": float("nan"), "faces": "reference"}, "reference_threshold"),
    ({"face_index": "1" + "0" * 30, "faces": "index"}, "face_index"),
    ({"batch_size": 10**30}, "batch_size"),
    ({"mask_feather": float("nan")}, "mask_feather"),
    ({"identity": _identity(torch.full((512,), float("nan")))}, "identity: latent has 512 NaN"),
])
def test_swap_node_refuses_bad_widget_values(comfy_api, pl_models, override, message):
    from nodes.swap import SimSwapSwap, SwapSettings

    gen, arc = _managed(pl_models)
    kwargs = {"images": torch.rand(1, SIZE, SIZE, 3), "identity": _identity(), "generator": gen, "arcface": arc,
              "detector": pl_models[2], "faces": "all", "face_index": "0", "order": "left-right", "mask": "box",
              "if_no_face": "keep", "reference": _identity()}
    moved = {"mask_regions": "skin", "mask_grow": 0.0, "mask_feather": "auto", "paste_mode": "default",
             "color_match": False, "batch_size": 8}  # the settings of 'SimSwap Swap Options'
    for key, value in override.items():
        (moved if key in SwapSettings.__dataclass_fields__ else kwargs)[key] = value
    kwargs["options"] = SwapSettings(**moved)
    with pytest.raises(InputError, match=message):
        SimSwapSwap.execute(**kwargs)


@pytest.mark.parametrize("override,message", [
    ({"feather": float("nan")}, "feather"), ({"erode": float("inf")}, "erode"),
    ({"crops": torch.full((3, 224, 224, 3), 255.0)}, "divide by 255"),
])
def test_paste_node_refuses_bad_widget_values(comfy_api, override, message):
    from nodes.faces import SimSwapPasteFaces

    frames = _frames()
    aligned = align_faces(frames, _faces(), 224)
    kwargs = {"images": frames.movedim(1, -1), "crops": aligned.crops.movedim(1, -1), "alignment": aligned,
              "paste_mode": "default", "color_match": False, "feather": 0.12, "erode": 0.04}
    kwargs.update(override)
    with pytest.raises(InputError, match=message):
        SimSwapPasteFaces.execute(**kwargs)


def test_identity_nodes_stay_in_their_folder(comfy_api, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    import nodes.identity as node_identity

    root = tmp_path / "simswap"
    (root / "identities").mkdir(parents=True)
    monkeypatch.setattr(node_identity, "folder_search_paths", lambda folder: [str(root)])
    outside = root / "x.safetensors"       # a file next to identities/, in the model folder
    save_file({"latent": _identity().latent, "embedding": torch.randn(512)}, str(outside),
              metadata={"format": "simswap-identity", "format_version": "1", "num_sources": "1"})
    for name in ("../x.safetensors", "../x", "/etc/passwd", "a\x00b.safetensors", ""):
        with pytest.raises(InputError, match="identity name"):
            node_identity.SimSwapLoadIdentity.execute(name)
        with pytest.raises(InputError):
            node_identity._identity_file(name, "error")
    assert outside.exists()
    # saving when identities/ is a file: a clear error naming it, the file untouched
    (root / "identities").rmdir()
    (root / "identities").write_text("not a folder")
    with pytest.raises(InputError, match="is a file"):
        node_identity.SimSwapSaveIdentity.execute(_identity(), "anna", "increment")
    assert (root / "identities").read_text() == "not a folder"


# ------------------------------------------------------------------------------------------ a real ComfyUI server
def test_bad_widget_values_through_a_real_server(comfy_api, server):
    from test_comfyui_server import assert_server_still_works, execution_error, loaders, swap_prompt

    # an overflowing face number is refused before anything runs, with the reason
    status, data = server.queue({**loaders(), **swap_prompt(["src", 0], faces="index", face_index="1" + "0" * 30)})
    assert status == 400, data
    errors = data["node_errors"]["swap"]["errors"]
    assert "0..9999" in json.dumps(errors) and "Overflow" not in json.dumps(errors), errors
    # NaN passes ComfyUI's own min/max check (every comparison with NaN is false): the node refuses it
    options = {"opt": {"class_type": "SimSwapSwapOptions", "inputs": {
        "mask_regions": "skin", "mask_grow": 0.0, "mask_feather": "auto", "paste_mode": "default",
        "color_match": False, "batch_size": 8, "reference_threshold": 0.03, "temporal_smoothing": float("nan")}}}
    entry = server.run({**loaders(), **options, **swap_prompt(["src", 0], options=["opt", 0])}, expect="error")
    err = execution_error(entry)
    assert err["node_type"] == "SimSwapSwapOptions" and err["exception_type"].endswith("InputError"), err
    assert "temporal_smoothing: expected a finite number in [0, 1], got nan" in err["exception_message"], err
    assert_server_still_works(server)
