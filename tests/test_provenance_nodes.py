"""The labels in ComfyUI (in process, as ComfyUI calls the nodes; comfy_harness.use_comfy_api): SimSwap Save Image
(labelled) writes labelled files into the output folder, with the connected models' sha256, and says so; with
labelling off it says that the files are not labelled; SimSwap Swap Video's VIDEO file carries the container label.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from provenance_fixtures import fresh_labelling  # noqa: F401  (autouse fixture)

from comfy_harness import use_comfy_api
from pipeline_fixtures import astronaut_small, to_tensor

use_comfy_api()

from simswap_core import provenance  # noqa: E402
from simswap_core.provenance import read_provenance  # noqa: E402


@pytest.fixture
def output_dir(tmp_path, monkeypatch):
    import folder_paths

    out = tmp_path / "output"
    out.mkdir()
    monkeypatch.setattr(folder_paths, "get_output_directory", lambda: str(out))
    return out


@pytest.fixture(scope="module")
def node_models(fast_generator_path, pl_models):
    from nodes._common import ManagedModel
    from simswap_core.models.loaders import load_generator

    _g, arcface, detector = pl_models
    gen = ManagedModel(load_generator(fast_generator_path), kind="generator", name="fast",
                       path=str(fast_generator_path), crop_size=64)
    arc = ManagedModel(arcface, kind="arcface", name="arcface", path="arcface")   # no file: left out of the label
    return gen, arc, detector


def test_save_image_labelled_writes_labelled_files(output_dir, node_models, fast_generator_path, monkeypatch):
    from PIL import Image

    from nodes.provenance import SimSwapSaveImageLabelled

    gen, arc, det = node_models
    workflow = {"nodes": [{"id": 1, "type": "SimSwapSaveImageLabelled"}]}
    monkeypatch.setattr(SimSwapSaveImageLabelled, "hidden",
                        SimpleNamespace(prompt={"1": {"class_type": "SimSwapSaveImageLabelled"}},
                                        extra_pnginfo={"workflow": workflow}), raising=False)
    images = torch.stack([to_tensor(astronaut_small(64))[0].movedim(0, -1)] * 2)        # IMAGE [2,64,64,3]
    out = SimSwapSaveImageLabelled.execute(images, "swaps/test", "png", 95, generator=gen, detector=det,
                                           arcface=arc)
    saved = out.ui["images"]
    assert [s["type"] for s in saved] == ["output", "output"] and saved[0]["subfolder"] == "swaps"
    files = [output_dir / s["subfolder"] / s["filename"] for s in saved]
    assert len(set(files)) == 2
    for f in files:
        report = read_provenance(f)
        assert report.label is not None and report.label.digital_source_type == provenance.IPTC_COMPOSITE
        records = {m.role: m for m in report.label.models}
        assert set(records) == {"generator", "detector"}
        assert records["generator"].sha256 == hashlib.sha256(Path(fast_generator_path).read_bytes()).hexdigest()
        with Image.open(f) as im:                  # the workflow too, as core Save Image writes it
            assert json.loads(im.info["workflow"]) == workflow and "SimSwapSaveImageLabelled" in im.info["prompt"]
    assert "labelled: AI-generated" in out.ui["text"][0] and "generator" in out.ui["text"][0]
    jpg = SimSwapSaveImageLabelled.execute(images[:1], "swaps/test", "jpg", 90)
    assert read_provenance(output_dir / "swaps" / jpg.ui["images"][0]["filename"]).labelled
    assert "models: none recorded" in jpg.ui["text"][0]


def test_save_image_with_labelling_off_says_so(output_dir):
    from nodes.provenance import SimSwapSaveImageLabelled

    images = to_tensor(astronaut_small(32)).movedim(1, -1)
    with pytest.warns(UserWarning, match="legal responsibility"), provenance.labelling(False):
        out = SimSwapSaveImageLabelled.execute(images, "off", "webp", 90)
    assert out.ui["text"][0].startswith("saved 1 image(s); NOT labelled")
    assert not read_provenance(output_dir / out.ui["images"][0]["filename"]).labelled


@pytest.mark.slow
def test_swap_video_output_carries_the_container_label(node_models, fast_generator_path, tmp_path,
                                                        monkeypatch):
    from comfy_api.latest import InputImpl
    from video_fixtures import make_clip

    import nodes.video as nv
    from simswap_core.swap import FaceSwapper

    gen, arc, det = node_models
    identity = FaceSwapper(gen.module(), arc.module(), det, device="cpu", crop_size=64) \
        .extract_identity(to_tensor(astronaut_small()))
    clip = make_clip(tmp_path / "clip.mp4", frames=2, size=(320, 180), people=1, audio=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(nv, "work_folder", lambda: work)
    out = nv.SimSwapSwapVideo.execute(InputImpl.VideoFromFile(str(clip.path)), gen, det, "all", "0", "left-right",
                                      "box", "keep", identity=identity)
    report = read_provenance(Path(out.args[0].get_stream_source()))
    assert report.label is not None and report.label.action == "face replaced"
    assert {m.role for m in report.label.models} == {"generator", "detector"}
    assert "XMP (container tag)" in report.carriers
