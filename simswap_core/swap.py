"""The batched face-swap pipeline. Stages, in order, each a method of ``FaceSwapper`` returning a typed record:

    detect  frames [B,3,H,W]                       -> DetectedFaces (every face; skipped when faces are given)
    choose  + gender filter, selection             -> ChosenFaces (selected faces, identity per face, why a frame
                                                      has none; reference crops kept)
    track   + tracking.LandmarkSmoother (video)    -> ChosenFaces (steadied points, track_id)
    align   + crop size / template                 -> AlignedFaces (crops [F,3,S,S], frame->crop matrices)
    generate + identity latents [F,512]            -> swapped crops [F,3,S,S] (+ optional face restorer, blended)
    mask    + masks.MaskSpec (+ SAM on the frames)  -> crop masks [F,1,S,S] (None = paste's own box)
    paste   + paste mode, colour match, protect    -> frames [B,3,H,W], frame mask [B,1,H,W]

``FaceSwapper.swap`` is a short loop of these stages over batches of frames (``io.frames.frame_ranges``). Every
stage works on all faces of a batch at once (faces are flattened over frames, see ``DetectedFaces``); the only
Python loops run over frame batches and generator batches, never over faces. Images are ``[N,3,H,W]`` float32
RGB in [0,1]; crops ``[F,3,S,S]``; masks ``[N,1,H,W]`` / ``[F,1,S,S]`` in [0,1]. Work runs on ``device``;
results come back on the input frames' device.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F

from .accel import PRECISIONS as PRECISIONS  # re-exported: the generator precisions (see accel.py)
from .accel import GeneratorAccelerator, autocast, check_precision, face_batch_from_memory
from .align import MAX_CROP_SIZE, AlignedFaces, align_faces, default_mode
from .checks import check_images, check_integer, check_number
from .detection.base import FaceDetector, detector_label
from .detection.select import FaceSelection, assign_identities, select_faces
from .errors import InputError, NoFaceError
from .faces import DetectedFaces
from .identity import (
    Identity,
    check_identity,
    extract_identity,
    identity_latent,
    raw_embeddings,
    reference_distance,
)
from .io.frames import frame_ranges
from .mapping import IdentityMap, assign_faces, check_identity_map, reference_distances
from .masks import MASKERS, OFFICIAL_REGIONS, MaskSpec, build_crop_masks, official_parsing_crop_masks
from .official import align_official
from .paste import PASTE_MODES, check_protect, paste_faces
from .pixel_boost import check_pixel_boost, split_phases, stitch_phases
from .progress import ProgressFn, StageTimer, StepFn, frame_progress, increasing

if TYPE_CHECKING:
    from .temporal import TemporalState

GENDERS = ("any", "female", "male")  # GenderAgeEstimator codes: 0 = female, 1 = male


class Restorer(Protocol):
    """A face restorer (``simswap_core.restore.FaceRestorer`` or any callable like it): crops [F,3,S,S] float RGB
    [0,1] -> restored crops of the same shape and device, float RGB [0,1]."""

    def __call__(self, crops: torch.Tensor) -> torch.Tensor: ...


class GenderModel(Protocol):
    """A gender estimator (``simswap_core.detection.genderage.GenderAgeEstimator`` or anything like it):
    predict(frames [B,3,H,W] RGB [0,1], faces) -> (gender [F] long, 0 = female / 1 = male; age [F] float)."""

    def predict(self, frames: torch.Tensor, faces: DetectedFaces) -> tuple[torch.Tensor, torch.Tensor]: ...


def restore_blend(swapped: torch.Tensor, restorer: Restorer, visibility: float) -> torch.Tensor:
    """Generator outputs [F,3,S,S] RGB [0,1] through ``restorer``, blended: visibility 0 = unchanged, 1 = fully
    restored (lerp). The restorer's output is checked (same shape, finite) and clamped to [0,1]."""
    if visibility <= 0 or swapped.shape[0] == 0:
        return swapped
    restored = restorer(swapped)
    if not isinstance(restored, torch.Tensor) or tuple(restored.shape) != tuple(swapped.shape):
        shape = tuple(restored.shape) if isinstance(restored, torch.Tensor) else type(restored).__name__
        raise InputError(f"restorer: expected restored crops of shape {tuple(swapped.shape)} (same size as its "
                         f"input), got {shape}")
    restored = restored.to(swapped.device, torch.float32)
    if not torch.isfinite(restored).all():
        raise InputError("restorer: the restored faces contain NaN or infinite values; check the restoration model")
    restored = restored.clamp(0.0, 1.0)
    return restored if visibility >= 1 else torch.lerp(swapped, restored, float(visibility))


def run_generator(generator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], crops: torch.Tensor,
                  latents: torch.Tensor, *, batch_size: int, precision: str = "fp32",
                  after_batch: Callable[[int], None] | None = None,
                  post: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """G over faces in batches: crops [F,3,S,S] RGB [0,1], latents [F,512] unit-norm -> [F,3,S,S] float32 [0,1].

    generator: the module, or an ``accel.GeneratorAccelerator`` (compiled / CUDA graphs). precision: "fp32",
    "bf16" or "fp16" autocast around each call (``accel.autocast``). post(swapped batch) -> batch is applied to
    each generator output (e.g. face restoration), so a cancel is still seen after every call.
    after_batch(faces_done) is called after each generator call (progress, cancellation). No host sync here."""
    out = torch.empty(crops.shape, dtype=torch.float32, device=crops.device)  # NCHW whatever the input format
    ctx = autocast(crops.device, precision)
    for i in range(0, crops.shape[0], batch_size):
        with ctx:
            y = generator(crops[i:i + batch_size], latents[i:i + batch_size])
        y = y.float()  # a graph replay's output is copied into `out` before the next call
        out[i:i + batch_size] = y if post is None else post(y.contiguous())
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
    identities: list[Identity] = field(default_factory=list)
    identity_strength: float = 1.0
    gender: str = "any"
    gender_model: GenderModel | None = None
    restorer: Restorer | None = None
    restore_visibility: float = 1.0
    identity_map: IdentityMap | None = None
    temporal: TemporalState | None = None
    track_slots: dict[int, int] | None = None  # the identity map's per-stream memory (temporal's, or this call's)
    pixel_boost: int = 1  # faces aligned at pixel_boost x the generator's size, swapped phase by phase

    @property
    def official(self) -> bool:
        """SimSwap's own whole-image paste (paste_mode "official"): its own crops and blend."""
        return self.paste_mode == "official"

    @property
    def official_parsing(self) -> bool:
        """SimSwap's own parsing paste: official mode with a parsing mask."""
        return self.official and self.mask is not None and self.mask.kind == "parsing"


@dataclass
class ChosenFaces:
    """The faces of a batch chosen for swapping (stage ``choose``, then ``track``).

    faces: the selected faces (frame order; ``track_id`` set when tracked). detected: every face found.
    aligned: the selected faces' aligned crops when the choice already needed them (reference matching), else None.
    slots: [F] int64, which identity of the swap's list each selected face gets (None = identity 0 for all).
    reasons: {frame of the batch: why no face was selected there} for the frames left without a face.
    counts: selected faces per frame of the batch as Python ints (read once, with one host sync, by ``choose``;
    None = count them from ``faces`` when asked).
    """

    faces: DetectedFaces
    detected: DetectedFaces
    aligned: AlignedFaces | None = None
    slots: torch.Tensor | None = None
    reasons: dict[int, str] = field(default_factory=dict)
    counts: list[int] | None = None

    def per_frame(self) -> list[int]:
        """Selected faces per frame of the batch (Python ints; one host sync the first time, then kept)."""
        if self.counts is None:
            self.counts = self.faces.counts()
        return self.counts


class FramesWithoutFaceError(NoFaceError):
    """NoFaceError of ``swap(if_no_face="error")``: frames (indices in the swap's input) where nothing would be
    swapped, reasons (one per frame, see ``SwapResult.no_face_reasons``), total (frames of the call), detector
    (its label), so a caller (e.g. a ComfyUI node) can word its own message."""

    def __init__(self, message: str, frames: list[int], reasons: list[str], total: int, detector: str):
        super().__init__(message)
        self.frames, self.reasons, self.total, self.detector = frames, reasons, total, detector


def describe_skipped(frames: Sequence[int], reasons: Sequence[str], limit: int = 10) -> str:
    """'frame 0: no face detected' / 'frames 1, 4, 7, ... (120 in all): no face detected; frame 9: ...': the frames
    where nothing was swapped grouped by reason (frame numbers from 0; long lists shortened; at most 4 reasons)."""
    groups: dict[str, list[int]] = {}
    for f, r in zip(frames, reasons):
        groups.setdefault(r, []).append(int(f))
    parts = [f"frame{'s' if len(fs) > 1 else ''} {_short_list(fs, limit)}: {r}" for r, fs in list(groups.items())[:4]]
    if len(groups) > 4:
        parts.append(f"... ({len(groups) - 4} more reasons)")
    return "; ".join(parts)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def swap_summary(frames: int, faces: int, reasons_by_frame: dict[int, str]) -> str:
    """'swapped 6 faces in 1 frame' / 'swapped 3 faces in 2 of 3 frames; nothing swapped in frame 1: no face
    detected': ``frames`` in the call, ``faces`` swapped, {frame: why nothing was swapped there}."""
    hit = frames - len(reasons_by_frame)
    text = f"swapped {_plural(faces, 'face')} in " + (_plural(frames, "frame") if hit == frames else
                                                       f"{hit} of {_plural(frames, 'frame')}")
    if reasons_by_frame:
        text += "; nothing swapped in " + describe_skipped(list(reasons_by_frame), list(reasons_by_frame.values()))
    return text


@dataclass
class SwapResult:
    """Output of FaceSwapper.swap (everything on the input frames' device).

    images:  [N,3,H,W] float32 RGB [0,1], the composited frames.
    mask:    [N,1,H,W] float32 [0,1], where swapped faces were pasted (zero for frames left unchanged and where the
             ``protect`` mask of the call is 1).
    faces:   the swapped faces (DetectedFaces; frame_index refers to the input frames).
    aligned: AlignedFaces of the swapped faces: target crops [F,3,S,S] and frame->crop matrices [F,2,3].
    swapped: [F,3,S,S] float32 RGB [0,1] generator outputs, in the same order as `faces`.
    detected: every face the detector found (before selection).
    frames_without_face: indices of frames where no face was swapped.
    no_face_reasons: why, one short text per entry of ``frames_without_face`` (e.g. "no face detected",
        "face_index 9 not found: 6 faces, numbered 0-5 (left-right)", "no face matched the reference (closest
        distance 0.412, threshold 0.03)", "2 faces detected, none female (gender filter)").
    identity_slots: [F] int64, which identity of the list passed to ``swap`` each swapped face got.
    """

    images: torch.Tensor
    mask: torch.Tensor
    faces: DetectedFaces
    aligned: AlignedFaces
    swapped: torch.Tensor
    detected: DetectedFaces | None = None
    frames_without_face: list[int] = field(default_factory=list)
    no_face_reasons: list[str] = field(default_factory=list)
    identity_slots: torch.Tensor | None = None

    def reasons_by_frame(self) -> dict[int, str]:
        """{frame index: why nothing was swapped there} (frames where a face was swapped are absent)."""
        reasons = self.no_face_reasons or ["no face selected"] * len(self.frames_without_face)
        return dict(zip(self.frames_without_face, reasons))

    def summary(self) -> str:
        """One line for a person: 'swapped 6 faces in 1 frame' or 'swapped 3 faces in 2 of 3 frames; nothing
        swapped in frame 1: no face detected' (long frame lists shortened)."""
        return swap_summary(int(self.images.shape[0]), len(self.faces), self.reasons_by_frame())

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
            aligned=type(parts[0].aligned).concat([p.aligned for p in parts]),   # official: keeps float64 matrices
            swapped=torch.cat([p.swapped for p in parts]),
            detected=DetectedFaces.concat([d for d in detected if d is not None])
            if all(d is not None for d in detected) else None,
            frames_without_face=[o + i for o, p in zip(offsets, parts) for i in p.frames_without_face],
            no_face_reasons=[r for p in parts for r in (p.no_face_reasons or
                                                       ["no face selected"] * len(p.frames_without_face))],
            identity_slots=torch.cat([p.identity_slots if p.identity_slots is not None else
                                      torch.zeros(len(p.faces), dtype=torch.int64, device=p.images.device)
                                      for p in parts]))


# ------------------------------------------------------------------------------------------ the pipeline

class FaceSwapper:
    """SimSwap on batches of frames with one identity (or several, mapped onto several target faces).

    generator: SimSwap G (`load_generator`), arcface: SimSwap ArcFace (`load_arcface`; may be None when no
    reference selection, identity strength != 1 or identity extraction is asked of this swapper), detector: a
    FaceDetector (`load_detector`), parser: BiSeNet face parser (needed only for parsing masks), sam: a Segment
    Anything model (`load_sam`; needed only for mask kinds whose masker ``needs_sam``: sam, sam_parsing).
    device: where everything runs (default: the generator's device). crop_size: 224 or 512 (default: the
    generator's `crop_size` attribute, else 224). align_mode: None -> "none" for 224, "ffhq" for 512.
    precision: "fp32", "bf16" or "fp16" (autocast for the generator only; fp32 everywhere else).
    channels_last: feed the generator channels_last crops (the convolutions then run channels_last; the module
    itself is not changed); None = on a GPU, or with bf16/fp16 (bf16 on this AVX-512 CPU: 1.15x), off for fp32
    on the CPU (no gain there; outputs differ from NCHW by < 1e-5).
    compile: ``torch.compile`` the generator (a failed compilation falls back to eager with a warning).
    cuda_graphs: replay the generator from CUDA graphs captured per batch bucket (CUDA only; elsewhere not used,
    and ``acceleration()`` says so). See accel.py; bench/bench_precision.py reports the accuracy drift of each
    mode. face_batch_size=None in ``swap`` on CUDA: chosen from free memory and a measured per-face footprint.
    """

    def __init__(self, generator: torch.nn.Module, arcface: torch.nn.Module | None, detector: FaceDetector, *,
                 parser: torch.nn.Module | None = None, sam: torch.nn.Module | None = None,
                 device: torch.device | str | None = None, crop_size: int | None = None,
                 align_mode: str | None = None, precision: str = "fp32", channels_last: bool | None = None,
                 compile: bool = False, cuda_graphs: bool = False):
        check_precision(precision)
        for name, flag in (("compile", compile), ("cuda_graphs", cuda_graphs)):
            if not isinstance(flag, bool):
                raise InputError(f"{name}: expected True or False, got {flag!r}")
        if device is None:
            p = next(generator.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        if channels_last is None:
            channels_last = self.device.type != "cpu" or precision != "fp32"
        self.channels_last = bool(channels_last)
        self.arcface = arcface.to(self.device).eval() if arcface is not None else None
        self.parser = parser.to(self.device).eval() if isinstance(parser, torch.nn.Module) else parser
        self.sam = sam.to(self.device).eval() if isinstance(sam, torch.nn.Module) else sam
        self.detector = detector
        self.crop_size = check_integer(crop_size or getattr(generator, "crop_size", None) or 224, "crop_size",
                                       low=16, high=MAX_CROP_SIZE)
        self.align_mode = align_mode
        self.precision = precision
        self.timer = StageTimer(False, self.device)
        self.accelerator = GeneratorAccelerator(self.generator, self.device, compile=compile,
                                                cuda_graphs=cuda_graphs) if compile or cuda_graphs else None
        self._auto_face_batch: dict[int, tuple[int, str]] = {}  # crop size -> (faces per call, why)

    def acceleration(self) -> str:
        """How the generator runs, for a person: 'bf16 autocast, channels_last, torch.compile, CUDA graphs, face
        batch 32 (free memory ...)' and any fallback ('torch.compile failed (...); the generator runs uncompiled')."""
        parts = [f"{self.precision} autocast" if self.precision != "fp32" else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.accelerator is not None:
            parts.append(self.accelerator.describe())
        parts += [why for _b, why in self._auto_face_batch.values()]
        return ", ".join(parts)

    def auto_face_batch_size(self) -> int:
        """Faces per generator call when ``swap(face_batch_size=None)``: 1 on the CPU (a larger batch is slower
        per face there); on CUDA from free memory and the measured per-face footprint (once per crop size)."""
        if self.device.type != "cuda":
            return 1
        if self.crop_size not in self._auto_face_batch:
            self._auto_face_batch[self.crop_size] = face_batch_from_memory(
                self.generator, self.crop_size, self.device, self.precision, channels_last=self.channels_last)
        return self._auto_face_batch[self.crop_size][0]

    # -- stages ---------------------------------------------------------------------------------------------
    def detect(self, frames: torch.Tensor) -> DetectedFaces:
        """All faces of frames [B,3,H,W] (one detector call for the batch), on self.device."""
        with self.timer.stage("detect"):
            return self.detector.detect(frames).to(self.device)

    def filter_gender(self, frames: torch.Tensor, detected: DetectedFaces, opts: SwapOptions) -> DetectedFaces:
        """The faces of the wanted gender (all of them for gender "any"), before the selection numbers them."""
        if opts.gender == "any" or not len(detected):
            return detected
        assert opts.gender_model is not None, "gender != 'any' needs gender_model= (checked by _options)"
        with self.timer.stage("gender"):
            gender, _age = opts.gender_model.predict(frames, detected)
        gender = torch.as_tensor(gender).to(detected.device).reshape(-1)
        if gender.shape[0] != len(detected):
            raise InputError(f"gender_model: predict() returned {gender.shape[0]} genders for {len(detected)} faces")
        return detected.select(gender.long() == GENDERS.index(opts.gender) - 1)

    def choose(self, frames: torch.Tensor, detected: DetectedFaces, opts: SwapOptions) -> ChosenFaces:
        """The faces to swap (gender filter, then the selection); for a reference selection, every candidate is
        aligned and compared with the reference. Frames left without a face get a reason."""
        candidates = self.filter_gender(frames, detected, opts)
        if opts.identity_map is not None:
            return self._choose_mapped(frames, detected, candidates, opts)
        aligned_all = dist = None
        if opts.selection.how == "reference" and len(candidates):
            assert opts.reference is not None and self.arcface is not None, "checked by _options"
            aligned_all = self.align(frames, candidates, official=opts.official,
                                     boost=opts.pixel_boost)
            with self.timer.stage("identity"):
                dist = reference_distance(self.arcface, aligned_all.crops, opts.reference)
        keep = select_faces(candidates, opts.selection, reference_distance=dist)
        keep = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
        order = keep[torch.argsort(candidates.frame_index[keep], stable=True)]     # frame order, like select()
        chosen = candidates.select(keep)
        slots = assign_identities(candidates, opts.selection, order, max(len(opts.identities), 1))
        counts = chosen.counts()                   # the chunk's one count sync
        empty = [i for i, c in enumerate(counts) if c == 0]
        reasons = self._reasons(empty, detected, candidates, dist, opts) if empty else {}
        return ChosenFaces(chosen, detected, None if aligned_all is None else aligned_all.select(order), slots,
                           reasons, counts)

    def _choose_mapped(self, frames: torch.Tensor, detected: DetectedFaces, candidates: DetectedFaces,
                       opts: SwapOptions) -> ChosenFaces:
        """``choose`` with an identity map: the ArcFace distances of every candidate to all the map's references at
        once ([F,R], only when the map has reference entries), then ``mapping.assign_faces``."""
        imap = opts.identity_map
        assert imap is not None
        if imap.needs_tracks and len(candidates) and candidates.track_id is None:
            raise InputError(f"identity_map: {imap.describe()} maps faces by track id, but these faces are not "
                             "tracked; swap video frames through run(..., tracker=tracking.FaceTracker())")
        aligned_all = dist = None
        if imap.needs_arcface and len(candidates):
            assert self.arcface is not None, "checked by _options"
            aligned_all = self.align(frames, candidates, official=opts.official,
                                     boost=opts.pixel_boost)
            with self.timer.stage("identity"):
                dist = reference_distances(raw_embeddings(self.arcface, aligned_all.crops), imap)
        keep, slots = assign_faces(candidates, imap, distances=dist, track_slots=opts.track_slots)
        idx = keep.nonzero().flatten()          # candidates are in frame order, so idx is too
        chosen = candidates.select(idx)
        counts = chosen.counts()                   # the chunk's one count sync
        empty = [i for i, c in enumerate(counts) if c == 0]
        reasons = self._map_reasons(empty, detected, candidates, dist, opts) if empty else {}
        return ChosenFaces(chosen, detected, None if aligned_all is None else aligned_all.select(idx), slots[idx],
                           reasons, counts)

    def _map_reasons(self, frames: list[int], detected: DetectedFaces, candidates: DetectedFaces,
                     dist: torch.Tensor | None, opts: SwapOptions) -> dict[int, str]:
        """Why no face of these frames got an identity of the map (read only for such frames)."""
        imap = opts.identity_map
        assert imap is not None
        n = detected.num_frames
        found = torch.bincount(detected.frame_index, minlength=n).tolist()
        left = torch.bincount(candidates.frame_index, minlength=n).tolist()
        closest: list[float] = []
        if dist is not None and len(candidates) and dist.shape[1]:
            closest = torch.full((n,), float("inf"), device=dist.device).scatter_reduce(
                0, candidates.frame_index.to(dist.device), dist.min(1).values.float(), "amin").tolist()
        thresholds = sorted({e.threshold for e in imap.entries if e.by == "reference"})
        out = {}
        for i in frames:
            if found[i] == 0:
                out[i] = "no face detected"
            elif left[i] == 0:
                out[i] = f"{_plural(found[i], 'face')} detected, none {opts.gender} (gender filter)"
            else:
                parts = []
                if closest and closest[i] != float("inf"):
                    parts.append(f"closest reference distance {closest[i]:.3f}, threshold "
                                 f"{'/'.join(f'{t:g}' for t in thresholds)}")
                if any(e.by == "index" for e in imap.entries):
                    k = left[i]
                    parts.append(f"{_plural(k, 'face')} numbered {'0' if k == 1 else f'0-{k - 1}'} ({imap.order})")
                if imap.needs_tracks:
                    parts.append("no mapped track")
                out[i] = (f"no face matched the identity map: {_plural(left[i], 'face')} detected"
                          + (f" ({'; '.join(parts)})" if parts else ""))
        return out

    def _reasons(self, frames: list[int], detected: DetectedFaces, candidates: DetectedFaces,
                 dist: torch.Tensor | None, opts: SwapOptions) -> dict[int, str]:
        """{frame of the batch: why no face was selected there} for the given empty frames (a few numbers per
        frame, read once: this runs only for frames where nothing is swapped)."""
        n = detected.num_frames
        found = torch.bincount(detected.frame_index, minlength=n).tolist()
        left = torch.bincount(candidates.frame_index, minlength=n).tolist()
        sel = opts.selection
        closest: list[float] = []
        if dist is not None and len(candidates):
            closest = torch.full((n,), float("inf"), device=dist.device).scatter_reduce(
                0, candidates.frame_index.to(dist.device), dist.float(), "amin").tolist()
        out = {}
        for i in frames:
            if found[i] == 0:
                out[i] = "no face detected"
            elif left[i] == 0:
                out[i] = f"{_plural(found[i], 'face')} detected, none {opts.gender} (gender filter)"
            elif sel.how == "index":
                k = left[i]
                numbers = "0" if k == 1 else f"0-{k - 1}"
                out[i] = (f"face_index {','.join(map(str, sel.indices))} not found: the frame has "
                          f"{_plural(k, 'face')}{' of that gender' if opts.gender != 'any' else ''}, numbered "
                          f"{numbers} ({sel.order})")
            elif sel.how == "reference":
                d = f"closest distance {closest[i]:.3f}, " if closest and closest[i] != float("inf") else ""
                out[i] = f"no face matched the reference ({d}threshold {sel.threshold:g})"
            else:
                out[i] = f"faces detected but none matched the selection '{sel}'"
        return out

    def track(self, chosen: ChosenFaces, opts: SwapOptions) -> ChosenFaces:
        """Steadied landmarks of tracked faces (``opts.smoothing``); the crops must then follow the new points."""
        if opts.smoothing is None or not getattr(opts.smoothing, "enabled", True):
            return chosen
        return ChosenFaces(opts.smoothing(chosen.faces), chosen.detected, None, chosen.slots, chosen.reasons,
                           chosen.counts)

    def align(self, frames: torch.Tensor, faces: DetectedFaces, official: bool = False, boost: int = 1
              ) -> AlignedFaces:
        """Aligned crops [F,3,S,S] of ``faces`` at this swapper's crop size and template; ``official``: SimSwap's
        own crops (float64 matrices, OpenCV 4.x warp of the 8-bit frames, uint8 crops; ``official.align_official``).
        boost: pixel boost k, crops of k*S pixels with the template of the generator's own size S."""
        if official:
            with self.timer.stage("align"):
                return align_official(frames, faces, self.crop_size, self.align_mode)
        size = self.crop_size * boost
        mode = self.align_mode if self.align_mode is not None or boost == 1 else default_mode(self.crop_size)
        if not len(faces):
            return AlignedFaces.empty(faces.frame_sizes, size, mode, frames.device)
        with self.timer.stage("align"):
            return align_faces(frames, faces, size, mode)

    def latents(self, aligned: AlignedFaces, latent: torch.Tensor, slots: torch.Tensor | None,
                opts: SwapOptions) -> torch.Tensor:
        """[F,512] unit-norm latents fed to the generator: latent [K,512] (one row per identity) indexed by slots
        [F] (None = row 0), then with identity_strength s != 1: normalize(lerp(target's own latent, source, s))
        (s = 0: the target's own identity; s = 1: the source exactly, without computing the target latent)."""
        f = len(aligned)
        out = latent[slots.to(latent.device)] if slots is not None and latent.shape[0] > 1 \
            else latent[:1].expand(f, -1)
        if opts.identity_strength == 1.0 or f == 0:
            return out
        assert self.arcface is not None, "checked by _extra_options"
        with self.timer.stage("identity"):
            own = identity_latent(self.arcface, aligned.crops).to(out.device, torch.float32)
        return F.normalize(torch.lerp(own, out, opts.identity_strength), p=2, dim=1)

    def generate(self, aligned: AlignedFaces, latent: torch.Tensor, opts: SwapOptions,
                 after_batch: Callable[[int], None] | None = None) -> torch.Tensor:
        """Swapped crops [F,3,S,S] RGB [0,1]: the generator on the aligned crops with the identity latents [F,512]
        (or [1,512], the same for every face); with a restorer, each generator batch is restored and blended
        (``restore_visibility``) before anything else sees it. With pixel boost k the crops are [F,3,kS,kS]: each
        is split into k*k sub-pixel phases of S x S (``pixel_boost``), swapped, and woven back (then restored)."""
        k = opts.pixel_boost
        with self.timer.stage("generate"):
            crops = aligned.crops if k == 1 else split_phases(aligned.crops, k)
            latents = latent.expand(len(aligned), -1)
            if k > 1:
                latents = latents.repeat_interleave(k * k, dim=0)
            crops = crops.contiguous(memory_format=torch.channels_last) if self.channels_last else crops
            post = None
            if opts.restorer is not None and opts.restore_visibility > 0:
                restorer, visibility = opts.restorer, opts.restore_visibility

                def post(y: torch.Tensor) -> torch.Tensor:
                    return restore_blend(y, restorer, visibility)
            if self.accelerator is not None:
                self.accelerator.set_max_batch(opts.face_batch_size)
            phase_progress = after_batch
            if k > 1 and after_batch is not None:
                def phase_progress(done: int) -> None:   # sub-crops done -> faces done (a cancel point per call)
                    after_batch(done // (k * k))
            out = run_generator(self.accelerator or self.generator, crops, latents, batch_size=opts.face_batch_size,
                                precision=self.precision, after_batch=phase_progress,
                                post=post if k == 1 else None)
            if k == 1:
                return out
            out = stitch_phases(out, k)
            return out if post is None else post(out.contiguous())

    def mask(self, aligned: AlignedFaces, opts: SwapOptions, frames: torch.Tensor | None = None
             ) -> torch.Tensor | None:
        """Crop masks [F,1,S,S] of the spec (with the official parsing paste: SimSwap's own parsing mask).
        frames: the batch [B,3,H,W] the faces were aligned from (SAM kinds embed them, once per frame)."""
        if opts.mask is None or not len(aligned):
            return None
        with self.timer.stage("mask"):
            if opts.official_parsing:
                return official_parsing_crop_masks(aligned, self.parser)
            return build_crop_masks(aligned, opts.mask, self.parser, frames=frames, sam=self.sam)

    def smooth_masks(self, faces: DetectedFaces, crop_masks: torch.Tensor | None,
                     opts: SwapOptions) -> torch.Tensor | None:
        """Crop masks [F,1,S,S] steadied over time per track (``opts.temporal``; only for tracked faces)."""
        if opts.temporal is None or faces.track_id is None or not len(faces):
            return crop_masks
        with self.timer.stage("mask"):
            return opts.temporal.smooth_masks(faces.track_id, faces.frame_index, crop_masks)

    def paste(self, frames: torch.Tensor, swapped: torch.Tensor, aligned: AlignedFaces,
              crop_masks: torch.Tensor | None, opts: SwapOptions,
              faces: DetectedFaces | None = None, protect: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames [B,3,H,W], frame mask [B,1,H,W]) with the swapped crops pasted back; for tracked ``faces`` with
        ``opts.temporal``, the colour correction is filtered over time per track. protect: [B or 1,1,H,W] in
        [0,1], regions kept exactly as in ``frames`` (see ``paste.paste_faces``)."""
        if not len(aligned):
            return frames, frames.new_zeros(frames.shape[0], 1, *frames.shape[-2:])
        extra: dict[str, Any] = {"protect": protect}
        if opts.temporal is not None and faces is not None and faces.track_id is not None:
            color_filter = opts.temporal.color_filter(faces.track_id, faces.frame_index)
            if color_filter is not None:
                extra["color_filter"] = color_filter
        with self.timer.stage("paste"):
            return paste_faces(frames, swapped, aligned, crop_masks, color_match=opts.color_match,
                               mode=opts.paste_mode, uint8_truncate=opts.official, **extra)

    # -- identity -------------------------------------------------------------------------------------------
    def extract_identity(self, images: torch.Tensor | list[torch.Tensor], *, select: str | FaceSelection = "largest",
                         combine: str = "mean", if_no_face: str = "error") -> Identity:
        """``identity.extract_identity`` with this swapper's encoder, detector, crop size, template and device."""
        if self.arcface is None:
            raise InputError("extract_identity needs the ArcFace encoder: FaceSwapper(generator, arcface, ...)")
        return extract_identity(self.arcface, self.detector, images, crop_size=self.crop_size,
                                align_mode=self.align_mode, select=select, combine=combine, if_no_face=if_no_face,
                                device=self.device, timer=self.timer)

    # -- swap -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def swap(self, frames: torch.Tensor, identity: Identity | Sequence[Identity] | None = None, *,
             faces: DetectedFaces | None = None, select: str | FaceSelection = "all",
             mask: MaskSpec | None = None, paste_mode: str = "default", color_match: bool = False,
             reference: Identity | None = None, if_no_face: str = "error", batch_size: int = 16,
             face_batch_size: int | None = None, smoothing: Callable[[DetectedFaces], DetectedFaces] | None = None,
             progress: ProgressFn | None = None, on_step: StepFn | None = None, identity_strength: float = 1.0,
             gender: str = "any", gender_model: GenderModel | None = None, restorer: Restorer | None = None,
             restore_visibility: float = 1.0, identity_map: IdentityMap | None = None,
             temporal: TemporalState | None = None, protect: torch.Tensor | None = None,
             pixel_boost: int = 1) -> SwapResult:
        """Swap `identity` into the selected faces of frames [N,3,H,W] RGB [0,1].

        faces: faces already detected on these frames (e.g. by a preview step; DetectedFaces of all N frames), so
        they are not detected again. select: "all" | "largest" | "best" | "index:N[,M]" | "reference" (or a
        FaceSelection); "reference" swaps in each frame the face closest to `reference` (raw-embedding MSE below
        the selection's threshold, 0.03 by default like the official --id_thres). mask: a masks.MaskSpec (None =
        paste's default box mask). if_no_face: "error" raises NoFaceError when a frame has no selected face;
        "keep" returns it unchanged (mask zero). batch_size: frames per detection batch. face_batch_size: faces
        per generator call; None = ``batch_size`` on a GPU, 1 on the CPU (where a larger generator batch is slower
        per face; see bench/README.md). smoothing: a tracking.LandmarkSmoother for video frames (consecutive
        frames, in order; it keeps its tracks across calls). progress(done, total) is called frame by frame;
        on_step(done: float, total) after every generator call with the fraction of the frame in progress (a
        cancel raised there stops the swap within one generator call; see progress.py).

        identity: one Identity, or a sequence of them (several sources -> several targets): with
        select="index:a,b,..." identity k goes to the k-th listed face (cycled when fewer identities than faces);
        with "all" the face numbered r gets identity r (cycled); other selections use identity 0
        (``detection.select.assign_identities``). identity_strength in [0, 2]: 1 = the source identity (exactly
        as without it), 0 = the target's own identity, between/above: normalize(lerp(target, source, s)).
        gender: "any" | "female" | "male" keeps only faces of that gender (gender_model.predict, e.g. a
        ``detection.genderage.GenderAgeEstimator``) BEFORE the selection numbers them. restorer: a face restorer
        (``restore.FaceRestorer`` or any callable crops -> crops) applied to the generator outputs before masks and
        paste-back, blended by restore_visibility (0 = unchanged, 1 = fully restored).
        identity_map: several identities, each to its own faces (``mapping.IdentityMap``: by reference photo, face
        index or track id; faces not mapped are left alone); then ``identity`` is None and ``select`` "all", and
        ``SwapResult.identity_slots`` index the map's entries. Stickiness per track (a track keeps its identity)
        lasts the call, or the stream with ``temporal``. temporal: a ``temporal.TemporalState`` (one per stream,
        frames in time order): crop masks and colour correction of tracked faces (``faces.track_id``, e.g. from
        ``run(..., tracker=)``) are smoothed over time per track, and it keeps the map's per-track memory.
        Frames where nothing is swapped are listed in ``SwapResult.frames_without_face`` with a reason each
        (``no_face_reasons``); with if_no_face="error" a ``FramesWithoutFaceError`` (a NoFaceError) names them.
        protect: [N,1,H,W] (one per frame) or [1,1,H,W] (every frame) float in [0,1], regions that must never
        change (a hand, a microphone: any mask): after paste-back the frames are lerp(swapped, original, protect),
        bit-identical to the input where protect is 1, and ``SwapResult.mask`` is multiplied by (1 - protect).
        Mask kinds that need SAM (``sam``, ``sam_parsing``) use this swapper's ``sam`` on each batch of frames.
        pixel_boost: 1 (off), 2, 3 or 4: faces are aligned at k times the generator's size and each crop is
        swapped as k*k sub-pixel phases woven back together (``pixel_boost``: no tiles, hence no seams), so the
        face keeps k times the detail; costs k*k generator calls per face. ``SwapResult.swapped`` and ``aligned``
        are then [F,3,kS,kS]. Not with paste_mode="official".
        """
        frames = check_images(frames, "swap frames", allow_single=True)
        opts = self._options(identity, select, mask, paste_mode, color_match, reference, if_no_face, batch_size,
                             face_batch_size, smoothing, mapped=identity_map is not None)
        self._extra_options(opts, identity_strength, gender, gender_model, restorer, restore_visibility)
        self._map_options(opts, identity_map, temporal)
        self._boost_options(opts, pixel_boost)
        n = frames.shape[0]
        if protect is not None:
            protect = check_protect(protect, n, (frames.shape[-2], frames.shape[-1]))
        if faces is not None:
            if not isinstance(faces, DetectedFaces):
                raise InputError(f"faces: expected the DetectedFaces of these {n} frame(s), got {type(faces).__name__}")
            faces.check_matches(frames)
        for name, fn in (("progress", progress), ("on_step", on_step)):
            if fn is not None and not callable(fn):
                raise InputError(f"{name}: expected a callable {name}(done, total) or None, got {type(fn).__name__}")
        latent = torch.stack([i.latent.to(self.device, torch.float32).reshape(-1) for i in opts.identities])
        progress = increasing(progress)
        parts = []
        for start, stop in frame_ranges(n, batch_size):
            chunk = frames[start:stop].to(self.device, torch.float32)
            detected = self.detect(chunk) if faces is None else faces.frames(start, stop).to(self.device)
            if on_step is not None:
                on_step(float(start), n)  # a cancel point after each batch's detection
            chosen = self.track(self.choose(chunk, detected, opts), opts)
            per_frame = chosen.per_frame()
            without = self._frames_without_face(chosen, per_frame, start, n, opts)
            aligned = chosen.aligned or self.align(chunk, chosen.faces, official=opts.official,
                                                   boost=opts.pixel_boost)
            latents = self.latents(aligned, latent, chosen.slots, opts)
            swapped = self.generate(aligned, latents, opts, frame_progress(progress, start, n, per_frame, on_step))
            crop_masks = self.smooth_masks(chosen.faces, self.mask(aligned, opts, chunk), opts)
            keep = None if protect is None else \
                (protect if protect.shape[0] == 1 else protect[start:stop]).to(self.device, torch.float32)
            out, frame_mask = self.paste(chunk, swapped, aligned, crop_masks, opts, chosen.faces, keep)
            out_device = frames.device
            slots = chosen.slots if chosen.slots is not None else torch.zeros(len(chosen.faces), dtype=torch.int64)
            parts.append(SwapResult(out.to(out_device), frame_mask.to(out_device), chosen.faces.to(out_device),
                                    aligned.to(out_device), swapped.to(out_device), detected.to(out_device),
                                    without, [chosen.reasons.get(i, "no face selected") for i in without],
                                    slots.to(out_device)))
            if progress is not None:
                progress(stop, n)
            if on_step is not None:
                on_step(float(stop), n)
        return SwapResult.concat(parts)

    def _extra_options(self, opts: SwapOptions, identity_strength: Any, gender: Any, gender_model: Any,
                       restorer: Any, restore_visibility: Any) -> None:
        """Checks of the identity strength, gender filter and restoration settings, stored into ``opts``."""
        opts.identity_strength = check_number(identity_strength, "identity_strength", low=0.0, high=2.0)
        if opts.identity_strength != 1.0 and self.arcface is None:
            raise InputError("identity_strength != 1 needs the ArcFace encoder (the target face's own identity is "
                             "mixed in): FaceSwapper(generator, arcface, ...)")
        if gender not in GENDERS:
            raise InputError(f"gender: expected one of {', '.join(GENDERS)}, got {gender!r}")
        if gender != "any" and gender_model is None:
            raise InputError(f"gender: keeping only {gender} faces needs a gender model (gender_model=, e.g. "
                             "detection.genderage.load_genderage(path)); use gender='any' without one")
        if gender_model is not None and not callable(getattr(gender_model, "predict", None)):
            raise InputError(f"gender_model: expected an object with predict(frames, faces) (a GenderAgeEstimator), "
                             f"got {type(gender_model).__name__}")
        if restorer is not None and not callable(restorer):
            raise InputError(f"restorer: expected a face restorer (callable crops -> crops) or None, got "
                             f"{type(restorer).__name__}")
        opts.restore_visibility = check_number(restore_visibility, "restore_visibility", low=0.0, high=1.0)
        opts.gender, opts.gender_model, opts.restorer = gender, gender_model, restorer

    def _boost_options(self, opts: SwapOptions, pixel_boost: Any) -> None:
        """Check of the pixel boost, stored into ``opts``."""
        opts.pixel_boost = check_pixel_boost(pixel_boost)
        if opts.pixel_boost == 1:
            return
        if opts.official:
            raise InputError("pixel_boost: the official paste mode reproduces SimSwap's own output at the "
                             "generator's size; use paste_mode='default' with pixel_boost > 1")
        if self.crop_size * opts.pixel_boost > MAX_CROP_SIZE:
            raise InputError(f"pixel_boost {opts.pixel_boost}: crops of {self.crop_size * opts.pixel_boost} px exceed "
                             f"the {MAX_CROP_SIZE} px limit; use a smaller boost")

    def _map_options(self, opts: SwapOptions, identity_map: Any, temporal: Any) -> None:
        """Checks of the identity map and the temporal state, stored into ``opts``."""
        if temporal is not None and not all(callable(getattr(temporal, name, None))
                                            for name in ("smooth_masks", "color_filter", "reset")):
            raise InputError(f"temporal: expected a temporal.TemporalState or None, got {type(temporal).__name__}")
        opts.temporal = temporal
        if identity_map is None:
            return
        imap = check_identity_map(identity_map, "identity_map").to(self.device)
        if opts.selection.how != "all":
            raise InputError(f"select: with identity_map the map chooses the faces; use select='all' (got "
                             f"{str(opts.selection)!r})")
        if imap.needs_arcface and self.arcface is None:
            raise InputError("identity_map: reference entries need the ArcFace encoder: FaceSwapper(generator, "
                             "arcface, ...)")
        opts.identity_map, opts.identities = imap, imap.identities
        slots = getattr(temporal, "track_slots", None) if temporal is not None else None
        opts.track_slots = slots if isinstance(slots, dict) else {}

    def _options(self, identity, select, mask, paste_mode, color_match, reference, if_no_face, batch_size,
                 face_batch_size, smoothing, mapped: bool = False) -> SwapOptions:
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
            face_batch_size = self.auto_face_batch_size()
        else:
            check_integer(face_batch_size, "face_batch_size", low=1)
        if isinstance(color_match, str) or color_match not in (True, False):
            raise InputError(f"color_match: expected True or False, got {type(color_match).__name__} {color_match!r}")
        if smoothing is not None and not callable(smoothing):
            raise InputError(f"smoothing: expected a tracking.LandmarkSmoother or None, got {type(smoothing).__name__}")
        if mapped:
            if identity is not None:
                raise InputError("identity: pass either identity or identity_map (several identities, each to its "
                                 "own faces), not both")
            identities: list[Identity] = []
        elif identity is None:
            raise InputError("identity: expected an Identity (or a list of them, or identity_map=), got None")
        elif isinstance(identity, (list, tuple)):
            if not identity:
                raise InputError("identity: an empty list of identities; expected at least one Identity")
            identities = [check_identity(item, f"identity #{k}") for k, item in enumerate(identity)]
        else:
            identities = [check_identity(identity, "identity")]
        if reference is not None:
            check_identity(reference, "reference")
        opts = SwapOptions(FaceSelection.parse(select), mask, paste_mode, bool(color_match), reference, if_no_face,
                           face_batch_size, smoothing, identities)
        if opts.selection.how == "reference" and self.arcface is None:
            raise InputError("select='reference' needs the ArcFace encoder: FaceSwapper(generator, arcface, ...)")
        if opts.selection.how == "reference" and reference is None:
            raise InputError("select='reference' needs reference=Identity of the person to replace "
                             "(FaceSwapper.extract_identity of a photo of them)")
        if mask is not None and mask.needs_parser and self.parser is None:
            raise InputError(f"mask kind {mask.kind!r} needs a face parser: FaceSwapper(..., parser=load_parser(path))")
        if mask is not None and MASKERS[mask.kind].needs_sam and self.sam is None:
            raise InputError(f"mask kind {mask.kind!r} needs a Segment Anything model: FaceSwapper(..., sam="
                             f"load_sam(path)) (CLI: --sam NAME|PATH, e.g. --sam sam_vit_b; ComfyUI: connect SimSwap "
                             f"Load SAM to the swap node's 'sam' input)")
        if mask is not None and opts.official_parsing and set(mask.regions) != set(OFFICIAL_REGIONS):
            warnings.warn(f"paste_mode='official' uses SimSwap's own parsing label set; the mask regions "
                          f"{','.join(mask.regions)} are ignored (use paste_mode='default' to choose regions)",
                          stacklevel=3)
        return opts

    def _frames_without_face(self, chosen: ChosenFaces, per_frame: list[int], start: int, total: int,
                             opts: SwapOptions) -> list[int]:
        """Frames of the batch (indices within it) without a selected face (per_frame: faces per frame, host
        ints); NoFaceError when that is an error."""
        empty = [i for i, c in enumerate(per_frame) if c == 0]
        if empty and opts.if_no_face == "error":
            frames = [start + i for i in empty]
            reasons = [chosen.reasons.get(i, "no face selected") for i in empty]
            label = detector_label(self.detector)
            raise FramesWithoutFaceError(
                f"nothing to swap in {describe_skipped(frames, reasons)} (of {_plural(total, 'frame')}; detector "
                f"{label}); pass if_no_face='keep' to return such frames unchanged", frames, reasons, total, label)
        return empty


def _short_list(items: list[int], limit: int = 10) -> str:
    s = ", ".join(map(str, items[:limit]))
    return s + (f", ... ({len(items)} in all)" if len(items) > limit else "")
