"""Scale: a 3,000-frame 640x360 two-person clip through the CLI in bounded memory (issue 11, item 6).

Each run is `simswap swap` in a FRESH process (python -m simswap_core.cli); its peak resident memory comes from
os.wait4's rusage (ru_maxrss: the whole process, model loading, decoding and encoding included). The 3,000-frame run
must stay within 10 % of the 300-frame run, and keep every frame, in order (each frame's number is drawn as a block
code, tests/video_fixtures.py), and the audio.

Cost: about 3,300 swapped frames (two faces each). To keep it to minutes on two CPU cores the seeded 224 generator
runs on 32x32 crops (.safetensors metadata crop_size 32) with one torch thread. That does not blunt the check:
keeping per-face crops, masks or frames of finished chunks would still grow memory by far more than 10 % over
2,700 extra frames (a full 640x360 float frame is 2.8 MB; the crops of one frame about 0.1 MB).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from video_fixtures import audio_duration, make_clip, read_frame_numbers, write_source_photo

from pipeline_fixtures import t1_path

pytestmark = [pytest.mark.slow, pytest.mark.long]   # ~35 min on 2 cores: run with -m long

REPO = Path(__file__).resolve().parent.parent
SHORT, LONG = 300, 3000


def _cli(args: list[str], log: Path) -> tuple[int, float]:
    """Run the CLI in a fresh process; (exit code, peak RSS in MiB from wait4)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO)] + ([os.environ["PYTHONPATH"]]
                                                         if os.environ.get("PYTHONPATH") else [])))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "simswap_core.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=REPO)
    _pid, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    return code, ru.ru_maxrss / 1024.0


@pytest.fixture(scope="module")
def crop32_generator(pl_weights, tmp_path_factory) -> Path:
    from simswap_core.models.loaders import convert_checkpoint

    return convert_checkpoint(pl_weights["g224"], tmp_path_factory.mktemp("g32") / "simswap_g224_crop32.safetensors",
                              crop_size=32)


def test_3000_frames_in_the_memory_of_300(tmp_path, crop32_generator, pl_weights):
    t1_path()                                          # skips without insightface's photo
    source = write_source_photo(tmp_path / "source.png")
    clips = {n: make_clip(tmp_path / f"clip_{n}.mp4", frames=n, audio=True) for n in (SHORT, LONG)}
    peak = {}
    for n, info in clips.items():
        out, log = tmp_path / f"out_{n}.mp4", tmp_path / f"log_{n}.txt"
        code, peak[n] = _cli(["swap", "--source", str(source), "--target", str(info.path), "--out", str(out),
                              "--generator", str(crop32_generator), "--arcface", str(pl_weights["arcface"]),
                              "--detector", "yunet", "--device", "cpu"], log)
        text = log.read_text(errors="replace")
        assert code == 0, f"{n} frames: the CLI failed (exit {code}):\n{text[-3000:]}"
        numbers = read_frame_numbers(out)
        assert len(numbers) == n, f"{n} frames in, {len(numbers)} out"
        assert numbers == list(range(n)), "frames lost, repeated or reordered: " + \
            str([(i, k) for i, k in enumerate(numbers) if i != k][:10])
        audio = audio_duration(out)
        assert audio is not None, f"{n} frames: the output has no audio"
        assert abs(audio - info.duration) < 0.1, f"{n} frames: audio {audio:.3f} s, video {info.duration:.3f} s"
        swapped = re.findall(r"(\d+) face(?:\(s\)|s)? swapped", text)
        assert swapped and int(swapped[-1]) == 2 * n, \
            f"{n} frames: expected both faces swapped in every frame ({2 * n}):\n{text[-1500:]}"
        out.unlink()
    growth = peak[LONG] / peak[SHORT] - 1.0
    print(f"\npeak RSS: {SHORT} frames {peak[SHORT]:.0f} MiB, {LONG} frames {peak[LONG]:.0f} MiB "
          f"({growth:+.1%})")
    assert abs(growth) <= 0.10, (f"peak RSS {peak[LONG]:.0f} MiB for {LONG} frames vs {peak[SHORT]:.0f} MiB for "
                                 f"{SHORT}: {growth:+.1%} (memory must not grow with the clip's length)")
