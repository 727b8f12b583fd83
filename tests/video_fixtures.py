"""Synthetic video clips for the video / streaming / tracking tests and benchmarks (built at test time).

Real faces: square crops of two (or three) different people of insightface's ``t1.jpg`` (read from the installed
package, never committed), pasted on a smooth synthetic background and moving slowly (about 0.6 px per frame).
Person 0 is on the left, person 1 on the right (person 2, if asked for, in between). Every frame carries its number
as a binary block code in the bottom-left corner, outside the faces, that survives x264 at crf 17
(``read_frame_numbers`` / ``decode_frame_numbers``).

    info = make_clip(tmp_path / "clip.mp4", frames=300, hide={1: range(40, 45)}, cut_at=150)
    frames = clip_frames(frames=20)                  # the same frames in memory: [N,3,H,W] float32 RGB [0,1]
    assert read_frame_numbers(out_path) == list(range(300))

Options: ``hide={person: range(...)}`` covers that person's face with a flat card in those frames (the detector
finds no face there: checked by tests/test_video_fixtures.py); ``cut_at=k`` changes the shot at frame k (other
background, people at other places and a little smaller, no overlap with their boxes before the cut);
``audio=True`` adds a 440 Hz sine (AAC, 48 kHz mono) as long as the video; ``vfr=True`` gives irregular frame
durations (0.5x .. 2x the nominal 1/fps, seeded); odd sizes are written as yuv444p (yuv420p needs even sizes).
Files are written with PyAV directly (not with the code under test).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

# Face boxes (x1, y1, x2, y2) of the people used, as YuNet finds them in t1.jpg (1280x886): a man (t1 face 2,
# middle-left), a woman (t1 face 5, far right), a laughing man (t1 face 3, centre) - three different people.
T1_FACES: tuple[tuple[int, int, int, int], ...] = ((462, 265, 577, 417), (1132, 274, 1228, 399),
                                                   (751, 347, 845, 472))
CROP_MARGIN = 1.8          # crop side = CROP_MARGIN x the longer side of the face box
CODE_BITS = 16             # frame numbers 0 .. 65535
CHECK_BITS = 4             # nibble XOR of the number: most damage to a code reads as -1, not as a wrong number
CODE_COLS = 10             # the code is CODE_ROWS x CODE_COLS square cells (bit k at row k // COLS, col k % COLS)
CODE_ROWS = 2
TIME_BASE = Fraction(1, 90000)
AUDIO_RATE = 48000
AUDIO_HZ = 440.0
OCCLUDER_RGB = (70, 86, 104)   # the card that hides a face
_LUMA_FIRST = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray")


def t1_file() -> Path:
    """insightface's t1.jpg; when insightface or the photo is missing: pytest.skip inside a test, else
    RuntimeError (benchmarks)."""
    spec = importlib.util.find_spec("insightface")
    p = None
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
    if p is None or not p.is_file():
        msg = "insightface (its data/images/t1.jpg sample photo) is not installed"
        if not os.environ.get("PYTEST_CURRENT_TEST"):
            raise RuntimeError(msg)
        import pytest

        pytest.skip(msg)
    return p


@functools.lru_cache(maxsize=1)
def _t1_uint8() -> np.ndarray:
    from PIL import Image

    with Image.open(t1_file()) as im:
        return np.asarray(im.convert("RGB")).copy()          # [886,1280,3] uint8 RGB


@dataclass(frozen=True)
class _Person:
    crop: np.ndarray                    # [S,S,3] uint8 crop of t1.jpg
    face: tuple[float, float, float, float]   # face box inside the crop (crop pixels)


@functools.lru_cache(maxsize=4)
def _person(k: int) -> _Person:
    img = _t1_uint8()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = T1_FACES[k]
    side = int(round(CROP_MARGIN * max(x2 - x1, y2 - y1)))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    top = int(round(min(max(cy - side / 2, 0), h - side)))
    crop = img[top:top + side, left:left + side].copy()
    return _Person(crop, (x1 - left, y1 - top, x2 - left, y2 - top))


# Two more people of t1.jpg, never in the clips: source photos for the identities to swap in.
OTHER_FACES: tuple[tuple[int, int, int, int], ...] = ((53, 267, 170, 400), (899, 57, 1005, 197))


def _face_crop(box: tuple[int, int, int, int], margin: float = 2.2) -> np.ndarray:
    img = _t1_uint8()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = box
    side = int(round(margin * max(x2 - x1, y2 - y1)))
    left = int(round(min(max((x1 + x2) / 2 - side / 2, 0), w - side)))
    top = int(round(min(max((y1 + y2) / 2 - side / 2, 0), h - side)))
    return img[top:top + side, left:left + side].copy()


def write_source_photo(path: str | Path, which: int = 0) -> Path:
    """Write a PNG photo of a person who is NOT in the clips (t1.jpg face 0 or 4 for ``which`` 0 / 1): a source
    identity to swap in. Never overwrites."""
    from PIL import Image

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists")
    Image.fromarray(_face_crop(OTHER_FACES[which])).save(path)
    return path


def write_person_photo(path: str | Path, person: int) -> Path:
    """Write a PNG photo of clip person ``person`` (0 left, 1 right, 2 middle): a reference photo of the person to
    replace (e.g. ``--map SRC=REF``). Never overwrites."""
    from PIL import Image

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists")
    Image.fromarray(_face_crop(T1_FACES[person])).save(path)
    return path


# ------------------------------------------------------------------------------------------ layout

@dataclass
class ClipInfo:
    """What a synthetic clip holds (N frames, P people).

    boxes:   [N,P,4] float32 face boxes (x1, y1, x2, y2, frame pixels) where each person's face is drawn (also
             in hidden frames: where it is under the card).
    visible: [N,P] bool, False in the frames of ``hide`` (face covered: the detector must not find it).
    pts:     presentation timestamps in ``time_base`` (frame i at pts[i] * time_base seconds; regular i/fps
             unless ``vfr``). For a file these are the timestamps given to the encoder.
    """

    path: Path | None
    frames: int
    size: tuple[int, int]                 # (W, H)
    fps: Fraction
    people: int
    boxes: torch.Tensor
    visible: torch.Tensor
    pts: list[int]
    time_base: Fraction
    cut_at: int | None = None
    hide: dict[int, Sequence[int]] = field(default_factory=dict)
    audio: bool = False
    audio_rate: int = AUDIO_RATE
    vfr: bool = False
    code_box: tuple[int, int, int, int] = (0, 0, 0, 0)   # x1, y1, x2, y2 of the frame-number code

    @property
    def width(self) -> int:
        return self.size[0]

    @property
    def height(self) -> int:
        return self.size[1]

    @property
    def times(self) -> list[float]:
        """Presentation time of each frame in seconds."""
        return [float(p * self.time_base) for p in self.pts]

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last one."""
        if not self.pts:
            return 0.0
        return float((self.pts[-1] + self._last_duration()) * self.time_base)

    def _last_duration(self) -> int:
        return int(round(1 / (self.fps * self.time_base))) if not self.vfr or len(self.pts) < 2 \
            else self.pts[-1] - self.pts[-2]

    def shot(self, i: int) -> int:
        """0 before the cut, 1 from ``cut_at`` on."""
        return int(self.cut_at is not None and i >= self.cut_at)


def _cell(width: int, height: int) -> int:
    """Side of one code cell in pixels for a frame size (4 px at 180 lines, 8 px at 360)."""
    return max(3, int(round(min(width, height) / 45)))


def code_box(width: int, height: int) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the frame-number code, bottom-left corner, one cell of quiet zone around it."""
    c = _cell(width, height)
    x1, y2 = c, height - c
    return x1, y2 - CODE_ROWS * c, x1 + CODE_COLS * c, y2


def _check(n: int) -> int:
    return (n ^ (n >> 4) ^ (n >> 8) ^ (n >> 12)) & 0xF


def _code_bits(n: int) -> list[int]:
    return [(n >> k) & 1 for k in range(CODE_BITS)] + [(_check(n) >> k) & 1 for k in range(CHECK_BITS)]


def _draw_code(img: np.ndarray, n: int) -> None:
    h, w = img.shape[:2]
    c = _cell(w, h)
    x1, y1, x2, y2 = code_box(w, h)
    img[max(y1 - c, 0):min(y2 + c, h), max(x1 - c, 0):x2 + c] = 128           # quiet zone (mid grey)
    for k, bit in enumerate(_code_bits(n)):
        r, col = divmod(k, CODE_COLS)
        img[y1 + r * c:y1 + (r + 1) * c, x1 + col * c:x1 + (col + 1) * c] = 255 if bit else 0


def decode_frame_numbers(frames: torch.Tensor | np.ndarray) -> list[int]:
    """Frame numbers from frames [N,3,H,W] float RGB [0,1] (a tensor) or [N,H,W,3] uint8 (an array); -1 where the
    code is unreadable (its check bits do not match)."""
    if isinstance(frames, torch.Tensor):
        if frames.dim() == 3:
            frames = frames[None]
        h, w = frames.shape[-2:]
        x1, y1, x2, y2 = code_box(w, h)
        region = frames[:, :3, y1:y2, x1:x2].detach().float().cpu().mul(255).mean(dim=1).numpy()   # [N,h,w]
    else:
        arr = np.asarray(frames)
        if arr.ndim == 3:
            arr = arr[None]
        h, w = arr.shape[1:3]
        x1, y1, x2, y2 = code_box(w, h)
        region = arr[:, y1:y2, x1:x2, :3].astype(np.float32).mean(axis=-1)
    return _decode_region(region, _cell(w, h))


def _decode_region(region: np.ndarray, c: int) -> list[int]:
    """Numbers from the code regions [N, ROWS*c, COLS*c] of brightness 0..255 (RGB mean or video luma)."""
    lo, hi = c // 4, c - c // 4          # the middle of each cell (x264 blurs the edges)
    n = region.shape[0]
    bits = np.empty((n, CODE_BITS + CHECK_BITS), dtype=np.int64)
    for k in range(CODE_BITS + CHECK_BITS):
        r, col = divmod(k, CODE_COLS)
        bits[:, k] = region[:, r * c + lo:r * c + hi, col * c + lo:col * c + hi].mean(axis=(1, 2)) > 128
    nums = (bits[:, :CODE_BITS] * (1 << np.arange(CODE_BITS))).sum(axis=1)
    checks = (bits[:, CODE_BITS:] * (1 << np.arange(CHECK_BITS))).sum(axis=1)
    return [int(v) if _check(int(v)) == int(ch) else -1 for v, ch in zip(nums, checks)]


def read_frame_numbers(path: str | Path) -> list[int]:
    """The frame number of every frame of a video file, in decode (presentation) order (-1: unreadable code).

    Reads the luma plane of YUV frames directly (black 16 / white 235 in limited range, threshold 128), other
    pixel formats through RGB."""
    import av

    regions: list[np.ndarray] = []
    c = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            w, h = frame.width, frame.height
            x1, y1, x2, y2 = code_box(w, h)
            c = _cell(w, h)
            if frame.format.name in _LUMA_FIRST:
                plane = frame.planes[0]
                y = np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)
                regions.append(y[y1:y2, x1:x2].astype(np.float32))
            else:
                regions.append(frame.to_ndarray(format="rgb24")[y1:y2, x1:x2].astype(np.float32).mean(axis=-1))
    if not regions:
        return []
    return _decode_region(np.stack(regions), c)


def read_pts(path: str | Path) -> tuple[list[int], Fraction]:
    """Presentation timestamps of the frames of a video file (decode order) and the stream's time base."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        pts: list[int] = []
        for f in c.decode(stream):
            if f.pts is None:
                raise ValueError(f"{path}: frame {len(pts)} has no timestamp")
            pts.append(int(f.pts))
        assert stream.time_base is not None
        return pts, Fraction(stream.time_base)


def audio_duration(path: str | Path) -> float | None:
    """Seconds of decoded audio in the first audio stream of a file; None when it has no audio stream."""
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        samples = 0
        rate = a.rate
        for fr in c.decode(a):
            samples += fr.samples
            rate = fr.sample_rate
        return samples / float(rate or 1)


def _background(width: int, height: int, shot: int) -> np.ndarray:
    """A smooth synthetic background [H,W,3] uint8: warm gradient with soft bands (shot 0) or a cool one with a
    soft checker (shot 1)."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    if shot == 0:
        r = 175 + 50 * x - 30 * y
        g = 135 + 30 * y + 12 * np.sin(6.0 * x + 2.0 * y)
        b = 95 + 25 * np.sin(3.0 * y + 1.0) + 0 * x
    else:
        chk = np.sin(9.0 * x) * np.sin(6.0 * y)
        r = 60 + 25 * y + 20 * chk + 0 * x
        g = 110 + 40 * x + 15 * chk
        b = 150 + 50 * (1 - y) - 20 * chk
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Shot:
    background: np.ndarray
    patches: list[np.ndarray]                           # per person [s,s,3] uint8
    faces: list[tuple[float, float, float, float]]      # face box inside each patch
    centres: list[tuple[float, float]]                  # face centre per person (frame pixels), before motion


def _shot(width: int, height: int, people: int, shot: int) -> _Shot:
    from PIL import Image

    face_h = (0.30 if shot == 0 else 0.24) * height            # face box height in the frame
    if shot == 0:
        xs = [(2 * k + 1) / (2 * people) for k in range(people)]
        ys = [0.42] * people
    else:  # other places: no overlap with the boxes before the cut
        xs = [(2 * k + 1) / (2 * people) + 0.55 / (2 * people) for k in range(people)]
        ys = [0.34 + 0.08 * (k % 2) for k in range(people)]
    order = [0, 2, 1] if people == 3 else list(range(people))   # left to right: person 0, (2), 1
    patches, faces, centres = [], [], []
    for k in range(people):
        p = _person(k)
        fx1, fy1, fx2, fy2 = p.face
        scale = face_h / (fy2 - fy1)
        side = max(int(round(p.crop.shape[0] * scale)), 8)
        s = side / p.crop.shape[0]
        patches.append(np.asarray(Image.fromarray(p.crop).resize((side, side), Image.Resampling.LANCZOS)))
        faces.append((fx1 * s, fy1 * s, fx2 * s, fy2 * s))
        centres.append((xs[order.index(k)] * width, ys[order.index(k)] * height))
    return _Shot(_background(width, height, shot), patches, faces, centres)


def _motion(i: int, k: int, width: int, height: int) -> tuple[float, float]:
    """Slow drift of person k at frame i (pixels): <= 3 % of the width, about 0.6 px per frame at 640 wide."""
    return (0.03 * width * np.sin(2 * np.pi * i / 200 + 1.7 * k),
            0.015 * height * np.sin(2 * np.pi * i / 160 + 2.3 * k))


def _check_args(frames: int, size: tuple[int, int], people: int, hide: Mapping[int, Sequence[int]] | None,
                cut_at: int | None) -> None:
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    w, h = size
    if w < 48 or h < 36:
        raise ValueError(f"size must be at least 48x36 (faces and the frame code must fit), got {w}x{h}")
    if not 1 <= people <= len(T1_FACES):
        raise ValueError(f"people must be 1..{len(T1_FACES)}, got {people}")
    for k in (hide or {}):
        if not 0 <= k < people:
            raise ValueError(f"hide: person {k} is not in the clip (people={people})")
    if cut_at is not None and not 0 < cut_at < frames:
        raise ValueError(f"cut_at must be inside the clip (1..{frames - 1}), got {cut_at}")
    if frames >= 1 << CODE_BITS:
        raise ValueError(f"frames must be < {1 << CODE_BITS} (the frame code has {CODE_BITS} bits)")


def _render(frames: int, size: tuple[int, int], people: int, hide: Mapping[int, Sequence[int]] | None,
            cut_at: int | None, start: int = 0
            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (frame [H,W,3] uint8 RGB, face boxes [P,4] float32, visible [P] bool) for frames start..frames-1."""
    w, h = size
    hidden = {k: set(v) for k, v in (hide or {}).items()}
    shots = [_shot(w, h, people, 0)] + ([_shot(w, h, people, 1)] if cut_at is not None else [])
    for i in range(start, frames):
        sh = shots[int(cut_at is not None and i >= cut_at)]
        img = sh.background.copy()
        boxes = np.zeros((people, 4), dtype=np.float32)
        vis = np.ones(people, dtype=bool)
        for k in range(people):
            patch, (fx1, fy1, fx2, fy2) = sh.patches[k], sh.faces[k]
            dx, dy = _motion(i, k, w, h)
            cx, cy = sh.centres[k][0] + dx, sh.centres[k][1] + dy
            left = int(round(cx - (fx1 + fx2) / 2))
            top = int(round(cy - (fy1 + fy2) / 2))
            _paste(img, patch, left, top)
            boxes[k] = (left + fx1, top + fy1, left + fx2, top + fy2)
            if i in hidden.get(k, ()):
                vis[k] = False
                bw, bh = fx2 - fx1, fy2 - fy1
                x1, y1 = int(left + fx1 - 0.3 * bw), int(top + fy1 - 0.3 * bh)
                x2, y2 = int(np.ceil(left + fx2 + 0.3 * bw)), int(np.ceil(top + fy2 + 0.3 * bh))
                img[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] = OCCLUDER_RGB
        _draw_code(img, i)
        yield img, boxes, vis


def _paste(img: np.ndarray, patch: np.ndarray, left: int, top: int) -> None:
    h, w = img.shape[:2]
    s = patch.shape[0]
    x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + s, w), min(top + s, h)
    if x2 > x1 and y2 > y1:
        img[y1:y2, x1:x2] = patch[y1 - top:y2 - top, x1 - left:x2 - left]


def _pts(frames: int, fps: Fraction, vfr: bool, seed: int) -> list[int]:
    step = Fraction(1) / (fps * TIME_BASE)              # ticks per frame
    if not vfr:
        return [int(round(i * step)) for i in range(frames)]
    rng = np.random.default_rng(seed)
    mult = rng.choice(np.array([0.5, 1.0, 1.0, 1.5, 2.0]), size=frames)
    out, t = [], 0
    for m in mult:
        out.append(t)
        t += max(int(round(float(m * step))), 1)
    return out


def clip_info(*, frames: int = 300, size: tuple[int, int] = (640, 360), fps: float | Fraction = 30, people: int = 2,
              hide: Mapping[int, Sequence[int]] | None = None, cut_at: int | None = None, audio: bool = False,
              vfr: bool = False, seed: int = 0, path: Path | None = None) -> ClipInfo:
    """The ClipInfo of a clip without rendering the pixels (boxes, visibility, timestamps)."""
    _check_args(frames, size, people, hide, cut_at)
    boxes = torch.zeros(frames, people, 4)
    visible = torch.ones(frames, people, dtype=torch.bool)
    w, h = size
    shots = [_shot(w, h, people, 0)] + ([_shot(w, h, people, 1)] if cut_at is not None else [])
    hidden = {k: set(v) for k, v in (hide or {}).items()}
    for i in range(frames):
        sh = shots[int(cut_at is not None and i >= cut_at)]
        for k in range(people):
            fx1, fy1, fx2, fy2 = sh.faces[k]
            dx, dy = _motion(i, k, w, h)
            left = int(round(sh.centres[k][0] + dx - (fx1 + fx2) / 2))
            top = int(round(sh.centres[k][1] + dy - (fy1 + fy2) / 2))
            boxes[i, k] = torch.tensor([left + fx1, top + fy1, left + fx2, top + fy2])
            visible[i, k] = i not in hidden.get(k, ())
    fps = Fraction(fps).limit_denominator(100000)
    return ClipInfo(path, frames, (w, h), fps, people, boxes, visible, _pts(frames, fps, vfr, seed), TIME_BASE,
                    cut_at, dict(hide or {}),
                    audio, AUDIO_RATE, vfr, code_box(w, h))


def clip_frames(*, frames: int = 30, size: tuple[int, int] = (640, 360), people: int = 2,
                hide: Mapping[int, Sequence[int]] | None = None, cut_at: int | None = None,
                start: int = 0) -> torch.Tensor:
    """Frames start..frames-1 of the clip in memory: [N,3,H,W] float32 RGB [0,1] (no compression)."""
    _check_args(frames, size, people, hide, cut_at)
    imgs = [img for img, _b, _v in _render(frames, size, people, hide, cut_at, start)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(255.0)


def make_clip(path: str | Path, *, frames: int = 300, size: tuple[int, int] = (640, 360), fps: float | Fraction = 30,
              people: int = 2, hide: Mapping[int, Sequence[int]] | None = None, cut_at: int | None = None,
              audio: bool = True, vfr: bool = False, crf: int = 17, preset: str = "veryfast", seed: int = 0,
              ) -> ClipInfo:
    """Write a synthetic clip (H.264 in .mp4 / .mkv / .mov, with PyAV) and return what it holds.

    size: (W, H); odd sizes are encoded yuv444p. fps: nominal rate (vfr: irregular durations around it, seeded).
    hide: {person: frames} with that person's face covered. cut_at: first frame of the second shot. audio: a
    440 Hz sine (AAC 48 kHz mono) as long as the video. The file must not exist (never overwrites).
    """
    import av

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: already exists (make_clip never overwrites)")
    info = clip_info(frames=frames, size=size, fps=fps, people=people, hide=hide, cut_at=cut_at, audio=audio,
                     vfr=vfr, seed=seed, path=path)
    w, h = size
    container = av.open(str(path), mode="w")
    try:
        vs = container.add_stream("libx264", rate=info.fps)
        vs.width, vs.height = w, h
        vs.pix_fmt = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        vs.time_base = TIME_BASE
        vs.codec_context.time_base = TIME_BASE
        vs.options = {"crf": str(crf), "preset": preset}
        a_stream = None
        if audio:
            a_stream = container.add_stream("aac", rate=AUDIO_RATE)
            a_stream.layout = "mono"
        total_s = info.duration
        a_done = 0
        a_total = int(round(total_s * AUDIO_RATE))
        for i, (img, _boxes, _vis) in enumerate(_render(frames, size, people, hide, cut_at)):
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = info.pts[i]
            vf.time_base = TIME_BASE
            container.mux(vs.encode(vf))
            if a_stream is not None:        # keep audio and video interleaved
                upto = min(int(round(float(info.pts[i] * TIME_BASE) * AUDIO_RATE)) + 1024, a_total)
                a_done = _mux_sine(container, a_stream, a_done, upto)
        container.mux(vs.encode(None))
        if a_stream is not None:
            _mux_sine(container, a_stream, a_done, a_total, final=True)
            container.mux(a_stream.encode(None))
    except BaseException:
        container.close()
        path.unlink(missing_ok=True)
        raise
    container.close()
    return info


def _mux_sine(container, stream, done: int, upto: int, final: bool = False) -> int:
    """Encode the sine from sample ``done`` up to ``upto`` in 1024-sample frames (the rest too when ``final``)."""
    import av

    while upto - done >= 1024 or (final and upto > done):
        n = min(1024, upto - done)
        t = np.arange(done, done + n, dtype=np.float64) / AUDIO_RATE
        samples = (0.2 * np.sin(2 * np.pi * AUDIO_HZ * t)).astype(np.float32)[None]
        fr = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        fr.sample_rate = AUDIO_RATE
        fr.pts = done
        fr.time_base = Fraction(1, AUDIO_RATE)
        container.mux(stream.encode(fr))
        done += n
    return done
