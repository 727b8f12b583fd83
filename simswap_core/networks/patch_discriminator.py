"""The multi-scale PatchGAN discriminators of SimSwap's older training path (training_spec.md section 3).

:class:`PatchDiscriminator` is one PatchGAN (official class ``Discriminator`` of ``fs_networks``); its state_dict keys
equal the official ``*_net_D1.pth`` / ``*_net_D2.pth`` files (``train_keys.json["patch_d"]``, 32 entries), so those load
with ``strict=True``. :class:`PatchDiscriminatorPair` holds the two instances the older path trains: D1 on the image,
D2 on the image downsampled by :func:`downsample_for_d2` (AvgPool 3x3, stride 2, padding 1, border windows average the
real pixels only).

Input: ``[N,3,H,W]`` in the generator's space (RGB [0,1] in the older path). ``forward`` returns the list of the six
stage outputs (after each stage's activation); the last is the logit map (no sigmoid: hinge loss).
224 input: 64x112^2, 128x56^2, 256x28^2, 512x14^2, 512x13^2, 1x12x12; 512 input: ... 1x30x30 (D2 on 256: 1x14x14).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PatchDiscriminator", "PatchDiscriminatorPair", "downsample_for_d2"]


def downsample_for_d2(images: Tensor) -> Tensor:
    """D2's input: ``AvgPool2d(3, stride 2, padding 1, count_include_pad=False)``, ``[N,C,H,W] -> [N,C,H/2,W/2]``
    (sizes rounded up)."""
    return F.avg_pool2d(images, 3, stride=2, padding=1, count_include_pad=False)


def _stage(cin: int, cout: int, stride: int, norm: bool) -> nn.Sequential:
    """Conv 4x4 (zero pad 1, with bias) [-> BatchNorm] -> LeakyReLU(0.2); keys ``.0`` conv, ``.1`` BN."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=stride, padding=1)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.LeakyReLU(0.2, True))
    return nn.Sequential(*layers)


class PatchDiscriminator(nn.Module):
    """One PatchGAN: four stride-2 stages (64, 128, 256, 512), a stride-1 512 stage and a 1-channel logit conv.

    ``forward(x [N,3,H,W]) -> [six tensors]``; 6,962,369 parameters. BatchNorms use batch statistics in training
    mode (the official training never puts the discriminators in eval).
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.down1 = _stage(in_channels, 64, 2, norm=False)
        self.down2 = _stage(64, 128, 2, norm=True)
        self.down3 = _stage(128, 256, 2, norm=True)
        self.down4 = _stage(256, 512, 2, norm=True)
        self.conv1 = _stage(512, 512, 1, norm=True)
        self.conv2 = nn.Sequential(nn.Conv2d(512, 1, 4, stride=1, padding=1))

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for stage in (self.down1, self.down2, self.down3, self.down4, self.conv1, self.conv2):
            x = stage(x)
            outputs.append(x)
        return outputs


class PatchDiscriminatorPair(nn.Module):
    """D1 and D2 of the older path (keys ``D1.*``, ``D2.*``; each saves as its own official file).

    ``forward(x [N,3,H,W]) -> [D1(x) outputs, D2(downsample_for_d2(x)) outputs]`` (two lists of six tensors).
    ``parameters()`` yields D1's then D2's, the order of the official optimiser. ``D1`` / ``D2`` given: held as they
    are (not copied), e.g. two discriminators loaded from official files.
    """

    def __init__(self, in_channels: int = 3, *, D1: PatchDiscriminator | None = None,
                 D2: PatchDiscriminator | None = None) -> None:
        super().__init__()
        self.D1 = D1 if D1 is not None else PatchDiscriminator(in_channels)
        self.D2 = D2 if D2 is not None else PatchDiscriminator(in_channels)

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        return [self.D1(x), self.D2(downsample_for_d2(x))]
