"""OpenCV 4.x ``cv2.warpAffine`` (INTER_LINEAR, BORDER_CONSTANT 0) reproduced bit for bit, batched, in torch.

Used only by the official mode (``official.py``): SimSwap's scripts ran on OpenCV 4.x, whose warp quantises
source positions to 1/32 pixel with a fixed-point map and table weights; OpenCV 5 and ``grid_sample`` compute
exact bilinear weights instead (a few levels apart). The default mode keeps exact bilinear (``align.warp_faces``).

The recipe (OpenCV 4.x ``warpAffine`` -> ``remap`` with a fixed-point map), for a forward matrix M (src -> dst):
1. M is inverted in float64: ``D = 1/(M00 M11 - M01 M10)`` (0 if singular), ``A11 = M11 D``, ``A22 = M00 D``,
   ``A12 = -M01 D``, ``A21 = -M10 D``, ``b1 = -A11 M02 - A12 M12``, ``b2 = -A21 M02 - A22 M12``.
2. Destination pixel (x, y) (absolute coordinates): ``X = rne((A12 y + b1) 1024) + 16 + rne(A11 x 1024)``, same for Y
   with A22/b2 and A21 (rne = round half to even, row and column parts rounded separately, int32), then
   ``X >>= 5``; source pixel ``(X >> 5, Y >> 5)`` (saturated to int16), fraction ``(X & 31, Y & 31)``.
3. Taps outside the source read 0. Weights for fractions (fx, fy) in 1/32 steps: (1-fy)(1-fx), (1-fy)fx, fy(1-fx),
   fy fx, summed top-left, top-right, bottom-left, bottom-right:
   - uint8: integer weights w*32768 (exact: multiples of 32), ``(sum + 16384) >> 15``. (OpenCV's table stores
     (32767, 0, 0, 1) for the zero fraction, which gives the same result for every uint8 input.)
   - float32: float32 weights, products and sums in float32 in that order (no fused multiply-add).
   - float64: the same float32 weights, arithmetic in float64.

Checked against OpenCV 4.14 and 4.10 in tests/test_cvwarp.py (bit-exact on real photos at several scales and
rotations). Every op is an elementwise torch op or a gather, so the result is the same on any device (a CUDA
kernel does the same IEEE operations; eager mode never fuses the products and sums).
"""
from __future__ import annotations

import torch

from .errors import InputError

AB_BITS = 10
AB_SCALE = 1 << AB_BITS           # 1024: the fixed-point scale of the source coordinates
INTER_BITS = 5
INTER_TAB_SIZE = 1 << INTER_BITS  # 32 sub-pixel steps
COEF_BITS = 15                    # uint8 weights sum to 1 << 15
ROUND_DELTA = AB_SCALE // INTER_TAB_SIZE // 2   # 16
SUPPORTED = (torch.uint8, torch.float32, torch.float64)


def cv4_inverse(matrices: torch.Tensor) -> torch.Tensor:
    """[K,2,3] forward matrices (src px -> dst px) -> [K,2,3] float64 inverse, computed as OpenCV 4.x warpAffine
    does (``D = 1/det``, 0 for a singular matrix)."""
    m = matrices.to(torch.float64)
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    d = torch.where(det != 0, 1.0 / torch.where(det != 0, det, torch.ones_like(det)), torch.zeros_like(det))
    a11, a22 = m[:, 1, 1] * d, m[:, 0, 0] * d
    a12, a21 = -m[:, 0, 1] * d, -m[:, 1, 0] * d
    b1 = -a11 * m[:, 0, 2] - a12 * m[:, 1, 2]
    b2 = -a21 * m[:, 0, 2] - a22 * m[:, 1, 2]
    return torch.stack([torch.stack([a11, a12, b1], -1), torch.stack([a21, a22, b2], -1)], -2)


def _fixed_point(inv: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point source coordinates in 1/32 px: inv [K,2,3] float64, xs [K,w] / ys [K,h] absolute destination
    coordinates (float64) -> (X, Y) [K,h,w] int64 (already shifted to 1/32 px)."""
    lim = float(2 ** 31 - 1)

    def rne(v: torch.Tensor) -> torch.Tensor:            # saturate_cast<int>(double): round half to even, clamp
        return torch.round(v).clamp(-lim - 1, lim).to(torch.int64)

    def part(row: int) -> torch.Tensor:
        a_x, a_y, b = inv[:, row, 0, None], inv[:, row, 1, None], inv[:, row, 2, None]
        col = rne(a_x * xs * AB_SCALE)                                   # [K,w]
        base = rne((a_y * ys + b) * AB_SCALE) + ROUND_DELTA               # [K,h]
        total = (base[:, :, None] + col[:, None, :]).clamp(-2 ** 31, 2 ** 31 - 1)  # int32 sum (no overflow here)
        return torch.div(total, 1 << (AB_BITS - INTER_BITS), rounding_mode="floor")   # arithmetic >> 5

    return part(0), part(1)


def _weights(fx: torch.Tensor, fy: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """The 4 tap weights (top-left, top-right, bottom-left, bottom-right) for fractions fx, fy in 0..31."""
    if dtype == torch.uint8:
        gx, gy = INTER_TAB_SIZE - fx, INTER_TAB_SIZE - fy
        s = (1 << COEF_BITS) // (INTER_TAB_SIZE * INTER_TAB_SIZE)        # 32
        return [(gy * gx * s).to(torch.int32), (gy * fx * s).to(torch.int32), (fy * gx * s).to(torch.int32),
                (fy * fx * s).to(torch.int32)]
    step = torch.tensor(1.0 / INTER_TAB_SIZE, dtype=torch.float32, device=fx.device)
    tx, ty = fx.to(torch.float32) * step, fy.to(torch.float32) * step     # exact in float32
    ux, uy = 1.0 - tx, 1.0 - ty
    return [(uy * ux).to(dtype), (uy * tx).to(dtype), (ty * ux).to(dtype), (ty * tx).to(dtype)]


def warp_affine_cv4(src: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int], *,
                    src_index: torch.Tensor | None = None, origin: torch.Tensor | None = None) -> torch.Tensor:
    """``cv2.warpAffine(src[i], M, (w, h))`` of OpenCV 4.x, INTER_LINEAR, constant border 0, for K warps at once.

    src: [B,C,H,W] uint8, float32 or float64 (any channel order; channels are independent), on any device.
    matrices: [K,2,3] FORWARD matrices (src px -> dst px, the M given to cv2), kept in float64.
    size: (h, w) of each output. src_index: [K] int64, the image of ``src`` warp k reads (None: k itself, K == B,
    or 0 when B == 1). origin: [K,2] int64 (x0, y0): output k is the window [y0:y0+h, x0:x0+w] of a larger
    destination image (the fixed-point rounding depends on absolute destination coordinates, so a window of a
    warp equals the warp's pixels there exactly).
    Returns [K,C,h,w] with the dtype of ``src`` on its device; bit-identical to OpenCV 4.x.
    """
    if not isinstance(src, torch.Tensor) or src.dim() != 4:
        raise InputError(f"warp_affine_cv4: src must be a [B,C,H,W] tensor, got "
                         f"{tuple(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__}")
    if src.dtype not in SUPPORTED:
        raise InputError(f"warp_affine_cv4: src dtype must be one of uint8, float32, float64, got {src.dtype}")
    if not isinstance(matrices, torch.Tensor) or matrices.dim() != 3 or matrices.shape[1:] != (2, 3):
        raise InputError(f"warp_affine_cv4: matrices must be [K,2,3], got "
                         f"{tuple(matrices.shape) if isinstance(matrices, torch.Tensor) else type(matrices).__name__}")
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise InputError(f"warp_affine_cv4: size must be positive (h, w), got {size}")
    b, c, sh, sw = src.shape
    k = matrices.shape[0]
    dev = src.device
    if src_index is None:
        if b not in (1, k):
            raise InputError(f"warp_affine_cv4: {k} matrices for {b} images; pass src_index [K]")
        src_index = torch.zeros(k, dtype=torch.int64, device=dev) if b == 1 else torch.arange(k, device=dev)
    src_index = src_index.to(dev, torch.int64)
    if src_index.shape != (k,):
        raise InputError(f"warp_affine_cv4: src_index must be [{k}], got {tuple(src_index.shape)}")
    if k == 0:
        return src.new_zeros(0, c, h, w)
    org = torch.zeros(k, 2, dtype=torch.int64, device=dev) if origin is None else origin.to(dev, torch.int64)
    if org.shape != (k, 2):
        raise InputError(f"warp_affine_cv4: origin must be [{k},2] (x0, y0), got {tuple(org.shape)}")

    inv = cv4_inverse(matrices.to(dev))
    xs = (torch.arange(w, device=dev, dtype=torch.int64)[None] + org[:, :1]).to(torch.float64)   # [K,w]
    ys = (torch.arange(h, device=dev, dtype=torch.int64)[None] + org[:, 1:]).to(torch.float64)   # [K,h]
    fxp, fyp = _fixed_point(inv, xs, ys)                                                      # [K,h,w]
    mask = INTER_TAB_SIZE - 1
    sx = torch.div(fxp, INTER_TAB_SIZE, rounding_mode="floor").clamp(-32768, 32767)        # saturate_cast<short>
    sy = torch.div(fyp, INTER_TAB_SIZE, rounding_mode="floor").clamp(-32768, 32767)
    fx, fy = torch.bitwise_and(fxp, mask), torch.bitwise_and(fyp, mask)
    weights = _weights(fx, fy, src.dtype)

    # gather the 4 taps of all channels at once from a channel-major table of the images ([C, B*H*W]; a view
    # when B == 1): index_select along the last dim is ~10x faster on the CPU than gathering pixel rows
    table = src.permute(1, 0, 2, 3).reshape(c, b * sh * sw)
    base = (src_index * (sh * sw))[:, None, None]                        # [K,1,1]
    acc: torch.Tensor | None = None
    for t, (dx, dy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        tx, ty = sx + dx, sy + dy
        ok = (tx >= 0) & (tx < sw) & (ty >= 0) & (ty < sh)               # [K,h,w]
        idx = base + ty.clamp(0, sh - 1) * sw + tx.clamp(0, sw - 1)      # [K,h,w]
        v = table.index_select(1, idx.reshape(-1)).view(c, k, h, w)
        if src.dtype == torch.uint8:
            term = torch.where(ok, v.to(torch.int32), 0) * weights[t]
        else:
            term = torch.where(ok, v, torch.zeros((), dtype=src.dtype, device=dev)) * weights[t]
        acc = term if acc is None else acc + term                        # ((t0 + t1) + t2) + t3, like OpenCV
    assert acc is not None
    if src.dtype == torch.uint8:
        acc = torch.bitwise_right_shift(acc + (1 << (COEF_BITS - 1)), COEF_BITS).clamp(0, 255).to(torch.uint8)
    return acc.permute(1, 0, 2, 3).contiguous()
