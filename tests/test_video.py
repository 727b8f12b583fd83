"""simswap_core.io.video: frame count, order and fps kept; audio copied; folders read in natural order."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from simswap_core.errors import InputError
from simswap_core.io.video import VideoWriter, count_frames, iter_image_folder, iter_video_frames, probe_video


def marker_frames(n: int, h: int = 48, w: int = 64) -> torch.Tensor:
    """n frames whose mean brightness encodes the frame number (flat grey levels 20 apart)."""
    levels = torch.arange(n, dtype=torch.float32) * 20 + 10
    return (levels.view(n, 1, 1, 1) / 255).expand(n, 3, h, w).contiguous()


def frame_levels(path) -> list[int]:
    return [round(v) for b in iter_video_frames(path, 3) for v in (b.mean((1, 2, 3)) * 255).tolist()]


def make_video(path, n=10, fps=Fraction(30000, 1001), audio: str | None = "aac", size=(48, 64)):
    """An H.264 video of marker frames, optionally with a sine audio track (aac or pcm_s16le)."""
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=fps)
    v.height, v.width = size
    v.pix_fmt = "yuv420p"
    a = None
    if audio:
        a = out.add_stream(audio, rate=44100)
        a.layout = "mono"
    frames = marker_frames(n, *size)
    for i in range(n):
        vf = av.VideoFrame.from_ndarray((frames[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                                        format="rgb24")
        vf.pts = i
        vf.time_base = 1 / fps
        out.mux(v.encode(vf))
    out.mux(v.encode(None))
    if a is not None:
        fmt = "fltp" if audio == "aac" else "s16"
        dur = n / float(fps)
        for k in range(int(dur * 44100 / 1024) + 1):
            t = (np.arange(1024) + k * 1024) / 44100
            s = 0.2 * np.sin(2 * np.pi * 440 * t)
            arr = s.astype(np.float32)[None] if fmt == "fltp" else (s * 32767).astype(np.int16)[None]
            af = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
            af.sample_rate = 44100
            af.pts = k * 1024
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    out.close()
    return path


def test_probe_and_batches_keep_order(tmp_path):
    src = make_video(tmp_path / "in.mp4", n=10)
    info = probe_video(src)
    assert (info.width, info.height) == (64, 48) and info.fps == Fraction(30000, 1001) and info.has_audio
    batches = list(iter_video_frames(src, batch_size=4))
    assert [b.shape[0] for b in batches] == [4, 4, 2]
    assert batches[0].dtype == torch.float32 and batches[0].shape[1:] == (3, 48, 64)
    levels = frame_levels(src)
    assert levels == sorted(levels) and len(levels) == 10
    assert all(abs(lv - (10 + 20 * i)) <= 2 for i, lv in enumerate(levels))


@pytest.mark.parametrize("audio,out_ext,out_codec", [("aac", ".mp4", "aac"), ("pcm_s16le", ".mov", "pcm_s16le"),
                                                     ("pcm_s16le", ".mp4", "aac")])
def test_writer_keeps_count_fps_order_and_audio(tmp_path, audio, out_ext, out_codec):
    ext = ".mp4" if audio == "aac" else ".mov"
    src = make_video(tmp_path / f"in{ext}", n=12, audio=audio)
    dst = tmp_path / f"out{out_ext}"  # PCM into MP4 is re-encoded to AAC; everything else is copied
    info = probe_video(src)
    with VideoWriter(dst, info.fps, info.width, info.height, audio_from=src) as w:
        for b in iter_video_frames(src, 5):
            w.write(b)
    out = probe_video(dst)
    assert out.fps == info.fps
    assert count_frames(dst) == 12 == w.frames_written
    assert out.has_audio
    assert frame_levels(dst) == pytest.approx(frame_levels(src), abs=2)
    with av.open(str(dst)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == out_codec
        seconds = sum(f.samples for p in c.demux(a) for f in p.decode()) / a.rate
        assert seconds >= 12 / float(info.fps) - 0.05  # the whole track, not a truncated one


def test_writer_without_audio_odd_size_and_no_overwrite(tmp_path):
    dst = tmp_path / "odd.mp4"
    frames = marker_frames(5, 33, 47)
    with VideoWriter(dst, 25, 47, 33) as w:
        w.write(frames)
    assert count_frames(dst) == 5 and not probe_video(dst).has_audio
    assert (probe_video(dst).width, probe_video(dst).height) == (47, 33)
    before = dst.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        VideoWriter(dst, 25, 47, 33)
    assert dst.read_bytes() == before
    with pytest.raises(InputError, match=r"\[B,3,33,47\]"):
        with VideoWriter(tmp_path / "bad.mp4", 25, 47, 33) as w:
            w.write(torch.zeros(1, 3, 32, 32))
    assert not (tmp_path / "bad.mp4").exists()  # an aborted write leaves nothing behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4"]


def test_folder_natural_order_and_mixed_sizes(tmp_path):
    names = ["f1.png", "f2.png", "f10.png", "f11.png", "f3.png"]
    sizes = {"f1.png": 16, "f2.png": 16, "f3.png": 20, "f10.png": 16, "f11.png": 16}
    for n in names:
        level = int(n[1:-4]) * 10
        Image.fromarray(np.full((sizes[n], 16, 3), level, np.uint8)).save(tmp_path / n)
    got = [(it.path.name, round(float(b[i].mean()) * 255)) for items, b in iter_image_folder(tmp_path, 2)
           for i, it in enumerate(items)]
    assert got == [("f1.png", 10), ("f2.png", 20), ("f3.png", 30), ("f10.png", 100), ("f11.png", 110)]


def test_bad_video_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="junk.mp4"):
        probe_video(tmp_path / "junk.mp4")
    with pytest.raises(InputError, match="no images"):
        list(iter_image_folder(tmp_path))


def test_writer_that_fails_to_start_leaves_no_temporary_file(tmp_path):
    with pytest.raises(InputError, match="not available"):
        VideoWriter(tmp_path / "out.mp4", 25, 32, 32, codec="no_such_codec")
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_given_timestamps_and_repairs_bad_ones(tmp_path):
    """pts in another time base are rescaled; repeated / decreasing ones become the one before + 1 unit; a
    negative first pts moves the clip to 0; without pts, i/fps."""
    dst = tmp_path / "t.mkv"
    tb = Fraction(1, 1000)
    with VideoWriter(dst, 30, 64, 48, time_base=tb) as w:
        w.write(marker_frames(3), pts=torch.tensor([-10, 0, 20]), time_base=tb)       # shifted by +10
        w.write(marker_frames(2), pts=[2, 2], time_base=Fraction(1, 100))              # 20 ms, 20 ms -> 20, 31
        w.write(marker_frames(1))                                    # no pts: 5/30 s = 167 ms (+ the 10 ms shift)
    with av.open(str(dst)) as c:
        got = [int(f.pts) for f in c.decode(video=0)]
    assert got == [0, 10, 30, 31, 32, 177]
    with pytest.raises(InputError, match="time base"):
        with VideoWriter(tmp_path / "bad.mkv", 30, 64, 48) as w:
            w.write(marker_frames(1), pts=[0])
    with pytest.raises(InputError, match="2 timestamp"):
        with VideoWriter(tmp_path / "bad.mkv", 30, 64, 48) as w:
            w.write(marker_frames(1), pts=[0, 1], time_base=tb)
    assert not (tmp_path / "bad.mkv").exists()


def test_pts_read_and_wav_audio_into_mp4(tmp_path):
    """iter_video_frames_with_pts gives the stream's timestamps; a WAV's PCM audio (unnamed channel layout) is
    re-encoded into an MP4."""
    from simswap_core.io.video import iter_video_frames_with_pts

    src = make_video(tmp_path / "in.mp4", n=5, audio=None)
    info = probe_video(src)
    stamps = [p for _f, pts in iter_video_frames_with_pts(src, 2) for p in pts]
    assert [Fraction(p) * info.time_base for p in stamps] == [Fraction(i) / info.fps for i in range(5)]
    wav = tmp_path / "a.wav"
    with av.open(str(wav), "w") as out:
        a = out.add_stream("pcm_s16le", rate=16000)
        a.layout = "mono"
        af = av.AudioFrame.from_ndarray((np.sin(np.arange(16000) / 5) * 9000).astype(np.int16)[None],
                                        format="s16", layout="mono")
        af.sample_rate = 16000
        af.pts = 0
        out.mux(a.encode(af))
        out.mux(a.encode(None))
    with VideoWriter(tmp_path / "o.mp4", 25, 64, 48, audio_from=wav) as w:
        w.write(marker_frames(25))
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        seconds = sum(f.samples for p in c.demux(c.streams.audio[0]) for f in p.decode()) / c.streams.audio[0].rate
    assert seconds >= 0.95
