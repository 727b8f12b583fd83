"""Segment Anything: the official key layout (vit_b / vit_l / vit_h, checked against the published architecture),
loading through the safe readers (seeded weights of a small layout in the official format), bad files, the SAM face
masks (one image embedding per frame, prompts batched over faces, geometry, occluders left out) and the loader
node."""
from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import replace

import pytest
import torch
from sam_fixtures import ColourKeySam, draw_hand

from simswap_core.align import align_faces
from simswap_core.detection import load_detector
from simswap_core.errors import CheckpointError, InputError, MissingModelError, UnsafeCheckpointError
from simswap_core.masks import MASK_KINDS, MASKERS, MaskSpec, build_crop_masks, sam_face_masks
from simswap_core.masks.sam import PROMPT_POINTS, landmark_boxes
from simswap_core.models.checkpoints import read_checkpoint
from simswap_core.models.loaders import load_generator, load_model, load_sam
from simswap_core.models.seeded import SAM_SMALL, seeded_state_dict, write_seeded_sam
from simswap_core.models.sniff import sniff_model_file
from simswap_core.networks.sam import SAM_PRESETS, SamConfig, SamModel
from simswap_core.paste import frame_masks, paste_faces

torch.set_num_threads(2)


# ------------------------------------------------------------------------------------------ the published layout
def published_layout(dim: int, depth: int, heads: int, global_blocks: tuple[int, ...]) -> dict[str, tuple]:
    """Key -> shape of an official SAM checkpoint, written out from the published architecture (segment-anything
    build_sam: 1024 input, 16 px patches, 14-token windows, 256 output channels, 2-layer two-way transformer with
    2048-wide MLPs, 4 mask tokens, 3-layer IoU head), independently of simswap_core.networks.sam."""
    e, c, hd = dim, 256, dim // heads
    out: dict[str, tuple] = {"image_encoder.pos_embed": (1, 64, 64, e),
                             "image_encoder.patch_embed.proj.weight": (e, 3, 16, 16),
                             "image_encoder.patch_embed.proj.bias": (e,)}
    for i in range(depth):
        p = f"image_encoder.blocks.{i}."
        rel = 2 * (64 if i in global_blocks else 14) - 1
        out.update({p + "norm1.weight": (e,), p + "norm1.bias": (e,), p + "attn.rel_pos_h": (rel, hd),
                    p + "attn.rel_pos_w": (rel, hd), p + "attn.qkv.weight": (3 * e, e), p + "attn.qkv.bias": (3 * e,),
                    p + "attn.proj.weight": (e, e), p + "attn.proj.bias": (e,), p + "norm2.weight": (e,),
                    p + "norm2.bias": (e,), p + "mlp.lin1.weight": (4 * e, e), p + "mlp.lin1.bias": (4 * e,),
                    p + "mlp.lin2.weight": (e, 4 * e), p + "mlp.lin2.bias": (e,)})
    out.update({"image_encoder.neck.0.weight": (c, e, 1, 1), "image_encoder.neck.1.weight": (c,),
                "image_encoder.neck.1.bias": (c,), "image_encoder.neck.2.weight": (c, c, 3, 3),
                "image_encoder.neck.3.weight": (c,), "image_encoder.neck.3.bias": (c,)})
    pe = "prompt_encoder."
    out[pe + "pe_layer.positional_encoding_gaussian_matrix"] = (2, c // 2)
    for i in range(4):
        out[f"{pe}point_embeddings.{i}.weight"] = (1, c)
    out.update({pe + "not_a_point_embed.weight": (1, c), pe + "no_mask_embed.weight": (1, c),
                pe + "mask_downscaling.0.weight": (4, 1, 2, 2), pe + "mask_downscaling.0.bias": (4,),
                pe + "mask_downscaling.1.weight": (4,), pe + "mask_downscaling.1.bias": (4,),
                pe + "mask_downscaling.3.weight": (16, 4, 2, 2), pe + "mask_downscaling.3.bias": (16,),
                pe + "mask_downscaling.4.weight": (16,), pe + "mask_downscaling.4.bias": (16,),
                pe + "mask_downscaling.6.weight": (c, 16, 1, 1), pe + "mask_downscaling.6.bias": (c,)})
    md = "mask_decoder."

    def attention(prefix: str, inner: int) -> None:
        for n in ("q_proj", "k_proj", "v_proj"):
            out[f"{prefix}.{n}.weight"], out[f"{prefix}.{n}.bias"] = (inner, c), (inner,)
        out[f"{prefix}.out_proj.weight"], out[f"{prefix}.out_proj.bias"] = (c, inner), (c,)

    for i in range(2):
        p = f"{md}transformer.layers.{i}."
        attention(p + "self_attn", c)
        attention(p + "cross_attn_token_to_image", c // 2)
        attention(p + "cross_attn_image_to_token", c // 2)
        for n in range(1, 5):
            out[f"{p}norm{n}.weight"], out[f"{p}norm{n}.bias"] = (c,), (c,)
        out.update({p + "mlp.lin1.weight": (2048, c), p + "mlp.lin1.bias": (2048,), p + "mlp.lin2.weight": (c, 2048),
                    p + "mlp.lin2.bias": (c,)})
    attention(md + "transformer.final_attn_token_to_image", c // 2)
    out.update({md + "transformer.norm_final_attn.weight": (c,), md + "transformer.norm_final_attn.bias": (c,),
                md + "iou_token.weight": (1, c), md + "mask_tokens.weight": (4, c),
                md + "output_upscaling.0.weight": (c, c // 4, 2, 2), md + "output_upscaling.0.bias": (c // 4,),
                md + "output_upscaling.1.weight": (c // 4,), md + "output_upscaling.1.bias": (c // 4,),
                md + "output_upscaling.3.weight": (c // 4, c // 8, 2, 2), md + "output_upscaling.3.bias": (c // 8,)})
    for i in range(4):
        p = f"{md}output_hypernetworks_mlps.{i}.layers."
        out.update({p + "0.weight": (c, c), p + "0.bias": (c,), p + "1.weight": (c, c), p + "1.bias": (c,),
                    p + "2.weight": (c // 8, c), p + "2.bias": (c // 8,)})
    p = f"{md}iou_prediction_head.layers."
    out.update({p + "0.weight": (c, c), p + "0.bias": (c,), p + "1.weight": (c, c), p + "1.bias": (c,),
                p + "2.weight": (4, c), p + "2.bias": (4,)})
    return out


# name: (embed dim, depth, heads, global-attention blocks, published parameter count of the whole model)
PUBLISHED = {"vit_b": (768, 12, 12, (2, 5, 8, 11), 93_735_472),
             "vit_l": (1024, 24, 16, (5, 11, 17, 23), 312_342_832),
             "vit_h": (1280, 32, 16, (7, 15, 23, 31), 641_090_608)}


@pytest.mark.parametrize("arch", sorted(PUBLISHED))
def test_real_size_layout_is_the_published_one(arch):
    dim, depth, heads, global_blocks, params = PUBLISHED[arch]
    with torch.device("meta"):
        model = SamModel(SamConfig.preset(arch))
    state = model.state_dict()
    expected = published_layout(dim, depth, heads, global_blocks)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert sum(p.numel() for p in model.parameters()) == params      # the gaussian matrix is a buffer
    config = SamConfig.from_state_dict(state)                         # inferred back from the shapes alone
    assert config == SAM_PRESETS[arch] and config.arch == arch
    assert config.global_attn == global_blocks and config.encoder_heads == heads and config.window_size == 14


# ------------------------------------------------------------------------------------------ loading
@pytest.fixture(scope="module")
def sam_file(tmp_path_factory):
    return write_seeded_sam(tmp_path_factory.mktemp("sams") / "sam_small_seeded.pth")


@pytest.fixture(scope="module")
def sam(sam_file):
    return load_sam(sam_file)


def test_seeded_file_is_an_official_state_dict_and_loads_without_torch_load(sam_file, monkeypatch):
    with zipfile.ZipFile(sam_file) as z:             # torch.save's zip container, like sam_vit_b_01ec64.pth
        assert any(n.endswith("data.pkl") for n in z.namelist())
    found = sniff_model_file(sam_file)
    assert found.kind == "sam" and found.detail == "sam_custom"

    def refuse(*a, **k):
        raise AssertionError("torch.load / pickle.load must not read a model file")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    model = load_sam(sam_file)
    assert isinstance(model, SamModel) and model.config == SAM_SMALL and not model.training
    ref = seeded_state_dict("sam_small")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ref.items())
    assert torch.equal(model.pixel_mean.flatten(), torch.tensor([123.675, 116.28, 103.53]))
    assert isinstance(load_model("sam", sam_file), SamModel)
    assert read_checkpoint(sam_file).arch == "sam_custom"


def test_extra_constants_and_safetensors_copies_load(sam_file, tmp_path):
    from safetensors.torch import save_file

    state = seeded_state_dict("sam_small")
    with_consts = {**state, "pixel_mean": torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1),
                   "pixel_std": torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)}
    torch.save(with_consts, tmp_path / "resaved.pth")
    save_file(state, str(tmp_path / "copy.safetensors"))
    for name in ("resaved.pth", "copy.safetensors"):
        assert load_sam(tmp_path / name).config == SAM_SMALL


def test_bad_files_are_refused_naming_what_was_found(sam_file, pl_weights, tmp_path):
    with pytest.raises(CheckpointError, match="found a SimSwap generator.*expected a Segment Anything"):
        load_sam(pl_weights["g224"])                                    # a file of another kind
    with pytest.raises(CheckpointError, match="found a Segment Anything model.*expected a SimSwap generator"):
        load_generator(sam_file)
    with pytest.raises(MissingModelError, match="Segment Anything"):
        load_sam(tmp_path / "sam_vit_b_01ec64.pth")
    data = sam_file.read_bytes()
    for cut in (len(data) // 3, len(data) - 200):                      # truncated
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        with pytest.raises(CheckpointError):
            load_sam(tmp_path / "cut.pth")
    state = seeded_state_dict("sam_small")
    wrong = dict(state)
    wrong["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)           # wrong shape
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="iou_token"):
        load_sam(tmp_path / "wrong.pth")
    missing = {k: v for k, v in state.items() if not k.startswith("mask_decoder.output_hypernetworks_mlps.3")}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing"):
        load_sam(tmp_path / "missing.pth")
    hq = {**state, "mask_decoder.hf_token.weight": torch.zeros(1, 64)}    # HQ-SAM: another network
    torch.save(hq, tmp_path / "sam_hq.pth")
    assert sniff_model_file(tmp_path / "sam_hq.pth").kind == "unknown"
    with pytest.raises(CheckpointError, match="expected a Segment Anything"):
        load_sam(tmp_path / "sam_hq.pth")


def test_a_code_running_pickle_never_runs(tmp_path):
    sentinel = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {sentinel}",)

    torch.save({"image_encoder.patch_embed.proj.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError):
        load_sam(tmp_path / "evil.pth")
    assert not sentinel.exists()


# ------------------------------------------------------------------------------------------ the network
def test_prompts_are_batched_and_independent(sam):
    frames = torch.rand(2, 3, 90, 160, generator=torch.Generator().manual_seed(3))
    emb = sam.embed(frames)
    assert emb.shape == (2, SAM_SMALL.prompt_dim, SAM_SMALL.grid, SAM_SMALL.grid) and torch.isfinite(emb).all()
    pts = torch.tensor([[[40.0, 30], [60, 30], [50, 45]], [[100.0, 40], [120, 40], [110, 50]],
                        [[20.0, 60], [40, 60], [30, 70]]])
    boxes = torch.tensor([[25.0, 10, 75, 70], [90, 20, 135, 80], [5, 40, 60, 89]])
    rows = torch.tensor([0, 1, 1])
    logits, iou = sam.decode(emb[rows], (90, 160), points=pts, labels=torch.ones(3, 3), boxes=boxes)
    assert logits.shape == (3, 1, SAM_SMALL.low_res, SAM_SMALL.low_res) and iou.shape == (3, 1)
    for i in range(3):                                   # one prompt at a time gives the same answer
        one, _ = sam.decode(emb[rows[i:i + 1]], (90, 160), points=pts[i:i + 1], labels=torch.ones(1, 3),
                            boxes=boxes[i:i + 1])
        torch.testing.assert_close(one, logits[i:i + 1], atol=1e-4, rtol=1e-4)
    multi, iou3 = sam.decode(emb[rows], (90, 160), points=pts, labels=torch.ones(3, 3), boxes=boxes, multimask=True)
    assert multi.shape[1] == 3 and iou3.shape == (3, 3)


# ------------------------------------------------------------------------------------------ the SAM face masks
@pytest.fixture(scope="module")
def detector():
    return load_detector("yunet")


def test_kinds_are_registered_and_say_what_they_need():
    assert {"occlusion", "sam", "sam_parsing"} <= set(MASK_KINDS)
    assert MASKERS["sam"].needs_sam and not MASKERS["sam"].needs_parser
    assert MASKERS["sam_parsing"].needs_sam and MASKERS["sam_parsing"].needs_parser
    assert not MASKERS["box"].needs_sam and MASKERS["box"].inputs == ()
    assert str(MaskSpec.parse("sam:feather=0.05")) == "sam:feather=0.05"


def test_one_embedding_per_frame_shared_by_its_faces(t1, detector):
    frames = torch.cat([t1, torch.zeros_like(t1), t1.flip(-1)])         # the middle frame has no face
    faces = detector.detect(frames)
    counts = torch.bincount(faces.frame_index, minlength=3).tolist()
    assert counts[0] >= 4 and counts[1] == 0 and counts[2] >= 4
    aligned = align_faces(frames, faces, 112)
    sam = ColourKeySam()
    masks = build_crop_masks(aligned, "sam", frames=frames, sam=sam)
    assert masks.shape == (len(aligned), 1, 112, 112)
    assert sam.embedded == [2] and sam.decoded == [len(aligned)]        # 2 frames embedded once, 1 decoder batch
    assert ((masks >= 0) & (masks <= 1)).all() and (masks.flatten(1).amax(1) > 0.99).all()


def test_real_network_masks_are_deterministic_and_batch_invariant(sam, astronaut, detector):
    frames = torch.cat([astronaut, astronaut.flip(-1)])
    faces = detector.detect(frames)
    aligned = align_faces(frames, faces, 112)
    hard = sam_face_masks(sam, frames, aligned)
    assert hard.shape == (2, 1, 112, 112) and set(hard.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard, sam_face_masks(sam, frames, aligned))
    single = torch.cat([sam_face_masks(sam, frames[i:i + 1],
                                       replace(aligned.select(aligned.frame_index == i),
                                               frame_index=torch.zeros(1, dtype=torch.int64),
                                               frame_sizes=[aligned.frame_sizes[i]]))
                        for i in range(2)])
    assert (single == hard).float().mean() > 0.995
    soft = build_crop_masks(aligned, MaskSpec(kind="sam"), frames=frames, sam=sam)
    assert soft.shape == hard.shape and (soft <= hard + 1e-6).all()      # never outside SAM's face


def test_prompts_come_from_the_box_and_landmarks(astronaut, detector):
    faces = detector.detect(astronaut)
    aligned = align_faces(astronaut, faces, 224)
    box = landmark_boxes(aligned)[0]
    pts = faces.points[0]
    assert (pts[:, 0] > box[0]).all() and (pts[:, 0] < box[2]).all()
    assert (pts[:, 1] > box[1]).all() and (pts[:, 1] < box[3]).all()
    det = faces.boxes[0]
    inter = (torch.minimum(box[2:], det[2:]) - torch.maximum(box[:2], det[:2])).clamp_min(0).prod()
    union = (box[2:] - box[:2]).prod() + (det[2:] - det[:2]).prod() - inter
    assert inter / union > 0.6
    assert PROMPT_POINTS == (0, 1, 2)                                   # eyes and nose, not the mouth corners


def test_geometry_frame_to_sam_to_crop(astronaut, detector):
    """With a SAM that answers 'the box', the crop mask pasted back into the frame is the box."""
    frame = torch.nn.functional.interpolate(astronaut, size=(300, 420), mode="bilinear", align_corners=False)
    faces = detector.detect(frame)
    aligned = align_faces(frame, faces, 224)
    box = torch.tensor([[120.0, 40, 230, 170]])
    crop = sam_face_masks(ColourKeySam(), frame, aligned, boxes=box)
    back = frame_masks(aligned, crop)[0, 0] > 0.5
    want = torch.zeros(300, 420, dtype=torch.bool)
    want[40:171, 120:231] = True
    inside_crop = frame_masks(aligned, torch.ones_like(crop))[0, 0] > 0.99   # where the crop covers the frame
    inter = (back & want & inside_crop).sum()
    union = ((back | want) & inside_crop).sum()
    assert inter / union > 0.95


def test_an_occluder_is_left_out_of_the_sam_mask(astronaut, detector):
    faces = detector.detect(astronaut)                                   # detected before the hand covers it
    box = faces.boxes[0]
    cx, cy = float(box[0] + box[2]) / 2, float(box[1] * 0.15 + box[3] * 0.85)     # a hand over mouth and chin
    occluded, hand = draw_hand(astronaut, cx, cy, float(box[2] - box[0]) * 0.4)
    aligned = align_faces(occluded, faces, 224)
    masks = build_crop_masks(aligned, "sam", frames=occluded, sam=ColourKeySam())
    noise = torch.rand(aligned.crops.shape, generator=torch.Generator().manual_seed(0))
    out, frame_mask = paste_faces(occluded, noise, aligned, masks)
    assert torch.equal(out[:, :, hand], occluded[:, :, hand])            # every pixel of the hand is untouched
    assert frame_mask[0, 0][hand].max() == 0
    eyes = faces.points[0, :2].round().long()
    assert all(frame_mask[0, 0, y, x] > 0.9 for x, y in eyes.tolist())   # the face around it is swapped
    box_out, _ = paste_faces(occluded, noise, aligned, build_crop_masks(aligned, "box"))
    assert not torch.equal(box_out[:, :, hand], occluded[:, :, hand])    # a box mask would cover the hand
    labels = torch.ones(1, 512, 512, dtype=torch.int64)                  # a parse that calls everything skin
    labels[:, :160] = 17                                                 # except hair on top
    both = build_crop_masks(aligned, "sam_parsing", labels=labels, frames=occluded, sam=ColourKeySam())
    alone = build_crop_masks(aligned, "occlusion", labels=labels)
    face = sam_face_masks(ColourKeySam(), occluded, aligned)
    assert (both <= alone + 1e-6).all() and (both <= face + 1e-6).all()  # parsing AND SAM
    assert both[0, 0, :60].max() == 0 and both.mean() > 0.1
    both_out, _ = paste_faces(occluded, noise, aligned, both)
    assert torch.equal(both_out[:, :, hand], occluded[:, :, hand])


def test_bad_inputs_name_what_is_missing(astronaut, detector, sam):
    faces = detector.detect(astronaut)
    aligned = align_faces(astronaut, faces, 112)
    with pytest.raises(InputError, match="needs a Segment Anything model"):
        build_crop_masks(aligned, "sam", frames=astronaut)
    with pytest.raises(InputError, match="needs the frames"):
        build_crop_masks(aligned, "sam", sam=sam)
    with pytest.raises(InputError, match="sam: expected a Segment Anything model"):
        build_crop_masks(aligned, "sam", frames=astronaut, sam=torch.nn.Identity())
    with pytest.raises(InputError, match="frames"):
        build_crop_masks(aligned, "sam", frames=astronaut[..., :256], sam=sam)
    with pytest.raises(InputError, match="boxes"):
        build_crop_masks(aligned, "sam", frames=astronaut, sam=sam, boxes=torch.zeros(3, 4))
    with pytest.raises(InputError, match="face parser"):
        build_crop_masks(aligned, "sam_parsing", frames=astronaut, sam=sam)
    assert build_crop_masks(aligned.select(torch.zeros(1, dtype=torch.bool)), "sam", frames=astronaut,
                            sam=sam).shape == (0, 1, 112, 112)


# ------------------------------------------------------------------------------------------ the loader node
def test_loader_node_lists_only_sam_files_and_loads_one(sam_file, pl_weights, tmp_path, monkeypatch):
    from comfy_harness import use_comfy_api

    use_comfy_api()
    import folder_paths

    from nodes import NODE_CLASS_MAPPINGS
    from nodes._common import ManagedModel
    from nodes.sam import MISSING_SAM, SAM_FOLDER, SimSwapSamLoader, sam_files

    folder = tmp_path / "sams"
    folder.mkdir()
    (folder / "sam_vit_b_seeded.pth").write_bytes(sam_file.read_bytes())
    (folder / "not_a_sam.pth").write_bytes(pl_weights["g224"].read_bytes())
    (folder / "junk.pth").write_bytes(b"not a model")
    monkeypatch.setitem(folder_paths.folder_names_and_paths, SAM_FOLDER, ([str(folder)], {".pth", ".safetensors"}))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    assert NODE_CLASS_MAPPINGS["SimSwapSamLoader"] is SimSwapSamLoader
    assert sam_files() == ["sam_vit_b_seeded.pth"]
    assert SimSwapSamLoader.validate_inputs("sam_vit_b_seeded.pth") is True
    assert "generator" in SimSwapSamLoader.validate_inputs("not_a_sam.pth")
    out = SimSwapSamLoader.execute("sam_vit_b_seeded.pth")
    managed = out.result[0]
    assert isinstance(managed, ManagedModel) and managed.kind == "sam" and managed.info["arch"] == "sam_custom"
    assert isinstance(managed.module(), SamModel)
    with pytest.raises(MissingModelError, match="sam_vit_b_01ec64.pth"):
        SimSwapSamLoader.execute("sam_vit_h_4b8939.pth")
    (folder / "sam_vit_b_seeded.pth").unlink()
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    assert sam_files() == [MISSING_SAM]
    assert "models/sams" in SimSwapSamLoader.validate_inputs(MISSING_SAM) or \
        "'sams' model folders" in SimSwapSamLoader.validate_inputs(MISSING_SAM)
