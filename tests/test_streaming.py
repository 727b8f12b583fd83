"""The streaming engine: background decode (Prefetcher) and encode (BackgroundWriter) overlapping the compute,
errors of any thread raised in the caller, one abort and no output on error / cancel / Ctrl-C, bounded memory,
variable frame rate / odd sizes / audio kept through run(), and the tracker-driven loop (lookahead protocol,
the light result for the writer, the summary's track / fill / identity / cut counts)."""
from __future__ import annotations

import signal
import threading
import time
import weakref
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from simswap_core.errors import InputError, OutputError
from simswap_core.faces import DetectedFaces
from simswap_core.io.frames import FrameBatch, TensorSink, TensorSource, VideoSink, VideoSource
from simswap_core.io.prefetch import BackgroundWriter, Prefetcher
from simswap_core.io.video import count_frames, iter_video_frames, probe_video
from simswap_core.run import FrameResult, RunSummary, run

# ------------------------------------------------------------------------------------------------ helpers


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("simswap-")]


def _marker(n: int, start: int = 0, h: int = 8, w: int = 8) -> torch.Tensor:
    """n frames whose value is (start + i) / 255: each frame says its number."""
    return ((torch.arange(start, start + n, dtype=torch.float32) / 255).view(n, 1, 1, 1)).expand(n, 3, h, w).clone()


def _numbers(frames: torch.Tensor) -> list[int]:
    return [round(float(v) * 255) for v in frames[:, 0, 0, 0]]


def _faces_of(frames: torch.Tensor) -> DetectedFaces:
    """One face per frame whose box x1 is the frame's number (so a face can be matched with its frame)."""
    n, _, h, w = frames.shape
    boxes = torch.zeros(n, 4)
    boxes[:, 0] = torch.tensor(_numbers(frames), dtype=torch.float32)
    boxes[:, 2:] = 4.0
    return DetectedFaces(boxes, torch.zeros(n, 5, 2), torch.ones(n), torch.arange(n), [(h, w)] * n)


@dataclass
class Result:
    images: torch.Tensor
    mask: torch.Tensor
    faces: DetectedFaces
    aligned: torch.Tensor
    swapped: torch.Tensor
    frames_without_face: list[int] = field(default_factory=list)
    no_face_reasons: list[str] = field(default_factory=list)
    identity_slots: torch.Tensor | None = None


class Swapper:
    """detect(): one face per frame; swap(): 'swaps' the given faces (or detected ones), inverts the frames, can
    wait, fail at a call, check that the faces belong to the frames."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None, error: type[BaseException] = RuntimeError):
        self.delay, self.fail_at, self.error = delay, fail_at, error
        self.calls: list[dict] = []
        self.threads: set[str] = set()

    def detect(self, frames):
        return _faces_of(frames)

    def swap(self, frames, identity, *, batch_size, progress=None, faces=None, **options):
        self.threads.add(threading.current_thread().name)
        self.calls.append({"frames": _numbers(frames), "faces": faces, **options})
        if self.fail_at == len(self.calls):
            raise self.error("boom")
        time.sleep(self.delay)
        n = frames.shape[0]
        if faces is None:
            faces = _faces_of(frames)
        else:                                                 # the faces given are the frames' own
            assert faces.num_frames == n
            assert faces.boxes[:, 0].tolist() == [_numbers(frames)[int(i)] for i in faces.frame_index]
        f = len(faces)
        if progress is not None:
            progress(n, n)
        slots = faces.boxes[:, 0].long() % 2                  # identity slot: frame number even / odd
        return Result(1.0 - frames, frames[:, :1] * 0 + 1, faces, torch.zeros(f, 3, 64, 64), torch.zeros(f, 3, 64, 64),
                      [], [], slots)


class Sink(TensorSink):
    """Records writes / close / abort and the thread that wrote; can wait or fail on a write."""

    def __init__(self, delay: float = 0.0, fail_at: int | None = None, keep: bool = True, **kw):
        super().__init__(**kw)
        self.delay, self.fail_at, self.keep = delay, fail_at, keep
        self.events: list[str] = []
        self.threads: set[str] = set()
        self.types: set[type] = set()

    def write(self, batch, result):
        self.threads.add(threading.current_thread().name)
        self.types.add(type(result))
        self.events.append(f"write {batch.start}")
        if self.fail_at == len(self.events):
            raise OutputError("disk full")
        time.sleep(self.delay)
        if self.keep:
            super().write(batch, result)

    def close(self):
        self.events.append("close")
        super().close()

    def abort(self):
        self.events.append("abort")
        super().abort()


class SlowSource(TensorSource):
    """A tensor source whose batches take ``delay`` s each to 'decode'; records the reading thread; can fail."""

    def __init__(self, frames, delay: float = 0.0, fail_at: int | None = None):
        super().__init__(frames)
        self.delay, self.fail_at = delay, fail_at
        self.threads: set[str] = set()
        self.closed_in: str | None = None

    def batches(self, batch_size):
        try:
            for k, b in enumerate(super().batches(batch_size)):
                self.threads.add(threading.current_thread().name)
                if self.fail_at == k:
                    raise InputError("frame 7: damaged")
                time.sleep(self.delay)
                yield b
        finally:
            self.closed_in = threading.current_thread().name


# ------------------------------------------------------------------------------------------------ prefetch


def test_prefetcher_order_bounded_errors_and_close():
    made: list[int] = []

    def make():
        for i in range(20):
            made.append(i)
            yield i

    with Prefetcher(make, 2) as p:
        got = []
        for item in p:
            time.sleep(0.01)
            assert len(made) - len(got) <= 2 + 2          # at most depth queued + one being made + the one here
            got.append(item)
    assert got == list(range(20))

    def failing():
        yield 1
        yield 2
        raise InputError("frame 3: damaged")

    p = Prefetcher(failing, 2)
    assert next(p) == 1 and next(p) == 2
    with pytest.raises(InputError, match="frame 3"):
        next(p)
    p.close()

    closed: list[str] = []

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.append(threading.current_thread().name)

    p = Prefetcher(endless, 3)
    assert next(p) == 0
    p.close()
    assert closed == ["simswap-reader"] and "simswap-reader" not in _threads()   # closed in its own thread
    with pytest.raises(StopIteration):
        next(p)
    sync = Prefetcher(lambda: iter([1, 2]), 0)                  # depth 0: no thread
    assert list(sync) == [1, 2] and sync._thread is None
    with pytest.raises(ValueError, match="depth"):
        Prefetcher(lambda: iter([]), -1)


def test_background_writer_order_errors_and_stop():
    sink = Sink(delay=0.01)
    w = BackgroundWriter(sink, 2)
    for i in range(5):
        w.write(FrameBatch(torch.zeros(1, 3, 2, 2), i), Result(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2),
                                                                 DetectedFaces.empty([(2, 2)]), None, None))
    w.finish()
    assert sink.events == [f"write {i}" for i in range(5)] and sink.threads == {"simswap-writer"}

    sink = Sink(fail_at=2)
    w = BackgroundWriter(sink, 2)
    batch = FrameBatch(torch.zeros(1, 3, 2, 2), 0)
    res = Result(torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2), DetectedFaces.empty([(2, 2)]), None, None)
    with pytest.raises(OutputError, match="disk full"):      # raised at a later write() or at finish()
        for _ in range(10):
            w.write(batch, res)
        w.finish()
    w.stop()
    assert "simswap-writer" not in _threads()

    sink = Sink(delay=0.2)
    w = BackgroundWriter(sink, 3)
    for _ in range(4):
        w.write(batch, res)
    w.stop()                                                  # the write in progress ends, queued ones dropped
    assert 1 <= len(sink.events) <= 2 and "simswap-writer" not in _threads()


# ------------------------------------------------------------------------------------------------ run()


def test_decode_and_encode_run_in_their_threads_and_overlap():
    """Decode, compute and encode each take 80 ms per batch: one after the other (prefetch=0) 8 batches take
    about 1.9 s, overlapped about 0.8 s. Compared with the serial run of the same test (a loaded machine slows
    both)."""
    frames = _marker(16)

    def timed(prefetch):
        source, swapper, sink = SlowSource(frames, delay=0.08), Swapper(delay=0.08), Sink(delay=0.08)
        t0 = time.perf_counter()
        summary = run(source, swapper, sink, "ident", batch_size=2, prefetch=prefetch)
        return time.perf_counter() - t0, summary, source, swapper, sink

    serial, sync_summary, sync_source, _, sync_sink = timed(0)
    took, summary, source, swapper, sink = timed(2)
    assert took < 0.75 * serial, f"decode / swap / encode did not overlap: {took:.2f} s, serial {serial:.2f} s"
    assert source.threads == {"simswap-reader"} and sink.threads == {"simswap-writer"}
    assert swapper.threads == {threading.current_thread().name}
    assert sync_source.threads == sync_sink.threads == {threading.current_thread().name}   # prefetch=0: no threads
    assert sink.events == [f"write {i}" for i in range(0, 16, 2)] + ["close"] == sync_sink.events
    assert torch.equal(sink.result().images, 1.0 - frames)
    assert torch.equal(sync_sink.result().images, sink.result().images)
    assert summary == sync_summary and summary.frames == 16 and summary.faces_swapped == 16 and _threads() == []


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_worker_threads_leave_ctrl_c_to_the_main_thread():
    """The reader and writer threads block SIGINT / SIGTERM, so Ctrl-C always raises KeyboardInterrupt in the
    caller (and never lands in a worker while the caller holds the signals to clean up)."""
    masks = {}

    class Source(TensorSource):
        def batches(self, batch_size):
            masks["reader"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])
            yield from super().batches(batch_size)

    class Writer(Sink):
        def write(self, batch, result):
            masks["writer"] = signal.pthread_sigmask(signal.SIG_BLOCK, [])
            super().write(batch, result)

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    run(Source(_marker(3)), Swapper(), Writer(), "ident")
    assert set(masks) == {"reader", "writer"}
    assert all({signal.SIGINT, signal.SIGTERM} <= m for m in masks.values())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before and signal.SIGINT not in before


def test_writer_gets_the_light_result_unless_it_keeps_crops():
    sink = Sink()
    run(TensorSource(_marker(5)), Swapper(), sink, "ident", batch_size=2)
    assert sink.types == {FrameResult}
    res = sink.result()
    assert isinstance(res, FrameResult) and not hasattr(res, "aligned") and not hasattr(res, "swapped")
    assert res.images.shape == (5, 3, 8, 8) and len(res.faces) == 5
    assert res.faces.boxes[:, 0].tolist() == list(range(5)) and res.faces.frame_index.tolist() == list(range(5))
    assert res.identity_slots.tolist() == [0, 1, 0, 1, 0]
    assert res.summary() == "swapped 5 faces in 5 frames"
    keep = Sink(keep_crops=True)
    run(TensorSource(_marker(3)), Swapper(), keep, "ident", batch_size=2)
    assert keep.types == {Result}


@pytest.mark.parametrize("where", ["reader", "swap", "writer", "progress", "interrupt"])
def test_any_error_aborts_once_stops_the_threads_and_leaves_nothing(tmp_path, where):
    clip = _write_clip(tmp_path / "in.mp4", 12)
    source = VideoSource(clip)
    if where == "reader":
        source.batches = _failing_batches(source.batches, at=2)     # type: ignore[method-assign]
    swapper = Swapper(fail_at=3 if where == "swap" else None,
                      error=KeyboardInterrupt if where == "interrupt" else RuntimeError)
    if where == "interrupt":
        swapper.fail_at = 3
    out = tmp_path / "out.mp4"
    sink = _SpyVideoSink(out, source, fail_at=2 if where == "writer" else None)

    def progress(done, total):
        if where == "progress" and done >= 6:
            raise InterruptedError("cancelled")

    expected = {"reader": InputError, "swap": RuntimeError, "writer": OutputError, "progress": InterruptedError,
                "interrupt": KeyboardInterrupt}[where]
    with pytest.raises(expected):
        run(source, swapper, sink, "ident", batch_size=2, progress=progress)
    assert sink.events.count("abort") == 1 and "close" not in sink.events
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]      # no output, no temporary file
    assert _threads() == []


def test_tensor_source_error_mid_run_raised_after_earlier_batches():
    source = SlowSource(_marker(10), fail_at=3)
    sink = Sink()
    with pytest.raises(InputError, match="frame 7: damaged"):
        run(source, Swapper(), sink, "ident", batch_size=2)
    assert sink.events[-1] == "abort" and sink.events.count("abort") == 1
    assert set(sink.events[:-1]) <= {"write 0", "write 2", "write 4"} and sink.parts == []
    assert source.closed_in == "simswap-reader" and _threads() == []


def test_frames_without_face_error_names_frames_of_the_whole_source():
    from simswap_core.swap import FramesWithoutFaceError

    class NoFace(Swapper):
        def swap(self, frames, identity, **kw):
            if _numbers(frames)[0] >= 4:
                raise FramesWithoutFaceError("nothing to swap in frame 1: no face detected (of 2 frames)", [1],
                                             ["no face detected"], 2, "yunet")
            return super().swap(frames, identity, **kw)

    sink = Sink()
    with pytest.raises(FramesWithoutFaceError, match=r"frames: nothing to swap in frame 5: no face detected "
                                                     r"\(of 8 frames; detector yunet\)") as caught:
        run(TensorSource(_marker(8)), NoFace(), sink, "ident", batch_size=2)
    assert caught.value.frames == [5] and caught.value.total == 8 and sink.events[-1] == "abort"


def test_memory_does_not_grow_with_the_input_length():
    """Frames alive at once stay bounded (prefetch queue + writer queue + tracker lookahead), however long the
    input: nothing keeps finished batches, crops or results."""
    alive = [0]
    peak = [0]

    class Generated:
        kind, name = "tensor", "generated"

        def __init__(self, n):
            self.total = n

        def batches(self, batch_size):
            for start in range(0, self.total, batch_size):
                frames = _marker(min(batch_size, self.total - start), start)
                alive[0] += 1
                weakref.finalize(frames, lambda: alive.__setitem__(0, alive[0] - 1))
                yield FrameBatch(frames, start)

    class Watching(Swapper):
        def swap(self, frames, identity, **kw):
            peak[0] = max(peak[0], alive[0])
            return super().swap(frames, identity, **kw)

    peaks = []
    for n in (40, 240):
        peak[0] = 0
        sink = Sink(keep=False, delay=0.001)
        summary = run(Generated(n), Watching(), sink, "ident", batch_size=4, tracker=FakeTracker(lookahead=6))
        assert summary.frames == n and summary.faces_swapped == n
        peaks.append(peak[0])
    # reader queue 2 + one being read + pending (6 + 4 frames: 3-4 batches) + writer queue 2 + one being written
    assert peaks[1] <= 12 and peaks[1] <= peaks[0] + 1, f"batches alive at once: {peaks} for 40 / 240 frames"
    assert alive[0] == 0


# ------------------------------------------------------------------------------------------------ files


def _write_clip(path: Path, n: int, *, size: tuple[int, int] = (48, 64), pts: list[int] | None = None,
                time_base: Fraction = Fraction(1, 30), audio: bool = False) -> Path:
    """An H.264 clip of n flat frames (grey level 10 + 20 i) with PyAV directly; pts in time_base units (VFR when
    irregular); odd sizes as yuv444p; a sine audio track (AAC) as long as the video."""
    h, w = size
    pts = list(range(n)) if pts is None else pts
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=30)
    v.height, v.width = h, w
    v.pix_fmt = "yuv420p" if h % 2 == 0 and w % 2 == 0 else "yuv444p"
    v.time_base = time_base
    v.codec_context.time_base = time_base
    a = None
    if audio:
        a = out.add_stream("aac", rate=44100)
        a.layout = "mono"
    for i in range(n):
        vf = av.VideoFrame.from_ndarray(np.full((h, w, 3), 10 + 20 * i, np.uint8), format="rgb24")
        vf.pts = pts[i]
        vf.time_base = time_base
        out.mux(v.encode(vf))
    out.mux(v.encode(None))
    if a is not None:
        seconds = float((pts[-1] + 1) * time_base)
        for k in range(int(seconds * 44100 / 1024) + 1):
            t = (np.arange(1024) + k * 1024) / 44100
            af = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                            format="fltp", layout="mono")
            af.sample_rate = 44100
            af.pts = k * 1024
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    out.close()
    return path


def _times(path: Path) -> list[Fraction]:
    """Presentation time of each frame, exact (pts x time base)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [Fraction(f.pts) * Fraction(f.time_base) for f in c.decode(s)]


def _levels(path: Path) -> list[int]:
    return [round(float(v) * 255) for b in iter_video_frames(path, 8) for v in b.mean((1, 2, 3))]


def _failing_batches(batches, at: int):
    def wrapped(batch_size):
        for k, b in enumerate(batches(batch_size)):
            if k == at:
                raise InputError("frame 5: damaged packet")
            yield b
    return wrapped


class _SpyVideoSink(VideoSink):
    def __init__(self, *a, fail_at=None, **kw):
        super().__init__(*a, **kw)
        self.events: list[str] = []
        self.fail_at = fail_at

    def write(self, batch, result):
        self.events.append("write")
        if self.fail_at == len(self.events):
            raise OutputError("no space left on device")
        super().write(batch, result)

    def close(self):
        self.events.append("close")
        super().close()

    def abort(self):
        self.events.append("abort")
        super().abort()


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_variable_frame_rate_timestamps_and_audio_kept(tmp_path, ext):
    pts = [0, 33, 50, 120, 130, 200, 333, 340, 400, 520, 600, 601, 700]          # milliseconds, irregular
    clip = _write_clip(tmp_path / f"vfr{ext}", len(pts), pts=pts, time_base=Fraction(1, 1000), audio=True)
    source = VideoSource(clip)
    assert source.info.time_base is not None
    out = tmp_path / f"out{ext}"
    summary = run(source, Swapper(), VideoSink(out, source), "ident", batch_size=4,
                  tracker=FakeTracker(lookahead=3))
    assert summary.frames == len(pts)
    assert _times(out) == _times(clip) == [Fraction(p, 1000) for p in pts]       # every timestamp kept exactly
    assert count_frames(out) == len(pts)
    assert all(abs(a - (255 - b)) <= 3 for a, b in zip(_levels(out), _levels(clip)))   # order kept (inverted)
    assert probe_video(out).has_audio
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        seconds = sum(f.samples for p in c.demux(a) for f in p.decode()) / a.rate
    assert seconds >= 0.7 - 0.05


def test_odd_size_and_constant_rate(tmp_path):
    clip = _write_clip(tmp_path / "odd.mp4", 7, size=(33, 47))
    source = VideoSource(clip)
    out = tmp_path / "o.mp4"
    run(source, Swapper(), VideoSink(out, source), "ident", batch_size=3)
    info = probe_video(out)
    assert (info.width, info.height) == (47, 33) and count_frames(out) == 7 and info.fps == Fraction(30)
    assert _times(out) == [Fraction(i, 30) for i in range(7)]


def test_sink_from_video_info_with_audio_from_a_wav(tmp_path):
    """Frames from a tensor (no timestamps) into a VideoSink built from a VideoInfo, audio from a WAV file."""
    wav = tmp_path / "a.wav"
    with av.open(str(wav), "w") as out:
        a = out.add_stream("pcm_s16le", rate=16000)
        a.layout = "mono"
        af = av.AudioFrame.from_ndarray((np.sin(np.arange(8000) / 5) * 9000).astype(np.int16)[None], format="s16",
                                        layout="mono")
        af.sample_rate = 16000
        af.pts = 0
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    from simswap_core.io.video import VideoInfo

    info = VideoInfo(Path("frames"), 16, 12, Fraction(25), 10, True, "rawvideo")
    sink = VideoSink(tmp_path / "v.mp4", info, audio_from=wav)
    run(TensorSource(_marker(10, h=12, w=16)), Swapper(), sink, "ident", batch_size=4)
    assert count_frames(tmp_path / "v.mp4") == 10 and probe_video(tmp_path / "v.mp4").has_audio
    assert _times(tmp_path / "v.mp4") == [Fraction(i, 25) for i in range(10)]
    silent = VideoSink(tmp_path / "s.mp4", info)                            # a VideoInfo alone: no audio
    run(TensorSource(_marker(3, h=12, w=16)), Swapper(), silent, "ident")
    assert not probe_video(tmp_path / "s.mp4").has_audio


# ------------------------------------------------------------------------------------------------ tracker loop


class FakeTracker:
    """Follows FaceTracker's protocol: holds back ``lookahead`` frames; pop() releases the frames before them with
    track ids (frame number // 5: a new track every 5 frames), every third face marked as filled; a cut every 10
    frames. Checks that push() gets the faces of the frames it is given."""

    def __init__(self, lookahead: int = 4):
        self.lookahead = lookahead
        self.cuts: list[int] = []
        self.pushed = 0
        self.released = 0
        self._faces: list[DetectedFaces] = []
        self.max_pending = 0
        self.releases: list[int] = []

    def push(self, detected: DetectedFaces, frames: torch.Tensor) -> None:
        assert detected.num_frames == frames.shape[0]
        assert detected.boxes[:, 0].tolist() == _numbers(frames)
        self.cuts += [self.pushed + i for i in range(frames.shape[0]) if (self.pushed + i) % 10 == 0 and
                      self.pushed + i > 0]
        self._faces.append(detected)
        self.pushed += detected.num_frames
        self.max_pending = max(self.max_pending, self.pushed - self.released)

    def pop(self, final: bool = False) -> DetectedFaces:
        allf = DetectedFaces.concat(self._faces)
        n = allf.num_frames if final else max(0, allf.num_frames - self.lookahead)
        out, rest = allf.frames(0, n), allf.frames(n, allf.num_frames)
        self._faces = [rest]
        number = out.boxes[:, 0].long()
        out = out.replace(track_id=number // 5, interpolated=number % 3 == 0)
        self.released += n
        self.releases.append(n)
        return out


@pytest.mark.parametrize("lookahead,batch_size", [(0, 3), (4, 3), (6, 2), (3, 8)])
def test_tracked_loop_swaps_the_released_frames_with_their_faces(lookahead, batch_size):
    frames = _marker(23)
    tracker = FakeTracker(lookahead)
    swapper = Swapper()
    sink = Sink()
    seen = []
    summary = run(TensorSource(frames), swapper, sink, "ident", batch_size=batch_size, tracker=tracker,
                  progress=lambda d, t: seen.append(d), select="all")
    # every frame swapped once, in order, with the tracker's faces (the Swapper checks they match the frames)
    assert [n for c in swapper.calls for n in c["frames"]] == list(range(23))
    assert all(c["faces"].track_id is not None and c["select"] == "all" for c in swapper.calls)
    assert tracker.max_pending <= lookahead + batch_size
    assert sum(tracker.releases) == 23
    assert torch.equal(sink.result().images, 1.0 - frames)
    assert sink.events[-1] == "close" and [int(e.split()[1]) for e in sink.events[:-1]] == sorted(
        int(e.split()[1]) for e in sink.events[:-1])
    assert seen == sorted(set(seen)) and seen[-1] == 23
    assert summary == RunSummary(frames=23, faces_swapped=23, frames_without_face=[], tracks=5,
                                 faces_filled=len(range(0, 23, 3)), faces_per_identity=[12, 11], cuts=[10, 20])


def test_tracked_loop_with_given_faces_and_bad_trackers():
    frames = _marker(9)
    faces = _faces_of(frames)
    swapper = Swapper()
    run(TensorSource(frames), swapper, Sink(), "ident", batch_size=4, faces=faces, tracker=FakeTracker(2))
    assert [n for c in swapper.calls for n in c["frames"]] == list(range(9))

    class Greedy(FakeTracker):                # never releases anything before the end: memory would grow
        def pop(self, final=False):
            return super().pop(final) if final else DetectedFaces.empty([])

    sink = Sink()
    with pytest.raises(RuntimeError, match="holds back"):
        run(TensorSource(_marker(30)), Swapper(), sink, "ident", batch_size=4, tracker=Greedy(2))
    assert sink.events[-1] == "abort"
    with pytest.raises(InputError, match="tracker: expected a tracking.FaceTracker"):
        run(TensorSource(frames), Swapper(), Sink(), "ident", tracker=object())
    with pytest.raises(InputError, match="smoothing"):
        run(TensorSource(frames), Swapper(), Sink(), "ident", tracker=FakeTracker(), smoothing=lambda f: f)
    with pytest.raises(InputError, match="prefetch"):
        run(TensorSource(frames), Swapper(), Sink(), "ident", prefetch=-1)


def test_folder_of_mixed_sizes_through_the_tracker(tmp_path):
    """Released frames of different sizes are swapped in separate calls (a batch holds one size)."""
    from PIL import Image

    from simswap_core.io.frames import FolderSource

    d = tmp_path / "f"
    d.mkdir()
    for i in range(7):
        side = 8 if i < 4 else 12
        Image.fromarray(np.full((side, side, 3), i, np.uint8)).save(d / f"f{i}.png")
    swapper = Swapper()
    sink = Sink()
    summary = run(FolderSource(d), swapper, sink, "ident", batch_size=3, tracker=FakeTracker(2))
    assert summary.frames == 7 and [n for c in swapper.calls for n in c["frames"]] == list(range(7))
    assert len(sink.parts) >= 3 and sink.events[-1] == "close"


def test_frame_result_concat_and_reasons():
    from simswap_core.faces import DetectedFaces as DF

    a = FrameResult(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4), DF.empty([(4, 4)] * 2), [0, 1],
                    ["no face detected", "no face detected"], torch.zeros(0, dtype=torch.int64))
    b = FrameResult(torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4), _faces_of(_marker(1, h=4, w=4)), [], [],
                    torch.ones(1, dtype=torch.int64))
    joined = FrameResult.concat([a, b])
    assert joined.images.shape[0] == 3 and joined.frames_without_face == [0, 1]
    assert joined.faces.frame_index.tolist() == [2] and joined.identity_slots.tolist() == [1]
    assert joined.summary() == "swapped 1 face in 1 of 3 frames; nothing swapped in frames 0, 1: no face detected"


# ------------------------------------------------------------------------------------------------ real swaps


def test_real_swap_with_the_face_tracker_through_files(tmp_path, fast_swapper, pl_identity):
    """A short two-person clip through run() with tracking.FaceTracker: frame count, order, timestamps and
    audio kept; two tracks; the sink got light results; nothing left running."""
    from video_fixtures import make_clip, read_frame_numbers

    from simswap_core.tracking import FaceTracker

    info = make_clip(tmp_path / "clip.mp4", frames=8, size=(320, 180), people=2, audio=True, vfr=True)
    source = VideoSource(info.path)
    out = tmp_path / "out.mp4"
    sink = VideoSink(out, source)
    summary = run(source, fast_swapper, sink, pl_identity, batch_size=4, tracker=FaceTracker(0.5, max_gap=3),
                  if_no_face="keep")
    assert summary.frames == 8 and summary.faces_swapped == 16 and summary.tracks == 2
    assert summary.faces_per_identity == [16] and summary.frames_without_face == [] and summary.cuts == []
    assert read_frame_numbers(out) == list(range(8))
    assert _times(out) == _times(info.path)
    assert probe_video(out).has_audio and _threads() == []
