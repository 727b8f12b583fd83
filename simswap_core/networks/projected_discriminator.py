"""The projected discriminator of SimSwap's released ``train.py`` (training_spec.md section 4).

```
x [N,3,H,W] ImageNet-normalised
  feature_network (frozen)
    pretrained  EfficientNet-lite0 taps b0..b3 (24/40/112/320 ch at H/4..H/32)      <- returned as the backbone features
    scratch     CCM: 1x1 convs c_k = ccm_k(b_k) (64/128/256/512 ch)
                CSM: p3 = conv(up2(c3)), p2 = conv(up2(p3 + c2)), p1 = conv(up2(p2 + c1)), p0 = conv(up2(p1 + c0))
                     up2 = bilinear x2, align_corners=True; no activation (64/64/128/256 ch at H/2..H/16)
  discriminator.mini_discs '0'..'3' (trainable): spectral-norm DownBlocks to a nominal 8x8, a 4x4 logit conv
logits [N, 64] for 224 input (4 x 4x4 maps, flattened row-major, concatenated), [N, 676] for 512
```

State-dict keys equal the official ``{step}_net_D.pth`` (406 entries, ``train_keys.json["projected_d"]``), including
the spectral-norm names ``weight_orig``/``weight_u``/``weight_v``; :func:`normalize_state_keys` maps torch's newer
``parametrizations.weight.original/0._u/0._v`` names and a ``module.`` prefix onto them.

Modes, as the released training really runs them (section 4.5): the feature network is frozen (requires_grad False)
but its 48 BatchNorms stay in training mode (batch statistics, running statistics updated at every forward) because
nothing calls ``netD.train()``. ``backbone_batch_stats=False`` gives what the official ``train()`` override intended
(the feature network kept in eval whatever ``train(mode)`` says).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .efficientnet_lite import TAP_CHANNELS, EfficientNetLite0Features

__all__ = [
    "CSM_CHANNELS",
    "DownBlock",
    "FeatureNetwork",
    "MultiScaleD",
    "ProjectedDiscriminator",
    "SingleDisc",
    "SpectralNormConv2d",
    "normalize_state_keys",
]

CCM_CHANNELS = (64, 128, 256, 512)
CSM_CHANNELS = (64, 64, 128, 256)
_NOMINAL_CHANNELS = {128: 64, 64: 64, 32: 128, 16: 256, 8: 512}
_NOMINAL_START = (128, 64, 32, 16)  # mini-disc start sizes as if the input were 256, whatever it is
_END_SIZE = 8


class SpectralNormConv2d(nn.Module):
    """Conv2d whose weight is divided by its largest singular value, estimated by power iteration.

    Keys: ``bias`` (optional), ``weight_orig`` (the trained raw weight ``[out,in,k,k]``), buffers ``weight_u [out]``,
    ``weight_v [in*k*k]``. In training mode every forward first runs one power iteration without gradient and
    stores it (``v = W^T u / |W^T u|``, ``u = W v / |W v|``, norms clamped at ``eps``); ``sigma = u . (W v)`` with u, v
    constant; the conv uses ``weight_orig / sigma``. In eval mode the stored u, v are used as they are.
    """

    weight_u: Tensor
    weight_v: Tensor

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True,
                 eps: float = 1e-12) -> None:
        super().__init__()
        ref = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)  # PyTorch's default init
        self.stride, self.padding, self.eps = stride, padding, eps
        # registration order = the official state_dict order: bias, weight_orig, weight_u, weight_v
        self.bias = nn.Parameter(ref.bias.detach().clone()) if ref.bias is not None else None
        self.weight_orig = nn.Parameter(ref.weight.detach().clone())
        u = F.normalize(torch.randn(cout), dim=0, eps=eps)
        v = F.normalize(torch.randn(cin * kernel * kernel), dim=0, eps=eps)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight_orig.shape
        return f"{i}, {o}, kernel_size={k}, stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"

    def normalized_weight(self) -> Tensor:
        """``weight_orig / sigma`` (advancing u and v first in training mode); always computed in the parameters'
        precision, also under autocast (the conv itself may then run in lower precision)."""
        w = self.weight_orig
        with torch.autocast(device_type=w.device.type, enabled=False):
            mat = w.reshape(w.shape[0], -1)
            if self.training:
                with torch.no_grad():
                    v = F.normalize(torch.mv(mat.t(), self.weight_u), dim=0, eps=self.eps, out=self.weight_v)
                    F.normalize(torch.mv(mat, v), dim=0, eps=self.eps, out=self.weight_u)
                # clones: the stored vectors change in place at the next forward, after this graph was built
                u = self.weight_u.clone(memory_format=torch.contiguous_format)
                v = self.weight_v.clone(memory_format=torch.contiguous_format)
            else:
                u, v = self.weight_u, self.weight_v
            sigma = torch.dot(u, torch.mv(mat, v))
            return w / sigma

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding)


class DownBlock(nn.Module):
    """SN-conv 4x4 stride 2 pad 1 (bias) -> BatchNorm (eps 1e-5) -> LeakyReLU(0.2); keys ``main.0``, ``main.1``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(SpectralNormConv2d(cin, cout, 4, 2, 1, bias=True), nn.BatchNorm2d(cout),
                                  nn.LeakyReLU(0.2, True))

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class SingleDisc(nn.Module):
    """One mini-discriminator: DownBlocks from a nominal ``start_size`` down to 8, then an SN-conv 512->1, 4x4, stride
    1, no padding, no bias. ``[N,C,h,w] -> [N,1,h/2^b - 3,..]`` (224 input: 4x4 for every disc; 512: 13x13)."""

    def __init__(self, in_channels: int, start_size: int) -> None:
        super().__init__()
        channels = dict(_NOMINAL_CHANNELS)
        channels[start_size] = in_channels
        layers: list[nn.Module] = []
        size = start_size
        while size > _END_SIZE:
            layers.append(DownBlock(channels[size], channels[size // 2]))
            size //= 2
        layers.append(SpectralNormConv2d(channels[_END_SIZE], 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x)


class MultiScaleD(nn.Module):
    """The four trainable mini-discriminators (keys ``mini_discs.0..3``); 10,331,328 parameters.

    ``forward(features {'0'..'3': CSM outputs}) -> logits [N, sum of h*w]`` in disc order (N x 64 for 224).
    """

    def __init__(self) -> None:
        super().__init__()
        self.mini_discs = nn.ModuleDict(
            {str(k): SingleDisc(CSM_CHANNELS[k], _NOMINAL_START[k]) for k in range(len(CSM_CHANNELS))})

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        n = next(iter(features.values())).shape[0]
        return torch.cat([disc(features[k]).view(n, -1) for k, disc in self.mini_discs.items()], dim=1)


class _FusionBlock(nn.Module):
    """CSM step: optional add of the lateral input, bilinear x2 (align_corners=True), 1x1 conv (key ``out_conv``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: Tensor, lateral: Tensor | None = None) -> Tensor:
        if lateral is not None:
            x = x + lateral
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class _Scratch(nn.Module):
    """Random 1x1 channel mixing (CCM, ``layer{k}_ccm``) and top-down scale mixing (CSM, ``layer{k}_csm``)."""

    def __init__(self) -> None:
        super().__init__()
        for k in range(4):
            self.add_module(f"layer{k}_ccm", nn.Conv2d(TAP_CHANNELS[k], CCM_CHANNELS[k], 1, bias=True))
        for k in (3, 2, 1, 0):  # the official registration (and state_dict) order
            cin = CCM_CHANNELS[3] if k == 3 else CSM_CHANNELS[k + 1]
            self.add_module(f"layer{k}_csm", _FusionBlock(cin, CSM_CHANNELS[k]))

    def forward(self, taps: Mapping[str, Tensor]) -> dict[str, Tensor]:
        c = [getattr(self, f"layer{k}_ccm")(taps[str(k)]) for k in range(4)]
        csm = [getattr(self, f"layer{k}_csm") for k in range(4)]
        p3 = csm[3](c[3])
        p2 = csm[2](p3, c[2])
        p1 = csm[1](p2, c[1])
        p0 = csm[0](p1, c[0])
        return {"0": p0, "1": p1, "2": p2, "3": p3}


class FeatureNetwork(nn.Module):
    """``pretrained`` (EfficientNet-lite0 taps) + ``scratch`` (CCM/CSM). ``forward(x) -> (CSM dict, backbone dict)``."""

    def __init__(self) -> None:
        super().__init__()
        self.pretrained = EfficientNetLite0Features()
        self.scratch = _Scratch()

    def forward(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        taps = self.pretrained(x)
        return self.scratch(taps), taps


class ProjectedDiscriminator(nn.Module):
    """Frozen EfficientNet-lite0 + frozen random CCM/CSM + four trainable spectral-norm mini-discriminators.

    ``forward(x [N,3,H,W] ImageNet-normalised, c=None) -> (logits [N,64] for 224 / [N,676] for 512,
    backbone taps {'0': [N,24,H/4,W/4], '1': [N,40,..], '2': [N,112,..], '3': [N,320,H/32,W/32]})``;
    ``get_feature(x)`` returns only the taps (the weak feature matching's features). ``c`` (class conditioning) is
    unused, as in the official code. H and W must be multiples of 32 and at least 128.

    backbone_batch_stats: True (default) = what the released training does (backbone BatchNorms in training mode);
    False = the feature network is kept in eval mode by ``train()``.
    """

    def __init__(self, *, backbone_batch_stats: bool = True) -> None:
        super().__init__()
        self.feature_network = FeatureNetwork()
        self.discriminator = MultiScaleD()
        self.backbone_batch_stats = backbone_batch_stats
        self.feature_network.requires_grad_(False)

    def train(self, mode: bool = True) -> ProjectedDiscriminator:
        super().train(mode)
        if not self.backbone_batch_stats:
            self.feature_network.train(False)
        return self

    def get_feature(self, x: Tensor) -> dict[str, Tensor]:
        """The backbone taps of ``x`` (no CCM/CSM, no mini-discriminators)."""
        return self.feature_network.pretrained(x)

    def forward(self, x: Tensor, c: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        mixed, taps = self.feature_network(x)
        return self.discriminator(mixed), taps


def normalize_state_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official key names for a discriminator state_dict: torch's ``parametrizations.weight.original`` /
    ``parametrizations.weight.0._u`` / ``._v`` become ``weight_orig`` / ``weight_u`` / ``weight_v``; a ``module.``
    prefix on every key (DataParallel / DDP) is dropped."""
    keys = list(state)
    strip = bool(keys) and all(k.startswith("module.") for k in keys)
    out = {}
    for key, value in state.items():
        k = key[len("module."):] if strip else key
        k = (k.replace("parametrizations.weight.original", "weight_orig")
             .replace("parametrizations.weight.0._u", "weight_u")
             .replace("parametrizations.weight.0._v", "weight_v"))
        out[k] = value
    return out
