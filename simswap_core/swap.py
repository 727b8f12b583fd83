"""The batched face-swap pipeline: detect -> select -> align -> generate -> mask -> paste, on one device.

Every stage works on all faces of a batch of frames at once (faces are flattened over frames, see
`DetectedFaces`); the only Python loops run over frame batches and generator batches, never over faces.
Images are `[N,3,H,W]` float32 RGB in [0,1]; crops `[F,3,S,S]`; masks `[N,1,H,W]` / `[F,1,S,S]` in [0,1].
"""
from __future__ import annotations

import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from .align import AlignedFaces, align_faces
from .errors import InputError, NoFaceError
from .faces import DetectedFaces
from .identity import Identity, combine_identities
from . import masks as _masks
from .paste import paste_faces

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
ProgressFn = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------ small helpers

class StageTimer:
    """Wall-clock seconds per pipeline stage (detect, align, identity, generate, mask, paste).

    Disabled by default (no synchronisation cost). When enabled on CUDA, each stage ends with a synchronize so
    the time lands in the stage that did the work.
    """

    def __init__(self, enabled: bool = False, device: torch.device | None = None):
        self.enabled = enabled
        self.device = device
        self.totals: dict[str, float] = {}

    def reset(self) -> None:
        self.totals = {}

    def _sync(self) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - t0


def _check_frames(frames: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor):
        raise InputError(f"{what}: expected a torch tensor [N,3,H,W] RGB in [0,1], got {type(frames).__name__}")
    if frames.dim() == 3:
        frames = frames[None]
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise InputError(f"{what}: expected [N,3,H,W] RGB (3 channels first), got shape {tuple(frames.shape)}")
    if frames.shape[0] == 0:
        raise InputError(f"{what}: expected at least one image, got an empty batch")
    if not frames.is_floating_point():
        raise InputError(f"{what}: expected float values in [0,1], got dtype {frames.dtype}")
    return frames


def _parse_selection(select):
    from .detection.select import FaceSelection

    if isinstance(select, FaceSelection):
        return select
    if isinstance(select, str):
        return FaceSelection.parse(select)
    raise InputError(f"select: expected a FaceSelection or a string like 'all', 'largest', 'best', 'index:0', "
                     f"'ref'; got {select!r}")


def concat_aligned(items: list[AlignedFaces], frame_counts: list[int]) -> AlignedFaces:
    """Aligned faces of consecutive frame batches joined into one (frame indices offset by earlier batches)."""
    offset, idx = 0, []
    for it, n in zip(items, frame_counts):
        idx.append(it.frame_index + offset)
        offset += n
    first = items[0]
    pts = [getattr(i, "points", None) for i in items]
    extra = {"points": torch.cat(pts)} if all(p is not None for p in pts) else {}
    return AlignedFaces(crops=torch.cat([i.crops for i in items]), matrices=torch.cat([i.matrices for i in items]),
                        frame_index=torch.cat(idx), frame_sizes=[s for i in items for s in i.frame_sizes],
                        crop_size=first.crop_size, mode=first.mode, **extra)


def raw_embeddings(arcface: torch.nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """[F,3,S,S] RGB [0,1] aligned crops -> [F,512] raw ArcFace embeddings (official preprocessing)."""
    from .identity import identity_embedding

    if crops.shape[0] == 0:
        return crops.new_zeros(0, 512)
    return identity_embedding(arcface, crops)


def reference_distance(arcface: torch.nn.Module, crops: torch.Tensor, reference: Identity) -> torch.Tensor:
    """[F] official "specific person" score: MSE (mean over 512) between raw embeddings of the crops and the
    reference's raw embedding. Lower = more similar; the official threshold is 0.03."""
    emb = raw_embeddings(arcface, crops)
    ref = reference.embedding.to(emb.device, emb.dtype).reshape(1, -1)
    return ((emb - ref) ** 2).mean(1)


def build_crop_masks(spec, aligned: AlignedFaces, swapped: torch.Tensor, parser=None) -> torch.Tensor | None:
    """Crop-space masks [F,1,S,S] for the faces, from a MaskSpec (None -> paste's own default box mask)."""
    if spec is None:
        return None
    return _masks.build_crop_masks(aligned, spec, parser)


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


# ------------------------------------------------------------------------------------------ results

@dataclass
class SwapResult:
    """Output of FaceSwapper.swap.

    images:  [N,3,H,W] float32 RGB [0,1], the composited frames (same device as the input frames).
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

    def __init__(self, generator: torch.nn.Module, arcface: torch.nn.Module, detector, *, parser=None,
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
        self.crop_size = int(crop_size or getattr(generator, "crop_size", None) or 224)
        self.align_mode = align_mode
        self.precision = precision
        self.timer = StageTimer(False, self.device)

    # -- stages ---------------------------------------------------------------------------------------------
    def detect(self, frames: torch.Tensor) -> DetectedFaces:
        """All faces of frames [N,3,H,W] (one detector call for the batch), on self.device."""
        with self.timer.stage("detect"):
            return self.detector.detect(frames).to(self.device)

    def align(self, frames: torch.Tensor, faces: DetectedFaces) -> AlignedFaces:
        with self.timer.stage("align"):
            return align_faces(frames, faces, self.crop_size, self.align_mode)

    # -- identity -------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def extract_identity(self, images: torch.Tensor | list[torch.Tensor], *, select="largest",
                         combine: str = "mean", if_no_face: str = "error") -> Identity:
        """Identity of the face(s) in one or more source images.

        images: [N,3,H,W] RGB [0,1], or a list of [1,3,H,W]/[3,H,W] of different sizes. select: which face of
        each image ("largest", "best", "index:N", "all" = every face counts). combine: "mean", "median" or
        "weighted" (weights = detection scores). if_no_face: "error" raises NoFaceError naming the images
        without a face; "skip" ignores them (an error is still raised if no image has a face).
        """
        if if_no_face not in ("error", "skip"):
            raise InputError(f"if_no_face: expected 'error' or 'skip', got {if_no_face!r}")
        if combine not in ("mean", "median", "weighted"):
            raise InputError(f"combine: expected 'mean', 'median' or 'weighted', got {combine!r}")
        selection = _parse_selection(select)
        if selection.how == "reference":
            raise InputError("extract_identity: select='reference' needs a reference identity; use 'largest', "
                             "'best', 'index:N' or 'all' for source images")
        groups = [images] if isinstance(images, torch.Tensor) else list(images)
        crops, scores, found, total = [], [], [], 0
        for g in groups:
            g = _check_frames(g, "extract_identity images").to(self.device, torch.float32)
            faces = self.detect(g)
            from .detection.select import select_faces

            chosen = faces.select(select_faces(faces, selection))
            if len(chosen):
                aligned = self.align(g, chosen)
                crops.append(aligned.crops)
                scores.append(chosen.scores)
            found += [total + i for i in range(g.shape[0]) if i in set(chosen.frame_index.tolist())]
            total += g.shape[0]
        missing = [i for i in range(total) if i not in set(found)]
        if not crops:
            raise NoFaceError(f"extract_identity: no face found in any of the {total} source image(s) (detector "
                              f"{_detector_name(self.detector)}, selection {_sel_text(selection)}); use a clearer, "
                              "larger, frontal photo or lower the detection threshold")
        if missing and if_no_face == "error":
            raise NoFaceError(f"extract_identity: no face found in source image(s) {missing} of {total}; remove "
                              "them or pass if_no_face='skip'")
        with self.timer.stage("identity"):
            crops_t = torch.cat(crops)
            emb = raw_embeddings(self.arcface, crops_t)
            latents = F.normalize(emb, p=2, dim=1, eps=1e-12)
            weights = torch.cat(scores) if combine == "weighted" else None
            ident = combine_identities(latents, emb, method=combine, weights=weights)
        return ident

    # -- swap -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def swap(self, frames: torch.Tensor, identity: Identity, *, select="all", mask=None,
             paste_mode: str = "default", color_match: bool = False, reference: Identity | None = None,
             if_no_face: str = "error", batch_size: int = 16, face_batch_size: int | None = None,
             smoothing=None, progress: ProgressFn | None = None) -> SwapResult:
        """Swap `identity` into the selected faces of frames [N,3,H,W] RGB [0,1].

        select: "all" | "largest" | "best" | "index:N[,M]" | "reference" (or a FaceSelection); "reference" swaps
        in each frame the face closest to `reference` (raw-embedding MSE below the selection's threshold, 0.03 by
        default like the official --id_thres). mask: a masks.MaskSpec (None = paste's default box mask).
        if_no_face: "error" raises NoFaceError when a frame has no selected face; "keep" returns it unchanged
        (mask zero). batch_size: frames per detection batch. face_batch_size: faces per generator call; None =
        ``batch_size`` on a GPU, 1 on the CPU (where a larger generator batch is slower per face: the 224x224x64
        activations of several faces no longer fit the caches; see bench/README.md). smoothing: a
        tracking.LandmarkSmoother for video frames (consecutive frames, in order; it keeps its tracks across calls)
        that steadies the selected faces' landmarks before alignment; None = as detected. progress(done, total) is
        called after each frame batch. Returns SwapResult; images come back on the input's device.
        """
        frames = _check_frames(frames, "swap frames")
        if if_no_face not in ("error", "keep"):
            raise InputError(f"if_no_face: expected 'error' or 'keep', got {if_no_face!r}")
        if paste_mode not in ("default", "official"):
            raise InputError(f"paste_mode: expected 'default' or 'official', got {paste_mode!r}")
        if (paste_mode == "official" and getattr(mask, "kind", None) == "parsing"
                and set(mask.regions) != set(_masks.OFFICIAL_REGIONS)):
            warnings.warn(f"paste_mode='official' uses SimSwap's own parsing label set; the mask regions "
                          f"{','.join(mask.regions)} are ignored (use paste_mode='default' to choose regions)",
                          stacklevel=2)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
        if face_batch_size is None:
            face_batch_size = 1 if self.device.type == "cpu" else batch_size
        elif not isinstance(face_batch_size, int) or face_batch_size < 1:
            raise InputError(f"face_batch_size: expected an integer >= 1 or None, got {face_batch_size!r}")
        if smoothing is not None and not callable(smoothing):
            raise InputError(f"smoothing: expected a tracking.LandmarkSmoother or None, got {type(smoothing).__name__}")
        if not isinstance(identity, Identity):
            raise InputError(f"identity: expected an Identity (FaceSwapper.extract_identity), got "
                             f"{type(identity).__name__}")
        selection = _parse_selection(select)
        if selection.how == "reference" and reference is None:
            raise InputError("select='reference' needs reference=Identity of the person to replace "
                             "(FaceSwapper.extract_identity of a photo of them)")
        if getattr(mask, "kind", None) == "parsing" and self.parser is None:
            raise InputError("mask kind 'parsing' needs a face parser: FaceSwapper(..., parser=load_parser(path))")
        from .detection.select import select_faces

        n = frames.shape[0]
        out_device = frames.device
        progress = _increasing(progress)
        latent = identity.latent.to(self.device, torch.float32).reshape(1, -1)
        images, masks, sel_faces, all_faces, aligned_parts, swapped_parts, counts, no_face = \
            [], [], [], [], [], [], [], []
        for start in range(0, n, batch_size):
            chunk = frames[start:start + batch_size].to(self.device, torch.float32)
            m = chunk.shape[0]
            faces = self.detect(chunk)
            aligned_all = None
            dist = None
            if selection.how == "reference" and len(faces):
                aligned_all = self.align(chunk, faces)
                with self.timer.stage("identity"):
                    dist = reference_distance(self.arcface, aligned_all.crops, reference)
            keep = select_faces(faces, selection, reference_distance=dist) if len(faces) else \
                torch.zeros(0, dtype=torch.bool, device=self.device)
            keep_idx = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
            chosen = faces.select(keep_idx)
            if smoothing is not None and getattr(smoothing, "enabled", True):
                chosen = smoothing(chosen)
                aligned_all = None  # the crops must follow the smoothed points
            per_frame = torch.bincount(chosen.frame_index, minlength=m)
            empty = (per_frame == 0).nonzero().flatten().tolist()
            if empty and if_no_face == "error":
                bad = [start + i for i in empty]
                found = torch.bincount(faces.frame_index, minlength=m)
                detail = "no face detected" if all(int(found[i]) == 0 for i in empty) else \
                    f"faces detected but none matched the selection {_sel_text(selection)}"
                raise NoFaceError(f"{detail} in frame(s) {_short_list(bad)} of {n} (detector "
                                  f"{_detector_name(self.detector)}); pass if_no_face='keep' to return such "
                                  "frames unchanged")
            no_face += [start + i for i in empty]
            if len(chosen):
                if aligned_all is not None:
                    order = keep_idx[torch.argsort(faces.frame_index[keep_idx], stable=True)]
                    pts = getattr(aligned_all, "points", None)
                    extra = {"points": pts[order]} if pts is not None else {}
                    aligned = AlignedFaces(aligned_all.crops[order], aligned_all.matrices[order],
                                           aligned_all.frame_index[order], aligned_all.frame_sizes,
                                           aligned_all.crop_size, aligned_all.mode, **extra)
                else:
                    aligned = self.align(chunk, chosen)
                with self.timer.stage("generate"):
                    crops = aligned.crops.contiguous(memory_format=torch.channels_last) if self.channels_last \
                        else aligned.crops
                    swapped = run_generator(self.generator, crops, latent.expand(len(chosen), -1),
                                            batch_size=face_batch_size, precision=self.precision,
                                            after_batch=_frame_progress(progress, start, n, per_frame))
                official_parsing = paste_mode == "official" and getattr(mask, "kind", None) == "parsing"
                with self.timer.stage("mask"):
                    crop_masks = None if official_parsing else build_crop_masks(mask, aligned, swapped, self.parser)
                with self.timer.stage("paste"):
                    out, fmask = paste_faces(chunk, swapped, aligned, crop_masks, color_match=color_match,
                                             mode=paste_mode, parser=self.parser if official_parsing else None)
            else:
                aligned = _empty_aligned(chunk, self.crop_size, self.align_mode)
                swapped = chunk.new_zeros(0, 3, self.crop_size, self.crop_size)
                out, fmask = chunk, chunk.new_zeros(m, 1, *chunk.shape[-2:])
            images.append(out.to(out_device))
            masks.append(fmask.to(out_device))
            sel_faces.append(chosen)
            all_faces.append(faces)
            aligned_parts.append(aligned)
            swapped_parts.append(swapped)
            counts.append(m)
            if progress is not None:
                progress(min(start + m, n), n)
        return SwapResult(images=torch.cat(images), mask=torch.cat(masks), faces=DetectedFaces.concat(sel_faces),
                          aligned=concat_aligned(aligned_parts, counts), swapped=torch.cat(swapped_parts),
                          detected=DetectedFaces.concat(all_faces), frames_without_face=no_face)


def _increasing(progress: ProgressFn | None) -> ProgressFn | None:
    """``progress`` called only when the number of finished frames grows (each value once, in order)."""
    if progress is None:
        return None
    last = -1

    def report(done: int, total: int) -> None:
        nonlocal last
        if done > last:
            last = done
            progress(done, total)

    return report


def _frame_progress(progress: ProgressFn | None, start: int, total: int, per_frame: torch.Tensor):
    """after_batch callback for run_generator: reports, per frame, the frames of the chunk starting at ``start``
    whose faces have all been generated (so a progress bar advances frame by frame, and a cancel is seen between
    generator calls). per_frame: [m] selected faces per frame of the chunk."""
    if progress is None:
        return None
    ends = torch.cumsum(per_frame, 0).tolist()  # faces generated when each frame's last face is done

    def after_batch(faces_done: int) -> None:
        progress(min(start + sum(1 for e in ends if e <= faces_done), total), total)

    return after_batch


def _empty_aligned(chunk: torch.Tensor, crop_size: int, mode: str | None) -> AlignedFaces:
    s = crop_size
    return AlignedFaces(crops=chunk.new_zeros(0, 3, s, s), matrices=chunk.new_zeros(0, 2, 3),
                        frame_index=torch.zeros(0, dtype=torch.int64, device=chunk.device),
                        frame_sizes=[tuple(chunk.shape[-2:])] * chunk.shape[0], crop_size=s,
                        mode=mode or ("ffhq" if s == 512 else "none"), points=chunk.new_zeros(0, 5, 2))


def _detector_name(detector) -> str:
    name = getattr(detector, "name", None) or type(detector).__name__
    thr = getattr(detector, "threshold", None)
    return f"{name}, threshold {thr}" if thr is not None else str(name)


def _sel_text(selection) -> str:
    return f"'{selection}'"


def _short_list(items: list[int], limit: int = 10) -> str:
    s = ", ".join(map(str, items[:limit]))
    return s + (f", ... ({len(items)} in all)" if len(items) > limit else "")
