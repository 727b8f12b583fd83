"""SimSwap Swap: the whole pipeline on an IMAGE batch (detect, select, align, generate, mask, paste)."""
from __future__ import annotations

from ._common import (CATEGORY, FaceCrops, check_interrupt, image_to_nchw, n1hw_to_mask, nchw_to_image,
                      progress_callback, soft_empty_cache)
from .identity import make_swapper
from .selection import ORDERS, SELECT_MODES, make_mask_spec, make_selection, mask_inputs, validate_face_index


class SimSwapSwap:
    DESCRIPTION = ("Swaps the identity into the selected faces of every frame of an IMAGE batch (a photo or "
                   "video frames: count and order are kept). Faces and frames are batched on the GPU; the "
                   "progress bar advances frame by frame and Cancel stops between generator calls. Pixels outside "
                   "the returned mask are left exactly as they were.")
    CATEGORY = CATEGORY
    FUNCTION = "swap"
    RETURN_TYPES = ("IMAGE", "MASK", "SIMSWAP_FACE_CROPS")
    RETURN_NAMES = ("images", "mask", "face_crops")
    OUTPUT_TOOLTIPS = (
        "The frames with the faces swapped (same count, order and size as the input).",
        "Where each frame was changed (1 = fully swapped, 0 = untouched), same size as the frames.",
        "The swapped faces as aligned crops plus their alignment: split them to restore/upscale the faces "
        "(e.g. GFPGAN/CodeFormer nodes) and paste them back with 'SimSwap Paste Faces'.",
    )

    @classmethod
    def VALIDATE_INPUTS(cls, face_index):
        return validate_face_index(face_index)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Target photo(s) or video frames whose faces are replaced."}),
                "identity": ("SIMSWAP_IDENTITY", {"tooltip": "The identity to swap in (Extract or Load Identity)."}),
                "generator": ("SIMSWAP_GENERATOR", {"tooltip": "SimSwap generator (224 or 512)."}),
                "arcface": ("SIMSWAP_ARCFACE", {"tooltip": "ArcFace encoder, used for faces = reference."}),
                "detector": ("SIMSWAP_DETECTOR", {"tooltip": "Face detector for the target frames."}),
                "faces": (SELECT_MODES, {
                    "default": "all",
                    "tooltip": "Which faces of each frame are swapped: all; the largest; the best detection score; "
                               "the numbers in face_index; or the face matching the 'reference' identity."}),
                "face_index": ("STRING", {
                    "default": "0",
                    "tooltip": "For faces = index: face numbers separated by commas, as shown by 'SimSwap Detect "
                               "Faces' with the same order (e.g. '0' or '0,2')."}),
                "order": (ORDERS, {"default": "left-right", "tooltip": "How faces are numbered for face_index."}),
                **mask_inputs("box"),
                "paste_mode": (["default", "official"], {
                    "default": "default",
                    "tooltip": "default: detail-preserving paste with a seam ramp proportional to the face size. "
                               "official: SimSwap's reverse2wholeimage (fixed 40 px erosion, 41 px blur)."}),
                "color_match": ("BOOLEAN", {"default": False,
                                            "tooltip": "Match the swapped face's colours to the target face."}),
                "if_no_face": (["keep", "error"], {
                    "default": "keep",
                    "tooltip": "A frame without a selected face: keep it unchanged (mask 0), or stop with an "
                               "error naming the frames."}),
                "batch_size": ("INT", {"default": 8, "min": 1, "max": 256,
                                       "tooltip": "Frames per batch, and faces per generator call on a GPU "
                                                  "(lower it if the GPU runs out of memory). On the CPU faces "
                                                  "go through the generator one by one, which is fastest there."}),
            },
            "optional": {
                "reference": ("SIMSWAP_IDENTITY", {
                    "tooltip": "For faces = reference: the person to replace (Extract Identity of a photo of "
                               "them). In each frame the closest face below reference_threshold is swapped."}),
                "reference_threshold": ("FLOAT", {
                    "default": 0.03, "min": 0.001, "max": 1.0, "step": 0.001,
                    "tooltip": "Maximum MSE between raw ArcFace embeddings for faces = reference (official "
                               "--id_thres 0.03)."}),
                "parser": ("SIMSWAP_PARSER", {"tooltip": "BiSeNet face parser, required for mask = parsing."}),
                "temporal_smoothing": ("FLOAT", {
                    "default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                    "tooltip": "For video frames: steadies each tracked face's landmarks over the batch so the "
                               "swapped face does not jitter (0 = off, 0.5 = a good start, 1 = strongest). "
                               "Leave at 0 for a batch of unrelated photos."}),
            },
        }

    def swap(self, images, identity, generator, arcface, detector, faces, face_index, order, mask,
             mask_regions, mask_grow, mask_feather, paste_mode, color_match, if_no_face, batch_size,
             reference=None, reference_threshold=0.03, parser=None, temporal_smoothing=0.0):
        from simswap_core.errors import InputError

        frames = image_to_nchw(images, "images")
        selection = make_selection(faces, face_index, order, reference_threshold)
        if faces == "reference" and reference is None:
            raise InputError("reference: faces = reference needs the 'reference' input (an identity of the "
                             "person to replace, from SimSwap Extract Identity)")
        spec = make_mask_spec(mask, mask_regions, mask_grow, mask_feather)
        if spec.kind == "parsing" and parser is None:
            raise InputError("parser: mask = parsing needs a face parser (SimSwap Load Face Parser)")
        check_interrupt()
        swapper = make_swapper(generator, arcface, detector, parser)
        n = frames.shape[0]
        smoothing = None
        if float(temporal_smoothing) > 0:
            from simswap_core.tracking import LandmarkSmoother

            smoothing = LandmarkSmoother(float(temporal_smoothing))
        # frames stay where ComfyUI keeps IMAGE batches: swap() moves one batch at a time to the compute device,
        # so a long video never has to fit in GPU memory at once
        result = swapper.swap(frames, identity, select=selection, mask=spec,
                              paste_mode=paste_mode, color_match=bool(color_match), reference=reference,
                              if_no_face=if_no_face, batch_size=int(batch_size), smoothing=smoothing,
                              progress=progress_callback(n))
        soft_empty_cache()
        crops = FaceCrops(crops=result.swapped, aligned=result.aligned, mask_spec=spec,
                          parser=parser)
        return (nchw_to_image(result.images), n1hw_to_mask(result.mask), crops)


NODE_CLASS_MAPPINGS = {"SimSwapSwap": SimSwapSwap}
NODE_DISPLAY_NAME_MAPPINGS = {"SimSwapSwap": "SimSwap Swap"}
