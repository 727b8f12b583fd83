"""The one check of image batches handed to the pipeline: float RGB ``[N,3,H,W]`` (crops ``[F,3,S,S]``)."""
from __future__ import annotations

import torch

from .errors import InputError


def check_images(images: object, what: str, *, layout: str = "[N,3,H,W]", allow_single: bool = False,
                 allow_empty: bool = False) -> torch.Tensor:
    """``images`` as a float ``[N,3,H,W]`` RGB tensor (values meant in [0,1]), or InputError naming ``what``.

    allow_single: a ``[3,H,W]`` image becomes ``[1,3,H,W]``. allow_empty: N == 0 is accepted. ``layout`` is the
    shape named in the messages (``"[F,3,S,S]"`` for aligned crops).
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{what}: expected a torch tensor {layout} RGB in [0,1], got {type(images).__name__}")
    if allow_single and images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"{what}: expected {layout} RGB (3 channels first; convert grayscale/RGBA to RGB "
                         f"first), got shape {tuple(images.shape)}")
    if images.shape[0] == 0 and not allow_empty:
        raise InputError(f"{what}: expected at least one image, got an empty batch")
    if not images.is_floating_point():
        raise InputError(f"{what}: expected float values in [0,1], got dtype {images.dtype} (divide uint8 by 255)")
    return images
