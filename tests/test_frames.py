"""simswap_core.io.frames: frame_ranges, the sources (image, folder, video, tensor) and the sinks (image, folder,
video, tensor): counts, order, start indices, output checks, commit on close only, nothing complete after abort."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from simswap_core.errors import InputError
from simswap_core.io.frames import (
    FolderSink,
    FolderSource,
    ImageSink,
    ImageSource,
    TensorSink,
    TensorSource,
    VideoSource,
    frame_ranges,
    open_sink,
    open_source,
)
from simswap_core.io.images import read_image
from simswap_core.io.video import count_frames, iter_video_frames, probe_video


def _result(frames: torch.Tensor) -> SimpleNamespace:
    """A stand-in swap result: the frames inverted (so written outputs differ from the inputs)."""
    return SimpleNamespace(images=1.0 - frames, mask=frames[:, :1] * 0)


def _write_video(path: Path, n: int, size: int = 64, fps: int = 25) -> None:
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=Fraction(fps))
        v.height = v.width = size
        v.pix_fmt = "yuv420p"
        v.options = {"crf": "10"}
        for i in range(n):
            vf = av.VideoFrame.from_ndarray(np.full((size, size, 3), 20 * i, np.uint8), format="rgb24")
            vf.pts = i
            out.mux(v.encode(vf))
        out.mux(v.encode(None))


@pytest.fixture
def folder(tmp_path) -> Path:
    """f1, f2 (RGBA), f10 (16x16, a size change) and a hidden file; natural order f1, f2, f10."""
    d = tmp_path / "frames"
    d.mkdir()
    Image.fromarray(np.full((8, 8, 3), 10, np.uint8)).save(d / "f1.png")
    Image.fromarray(np.full((8, 8, 4), 20, np.uint8), "RGBA").save(d / "f2.png")
    Image.fromarray(np.full((16, 16, 3), 30, np.uint8)).save(d / "f10.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / ".hidden.png")
    return d


# ------------------------------------------------------------------------------------------------ frame_ranges

@pytest.mark.parametrize("total,bs,want", [(0, 3, []), (1, 1, [(0, 1)]), (3, 10, [(0, 3)]), (4, 4, [(0, 4)]),
                                           (5, 2, [(0, 2), (2, 4), (4, 5)])])
def test_frame_ranges(total, bs, want):
    assert list(frame_ranges(total, bs)) == want


@pytest.mark.parametrize("total,bs", [(3, 0), (3, -1), (3, 1.5), (-1, 2)])
def test_frame_ranges_rejects(total, bs):
    with pytest.raises(ValueError):
        list(frame_ranges(total, bs))


# ------------------------------------------------------------------------------------------------ sources

def test_tensor_source_slices():
    frames = torch.rand(5, 3, 4, 6)
    src = TensorSource(frames)
    assert src.total == 5 and src.kind == "tensor"
    batches = list(src.batches(2))
    assert [(b.start, len(b), b.stop) for b in batches] == [(0, 2, 2), (2, 2, 4), (4, 1, 5)]
    assert all(b.items is None for b in batches)
    for b in batches:
        assert b.frames.data_ptr() == frames[b.start].data_ptr()          # views, not copies
        assert torch.equal(b.frames, frames[b.start:b.stop])
    assert [b.start for b in src.batches(5)] == [0]                      # batches() can be run again
    assert TensorSource(frames[0]).total == 1                            # one [3,H,W] image
    with pytest.raises(InputError):
        TensorSource(torch.rand(2, 4, 8, 8))


def test_image_source_keeps_file_details(folder):
    src = ImageSource(folder / "f2.png")
    (batch,) = list(src.batches(8))
    assert src.total == 1 and src.name == "f2.png" and batch.start == 0
    assert batch.frames.shape == (1, 3, 8, 8) and batch.frames.dtype == torch.float32
    assert batch.items[0].alpha is not None and batch.items[0].path == folder / "f2.png"


def test_folder_source_order_and_starts(folder):
    src = FolderSource(folder)
    assert src.total == 3 and [f.name for f in src.files] == ["f1.png", "f2.png", "f10.png"]
    batches = list(src.batches(8))
    # the 16x16 frame starts a new batch
    assert [(b.start, [i.path.name for i in b.items]) for b in batches] == [(0, ["f1.png", "f2.png"]),
                                                                           (2, ["f10.png"])]
    assert [round(float(b.frames[0, 0, 0, 0]) * 255) for b in batches] == [10, 30]
    assert [b.start for b in src.batches(1)] == [0, 1, 2]


def test_video_source_count_order_fps(tmp_path):
    vid = tmp_path / "clip.mp4"
    _write_video(vid, 6, fps=30)
    src = VideoSource(vid)
    assert src.total == 6 and src.fps == Fraction(30) and src.size == (64, 64)
    batches = list(src.batches(4))
    assert [(b.start, len(b)) for b in batches] == [(0, 4), (4, 2)]
    marks = [round(float(v) * 255 / 20) for b in batches for v in b.frames.mean((1, 2, 3))]
    assert marks == list(range(6))


def test_open_source_kinds_and_messages(tmp_path, folder):
    vid = tmp_path / "c.mp4"
    _write_video(vid, 2)
    assert isinstance(open_source(folder), FolderSource)
    assert isinstance(open_source(folder / "f1.png"), ImageSource)
    assert isinstance(open_source(vid), VideoSource)
    with pytest.raises(FileNotFoundError, match="--target .*missing.png: no such file or folder"):
        open_source(tmp_path / "missing.png")
    (tmp_path / "t.txt").write_text("x")
    with pytest.raises(InputError, match="expected an image"):
        open_source(tmp_path / "t.txt")


# ------------------------------------------------------------------------------------------------ sink checks

def test_open_sink_refuses_existing_outputs(tmp_path, folder):
    img = ImageSource(folder / "f1.png")
    existing = tmp_path / "out.png"
    existing.write_bytes(b"x")
    with pytest.raises(InputError, match="--out .*out.png: already exists; pass --overwrite"):
        open_sink(existing, img)
    assert open_sink(existing, img, overwrite=True).path == existing
    (tmp_path / "dir").mkdir()
    assert open_sink(tmp_path / "dir", img).path == tmp_path / "dir" / "f1.png"   # a folder: the target's name
    with pytest.raises(InputError, match="--out must be a folder"):
        open_sink(existing, FolderSource(folder))
    with pytest.raises(InputError, match="lies inside the input folder"):
        open_sink(folder, FolderSource(folder))
    out = tmp_path / "o"
    out.mkdir()
    (out / "f2.png").write_bytes(b"x")
    with pytest.raises(InputError, match=r"1 output file\(s\) already exist \(e.g. f2.png\)"):
        open_sink(out, FolderSource(folder))
    assert isinstance(open_sink(out, FolderSource(folder), overwrite=True), FolderSink)
    vid = tmp_path / "c.mp4"
    _write_video(vid, 2)
    (tmp_path / "v.mp4").write_bytes(b"x")
    with pytest.raises(InputError, match="already exists"):
        open_sink(tmp_path / "v.mp4", VideoSource(vid))
    assert isinstance(open_sink(None, img), TensorSink)


# ------------------------------------------------------------------------------------------------ sinks

def _feed(source, sink, batch_size: int = 2) -> None:
    for b in source.batches(batch_size):
        sink.write(b, _result(b.frames))


def test_image_sink_writes_like_input_on_close(tmp_path, folder):
    src = ImageSource(folder / "f2.png")
    sink = ImageSink(tmp_path / "o.png")
    _feed(src, sink)
    assert not (tmp_path / "o.png").exists()                             # nothing before close
    sink.close()
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "RGBA" and np.asarray(out)[0, 0].tolist() == [235, 235, 235, 20]
    sink = ImageSink(tmp_path / "aborted.png")
    _feed(src, sink)
    sink.abort()
    assert not (tmp_path / "aborted.png").exists()


def test_folder_sink_commit_and_abort(tmp_path, folder):
    src = FolderSource(folder)
    out = tmp_path / "out"
    sink = open_sink(out, src)
    _feed(src, sink)
    assert not out.exists()                                   # staged next to it, not yet in place
    assert [p.name.startswith(".out.simswap-partial-") for p in tmp_path.iterdir() if p.name != folder.name] == [True]
    sink.close()
    assert sorted(p.name for p in out.iterdir()) == ["f1.png", "f10.png", "f2.png"]
    assert read_image(out / "f2.png").alpha is not None
    assert round(float(read_image(out / "f10.png").image[0, 0, 0, 0]) * 255) == 225
    # aborted part way: no output files, and the folder it created is gone
    out2 = tmp_path / "out2"
    sink = open_sink(out2, src)
    sink.write(next(src.batches(2)), _result(next(src.batches(2)).frames))
    sink.abort()
    assert not out2.exists()
    # an existing folder is kept, with nothing new in it
    out.joinpath("keep.txt").write_text("x")
    sink = FolderSink(out, overwrite=True)
    _feed(src, sink)
    sink.abort()
    assert sorted(p.name for p in out.iterdir()) == ["f1.png", "f10.png", "f2.png", "keep.txt"]


def test_folder_sink_names_tensor_frames(tmp_path):
    sink = FolderSink(tmp_path / "t")
    _feed(TensorSource(torch.rand(3, 3, 8, 8)), sink)
    sink.close()
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["000000.png", "000001.png", "000002.png"]


def test_video_sink_keeps_fps_and_count(tmp_path):
    vid = tmp_path / "c.mp4"
    _write_video(vid, 7, fps=30)
    src = VideoSource(vid)
    sink = open_sink(tmp_path / "o.mp4", src)
    _feed(src, sink, 3)
    assert sink.frames_written == 7 and not (tmp_path / "o.mp4").exists()
    sink.close()
    info = probe_video(tmp_path / "o.mp4")
    assert info.fps == Fraction(30) and count_frames(tmp_path / "o.mp4") == 7
    marks = [round(float(v) * 255) for b in iter_video_frames(tmp_path / "o.mp4", 7) for v in b.mean((1, 2, 3))]
    assert all(abs(m - (255 - 20 * i)) <= 2 for i, m in enumerate(marks))
    before = set(tmp_path.iterdir())
    sink = open_sink(tmp_path / "aborted.mp4", src)
    _feed(src, sink, 3)
    sink.abort()
    assert set(tmp_path.iterdir()) == before                             # no file, no temporary left


@dataclass
class _Part:
    images: torch.Tensor
    mask: torch.Tensor
    frames_without_face: list[int]

    @staticmethod
    def concat(parts: list[_Part]) -> _Part:
        offsets = np.cumsum([0] + [p.images.shape[0] for p in parts[:-1]])
        return _Part(torch.cat([p.images for p in parts]), torch.cat([p.mask for p in parts]),
                     [int(o) + i for o, p in zip(offsets, parts) for i in p.frames_without_face])


def test_tensor_sink_joins_results():
    frames = torch.rand(5, 3, 4, 4)
    sink = TensorSink(device="cpu")
    for b in TensorSource(frames).batches(2):
        sink.write(b, _Part(b.frames * 2, b.frames[:, :1], [0]))
    sink.close()
    res = sink.result()
    assert torch.equal(res.images, frames * 2) and res.mask.shape == (5, 1, 4, 4)
    assert res.frames_without_face == [0, 2, 4]
    one = TensorSink()
    part = _Part(frames, frames[:, :1], [])
    one.write(next(TensorSource(frames).batches(5)), part)
    assert one.result() is part
    one.abort()
    with pytest.raises(InputError, match="no frames"):
        one.result()


# ------------------------------------------------------------------------------------------------ batches, pts

def test_frame_batch_slice_and_cat(folder):
    from simswap_core.io.frames import FrameBatch

    frames = torch.rand(5, 3, 4, 6)
    b = FrameBatch(frames, 10, None, torch.arange(100, 105), Fraction(1, 90000))
    s = b.slice(1, 4)
    assert (s.start, s.stop, len(s)) == (11, 14, 3) and s.pts.tolist() == [101, 102, 103]
    assert s.frames.data_ptr() == frames[1].data_ptr() and s.time_base == Fraction(1, 90000)   # a view
    joined = FrameBatch.cat([b.slice(0, 2), b.slice(2, 5)])
    assert torch.equal(joined.frames, frames) and joined.start == 10 and joined.pts.tolist() == list(range(100, 105))
    no_pts = FrameBatch.cat([b.slice(0, 2), FrameBatch(frames[2:], 12)])  # one part without timestamps: none
    assert no_pts.pts is None and no_pts.time_base is None and len(no_pts) == 5
    with pytest.raises(ValueError, match="not consecutive"):
        FrameBatch.cat([b.slice(0, 2), b.slice(3, 5)])
    with pytest.raises(ValueError, match="different sizes"):
        FrameBatch.cat([FrameBatch(torch.rand(1, 3, 4, 4), 0), FrameBatch(torch.rand(1, 3, 8, 8), 1)])
    with pytest.raises(ValueError, match="outside"):
        b.slice(2, 9)
    items = list(FolderSource(folder).batches(8))[0]                      # items travel with slices and joins
    assert [i.path.name for i in FrameBatch.cat([items.slice(0, 1), items.slice(1, 2)]).items] == ["f1.png",
                                                                                                   "f2.png"]


def test_video_source_gives_each_frame_its_timestamp(tmp_path):
    vid = tmp_path / "clip.mp4"
    _write_video(vid, 5, fps=25)
    src = VideoSource(vid)
    batches = list(src.batches(2))
    tb = src.info.time_base
    assert tb is not None and all(b.time_base == tb for b in batches)
    times = [Fraction(int(p)) * tb for b in batches for p in b.pts]
    assert times == [Fraction(i, 25) for i in range(5)]


def test_video_sink_from_video_info_and_audio_from(tmp_path):
    from simswap_core.io.frames import VideoSink
    from simswap_core.io.video import VideoInfo

    vid = tmp_path / "c.mp4"
    _write_video(vid, 3)
    info = VideoInfo(Path("x"), 64, 64, Fraction(12), 3, False, "rawvideo")
    sink = VideoSink(tmp_path / "o.mp4", info)
    _feed(TensorSource(torch.rand(3, 3, 64, 64)), sink)
    sink.close()
    assert count_frames(tmp_path / "o.mp4") == 3 and probe_video(tmp_path / "o.mp4").fps == Fraction(12)
    assert VideoSink(tmp_path / "p.mp4", info, audio_from=vid).audio_from == vid
    assert VideoSink(tmp_path / "p.mp4", info, audio_from=vid, audio=False).audio_from is None
    assert VideoSink(tmp_path / "p.mp4", VideoSource(vid)).audio_from == vid          # a video's own audio
