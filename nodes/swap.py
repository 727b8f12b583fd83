"""SimSwap Swap: the whole pipeline on an IMAGE batch (detect, select, align, generate, mask, paste)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from comfy_api.latest import io

from . import _types as t
from ._common import (
    CATEGORY,
    FaceCrops,
    ManagedModel,
    check_interrupt,
    compute_device,
    image_to_nchw,
    intermediate_device,
    load_managed,
    n1hw_to_mask,
    nchw_to_image,
    progress_callback,
    soft_empty_cache,
)
from .selection import ORDERS, SELECT_MODES, make_mask_spec, make_selection, mask_inputs, validate_face_index

if TYPE_CHECKING:  # simswap_core is imported where it is used
    import torch

    from simswap_core.detection import FaceDetector
    from simswap_core.faces import DetectedFaces
    from simswap_core.identity import Identity
    from simswap_core.swap import FaceSwapper


def make_swapper(generator: ManagedModel, arcface: ManagedModel, detector: FaceDetector,
                 parser: ManagedModel | None = None) -> FaceSwapper:
    """A FaceSwapper over models managed by ComfyUI (loaded onto the compute device now)."""
    from simswap_core.swap import FaceSwapper

    g, a, p = load_managed(generator, arcface, parser)
    return FaceSwapper(g, a, detector, parser=p, device=compute_device(), crop_size=generator.info.get("crop_size"))


class SimSwapSwap(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSwap",
            display_name="SimSwap Swap",
            category=CATEGORY,
            description=("Swaps the identity into the selected faces of every frame of an IMAGE batch (a photo or "
                         "video frames: count and order are kept). Faces and frames are batched on the GPU; the "
                         "progress bar advances frame by frame and Cancel stops between generator calls. Pixels "
                         "outside the returned mask are left exactly as they were."),
            inputs=[
                io.Image.Input("images", tooltip="Target photo(s) or video frames whose faces are replaced."),
                t.Identity.Input("identity", tooltip="The identity to swap in (Extract or Load Identity)."),
                t.Generator.Input("generator", tooltip="SimSwap generator (224 or 512)."),
                t.ArcFace.Input("arcface", tooltip="ArcFace encoder, used for faces = reference."),
                t.Detector.Input("detector", tooltip="Face detector for the target frames."),
                io.Combo.Input("faces", options=SELECT_MODES, default="all",
                               tooltip="Which faces of each frame are swapped: all; the largest; the best detection "
                                       "score; the numbers in face_index; or the face matching the 'reference' "
                                       "identity."),
                io.String.Input("face_index", default="0",
                                tooltip="For faces = index: face numbers separated by commas, as shown by 'SimSwap "
                                        "Detect Faces' with the same order (e.g. '0' or '0,2')."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="How faces are numbered for face_index."),
                *mask_inputs("box"),
                io.Combo.Input("paste_mode", options=["default", "official"], default="default",
                               tooltip="default: detail-preserving paste with a seam ramp proportional to the face "
                                       "size. official: SimSwap's reverse2wholeimage (fixed 40 px erosion, 41 px "
                                       "blur)."),
                io.Boolean.Input("color_match", default=False,
                                 tooltip="Match the swapped face's colours to the target face."),
                io.Combo.Input("if_no_face", options=["keep", "error"], default="keep",
                               tooltip="A frame without a selected face: keep it unchanged (mask 0), or stop with an "
                                       "error naming the frames."),
                io.Int.Input("batch_size", default=8, min=1, max=256,
                             tooltip="Frames per batch, and faces per generator call on a GPU (lower it if the GPU "
                                     "runs out of memory). On the CPU faces go through the generator one by one, "
                                     "which is fastest there."),
                t.Identity.Input("reference", optional=True,
                                 tooltip="For faces = reference: the person to replace (Extract Identity of a photo "
                                         "of them). In each frame the closest face below reference_threshold is "
                                         "swapped."),
                io.Float.Input("reference_threshold", default=0.03, min=0.001, max=1.0, step=0.001, optional=True,
                               tooltip="Maximum MSE between raw ArcFace embeddings for faces = reference (official "
                                       "--id_thres 0.03)."),
                t.Parser.Input("parser", optional=True,
                               tooltip="BiSeNet face parser, required for mask = parsing."),
                io.Float.Input("temporal_smoothing", default=0.0, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="For video frames: steadies each tracked face's landmarks over the batch so "
                                       "the swapped face does not jitter (0 = off, 0.5 = a good start, 1 = "
                                       "strongest). Leave at 0 for a batch of unrelated photos."),
                t.Faces.Input("detected_faces", optional=True,
                              tooltip="Optional: the faces 'SimSwap Detect Faces' found in these same images; when "
                                      "connected they are used as they are (no second detection), and 'faces' / "
                                      "face_index select among them."),
            ],
            outputs=[
                io.Image.Output(display_name="images",
                                tooltip="The frames with the faces swapped (same count, order and size as the "
                                        "input)."),
                io.Mask.Output(display_name="mask",
                               tooltip="Where each frame was changed (1 = fully swapped, 0 = untouched), same size "
                                       "as the frames."),
                t.FaceCrops.Output(display_name="face_crops",
                                   tooltip="The swapped faces as aligned crops plus their alignment: split them to "
                                           "restore/upscale the faces (e.g. GFPGAN/CodeFormer nodes) and paste them "
                                           "back with 'SimSwap Paste Faces'."),
            ],
        )

    @classmethod
    def validate_inputs(cls, faces: str | None, face_index: str | None, order: str | None, mask: str | None,
                        paste_mode: str | None, if_no_face: str | None) -> bool | str:
        return t.first_error(validate_face_index(face_index),
                             t.combo_errors(cls, faces=faces, order=order, mask=mask, paste_mode=paste_mode,
                                            if_no_face=if_no_face))

    @classmethod
    def execute(cls, images: torch.Tensor, identity: Identity, generator: ManagedModel, arcface: ManagedModel,
                detector: FaceDetector, faces: str, face_index: str, order: str, mask: str, mask_regions: str,
                mask_grow: float, mask_feather: float, paste_mode: str, color_match: bool, if_no_face: str,
                batch_size: int, reference: Identity | None = None, reference_threshold: float = 0.03,
                parser: ManagedModel | None = None, temporal_smoothing: float = 0.0,
                detected_faces: DetectedFaces | None = None) -> io.NodeOutput:
        from simswap_core.checks import check_integer, check_number
        from simswap_core.errors import InputError
        from simswap_core.identity import check_identity

        frames = image_to_nchw(images, "images")
        selection = make_selection(faces, face_index, order, reference_threshold)
        batch_size = check_integer(batch_size, "batch_size", low=1, high=4096)
        strength = check_number(temporal_smoothing, "temporal_smoothing", low=0.0, high=1.0)
        if faces == "reference" and reference is None:
            raise InputError("reference: faces = reference needs the 'reference' input (an identity of the "
                             "person to replace, from SimSwap Extract Identity)")
        spec = make_mask_spec(mask, mask_regions, mask_grow, mask_feather)
        if spec.needs_parser and parser is None:
            raise InputError(f"parser: mask = {spec.kind} needs a face parser (SimSwap Load Face Parser)")
        if detected_faces is not None:
            detected_faces.check_matches(frames, "detected_faces")
        check_identity(identity, "identity")
        if reference is not None:
            check_identity(reference, "reference")
        check_interrupt()
        swapper = make_swapper(generator, arcface, detector, parser)
        n = frames.shape[0]
        smoothing = None
        if strength > 0:
            from simswap_core.tracking import LandmarkSmoother

            smoothing = LandmarkSmoother(strength)
        # frames stay where ComfyUI keeps IMAGE batches: swap() moves one batch at a time to the compute device,
        # so a long video never has to fit in GPU memory at once
        result = swapper.swap(frames, identity, faces=detected_faces, select=selection, mask=spec,
                              paste_mode=paste_mode, color_match=bool(color_match), reference=reference,
                              if_no_face=if_no_face, batch_size=batch_size, smoothing=smoothing,
                              progress=progress_callback(n))
        soft_empty_cache()
        keep = intermediate_device()  # the crops of a whole video must not stay on the GPU
        crops = FaceCrops(crops=result.swapped.to(keep), aligned=result.aligned.to(keep), mask_spec=spec,
                          parser=parser)
        return io.NodeOutput(nchw_to_image(result.images), n1hw_to_mask(result.mask), crops)


NODES = [SimSwapSwap]
