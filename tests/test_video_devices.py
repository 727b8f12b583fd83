"""Decode / encode device choice (issue 13 item 4): NVDEC through torchcodec, NVENC through PyAV, CPU fallbacks.

The choice is logic over an injected ``VideoCapabilities``, so every machine (GPU with or without torchcodec, NVENC
or not) is covered on the CPU. The torchcodec reading path (batches, pts in the stream's time base, damaged files,
fallbacks, VideoSource wiring) runs here through a decoder with torchcodec's interface (``len``,
``get_frames_in_range`` -> data [B,3,H,W] uint8, pts_seconds) backed by PyAV decoding the real file: the PyPI
torchcodec wheel is a CUDA build that does not load on this CPU-only machine (checked below: it is a reason,
never an error). On a GPU machine bench/gpu_check.sh runs the real NVDEC / NVENC paths.
"""
from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from simswap_core.errors import DependencyError, InputError
from simswap_core.io import video_devices as vd
from simswap_core.io.video_devices import VideoCapabilities, choose_decoder, choose_encoder

CUDA = torch.device("cuda")
CPU = torch.device("cpu")
GPU_FULL = VideoCapabilities(cuda=True, torchcodec="0.17.0+cu130", torchcodec_error=None, torchcodec_cuda=True,
                             encoders={"h264_nvenc": None, "hevc_nvenc": None})
GPU_BARE = VideoCapabilities(cuda=True, torchcodec=None, torchcodec_error="not installed",
                             encoders={"h264_nvenc": "h264_nvenc is in PyAV's FFmpeg but does not open here (x)"})
NO_GPU = VideoCapabilities(cuda=False, encoders={"h264_nvenc": "does not open", "hevc_nvenc": "does not open"})


@pytest.fixture
def no_probe(monkeypatch):
    """Fail if the real machine is probed (a CPU run must decide without probing anything)."""
    def boom(*a, **k):
        raise AssertionError("probed the machine")
    monkeypatch.setattr(vd, "probe_capabilities", boom)
    monkeypatch.setattr(vd, "probe_encoder", boom)


# ------------------------------------------------------------------------------------------ decode choice

def test_decoder_auto_follows_the_frames_device(no_probe):
    c = choose_decoder("auto", CPU)
    assert (c.backend, c.device) == ("pyav", CPU) and "processed on cpu" in c.reason
    assert choose_decoder(None, None).backend == "pyav"
    c = choose_decoder("auto", CUDA, GPU_FULL)
    assert (c.backend, c.device.type) == ("torchcodec", "cuda")
    assert c.message().startswith("decode: on cuda (NVDEC through torchcodec)") and "0.17.0+cu130" in c.message()
    assert choose_decoder("cpu", CUDA, GPU_FULL).backend == "pyav"      # asked for the CPU on a GPU machine


@pytest.mark.parametrize("caps, words", [
    (GPU_BARE, "torchcodec is not installed; for NVDEC: pip install 'torchcodec>=0.14'"),
    (VideoCapabilities(cuda=True, torchcodec=None, torchcodec_error="installed but does not load (OSError: x)"),
     "does not load (OSError: x)"),
    (VideoCapabilities(cuda=True, torchcodec="0.17.0+cpu", torchcodec_error=None, torchcodec_cuda=False),
     "0.17.0+cpu is a CPU-only build"),
    (NO_GPU, "torch sees no CUDA device"),
])
def test_decoder_auto_falls_back_saying_why_and_explicit_cuda_fails(caps, words):
    c = choose_decoder("auto", CUDA, caps)
    assert c.backend == "pyav" and c.device == CPU and words in c.reason
    assert c.message().startswith("decode: on the CPU (PyAV): not on the GPU: ")
    err = InputError if not caps.cuda else DependencyError
    with pytest.raises(err, match="decode_device cuda: .*" + re.escape(words[:12])):
        choose_decoder("cuda", CPU, caps)


def test_decode_device_values():
    assert choose_decoder("cuda:1", CPU, GPU_FULL).device == torch.device("cuda:1")
    for bad in ("gpu", "cuda:x", "nvdec", ""):
        with pytest.raises(InputError, match="decode_device: expected auto, cpu or cuda"):
            choose_decoder(bad, CPU, GPU_FULL)


# ------------------------------------------------------------------------------------------ encode choice

def test_encoder_auto_takes_nvenc_only_when_it_can(no_probe):
    c = choose_encoder("auto", CPU, 1280, 720, ".mp4")
    assert c.codec == "libx264" and not c.hardware and "processed on cpu" in c.reason
    c = choose_encoder("auto", CUDA, 1280, 720, ".mp4", GPU_FULL)
    assert c.codec == "h264_nvenc" and c.hardware and c.message().startswith("encode: h264_nvenc on the GPU (NVENC)")
    cases = [((1281, 720, ".mp4", GPU_FULL), "NVENC's yuv420p needs even sizes"),
             ((1280, 720, ".webm", GPU_FULL), "a .webm file does not hold h264_nvenc"),
             ((1280, 720, ".mkv", GPU_BARE), "does not open here (x)")]
    for (w, h, ext, caps), words in cases:
        c = choose_encoder("auto", CUDA, w, h, ext, caps)
        assert c.codec == "libx264" and words in c.reason, (c, words)
        assert c.message().startswith("encode: libx264 on the CPU: not NVENC: ")


def test_encoder_explicit_requests_and_aliases():
    assert choose_encoder("x264", CUDA, 1280, 720, ".mp4", GPU_FULL).codec == "libx264"
    assert choose_encoder("nvenc", CPU, 1280, 720, ".mov", GPU_FULL).codec == "h264_nvenc"   # asked: any device
    assert choose_encoder("hevc_nvenc", CUDA, 64, 48, ".mkv", GPU_FULL).codec == "hevc_nvenc"
    with pytest.raises(DependencyError, match="encoder h264_nvenc: cannot use it: .*does not open"):
        choose_encoder("h264_nvenc", CUDA, 1280, 720, ".mp4", NO_GPU)
    with pytest.raises(InputError, match="encoder h264_nvenc: .*even sizes"):
        choose_encoder("nvenc", CUDA, 641, 360, ".mp4", GPU_FULL)
    with pytest.raises(InputError, match="encoder: expected auto, libx264"):
        choose_encoder("vp9", CUDA, 64, 48, ".mp4", GPU_FULL)


def test_real_probes_on_this_machine():
    """The probes never raise: here (no NVIDIA driver) NVENC and torchcodec are reasons; x264 opens."""
    assert vd.probe_encoder("libx264") is None
    assert "not compiled into" in (vd.probe_encoder("no_such_encoder") or "")
    version, error, _cuda_build = vd.probe_torchcodec()
    assert (version is None) == (error is not None)
    if not torch.cuda.is_available():
        why = vd.probe_encoder("h264_nvenc")
        assert why is not None and "h264_nvenc" in why
        caps = vd.probe_capabilities(encoders=("h264_nvenc",))
        assert not caps.cuda and caps.encoders["h264_nvenc"] == why
        c = choose_encoder("auto", CUDA, 640, 360, ".mp4")       # frames "on CUDA", NVENC probed for real
        assert c.codec == "libx264" and why in c.reason


def test_writer_sets_nvenc_constant_quality(tmp_path):
    """h264_nvenc streams get constant quality at --crf (cq), never x264's options; nothing is left behind."""
    import av

    from simswap_core.io.video import VideoWriter

    if "h264_nvenc" not in av.codecs_available:
        pytest.skip("this PyAV build has no h264_nvenc")
    w = VideoWriter(tmp_path / "n.mp4", 25, 64, 48, codec="h264_nvenc", crf=21)
    try:
        assert dict(w._v.options) == {"preset": "p5", "tune": "hq", "rc": "vbr", "cq": "21"}
        assert w._v.pix_fmt == "yuv420p"
    finally:
        w.abort()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ the NVDEC reader

class PyAVBackedDecoder:
    """torchcodec's VideoDecoder interface (len, get_frames_in_range -> data/pts_seconds, cpu_fallback) over
    frames PyAV decoded from the real file; ``fail_at``: index from which get_frames_in_range raises as torchcodec
    does on damaged data."""

    def __init__(self, path: Path, fail_at: int | None = None, fallback: bool = False):
        import av

        with av.open(str(path)) as c:
            s = c.streams.video[0]
            tb = s.time_base
            frames = list(c.decode(s))
        self.data = torch.from_numpy(np.stack([f.to_ndarray(format="rgb24") for f in frames])).permute(0, 3, 1, 2)
        self.seconds = torch.tensor([float(f.pts * tb) for f in frames], dtype=torch.float64)
        self.fail_at = fail_at
        self.calls: list[tuple[int, int]] = []
        self.cpu_fallback = _Fallback(fallback)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def get_frames_in_range(self, start: int, stop: int):
        self.calls.append((start, stop))
        if self.fail_at is not None and stop > self.fail_at:
            raise RuntimeError("Could not receive frame from decoder: Invalid data found")
        return SimpleNamespace(data=self.data[start:stop].clone(), pts_seconds=self.seconds[start:stop].clone())


class _Fallback:
    def __init__(self, on: bool):
        self.on = on

    def __bool__(self) -> bool:
        return self.on

    def __str__(self) -> str:
        return "Fallback status: Falling back due to: Video not supported" if self.on else "No fallback required"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from video_fixtures import make_clip

    path = tmp_path_factory.mktemp("vd") / "vfr.mp4"
    info = make_clip(path, frames=7, size=(96, 64), people=1, audio=False, vfr=True)
    return path, info


def test_torchcodec_reader_batches_and_exact_pts(clip):
    from video_fixtures import read_pts

    from simswap_core.io.video import iter_video_frames_with_pts, probe_video

    path, _info = clip
    tb = probe_video(path).time_base
    dec = PyAVBackedDecoder(path)
    got = list(vd.iter_torchcodec_frames(path, 3, CPU, tb, decoder=dec))
    assert [f.shape[0] for f, _ in got] == [3, 3, 1] and dec.calls == [(0, 3), (3, 6), (6, 7)]
    want = list(iter_video_frames_with_pts(path, 3))
    for (f, p), (wf, wp) in zip(got, want):
        assert f.dtype == torch.float32 and torch.equal(f, wf) and p == wp
    pts, _ = read_pts(path)
    assert [p for _, ps in got for p in ps] == pts               # VFR: every timestamp back exactly in ticks
    assert [ps for _, ps in vd.iter_torchcodec_frames(path, 4, CPU, None, decoder=dec)] == [[None] * 4, [None] * 3]


def test_torchcodec_reader_damaged_file(clip):
    path, _ = clip
    with pytest.raises(InputError, match=r"damaged or truncated video: frames 4\.\.6 .*3 frame\(s\) decoded"):
        list(vd.iter_torchcodec_frames(path, 3, CPU, Fraction(1, 90000), decoder=PyAVBackedDecoder(path, 4)))
    with pytest.warns(UserWarning, match="only those are used"):
        got = list(vd.iter_torchcodec_frames(path, 3, CPU, Fraction(1, 90000), allow_partial=True,
                                             decoder=PyAVBackedDecoder(path, 4)))
    assert [f.shape[0] for f, _ in got] == [3]


def test_open_decoder_fallbacks(clip, monkeypatch):
    path, _ = clip
    pick = vd.DecodeChoice("torchcodec", CPU, "torchcodec 0.17.0+cu130 with CUDA")

    def broken(p, device):
        raise RuntimeError("Unsupported codec for NVDEC\nmore")
    monkeypatch.setattr(vd, "open_torchcodec", broken)
    with pytest.warns(UserWarning, match=r"could not open vfr.mp4 .*Unsupported codec for NVDEC\); decoding on"):
        c, d = vd.open_decoder(pick, path, explicit=False)
    assert d is None and c.backend == "pyav" and "Unsupported codec for NVDEC" in c.reason
    with pytest.raises(InputError, match="decode_device cpu: torchcodec could not open"):
        vd.open_decoder(pick, path, explicit=True)
    monkeypatch.setattr(vd, "open_torchcodec", lambda p, device: PyAVBackedDecoder(path, fallback=True))
    c, d = vd.open_decoder(pick, path, explicit=False)
    assert d is not None and "torchcodec decodes this file on the CPU: Fallback status" in c.reason


def test_video_source_reads_through_the_chosen_decoder(clip, monkeypatch):
    """VideoSource wiring: the torchcodec choice's decoder gives the batches (every pass, reopened), the PyAV
    path the same frames; the choice is kept for the CLI's message."""
    import simswap_core.io.frames as fr

    path, info = clip
    opened: list[int] = []

    def fake_open(p, device):
        opened.append(1)
        return PyAVBackedDecoder(Path(p))
    monkeypatch.setattr(vd, "open_torchcodec", fake_open)
    monkeypatch.setattr(fr, "choose_decoder", lambda req, dev, caps=None: vd.DecodeChoice("torchcodec", CPU, "test"))
    src = fr.VideoSource(path, "cpu", decode_device="auto")
    assert src.decode_choice.backend == "torchcodec" and opened == [1]
    a = list(src.batches(4))
    b = list(src.batches(4))
    assert opened == [1, 1]                                      # the second pass opened a new decoder
    monkeypatch.undo()
    plain = fr.VideoSource(path, "cpu")
    assert plain.decode_choice.backend == "pyav" and "processed on cpu" in plain.decode_choice.reason
    c = list(plain.batches(4))
    for x, y, z in zip(a, b, c):
        assert torch.equal(x.frames, z.frames) and torch.equal(y.frames, z.frames)
        assert torch.equal(x.pts, z.pts) and x.time_base == z.time_base == Fraction(1, 90000)
    assert sum(len(x) for x in a) == info.frames


def test_video_sink_keeps_its_encoder_choice(clip, tmp_path):
    import simswap_core.io.frames as fr

    path, _ = clip
    src = fr.VideoSource(path, "cpu")
    sink = fr.open_sink(tmp_path / "o.mp4", src, device="cpu")
    assert isinstance(sink, fr.VideoSink) and sink.encode_choice.codec == "libx264"
    sink = fr.VideoSink(tmp_path / "p.mkv", src, encoder="auto", device="cuda", capabilities=GPU_FULL)
    assert sink.encode_choice.codec == "h264_nvenc"
    with pytest.raises(InputError, match="encoder h264_nvenc: .*\\.webm"):
        fr.VideoSink(tmp_path / "q.webm", src, encoder="nvenc", device="cuda", capabilities=GPU_FULL)


# ------------------------------------------------------------------------------------------ the CLI

def test_cli_says_which_path_and_refuses_impossible_requests(tmp_path, capsys, monkeypatch, pl_models, pl_models_dir,
                                                            pl_identity, fast_generator_path):
    from video_fixtures import make_clip, read_frame_numbers

    import simswap_core.models.loaders as ld
    from simswap_core.cli import main
    from simswap_core.identity import save_identity

    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ld, "load_arcface", lambda *a, **k: pl_models[1])    # the session's seeded ArcFace
    clip_path = tmp_path / "c.mp4"
    make_clip(clip_path, frames=3, size=(192, 108), people=2, audio=False)
    ident = save_identity(pl_identity, tmp_path / "a.safetensors")
    base = ["swap", "--source", str(ident), "--target", str(clip_path), "--generator", str(fast_generator_path),
            "--device", "cpu"]
    rc = main(base + ["--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "decode: on the CPU (PyAV): the frames are processed on cpu" in err
    assert "encode: libx264 on the CPU: the frames are processed on cpu" in err
    assert read_frame_numbers(tmp_path / "o.mp4") == [0, 1, 2]
    if torch.cuda.is_available():
        return
    for flag, words in ((["--decode-device", "cuda"], "decode_device cuda: cannot decode on the GPU: torch sees no "
                                                      "CUDA device"),
                        (["--encoder", "h264_nvenc"], "encoder h264_nvenc: cannot use it: h264_nvenc")):
        rc = main(base + ["--out", str(tmp_path / "x.mp4"), *flag])
        err = capsys.readouterr().err
        assert rc != 0 and words in err, err
        assert not (tmp_path / "x.mp4").exists()


# ------------------------------------------------------------------------------------------ YUV on the device

def test_yuv420p_on_the_device_matches_swscale():
    """The GPU path's RGB -> yuv420p (run here on the CPU tensor): luma within 1 level of swscale's own conversion
    of the same uint8 frame; chroma is the 2x2 mean (swscale's filter is wider: a few levels at sharp colour
    edges, a fraction of a level on average)."""
    import av

    from pipeline_fixtures import astronaut_uint8
    from simswap_core.io.video import to_uint8_hwc, to_yuv420p

    rgb = torch.from_numpy(astronaut_uint8()).permute(2, 0, 1)[None].float() / 255
    rgb = torch.cat([rgb, rgb.flip(-1)])                          # two different frames
    ours = to_yuv420p(rgb).astype(np.int16)
    assert ours.shape == (2, 768, 512)
    for i in range(2):
        ref = av.VideoFrame.from_ndarray(to_uint8_hwc(rgb[i:i + 1])[0], format="rgb24").reformat(
            format="yuv420p").to_ndarray().astype(np.int16)
        d = np.abs(ours[i] - ref)
        assert d[:512].max() <= 1, "luma"
        assert d[512:].mean() < 0.5 and d[512:].max() <= 12, "chroma"


def test_writer_converts_on_the_device_and_keeps_every_frame(tmp_path):
    """device_yuv=True (what CUDA frames get) writes the same frames, in order, with their timestamps."""
    from video_fixtures import clip_frames, read_frame_numbers

    from simswap_core.io.video import VideoWriter

    frames = clip_frames(frames=5, size=(96, 64), people=1)
    outs = {}
    for on in (False, True):
        w = VideoWriter(tmp_path / f"y{int(on)}.mp4", 25, 96, 64)
        w.device_yuv = on
        with w:
            w.write(frames[:3])
            w.write(frames[3:])
        outs[on] = tmp_path / f"y{int(on)}.mp4"
        assert read_frame_numbers(outs[on]) == [0, 1, 2, 3, 4]
    from simswap_core.io.video import iter_video_frames

    a = torch.cat(list(iter_video_frames(outs[False])))
    b = torch.cat(list(iter_video_frames(outs[True])))
    assert (a - b).abs().mean() < 2 / 255                        # the same pictures up to chroma rounding
