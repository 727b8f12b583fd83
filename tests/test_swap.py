"""FaceSwapper on real photos with seeded weights: counts, selection, masks, bit-identical background, errors.

Photos come from installed packages (insightface t1.jpg: 6 faces; skimage astronaut: 1 face); weights are seeded
random weights (see pipeline_fixtures), so the swapped faces are noise: these tests check the pipeline, not the
model's quality.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pipeline_fixtures import to_tensor
from simswap_core.errors import InputError, NoFaceError
from simswap_core.swap import FaceSwapper, SwapResult


def no_face_photo() -> torch.Tensor:
    """A real photo without a face: skimage's coffee cup (400x600)."""
    skdata = pytest.importorskip("skimage.data")
    return to_tensor(skdata.coffee())


def assert_outside_mask_identical(before: torch.Tensor, res: SwapResult) -> None:
    changed = (res.images != before).any(1, keepdim=True)
    assert not (changed & (res.mask == 0)).any(), "pixels outside the union of the face masks changed"


# ------------------------------------------------------------------------------------------ detection, identity

def test_detection_counts_flow_through(pl_swapper, t1, astronaut):
    assert len(pl_swapper.detect(t1)) == 6
    assert len(pl_swapper.detect(astronaut)) == 1
    both = pl_swapper.detect(torch.cat([astronaut, astronaut.flip(3)]))
    assert both.counts() == [1, 1]


def test_extract_identity(pl_swapper, astronaut, pl_identity):
    ident = pl_identity
    assert ident.latent.shape == (512,) and ident.embedding.shape == (512,)
    assert torch.allclose(ident.latent.norm(), torch.tensor(1.0), atol=1e-5)
    assert ident.num_sources == 1
    # the latent is the L2-normalised raw embedding (official §2.4)
    assert torch.allclose(ident.latent, torch.nn.functional.normalize(ident.embedding, dim=0), atol=1e-5)
    two = pl_swapper.extract_identity([astronaut, astronaut.flip(3)[:, :, :400]], combine="weighted")
    assert two.num_sources == 2 and torch.allclose(two.latent.norm(), torch.tensor(1.0), atol=1e-5)
    assert not torch.allclose(two.embedding, ident.embedding)
    with pytest.raises(NoFaceError, match=r"source image\(s\) \[1\]"):
        pl_swapper.extract_identity([astronaut, no_face_photo()])
    skipped = pl_swapper.extract_identity([astronaut, no_face_photo()], if_no_face="skip")
    alone = pl_swapper.extract_identity(astronaut)   # now: tests elsewhere may have changed torch's thread count
    assert skipped.num_sources == 1 and torch.allclose(skipped.latent, alone.latent, atol=1e-5)
    with pytest.raises(NoFaceError, match="no face found in any"):
        pl_swapper.extract_identity(no_face_photo())


# ------------------------------------------------------------------------------------------ swap

def test_multi_face_swap_t1(t1, t1_result):
    res = t1_result
    assert res.images.shape == t1.shape and res.images.dtype == torch.float32
    assert res.mask.shape == (1, 1, *t1.shape[-2:])
    assert len(res.faces) == 6 and res.faces.counts() == [6]
    assert res.swapped.shape == (6, 3, 224, 224) and res.aligned.crops.shape == (6, 3, 224, 224)
    assert res.aligned.matrices.shape == (6, 2, 3)
    assert res.frames_without_face == []
    # every face was pasted: the mask covers each box centre and the pixels there changed
    c = ((res.faces.boxes[:, :2] + res.faces.boxes[:, 2:]) / 2).round().long()
    assert (res.mask[0, 0, c[:, 1], c[:, 0]] > 0.5).all()
    diff = (res.images - t1).abs().sum(1)[0]
    assert (diff[c[:, 1], c[:, 0]] > 0).all()
    assert 0.01 < float((res.mask > 0).float().mean()) < 0.6
    assert res.images.min() >= 0 and res.images.max() <= 1


def test_pixels_outside_masks_bit_identical(t1, t1_result):
    assert_outside_mask_identical(t1, t1_result)
    assert (t1_result.images != t1).any()


@pytest.mark.parametrize("select,expect", [("best", "best"), ("index:0", "leftmost"), ("largest", "largest")])
def test_single_face_selections(pl_swapper, pl_identity, t1, select, expect):
    res = pl_swapper.swap(t1, pl_identity, select=select)
    allf = res.detected
    assert len(res.faces) == 1 and len(allf) == 6
    cx = (allf.boxes[:, 0] + allf.boxes[:, 2]) / 2
    want = {"best": allf.scores.argmax(), "leftmost": cx.argmin(), "largest": allf.areas().argmax()}[expect]
    assert torch.equal(res.faces.boxes[0], allf.boxes[want])
    assert_outside_mask_identical(t1, res)


def test_reference_selection_picks_that_person(pl_swapper, pl_identity, t1):
    faces = pl_swapper.detect(t1)
    k = 2
    x1, y1, x2, y2 = faces.boxes[k].tolist()
    w, h = x2 - x1, y2 - y1
    crop = t1[:, :, int(max(0, y1 - h)):int(y2 + h), int(max(0, x1 - w)):int(x2 + w)]
    reference = pl_swapper.extract_identity(crop, select="largest")
    from simswap_core.detection import FaceSelection

    # the same person, re-detected in a crop of the photo, is the closest face; a loose threshold because the
    # seeded ArcFace's distance scale is arbitrary (the official 0.03 only means something for the real one)
    res = pl_swapper.swap(t1, pl_identity, select=FaceSelection.parse("reference", threshold=1e9),
                          reference=reference)
    assert len(res.faces) == 1
    assert torch.allclose(res.faces.boxes[0], faces.boxes[k], atol=0.5)
    # a threshold nothing passes: no face selected -> error naming the selection, or frame kept
    strict = FaceSelection.parse("reference", threshold=1e-12)
    with pytest.raises(NoFaceError, match="no face matched the reference"):
        pl_swapper.swap(t1, pl_identity, select=strict, reference=reference)
    kept = pl_swapper.swap(t1, pl_identity, select=strict, reference=reference, if_no_face="keep")
    assert torch.equal(kept.images, t1) and kept.frames_without_face == [0]
    with pytest.raises(InputError, match="reference"):
        pl_swapper.swap(t1, pl_identity, select="reference")


def test_no_face_error_and_keep(pl_swapper, pl_identity):
    img = no_face_photo()
    with pytest.raises(NoFaceError, match=r"frame 0: no face detected \(of 1 frame.*if_no_face='keep'"):
        pl_swapper.swap(img, pl_identity)
    res = pl_swapper.swap(img, pl_identity, if_no_face="keep")
    assert torch.equal(res.images, img) and not res.mask.any() and len(res.faces) == 0
    assert res.swapped.shape == (0, 3, 224, 224) and res.frames_without_face == [0]


def test_tiny_16x16_image(pl_swapper, pl_identity, astronaut):
    tiny_empty = torch.nn.functional.interpolate(no_face_photo(), size=(16, 16), mode="area")
    with pytest.raises(NoFaceError, match="no face detected"):
        pl_swapper.swap(tiny_empty, pl_identity)
    res = pl_swapper.swap(tiny_empty, pl_identity, if_no_face="keep")
    assert torch.equal(res.images, tiny_empty) and not res.mask.any()
    # the astronaut shrunk to 16x16: YuNet may or may not still see a face; either way no crash, and what is
    # returned keeps the size and the pixels outside the mask
    tiny = torch.nn.functional.interpolate(astronaut, size=(16, 16), mode="area")
    res = pl_swapper.swap(tiny, pl_identity, if_no_face="keep")
    assert res.images.shape == tiny.shape and torch.isfinite(res.images).all()
    assert_outside_mask_identical(tiny, res)


def test_batches_match_the_per_face_reference(pl_swapper, pl_models, pl_identity, astronaut):
    """Frames with 1, 0 and 1 faces in batches of 2: same result as the per-frame, per-face reference pipeline."""
    from pipeline_reference import ReferencePipeline

    empty = torch.nn.functional.interpolate(no_face_photo(), size=(512, 512), mode="bilinear")
    frames = torch.cat([astronaut, empty, astronaut.flip(3)])
    calls = []
    res = pl_swapper.swap(frames, pl_identity, if_no_face="keep", batch_size=2,
                          progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 3), (3, 3)]
    assert res.faces.frame_index.tolist() == [0, 2] and res.frames_without_face == [1]
    assert torch.equal(res.images[1], empty[0]) and not res.mask[1].any()
    assert_outside_mask_identical(frames, res)
    g, a, d = pl_models
    ref_images, ref_mask = ReferencePipeline(g, a, d, device="cpu").swap(frames, pl_identity, if_no_face="keep")
    assert (res.images - ref_images).abs().max() < 2e-3
    assert (res.mask - ref_mask).abs().max() < 1e-4


def test_bad_arguments(pl_swapper, pl_identity, astronaut):
    with pytest.raises(InputError, match=r"\[N,3,H,W\]"):
        pl_swapper.swap(astronaut[:, :2], pl_identity)
    with pytest.raises(InputError, match="float"):
        pl_swapper.swap((astronaut * 255).to(torch.uint8), pl_identity)
    with pytest.raises(InputError, match="if_no_face"):
        pl_swapper.swap(astronaut, pl_identity, if_no_face="skip")
    with pytest.raises(InputError, match="batch_size"):
        pl_swapper.swap(astronaut, pl_identity, batch_size=0)
    with pytest.raises(InputError):
        pl_swapper.swap(astronaut, pl_identity, select="index:x")
    with pytest.raises(InputError, match="Identity"):
        pl_swapper.swap(astronaut, torch.zeros(512))
    with pytest.raises(InputError, match="precision"):
        FaceSwapper(*pl_swapper_parts(pl_swapper), precision="fp8")


def pl_swapper_parts(s):
    return s.generator, s.arcface, s.detector


def test_masks_and_paste_modes(pl_swapper, pl_identity, astronaut):
    from simswap_core.masks import MaskSpec

    for spec, mode in [(MaskSpec.parse("ellipse"), "default"), (None, "official"), (MaskSpec("box"), "default")]:
        res = pl_swapper.swap(astronaut, pl_identity, mask=spec, paste_mode=mode, color_match=mode == "default")
        assert len(res.faces) == 1 and res.mask.max() > 0.9
        assert_outside_mask_identical(astronaut, res)


def test_bf16_precision_runs_and_stays_float32(pl_models, pl_identity, astronaut):
    g, a, d = pl_models
    sw = FaceSwapper(g, a, d, device="cpu", precision="bf16")
    res = sw.swap(astronaut, pl_identity)
    assert res.images.dtype == torch.float32 and res.swapped.dtype == torch.float32
    ref = FaceSwapper(g, a, d, device="cpu").swap(astronaut, pl_identity)
    assert (res.swapped - ref.swapped).abs().mean() < 0.05


def test_channels_last_generator_input(pl_models, pl_identity, astronaut):
    """channels_last crops give the NCHW result (within conv rounding), the module is left as it was, and the
    automatic choice is off for fp32 on the CPU, on for bf16."""
    g, a, d = pl_models
    before = {k: v.stride() for k, v in g.state_dict().items()}
    nchw = FaceSwapper(g, a, d, device="cpu", channels_last=False).swap(astronaut, pl_identity)
    cl_swapper = FaceSwapper(g, a, d, device="cpu", channels_last=True)
    cl = cl_swapper.swap(astronaut, pl_identity)
    assert (cl.swapped - nchw.swapped).abs().max() < 1e-4
    assert cl.swapped.is_contiguous() and cl.images.is_contiguous()
    assert {k: v.stride() for k, v in g.state_dict().items()} == before
    assert not FaceSwapper(g, a, d, device="cpu").channels_last
    assert FaceSwapper(g, a, d, device="cpu", precision="bf16").channels_last


def test_progress_advances_frame_by_frame(pl_models, pl_identity):
    """With one face per frame and one face per generator call, progress(done, total) reports every frame, in
    order, within a frame batch (ComfyUI's bar moves per frame; a cancel raised by progress stops mid-batch)."""
    from pipeline_fixtures import astronaut_small, to_tensor

    g, a, d = pl_models
    frames = to_tensor(astronaut_small(256)).repeat(3, 1, 1, 1)
    calls = []
    FaceSwapper(g, a, d, device="cpu").swap(frames, pl_identity, batch_size=3, face_batch_size=1,
                                           progress=lambda done, total: calls.append((done, total)))
    assert [c for c in calls if c[0] < 3] == [(1, 3), (2, 3)] and calls[-1] == (3, 3)
    assert all(x[0] <= y[0] for x, y in zip(calls, calls[1:]))

    class Cancelled(Exception):
        pass

    def cancel_after_first(done, total):
        if done >= 1:
            raise Cancelled

    with pytest.raises(Cancelled):
        FaceSwapper(g, a, d, device="cpu").swap(frames, pl_identity, batch_size=3, face_batch_size=1,
                                               progress=cancel_after_first)


def test_512_generator_once(pl_models, astronaut, tmp_path_factory):
    from simswap_core.models.loaders import load_generator
    from simswap_core.models.seeded import write_seeded_checkpoints

    p = write_seeded_checkpoints(tmp_path_factory.mktemp("g512"), kinds=("g512",))["g512"]
    g512 = load_generator(p)
    _, a, d = pl_models
    sw = FaceSwapper(g512, a, d, device="cpu")
    assert sw.crop_size == 512
    ident = sw.extract_identity(astronaut)
    res = sw.swap(astronaut, ident)
    assert res.swapped.shape == (1, 3, 512, 512) and res.aligned.mode == "ffhq"
    assert_outside_mask_identical(astronaut, res)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_end_to_end(pl_models, pl_identity, t1):
    g, a, d = pl_models
    sw = FaceSwapper(g, a, d, device="cuda", precision="fp16")
    res = sw.swap(t1.cuda(), pl_identity)
    assert res.images.is_cuda and len(res.faces) == 6
    assert_outside_mask_identical(t1.cuda(), res)


# ------------------------------------------------------------------------------------------ memory

PEAK_BYTES_PER_PIXEL = 160  # bound on the RSS growth of a 4096x4096 single-face swap, per frame pixel (see README)

_BIG_SCRIPT = textwrap.dedent("""
    import json, resource, sys, torch
    import numpy as np
    from skimage import data
    from simswap_core.models.loaders import load_arcface, load_generator
    from simswap_core.detection import load_detector
    from simswap_core.swap import FaceSwapper
    torch.set_num_threads(2)
    g, a = load_generator(sys.argv[1]), load_arcface(sys.argv[2])
    sw = FaceSwapper(g, a, load_detector("yunet"), device="cpu")
    src = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 255
    ident = sw.extract_identity(src)
    big = torch.zeros(1, 3, 4096, 4096)
    big[:, :, 1500:2524, 1500:2524] = torch.nn.functional.interpolate(src, size=(1024, 1024), mode="bilinear")
    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    before = status("VmRSS")
    res = sw.swap(big, ident)
    peak = status("VmHWM")
    changed = (res.images != big).any(1, keepdim=True)
    print(json.dumps({"before": before, "peak": peak, "faces": len(res.faces),
                      "leak": bool((changed & (res.mask == 0)).any())}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ru_maxrss (Linux)")
def test_4096_image_peak_memory(pl_weights, tmp_path):
    """A 4096x4096 frame (16.8 Mpx; the frame itself is 201 MB as float32) swaps with RSS growth below
    PEAK_BYTES_PER_PIXEL bytes per pixel (160 B/px = 2.7 GB), measured in a fresh process."""
    script = tmp_path / "big.py"
    script.write_text(_BIG_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, str(script), str(pl_weights["g224"]), str(pl_weights["arcface"])],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["faces"] == 1 and not r["leak"]
    growth = r["peak"] - r["before"]
    print(f"4096x4096 swap: RSS growth {growth / 2**20:.0f} MiB ({growth / 4096**2:.1f} B/px)")
    assert growth < PEAK_BYTES_PER_PIXEL * 4096 * 4096
