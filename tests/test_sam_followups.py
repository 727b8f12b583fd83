"""Issue 12 follow-ups around the SAM / occlusion mask kinds: MaskSpec region syntax and ``needs_sam``, the
installer's size cap and the messages of the SAM model kind, the lazy ``load_sam`` export, the ``SIMSWAP_SAM``
socket type and the models/sams folder, and the Face Mask node's ``sam`` input (with a stand-in SAM whose answer
is known, tests/sam_fixtures.py)."""
from __future__ import annotations

import pytest
import torch
from sam_fixtures import ColourKeySam, draw_hand

from comfy_harness import use_comfy_api
from simswap_core.errors import InputError
from simswap_core.masks import MASK_KINDS, MASKERS, MaskSpec


# ------------------------------------------------------------------------------------------ MaskSpec
@pytest.mark.parametrize("kind", ["parsing", "occlusion", "sam_parsing"])
def test_regions_parse_for_every_parser_kind_and_round_trip(kind):
    spec = MaskSpec.parse(f"{kind}:skin,nose,grow=0.02")
    assert spec.kind == kind and spec.regions == ("skin", "nose") and spec.grow == 0.02
    assert str(spec) == f"{kind}:skin,nose,grow=0.02"
    assert MaskSpec.parse(str(spec)) == spec
    assert str(MaskSpec(kind)) == kind                         # the default regions are not spelled out


@pytest.mark.parametrize("kind", ["box", "ellipse", "sam"])
def test_regions_are_refused_for_kinds_without_a_parser(kind):
    with pytest.raises(InputError, match="only valid for the kinds that use a face parser .*occlusion"):
        MaskSpec.parse(f"{kind}:skin,nose")
    with pytest.raises(InputError, match="unknown region|region"):
        MaskSpec.parse("occlusion:skin,elbow")


def test_needs_sam_follows_the_kind():
    assert {k for k in MASK_KINDS if MaskSpec(k).needs_sam} == {"sam", "sam_parsing"}
    assert all(MaskSpec(k).needs_sam == MASKERS[k].needs_sam for k in MASK_KINDS)
    assert {k for k in MASK_KINDS if MaskSpec(k).needs_parser} == {"parsing", "occlusion", "sam_parsing"}


# ------------------------------------------------------------------------------------------ models
def test_sam_download_cap_fits_vit_h(tmp_path, monkeypatch):
    from simswap_core.models import install
    from simswap_core.models.catalogue import CATALOGUE
    from simswap_core.models.download import UrlFailed

    assert install.MAX_BYTES["sam"] == 3 << 30
    assert install.MAX_BYTES["sam"] > 2_564_550_879 > install.MAX_BYTES["generator"]   # sam_vit_h_4b8939.pth
    seen: list[int] = []

    def fake_fetch(url, part, **kw):
        seen.append(kw["max_size"])
        raise UrlFailed("offline test")

    monkeypatch.setattr(install, "fetch_url", fake_fetch)
    with pytest.raises(Exception, match="sam_vit_h_4b8939.pth"):
        install.install_model(CATALOGUE["sam_vit_h"], tmp_path, retries=0, retry_wait=0.0, progress=False,
                              log=lambda _m: None)
    assert seen and set(seen) == {3 << 30}
    assert not list(tmp_path.rglob("sam_vit_h_4b8939.pth"))


def test_missing_sam_message_names_the_kind_and_default_file(tmp_path):
    from simswap_core.models.find import missing_kind_message

    msg = missing_kind_message("sam", "sam_name", "sams", [tmp_path / "sams"])
    assert msg.startswith("sam_name: no Segment Anything (SAM) model file in the 'sams' model folders")
    assert "sam_vit_b_01ec64.pth" in msg and "sam_vit_b" in msg


def test_load_sam_is_exported_lazily():
    import simswap_core
    from simswap_core.models.loaders import load_sam

    assert "load_sam" in simswap_core.__all__ and "load_sam" in dir(simswap_core)
    assert simswap_core.load_sam is load_sam


# ------------------------------------------------------------------------------------------ nodes
@pytest.fixture(scope="module")
def comfy():
    use_comfy_api()


def test_sam_socket_type_and_model_folder(comfy, tmp_path, monkeypatch):
    import folder_paths

    from nodes import _types as t
    from nodes._common import SAM_FOLDER, register_model_folders
    from nodes.sam import SimSwapSamLoader

    assert t.Sam.io_type == "SIMSWAP_SAM"
    assert [o.io_type for o in SimSwapSamLoader.GET_SCHEMA().outputs] == ["SIMSWAP_SAM"]
    monkeypatch.setattr(folder_paths, "models_dir", str(tmp_path))
    monkeypatch.delitem(folder_paths.folder_names_and_paths, SAM_FOLDER, raising=False)
    register_model_folders()
    paths, exts = folder_paths.folder_names_and_paths[SAM_FOLDER]
    assert str(tmp_path / "sams") in paths and {".pth", ".safetensors"} <= set(exts)


def test_face_mask_node_sam_input(comfy, astronaut):
    from nodes import _types as t
    from nodes._common import FaceCrops, ManagedModel
    from nodes.faces import SimSwapFaceMask
    from nodes.selection import MASK_TOOLTIP
    from simswap_core.align import align_faces
    from simswap_core.detection import load_detector

    schema = SimSwapFaceMask.GET_SCHEMA()
    sam_input = next(i for i in schema.inputs if i.id == "sam")
    assert sam_input.optional and sam_input.io_type == t.Sam.io_type
    assert all(k in MASK_TOOLTIP for k in ("occlusion", "sam_parsing", "SimSwap Load SAM"))

    faces = load_detector("yunet").detect(astronaut)                   # detected before the hand covers the face
    box = faces.boxes[0]
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] * 0.15 + box[3] * 0.85)
    occluded, hand = draw_hand(astronaut, cx, cy, float(box[2] - box[0]) * 0.4)
    image = occluded.movedim(1, -1)                                     # ComfyUI IMAGE [1,H,W,3]
    sam = ManagedModel(ColourKeySam(), kind="sam", name="colour-key", path="")

    with pytest.raises(InputError, match="^sam: mask = sam needs a Segment Anything model.*'sam' input"):
        SimSwapFaceMask.execute("sam", "skin", 0.0, "auto", faces=faces, images=image)
    mask, crop_masks = SimSwapFaceMask.execute("sam", "skin", 0.0, "auto", faces=faces, images=image, sam=sam).args
    assert mask.shape == (1, *occluded.shape[-2:]) and crop_masks.shape == (1, 224, 224)
    assert mask[0][hand].max() == 0                                     # the hand is left out
    eyes = faces.points[0, :2].round().long()
    assert all(mask[0, y, x] > 0.9 for x, y in eyes.tolist())           # the face around it is in
    assert sam.module().decoded == [1]                                  # the detector's box was the prompt: 1 face

    crops = FaceCrops(crops=torch.zeros(1, 3, 224, 224), aligned=align_faces(occluded, faces, 224))
    with pytest.raises(InputError, match="^images: mask = sam needs the frames the face crops were cut from"):
        SimSwapFaceMask.execute("sam", "skin", 0.0, "auto", face_crops=crops, sam=sam)
    with pytest.raises(InputError, match="^images: expected the 1 frames"):
        SimSwapFaceMask.execute("sam", "skin", 0.0, "auto", face_crops=crops, sam=sam,
                                images=torch.cat([image, image]))
    from_crops = SimSwapFaceMask.execute("sam", "skin", 0.0, "auto", face_crops=crops, images=image, sam=sam)[0]
    assert from_crops[0][hand].max() == 0 and from_crops.sum() > 0.5 * mask.sum()
    with pytest.raises(InputError, match="^parser: mask = sam_parsing needs a face parser"):
        SimSwapFaceMask.execute("sam_parsing", "skin", 0.0, "auto", faces=faces, images=image, sam=sam)
