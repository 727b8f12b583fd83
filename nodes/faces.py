"""Face-crop nodes: align faces, build face masks, split face crops for restoration, paste faces back."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from comfy_api.latest import io

from . import _types as t
from ._common import (
    CATEGORY,
    FaceCrops,
    align_selected,
    compute_device,
    image_to_nchw,
    load_managed,
    mask_to_n1hw,
    n1hw_to_mask,
    nchw_to_image,
    progress_callback,
)
from .search_aliases import search_aliases
from .selection import ORDERS, make_mask_spec, make_selection, mask_inputs, validate_face_index

if TYPE_CHECKING:  # simswap_core is imported where it is used
    from simswap_core.align import AlignedFaces
    from simswap_core.faces import DetectedFaces

    from ._common import ManagedModel

PASTE_FRAMES_PER_CALL = 16  # frames moved to the compute device per paste call (bounded memory for long videos)


def _resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """[F,C,h,w] -> [F,C,size,size] with ComfyUI's own resampler (area when shrinking, bilinear when growing)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    method = "area" if x.shape[-1] > size else "bilinear"
    try:
        import comfy.utils
    except ImportError:  # outside ComfyUI (unit tests): the same resamplers from torch
        return torch.nn.functional.interpolate(x, size=(size, size), mode=method,
                                               **({} if method == "area" else {"align_corners": False}))
    return comfy.utils.common_upscale(x, size, size, method, "disabled")


def _crop_masks(aligned, spec, parser, *, sam: ManagedModel | None = None, frames: torch.Tensor | None = None,
                boxes: torch.Tensor | None = None) -> torch.Tensor:
    """[F,1,S,S] crop-space masks of ``spec`` (None -> whole crop), built on the compute device. ``sam``,
    ``frames`` [N,3,H,W] RGB [0,1] (the frames ``aligned`` was cut from) and ``boxes`` [F,4] frame px are used by
    the SAM kinds only (``simswap_core.masks.build_crop_masks``)."""
    from simswap_core.masks import build_crop_masks

    device = compute_device()
    parser_module, sam_module = load_managed(parser, sam)   # one load call: loading one never offloads the other
    return build_crop_masks(aligned.to(device), spec, parser_module,
                            frames=None if frames is None else frames.to(device), sam=sam_module,
                            boxes=None if boxes is None else boxes.to(device))


class SimSwapAlignFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapAlignFaces",
            **search_aliases("SimSwapAlignFaces"),
            display_name="SimSwap Align Faces",
            category=f"{CATEGORY}/faces",
            description=("Cuts aligned face crops (SimSwap's 224 pose templates or the 512 FFHQ template) out of "
                         "the frames for the detected faces, e.g. to restore faces without swapping them or to build "
                         "masks. Same SIMSWAP_FACE_CROPS as the swap's output (the crops are the original faces)."),
            inputs=[
                io.Image.Input("images", tooltip="The frames the faces were detected in."),
                t.Faces.Input("faces", tooltip="Faces from 'SimSwap Detect Faces' run on these frames."),
                io.Combo.Input("crop_size", options=["224", "512"], default="224",
                               tooltip="Size of the aligned crops."),
                io.Combo.Input("alignment", options=["auto", "none", "ffhq"], default="auto",
                               tooltip="Template: none = SimSwap's 5 pose templates (official 224), ffhq = FFHQ "
                                       "template (official 512); auto picks by crop size."),
                io.Combo.Input("select", options=["all", "largest", "best", "index"], default="all",
                               tooltip="Which faces of each frame to keep."),
                io.String.Input("face_index", default="0",
                                tooltip="For select = index: face numbers separated by commas."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="How faces are numbered for face_index."),
                t.Generator.Input("generator", optional=True,
                                  tooltip="Optional: align exactly as this generator expects (its crop size replaces "
                                          "crop_size; alignment auto picks its template)."),
            ],
            outputs=[t.FaceCrops.Output(display_name="face_crops",
                                        tooltip="Aligned crops of the chosen faces plus their alignment (frame -> "
                                                "crop matrices).")],
        )

    @classmethod
    def validate_inputs(cls, crop_size: str | None, alignment: str | None, select: str | None,
                        face_index: str | None, order: str | None) -> bool | str:
        return t.first_error(validate_face_index(face_index),
                             t.combo_errors(cls, crop_size=crop_size, alignment=alignment, select=select,
                                            order=order))

    @classmethod
    def execute(cls, images: torch.Tensor, faces: DetectedFaces, crop_size: str, alignment: str, select: str,
                face_index: str, order: str, generator: ManagedModel | None = None) -> io.NodeOutput:
        frames = image_to_nchw(images, "images")
        faces.check_matches(frames)
        if generator is not None:
            crop_size = generator.info.get("crop_size") or crop_size
        aligned = align_selected(frames, faces, int(crop_size), None if alignment == "auto" else alignment,
                                 make_selection(select, face_index, order))
        return io.NodeOutput(FaceCrops(crops=aligned.crops, aligned=aligned))


class SimSwapFaceMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapFaceMask",
            **search_aliases("SimSwapFaceMask"),
            display_name="SimSwap Face Mask",
            category=f"{CATEGORY}/faces",
            description=("Builds face masks: box, landmark ellipse, BiSeNet parsing regions, the occlusion-aware "
                         "parsing mask (hands, hair, glasses in front of the face left out) or masks refined by "
                         "Segment Anything (sam, sam_parsing), grown or shrunk and feathered in proportion to the "
                         "face size. Takes aligned face crops (SimSwap Swap, Align Faces) or the detected faces of "
                         "'SimSwap Detect Faces' together with their images (every face, aligned at 224). Gives the "
                         "mask in frame space (one per frame, all faces together) and in crop space (one per face, "
                         "for 'SimSwap Paste Faces')."),
            inputs=[
                *mask_inputs("ellipse"),
                t.FaceCrops.Input("face_crops", optional=True,
                                  tooltip="Aligned faces (from SimSwap Swap or Align Faces). Either this, or faces + "
                                          "images."),
                t.Faces.Input("faces", optional=True,
                              tooltip="Detected faces (SimSwap Detect Faces); needs 'images'."),
                io.Image.Input("images", optional=True,
                               tooltip="The frames 'faces' were detected in (with face_crops: the frames the crops "
                                       "were cut from, needed by mask = sam / sam_parsing)."),
                t.Parser.Input("parser", optional=True,
                               tooltip="BiSeNet face parser, required for mask = parsing, occlusion and "
                                       "sam_parsing."),
                t.Sam.Input("sam", optional=True,
                            tooltip="Segment Anything model (SimSwap Load SAM), required for mask = sam and "
                                    "sam_parsing: one image embedding per frame, shared by its faces."),
            ],
            outputs=[
                io.Mask.Output(display_name="mask",
                               tooltip="Frame-space mask [frames, H, W]: the union of all face masks of each "
                                       "frame."),
                io.Mask.Output(display_name="crop_masks",
                               tooltip="Crop-space masks [faces, S, S], one per aligned face, same order as the "
                                       "crops."),
            ],
        )

    @classmethod
    def validate_inputs(cls, mask: str | None) -> bool | str:
        return t.combo_errors(cls, mask=mask)

    @classmethod
    def execute(cls, mask: str, mask_regions: str, mask_grow: float, mask_feather: float,
                face_crops: FaceCrops | None = None, faces: DetectedFaces | None = None,
                images: torch.Tensor | None = None, parser: ManagedModel | None = None,
                sam: ManagedModel | None = None) -> io.NodeOutput:
        from simswap_core.errors import InputError
        from simswap_core.paste import frame_masks

        spec = make_mask_spec(mask, mask_regions, mask_grow, mask_feather)
        if spec.needs_parser and parser is None:
            raise InputError(f"parser: mask = {spec.kind} needs a face parser (SimSwap Load Face Parser)")
        if spec.needs_sam and sam is None:
            raise InputError(f"sam: mask = {spec.kind} needs a Segment Anything model: connect 'SimSwap Load SAM' "
                             f"(a SAM checkpoint in models/sams) to the 'sam' input")
        frames = boxes = None
        if face_crops is not None:
            aligned = face_crops.aligned.to(compute_device())
            if spec.needs_sam:
                if images is None:
                    raise InputError(f"images: mask = {spec.kind} needs the frames the face crops were cut from "
                                     f"(SAM segments the faces in the frames); connect them to 'images'")
                frames = image_to_nchw(images, "images")
                sizes = sorted(set(map(tuple, aligned.frame_sizes)))
                if len(aligned.frame_sizes) != frames.shape[0] or \
                        any(tuple(sz) != tuple(frames.shape[-2:]) for sz in aligned.frame_sizes):
                    raise InputError(f"images: expected the {len(aligned.frame_sizes)} frames the face crops were cut "
                                     f"from (sizes {sizes}), got {frames.shape[0]} of {frames.shape[-2]}x"
                                     f"{frames.shape[-1]}")
        elif faces is None or images is None:
            raise InputError("face_crops: connect aligned face crops, or both 'faces' (SimSwap Detect Faces) "
                             "and the 'images' they were detected in")
        else:  # every detected face, aligned like the official 224 model
            frames = image_to_nchw(images, "images")
            faces.check_matches(frames)
            aligned = align_selected(frames, faces, 224, None, make_selection("all"))
            boxes = faces.boxes        # "all" keeps every face in order: the detector's boxes are SAM's box prompts
        crop_masks = _crop_masks(aligned, spec, parser, sam=sam, frames=frames if spec.needs_sam else None,
                                 boxes=boxes if spec.needs_sam else None)
        return io.NodeOutput(n1hw_to_mask(frame_masks(aligned, crop_masks)), n1hw_to_mask(crop_masks))


class SimSwapSplitFaceCrops(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSplitFaceCrops",
            **search_aliases("SimSwapSplitFaceCrops"),
            display_name="SimSwap Split Face Crops",
            category=f"{CATEGORY}/faces",
            description=("Splits SIMSWAP_FACE_CROPS into an IMAGE batch of aligned face crops (to restore or upscale "
                         "with any image node, e.g. GFPGAN/CodeFormer) and the SIMSWAP_ALIGNMENT needed to paste "
                         "them back with 'SimSwap Paste Faces' without detecting the faces again."),
            inputs=[t.FaceCrops.Input("face_crops", tooltip="Face crops from SimSwap Swap or Align Faces.")],
            outputs=[
                io.Image.Output(display_name="crops",
                                tooltip="The face crops [faces, S, S, 3] (swapped faces for a swap's output)."),
                t.Alignment.Output(display_name="alignment",
                                   tooltip="Where each crop belongs: frame index and frame -> crop matrix of every "
                                           "face."),
                io.Mask.Output(display_name="crop_masks",
                               tooltip="The crop-space blend masks [faces, S, S] the swap used (whole crop for a box "
                                       "mask)."),
                io.Image.Output(display_name="original_crops",
                                tooltip="The original (target) faces as aligned crops [faces, S, S, 3]."),
            ],
        )

    @classmethod
    def execute(cls, face_crops: FaceCrops) -> io.NodeOutput:
        masks = _crop_masks(face_crops.aligned, face_crops.mask_spec, face_crops.parser)
        return io.NodeOutput(nchw_to_image(face_crops.crops), face_crops.aligned, n1hw_to_mask(masks),
                             nchw_to_image(face_crops.aligned.crops))


class SimSwapPasteFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapPasteFaces",
            **search_aliases("SimSwapPasteFaces"),
            display_name="SimSwap Paste Faces",
            category=f"{CATEGORY}/faces",
            description=("Pastes aligned face crops (e.g. swapped faces after a restoration node) back into the "
                         "frames with their SIMSWAP_ALIGNMENT, without detecting faces again. Crops of another size "
                         "(a 2x restorer) are resized to the alignment's crop size. Pixels outside the returned mask "
                         "stay exactly as they were, and so do pixels under 'protect'."),
            inputs=[
                io.Image.Input("images", tooltip="The frames to paste into (the frames the alignment was made on, or "
                                                 "the swap's output)."),
                io.Image.Input("crops", tooltip="Aligned face crops [faces, S, S, 3], one per face of the "
                                                "alignment."),
                t.Alignment.Input("alignment", tooltip="From 'SimSwap Split Face Crops'."),
                io.Combo.Input("paste_mode", options=["default", "official"], default="default",
                               tooltip="default: detail-preserving paste with a seam ramp; official: SimSwap's "
                                       "reverse2wholeimage."),
                io.Boolean.Input("color_match", default=False,
                                 tooltip="Match each pasted face's colours to the original face."),
                io.Float.Input("feather", default=0.12, min=0.0, max=0.5, step=0.005,
                               tooltip="Width of the seam ramp at the crop border, fraction of the crop size "
                                       "(default mode)."),
                io.Float.Input("erode", default=0.04, min=0.0, max=0.5, step=0.005,
                               tooltip="Band at the crop border left untouched, fraction of the crop size (default "
                                       "mode)."),
                io.Mask.Input("crop_masks", optional=True,
                              tooltip="Crop-space masks [faces, S, S] (Split Face Crops or Face Mask); none = the "
                                      "whole crop."),
                io.Mask.Input("protect", optional=True,
                              tooltip="Regions that must never change (a hand, a microphone, a logo: from any mask "
                                      "node), frame-space, 1 = keep the original pixel exactly: one mask [H,W] for "
                                      "every frame or one per frame [N,H,W], the frames' size."),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The frames with the faces pasted in."),
                io.Mask.Output(display_name="mask",
                               tooltip="Where each frame was changed (frame-space union of the face masks)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, paste_mode: str | None) -> bool | str:
        return t.combo_errors(cls, paste_mode=paste_mode)

    @classmethod
    def execute(cls, images: torch.Tensor, crops: torch.Tensor, alignment: AlignedFaces, paste_mode: str,
                color_match: bool, feather: float, erode: float,
                crop_masks: torch.Tensor | None = None, protect: torch.Tensor | None = None) -> io.NodeOutput:
        from simswap_core.errors import InputError
        from simswap_core.io.frames import frame_ranges
        from simswap_core.paste import check_protect, paste_faces

        from .swap import protect_masks

        frames = image_to_nchw(images, "images")
        faces = image_to_nchw(crops, "crops") if crops.shape[0] else crops.new_zeros(0, 3, 1, 1)
        nf, s = len(alignment), alignment.crop_size
        if faces.shape[0] != nf:
            raise InputError(f"crops: {faces.shape[0]} crop(s) for {nf} aligned face(s); pass one crop per face, "
                             f"in the order of 'SimSwap Split Face Crops'")
        if len(alignment.frame_sizes) != frames.shape[0] or \
                any(tuple(z) != tuple(frames.shape[-2:]) for z in alignment.frame_sizes):
            raise InputError(f"images: the alignment is for {len(alignment.frame_sizes)} frame(s) of size "
                             f"{tuple(alignment.frame_sizes[0]) if alignment.frame_sizes else None}, got "
                             f"{frames.shape[0]} of {tuple(frames.shape[-2:])}")
        keep = protect_masks(protect)
        if keep is not None:
            keep = check_protect(keep, frames.shape[0], (frames.shape[-2], frames.shape[-1]))
        masks = None
        if crop_masks is not None:
            masks = mask_to_n1hw(crop_masks, "crop_masks")
            if masks.shape[0] != nf:
                raise InputError(f"crop_masks: expected one crop-space mask per face ({nf}), got "
                                 f"{masks.shape[0]}; frame-space masks are not accepted here")
        device = compute_device()
        if nf:
            faces = _resize_to(faces, s)
            masks = _resize_to(masks, s) if masks is not None else None
        # a few frames at a time on the compute device, so a long video never has to fit there at once
        n = frames.shape[0]
        progress = progress_callback(n)
        outs, out_masks = [], []
        for start, stop in frame_ranges(n, PASTE_FRAMES_PER_CALL):
            part, idx = alignment.frames(start, stop)
            part = part.to(device)
            out, mask = paste_faces(frames[start:stop].to(device), faces[idx.to(faces.device)].to(device), part,
                                    None if masks is None else masks[idx.to(masks.device)].to(device),
                                    feather=float(feather), erode=float(erode), color_match=bool(color_match),
                                    mode=paste_mode,
                                    protect=None if keep is None else
                                    (keep if keep.shape[0] == 1 else keep[start:stop]).to(device))
            outs.append(nchw_to_image(out))
            out_masks.append(n1hw_to_mask(mask))
            if progress is not None:
                progress(stop, n)
        return io.NodeOutput(torch.cat(outs), torch.cat(out_masks))


NODES = [SimSwapAlignFaces, SimSwapFaceMask, SimSwapSplitFaceCrops, SimSwapPasteFaces]
