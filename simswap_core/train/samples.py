"""Sample grids of a training run: three rows (targets | identity sources | results), one column per example,
saved as PNG atomically.

The results are made with the generator in eval mode (running BatchNorm statistics, as at inference) and the EMA
copy when there is one; nothing of the training state changes (no BatchNorm statistics, no random numbers).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..io.images import write_image

__all__ = ["make_grid", "render_samples", "save_grid"]


def make_grid(rows: list[Tensor], pad: int = 2) -> Tensor:
    """Rows of images ``[N,3,S,S]`` in [0,1] (same N and S) -> one image ``[3,H,W]`` with ``pad`` white pixels
    between cells."""
    if not rows:
        raise InputError("make_grid: expected at least one row of images")
    n, c, s, _ = rows[0].shape
    for r in rows:
        if tuple(r.shape) != (n, c, s, s):
            raise InputError(f"make_grid: every row must be [{n},{c},{s},{s}], got {tuple(r.shape)}")
    h = len(rows) * s + (len(rows) + 1) * pad
    w = n * s + (n + 1) * pad
    grid = torch.ones(c, h, w, dtype=torch.float32)
    for i, row in enumerate(rows):
        for j in range(n):
            y, x = pad + i * (s + pad), pad + j * (s + pad)
            grid[:, y:y + s, x:x + s] = row[j].detach().float().cpu().clamp(0, 1)
    return grid


@torch.no_grad()
def render_samples(G: nn.Module, targets01: Tensor, sources01: Tensor, *,
                   latent_of: Callable[[Tensor], Tensor], to_model: Callable[[Tensor], Tensor],
                   from_model: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """[targets, sources, results] for targets/sources ``[N,3,S,S]`` in [0,1]: result i = G(target i, latent of
    source i). ``latent_of`` maps model-space sources to unit latents ``[N,512]``; ``to_model`` / ``from_model``
    convert between [0,1] and the path's model space. G is put in eval mode for this and restored after."""
    was_training = G.training
    G.eval()
    try:
        x = to_model(targets01)
        latent = latent_of(to_model(sources01))
        raw = getattr(G, "forward_raw", None)
        fake = raw(x, latent) if raw is not None else G(x, latent)
        results = from_model(fake).clamp(0, 1)
    finally:
        G.train(was_training)
    return [targets01, sources01, results]


def save_grid(path: Path, rows: list[Tensor], *, overwrite: bool = True) -> Path:
    """Write the grid of ``rows`` as a PNG, atomically, labelled as synthetic media (its last row is generated)."""
    from ..provenance import ProvenanceLabel

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: sample grids are PNG files; expected a .png name")
    return write_image(path, make_grid(rows)[None], overwrite=overwrite, label=ProvenanceLabel())
