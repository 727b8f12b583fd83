"""Face-crop nodes: align faces, build face masks, split face crops for restoration, paste faces back."""
from __future__ import annotations

import torch

from ._common import (CATEGORY, FaceCrops, compute_device, image_to_nchw, mask_to_n1hw, n1hw_to_mask,
                      nchw_to_image, progress_callback)
from .selection import ORDERS, make_mask_spec, make_selection, mask_inputs, validate_face_index

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


def _crop_masks(face_crops: FaceCrops) -> torch.Tensor:
    """[F,1,S,S] crop-space masks of the spec the crops carry (None -> whole crop)."""
    from simswap_core.masks import build_crop_masks

    parser = face_crops.parser.module() if face_crops.parser is not None else None
    return build_crop_masks(face_crops.aligned, face_crops.mask_spec, parser)


class SimSwapAlignFaces:
    DESCRIPTION = ("Cuts aligned face crops (SimSwap's 224 pose templates or the 512 FFHQ template) out of the "
                   "frames for the detected faces, e.g. to restore faces without swapping them or to build masks. "
                   "Same SIMSWAP_FACE_CROPS as the swap's output (the crops are the original faces).")
    CATEGORY = f"{CATEGORY}/faces"
    FUNCTION = "align"
    RETURN_TYPES = ("SIMSWAP_FACE_CROPS",)
    RETURN_NAMES = ("face_crops",)
    OUTPUT_TOOLTIPS = ("Aligned crops of the chosen faces plus their alignment (frame -> crop matrices).",)

    @classmethod
    def VALIDATE_INPUTS(cls, face_index):
        return validate_face_index(face_index)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The frames the faces were detected in."}),
            "faces": ("SIMSWAP_FACES", {"tooltip": "Faces from 'SimSwap Detect Faces' run on these frames."}),
            "crop_size": (["224", "512"], {"default": "224", "tooltip": "Size of the aligned crops."}),
            "alignment": (["auto", "none", "ffhq"], {
                "default": "auto",
                "tooltip": "Template: none = SimSwap's 5 pose templates (official 224), ffhq = FFHQ template "
                           "(official 512); auto picks by crop size."}),
            "select": (["all", "largest", "best", "index"], {
                "default": "all", "tooltip": "Which faces of each frame to keep."}),
            "face_index": ("STRING", {"default": "0",
                                      "tooltip": "For select = index: face numbers separated by commas."}),
            "order": (ORDERS, {"default": "left-right", "tooltip": "How faces are numbered for face_index."}),
        }, "optional": {
            "generator": ("SIMSWAP_GENERATOR", {
                "tooltip": "Optional: align exactly as this generator expects (its crop size replaces crop_size; "
                           "alignment auto picks its template)."}),
        }}

    def align(self, images, faces, crop_size, alignment, select, face_index, order, generator=None):
        from simswap_core.align import align_faces
        from simswap_core.detection import select_faces
        from simswap_core.errors import InputError

        frames = image_to_nchw(images, "images")
        if faces.num_frames != frames.shape[0] or any(tuple(s) != tuple(frames.shape[-2:])
                                                      for s in faces.frame_sizes):
            raise InputError(f"faces: detected on {faces.num_frames} frame(s) of size {faces.frame_sizes[:1]}, "
                             f"but images has {frames.shape[0]} of {tuple(frames.shape[-2:])}; detect faces on "
                             f"the same images")
        if generator is not None:
            crop_size = generator.info.get("crop_size") or crop_size
        device = compute_device()
        faces = faces.to(device)
        chosen = faces.select(select_faces(faces, make_selection(select, face_index, order)))
        aligned = align_faces(frames.to(device), chosen, int(crop_size), None if alignment == "auto" else alignment)
        return (FaceCrops(crops=aligned.crops, aligned=aligned),)


class SimSwapFaceMask:
    DESCRIPTION = ("Builds face masks: box, landmark ellipse or BiSeNet parsing regions, grown or shrunk and "
                   "feathered in proportion to the face size. Takes aligned face crops (SimSwap Swap, Align Faces) "
                   "or the detected faces of 'SimSwap Detect Faces' together with their images (every face, "
                   "aligned at 224). Gives the mask in frame space (one per frame, all faces together) and in crop "
                   "space (one per face, for 'SimSwap Paste Faces').")
    CATEGORY = f"{CATEGORY}/faces"
    FUNCTION = "build"
    RETURN_TYPES = ("MASK", "MASK")
    RETURN_NAMES = ("mask", "crop_masks")
    OUTPUT_TOOLTIPS = ("Frame-space mask [frames, H, W]: the union of all face masks of each frame.",
                       "Crop-space masks [faces, S, S], one per aligned face, same order as the crops.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            **mask_inputs("ellipse"),
        }, "optional": {
            "face_crops": ("SIMSWAP_FACE_CROPS", {
                "tooltip": "Aligned faces (from SimSwap Swap or Align Faces). Either this, or faces + images."}),
            "faces": ("SIMSWAP_FACES", {"tooltip": "Detected faces (SimSwap Detect Faces); needs 'images'."}),
            "images": ("IMAGE", {"tooltip": "The frames 'faces' were detected in."}),
            "parser": ("SIMSWAP_PARSER", {"tooltip": "BiSeNet face parser, required for mask = parsing."}),
        }}

    def build(self, mask, mask_regions, mask_grow, mask_feather, face_crops=None, faces=None, images=None,
              parser=None):
        from simswap_core.errors import InputError
        from simswap_core.masks import build_crop_masks
        from simswap_core.paste import paste_faces

        spec = make_mask_spec(mask, mask_regions, mask_grow, mask_feather)
        if spec.kind == "parsing" and parser is None:
            raise InputError("parser: mask = parsing needs a face parser (SimSwap Load Face Parser)")
        if face_crops is None:
            if faces is None or images is None:
                raise InputError("face_crops: connect aligned face crops, or both 'faces' (SimSwap Detect Faces) "
                                 "and the 'images' they were detected in")
            (face_crops,) = SimSwapAlignFaces().align(images, faces, "224", "auto", "all", "0", "left-right")
        aligned = face_crops.aligned
        crop_masks = build_crop_masks(aligned, spec, parser.module() if parser is not None else None)
        # frame-space union: paste the unchanged target crops with these masks onto blank frames (no seam ramp)
        n, (h, w) = len(aligned.frame_sizes), aligned.frame_sizes[0]
        blank = aligned.crops.new_zeros(n, 3, h, w)
        _, frame_mask = paste_faces(blank, aligned.crops, aligned, crop_masks, feather=0.0, erode=0.0)
        return (n1hw_to_mask(frame_mask), n1hw_to_mask(crop_masks))


class SimSwapSplitFaceCrops:
    DESCRIPTION = ("Splits SIMSWAP_FACE_CROPS into an IMAGE batch of aligned face crops (to restore or upscale "
                   "with any image node, e.g. GFPGAN/CodeFormer) and the SIMSWAP_ALIGNMENT needed to paste them "
                   "back with 'SimSwap Paste Faces' without detecting the faces again.")
    CATEGORY = f"{CATEGORY}/faces"
    FUNCTION = "split"
    RETURN_TYPES = ("IMAGE", "SIMSWAP_ALIGNMENT", "MASK", "IMAGE")
    RETURN_NAMES = ("crops", "alignment", "crop_masks", "original_crops")
    OUTPUT_TOOLTIPS = (
        "The face crops [faces, S, S, 3] (swapped faces for a swap's output).",
        "Where each crop belongs: frame index and frame -> crop matrix of every face.",
        "The crop-space blend masks [faces, S, S] the swap used (whole crop for a box mask).",
        "The original (target) faces as aligned crops [faces, S, S, 3].",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "face_crops": ("SIMSWAP_FACE_CROPS", {"tooltip": "Face crops from SimSwap Swap or Align Faces."}),
        }}

    def split(self, face_crops):
        return (nchw_to_image(face_crops.crops), face_crops.aligned, n1hw_to_mask(_crop_masks(face_crops)),
                nchw_to_image(face_crops.aligned.crops))


class SimSwapPasteFaces:
    DESCRIPTION = ("Pastes aligned face crops (e.g. swapped faces after a restoration node) back into the frames "
                   "with their SIMSWAP_ALIGNMENT, without detecting faces again. Crops of another size (a 2x "
                   "restorer) are resized to the alignment's crop size. Pixels outside the returned mask stay "
                   "exactly as they were.")
    CATEGORY = f"{CATEGORY}/faces"
    FUNCTION = "paste"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "mask")
    OUTPUT_TOOLTIPS = ("The frames with the faces pasted in.",
                       "Where each frame was changed (frame-space union of the face masks).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The frames to paste into (the frames the alignment was made on, "
                                            "or the swap's output)."}),
            "crops": ("IMAGE", {"tooltip": "Aligned face crops [faces, S, S, 3], one per face of the alignment."}),
            "alignment": ("SIMSWAP_ALIGNMENT", {"tooltip": "From 'SimSwap Split Face Crops'."}),
            "paste_mode": (["default", "official"], {
                "default": "default",
                "tooltip": "default: detail-preserving paste with a seam ramp; official: SimSwap's "
                           "reverse2wholeimage."}),
            "color_match": ("BOOLEAN", {"default": False,
                                        "tooltip": "Match each pasted face's colours to the original face."}),
            "feather": ("FLOAT", {"default": 0.12, "min": 0.0, "max": 0.5, "step": 0.005,
                                  "tooltip": "Width of the seam ramp at the crop border, fraction of the crop "
                                             "size (default mode)."}),
            "erode": ("FLOAT", {"default": 0.04, "min": 0.0, "max": 0.5, "step": 0.005,
                                "tooltip": "Band at the crop border left untouched, fraction of the crop size "
                                           "(default mode)."}),
        }, "optional": {
            "crop_masks": ("MASK", {"tooltip": "Crop-space masks [faces, S, S] (Split Face Crops or Face Mask); "
                                               "none = the whole crop."}),
        }}

    def paste(self, images, crops, alignment, paste_mode, color_match, feather, erode, crop_masks=None):
        from simswap_core.errors import InputError
        from simswap_core.paste import paste_faces

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
        for start in range(0, n, PASTE_FRAMES_PER_CALL):
            stop = min(start + PASTE_FRAMES_PER_CALL, n)
            part, idx = alignment.frames(start, stop)
            out, mask = paste_faces(frames[start:stop].to(device), faces[idx.to(faces.device)].to(device), part,
                                    None if masks is None else masks[idx.to(masks.device)].to(device),
                                    feather=float(feather), erode=float(erode), color_match=bool(color_match),
                                    mode=paste_mode)
            outs.append(nchw_to_image(out))
            out_masks.append(n1hw_to_mask(mask))
            if progress is not None:
                progress(stop, n)
        return (torch.cat(outs), torch.cat(out_masks))


NODE_CLASS_MAPPINGS = {
    "SimSwapAlignFaces": SimSwapAlignFaces,
    "SimSwapFaceMask": SimSwapFaceMask,
    "SimSwapSplitFaceCrops": SimSwapSplitFaceCrops,
    "SimSwapPasteFaces": SimSwapPasteFaces,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SimSwapAlignFaces": "SimSwap Align Faces",
    "SimSwapFaceMask": "SimSwap Face Mask",
    "SimSwapSplitFaceCrops": "SimSwap Split Face Crops",
    "SimSwapPasteFaces": "SimSwap Paste Faces",
}
