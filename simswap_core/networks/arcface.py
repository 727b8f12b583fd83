"""ArcFace identity encoder used by SimSwap (foamliu InsightFace-v2 "LResNet-E-IR", optional SE).

The architecture is never hard-wired: :meth:`ArcFaceConfig.from_state_dict` reads the number of blocks per
stage, the stage widths and the SE flag from a checkpoint's keys. State-dict keys equal the official ones
(``official_keys.json["arcface"]`` for r101-SE, ``arcface_alt_no_se`` without SE).

Input: ImageNet mean/std-normalised RGB ``[N,3,112,112]``. Output: raw embedding ``[N,512]`` (not normalised).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["ArcFaceConfig", "IRBlock", "IResNet", "SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """Channel attention: avg pool -> Linear C->C/r -> PReLU -> Linear C/r->C -> Sigmoid -> scale.

    State-dict keys ``fc.0/1/2``.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        hidden = channels // reduction
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.PReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(self.avg_pool(x).flatten(1))
        return x * w[:, :, None, None]


class IRBlock(nn.Module):
    """Improved residual block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN [-> SE], plus the (optionally
    downsampled) input, then the SAME PReLU again."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, use_se: bool = True,
                 se_reduction: int = 16) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, inplanes, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.se = SqueezeExcite(planes, se_reduction) if use_se else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        residual = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + residual)


@dataclass(frozen=True)
class ArcFaceConfig:
    """Shape of an IResNet: blocks per stage, stage widths, SE flag, embedding size."""

    layers: tuple[int, ...] = (3, 4, 23, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    use_se: bool = True
    se_reduction: int = 16
    embedding_dim: int = 512
    stem_channels: int = 64
    fc_in: int = 512 * 7 * 7

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.widths) or not self.layers or min(self.layers) < 1:
            raise InputError(f"ArcFace config needs >=1 block in every stage, got layers={self.layers}")

    @property
    def arch(self) -> str:
        """E.g. "ir_se_101" for layers (3,4,23,3) with SE (depth = 3 * blocks + 2)."""
        depth = 3 * sum(self.layers) + 2
        return f"ir{'_se' if self.use_se else ''}_{depth}"

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> ArcFaceConfig:
        """Infer the architecture from official keys (raises ``KeyError``/``ValueError`` when they do not fit)."""
        layers: list[int] = []
        widths: list[int] = []
        stage = 1
        while f"layer{stage}.0.conv2.weight" in state:
            blocks = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.")}
            if blocks != set(range(len(blocks))):
                raise ValueError(f"layer{stage} has non-contiguous block indices {sorted(blocks)}")
            layers.append(len(blocks))
            widths.append(int(state[f"layer{stage}.0.conv2.weight"].shape[0]))
            stage += 1
        if not layers:
            raise KeyError("layer1.0.conv2.weight")
        use_se = any(".se." in k for k in state)
        reduction = 16
        if use_se:
            hidden = int(state["layer1.0.se.fc.0.weight"].shape[0])
            reduction = max(1, widths[0] // max(hidden, 1))
        return cls(
            layers=tuple(layers), widths=tuple(widths), use_se=use_se, se_reduction=reduction,
            embedding_dim=int(state["fc.weight"].shape[0]), stem_channels=int(state["conv1.weight"].shape[0]),
            fc_in=int(state["fc.weight"].shape[1]),
        )


class IResNet(nn.Module):
    """ArcFace backbone: ImageNet-normalised RGB ``[N,3,112,112]`` -> raw embedding ``[N,512]``.

    Stem conv 3x3 with padding 0 (112->110), BN, PReLU, maxpool 2x2; four IRBlock stages (the first block of
    stages 2-4 has stride 2); BN -> dropout (identity in eval) -> flatten (C,H,W) -> Linear -> BatchNorm1d.
    """

    def __init__(self, config: ArcFaceConfig | None = None) -> None:
        super().__init__()
        config = config or ArcFaceConfig()
        self.config = config
        self.conv1 = nn.Conv2d(3, config.stem_channels, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.stem_channels)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(2, 2)
        inplanes = config.stem_channels
        for i, (n, width) in enumerate(zip(config.layers, config.widths)):
            stride = 1 if i == 0 else 2
            blocks = [IRBlock(inplanes, width, stride, config.use_se, config.se_reduction)]
            blocks += [IRBlock(width, width, 1, config.use_se, config.se_reduction) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = width
        self.bn2 = nn.BatchNorm2d(inplanes)
        self.dropout = nn.Dropout()
        self.fc = nn.Linear(config.fc_in, config.embedding_dim)
        self.bn3 = nn.BatchNorm1d(config.embedding_dim)
        self._stages = [getattr(self, f"layer{i + 1}") for i in range(len(config.layers))]

    @property
    def arch(self) -> str:
        return self.config.arch

    def extra_repr(self) -> str:
        return f"arch={self.arch}"

    def forward(self, x: Tensor) -> Tensor:
        """``[N,3,112,112]`` ImageNet-normalised RGB -> raw ``[N,512]`` embedding."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (112, 112):
            raise InputError(
                "ArcFace input must be ImageNet-normalised RGB [N,3,112,112], got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__} "
                "(use identity_latent / identity_embedding to feed aligned crops of any size)"
            )
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        for stage in self._stages:
            x = stage(x)
        x = self.dropout(self.bn2(x))
        return self.bn3(self.fc(torch.flatten(x, 1)))
