"""SimSwap Swap Video: ComfyUI's core VIDEO type in and out (Load Video / Create Video -> ... -> Save Video), swapped
from file to file in chunks, so RAM does not grow with the length of the clip (the IMAGE-batch swap holds every
frame as float32: about 25 MB a 1080p frame).

The node is a thin adapter: the swap choices go through ``nodes.swap.swap_arguments`` (the same checks and
messages as SimSwap Face Swap), the frames through ``simswap_core.run.run`` with a ``tracking.FaceTracker`` (track
ids, gap filling, landmark smoothing, new ids after a cut) and a ``temporal.TemporalState`` (mask and colour
smoothing per track), from a ``VideoSource`` into a ``VideoSink`` that writes ComfyUI's temp folder under a unique
name. The sink commits only after the last frame; Cancel (ComfyUI's interrupt, checked after every generator call
and every frame) aborts the run and leaves no file. What a VIDEO can be:

* ``VideoFromFile`` of a path (core Load Video): decoded from that file, its audio copied;
* ``VideoFromFile`` of a BytesIO stream: spooled to a temporary file first (removed at the end);
* ``VideoFromComponents`` (core Create Video: IMAGE batch + optional AUDIO + fps): the frames already in RAM go
  through a ``TensorSource``; the audio is written to a temporary WAV that the sink re-encodes (AAC).
"""
from __future__ import annotations

import io as _io
import math
import os
import shutil
import tempfile
import uuid
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfy_api.latest import io

from . import _types as t
from ._common import (
    CATEGORY,
    ManagedModel,
    check_interrupt,
    folder_paths,
    image_to_nchw,
    progress_callback,
    report_status,
    soft_empty_cache,
)
from .search_aliases import search_aliases
from .selection import MASK_KINDS, MASK_TOOLTIP, ORDERS, SELECT_MODES, validate_face_index
from .swap import GENDERS, GenderModelType, SwapOptionsType, SwapSettings, node_no_face_message

if TYPE_CHECKING:
    from simswap_core.detection import FaceDetector
    from simswap_core.identity import Identity
    from simswap_core.io.video import VideoInfo
    from simswap_core.mapping import IdentityMap
    from simswap_core.run import RunSummary

DISPLAY_NAME = "SimSwap Swap Video"
OUTPUT_SUBFOLDER = "simswap"          # in ComfyUI's temp folder
#: container format names (as PyAV reports them, comma-separated) -> the extension a spooled stream is given
_FORMAT_EXTS = {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv", "webm": ".webm", "avi": ".avi", "gif": ".gif",
                "mpegts": ".ts", "mpeg": ".mpg", "flv": ".flv"}


# ------------------------------------------------------------------------------------------------ VIDEO -> frames
@dataclass
class VideoFrames:
    """A VIDEO input opened for streaming.

    source:     the frames (``VideoSource`` of a file, or ``TensorSource`` [N,3,H,W] RGB [0,1] of components)
    info:       for components: the ``VideoInfo`` the sink is built from (size, fps, frame count); None for a file
                (the sink takes it from the ``VideoSource``, with its time stamps and audio)
    audio_from: for components with audio: the temporary WAV; None otherwise
    name:       the file name shown in messages / used for the output name
    temporary:  files to delete when done (a spooled stream, the WAV)
    """

    source: Any
    info: VideoInfo | None = None
    audio_from: Path | None = None
    name: str = "video"
    temporary: list[Path] = field(default_factory=list)

    def make_sink(self, out: Path) -> Any:
        """The ``VideoSink`` writing ``out`` (never replacing an existing file) with this video's fps and audio."""
        from simswap_core.io.frames import VideoSink

        if self.info is None:
            return VideoSink(out, self.source, audio=True)
        return VideoSink(out, self.info, audio_from=self.audio_from)

    def cleanup(self) -> None:
        for p in self.temporary:
            p.unlink(missing_ok=True)
        self.temporary = []


def work_folder() -> Path:
    """ComfyUI's temp folder (emptied by ComfyUI at start-up) / simswap; outside ComfyUI the system's temp."""
    base = Path(folder_paths.get_temp_directory()) if folder_paths is not None else Path(tempfile.gettempdir())
    out = base / OUTPUT_SUBFOLDER
    out.mkdir(parents=True, exist_ok=True)
    return out


def _spool(stream: _io.BytesIO, folder: Path, ext: str) -> Path:
    """Copy an in-memory video stream to a temporary file (decoding then streams from disk)."""
    fd, name = tempfile.mkstemp(prefix=".spooled_", suffix=ext, dir=folder)
    stream.seek(0)
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(stream, f, 1 << 20)
    stream.seek(0)
    return Path(name)


def _stream_ext(video: Any) -> str:
    try:
        names = str(video.get_container_format()).split(",")
    except Exception:
        return ".mp4"
    return next((_FORMAT_EXTS[n] for n in names if n in _FORMAT_EXTS), ".mp4")


def write_wav(path: Path, waveform: Any, sample_rate: int, samples: int | None = None) -> Path:
    """A ComfyUI AUDIO waveform [B,C,S] (or [C,S]) float in [-1,1] -> 16-bit PCM WAV (first batch item; at most
    ``samples`` samples)."""
    import numpy as np
    import torch

    from simswap_core.errors import InputError

    w = waveform
    if not isinstance(w, torch.Tensor) or w.ndim not in (2, 3) or w.shape[-1] == 0:
        shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise InputError(f"video: expected the audio waveform as [batch, channels, samples], got {shape}")
    if w.ndim == 3:
        w = w[0]
    if samples is not None:
        w = w[:, :samples]
    if not bool(torch.isfinite(w).all()):
        raise InputError("video: the audio waveform holds NaN or infinite values")
    if not (1 <= int(sample_rate) <= 768_000):
        raise InputError(f"video: the audio sample rate must be 1..768000 Hz, got {sample_rate}")
    pcm = (w.detach().float().cpu().clamp(-1, 1) * 32767.0).round().to(torch.int16).numpy()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(int(pcm.shape[0]))
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(np.ascontiguousarray(pcm.T).astype("<i2").tobytes())
    return path


def open_video(video: Any, folder: Path) -> VideoFrames:
    """The frames of a VIDEO input (see the module docstring for the kinds); files it makes go into ``folder``
    and are listed in ``temporary``. InputError naming the 'video' input for anything unreadable."""
    from comfy_api.latest import InputImpl

    from simswap_core.errors import InputError
    from simswap_core.io.frames import TensorSource, VideoSource
    from simswap_core.io.video import VideoInfo

    if isinstance(video, InputImpl.VideoFromComponents):
        comp = video.get_components()
        frames = image_to_nchw(comp.images, "video") if comp.images.shape[0] else None
        if frames is None:
            raise InputError("video: the video has no frames")
        fps = Fraction(comp.frame_rate)
        if fps <= 0:
            raise InputError(f"video: the frame rate must be positive, got {float(fps):g}")
        n, h, w = int(frames.shape[0]), int(frames.shape[2]), int(frames.shape[3])
        out = VideoFrames(TensorSource(frames, name="video"), name="video")
        audio = comp.audio
        if audio is not None:
            rate = int(audio["sample_rate"])
            fd, wav = tempfile.mkstemp(prefix=".audio_", suffix=".wav", dir=folder)
            os.close(fd)
            out.temporary.append(Path(wav))
            # as the core Save Video does: the audio is cut at the end of the last frame
            try:
                write_wav(Path(wav), audio["waveform"], rate, math.ceil(rate / fps * n))
            except BaseException:
                out.cleanup()
                raise
            out.audio_from = Path(wav)
        out.info = VideoInfo(path=Path("video"), width=w, height=h, fps=fps, frame_count=n,
                             has_audio=audio is not None, codec="rawvideo")
        return out
    if not hasattr(video, "get_stream_source"):
        raise InputError(f"video: expected a VIDEO (Load Video, Create Video), got {type(video).__name__}")
    src = video.get_stream_source()
    temporary: list[Path] = []
    if isinstance(src, _io.BytesIO):
        path = _spool(src, folder, _stream_ext(video))
        temporary.append(path)
        name = "video" + path.suffix
    else:
        path = Path(os.fspath(src))
        name = path.name
    try:
        source = VideoSource(path)
    except (InputError, FileNotFoundError, OSError) as e:
        for p in temporary:
            p.unlink(missing_ok=True)
        raise InputError(f"video: {e}") from e
    return VideoFrames(source, name=name, temporary=temporary)


@contextmanager
def opened_video(video: Any, folder: Path) -> Iterator[VideoFrames]:
    frames = open_video(video, folder)
    try:
        yield frames
    finally:
        frames.cleanup()


def output_path(folder: Path, name: str) -> Path:
    """A new file name in ``folder`` for the swapped video of ``name`` (never an existing file)."""
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(name).stem)[:60] or "video"
    return folder / f"{stem}_simswap_{uuid.uuid4().hex[:10]}.mp4"


# ------------------------------------------------------------------------------------------------ the summary
def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def frame_ranges_text(frames: list[int], limit: int = 8) -> str:
    """[0, 1, 2, 5, 9, 10] -> '0-2, 5, 9-10' (at most ``limit`` ranges, then '...')."""
    ranges: list[list[int]] = []
    for f in sorted(set(int(x) for x in frames)):
        if ranges and f == ranges[-1][1] + 1:
            ranges[-1][1] = f
        else:
            ranges.append([f, f])
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit]]
    return ", ".join(parts) + (", ..." if len(ranges) > limit else "")


def identity_labels(identity: Any, identity_map: IdentityMap | None) -> list[str]:
    """A name per identity slot: '<label> -> <faces it maps>' of the map's entries, else 'identity k'."""
    if identity_map is not None:
        return [f"{identity_map.label(k)} -> {e.target(identity_map.order)}"
                for k, e in enumerate(identity_map.entries)]
    count = len(identity) if isinstance(identity, (list, tuple)) else 1
    return [f"identity {k}" for k in range(count)]


def describe_run(summary: RunSummary, labels: list[str]) -> str:
    """What the node did, for a person: faces swapped in how many frames, per identity, face tracks, faces filled
    in detection gaps, shot cuts, and the frames where nothing was swapped."""
    n = summary.frames
    missed = sorted(summary.frames_without_face)
    hit = n - len(missed)
    text = (f"swapped {_plural(summary.faces_swapped, 'face')} in "
            + (_plural(n, "frame") if hit == n else f"{hit} of {_plural(n, 'frame')}"))
    per = list(getattr(summary, "faces_per_identity", []) or [])
    if len(labels) > 1 and per:
        text += " (" + ", ".join(f"{labels[k] if k < len(labels) else f'identity {k}'}: "
                                 f"{_plural(c, 'face')}" for k, c in enumerate(per)) + ")"
    tracks = getattr(summary, "tracks", None)
    if tracks is not None:
        text += f"; {_plural(int(tracks), 'face track')}"
    filled = int(getattr(summary, "faces_filled", 0) or 0)
    if filled:
        text += f", {_plural(filled, 'face')} filled in detection gaps"
    cuts = list(getattr(summary, "cuts", []) or [])
    if cuts:
        text += f"; {_plural(len(cuts), 'shot cut')} (new shot at frame{'s' if len(cuts) > 1 else ''} " \
                f"{frame_ranges_text(cuts)})"
    if missed:
        text += f"; nothing swapped in {_plural(len(missed), 'frame')}: {frame_ranges_text(missed)}"
    return text


# ------------------------------------------------------------------------------------------------ the node
class SimSwapSwapVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSwapVideo",
            **search_aliases("SimSwapSwapVideo"),
            display_name=DISPLAY_NAME,
            category=CATEGORY,
            description=("Swaps faces in a whole VIDEO (core Load Video / Create Video in, Save Video out), streamed "
                         "from file to file in chunks, so memory does not grow with the length of the clip. Every "
                         "face is tracked from frame to frame: a face missed by the detector for a few frames keeps "
                         "its swap (filled in from its neighbours), landmarks, blend mask and colour are steadied "
                         "per track, and a shot cut starts new tracks. Several identities at once with 'SimSwap Map "
                         "Identity'. Frame count, order, timing and audio are kept. The progress bar advances frame "
                         "by frame; Cancel stops within one generator call and leaves no file. Licences: the "
                         "SimSwap weights are CC BY-NC 4.0 and insightface models non-commercial."),
            inputs=[
                io.Video.Input("video", tooltip="The video whose faces are replaced (core Load Video, or Create "
                                                "Video from an IMAGE batch, its audio and fps)."),
                t.Identity.Input("identity", optional=True,
                                 tooltip="The identity to swap in (Extract or Load Identity), onto the faces chosen "
                                         "by 'faces'. Connect this OR identity_map, not both."),
                t.IdentityMap.Input("identity_map", optional=True,
                                    tooltip="Several identities at once (SimSwap Map Identity nodes chained): each "
                                            "identity goes to the faces its entry names (a reference photo, a face "
                                            "number or a track id); other faces are left alone. Connect this OR "
                                            "identity, not both."),
                t.Generator.Input("generator", tooltip="SimSwap generator (224 or 512)."),
                t.Detector.Input("detector", tooltip="Face detector for the video frames."),
                io.Combo.Input("faces", options=SELECT_MODES, default="all",
                               tooltip="With 'identity': which faces of each frame are swapped (all; the largest; "
                                       "the best detection score; the numbers in face_index; or the face matching "
                                       "the 'reference' identity). A face keeps its choice along its track."),
                io.String.Input("face_index", default="0",
                                tooltip="For faces = index: face numbers separated by commas, as shown by 'SimSwap "
                                        "Detect Faces' (track_faces on) with the same order (e.g. '0' or '0,2')."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="How faces are numbered for face_index."),
                io.Combo.Input("mask", options=MASK_KINDS, default="box",
                               tooltip=MASK_TOOLTIP + " Parser kinds take the 'parser' input (regions in SimSwap "
                                                      "Swap Options), SAM kinds the 'sam' input."),
                io.Combo.Input("if_no_face", options=["keep", "error"], default="keep",
                               tooltip="A frame where nothing is swapped: keep it unchanged (the node lists such "
                                       "frames), or stop with an error naming them (no video is written)."),
                io.Float.Input("temporal_smoothing", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="Steadies each tracked face's landmarks over time so the swapped face does "
                                       "not jitter (One-Euro filter: strong while still, little lag in motion). 0 = "
                                       "off, 1 = strongest."),
                io.Float.Input("blend_smoothing", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="Steadies each tracked face's blend mask and colour correction over time (no "
                                       "pumping edges or colour flicker). 0 = off, 1 = strongest."),
                io.Int.Input("track_gap", default=8, min=0, max=120,
                             tooltip="A face the detector misses for up to this many frames keeps its track id and "
                                     "its swap (filled in from the frames around the gap) instead of flashing the "
                                     "original face. 0 = no gap filling. Frames are held back this long."),
                io.Float.Input("identity_strength", default=1.0, min=0.0, max=2.0, step=0.05, optional=True,
                               tooltip="How much of the source identity: 1 = the source (normal swap), 0 = the "
                                       "target's own face, up to 2 = exaggerated. Needs the arcface input when "
                                       "not 1."),
                io.Float.Input("restore_visibility", default=1.0, min=0.0, max=1.0, step=0.05, optional=True,
                               tooltip="With restore_model: how much of the restored face is used (0 = none, 1 = "
                                       "fully restored)."),
                io.Combo.Input("gender", options=GENDERS, default="any", optional=True,
                               tooltip="Swap only female or male faces (needs gender_model)."),
                t.ArcFace.Input("arcface", optional=True,
                                tooltip="ArcFace encoder (SimSwap Load ArcFace): needed for faces = reference, for "
                                        "map entries by reference, and for identity_strength other than 1."),
                t.Identity.Input("reference", optional=True,
                                 tooltip="For faces = reference: the person to replace (Extract Identity of a photo "
                                         "of them)."),
                t.Parser.Input("parser", optional=True,
                               tooltip="BiSeNet face parser, required for mask = parsing, occlusion or sam_parsing."),
                SwapOptionsType.Input("options", optional=True,
                                      tooltip="SimSwap Swap Options: mask regions/grow/feather, paste mode, colour "
                                              "match, batch size (frames per chunk), reference threshold. Its "
                                              "temporal_smoothing, track_gap and blend_smoothing are not used here: "
                                              "this node's own widgets are."),
                io.UpscaleModel.Input("restore_model", optional=True,
                                      tooltip="A face restoration model (SimSwap Load Face Restorer or Load Upscale "
                                              "Model) applied to the swapped faces only, before paste-back."),
                GenderModelType.Input("gender_model", optional=True,
                                      tooltip="Gender model (SimSwap Load Gender Model) used by the gender filter."),
                t.Sam.Input("sam", optional=True,
                            tooltip="Segment Anything model (SimSwap Load SAM), required for mask = sam or "
                                    "sam_parsing (a hand or hair in front of a face is left out of the swap)."),
                io.Mask.Input("protect", optional=True,
                              tooltip="Regions that must never change (1 = keep the original pixel exactly), the "
                                      "size of the video's frames: ONE mask [1,H,W] applied to every frame (a "
                                      "static occluder, a logo, a caption), or one mask per frame of a short clip "
                                      "(as many masks as the video has frames; a long video's masks would have to "
                                      "fit in memory at once)."),
            ],
            outputs=[
                io.Video.Output(display_name="video",
                                tooltip="The swapped video (H.264 MP4 in ComfyUI's temp folder, with the input's "
                                        "audio): connect Save Video to keep it."),
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
    def execute(cls, video: Any, generator: ManagedModel, detector: FaceDetector, faces: str, face_index: str,
                order: str, mask: str, if_no_face: str, temporal_smoothing: float = 0.5,
                blend_smoothing: float = 0.5, track_gap: int = 8, identity: Identity | list[Identity] | None = None,
                identity_map: IdentityMap | None = None, identity_strength: float = 1.0,
                restore_visibility: float = 1.0, gender: str = "any", arcface: ManagedModel | None = None,
                reference: Identity | None = None, parser: ManagedModel | None = None,
                options: SwapSettings | None = None, restore_model: Any = None,
                gender_model: Any = None, sam: ManagedModel | None = None,
                protect: Any = None) -> io.NodeOutput:
        from simswap_core.checks import check_integer, check_number
        from simswap_core.run import run
        from simswap_core.swap import FramesWithoutFaceError
        from simswap_core.temporal import TemporalState
        from simswap_core.tracking import FaceTracker

        from .provenance import node_label
        from .swap import swap_arguments

        node_id = cls.hidden.unique_id if cls.hidden is not None else None
        smoothing = check_number(temporal_smoothing, "temporal_smoothing", low=0.0, high=1.0)
        blend = check_number(blend_smoothing, "blend_smoothing", low=0.0, high=1.0)
        gap = check_integer(track_gap, "track_gap", low=0, high=10_000)
        swapper, swap_kwargs, settings = swap_arguments(
            identity=identity, identity_map=identity_map, generator=generator, detector=detector, faces=faces,
            face_index=face_index, order=order, mask=mask, if_no_face=if_no_face,
            identity_strength=identity_strength, restore_visibility=restore_visibility, gender=gender,
            arcface=arcface, reference=reference, parser=parser, options=options, restore_model=restore_model,
            gender_model=gender_model, sam=sam, protect=protect)
        check_interrupt()
        folder = work_folder()
        with opened_video(video, folder) as frames:
            out = output_path(folder, frames.name)
            total = frames.source.total
            if total is None:
                total = _estimated_frames(video)
            bar = progress_callback(total)

            def progress(done: int, _total: int | None) -> None:
                if bar is not None:
                    bar(done, max(total, done))
                else:
                    check_interrupt()

            def on_step(_done: float, _total: int) -> None:
                check_interrupt()  # Cancel within one generator call (also between detection and generation)

            tracker = FaceTracker(smoothing, max_gap=gap, fill_gaps=gap > 0)
            temporal = TemporalState(mask_smoothing=blend, color_smoothing=blend)
            kwargs = dict(swap_kwargs)
            ident = kwargs.pop("identity", identity)
            sink = frames.make_sink(out)
            sink.label = node_label(generator=generator, arcface=arcface, detector=detector, parser=parser, sam=sam)
            try:
                summary = run(frames.source, swapper, sink, ident, batch_size=int(settings.batch_size),
                              progress=progress, tracker=tracker, temporal=temporal, on_step=on_step, **kwargs)
            except FramesWithoutFaceError as e:
                message = node_no_face_message(e)
                report_status(node_id, f"{DISPLAY_NAME}: {message}", "error")
                raise FramesWithoutFaceError(message, e.frames, e.reasons, e.total, e.detector) from None
        soft_empty_cache()
        text = describe_run(summary, identity_labels(ident, identity_map))
        text += _unused_options_note(options)
        from simswap_core.provenance import OFF_MESSAGE, labelling_enabled

        if not labelling_enabled():            # the user switched labelling off (SIMSWAP_LABEL=0): said here too
            text += f"; {OFF_MESSAGE}"
        level = "warning" if summary.frames_without_face or not labelling_enabled() else "info"
        report_status(node_id, f"{DISPLAY_NAME}: {text}", level)
        from comfy_api.latest import InputImpl

        return io.NodeOutput(InputImpl.VideoFromFile(str(out)), ui={"text": [text]})


def _unused_options_note(options: SwapSettings | None) -> str:
    """The Swap Options video settings this node does not use (its own widgets are), when they were changed."""
    if options is None:
        return ""
    default = SwapSettings()
    changed = [name for name in ("temporal_smoothing", "track_gap", "blend_smoothing")
               if getattr(options, name, None) != getattr(default, name)]
    if not changed:
        return ""
    return f" (not used here: Swap Options' {', '.join(changed)}; this node's own widgets of that name are)"


def _estimated_frames(video: Any) -> int:
    """The frame count a VIDEO declares (for the progress bar only), at least 1."""
    try:
        return max(1, int(video.get_frame_count()))
    except Exception:
        return 1


NODES = [SimSwapSwapVideo]
