"""SCRFD face detector (insightface model packs: antelopev2, buffalo_*), own decoder; the network runs as a torch
module built from the ONNX file (default) or in onnxruntime (``backend="onnxruntime"``).

Preprocessing and decoding reproduce insightface's ``model_zoo/scrfd.py`` (the detector official SimSwap uses):
the frame is resized (bilinear) so it fits ``det_size`` x ``det_size`` keeping its aspect ratio, pasted top-left
on a black canvas, fed as RGB ``(x - 127.5) / 128`` (insightface calls cv2.dnn.blobFromImage(..., swapRB=True)
on a BGR image, so the network sees RGB). Outputs per stride 8/16/32 (2 anchors per cell): scores, box distances
(left, top, right, bottom) and 5 point offsets, all in stride units from the anchor centre (col*stride, row*stride).
NMS at IoU 0.4 with insightface's inclusive (+1) box areas. The ``insightface`` package is not needed.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, MissingModelError
from .backend import DEFAULT_BACKEND, GraphRunner
from .base import FaceDetector, batched_nms, default_search_dirs
from .onnx_session import read_onnx_model

# Detector file of each insightface pack (what insightface's FaceAnalysis would route to "detection").
PACK_DETECTORS: dict[str, str] = {
    "antelopev2": "scrfd_10g_bnkps.onnx",
    "buffalo_l": "det_10g.onnx",
    "buffalo_m": "det_2.5g.onnx",
    "buffalo_s": "det_500m.onnx",
    "buffalo_sc": "det_500m.onnx",
}
_LAYOUTS = {  # number of outputs -> (feature maps, strides, anchors per cell, has key points)
    6: (3, (8, 16, 32), 2, False),
    9: (3, (8, 16, 32), 2, True),
    10: (5, (8, 16, 32, 64, 128), 1, False),
    15: (5, (8, 16, 32, 64, 128), 1, True),
}
_MAX_PROBE_BYTES = 64 << 20  # pack files bigger than this are recognition models, never opened to probe


def _fetch_hint(pack: str) -> str:
    return (f"Get it with `python install.py --model {pack}`, or unzip insightface's {pack}.zip into "
            f"<ComfyUI>/models/insightface/models/{pack}/ (the folder layout ComfyUI face nodes already use)")


def pack_folders(pack: str, search_dirs: Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Folders where insightface pack ``pack`` may live, in search order: for each search dir D,
    ``D/insightface/models/<pack>``, ``D/models/<pack>``, ``D/<pack>``; then ``~/.insightface/models/<pack>``
    (insightface's own default root) when ``search_dirs`` is None."""
    dirs = default_search_dirs() if search_dirs is None else [Path(d).expanduser() for d in search_dirs]
    out = []
    for d in dirs:
        d = Path(d)
        out += [d / "insightface" / "models" / pack, d / "models" / pack, d / pack]
    if search_dirs is None:
        out.append(Path.home() / ".insightface" / "models" / pack)
    return out


def detector_in_folder(folder: Path) -> Path | None:
    """The SCRFD file of a pack folder: a known detector file name, else any .onnx (< 64 MB) with >= 5 outputs,
    insightface's routing rule for detection models."""
    for name in dict.fromkeys(PACK_DETECTORS.values()):
        if (folder / name).is_file():
            return folder / name
    for p in sorted(folder.glob("*.onnx")):
        if "_selfgen_" in p.name or p.stat().st_size > _MAX_PROBE_BYTES:
            continue
        try:
            import onnx
            if len(onnx.load_from_string(read_onnx_model(p)).graph.output) >= 5:  # never blocks on a FIFO
                return p
        except Exception:  # unreadable files are not detectors; a clear error follows if nothing matches
            continue
    return None


def find_scrfd(name_or_path: str | os.PathLike, search_dirs: Sequence[str | os.PathLike] | None = None) -> Path:
    """An SCRFD .onnx from a file path, a pack folder, or a pack name ("antelopev2", "buffalo_l", ...)."""
    p = Path(name_or_path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        found = detector_in_folder(p)
        if found is None:
            raise MissingModelError(f"no SCRFD detector in folder {str(p)!r}: expected one of "
                                    f"{sorted(set(PACK_DETECTORS.values()))} or an .onnx with >= 5 outputs. "
                                    + _fetch_hint(p.name if p.name in PACK_DETECTORS else "antelopev2"))
        return found
    name = str(name_or_path)
    if name not in PACK_DETECTORS:
        raise MissingModelError(f"SCRFD detector {name!r} not found: not an existing file or folder, and not a "
                                f"known insightface pack ({', '.join(PACK_DETECTORS)})")
    searched = pack_folders(name, search_dirs)
    for folder in searched:
        if folder.is_dir():
            found = detector_in_folder(folder)
            if found is not None:
                return found
    raise MissingModelError(f"insightface pack {name!r} detector {PACK_DETECTORS[name]!r} not found. Searched: "
                            + "; ".join(str(f) for f in searched) + ". " + _fetch_hint(name))


def letterbox_size(h: int, w: int, in_h: int, in_w: int) -> tuple[int, int, float]:
    """(new_h, new_w, det_scale) exactly as insightface's SCRFD.detect computes them."""
    im_ratio = float(h) / w
    model_ratio = float(in_h) / in_w
    if im_ratio > model_ratio:
        new_h = in_h
        new_w = int(new_h / im_ratio)
    else:
        new_w = in_w
        new_h = int(new_w * im_ratio)
    new_h, new_w = max(1, new_h), max(1, new_w)
    return new_h, new_w, float(new_h) / h


def anchor_centres(height: int, width: int, stride: int, num_anchors: int,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """[height*width*num_anchors, 2] (x, y) anchor centres, row-major cells, anchors of a cell adjacent."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    c = (torch.stack([xs, ys], dim=-1).reshape(-1, 2) * stride).float()
    return c.repeat_interleave(num_anchors, dim=0)


def decode_scrfd(outs: list[torch.Tensor], n: int, in_h: int, in_w: int, threshold: float, fmc: int,
                 strides: Sequence[int], num_anchors: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SCRFD outputs (session order: fmc score maps, fmc box maps, fmc point maps; each [n, K, C] or [n*K, C])
    -> candidates with score >= threshold: boxes [M,4], points [M,5,2], scores [M], image index [M] in network
    input pixels, on the outputs' device. All strides at once: one ``nonzero`` (one device -> host sync)."""
    dev = outs[0].device
    score, dist, kps, centre, stride = [], [], [], [], []
    for i, s in enumerate(strides):
        c = anchor_centres(in_h // s, in_w // s, s, num_anchors, dev)
        k = c.shape[0]
        score.append(outs[i].reshape(n, k))
        dist.append(outs[i + fmc].reshape(n, k, 4))
        kps.append(outs[i + 2 * fmc].reshape(n, k, 5, 2))
        centre.append(c)
        stride.append(torch.full((k,), float(s), device=dev))
    sc = torch.cat(score, 1)
    img, a = torch.nonzero(sc >= threshold, as_tuple=True)
    st = torch.cat(stride)[a][:, None]
    d = torch.cat(dist, 1)[img, a] * st
    kp = torch.cat(kps, 1)[img, a] * st[:, None]
    c = torch.cat(centre)[a]
    boxes = torch.cat([c - d[:, :2], c + d[:, 2:]], dim=-1)
    return boxes, c[:, None, :] + kp, sc[img, a], img


class SCRFDDetector(FaceDetector):
    """SCRFD with 5 key points (``scrfd_10g_bnkps.onnx``, ``det_10g.onnx``, ...): box, points, score per face.

    det_size: square letterbox size for models with a dynamic input size (official SimSwap: 640); a model with a
    fixed input size uses that. threshold: min score (official SimSwap: 0.6, insightface default 0.5).
    backend: "torch" (default: the network is a torch module on ``device``; letterbox, network, decoding and NMS
    stay there) or "onnxruntime" (optional; DependencyError with the pip command when it is not installed).
    """

    name = "scrfd"

    def __init__(self, model_path: str | os.PathLike, *, threshold: float = 0.5, nms_threshold: float = 0.4,
                 det_size: int = 640, device: str | torch.device | None = None, batch_size: int = 8,
                 threads: int | None = None, search_dirs: Sequence[str | os.PathLike] | None = None,
                 backend: str = DEFAULT_BACKEND):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"SCRFDDetector threshold: expected a score in [0,1], got {threshold}")
        if not det_size or det_size < 32:
            raise ValueError(f"SCRFDDetector det_size: expected an input size >= 32 (e.g. 640), got {det_size}")
        self.model_path = find_scrfd(model_path, search_dirs)
        self.threshold, self.nms_threshold = float(threshold), float(nms_threshold)
        self.batch_size = max(1, int(batch_size))
        self.runner = GraphRunner(self.model_path, device, backend=backend, threads=threads)
        self.backend, self.providers = self.runner.backend, self.runner.providers
        self.session = self.runner.session  # the onnxruntime session (None for the torch backend)
        n_out = len(self.runner.output_names)
        if n_out not in _LAYOUTS:
            raise CheckpointError(f"{str(self.model_path)!r} is not an SCRFD detector: expected 6, 9, 10 or 15 "
                                  f"outputs, got {n_out}")
        self.fmc, self.strides, self.num_anchors, use_kps = _LAYOUTS[n_out]
        if not use_kps:
            raise CheckpointError(f"{str(self.model_path)!r} is an SCRFD model without key points (no '_kps' "
                                  "variant); face alignment needs the 5 points: use scrfd_*_bnkps / det_10g")
        self.input_name = self.runner.input_names[0]
        self.output_names = self.runner.output_names
        shape = self.runner.input_shapes[0]
        fixed = len(shape) == 4 and shape[2] is not None and shape[3] is not None
        self.input_hw = (int(shape[2]), int(shape[3])) if fixed else (int(det_size), int(det_size))  # type: ignore[arg-type]
        self.det_size = self.input_hw[0] if fixed else int(det_size)
        self.batched_outputs = len(self.runner.output_shapes[0]) == 3
        self.batch_input = shape[0] is None if shape else False

    def prepare(self, frames: torch.Tensor) -> tuple[torch.Tensor, float]:
        """[N,3,H,W] RGB [0,1] -> (letterboxed network input [N,3,in_h,in_w] RGB ``(x-127.5)/128``, det_scale)."""
        n, _, h, w = frames.shape
        in_h, in_w = self.input_hw
        new_h, new_w, det_scale = letterbox_size(h, w, in_h, in_w)
        x = frames.float() * 255.0
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False).clamp_(0, 255).round_()
        canvas = torch.zeros(n, 3, in_h, in_w, dtype=torch.float32, device=frames.device)
        canvas[:, :, :new_h, :new_w] = x
        return (canvas - 127.5) / 128.0, det_scale

    def _detect_batch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n = frames.shape[0]
        dev = self.runner.device if self.runner.net is not None else frames.device
        net_input, det_scale = self.prepare(frames.to(dev))
        if self.batch_input and self.batched_outputs:
            outs = self.runner.run(net_input)
        else:  # the model takes (or returns) one image at a time: rows of a batch would interleave
            per = [self.runner.run(net_input[i:i + 1]) for i in range(n)]
            outs = [torch.cat([p[j].reshape(1, -1, p[j].shape[-1]) for p in per]) for j in range(len(per[0]))]
        in_h, in_w = self.input_hw
        boxes, points, scores, index = decode_scrfd(outs, n, in_h, in_w, self.threshold, self.fmc, self.strides,
                                                    self.num_anchors)
        boxes, points = boxes / det_scale, points / det_scale
        keep = batched_nms(boxes, scores, index, self.nms_threshold, offset=1.0, top_k=0, num_frames=n)
        return boxes[keep], points[keep], scores[keep], index[keep]
