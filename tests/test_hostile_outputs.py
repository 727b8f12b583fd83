"""Issue 8, deliverable 3: outputs never replace an input, are written under a temporary name and put in place only
after a complete run; interrupted runs (SIGINT, SIGTERM, an exception) leave nothing behind and exit non-zero;
truncated or damaged inputs are reported by name with the frames found and expected; animated images are frame
sequences.

Refusals that must happen "before any model work" run the CLI with an EMPTY models folder: had the CLI reached
model loading it would fail with a missing-model message (another message), so the refusal proves the order.
Signal cases run the real CLI in a child process with the seeded weights (tests/pipeline_fixtures.py) on a clip
without faces (the run is the frame loop, detection and the writer), and signal it once its progress bar has
counted a frame. Photos are generated or read from installed packages; nothing third-party is committed.
"""
from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from pipeline_fixtures import astronaut_small
from simswap_core.cli import main
from simswap_core.errors import InputError
from simswap_core.io.animation import iter_animation_frames, probe_animation
from simswap_core.io.frames import AnimatedImageSource, VideoSource, open_sink, open_source
from simswap_core.io.images import write_image
from simswap_core.io.video import count_frames
from simswap_core.run import run as run_frames

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ helpers

def cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, " ".join(capsys.readouterr().err.split())


def make_video(path: Path, n: int, size: int = 64, fps: int = 10, faststart: bool = False,
               content: np.ndarray | None = None) -> Path:
    """An H.264 MP4 of n frames of noise (seeded), or of ``content`` rolled by one pixel per frame."""
    out = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    v = out.add_stream("libx264", rate=Fraction(fps))
    v.height = v.width = size
    v.pix_fmt = "yuv420p"
    for i in range(n):
        a = (np.random.RandomState(i).randint(0, 255, (size, size, 3), np.uint8) if content is None
             else np.roll(content, i, 1).copy())
        f = av.VideoFrame.from_ndarray(a, format="rgb24")
        f.pts = i
        out.mux(v.encode(f))
    out.mux(v.encode(None))
    out.close()
    return path


def listing(folder: Path) -> list[str]:
    """Every name below ``folder`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def no_models(tmp_path, monkeypatch) -> Path:
    """An empty models folder: any model work fails with a missing-model error."""
    empty = tmp_path / "no_models"
    empty.mkdir()
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(empty))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SIMSWAP_DEBUG", raising=False)
    return empty


@pytest.fixture
def media(tmp_path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    face = astronaut_small(128)
    Image.fromarray(face).save(d / "source.png")
    Image.fromarray(face[:, ::-1].copy()).save(d / "target.png")
    frames = d / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(face, 4 * i, 1).copy()).save(frames / f"f{i}.png")
    make_video(d / "clip.mp4", 6)
    return {"source": d / "source.png", "target": d / "target.png", "frames": frames, "clip": d / "clip.mp4"}


# ------------------------------------------------------------------------------ outputs never replace inputs

@pytest.mark.parametrize("link", ["same", "hardlink", "symlink"])
@pytest.mark.parametrize("which", ["target", "source", "clip"])
def test_out_that_is_an_input_is_refused_even_with_overwrite(no_models, media, tmp_path, capsys, which, link):
    target = media["clip"] if which == "clip" else media["target"]
    victim = media[which]
    before = victim.read_bytes()
    out = victim
    if link == "hardlink":
        out = tmp_path / f"alias{victim.suffix}"
        os.link(victim, out)
    elif link == "symlink":
        out = tmp_path / f"alias{victim.suffix}"
        out.symlink_to(victim)
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", target, "--out", out, "--overwrite")
    assert rc == 2, err
    assert "is the input file" in err and "never replaced" in err and "model" not in err.lower()
    assert victim.read_bytes() == before
    assert not [n for n in listing(victim.parent) if n.startswith(".")]


def test_folder_out_inside_or_aliasing_an_input_folder_is_refused(no_models, media, tmp_path, capsys):
    frames = media["frames"]
    before = listing(frames)
    for out in (frames, frames / "swapped", frames / ".." / "frames" / "deeper" / "x"):
        rc, err = cli(capsys, "swap", "--source", media["source"], "--target", frames, "--out", out, "--overwrite")
        assert rc == 2 and "lies inside the input folder" in err, err
    # a link to the input folder, and a folder inside it reached through the link
    (tmp_path / "alias").symlink_to(frames, target_is_directory=True)
    for out in (tmp_path / "alias", tmp_path / "alias" / "sub"):
        rc, err = cli(capsys, "swap", "--source", media["source"], "--target", frames, "--out", out, "--overwrite")
        assert rc == 2 and "lies inside the input folder" in err, err
    # an output folder whose f1.png is (a link to) the input f1.png
    out = tmp_path / "linked"
    out.mkdir()
    (out / "f1.png").symlink_to(frames / "f1.png")
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", frames, "--out", out, "--overwrite")
    assert rc == 2 and "is the input file" in err, err
    # an image output inside the --source folder (a folder of source photos is an input too)
    rc, err = cli(capsys, "swap", "--source", frames, "--target", media["target"], "--out", frames / "new.png")
    assert rc == 2 and "lies inside the input folder" in err, err
    assert listing(frames) == before


def test_faces_and_convert_never_replace_their_input(no_models, media, tmp_path, capsys):
    photo = media["target"]
    before = photo.read_bytes()
    rc, err = cli(capsys, "faces", photo, "--out", photo, "--overwrite")
    assert rc == 2 and "is the input file" in err, err
    rc, err = cli(capsys, "faces", photo, "--out", tmp_path / "p.png", "--json", photo, "--overwrite")
    assert rc == 2 and "--json" in err and "is the input file" in err, err
    rc, err = cli(capsys, "faces", photo, "--out", tmp_path / "p.png", "--json", tmp_path / "p.png")
    assert rc == 2 and "same file as --out" in err, err
    assert photo.read_bytes() == before and not (tmp_path / "p.png").exists()
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"not really a checkpoint")
    rc, err = cli(capsys, "convert", ckpt, ckpt, "--overwrite")
    assert rc == 2 and "is the input file" in err and ckpt.read_bytes() == b"not really a checkpoint"


# ------------------------------------------------------------------------------ output kinds and writability

@pytest.mark.parametrize("target,out,expect", [
    ("clip", "result.png", "must be a video"),
    ("frames", "result.png", "must be a folder"),
    ("target", "result.mp4", "must be an image"),
])
def test_output_kind_that_cannot_hold_the_target_is_refused_up_front(no_models, media, tmp_path, capsys,
                                                                     target, out, expect):
    dest = tmp_path / "dest"
    dest.mkdir()
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", media[target], "--out", dest / out)
    assert rc == 2 and expect in err, err
    assert listing(dest) == []          # no output, no hidden temporary file


def test_unwritable_output_folder_fails_before_the_swap_naming_the_output(no_models, media, tmp_path, capsys):
    # /proc refuses new files even to root (a chmod 0555 folder does not stop root)
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", media["target"], "--out",
                  "/proc/result.png")
    assert rc == 2 and "--out /proc/result.png: cannot write in /proc" in err and ".tmp" not in err, err
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            rc, err = cli(capsys, "swap", "--source", media["source"], "--target", media["frames"], "--out", ro)
            assert rc == 2 and f"--out {ro}: cannot write in {ro}" in err, err
        finally:
            ro.chmod(0o755)


def test_full_disk_is_found_by_the_probe_before_the_swap(media, tmp_path):
    """A file size limit below the probe (RLIMIT_FSIZE, as a quota or a full disk would) fails the writability
    probe, naming the output, before model work (the models folder is empty)."""
    (tmp_path / "empty").mkdir()
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from simswap_core.cli.main import main; sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, SIMSWAP_MODELS_DIR=str(tmp_path / "empty"), XDG_CACHE_HOME=str(tmp_path / "c"))
    out = tmp_path / "out" / "r.png"
    out.parent.mkdir()
    p = subprocess.run([sys.executable, "-c", code, "swap", "--source", str(media["source"]), "--target",
                        str(media["target"]), "--out", str(out)], capture_output=True, text=True, env=env,
                       cwd=REPO, timeout=120)
    assert p.returncode == 2 and f"--out {out}: cannot write in {out.parent}" in p.stderr, p.stderr
    assert listing(out.parent) == []


def test_write_failure_mid_output_names_the_output_and_leaves_no_temporary_file(tmp_path):
    """A file size limit (RLIMIT_FSIZE, as a quota would) hit while writing an image and a video: OutputError
    naming the output, not the temporary file, and nothing left in the folder."""
    code = """if True:
        import resource, signal, sys, torch
        from simswap_core.errors import OutputError
        from simswap_core.io.images import write_image
        from simswap_core.io.video import VideoWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        out = sys.argv[1]
        try:
            write_image(out + "/big.png", torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)))
        except OutputError as e:
            print("image:", e)
        try:
            with VideoWriter(out + "/big.mp4", 10, 256, 256, crf=0) as w:
                for i in range(20):
                    w.write(torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(i)))
        except OutputError as e:
            print("video:", e)
    """
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"image: {tmp_path}/big.png: could not be written (File too large); nothing was written" in p.stdout
    assert f"video: {tmp_path}/big.mp4: could not be written" in p.stdout and ".tmp" not in p.stdout, p.stdout
    assert listing(tmp_path) == []


def test_animated_image_inside_a_folder_target_is_refused_by_name(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    write_image(folder / "f0.png", torch.rand(1, 3, 16, 16))
    _animation(folder / "f1.webp", size=16)
    with pytest.raises(InputError, match=r"f1\.webp: an animated image in a folder of frames"):
        sum(len(b) for b in open_source(folder).batches(4))


def test_outputs_follow_the_umask(tmp_path, pl_swapper, pl_identity):
    """Files 0666 and folders 0777 less the umask, like any program's (not 0600 from a temporary file)."""
    folder = tmp_path / "frames_in"
    folder.mkdir()
    old = os.umask(0o027)
    try:
        img = write_image(tmp_path / "a.png", torch.rand(1, 3, 8, 8))
        for i in range(2):
            write_image(folder / f"{i}.png", torch.rand(1, 3, 16, 16))
        source = open_source(folder)
        run_frames(source, pl_swapper, open_sink(tmp_path / "frames_out", source), pl_identity, if_no_face="keep")
        clip = open_source(make_video(tmp_path / "c.mp4", 3))
        run_frames(clip, pl_swapper, open_sink(tmp_path / "o.mp4", clip), pl_identity, if_no_face="keep")
    finally:
        os.umask(old)
    for f in (img, tmp_path / "frames_out" / "0.png", tmp_path / "o.mp4"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o640, f
    assert stat.S_IMODE((tmp_path / "frames_out").stat().st_mode) == 0o750


# ------------------------------------------------------------------------------ interrupted runs

def _start_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, list[str]]:
    """The CLI in a child process (Ctrl-C handled as in a terminal); stderr is collected by a thread."""
    p = subprocess.Popen([sys.executable, "-m", "simswap_core.cli", *args], cwd=REPO, env=env,
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    chunks: list[str] = []

    def pump() -> None:
        assert p.stderr is not None
        for block in iter(lambda: p.stderr.read1(4096), b""):     # type: ignore[union-attr]
            chunks.append(block.decode(errors="replace"))

    threading.Thread(target=pump, daemon=True).start()
    return p, chunks


def _wait_mid_run(p: subprocess.Popen, chunks: list[str], timeout: float = 120.0) -> None:
    """Until the progress bar has counted at least one frame (and the run is not over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(r"swap:\s+\d+%\|[^|]*\|\s*[1-9]\d*/\d+", "".join(chunks)):
            assert p.poll() is None, "the run ended before it could be interrupted: " + "".join(chunks)
            return
        if p.poll() is not None:
            pytest.fail("the CLI ended early: " + "".join(chunks))
        time.sleep(0.05)
    p.kill()
    pytest.fail("no progress within the time limit: " + "".join(chunks)[-2000:])


@pytest.fixture
def child_env(pl_models_dir, tmp_path) -> dict[str, str]:
    env = dict(os.environ, SIMSWAP_MODELS_DIR=str(pl_models_dir), XDG_CACHE_HOME=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1")
    env.pop("SIMSWAP_DEBUG", None)
    return env


@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_mid_video_leaves_nothing_and_exits_non_zero(child_env, media, tmp_path, sig, code, word):
    clip = make_video(tmp_path / "long.mp4", 400, size=48)           # no face: every frame kept, written
    dest = tmp_path / "dest"
    dest.mkdir()
    out = dest / "new" / "out.mp4"                                   # its folder is made by the run
    p, chunks = _start_cli(["swap", "--source", str(media["source"]), "--target", str(clip), "--out",
                            str(out), "--device", "cpu", "--batch-size", "2"], child_env)
    _wait_mid_run(p, chunks)
    p.send_signal(sig)
    rc = p.wait(timeout=60)
    time.sleep(0.1)
    err = "".join(chunks)
    assert rc == code, err[-2000:]
    assert f"simswap: {word}" in err and f"nothing was written to {out}" in err
    assert listing(dest) == []                  # no output, no hidden temporary file, not even the folder made


def test_sigterm_mid_folder_run_leaves_no_partial_set_of_frames(child_env, media, tmp_path):
    frames = tmp_path / "many"
    frames.mkdir()
    noise = np.random.RandomState(0).randint(0, 255, (40, 40, 3), np.uint8)
    for i in range(300):
        Image.fromarray(np.roll(noise, i, 0).copy()).save(frames / f"f{i:03d}.png")
    out = tmp_path / "dest" / "swapped"
    p, chunks = _start_cli(["swap", "--source", str(media["source"]), "--target", str(frames), "--out", str(out),
                            "--device", "cpu", "--batch-size", "2"], child_env)
    _wait_mid_run(p, chunks)
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=60)
    assert rc == 143, "".join(chunks)[-2000:]
    assert not out.parent.exists()              # no folder, no staging folder, not even the parent it made


def test_unreadable_image_mid_folder_fails_naming_it_and_writes_nothing(tmp_path, pl_swapper, pl_identity):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        Image.fromarray(astronaut_small(64)).save(frames / f"f{i}.png")
    good = (frames / "f2.png").read_bytes()
    (frames / "f2.png").write_bytes(good[: len(good) // 2])          # truncated PNG in the middle
    out = tmp_path / "out"
    source = open_source(frames)
    sink = open_sink(out, source)
    with pytest.raises(InputError, match=r"f2\.png"):
        run_frames(source, pl_swapper, sink, pl_identity, batch_size=1, if_no_face="keep")
    assert listing(tmp_path) == sorted(["frames", *(f"frames/f{i}.png" for i in range(4))])


def test_error_mid_run_through_the_cli_says_nothing_was_written(pl_models_dir, media, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(np.full((32, 32, 3), 50 * i, np.uint8)).save(frames / f"f{i}.png")
    (frames / "f2.png").write_bytes((frames / "f2.png").read_bytes()[:40])
    out = tmp_path / "out"
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", frames, "--out", out, "-q")
    assert rc == 2 and f"{frames / 'f2.png'}: not a readable image" in err, err
    assert f"nothing was written to {out}" in err and not out.exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]


# ------------------------------------------------------------------------------ truncated / damaged inputs

def test_faststart_mp4_cut_at_60_percent_is_refused_with_counts(no_models, media, tmp_path, capsys):
    full = make_video(tmp_path / "full.mp4", 30, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    dest = tmp_path / "dest"
    dest.mkdir()
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", cut, "--out", dest / "o.mp4")
    assert rc == 2, err
    found = int(re.search(r"holds (\d+) complete frame\(s\) of the 30 its header declares", err).group(1))
    assert 0 < found < 30 and str(cut) in err and "--allow-partial" in err
    assert listing(dest) == []
    # --allow-partial: the frames that decode, with a warning naming the counts (never silently)
    with pytest.warns(UserWarning, match=r"cut\.mp4: truncated or damaged video"):
        src = VideoSource(cut, allow_partial=True)
    decoded = sum(len(b) for b in src.batches(4))     # a frame that fails to decode would warn again, not raise
    assert 0 < decoded <= found


def test_cut_video_is_refused_before_work_in_a_fresh_process(tmp_path):
    """The refusal costs a packet scan, not a decode or a model load: CPU time of a fresh CLI process measured
    with getrusage (generous bound for a loaded 2-core machine; the figure is printed)."""
    import resource

    full = make_video(tmp_path / "full.mp4", 120, size=128, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    Image.fromarray(astronaut_small(64)).save(tmp_path / "s.png")
    (tmp_path / "empty").mkdir()
    env = dict(os.environ, SIMSWAP_MODELS_DIR=str(tmp_path / "empty"), XDG_CACHE_HOME=str(tmp_path / "c"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-m", "simswap_core.cli", "swap", "--source", str(tmp_path / "s.png"),
                        "--target", str(cut), "--out", str(tmp_path / "o.mp4")], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"cut video refused by a fresh CLI process in {cpu:.2f} s of CPU (startup and imports included)")
    assert p.returncode == 2 and "of the 120 its header declares" in p.stderr, p.stderr
    assert cpu < 10.0 and not (tmp_path / "o.mp4").exists()


def test_damaged_frames_in_the_middle_are_reported(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", 30)
    data = bytearray(clip.read_bytes())
    c = av.open(str(clip))
    packets = [(pkt.pos, pkt.size) for pkt in c.demux(video=0) if pkt.size]
    c.close()
    pos, size = packets[15]
    data[pos:pos + size] = bytes(size)                               # frame 16 zeroed: undecodable
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"bad\.mp4: (damaged or truncated video: frame \d+|truncated or damaged)"):
        sum(len(b) for b in VideoSource(bad).batches(8))


@pytest.mark.parametrize("ext,fmt", [(".png", "PNG"), (".jpg", "JPEG")])
def test_truncated_image_target_is_named(no_models, tmp_path, capsys, ext, fmt, media):
    p = tmp_path / f"cut{ext}"
    Image.fromarray(astronaut_small(128)).save(p, format=fmt)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", p, "--out", tmp_path / f"o{ext}")
    assert rc == 2 and f"{p}: not a readable image" in err, err      # read before any model work
    assert not (tmp_path / f"o{ext}").exists()


# ------------------------------------------------------------------------------ animated images

def _animation(path: Path, n: int = 5, size: int = 48) -> list[int]:
    frames = [Image.fromarray(np.full((size, size, 3), 30 + 40 * i, np.uint8)) for i in range(n)]
    durations = [40 + 20 * i for i in range(n)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   **({"lossless": True} if path.suffix == ".webp" else {}))
    return durations


@pytest.mark.parametrize("ext", [".gif", ".webp", ".png"])
def test_animated_target_is_every_frame_with_durations(tmp_path, ext, pl_swapper, pl_identity):
    anim = tmp_path / f"a{ext}"
    durations = _animation(anim)
    src = open_source(anim)
    assert isinstance(src, AnimatedImageSource) and src.total == 5 and src.animation.durations_ms == durations
    levels = [round(float(b.mean()) * 255) for batch in iter_animation_frames(anim, 2) for b in batch]
    assert levels == [30 + 40 * i for i in range(5)]
    # written back as the same kind, every frame with its duration; or as a video of the same frame count
    out = tmp_path / f"out{ext}"
    run_frames(src, pl_swapper, open_sink(out, src), pl_identity, batch_size=2, if_no_face="keep")
    back = probe_animation(out)
    assert back.n_frames == 5 and back.durations_ms == durations
    run_frames(src, pl_swapper, open_sink(tmp_path / "out.mp4", src), pl_identity, if_no_face="keep")
    assert count_frames(tmp_path / "out.mp4") == 5
    with pytest.raises(InputError, match="must be a video"):
        open_sink(tmp_path / "still.jpg", src)


def test_cli_swaps_every_frame_of_an_animated_webp(pl_models_dir, media, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIMSWAP_MODELS_DIR", str(pl_models_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    face = astronaut_small(160)
    frames = [Image.fromarray(np.roll(face, 3 * i, 1).copy()) for i in range(3)]
    anim = tmp_path / "face.webp"
    frames[0].save(anim, save_all=True, append_images=frames[1:], duration=[70, 90, 110], loop=2, lossless=True)
    out = tmp_path / "swapped.webp"
    rc, err = cli(capsys, "swap", "--source", media["source"], "--target", anim, "--out", out, "--device", "cpu")
    assert rc == 0 and "wrote" in err and "(3 frame(s), 3 face(s) swapped)" in err, err
    back = probe_animation(out)
    assert (back.n_frames, back.durations_ms, back.loop) == (3, [70, 90, 110], 2)
    before = [b for batch in iter_animation_frames(anim, 3) for b in batch]
    after = [b for batch in iter_animation_frames(out, 3) for b in batch]
    assert all(float((a - b).abs().amax(0).gt(0.1).float().mean()) > 0.01 for a, b in zip(after, before))
