"""The batched face-swap pipeline. Stages, in order, each a method of ``FaceSwapper`` returning a typed record:

    detect  frames [B,3,H,W]                       -> DetectedFaces (every face; skipped when faces are given)
    choose  + selection (all/largest/index/ref)    -> ChosenFaces (selected faces; reference crops kept)
    track   + tracking.LandmarkSmoother (video)    -> ChosenFaces (steadied points, track_id)
    align   + crop size / template                 -> AlignedFaces (crops [F,3,S,S], frame->crop matrices)
    generate + identity latent [512]               -> swapped crops [F,3,S,S]
    mask    + masks.MaskSpec                       -> crop masks [F,1,S,S] (None = paste's own box)
    paste   + paste mode, colour match             -> frames [B,3,H,W], frame mask [B,1,H,W]

``FaceSwapper.swap`` is a short loop of these stages over batches of frames (``io.frames.frame_ranges``). Every
stage works on all faces of a batch at once (faces are flattened over frames, see ``DetectedFaces``); the only
Python loops run over frame batches and generator batches, never over faces. Images are ``[N,3,H,W]`` float32
RGB in [0,1]; crops ``[F,3,S,S]``; masks ``[N,1,H,W]`` / ``[F,1,S,S]`` in [0,1]. Work runs on ``device``;
results come back on the input frames' device.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from .align import MAX_CROP_SIZE, AlignedFaces, align_faces
from .checks import check_images, check_integer
from .detection.base import FaceDetector, detector_label
from .detection.select import FaceSelection, select_faces
from .errors import InputError, NoFaceError
from .faces import DetectedFaces
from .identity import Identity, check_identity, extract_identity, reference_distance
from .io.frames import frame_ranges
from .masks import OFFICIAL_REGIONS, MaskSpec, build_crop_masks, official_parsing_crop_masks
from .paste import PASTE_MODES, paste_faces
from .progress import ProgressFn, StageTimer, frame_progress, increasing

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def run_generator(generator: torch.nn.Module, crops: torch.Tensor, latents: torch.Tensor, *,
                  batch_size: int, precision: str = "fp32",
                  after_batch: Callable[[int], None] | None = None) -> torch.Tensor:
    """G over faces in batches: crops [F,3,S,S] RGB [0,1], latents [F,512] unit-norm -> [F,3,S,S] float32 [0,1].

    after_batch(faces_done) is called after each generator call (progress, cancellation)."""
    out = torch.empty(crops.shape, dtype=torch.float32, device=crops.device)  # NCHW whatever the input format
    dtype = PRECISIONS[precision]
    ctx = torch.autocast(device_type=crops.device.type, dtype=dtype) if dtype is not None else nullcontext()
    for i in range(0, crops.shape[0], batch_size):
        with ctx:
            y = generator(crops[i:i + batch_size], latents[i:i + batch_size])
        out[i:i + batch_size] = y.float()
        if after_batch is not None:
            after_batch(min(i + batch_size, crops.shape[0]))
    return out


# ------------------------------------------------------------------------------------------ records

@dataclass
class SwapOptions:
    """The validated settings of one ``swap`` call (see ``FaceSwapper.swap``)."""

    selection: FaceSelection
    mask: MaskSpec | None = None
    paste_mode: str = "default"
    color_match: bool = False
    reference: Identity | None = None
    if_no_face: str = "error"
    face_batch_size: int = 1
    smoothing: Callable[[DetectedFaces], DetectedFaces] | None = None

    @property
    def official_parsing(self) -> bool:
        """SimSwap's own parsing paste: official mode with a parsing mask."""
        return self.paste_mode == "official" and self.mask is not None and self.mask.kind == "parsing"


@dataclass
class ChosenFaces:
    """The faces of a batch chosen for swapping (stage ``choose``, then ``track``).

    faces: the selected faces (frame order; ``track_id`` set when tracked). detected: every face found.
    aligned: the selected faces' aligned crops when the choice already needed them (reference matching), else None.
    """

    faces: DetectedFaces
    detected: DetectedFaces
    aligned: AlignedFaces | None = None

    def per_frame(self) -> torch.Tensor:
        """[B] selected faces per frame of the batch."""
        return torch.bincount(self.faces.frame_index, minlength=self.faces.num_frames)


@dataclass
class SwapResult:
    """Output of FaceSwapper.swap (everything on the input frames' device).

    images:  [N,3,H,W] float32 RGB [0,1], the composited frames.
    mask:    [N,1,H,W] float32 [0,1], where swapped faces were pasted (zero for frames left unchanged).
    faces:   the swapped faces (DetectedFaces; frame_index refers to the input frames).
    aligned: AlignedFaces of the swapped faces: target crops [F,3,S,S] and frame->crop matrices [F,2,3].
    swapped: [F,3,S,S] float32 RGB [0,1] generator outputs, in the same order as `faces`.
    detected: every face the detector found (before selection).
    frames_without_face: indices of frames where no face was swapped.
    """

    images: torch.Tensor
    mask: torch.Tensor
    faces: DetectedFaces
    aligned: AlignedFaces
    swapped: torch.Tensor
    detected: DetectedFaces | None = None
    frames_without_face: list[int] = field(default_factory=list)

    @staticmethod
    def concat(parts: Sequence[SwapResult]) -> SwapResult:
        """Results of consecutive frame batches joined (frame indices offset by the earlier batches)."""
        if not parts:
            raise ValueError("SwapResult.concat: expected at least one result")
        offsets, n = [], 0
        for p in parts:
            offsets.append(n)
            n += p.images.shape[0]
        detected = [p.detected for p in parts]
        return SwapResult(
            images=torch.cat([p.images for p in parts]), mask=torch.cat([p.mask for p in parts]),
            faces=DetectedFaces.concat([p.faces for p in parts]),
            aligned=AlignedFaces.concat([p.aligned for p in parts]),
            swapped=torch.cat([p.swapped for p in parts]),
            detected=DetectedFaces.concat([d for d in detected if d is not None])
            if all(d is not None for d in detected) else None,
            frames_without_face=[o + i for o, p in zip(offsets, parts) for i in p.frames_without_face])


# ------------------------------------------------------------------------------------------ the pipeline

class FaceSwapper:
    """SimSwap on batches of frames with one identity.

    generator: SimSwap G (`load_generator`), arcface: SimSwap ArcFace (`load_arcface`), detector: a FaceDetector
    (`load_detector`), parser: BiSeNet face parser (needed only for parsing masks).
    device: where everything runs (default: the generator's device). crop_size: 224 or 512 (default: the
    generator's `crop_size` attribute, else 224). align_mode: None -> "none" for 224, "ffhq" for 512.
    precision: "fp32", "bf16" or "fp16" (autocast for the generator only; fp32 everywhere else).
    channels_last: feed the generator channels_last crops (the convolutions then run channels_last; the module
    itself is not changed); None = on a GPU, or with bf16/fp16 (bf16 on this AVX-512 CPU: 1.15x), off for fp32
    on the CPU (no gain there; outputs differ from NCHW by < 1e-5).
    """

    def __init__(self, generator: torch.nn.Module, arcface: torch.nn.Module, detector: FaceDetector, *,
                 parser: torch.nn.Module | None = None,
                 device: torch.device | str | None = None, crop_size: int | None = None,
                 align_mode: str | None = None, precision: str = "fp32", channels_last: bool | None = None):
        if precision not in PRECISIONS:
            raise InputError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
        if device is None:
            p = next(generator.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        if channels_last is None:
            channels_last = self.device.type != "cpu" or precision != "fp32"
        self.channels_last = bool(channels_last)
        self.arcface = arcface.to(self.device).eval()
        self.parser = parser.to(self.device).eval() if isinstance(parser, torch.nn.Module) else parser
        self.detector = detector
        self.crop_size = check_integer(crop_size or getattr(generator, "crop_size", None) or 224, "crop_size",
                                       low=16, high=MAX_CROP_SIZE)
        self.align_mode = align_mode
        self.precision = precision
        self.timer = StageTimer(False, self.device)

    # -- stages ---------------------------------------------------------------------------------------------
    def detect(self, frames: torch.Tensor) -> DetectedFaces:
        """All faces of frames [B,3,H,W] (one detector call for the batch), on self.device."""
        with self.timer.stage("detect"):
            return self.detector.detect(frames).to(self.device)

    def choose(self, frames: torch.Tensor, detected: DetectedFaces, opts: SwapOptions) -> ChosenFaces:
        """The faces to swap; for a reference selection, every face is aligned and compared with the reference."""
        if not len(detected):
            return ChosenFaces(detected, detected)
        aligned_all = dist = None
        if opts.selection.how == "reference":
            assert opts.reference is not None, "select='reference' needs reference= (checked by _options)"
            aligned_all = self.align(frames, detected)
            with self.timer.stage("identity"):
                dist = reference_distance(self.arcface, aligned_all.crops, opts.reference)
        keep = select_faces(detected, opts.selection, reference_distance=dist)
        keep = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
        order = keep[torch.argsort(detected.frame_index[keep], stable=True)]     # frame order, like select()
        return ChosenFaces(detected.select(keep), detected, None if aligned_all is None else aligned_all.select(order))

    def track(self, chosen: ChosenFaces, opts: SwapOptions) -> ChosenFaces:
        """Steadied landmarks of tracked faces (``opts.smoothing``); the crops must then follow the new points."""
        if opts.smoothing is None or not getattr(opts.smoothing, "enabled", True):
            return chosen
        return ChosenFaces(opts.smoothing(chosen.faces), chosen.detected, None)

    def align(self, frames: torch.Tensor, faces: DetectedFaces) -> AlignedFaces:
        """Aligned crops [F,3,S,S] of ``faces`` at this swapper's crop size and template."""
        if not len(faces):
            return AlignedFaces.empty(faces.frame_sizes, self.crop_size, self.align_mode, frames.device)
        with self.timer.stage("align"):
            return align_faces(frames, faces, self.crop_size, self.align_mode)

    def generate(self, aligned: AlignedFaces, latent: torch.Tensor, opts: SwapOptions,
                 after_batch: Callable[[int], None] | None = None) -> torch.Tensor:
        """Swapped crops [F,3,S,S] RGB [0,1]: the generator on the aligned crops with the identity latent [1,512]."""
        with self.timer.stage("generate"):
            crops = aligned.crops.contiguous(memory_format=torch.channels_last) if self.channels_last \
                else aligned.crops
            return run_generator(self.generator, crops, latent.expand(len(aligned), -1),
                                 batch_size=opts.face_batch_size, precision=self.precision, after_batch=after_batch)

    def mask(self, aligned: AlignedFaces, opts: SwapOptions) -> torch.Tensor | None:
        """Crop masks [F,1,S,S] of the spec (with the official parsing paste: SimSwap's own parsing mask)."""
        if opts.mask is None or not len(aligned):
            return None
        with self.timer.stage("mask"):
            if opts.official_parsing:
                return official_parsing_crop_masks(aligned, self.parser)
            return build_crop_masks(aligned, opts.mask, self.parser)

    def paste(self, frames: torch.Tensor, swapped: torch.Tensor, aligned: AlignedFaces,
              crop_masks: torch.Tensor | None, opts: SwapOptions) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames [B,3,H,W], frame mask [B,1,H,W]) with the swapped crops pasted back."""
        if not len(aligned):
            return frames, frames.new_zeros(frames.shape[0], 1, *frames.shape[-2:])
        with self.timer.stage("paste"):
            return paste_faces(frames, swapped, aligned, crop_masks, color_match=opts.color_match,
                               mode=opts.paste_mode)

    # -- identity -------------------------------------------------------------------------------------------
    def extract_identity(self, images: torch.Tensor | list[torch.Tensor], *, select: str | FaceSelection = "largest",
                         combine: str = "mean", if_no_face: str = "error") -> Identity:
        """``identity.extract_identity`` with this swapper's encoder, detector, crop size, template and device."""
        return extract_identity(self.arcface, self.detector, images, crop_size=self.crop_size,
                                align_mode=self.align_mode, select=select, combine=combine, if_no_face=if_no_face,
                                device=self.device, timer=self.timer)

    # -- swap -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def swap(self, frames: torch.Tensor, identity: Identity, *, faces: DetectedFaces | None = None,
             select: str | FaceSelection = "all",
             mask: MaskSpec | None = None, paste_mode: str = "default", color_match: bool = False,
             reference: Identity | None = None, if_no_face: str = "error", batch_size: int = 16,
             face_batch_size: int | None = None, smoothing: Callable[[DetectedFaces], DetectedFaces] | None = None,
             progress: ProgressFn | None = None) -> SwapResult:
        """Swap `identity` into the selected faces of frames [N,3,H,W] RGB [0,1].

        faces: faces already detected on these frames (e.g. by a preview step; DetectedFaces of all N frames), so
        they are not detected again. select: "all" | "largest" | "best" | "index:N[,M]" | "reference" (or a
        FaceSelection); "reference" swaps in each frame the face closest to `reference` (raw-embedding MSE below
        the selection's threshold, 0.03 by default like the official --id_thres). mask: a masks.MaskSpec (None =
        paste's default box mask). if_no_face: "error" raises NoFaceError when a frame has no selected face;
        "keep" returns it unchanged (mask zero). batch_size: frames per detection batch. face_batch_size: faces
        per generator call; None = ``batch_size`` on a GPU, 1 on the CPU (where a larger generator batch is slower
        per face; see bench/README.md). smoothing: a tracking.LandmarkSmoother for video frames (consecutive
        frames, in order; it keeps its tracks across calls). progress(done, total) is called frame by frame.
        """
        frames = check_images(frames, "swap frames", allow_single=True)
        opts = self._options(identity, select, mask, paste_mode, color_match, reference, if_no_face, batch_size,
                             face_batch_size, smoothing)
        n = frames.shape[0]
        if faces is not None:
            if not isinstance(faces, DetectedFaces):
                raise InputError(f"faces: expected the DetectedFaces of these {n} frame(s), got {type(faces).__name__}")
            faces.check_matches(frames)
        if progress is not None and not callable(progress):
            raise InputError(f"progress: expected a callable progress(done, total) or None, got "
                             f"{type(progress).__name__}")
        latent = identity.latent.to(self.device, torch.float32).reshape(1, -1)
        progress = increasing(progress)
        parts = []
        for start, stop in frame_ranges(n, batch_size):
            chunk = frames[start:stop].to(self.device, torch.float32)
            detected = self.detect(chunk) if faces is None else faces.frames(start, stop).to(self.device)
            chosen = self.track(self.choose(chunk, detected, opts), opts)
            per_frame = chosen.per_frame()
            without = self._frames_without_face(chosen, per_frame, start, n, opts)
            aligned = chosen.aligned or self.align(chunk, chosen.faces)
            swapped = self.generate(aligned, latent, opts, frame_progress(progress, start, n, per_frame))
            out, frame_mask = self.paste(chunk, swapped, aligned, self.mask(aligned, opts), opts)
            out_device = frames.device
            parts.append(SwapResult(out.to(out_device), frame_mask.to(out_device), chosen.faces.to(out_device),
                                    aligned.to(out_device), swapped.to(out_device), detected.to(out_device),
                                    without))
            if progress is not None:
                progress(stop, n)
        return SwapResult.concat(parts)

    def _options(self, identity, select, mask, paste_mode, color_match, reference, if_no_face, batch_size,
                 face_batch_size, smoothing) -> SwapOptions:
        """Every swap setting checked once, with a clear message naming the argument."""
        if if_no_face not in ("error", "keep"):
            raise InputError(f"if_no_face: expected 'error' or 'keep', got {if_no_face!r}")
        if paste_mode not in PASTE_MODES:
            raise InputError(f"paste_mode: expected 'default' or 'official', got {paste_mode!r}")
        if isinstance(mask, str):
            mask = MaskSpec.parse(mask)
        if mask is not None and not isinstance(mask, MaskSpec):
            raise InputError(f"mask: expected a masks.MaskSpec, a spec string or None, got {type(mask).__name__}")
        check_integer(batch_size, "batch_size", low=1)
        if face_batch_size is None:
            face_batch_size = 1 if self.device.type == "cpu" else batch_size
        else:
            check_integer(face_batch_size, "face_batch_size", low=1)
        if isinstance(color_match, str) or color_match not in (True, False):
            raise InputError(f"color_match: expected True or False, got {type(color_match).__name__} {color_match!r}")
        if smoothing is not None and not callable(smoothing):
            raise InputError(f"smoothing: expected a tracking.LandmarkSmoother or None, got {type(smoothing).__name__}")
        check_identity(identity, "identity")
        if reference is not None:
            check_identity(reference, "reference")
        opts = SwapOptions(FaceSelection.parse(select), mask, paste_mode, bool(color_match), reference, if_no_face,
                           face_batch_size, smoothing)
        if opts.selection.how == "reference" and reference is None:
            raise InputError("select='reference' needs reference=Identity of the person to replace "
                             "(FaceSwapper.extract_identity of a photo of them)")
        if mask is not None and mask.needs_parser and self.parser is None:
            raise InputError(f"mask kind {mask.kind!r} needs a face parser: FaceSwapper(..., parser=load_parser(path))")
        if mask is not None and opts.official_parsing and set(mask.regions) != set(OFFICIAL_REGIONS):
            warnings.warn(f"paste_mode='official' uses SimSwap's own parsing label set; the mask regions "
                          f"{','.join(mask.regions)} are ignored (use paste_mode='default' to choose regions)",
                          stacklevel=3)
        return opts

    def _frames_without_face(self, chosen: ChosenFaces, per_frame: torch.Tensor, start: int, total: int,
                             opts: SwapOptions) -> list[int]:
        """Frames of the batch (indices within it) without a selected face; NoFaceError when that is an error."""
        empty = (per_frame == 0).nonzero().flatten().tolist()
        if empty and opts.if_no_face == "error":
            found = torch.bincount(chosen.detected.frame_index, minlength=per_frame.shape[0])
            detail = "no face detected" if all(int(found[i]) == 0 for i in empty) else \
                f"faces detected but none matched the selection '{opts.selection}'"
            raise NoFaceError(f"{detail} in frame(s) {_short_list([start + i for i in empty])} of {total} (detector "
                              f"{detector_label(self.detector)}); pass if_no_face='keep' to return such frames "
                              "unchanged")
        return empty


def _short_list(items: list[int], limit: int = 10) -> str:
    s = ", ".join(map(str, items[:limit]))
    return s + (f", ... ({len(items)} in all)" if len(items) > limit else "")
