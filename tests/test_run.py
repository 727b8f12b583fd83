"""simswap_core.run: the one frame loop. Progress over batches, the summary's global frame indices, faces= sliced
per batch, sink.abort() on an exception or Ctrl-C (nothing left), and the loop giving what one swap() call gives.
The streaming parts (threads, tracker, timestamps, memory) are in test_streaming.py."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline_fixtures import astronaut_small, to_tensor
from simswap_core.errors import InputError
from simswap_core.faces import DetectedFaces
from simswap_core.io.frames import FolderSink, FolderSource, ImageSink, ImageSource, TensorSink, TensorSource
from simswap_core.run import RunSummary, run


@dataclass
class FakeResult:
    images: torch.Tensor
    mask: torch.Tensor
    faces: list
    frames_without_face: list[int] = field(default_factory=list)


class FakeSwapper:
    """swap() reports progress frame by frame, 'swaps' one face into even frames (of the call), can fail."""

    def __init__(self, fail_at_call: int | None = None, error: type[BaseException] = RuntimeError):
        self.calls: list[dict] = []
        self.fail_at_call, self.error = fail_at_call, error

    def swap(self, frames, identity, *, batch_size, progress=None, **options):
        self.calls.append({"n": frames.shape[0], "batch_size": batch_size, **options})
        if self.fail_at_call == len(self.calls):
            raise self.error("boom")
        n = frames.shape[0]
        for i in range(n):
            if progress is not None:
                progress(i + 1, n)
        return FakeResult(1.0 - frames, frames[:, :1] * 0, [object()] * ((n + 1) // 2),
                          [i for i in range(n) if i % 2])


class SpySink(TensorSink):
    def __init__(self):
        super().__init__()
        self.events: list[str] = []

    def write(self, batch, result):
        self.events.append(f"write {batch.start}")
        super().write(batch, result)

    def close(self):
        self.events.append("close")

    def abort(self):
        self.events.append("abort")
        super().abort()


def _faces(counts: list[int]) -> DetectedFaces:
    """DetectedFaces of len(counts) 8x8 frames, counts[i] faces in frame i (box x1 = frame index)."""
    fi = torch.tensor([i for i, c in enumerate(counts) for _ in range(c)], dtype=torch.int64)
    boxes = torch.zeros(len(fi), 4)
    boxes[:, 0] = fi.float()
    return DetectedFaces(boxes, torch.zeros(len(fi), 5, 2), torch.ones(len(fi)), fi, [(8, 8)] * len(counts))


def test_progress_across_batches_and_summary():
    seen: list[tuple[int, int | None]] = []
    sink = SpySink()
    swapper = FakeSwapper()
    summary = run(TensorSource(torch.rand(7, 3, 8, 8)), swapper, sink, "ident", batch_size=3,
                  progress=lambda d, t: seen.append((d, t)), select="all")
    done = [d for d, _ in seen]
    assert done == sorted(set(done)) and done[-1] == 7 and all(t == 7 for _, t in seen)
    assert done == list(range(1, 8))                                     # frame by frame, each count once
    assert [c["n"] for c in swapper.calls] == [3, 3, 1]
    assert all(c["batch_size"] == 3 and c["select"] == "all" and "faces" not in c for c in swapper.calls)
    assert sink.events == ["write 0", "write 3", "write 6", "close"]
    # faces: 2 + 2 + 1; frames without face: odd frames of each call, as indices of the whole source
    assert summary == RunSummary(frames=7, faces_swapped=5, frames_without_face=[1, 4])


def test_progress_without_swap_reports():
    class Silent(FakeSwapper):
        def swap(self, frames, identity, *, batch_size, progress=None, **options):
            return super().swap(frames, identity, batch_size=batch_size, progress=None, **options)

    seen = []
    run(TensorSource(torch.rand(5, 3, 8, 8)), Silent(), TensorSink(), "ident", batch_size=2,
        progress=lambda d, t: seen.append(d))
    assert seen == [2, 4, 5]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_abort_on_error_leaves_no_output(tmp_path, error):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(frames_dir / f"f{i}.png")
    out = tmp_path / "out"
    sink = FolderSink(out)
    with pytest.raises(error, match="boom"):
        run(FolderSource(frames_dir), FakeSwapper(fail_at_call=2, error=error), sink, "ident", batch_size=2)
    assert not out.exists()                                              # first batch was staged, then dropped
    spy = SpySink()
    with pytest.raises(error):
        run(TensorSource(torch.rand(4, 3, 8, 8)), FakeSwapper(fail_at_call=2, error=error), spy, "ident",
            batch_size=2, prefetch=0)                                    # no threads: writes at once
    assert spy.events == ["write 0", "abort"] and spy.parts == []
    spy = SpySink()
    with pytest.raises(error):                                           # background writer: the write of the
        run(TensorSource(torch.rand(4, 3, 8, 8)), FakeSwapper(fail_at_call=2, error=error), spy, "ident",
            batch_size=2)                                                # first batch may be dropped, one abort
    assert spy.events in (["write 0", "abort"], ["abort"]) and spy.parts == []
    # a one-image run that fails writes nothing
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(error):
        run(ImageSource(tmp_path / "one.png"), FakeSwapper(fail_at_call=1, error=error),
            ImageSink(tmp_path / "one_out.png"), "ident")
    assert not (tmp_path / "one_out.png").exists()


def test_faces_sliced_per_batch():
    counts = [1, 0, 2, 1, 3]
    faces = _faces(counts)
    swapper = FakeSwapper()
    run(TensorSource(torch.rand(5, 3, 8, 8)), swapper, TensorSink(), "ident", batch_size=2, faces=faces)
    got = [c["faces"] for c in swapper.calls]
    assert [f.num_frames for f in got] == [2, 2, 1]
    assert [f.counts() for f in got] == [[1, 0], [2, 1], [3]]
    for f, start in zip(got, (0, 2, 4)):                                  # frame indices from 0 in each batch
        assert torch.equal(f.boxes[:, 0], f.frame_index.float() + start)
    with pytest.raises(InputError, match="5 frame"):
        run(TensorSource(torch.rand(5, 3, 8, 8)), swapper, TensorSink(), "ident", faces=_faces([1, 1]))


def test_run_matches_one_swap_call(pl_swapper, pl_identity):
    """The loop over batches gives what one swap() over all frames gives (swap chunks the same way)."""
    base = astronaut_small(128)
    frames = torch.cat([to_tensor(np.roll(base, 3 * i, 1).copy()) for i in range(3)])
    whole = pl_swapper.swap(frames, pl_identity, batch_size=2)
    sink = TensorSink()
    summary = run(TensorSource(frames), pl_swapper, sink, pl_identity, batch_size=2)
    res = sink.result()
    assert torch.equal(res.images, whole.images) and torch.equal(res.mask, whole.mask)
    assert summary.frames == 3 and summary.faces_swapped == len(whole.faces) == 3
    assert torch.equal(res.faces.frame_index, whole.faces.frame_index)


def test_summary_counts_tracks_and_identities_of_a_real_swap(fast_swapper, pl_identity):
    """The new summary fields from a real SwapResult: one track (LandmarkSmoother ids), faces per identity slot;
    the sink gets the light result (no crops) unless it keeps crops."""
    from simswap_core.run import FrameResult
    from simswap_core.tracking import LandmarkSmoother

    base = astronaut_small(128)
    frames = torch.cat([to_tensor(np.roll(base, 2 * i, 1).copy()) for i in range(3)])
    sink = TensorSink()
    summary = run(TensorSource(frames), fast_swapper, sink, pl_identity, batch_size=2,
                  smoothing=LandmarkSmoother(0.5))
    assert summary == RunSummary(frames=3, faces_swapped=3, frames_without_face=[], tracks=1, faces_filled=0,
                                 faces_per_identity=[3], cuts=[])
    res = sink.result()
    assert isinstance(res, FrameResult) and res.faces.track_id.tolist() == [0, 0, 0]
    keep = TensorSink(keep_crops=True)
    run(TensorSource(frames[:1]), fast_swapper, keep, pl_identity)
    assert keep.result().swapped.shape == (1, 3, 64, 64)                 # the full SwapResult, crops and all
