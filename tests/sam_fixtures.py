"""Test stand-ins and drawings for the SAM and occlusion tests (tests/test_sam.py, tests/test_occlusion_mask.py).

* ``ColourKeySam``: a SamModel (small seeded layout, so it passes every type check) whose embed/decode 'segment'
  each prompt box minus the pure-green pixels of the frame, at SAM's low resolution: a SAM whose answer is known,
  to check the geometry (frame -> SAM input -> low-res logits -> crop) and that an occluder is left out.
* ``ColourKeyParser``: a BiSeNet stand-in labelling every pixel skin (1) except pure green ones (background, 0):
  a parse that labels the occluder as non-face.
* ``draw_hand``: a hand-shaped patch (palm + four fingers + thumb) painted pure green over a frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simswap_core.models.seeded import SAM_SMALL
from simswap_core.networks.generator import IMAGENET_MEAN, IMAGENET_STD
from simswap_core.networks.sam import SamModel

GREEN = (0.0, 1.0, 0.0)


def is_green(rgb: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] RGB [0,1] -> [N,H,W] bool: pure green pixels."""
    return (rgb[:, 1] > 0.8) & (rgb[:, 0] < 0.2) & (rgb[:, 2] < 0.2)


class ColourKeySam(SamModel):
    """Stand-in SAM: inside the prompt box and not green -> logit +1, else -1, on the low-res grid. Counts the
    frames it embeds (``embedded``) and the prompts it decodes (``decoded``)."""

    def __init__(self) -> None:
        super().__init__(SAM_SMALL)
        self.embedded: list[int] = []
        self.decoded: list[int] = []

    def embed(self, frames: torch.Tensor, *, batch_size: int = 1) -> torch.Tensor:
        self.embedded.append(int(frames.shape[0]))
        h, w = frames.shape[-2:]
        nh, nw = self.input_size(h, w)
        green = F.interpolate(is_green(frames.float()).float()[:, None], size=(nh, nw), mode="area")
        green = (green > 0).float()                         # an input pixel is green when any of it is
        s = self.config.img_size
        green = F.pad(green, (0, s - nw, 0, s - nh))
        return F.max_pool2d(green, 4)                        # [N,1,low,low]: 1 where a cell touches green

    def decode(self, embeddings: torch.Tensor, frame_size: tuple[int, int], *, points=None, labels=None,
               boxes=None, multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        n, low = embeddings.shape[0], embeddings.shape[-1]
        self.decoded.append(n)
        h, w = frame_size
        nh, nw = self.input_size(h, w)
        b = boxes.float() * torch.tensor([nw / w, nh / h, nw / w, nh / h])
        c = (torch.arange(low, dtype=torch.float32) + 0.5) * 4 - 0.5       # input px of the low-res cell centres
        inx = (c[None, :] >= b[:, 0, None]) & (c[None, :] <= b[:, 2, None])     # [n,low]
        iny = (c[None, :] >= b[:, 1, None]) & (c[None, :] <= b[:, 3, None])
        inside = iny[:, :, None] & inx[:, None, :]
        keep = inside & (embeddings[:, 0] < 0.5)
        return torch.where(keep, 1.0, -1.0)[:, None], torch.ones(n, 1)


class ColourKeyParser(nn.Module):
    """Stand-in BiSeNet: [N,3,512,512] ImageNet-normalised -> [N,19,512,512] logits: skin except green."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        green = is_green(x * std + mean)
        logits = torch.zeros(x.shape[0], 19, *x.shape[-2:], device=x.device)
        logits[:, 1] = 1.0
        logits[:, 0] = green.float() * 2.0
        return logits


def hand_shape(height: int, width: int, cx: float, cy: float, size: float) -> torch.Tensor:
    """[H,W] bool: a hand (an elliptic palm, four fingers pointing up, a thumb to the left) centred at (cx, cy),
    ``size`` px across the palm."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    r = size / 2
    hand = ((x - cx) / r) ** 2 + ((y - cy) / (0.8 * r)) ** 2 <= 1
    for k in range(4):                                      # fingers
        fx = cx - 0.75 * r + k * 0.5 * r
        hand |= (abs(x - fx) <= 0.17 * r) & (y <= cy) & (y >= cy - (1.7 - 0.15 * abs(k - 1.5)) * r)
    hand |= (abs(y - (cy - 0.1 * r) + 0.6 * (x - cx + r)) <= 0.18 * r) & (x <= cx - 0.6 * r) & (x >= cx - 1.6 * r)
    return hand


def draw_hand(frame: torch.Tensor, cx: float, cy: float, size: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(frame [1,3,H,W] with a pure-green hand painted over it, the hand [H,W] bool)."""
    hand = hand_shape(frame.shape[-2], frame.shape[-1], cx, cy, size)
    out = frame.clone()
    for ch, v in enumerate(GREEN):
        out[:, ch][:, hand] = v
    return out, hand
