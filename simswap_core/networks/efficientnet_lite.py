"""EfficientNet-lite0 feature taps: the frozen backbone of SimSwap's projected discriminator (training_spec.md 4.1).

Written from the architecture description (timm's ``tf_efficientnet_lite0``, first seven block stages, no head), not
from timm's code. Layout and state_dict keys are those of the official ``*_net_D.pth`` under
``feature_network.pretrained.``:

=========  =====================================================================================  =============
tap        modules                                                                                224 input
=========  =====================================================================================  =============
``layer0`` ``.0`` stem conv 3->32 k3 s2 · ``.1`` BN · ``.2`` ReLU6 · ``.3.0`` DS 32->16 · ``.4.*`` 2 IR -> 24  24x56x56
``layer1`` ``.0.*`` 2 IR -> 40 (k5, first s2)                                                            40x28x28
``layer2`` ``.0.*`` 3 IR -> 80 (k3, first s2) · ``.1.*`` 3 IR -> 112 (k5)                                  112x14x14
``layer3`` ``.0.*`` 4 IR -> 192 (k5, first s2) · ``.1.0`` IR -> 320 (k3)                                 320x7x7
=========  =====================================================================================  =============

IR = inverted residual (1x1 expand x6 -> BN -> ReLU6 -> depthwise kxk -> BN -> ReLU6 -> 1x1 project -> BN, plus the
input when stride 1 and channels equal); DS = depthwise 3x3 -> BN -> ReLU6 -> 1x1 -> BN. No squeeze-excite, all convs
bias-free, BatchNorm eps 1e-3 (the TensorFlow port). Stride-2 convs pad "TF SAME": dynamically, the extra pixel at
the bottom/right; stride-1 convs pad (k-1)/2 symmetrically.

:func:`convert_timm_state` maps a timm ``tf_efficientnet_lite0`` checkpoint (``conv_stem``, ``bn1``, ``blocks.i.j``;
the head ``conv_head``/``bn2``/``classifier`` is dropped) to this layout with strict key and shape checks.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError

__all__ = [
    "BN_EPS",
    "DepthwiseSeparable",
    "EfficientNetLite0Features",
    "InvertedResidual",
    "SameConv2d",
    "TIMM_HEAD_SHAPES",
    "check_timm_shapes",
    "convert_timm_state",
    "is_timm_layout",
    "timm_shapes",
]

BN_EPS = 1e-3

#: (block type, repeats, kernel, first stride, expansion, out channels) of the seven stages (lite0: multipliers 1.0)
STAGES: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
#: which taps hold which stages: layer0 = stem + stages 0, 1; layer1 = stage 2; layer2 = stages 3, 4; layer3 = 5, 6
TAP_STAGES = ((0, 1), (2,), (3, 4), (5, 6))
TAP_CHANNELS = (24, 40, 112, 320)
#: the classification head of timm's checkpoint, not part of the discriminator (dropped by convert_timm_state)
TIMM_HEAD_SHAPES: dict[str, tuple[int, ...]] = {
    "conv_head.weight": (1280, 320, 1, 1), "bn2.weight": (1280,), "bn2.bias": (1280,), "bn2.running_mean": (1280,),
    "bn2.running_var": (1280,), "bn2.num_batches_tracked": (), "classifier.weight": (1000, 1280),
    "classifier.bias": (1000,),
}


class SameConv2d(nn.Conv2d):
    """Bias-free conv with TensorFlow "SAME" padding computed from the input size (used for the stride-2 convs).

    Per spatial dim: ``total = max((ceil(H/s) - 1) * s + k - H, 0)``, ``total // 2`` before, the rest after.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:
        return nn.Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False)
    return SameConv2d(cin, cout, kernel, stride, groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class DepthwiseSeparable(nn.Module):
    """DS block (keys ``conv_dw, bn1, conv_pw, bn2``): dw kxk -> BN -> ReLU6 -> 1x1 -> BN; residual only when the
    stride is 1 and channels match (never in lite0)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_dw = _conv(cin, cin, kernel, stride, groups=cin)
        self.bn1 = _bn(cin)
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv_pw(F.relu6(self.bn1(self.conv_dw(x)))))
        return y + x if self.residual else y


class InvertedResidual(nn.Module):
    """IR block (keys ``conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3``): 1x1 -> BN -> ReLU6 -> dw kxk (stride) -> BN ->
    ReLU6 -> 1x1 -> BN, plus the input when stride 1 and ``cin == cout``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = _bn(mid)
        self.conv_dw = _conv(mid, mid, kernel, stride, groups=mid)
        self.bn2 = _bn(mid)
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self.bn1(self.conv_pw(x)))
        y = F.relu6(self.bn2(self.conv_dw(y)))
        y = self.bn3(self.conv_pwl(y))
        return y + x if self.residual else y


def _stage_blocks(cin: int, stage: int) -> tuple[nn.Sequential, int]:
    kind, repeats, kernel, stride, expansion, cout = STAGES[stage]
    blocks: list[nn.Module] = []
    for j in range(repeats):
        s = stride if j == 0 else 1
        if kind == "ds":
            blocks.append(DepthwiseSeparable(cin, cout, kernel, s))
        else:
            blocks.append(InvertedResidual(cin, cout, kernel, s, expansion))
        cin = cout
    return nn.Sequential(*blocks), cout


class EfficientNetLite0Features(nn.Module):
    """The four feature taps of EfficientNet-lite0 (see the module docstring); 2,958,848 parameters, 48 BatchNorms.

    ``forward(x [N,3,H,W]) -> {'0': [N,24,H/4,W/4], '1': [N,40,H/8,..], '2': [N,112,H/16,..], '3': [N,320,H/32,..]}``
    (sizes rounded up). Input: ImageNet-normalised RGB in SimSwap's projected path.
    """

    def __init__(self) -> None:
        super().__init__()
        cin = STEM_CHANNELS
        layer0: list[nn.Module] = [_conv(3, STEM_CHANNELS, 3, 2), _bn(STEM_CHANNELS), nn.ReLU6(inplace=True)]
        layers: list[nn.Sequential] = []
        for tap, stages in enumerate(TAP_STAGES):
            mods: list[nn.Module] = layer0 if tap == 0 else []
            for stage in stages:
                seq, cin = _stage_blocks(cin, stage)
                mods.append(seq)
            layers.append(nn.Sequential(*mods))
        self.layer0, self.layer1, self.layer2, self.layer3 = layers

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        out = {}
        for i, layer in enumerate((self.layer0, self.layer1, self.layer2, self.layer3)):
            x = layer(x)
            out[str(i)] = x
        return out


# ------------------------------------------------------------------------------------------ timm checkpoints
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")


def _timm_to_ours(key: str) -> str | None:
    """Our key for a timm ``tf_efficientnet_lite0`` key; None for the classification head."""
    if key.startswith("conv_stem."):
        return "layer0.0." + key[len("conv_stem."):]
    if key.startswith("bn1."):
        return "layer0.1." + key[len("bn1."):]
    m = _TIMM_BLOCK.match(key)
    if m is None:
        return None
    stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
    for tap, stages in enumerate(TAP_STAGES):
        if stage in stages:
            offset = 3 if tap == 0 else 0  # layer0 starts with stem conv, bn, act
            return f"layer{tap}.{offset + stages.index(stage)}.{block}.{rest}"
    return f"unknown_stage{stage}.{block}.{rest}"


def _ours_to_timm() -> dict[str, str]:
    """Our key -> timm key, for every key of :class:`EfficientNetLite0Features`."""
    out = {}
    for tap, stages in enumerate(TAP_STAGES):
        offset = 3 if tap == 0 else 0
        for pos, stage in enumerate(stages):
            out[f"layer{tap}.{offset + pos}."] = f"blocks.{stage}."
    return out


def timm_shapes() -> dict[str, tuple[int, ...]]:
    """timm key -> shape of the backbone part of ``tf_efficientnet_lite0`` (what :func:`convert_timm_state` needs)."""
    import torch

    with torch.device("meta"):
        ours = EfficientNetLite0Features().state_dict()
    prefixes = _ours_to_timm()
    out: dict[str, tuple[int, ...]] = {}
    for key, value in ours.items():
        if key.startswith("layer0.0."):
            tkey = "conv_stem." + key[len("layer0.0."):]
        elif key.startswith("layer0.1."):
            tkey = "bn1." + key[len("layer0.1."):]
        else:
            head = ".".join(key.split(".")[:2]) + "."
            tkey = prefixes[head] + key[len(head):]
        out[tkey] = tuple(value.shape)
    return out


def is_timm_layout(state: Mapping[str, object]) -> bool:
    """True when ``state`` uses timm's EfficientNet names (``conv_stem.weight``, ``blocks.0.0.conv_dw.weight``)."""
    return "conv_stem.weight" in state and "blocks.0.0.conv_dw.weight" in state


def check_timm_shapes(state: Mapping[str, Tensor], source: str) -> None:
    """Raise CheckpointError (naming ``source``) unless ``state`` has exactly the tf_efficientnet_lite0 keys and shapes
    (the classification head may be present or absent; a missing ``num_batches_tracked`` is tolerated). Works on
    meta tensors, so a file's declared shapes can be checked before its weights are read."""
    expected = dict(timm_shapes())
    head = {k: v for k, v in TIMM_HEAD_SHAPES.items() if k in state}
    expected.update(head)
    from ..models.checkpoints import state_mismatch  # models imports the networks: not at module level

    parts = state_mismatch(expected, state)
    if parts:
        raise CheckpointError(f"{source}: does not fit timm's tf_efficientnet_lite0 (conv_stem, bn1, blocks.0-6, "
                              f"optional conv_head/bn2/classifier): " + "; ".join(parts))


def convert_timm_state(state: Mapping[str, Tensor], source: str = "EfficientNet weights") -> dict[str, Tensor]:
    """timm ``tf_efficientnet_lite0`` state_dict -> :class:`EfficientNetLite0Features` state_dict (head dropped).

    Strict: every backbone key must be there with its shape, nothing unknown may be; CheckpointError names ``source``.
    """
    check_timm_shapes(state, source)
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        ours = _timm_to_ours(key)
        if ours is not None:
            out[ours] = value
    return out
