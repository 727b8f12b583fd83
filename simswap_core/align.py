"""Face alignment: 5-point similarity fit to SimSwap's templates and batched bilinear warps.

Everything is batched over faces and runs on the frames' device. Matrices are ``[F,2,3]`` float32 and map FRAME
pixel coordinates to CROP pixel coordinates (the official ``M`` given to ``cv2.warpAffine``), with OpenCV's pixel
centre convention (pixel ``i`` has its centre at coordinate ``i``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .checks import check_images, check_integer
from .errors import InputError
from .faces import DetectedFaces

# Official multi-pose templates (insightface's older 112 templates; SimSwap mode "None"), x, y in 112-space:
# left profile, left, frontal, right, right profile.
POSE_TEMPLATES_112 = (
    ((51.642, 50.115), (57.617, 49.990), (35.740, 69.007), (51.157, 89.050), (57.025, 89.702)),
    ((45.031, 50.118), (65.568, 50.872), (39.677, 68.111), (45.177, 86.190), (64.246, 86.758)),
    ((39.730, 51.138), (72.270, 51.138), (56.000, 68.493), (42.463, 87.010), (69.537, 87.010)),
    ((46.845, 50.872), (67.382, 50.118), (72.737, 68.111), (48.167, 86.758), (67.236, 86.190)),
    ((54.796, 49.990), (60.771, 50.115), (76.673, 69.007), (55.388, 89.702), (61.257, 89.050)),
)
# Official FFHQ template (SimSwap mode "ffhq", used by the 512 model), in 512-space.
FFHQ_TEMPLATE_512 = ((192.98138, 239.94708), (318.90277, 240.1936), (256.63416, 314.01935),
                     (201.26117, 371.41043), (313.08905, 371.15118))

ALIGN_MODES = ("none", "ffhq")
MAX_CROP_SIZE = 2048  # the SimSwap generators are 224 and 512; far larger crops would only exhaust memory


@dataclass
class AlignedFaces:
    """Aligned face crops of a batch of frames (F faces, flattened over frames).

    crops:       [F,3,S,S] float32 RGB in [0,1].
    matrices:    [F,2,3] float32, frame px -> crop px.
    frame_index: [F] int64, the frame each face comes from.
    frame_sizes: (H, W) of each frame.
    crop_size:   S.
    mode:        "none" (5 pose templates, official 224) or "ffhq" (official 512).
    points:      [F,5,2] float32 landmarks in CROP pixels (addition to the contract; None when unknown).
    """

    crops: torch.Tensor
    matrices: torch.Tensor
    frame_index: torch.Tensor
    frame_sizes: list[tuple[int, int]]
    crop_size: int
    mode: str
    points: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def select(self, keep: torch.Tensor) -> AlignedFaces:
        """Faces kept by a bool mask [F] or int64 indices."""
        if keep.dtype == torch.bool:
            keep = keep.nonzero().flatten()
        keep = keep.to(self.crops.device)
        return AlignedFaces(self.crops[keep], self.matrices[keep], self.frame_index[keep], list(self.frame_sizes),
                            self.crop_size, self.mode, None if self.points is None else self.points[keep])

    def to(self, device: torch.device | str) -> AlignedFaces:
        return AlignedFaces(self.crops.to(device), self.matrices.to(device), self.frame_index.to(device),
                            list(self.frame_sizes), self.crop_size, self.mode,
                            None if self.points is None else self.points.to(device))

    @staticmethod
    def empty(frame_sizes: list[tuple[int, int]], crop_size: int, mode: str | None = None,
              device: torch.device | str | None = None) -> AlignedFaces:
        """No faces, for frames of ``frame_sizes``."""
        s = int(crop_size)
        return AlignedFaces(crops=torch.zeros(0, 3, s, s, device=device), matrices=torch.zeros(0, 2, 3, device=device),
                            frame_index=torch.zeros(0, dtype=torch.int64, device=device),
                            frame_sizes=list(frame_sizes), crop_size=s, mode=mode or default_mode(s),
                            points=torch.zeros(0, 5, 2, device=device))

    @staticmethod
    def concat(items: list[AlignedFaces]) -> AlignedFaces:
        """Aligned faces of consecutive frame batches joined into one (frame indices offset by earlier batches)."""
        if not items:
            raise ValueError("AlignedFaces.concat: expected at least one item")
        offset, idx = 0, []
        for it in items:
            idx.append(it.frame_index + offset)
            offset += len(it.frame_sizes)
        pts = [i.points for i in items]
        points = torch.cat([p for p in pts if p is not None]) if all(p is not None for p in pts) else None
        first = items[0]
        return AlignedFaces(crops=torch.cat([i.crops for i in items]), matrices=torch.cat([i.matrices for i in items]),
                            frame_index=torch.cat(idx), frame_sizes=[s for i in items for s in i.frame_sizes],
                            crop_size=first.crop_size, mode=first.mode, points=points)

    def frames(self, start: int, stop: int) -> tuple[AlignedFaces, torch.Tensor]:
        """The faces of frames ``start..stop-1``, with frame indices and sizes of that range, and the indices
        [K] of those faces in this object (to pick their crops or masks)."""
        keep = ((self.frame_index >= start) & (self.frame_index < stop)).nonzero().flatten()
        sub = self.select(keep)
        sub.frame_index = sub.frame_index - start
        sub.frame_sizes = list(self.frame_sizes[start:stop])
        return sub, keep


def default_mode(crop_size: int) -> str:
    """Official choice: "ffhq" for crop 512, "none" (pose templates) otherwise."""
    return "ffhq" if crop_size == 512 else "none"


def _check_mode(mode: str) -> str:
    m = str(mode).lower()
    if m not in ALIGN_MODES:
        raise InputError(f"alignment mode: expected one of {ALIGN_MODES}, got {mode!r}")
    return m


def templates(crop_size: int, mode: str, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[T,5,2] template points in crop pixels (T=5 for "none", 1 for "ffhq")."""
    mode = _check_mode(mode)
    if mode == "ffhq":
        t = torch.tensor(FFHQ_TEMPLATE_512, dtype=torch.float64)[None] * (crop_size / 512.0)
    else:
        # the official templates are float32 arrays, then scaled in float64
        t = torch.tensor(POSE_TEMPLATES_112, dtype=torch.float32).double() * (crop_size / 112.0)
    return t.to(device=device, dtype=dtype)


def work_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the alignment geometry on ``device``: float64, float32 on MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def similarity_fit(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst.

    src, dst: [B,P,2]. Returns [B,2,3]. This is the 2-D Umeyama solution (skimage ``SimilarityTransform.estimate``):
    writing points as complex numbers, a = sum(conj(s~) d~) / sum(|s~|^2) with centred points, which is the optimum
    over scale >= 0 and proper rotations, i.e. exactly what Umeyama returns (it never reflects).
    """
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    s, d = src - ms, dst - md
    den = (s * s).sum((1, 2)).clamp_min(torch.finfo(src.dtype).tiny)
    a = ((s[..., 0] * d[..., 0] + s[..., 1] * d[..., 1]).sum(1)) / den    # real part
    b = ((s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(1)) / den    # imaginary part
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)    # [B,2,2]
    t = md[:, 0] - (rot @ ms[:, 0, :, None])[..., 0]
    return torch.cat([rot, t[..., None]], -1)


def estimate_alignment(points: torch.Tensor, crop_size: int, mode: str,
                       dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Official SimSwap ``estimate_norm``, batched.

    points: [F,5,2] frame pixels (ArcFace order). mode "none": fit each of the 5 pose templates (x crop/112) and keep
    the one with the smallest summed Euclidean residual (first one on ties, as the official strict ``<``);
    "ffhq": the FFHQ template (x crop/512). Returns [F,2,3] frame px -> crop px in ``dtype`` (float32; the official
    mode keeps the float64 fit: ``official.align_official``).
    """
    if points.ndim != 3 or points.shape[1:] != (5, 2):
        raise InputError(f"estimate_alignment: points must be [F,5,2], got {tuple(points.shape)}")
    if int(crop_size) <= 0:
        raise InputError(f"estimate_alignment: crop_size must be a positive int, got {crop_size!r}")
    dev = points.device
    wd = work_dtype(dev)
    tpl = templates(int(crop_size), mode, dev, wd)                            # [T,5,2]
    f, t = points.shape[0], tpl.shape[0]
    if f == 0:
        return points.new_zeros(0, 2, 3)
    p = points.to(wd)[:, None].expand(f, t, 5, 2).reshape(f * t, 5, 2)
    q = tpl[None].expand(f, t, 5, 2).reshape(f * t, 5, 2)
    m = similarity_fit(p, q)                                                 # [F*T,2,3]
    if t == 1:
        return m.reshape(f, 2, 3).to(dtype)
    mapped = p @ m[:, :, :2].transpose(1, 2) + m[:, None, :, 2]
    err = (mapped - q).square().sum(-1).sqrt().sum(-1).reshape(f, t)          # [F,T]
    best = err.argmin(1)                                                     # first minimum on ties
    return m.reshape(f, t, 2, 3)[torch.arange(f, device=dev), best].to(dtype)


def invert_affine(matrices: torch.Tensor) -> torch.Tensor:
    """[F,2,3] -> [F,2,3] closed-form inverse (as ``cv2.invertAffineTransform`` / the official mat_rev)."""
    if matrices.ndim != 3 or matrices.shape[1:] != (2, 3):
        raise InputError(f"invert_affine: matrices must be [F,2,3], got {tuple(matrices.shape)}")
    m = matrices.to(work_dtype(matrices.device))
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    det = a * e - b * d
    inv = torch.stack([torch.stack([e, -b, b * f - c * e], -1),
                       torch.stack([-d, a, c * d - a * f], -1)], -2) / det[:, None, None]
    return inv.to(matrices.dtype)


def transform_points(matrices: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply [F,2,3] to points [F,P,2] -> [F,P,2]."""
    return points @ matrices[:, :, :2].transpose(1, 2) + matrices[:, None, :, 2]


def sample_grid(matrices: torch.Tensor, height: int, width: int, src_h: int, src_w: int,
                origin: torch.Tensor | None = None) -> torch.Tensor:
    """grid_sample grid [F,h,w,2] (align_corners=False) for an output of ``height x width`` pixels.

    ``matrices`` [F,2,3] map OUTPUT pixel coords -> SOURCE pixel coords (cv2's inverse map). ``origin`` [F,2] (x, y)
    offsets the output pixel coordinates (used to render a region of interest of a larger image).
    """
    dev = matrices.device
    wd = work_dtype(dev)
    m = matrices.to(wd)
    ys = torch.arange(height, device=dev, dtype=wd)
    xs = torch.arange(width, device=dev, dtype=wd)
    if origin is not None:
        ox, oy = origin[:, 0].to(wd), origin[:, 1].to(wd)
        # translate: src = A (p + o) + t = A p + (A o + t)
        t = m[:, :, 2] + m[:, :, 0] * ox[:, None] + m[:, :, 1] * oy[:, None]
        m = torch.cat([m[:, :, :2], t[..., None]], -1)
    # src_x = a*x + b*y + c, evaluated separably: [F,h,w]
    sx = (m[:, 0, 0, None, None] * xs[None, None, :] + m[:, 0, 1, None, None] * ys[None, :, None]
          + m[:, 0, 2, None, None])
    sy = (m[:, 1, 0, None, None] * xs[None, None, :] + m[:, 1, 1, None, None] * ys[None, :, None]
          + m[:, 1, 2, None, None])
    # pixel centre i -> normalised (2i+1)/W - 1 (align_corners=False)
    gx = (2.0 * sx + 1.0) / src_w - 1.0
    gy = (2.0 * sy + 1.0) / src_h - 1.0
    return torch.stack([gx, gy], -1).to(torch.float32)


def warp_faces(frames: torch.Tensor, matrices: torch.Tensor, frame_index: torch.Tensor, crop_size: int) -> torch.Tensor:
    """Aligned crops [F,C,S,S]: ``cv2.warpAffine(frame, M, (S,S))`` with INTER_LINEAR and a black (0) border.

    frames: [N,C,H,W] float; matrices: [F,2,3] frame -> crop; frame_index: [F] int64 into frames.
    Exact float bilinear (OpenCV >= 5 semantics; OpenCV 4.x quantises to 1/32 px, a few levels apart).
    One grid_sample for all faces: for N == 1 a 2-D sample; for N > 1 the frames are a depth axis of a 3-D
    sample with integer depth coordinates (no per-face copies of full frames).
    """
    if frames.ndim != 4:
        raise InputError(f"warp_faces: frames must be [N,C,H,W], got {tuple(frames.shape)}")
    if matrices.ndim != 3 or matrices.shape[1:] != (2, 3):
        raise InputError(f"warp_faces: matrices must be [F,2,3], got {tuple(matrices.shape)}")
    f = matrices.shape[0]
    if frame_index.shape != (f,):
        raise InputError(f"warp_faces: frame_index must be [{f}], got {tuple(frame_index.shape)}")
    n, c, h, w = frames.shape
    s = int(crop_size)
    if s <= 0:
        raise InputError(f"warp_faces: crop_size must be positive, got {crop_size!r}")
    if f == 0:
        return frames.new_zeros(0, c, s, s)
    grid = sample_grid(invert_affine(matrices).to(frames.device), s, s, h, w)      # [F,S,S,2]
    src = frames if frames.is_floating_point() else frames.float()
    if n == 1:    # all face grids stacked along the height of one grid: no copy of the frame
        out = F.grid_sample(src, grid.reshape(1, f * s, s, 2), mode="bilinear", padding_mode="zeros",
                            align_corners=False)                                      # [1,C,F*S,S]
        return out.reshape(c, f, s, s).permute(1, 0, 2, 3).contiguous()
    fi = frame_index.to(frames.device)
    gz = ((2.0 * fi.to(torch.float32) + 1.0) / n - 1.0)[:, None, None, None].expand(f, s, s, 1)
    grid3 = torch.cat([grid, gz], -1)[:, None]                                        # [F,1,S,S,3]
    vol = src.permute(1, 0, 2, 3)[None]                                               # [1,C,N,H,W]
    out = F.grid_sample(vol, grid3.reshape(1, f, s, s, 3), mode="bilinear", padding_mode="zeros",
                        align_corners=False)                                          # [1,C,F,S,S]
    return out[0].permute(1, 0, 2, 3).contiguous()


def align_faces(frames: torch.Tensor, faces: DetectedFaces, crop_size: int, mode: str | None = None) -> AlignedFaces:
    """Estimate the official alignment of every face and warp the crops.

    frames: [N,3,H,W] RGB [0,1]; mode None -> "none" for 224 (and any size but 512), "ffhq" for 512.
    """
    check_images(frames, "align_faces frames", allow_empty=True)
    n, _, h, w = frames.shape
    if len(faces.frame_sizes) != n:
        raise InputError(f"align_faces: faces describe {len(faces.frame_sizes)} frames but {n} frames were given")
    if any(tuple(sz) != (h, w) for sz in faces.frame_sizes):
        raise InputError(f"align_faces: faces.frame_sizes {faces.frame_sizes} do not match frames of size {(h, w)}")
    crop_size = check_integer(crop_size, "align_faces: crop_size", low=1, high=MAX_CROP_SIZE)
    faces.check_values("align_faces faces")
    mode = default_mode(crop_size) if mode is None else _check_mode(mode)
    points = faces.points.to(frames.device, torch.float32)
    mats = estimate_alignment(points, crop_size, mode)
    fi = faces.frame_index.to(frames.device)
    crops = warp_faces(frames.float(), mats, fi, crop_size)
    return AlignedFaces(crops, mats, fi, list(faces.frame_sizes), crop_size, mode, transform_points(mats, points))
