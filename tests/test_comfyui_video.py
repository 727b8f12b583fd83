"""'SimSwap Swap Video' (nodes/video.py): the core VIDEO type in and out.

Over the real ComfyUI HTTP API (tests/comfy_harness.py): a synthetic two-person clip (tests/video_fixtures.py:
faces of insightface's t1.jpg, the frame number coded in a corner, a sine as audio) is uploaded like a user does
(POST /upload/image), workflow 07 (Load Video -> two SimSwap Map Identity -> SimSwap Swap Video -> Save Video) runs
in API format, and the saved file is read back: frame count and order, audio, the faces changed where the people
are, and the node's text (faces per identity, tracks). Create Video (frames + audio + fps from Get Video
Components) goes through the tensor path with its audio. /interrupt mid-run leaves no file anywhere.

In process (the node's execute, as ComfyUI calls it): a BytesIO VIDEO, the WAV writer, the summary wording, and
input errors. The slow test measures the peak RSS of a 3,000-frame clip against a 300-frame one, each in a fresh
process.

Speed: the runs use the seeded 224 generator converted to run on 64x64 crops (``crop_size`` 64 in its
.safetensors metadata: ~0.11 s a face on this CPU); about 50 faces are swapped in the default tests.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from video_fixtures import audio_duration, make_clip, read_frame_numbers

from comfy_harness import INPUT_CLIP, REPO, server, use_comfy_api  # noqa: F401 (fixtures)

use_comfy_api()

websocket = pytest.importorskip("websocket", reason="websocket-client (test extra) reads the server's events")

WORKFLOW = "07_video_two_people"
FAST_GENERATOR = "simswap_video_test_crop64.safetensors"


# ------------------------------------------------------------------------------------------------ helpers
def _api() -> dict:
    return json.loads((REPO / "workflows" / "api" / f"{WORKFLOW}.json").read_text())


def _node_of(prompt: dict, class_type: str) -> str:
    found = [k for k, v in prompt.items() if v["class_type"] == class_type]
    assert found, f"no {class_type} node"
    return found[0]


def upload(server, path: Path, name: str) -> str:
    """POST /upload/image (the route the frontend's upload button uses for videos too); returns the stored name."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
             f"Content-Type: video/mp4\r\n\r\n".encode(), path.read_bytes(), b"\r\n"]
    for field, value in (("type", "input"), ("overwrite", "true")):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f"--{boundary}--\r\n".encode())
    req = urllib.request.Request(server.base + "/upload/image", data=b"".join(parts), method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        data = json.loads(r.read())
    assert (server.input_dir / data["name"]).is_file(), data
    return data["name"]


def saved_video(server, entry: dict, node: str) -> Path:
    items = entry["outputs"][node]["images"]
    assert len(items) == 1 and items[0]["type"] == "output", items
    path = server.output_dir / items[0]["subfolder"] / items[0]["filename"]
    assert path.is_file(), path
    return path


def decode(path: Path) -> np.ndarray:
    """Every frame of a video as [N,H,W,3] uint8 RGB."""
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def files_under(*folders: Path) -> set[Path]:
    return {p for f in folders if f.exists() for p in f.rglob("*") if p.is_file()}


def swap_temp_files(server) -> set[Path]:
    """The files in the swap node's folder of ComfyUI's temp directory (``--temp-directory X`` -> X/temp/simswap)."""
    return {p for p in files_under(server.temp_dir) if p.parent.name == "simswap"}


class Events:
    """The server's websocket messages for this client."""

    def __init__(self, server):
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?clientId={server.client_id}",
                                              timeout=300)
        self.seen: list[tuple[float, str, dict]] = []

    def until(self, pred, timeout: float = 300) -> tuple[float, str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.ws.recv()
            if isinstance(msg, str):
                m = json.loads(msg)
                item = (time.monotonic(), m.get("type", ""), m.get("data") or {})
                self.seen.append(item)
                if pred(*item):
                    return item
        raise TimeoutError("websocket: the expected event did not come")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def fast_generator(server, tmp_path_factory):
    """The crop-64 seeded generator in the server's models/simswap (listed by the loader), removed afterwards so
    the model lists of later test modules are as before."""
    from simswap_core.models.loaders import convert_checkpoint

    path = server.models_dir / "simswap" / FAST_GENERATOR
    path.unlink(missing_ok=True)
    convert_checkpoint(server.model_files["g224"], path, crop_size=64)
    yield FAST_GENERATOR
    path.unlink(missing_ok=True)


def workflow_07(server, fast_generator: str, clip_name: str) -> dict:
    prompt = _api()
    prompt[_node_of(prompt, "LoadVideo")]["inputs"]["file"] = clip_name
    prompt[_node_of(prompt, "SimSwapGeneratorLoader")]["inputs"]["generator_name"] = fast_generator
    return prompt


# ------------------------------------------------------------------------------------------------ HTTP API
def test_workflow_07_names_the_input_clip_and_maps_two_identities():
    prompt = _api()
    assert prompt[_node_of(prompt, "LoadVideo")]["inputs"]["file"] == INPUT_CLIP
    maps = [v for v in prompt.values() if v["class_type"] == "SimSwapMapIdentity"]
    assert len(maps) == 2 and sorted(m["inputs"]["face_index"] for m in maps) == [0, 1]
    swap = prompt[_node_of(prompt, "SimSwapSwapVideo")]["inputs"]
    assert "identity" not in swap and prompt[swap["identity_map"][0]]["class_type"] == "SimSwapMapIdentity"
    assert prompt[_node_of(prompt, "SaveVideo")]["inputs"]["video"] == [_node_of(prompt, "SimSwapSwapVideo"), 0]


def test_workflow_07_swaps_two_people_in_an_uploaded_clip(server, fast_generator, tmp_path):
    clip = make_clip(tmp_path / "two.mp4", frames=10, audio=True)
    name = upload(server, clip.path, f"simswap_test_{uuid.uuid4().hex[:8]}.mp4")
    prompt = workflow_07(server, fast_generator, name)
    before = files_under(server.output_dir)
    entry = server.run(prompt, timeout=300)
    swap, save = _node_of(prompt, "SimSwapSwapVideo"), _node_of(prompt, "SaveVideo")
    text = entry["outputs"][swap]["text"][0]
    assert text.startswith("swapped 20 faces in 10 frames"), text
    assert "10 faces" in text.split("(", 1)[1] and text.count("10 faces") == 2, f"10 faces per identity: {text}"
    assert "2 face tracks" in text, text
    out = saved_video(server, entry, save)
    assert files_under(server.output_dir) - before == {out}
    assert read_frame_numbers(out) == list(range(10)), "frame count and order kept"
    dur = audio_duration(out)
    assert dur is not None and abs(dur - 10 / 30) < 0.05, f"audio kept: {dur}"
    src, res = decode(clip.path).astype(np.int16), decode(out).astype(np.int16)
    assert src.shape == res.shape
    for k in range(2):  # each person's face changed in every frame, the background far from the faces did not
        x1, y1, x2, y2 = clip.boxes[0, k].round().int().tolist()
        face_diff = np.abs(src[:, y1:y2, x1:x2] - res[:, y1:y2, x1:x2]).mean(axis=(1, 2, 3))
        assert (face_diff > 8).all(), f"person {k}: {face_diff}"
    corner = np.abs(src[:, :40, -80:] - res[:, :40, -80:]).max()
    assert corner <= 12, f"the top right corner (no face) changed by {corner}"
    # the swap node's file lives in ComfyUI's temp folder; Save Video copied it (streams, not re-encoded)
    temp = swap_temp_files(server)
    assert temp and all(p.suffix == ".mp4" and not p.name.startswith(".") for p in temp), temp


def test_create_video_components_with_audio_through_the_node(server, fast_generator, tmp_path):
    """Load Video -> Get Video Components -> Create Video (IMAGE + AUDIO + fps) -> Swap Video (one identity on
    every face) -> Save Video: the tensor path, its audio through a temporary WAV (removed afterwards)."""
    clip = make_clip(tmp_path / "comp.mp4", frames=6, audio=True)
    name = upload(server, clip.path, f"simswap_comp_{uuid.uuid4().hex[:8]}.mp4")
    gen, arc, det = "g", "a", "d"
    prompt = {gen: {"class_type": "SimSwapGeneratorLoader",
                    "inputs": {"generator_name": fast_generator, "variant": "auto", "crop_size": "auto"}},
              arc: {"class_type": "SimSwapArcFaceLoader", "inputs": {"arcface_name": "arcface_checkpoint.tar"}},
              det: {"class_type": "SimSwapDetectorLoader",
                    "inputs": {"detector": "yunet (offline default)", "threshold": 0.5, "det_size": 640}},
              "src": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
              "id": {"class_type": "SimSwapExtractIdentity",
                     "inputs": {"source_images": ["src", 0], "arcface": [arc, 0], "detector": [det, 0],
                                "generator": [gen, 0], "face": "largest", "face_index": "0", "order": "left-right",
                                "combine": "mean", "if_no_face": "error"}},
              "lv": {"class_type": "LoadVideo", "inputs": {"file": name}},
              "parts": {"class_type": "GetVideoComponents", "inputs": {"video": ["lv", 0]}},
              "make": {"class_type": "CreateVideo",
                       "inputs": {"images": ["parts", 0], "audio": ["parts", 1], "fps": ["parts", 2]}},
              "swap": {"class_type": "SimSwapSwapVideo",
                       "inputs": {"video": ["make", 0], "identity": ["id", 0], "generator": [gen, 0],
                                  "detector": [det, 0], "faces": "all", "face_index": "0", "order": "left-right",
                                  "mask": "ellipse", "if_no_face": "keep", "temporal_smoothing": 0.5,
                                  "blend_smoothing": 0.5, "track_gap": 8}},
              "save": {"class_type": "SaveVideo",
                       "inputs": {"video": ["swap", 0], "filename_prefix": "simswap_test/comp", "format": "auto",
                                  "codec": "auto"}}}
    temp_before = swap_temp_files(server)
    entry = server.run(prompt, timeout=300)
    text = entry["outputs"]["swap"]["text"][0]
    assert text.startswith("swapped 12 faces in 6 frames"), text
    out = saved_video(server, entry, "save")
    assert read_frame_numbers(out) == list(range(6))
    dur = audio_duration(out)
    assert dur is not None and abs(dur - 6 / 30) < 0.05, f"audio kept: {dur}"
    new_temp = swap_temp_files(server) - temp_before
    assert len(new_temp) == 1 and next(iter(new_temp)).suffix == ".mp4", f"no WAV left behind: {new_temp}"


def test_cancel_mid_run_leaves_no_output(server, fast_generator, tmp_path):
    """/interrupt once the first frames are done: the run ends interrupted within one chunk, before the end, and
    neither the swap node's temp folder nor the output folder gets a file (complete-looking or partial)."""
    clip = make_clip(tmp_path / "long.mp4", frames=60, audio=True)
    name = upload(server, clip.path, f"simswap_cancel_{uuid.uuid4().hex[:8]}.mp4")
    prompt = workflow_07(server, fast_generator, name)
    swap = _node_of(prompt, "SimSwapSwapVideo")
    before = files_under(server.output_dir, server.temp_dir)
    ev = Events(server)
    try:
        status, data = server.queue(prompt)
        assert status == 200, data
        pid = data["prompt_id"]
        _, _, first = ev.until(lambda t, k, d: k == "progress" and d.get("prompt_id") == pid
                               and d.get("node") == swap and d["value"] > 0)
        server.interrupt()
        ev.until(lambda t, k, d: k in ("execution_interrupted", "execution_success", "execution_error")
                 and d.get("prompt_id") == pid)
    finally:
        ev.close()
    kinds = [k for _, k, d in ev.seen if d.get("prompt_id") == pid]
    assert "execution_interrupted" in kinds and "execution_success" not in kinds, kinds
    values = [d["value"] for _, k, d in ev.seen if k == "progress" and d.get("node") == swap]
    top = first["max"]
    assert top == 60 * 100, f"the bar counts frames (100 units each): max {top}"
    assert max(values) < top, "cancelled before the end"
    entry = server.wait(pid, timeout=60)
    assert entry["status"]["status_str"] != "success"
    assert files_under(server.output_dir, server.temp_dir) == before, "a cancelled run left a file"


# ------------------------------------------------------------------------------------------------ in process
@pytest.fixture(scope="module")
def node_models(fast_generator_path, pl_models):
    from nodes._common import ManagedModel
    from simswap_core.models.loaders import load_generator

    _g, arcface, detector = pl_models
    gen = ManagedModel(load_generator(fast_generator_path), kind="generator", name="fast",
                       path=str(fast_generator_path), crop_size=64)
    arc = ManagedModel(arcface, kind="arcface", name="arcface", path="arcface")
    return gen, arc, detector


@pytest.fixture(scope="module")
def identity(node_models):
    from pipeline_fixtures import astronaut_small, to_tensor
    from simswap_core.swap import FaceSwapper

    gen, arc, det = node_models
    swapper = FaceSwapper(gen.module(), arc.module(), det, device="cpu", crop_size=64)
    return swapper.extract_identity(to_tensor(astronaut_small()))


def run_node(video, node_models, identity, **kwargs):
    from nodes.video import SimSwapSwapVideo

    gen, _arc, det = node_models
    args = dict(faces="all", face_index="0", order="left-right", mask="box", if_no_face="keep", identity=identity)
    args.update(kwargs)
    return SimSwapSwapVideo.execute(video, gen, det, **args)


def test_a_bytesio_video_is_spooled_and_the_spool_removed(node_models, identity, tmp_path, monkeypatch):
    from comfy_api.latest import InputImpl

    import nodes.video as nv

    clip = make_clip(tmp_path / "mem.mp4", frames=4, audio=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setattr(nv, "work_folder", lambda: work)
    out = run_node(InputImpl.VideoFromFile(io.BytesIO(clip.path.read_bytes())), node_models, identity)
    video = out.args[0]
    path = Path(video.get_stream_source())
    assert [p for p in work.iterdir()] == [path], "only the output is left (the spooled copy is removed)"
    assert read_frame_numbers(path) == [0, 1, 2, 3] and video.get_frame_count() == 4
    assert abs(audio_duration(path) - 4 / 30) < 0.05
    assert out.ui["text"][0].startswith("swapped 8 faces in 4 frames"), out.ui


def test_wav_of_comfyui_audio(tmp_path):
    import wave

    from nodes.video import write_wav
    from simswap_core.errors import InputError

    t = torch.linspace(0, 1, 4800)
    wav = torch.stack([torch.sin(2 * torch.pi * 440 * t), 0.5 * torch.ones_like(t)])[None]  # [1,2,4800]
    path = write_wav(tmp_path / "a.wav", wav, 48000, samples=4000)
    with wave.open(str(path)) as f:
        assert (f.getnchannels(), f.getframerate(), f.getnframes(), f.getsampwidth()) == (2, 48000, 4000, 2)
        pcm = np.frombuffer(f.readframes(4000), "<i2").reshape(-1, 2)
    assert np.abs(pcm[:, 1] - 16384).max() <= 1 and np.abs(pcm[:, 0] / 32767 - wav[0, 0, :4000].numpy()).max() < 1e-3
    with pytest.raises(InputError, match="video: .*NaN"):
        write_wav(tmp_path / "b.wav", torch.full((1, 1, 10), float("nan")), 48000)
    with pytest.raises(InputError, match="video: expected the audio waveform"):
        write_wav(tmp_path / "c.wav", torch.zeros(10), 48000)


def test_summary_names_identities_tracks_gaps_cuts_and_frames_without_a_face():
    from nodes.video import describe_run, frame_ranges_text
    from simswap_core.run import RunSummary

    assert frame_ranges_text([9, 0, 1, 2, 5, 10]) == "0-2, 5, 9-10"
    assert frame_ranges_text(list(range(0, 40, 2)), limit=3) == "0, 2, 4, ..."
    s = RunSummary(frames=300, faces_swapped=590, frames_without_face=[40, 41, 42, 200], tracks=3, faces_filled=5,
                   faces_per_identity=[296, 294], cuts=[150])
    text = describe_run(s, ["#0 -> face index 0 (left-right)", "bob.png -> face index 1 (left-right)"])
    assert text == ("swapped 590 faces in 296 of 300 frames (#0 -> face index 0 (left-right): 296 faces, bob.png -> "
                    "face index 1 (left-right): 294 faces); 3 face tracks, 5 faces filled in detection gaps; 1 shot "
                    "cut (new shot at frame 150); nothing swapped in 4 frames: 40-42, 200"), text
    one = describe_run(RunSummary(frames=1, faces_swapped=1, tracks=1, faces_per_identity=[1]), ["identity 0"])
    assert one == "swapped 1 face in 1 frame; 1 face track", one


def test_bad_inputs_are_refused_naming_the_input(node_models, identity, tmp_path, monkeypatch):
    from comfy_api.latest import InputImpl
    from comfy_api.latest._util import VideoComponents

    import nodes.video as nv
    from simswap_core.errors import InputError

    monkeypatch.setattr(nv, "work_folder", lambda: tmp_path)
    clip = make_clip(tmp_path / "ok.mp4", frames=2, audio=False)
    video = InputImpl.VideoFromFile(str(clip.path))
    with pytest.raises(InputError, match="identity"):
        run_node(video, node_models, None)
    with pytest.raises(InputError, match="track_gap"):
        run_node(video, node_models, identity, track_gap=-1)
    with pytest.raises(InputError, match="^video: .*not a readable video"):
        (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 100)
        run_node(InputImpl.VideoFromFile(str(tmp_path / "bad.mp4")), node_models, identity)
    empty = InputImpl.VideoFromComponents(VideoComponents(images=torch.zeros(0, 8, 8, 3), frame_rate=30))
    with pytest.raises(InputError, match="video: the video has no frames"):
        run_node(empty, node_models, identity)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4", "ok.mp4"], "nothing written"


# ------------------------------------------------------------------------------------------------ memory (slow)
RSS_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path[:0] = [{tests!r}, {repo!r}]
    from comfy_harness import use_comfy_api
    use_comfy_api()
    from comfy_api.latest import InputImpl
    import nodes.video as nv
    from nodes._common import ManagedModel
    from simswap_core.detection import load_detector
    from simswap_core.identity import Identity
    from simswap_core.models.loaders import load_generator
    import torch

    clip, work, gen_path = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    nv.work_folder = lambda: work
    gen = ManagedModel(load_generator(gen_path), kind="generator", name="fast", path=gen_path, crop_size=64)
    latent = torch.nn.functional.normalize(torch.randn(512, generator=torch.Generator().manual_seed(0)), dim=0)
    ident = Identity(latent=latent, embedding=latent * 10, num_sources=1)
    out = nv.SimSwapSwapVideo.execute(InputImpl.VideoFromFile(str(clip)), gen, load_detector("yunet"), "largest",
                                      "0", "left-right", "box", "keep", identity=ident)
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("RESULT " + json.dumps({{"hwm_kib": hwm, "text": out.ui["text"][0],
                                  "out": str(out.args[0].get_stream_source())}}))
""")


@pytest.mark.slow
@pytest.mark.long      # ~35 min on 2 cores: run with -m long
def test_peak_rss_of_3000_frames_is_within_10_percent_of_300(fast_generator_path, tmp_path):
    """Issue 11 item 6 through the VIDEO node: 300 and 3,000 frames of a 640x360 two-person clip with audio, each
    through SimSwapSwapVideo.execute in a fresh process; peak RSS (VmHWM) within 10 %, frame count, order and
    audio kept. Both people are detected and tracked in every frame; the largest face is swapped (3,300 faces
    through the crop-64 generator: about 10 minutes on two idle CPU cores)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM needs Linux /proc")
    results = {}
    for n in (300, 3000):
        clip = make_clip(tmp_path / f"clip_{n}.mp4", frames=n, audio=True)
        work = tmp_path / f"work_{n}"
        work.mkdir()
        code = RSS_CHILD.format(tests=str(REPO / "tests"), repo=str(REPO))
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        proc = subprocess.run([sys.executable, "-c", code, str(clip.path), str(work), str(fast_generator_path)],
                              capture_output=True, text=True, timeout=3600, env=env, cwd=REPO)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-6000:]
        res = json.loads(line[len("RESULT "):])
        out = Path(res["out"])
        assert read_frame_numbers(out) == list(range(n)), f"{n} frames: count and order kept"
        dur = audio_duration(out)
        assert dur is not None and abs(dur - n / 30) < 0.1, f"{n} frames: audio {dur} s"
        assert res["text"].startswith(f"swapped {n} faces in {n} frames"), res["text"]
        results[n] = res["hwm_kib"]
        out.unlink()
    ratio = results[3000] / results[300]
    print(f"peak RSS: 300 frames {results[300] / 1024:.0f} MiB, 3000 frames {results[3000] / 1024:.0f} MiB, "
          f"ratio {ratio:.3f}")
    assert ratio <= 1.10, results
