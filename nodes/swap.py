"""SimSwap Face Swap: the whole pipeline on an IMAGE batch (detect, select, align, generate, restore, mask, paste),
and SimSwap Swap Options (the rarely changed settings, as one optional input of the swap node)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

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
    report_status,
    soft_empty_cache,
)
from .search_aliases import search_aliases
from .selection import (
    MASK_KINDS,
    MASK_TOOLTIP,
    OFFICIAL_REGIONS_TEXT,
    ORDERS,
    SELECT_MODES,
    make_mask_spec,
    make_selection,
    region_inputs,
    validate_face_index,
    validate_feather,
)

if TYPE_CHECKING:  # simswap_core is imported where it is used
    import torch

    from simswap_core.detection import FaceDetector
    from simswap_core.faces import DetectedFaces
    from simswap_core.identity import Identity
    from simswap_core.swap import FaceSwapper

SwapOptionsType = io.Custom("SIMSWAP_SWAP_OPTIONS")   # SwapSettings
GenderModelType = io.Custom("SIMSWAP_GENDER_MODEL")   # simswap_core.detection.genderage.GenderAgeEstimator
GENDERS = ["any", "female", "male"]
DISPLAY_NAME = "SimSwap Face Swap"
MAX_TRACK_GAP = 250  # frames a lost face may be missed and still keep its track


@dataclass(frozen=True)
class SwapSettings:
    """SIMSWAP_SWAP_OPTIONS: the swap node's less common settings (defaults = the swap node without options)."""

    mask_regions: str = OFFICIAL_REGIONS_TEXT
    mask_grow: float = 0.0
    mask_feather: str | float = "auto"
    paste_mode: str = "default"
    color_match: bool = False
    batch_size: int = 8
    reference_threshold: float = 0.03
    temporal_smoothing: float = 0.0
    track_gap: int = 8
    blend_smoothing: float = 0.5
    pixel_boost: int = 1


def make_swapper(generator: ManagedModel, arcface: ManagedModel | None, detector: FaceDetector,
                 parser: ManagedModel | None = None, sam: ManagedModel | None = None) -> FaceSwapper:
    """A FaceSwapper over models managed by ComfyUI (loaded onto the compute device now, by one call);
    arcface, parser and sam may be None."""
    from simswap_core.swap import FaceSwapper

    g, a, p, s = load_managed(generator, arcface, parser, sam)
    return FaceSwapper(g, a, detector, parser=p, sam=s, device=compute_device(),
                       crop_size=generator.info.get("crop_size"))


def protect_masks(protect: Any, what: str = "protect") -> torch.Tensor | None:
    """An optional ComfyUI MASK ([N,H,W] or [H,W], 1 = keep the original pixel) as [N,1,H,W] float32, or None.
    The frame count and size are checked against the frames by the swap (errors name ``what``)."""
    if protect is None:
        return None
    import torch

    from simswap_core.errors import InputError

    if not isinstance(protect, torch.Tensor) or protect.dim() not in (2, 3):
        shape = tuple(protect.shape) if isinstance(protect, torch.Tensor) else type(protect).__name__
        raise InputError(f"{what}: expected a MASK [N,H,W] or [H,W] (1 = keep the original pixel), got {shape}")
    if not protect.is_floating_point():
        raise InputError(f"{what}: expected a float MASK in [0,1], got dtype {protect.dtype}")
    m = protect if protect.dim() == 3 else protect[None]
    return m[:, None].float()


def swap_arguments(*, identity: Identity | list[Identity] | None, identity_map: Any, generator: ManagedModel,
                   detector: FaceDetector, faces: str, face_index: str, order: str, mask: str, if_no_face: str,
                   identity_strength: float = 1.0, restore_visibility: float = 1.0, gender: str = "any",
                   arcface: ManagedModel | None = None, reference: Identity | None = None,
                   parser: ManagedModel | None = None, options: SwapSettings | None = None, restore_model: Any = None,
                   gender_model: Any = None, sam: ManagedModel | None = None, protect: Any = None
                   ) -> tuple[FaceSwapper, dict[str, Any], SwapSettings]:
    """The swap node's inputs (as widgets and sockets) checked, with errors naming the widget / input, ->
    (the FaceSwapper on the compute device, the keyword arguments of ``FaceSwapper.swap`` / ``run`` (identity,
    select, mask, paste_mode, color_match, reference, if_no_face, identity_strength, gender, gender_model, restorer,
    restore_visibility, identity_map, protect), the Swap Options settings). Shared by SimSwap Face Swap and the
    video node; loads the models (call it when the node runs, not in validate_inputs). sam: SimSwap Load SAM's model
    (needed by the SAM mask kinds); protect: an optional MASK of regions that must never change."""
    from simswap_core.checks import check_integer, check_number
    from simswap_core.errors import InputError
    from simswap_core.identity import check_identity

    opts = options if options is not None else SwapSettings()
    if not isinstance(opts, SwapSettings):
        raise InputError(f"options: expected the output of 'SimSwap Swap Options', got {type(opts).__name__}")
    opts = check_settings(opts)
    if (identity is None) == (identity_map is None):
        raise InputError("identity: connect either 'identity' (one identity for the selected faces) or "
                         "'identity_map' (SimSwap Map Identity: several identities, each to its own faces), "
                         + ("not both" if identity is not None else "got neither"))
    if identity_map is not None:
        from simswap_core.mapping import IdentityMap, check_identity_map

        if not isinstance(identity_map, IdentityMap):
            raise InputError(f"identity_map: expected the output of 'SimSwap Map Identity', got "
                             f"{type(identity_map).__name__}")
        check_identity_map(identity_map, "identity_map")
        if faces != "all":
            raise InputError(f"faces: with an identity_map the map chooses the faces (by reference, face index or "
                             f"track id); set faces to all (got {faces})")
        if identity_map.needs_arcface and arcface is None:
            raise InputError("arcface: the identity_map matches faces by reference and needs the 'arcface' input "
                             "(SimSwap Load ArcFace) to compare each face with the references")
    selection = make_selection(faces, face_index, order, opts.reference_threshold)
    strength = check_number(identity_strength, "identity_strength", low=0.0, high=2.0)
    visibility = check_number(restore_visibility, "restore_visibility", low=0.0, high=1.0)
    if faces == "reference" and reference is None:
        raise InputError("reference: faces = reference needs the 'reference' input (an identity of the "
                         "person to replace, from SimSwap Extract Identity)")
    if faces == "reference" and arcface is None:
        raise InputError("arcface: faces = reference needs the 'arcface' input (SimSwap Load ArcFace) to "
                         "compare each face with the reference")
    if strength != 1.0 and arcface is None:
        raise InputError(f"arcface: identity_strength {strength:g} needs the 'arcface' input (SimSwap Load "
                         "ArcFace) to read the target face's own identity; set identity_strength to 1 without it")
    if gender not in GENDERS:
        raise InputError(f"gender: expected one of {GENDERS}, got {gender!r}")
    if gender != "any" and gender_model is None:
        raise InputError(f"gender_model: gender = {gender} needs the 'gender_model' input (SimSwap Load Gender "
                         "Model); set gender to any without it")
    if if_no_face not in ("keep", "error"):
        raise InputError(f"if_no_face: expected 'keep' or 'error', got {if_no_face!r}")
    spec = make_mask_spec(mask, opts.mask_regions, opts.mask_grow, opts.mask_feather)
    if spec.needs_parser and parser is None:
        raise InputError(f"parser: mask = {spec.kind} needs a face parser (SimSwap Load Face Parser)")
    check_sam_input(spec, sam)
    keep = protect_masks(protect)
    one: Identity | list[Identity] | None = None
    if identity is not None:
        identities = list(identity) if isinstance(identity, (list, tuple)) else [identity]
        if not identities:
            raise InputError("identity: an empty list of identities (Extract Identity found no source face)")
        for k, ident in enumerate(identities):
            check_identity(ident, "identity" if len(identities) == 1 else f"identity #{k}")
        one = identities if len(identities) > 1 else identities[0]
    if reference is not None:
        check_identity(reference, "reference")
    check_integer(opts.batch_size, "batch_size", low=1, high=4096)
    restorer = None
    if restore_model is not None and visibility > 0:
        from .restore import make_restorer  # UPSCALE_MODEL -> FaceRestorer

        restorer = make_restorer(restore_model)
    check_interrupt()
    swapper = make_swapper(generator, arcface, detector, parser, sam)
    kwargs: dict[str, Any] = dict(
        identity=one, select=selection, mask=spec, paste_mode=opts.paste_mode, color_match=bool(opts.color_match),
        reference=reference, if_no_face=if_no_face, identity_strength=strength, gender=gender,
        gender_model=gender_model, restorer=restorer, restore_visibility=visibility, identity_map=identity_map,
        protect=keep, pixel_boost=opts.pixel_boost)
    return swapper, kwargs, opts


def check_sam_input(spec: Any, sam: Any) -> None:
    """The 'sam' input checked against the mask kind: a SAM mask kind needs it, and it must be SimSwap Load SAM's
    model (InputError naming the input)."""
    from simswap_core.errors import InputError

    if getattr(spec, "needs_sam", False) and sam is None:
        raise InputError(f"sam: mask = {spec.kind} needs a Segment Anything model: connect SimSwap Load SAM (a "
                         "checkpoint from models/sams) to the 'sam' input, or choose another mask")
    if sam is not None and (not isinstance(sam, ManagedModel) or sam.kind != "sam"):
        raise InputError(f"sam: expected the output of 'SimSwap Load SAM', got {type(sam).__name__}")

def swap_tracked(swapper: FaceSwapper, frames: torch.Tensor, detected_faces: DetectedFaces | None,
                 kwargs: dict[str, Any], opts: SwapSettings) -> tuple[Any, list[str]]:
    """The IMAGE batch as video frames: faces tracked over the whole batch (``tracking.FaceTracker``: track ids,
    landmarks steadied by temporal_smoothing, gaps of up to track_gap frames filled, new ids after a cut), masks and
    colour smoothed per track (``temporal.TemporalState``, blend_smoothing), through ``run`` from a TensorSource
    into a TensorSink that keeps the crops. -> (the SwapResult of all frames, summary lines: tracks, filled
    faces, cuts). The progress bar advances frame by frame; Cancel is seen after every generator call."""
    from simswap_core.io.frames import TensorSink, TensorSource
    from simswap_core.run import run
    from simswap_core.temporal import TemporalState
    from simswap_core.tracking import FaceTracker

    n = int(frames.shape[0])
    tracker = FaceTracker(opts.temporal_smoothing, max_gap=opts.track_gap, fill_gaps=opts.track_gap > 0)
    temporal = TemporalState(opts.blend_smoothing, opts.blend_smoothing)
    sink = TensorSink(keep_crops=True)
    args = dict(kwargs)
    identity = args.pop("identity")

    def cancel_point(_done: float, _total: int) -> None:
        check_interrupt()

    summary = run(TensorSource(frames), swapper, sink, identity, batch_size=opts.batch_size,
                  progress=cast(Any, progress_callback(n)), faces=detected_faces, tracker=tracker, prefetch=0,
                  temporal=temporal, on_step=cancel_point, **args)
    cuts = ", ".join(map(str, summary.cuts[:20])) + (" ..." if len(summary.cuts) > 20 else "")
    line = (f"tracks: {summary.tracks}, faces filled in detection gaps: {summary.faces_filled}, "
            + (f"cuts at frame(s) {cuts}" if summary.cuts else "no cut"))
    return sink.result(), [line]


def check_settings(opts: SwapSettings) -> SwapSettings:
    """The Swap Options values checked (a SwapSettings built in Python may hold anything), numbers as floats."""
    from simswap_core.checks import check_integer, check_number
    from simswap_core.errors import InputError

    if opts.paste_mode not in ("default", "official"):
        raise InputError(f"paste_mode: expected 'default' or 'official', got {opts.paste_mode!r}")
    return replace(
        opts, batch_size=check_integer(opts.batch_size, "batch_size", low=1, high=4096),
        reference_threshold=check_number(opts.reference_threshold, "reference_threshold", low=0.0, low_open=True,
                                         high=1.0),
        temporal_smoothing=check_number(opts.temporal_smoothing, "temporal_smoothing", low=0.0, high=1.0),
        track_gap=check_integer(opts.track_gap, "track_gap", low=0, high=MAX_TRACK_GAP),
        blend_smoothing=check_number(opts.blend_smoothing, "blend_smoothing", low=0.0, high=1.0),
        pixel_boost=pixel_boost_setting(opts.pixel_boost, opts.paste_mode))


def pixel_boost_setting(value: Any, paste_mode: str) -> int:
    """The pixel_boost widget checked (1-4, not with the official paste), as an int."""
    from simswap_core.errors import InputError
    from simswap_core.pixel_boost import check_pixel_boost

    boost = check_pixel_boost(int(value) if isinstance(value, float) and float(value).is_integer() else value)
    if boost > 1 and paste_mode == "official":
        raise InputError("pixel_boost: paste_mode official reproduces SimSwap's own output at the generator's size; "
                         "set pixel_boost to 1 or paste_mode to default")
    return boost


def node_no_face_message(err: Exception) -> str:
    """The swap's FramesWithoutFaceError worded for the node (widgets, not API arguments)."""
    from simswap_core.swap import describe_skipped

    frames, reasons = getattr(err, "frames", None), getattr(err, "reasons", None)
    if not frames or not reasons:
        return f"{err}. Set 'if_no_face' to keep to return such frames unchanged."
    total = getattr(err, "total", len(frames))
    return (f"nothing to swap in {describe_skipped(frames, reasons)} (of {total} frame{'s' if total != 1 else ''}; "
            f"detector {getattr(err, 'detector', '?')}). Set 'if_no_face' to keep to return such frames unchanged, "
            f"or change 'faces' / 'face_index'.")


class SimSwapSwapOptions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSwapOptions",
            **search_aliases("SimSwapSwapOptions"),
            display_name="SimSwap Swap Options",
            category=CATEGORY,
            description=("The less common settings of 'SimSwap Face Swap' (mask regions, grow and feather, paste "
                         "mode, colour match, batch size, reference threshold, video smoothing, track gaps, mask "
                         "and colour smoothing). Connect to the swap node's 'options' input; without it the swap "
                         "uses these defaults."),
            inputs=[
                *region_inputs(),
                io.Combo.Input("paste_mode", options=["default", "official"], default="default",
                               tooltip="default: detail-preserving paste with a seam ramp proportional to the face "
                                       "size. official: SimSwap's reverse2wholeimage (fixed 40 px erosion, 41 px "
                                       "blur)."),
                io.Boolean.Input("color_match", default=False,
                                 tooltip="Match the swapped face's colours to the target face."),
                io.Int.Input("batch_size", default=8, min=1, max=256,
                             tooltip="Frames per batch, and faces per generator call on a GPU (lower it if the GPU "
                                     "runs out of memory). On the CPU faces go through the generator one by one, "
                                     "which is fastest there."),
                io.Float.Input("reference_threshold", default=0.03, min=0.001, max=1.0, step=0.001,
                               tooltip="Maximum MSE between raw ArcFace embeddings for faces = reference (official "
                                       "--id_thres 0.03)."),
                io.Float.Input("temporal_smoothing", default=0.0, min=0.0, max=1.0, step=0.05,
                               tooltip="For video frames: follows each face from frame to frame (track ids) and "
                                       "steadies its landmarks so the swapped face does not jitter (0 = off, 0.5 = "
                                       "a good start, 1 = strongest). Leave at 0 for a batch of unrelated photos."),
                # new widgets go last (optional: API prompts saved before them still run): saved workflows keep
                # their values by position
                io.Int.Input("track_gap", default=8, min=0, max=MAX_TRACK_GAP, optional=True,
                             tooltip="For video frames (tracked: temporal_smoothing > 0 or the SimSwap Video node): "
                                     "a face the detector misses for up to this many frames keeps its track and "
                                     "its swap, filled in from the neighbouring frames instead of flashing the "
                                     "original face (0 = no gap filling)."),
                io.Float.Input("blend_smoothing", default=0.5, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="For video frames (tracked): steadies each face's blend mask and colour "
                                       "correction over time, so edges do not pump and colours do not flicker (0 = "
                                       "off, 1 = strongest)."),
                io.Int.Input("pixel_boost", default=1, min=1, max=4, optional=True,
                             tooltip="Swap at this many times the model's size (1 = off; 2: 448 px for the 224 "
                                     "model): each face is swapped as 2x2 (3x3, 4x4) interleaved sub-pixel phases "
                                     "woven back together, so large faces keep their detail without seams. Costs "
                                     "boost x boost generator calls per face. Not with paste_mode official."),
            ],
            outputs=[SwapOptionsType.Output(display_name="options",
                                            tooltip="Connect to the 'options' input of SimSwap Face Swap.")],
        )

    @classmethod
    def validate_inputs(cls, mask_feather: Any = None, paste_mode: str | None = None) -> bool | str:
        return t.first_error(validate_feather(mask_feather), t.combo_errors(cls, paste_mode=paste_mode))

    @classmethod
    def execute(cls, mask_regions: str, mask_grow: float, mask_feather: str | float, paste_mode: str,
                color_match: bool, batch_size: int, reference_threshold: float,
                temporal_smoothing: float, track_gap: int = 8, blend_smoothing: float = 0.5,
                pixel_boost: int = 1) -> io.NodeOutput:
        from simswap_core.checks import check_integer, check_number
        from simswap_core.errors import InputError

        make_mask_spec("box", mask_regions, mask_grow, mask_feather)  # the mask widgets, checked now
        if paste_mode not in ("default", "official"):
            raise InputError(f"paste_mode: expected 'default' or 'official', got {paste_mode!r}")
        settings = SwapSettings(
            mask_regions=str(mask_regions), mask_grow=float(mask_grow), mask_feather=mask_feather,
            paste_mode=paste_mode, color_match=bool(color_match),
            batch_size=check_integer(batch_size, "batch_size", low=1, high=4096),
            reference_threshold=check_number(reference_threshold, "reference_threshold", low=0.0, low_open=True,
                                             high=1.0),
            temporal_smoothing=check_number(temporal_smoothing, "temporal_smoothing", low=0.0, high=1.0),
            track_gap=check_integer(track_gap, "track_gap", low=0, high=MAX_TRACK_GAP),
            blend_smoothing=check_number(blend_smoothing, "blend_smoothing", low=0.0, high=1.0),
            pixel_boost=pixel_boost_setting(pixel_boost, paste_mode))
        return io.NodeOutput(settings)


class SimSwapSwap(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSwap",  # the id saved workflows refer to: never changes
            **search_aliases("SimSwapSwap"),
            display_name=DISPLAY_NAME,
            category=CATEGORY,
            description=("Swaps the identity into the selected faces of every frame of an IMAGE batch (a photo or "
                         "video frames: count and order are kept). The node shows how many faces were swapped and "
                         "names every frame where nothing was (and why). Several identities at once: connect SimSwap "
                         "Map Identity nodes to identity_map instead of identity. With temporal_smoothing (Swap "
                         "Options) the frames are tracked as a video. The progress bar advances face by face and "
                         "Cancel stops after the current generator call. Pixels outside the returned mask are left "
                         "exactly as they were. Licences: the SimSwap weights are CC BY-NC 4.0 and insightface "
                         "models non-commercial."),
            inputs=[
                io.Image.Input("images", tooltip="Target photo(s) or video frames whose faces are replaced."),
                t.Identity.Input("identity", optional=True,
                                 tooltip="The identity to swap in (Extract or Load Identity). Several identities "
                                         "(Extract Identity with combine = each) go to several faces: with faces = "
                                         "index the k-th identity goes to the k-th number in face_index; with all, "
                                         "to the faces in 'order' (repeated when there are fewer identities). "
                                         "Connect this or identity_map."),
                t.Generator.Input("generator", tooltip="SimSwap generator (224 or 512)."),
                t.Detector.Input("detector", tooltip="Face detector for the target frames."),
                io.Combo.Input("faces", options=SELECT_MODES, default="all",
                               tooltip="Which faces of each frame are swapped: all; the largest; the best detection "
                                       "score; the numbers in face_index; or the face matching the 'reference' "
                                       "identity (needs the arcface and reference inputs)."),
                io.String.Input("face_index", default="0",
                                tooltip="For faces = index: face numbers separated by commas, as shown by 'SimSwap "
                                        "Detect Faces' with the same order (e.g. '0' or '0,2')."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="How faces are numbered for face_index."),
                io.Combo.Input("mask", options=MASK_KINDS, default="box",
                               tooltip=MASK_TOOLTIP + " Parser kinds take the 'parser' input (regions in SimSwap "
                                                      "Swap Options), SAM kinds the 'sam' input."),
                io.Combo.Input("if_no_face", options=["keep", "error"], default="keep",
                               tooltip="A frame where nothing is swapped (no face, or none selected): keep it "
                                       "unchanged (mask 0; the node and a notification say which frames and why), "
                                       "or stop with an error naming the frames."),
                io.Float.Input("identity_strength", default=1.0, min=0.0, max=2.0, step=0.05, optional=True,
                               tooltip="How much of the source identity: 1 = the source (normal swap), 0 = the "
                                       "target's own face, 0.5 = halfway, up to 2 = exaggerated. Needs the arcface "
                                       "input when not 1."),
                io.Float.Input("restore_visibility", default=1.0, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="With restore_model: how much of the restored face is used (0 = none, 1 = "
                                       "fully restored)."),
                io.Combo.Input("gender", options=GENDERS, default="any", optional=True,
                               tooltip="Swap only female or male faces (needs gender_model); the face numbers of "
                                       "face_index then count only faces of that gender."),
                t.ArcFace.Input("arcface", optional=True,
                                tooltip="ArcFace encoder (SimSwap Load ArcFace): needed only for faces = reference "
                                        "and identity_strength other than 1."),
                t.Identity.Input("reference", optional=True,
                                 tooltip="For faces = reference: the person to replace (Extract Identity of a photo "
                                         "of them). In each frame the closest face below reference_threshold (Swap "
                                         "Options) is swapped."),
                t.Parser.Input("parser", optional=True,
                               tooltip="BiSeNet face parser, required for mask = parsing, occlusion or sam_parsing."),
                t.Faces.Input("detected_faces", optional=True,
                              tooltip="Optional: the faces 'SimSwap Detect Faces' found in these same images; when "
                                      "connected they are used as they are (no second detection), and 'faces' / "
                                      "face_index select among them."),
                SwapOptionsType.Input("options", optional=True,
                                      tooltip="SimSwap Swap Options: mask regions/grow/feather, paste mode, colour "
                                              "match, batch size, reference threshold, video smoothing."),
                io.UpscaleModel.Input("restore_model", optional=True,
                                      tooltip="A face restoration model (GFPGAN, CodeFormer, GPEN... from 'SimSwap "
                                              "Load Face Restorer' or ComfyUI's Load Upscale Model) applied to the "
                                              "swapped faces only, before they are pasted back. Check each model's "
                                              "licence."),
                GenderModelType.Input("gender_model", optional=True,
                                      tooltip="Gender model (SimSwap Load Gender Model; insightface genderage.onnx, "
                                              "non-commercial) used by the gender filter."),
                t.IdentityMap.Input("identity_map", optional=True,
                                    tooltip="Several identities in one pass, each to its own faces (SimSwap Map "
                                            "Identity: by reference photo, face index or track id); faces not "
                                            "mapped are left alone. Use instead of 'identity', with faces = all."),
                t.Sam.Input("sam", optional=True,
                            tooltip="Segment Anything model (SimSwap Load SAM), required for mask = sam or "
                                    "sam_parsing: SAM segments each face from its box and landmarks, so a hand or "
                                    "hair in front of it is left out of the swap."),
                io.Mask.Input("protect", optional=True,
                              tooltip="Regions that must never change (1 = keep the original pixel exactly, e.g. a "
                                      "hand or a microphone in front of the face; from any mask node): one mask for "
                                      "every frame, or one per frame, the size of the images. The output mask is 0 "
                                      "there."),
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
                                           "process the faces further and paste them back with 'SimSwap Paste "
                                           "Faces'."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, faces: str | None = None, face_index: str | None = None, order: str | None = None,
                        mask: str | None = None, if_no_face: str | None = None,
                        gender: str | None = None) -> bool | str:
        return t.first_error(validate_face_index(face_index),
                             t.combo_errors(cls, faces=faces, order=order, mask=mask, if_no_face=if_no_face,
                                            gender=gender))

    @classmethod
    def execute(cls, images: torch.Tensor, identity: Identity | list[Identity] | None = None,
                generator: ManagedModel | None = None, detector: FaceDetector | None = None, faces: str = "all",
                face_index: str = "0", order: str = "left-right", mask: str = "box", if_no_face: str = "keep",
                identity_strength: float = 1.0, restore_visibility: float = 1.0, gender: str = "any",
                arcface: ManagedModel | None = None, reference: Identity | None = None,
                parser: ManagedModel | None = None, detected_faces: DetectedFaces | None = None,
                options: SwapSettings | None = None, restore_model: Any = None,
                gender_model: Any = None, identity_map: Any = None, sam: ManagedModel | None = None,
                protect: torch.Tensor | None = None) -> io.NodeOutput:
        from simswap_core.errors import InputError
        from simswap_core.swap import FramesWithoutFaceError

        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        frames = image_to_nchw(images, "images")
        if detected_faces is not None:
            detected_faces.check_matches(frames, "detected_faces")
        if generator is None or detector is None:  # required sockets: ComfyUI always gives them
            raise InputError(f"{'generator' if generator is None else 'detector'}: connect a SimSwap "
                             f"{'generator' if generator is None else 'detector'} loader")
        swapper, kwargs, opts = swap_arguments(
            identity=identity, identity_map=identity_map, generator=generator, detector=detector, faces=faces,
            face_index=face_index, order=order, mask=mask, if_no_face=if_no_face,
            identity_strength=identity_strength, restore_visibility=restore_visibility, gender=gender,
            arcface=arcface, reference=reference, parser=parser, options=options, restore_model=restore_model,
            gender_model=gender_model, sam=sam, protect=protect)
        n = frames.shape[0]
        imap = kwargs["identity_map"]
        tracked = opts.temporal_smoothing > 0 or (imap is not None and imap.needs_tracks)
        # frames stay where ComfyUI keeps IMAGE batches: swap() moves one batch at a time to the compute device,
        # so a long video never has to fit in GPU memory at once
        try:
            if tracked:
                result, extra = swap_tracked(swapper, frames, detected_faces, kwargs, opts)
            else:
                result = swapper.swap(frames, faces=detected_faces, batch_size=opts.batch_size,
                                      on_step=progress_callback(n), **kwargs)
                extra = []
        except FramesWithoutFaceError as e:
            message = node_no_face_message(e)
            report_status(node_id, f"{DISPLAY_NAME}: {message}", "error")
            raise FramesWithoutFaceError(message, e.frames, e.reasons, e.total, e.detector) from None
        soft_empty_cache()
        text = result.summary()
        identities = kwargs["identity"] if isinstance(kwargs["identity"], list) else [kwargs["identity"]]
        if len(identities) > 1 and faces not in ("index", "all"):
            text += f" (only the first of {len(identities)} identities is used with faces = {faces})"
        if imap is not None:
            import torch

            slots = result.identity_slots if result.identity_slots is not None else torch.zeros(0, dtype=torch.long)
            extra.insert(0, imap.summary(torch.bincount(slots.cpu().long(), minlength=len(imap))))
        text = "\n".join([text, *extra])
        if result.frames_without_face:
            report_status(node_id, f"{DISPLAY_NAME}: {text}", "warning")
        keep = intermediate_device()  # the crops of a whole video must not stay on the GPU
        crops = FaceCrops(crops=result.swapped.to(keep), aligned=result.aligned.to(keep), mask_spec=kwargs["mask"],
                          parser=parser)
        return io.NodeOutput(nchw_to_image(result.images), n1hw_to_mask(result.mask), crops, ui={"text": [text]})


NODES = [SimSwapSwap, SimSwapSwapOptions]
