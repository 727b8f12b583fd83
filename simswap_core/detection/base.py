"""What every detector shares: input checks, frame resizing, batched greedy NMS, per-frame ranking."""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checks import check_images
from ..faces import DetectedFaces, faces_per_frame


def default_search_dirs() -> list[Path]:
    """Model folders of `simswap_core.models.find.model_search_dirs` ($SIMSWAP_MODELS_DIR, ComfyUI's models
    folder, ~/.cache/simswap/models) when that module is present, else none."""
    try:
        from ..models.find import model_search_dirs
    except ModuleNotFoundError as e:
        if e.name != f"{__package__.rsplit('.', 1)[0]}.models.find":
            raise
        return []
    return [Path(d) for d in model_search_dirs()]


def resize_255(frames: torch.Tensor, size: tuple[int, int], *, antialias: bool) -> torch.Tensor:
    """[N,3,H,W] in [0,1] -> [N,3,h,w] float32 in 0..255 rounded to integers (what a uint8 image holds).

    Bilinear with half-pixel centres (cv2.INTER_LINEAR); ``antialias`` low-pass filters when shrinking.
    """
    x = frames.float() * 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                          antialias=antialias and (size[0] < x.shape[-2] or size[1] < x.shape[-1]))
    return x.clamp_(0, 255).round_()


def rank_within_frame(frame_index: torch.Tensor, key: torch.Tensor, num_frames: int,
                      tiebreak: torch.Tensor | None = None) -> torch.Tensor:
    """[F] int64 rank of each item among the items of its frame, ascending ``key`` (then ``tiebreak``, then
    position). One sort for all frames: no per-frame loop."""
    n = frame_index.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=frame_index.device)
    perm = torch.arange(n, device=frame_index.device)
    if tiebreak is not None:
        perm = perm[torch.argsort(tiebreak[perm], stable=True)]
    perm = perm[torch.argsort(key[perm], stable=True)]
    perm = perm[torch.argsort(frame_index[perm], stable=True)]
    pos = torch.empty_like(perm)
    pos[perm] = torch.arange(n, device=perm.device)
    counts = faces_per_frame(frame_index, num_frames)
    starts = torch.cumsum(counts, 0) - counts
    return pos - starts[frame_index]


def box_iou(a: torch.Tensor, b: torch.Tensor, offset: float = 0.0) -> torch.Tensor:
    """[K,4] x [M,4] x1,y1,x2,y2 -> [K,M] IoU; ``offset`` 1 gives the inclusive-pixel areas of insightface."""
    area_a = (a[:, 2] - a[:, 0] + offset).clamp(min=0) * (a[:, 3] - a[:, 1] + offset).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0] + offset).clamp(min=0) * (b[:, 3] - b[:, 1] + offset).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt + offset).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-12)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, frame_index: torch.Tensor, iou_threshold: float,
                *, offset: float = 0.0, top_k: int = 5000, num_frames: int | None = None,
                check_every: int = 4) -> torch.Tensor:
    """Greedy NMS within each frame, all frames at once. Returns kept indices [K] (any order).

    Exactly the result of the classic greedy loop (highest score first, drop boxes overlapping a kept one by more
    than ``iou_threshold``), computed as the fixed point of ``keep = not any(kept earlier box overlaps)``
    (Cluster-NMS), a few matrix ops instead of a loop over boxes. At most ``top_k`` best candidates per frame are
    considered (OpenCV's NMSBoxes top_k). Device -> host syncs: one per ``check_every`` fixed-point steps (the
    number of steps is the longest chain of suppressions, 1-3 for faces, not the number of boxes) plus one for
    the kept indices; the ``top_k`` cut adds two only when there are more than ``top_k`` candidates in all.
    ``num_frames`` (frames of the batch) saves a sync there when given.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    if 0 < top_k < n:
        frames = int(frame_index.max()) + 1 if num_frames is None else int(num_frames)
        rank = rank_within_frame(frame_index[order], torch.arange(n, device=boxes.device), frames)
        order = order[rank < top_k]
    b, fi = boxes[order], frame_index[order]
    k = b.shape[0]
    earlier = torch.ones(k, k, dtype=torch.bool, device=b.device).triu(1)  # [i,j]: i ranks before j
    sup = (box_iou(b, b, offset) > iou_threshold) & (fi[:, None] == fi[None, :]) & earlier
    keep = torch.ones(k, dtype=torch.bool, device=b.device)
    steps = 0
    while steps < k:  # converges in at most k steps; checked every `check_every` steps
        previous = keep
        for _ in range(max(1, min(check_every, k - steps))):
            previous, keep = keep, ~(sup & keep[:, None]).any(0)
            steps += 1
        if torch.equal(keep, previous):
            break
    return order[keep]


def assemble(boxes: torch.Tensor, points: torch.Tensor, scores: torch.Tensor, frame_index: torch.Tensor,
             frame_sizes: list[tuple[int, int]], device: torch.device) -> DetectedFaces:
    """DetectedFaces on ``device``, faces sorted by frame, then left to right (box centre x, then y)."""
    if boxes.shape[0] == 0:
        return DetectedFaces.empty(frame_sizes, device=device)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    perm = torch.argsort(cy, stable=True)
    perm = perm[torch.argsort(cx[perm], stable=True)]
    perm = perm[torch.argsort(frame_index[perm], stable=True)]
    return DetectedFaces(boxes[perm].float().to(device), points[perm].float().to(device),
                         scores[perm].float().to(device), frame_index[perm].long().to(device), list(frame_sizes))


def target_size(h: int, w: int, det_size: int | None) -> tuple[int, int]:
    """(h, w) after scaling the long side to ``det_size`` (unchanged when det_size is 0/None)."""
    if not det_size:
        return h, w
    s = det_size / max(h, w)
    return max(1, int(round(h * s))), max(1, int(round(w * s)))


def ceil_to(v: int, m: int) -> int:
    return int(math.ceil(v / m) * m)


class FaceDetector:
    """Base of the ONNX face detectors. ``detect`` takes [N,3,H,W] RGB [0,1] frames on any device and returns
    DetectedFaces on the same device (faces of each frame ordered left to right). ``backend`` says what runs the
    network: "torch" (default) or "onnxruntime"."""

    name: str = "detector"
    model_path: Path
    providers: list[str]
    threshold: float
    det_size: int | None
    batch_size: int = 8
    backend: str = "torch"

    def detect(self, frames: torch.Tensor) -> DetectedFaces:
        check_images(frames, "frames", allow_empty=True)
        n, _, h, w = frames.shape
        sizes = [(int(h), int(w))] * n
        if n == 0 or h == 0 or w == 0:
            return DetectedFaces.empty(sizes, device=frames.device)
        parts = []
        with torch.no_grad():
            for start in range(0, n, self.batch_size):
                chunk = frames[start:start + self.batch_size]
                boxes, points, scores, idx = self._detect_batch(chunk)
                parts.append((boxes, points, scores, idx + start))  # frame index within the whole call
        boxes, points, scores, idx = (torch.cat([p[i] for p in parts]) for i in range(4))
        return assemble(boxes, points, scores, idx, sizes, frames.device)

    def _detect_batch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Faces of a chunk of frames, on the device the network ran on (the torch backend's device, CPU for
        onnxruntime): boxes [K,4], points [K,5,2], scores [K], frame within the chunk [K] int64."""
        raise NotImplementedError

    def __call__(self, frames: torch.Tensor) -> DetectedFaces:
        return self.detect(frames)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.model_path)!r}, threshold={self.threshold}, "
                f"det_size={self.det_size}, backend={self.backend!r}, providers={self.providers})")


def detector_label(detector: object) -> str:
    """``"yunet, threshold 0.5"``: how messages name a detector."""
    name = getattr(detector, "name", None) or type(detector).__name__
    thr = getattr(detector, "threshold", None)
    return f"{name}, threshold {thr}" if thr is not None else str(name)
