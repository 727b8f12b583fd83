"""SimSwap generator ("Generator_Adain_Upsample"): one implementation for every official layout.

Layouts (chosen by :class:`GeneratorConfig`, normally inferred from a checkpoint's keys):

* ``g224``  - official 224 model (``fs_networks``): 64-channel stem, down1..3, 9 ID blocks, up3..1.
* ``g512``  - official 512 beta (``fs_networks_512``): 32-channel stem, extra ``down0``/``up0`` octave.
* ``deep``  - ``deep=True`` (``fs_networks_fix`` training code): extra ``down4``/``up4`` around the ID blocks.

Two output conventions share the same state_dict keys (spec section 0):

* ``"official"`` - Tanh head, raw input RGB [0,1], raw output ``(tanh + 1) / 2`` in (0,1).
* ``"fix"``      - new training code: no Tanh, raw input and output are ImageNet mean/std-normalised RGB.

Whatever the variant, ``G(target, latent)`` takes RGB [0,1] ``[N,3,S,S]`` and a unit-norm latent ``[N,512]``
and returns RGB [0,1] ``[N,3,S,S]``; :meth:`SimSwapGenerator.forward_raw` runs the network in its own convention.
State-dict keys equal the official ones exactly, so official ``.pth`` files load with ``strict=True``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError

__all__ = [
    "GENERATOR_VARIANTS",
    "GeneratorConfig",
    "IdInjectionBlock",
    "SimSwapGenerator",
    "StyleModulation",
    "instance_norm",
    "normalize_variant",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: canonical variant names; "train" is accepted as an alias of "fix".
GENERATOR_VARIANTS = ("official", "fix")
_VARIANT_ALIASES = {"official": "official", "tanh": "official", "fix": "fix", "train": "fix"}


def normalize_variant(variant: str) -> str:
    """Return the canonical variant name ("official" or "fix") for ``variant`` ("official", "fix", "train")."""
    key = str(variant).strip().lower() if isinstance(variant, str) else None
    if key not in _VARIANT_ALIASES:
        raise InputError(
            f"generator variant {variant!r} is not known; expected 'official' (Tanh head, the released "
            f"224/512 checkpoints) or 'fix' / 'train' (no Tanh, ImageNet-normalised, train.py checkpoints)"
        )
    return _VARIANT_ALIASES[key]


def instance_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Parameter-free instance norm of the official ID blocks: biased variance, ``eps`` 1e-8. ``[N,C,H,W]``."""
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + eps)


class StyleModulation(nn.Module):
    """AdaIN style from the identity latent (official ``ApplyStyle``, key ``.linear``).

    ``s = Linear(latent)`` -> ``[N,2,C]``; output ``x * (1 + s[:,0]) + s[:,1]`` (first half scale offset, second shift).
    """

    def __init__(self, latent_dim: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_dim, channels * 2)

    def forward(self, x: Tensor, latent: Tensor) -> Tensor:
        style = self.linear(latent).view(x.shape[0], 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class IdInjectionBlock(nn.Module):
    """ID-injection residual block (official ``ResnetBlock_Adain``): two reflect-padded 3x3 convs, each followed by
    instance norm and AdaIN from the latent, ReLU between them, identity skip, no activation after the sum."""

    def __init__(self, channels: int, latent_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        self.style1 = StyleModulation(latent_dim, channels)
        self.conv2 = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3))
        self.style2 = StyleModulation(latent_dim, channels)

    def forward(self, x: Tensor, latent: Tensor) -> Tensor:
        y = F.relu(self.style1(instance_norm(self.conv1(x)), latent))
        y = self.style2(instance_norm(self.conv2(y)), latent)
        return x + y


def _down(cin: int, cout: int) -> nn.Sequential:
    """Stride-2 3x3 conv (zero pad 1) -> BN -> ReLU; keys ``.0`` conv, ``.1`` BN."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True))


def _up(cin: int, cout: int) -> nn.Sequential:
    """Bilinear x2 (align_corners=False) -> 3x3 conv (zero pad 1) -> BN -> ReLU; keys ``.1`` conv, ``.2`` BN."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(True),
    )


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of a SimSwap generator.

    stem_channels: 64 (224 model, deep) or 32 (512 beta, which adds ``down0``/``up0``).
    deep: adds ``down4``/``up4`` (512->512) around the ID blocks.
    variant: "official" (Tanh head) or "fix" (no Tanh, ImageNet-normalised raw I/O).
    """

    stem_channels: int = 64
    deep: bool = False
    n_blocks: int = 9
    latent_dim: int = 512
    in_channels: int = 3
    out_channels: int = 3
    variant: str = "official"

    def __post_init__(self) -> None:
        if self.stem_channels not in (32, 64):
            raise InputError(f"generator stem_channels must be 32 (512 beta) or 64, got {self.stem_channels}")
        if self.n_blocks < 1:
            raise InputError(f"generator n_blocks must be >= 1, got {self.n_blocks}")
        object.__setattr__(self, "variant", normalize_variant(self.variant))

    @property
    def arch(self) -> str:
        """Layout name: "g224", "g512", "deep" or "deep512" (a 32-channel stem with deep=True)."""
        if self.deep:
            return "deep" if self.stem_channels == 64 else "deep512"
        return "g224" if self.stem_channels == 64 else "g512"

    @property
    def default_crop_size(self) -> int:
        """Crop size the layout was released/trained for: 224 for ``g224``, 512 otherwise (deep is the 512 recipe)."""
        return 224 if self.arch == "g224" else 512

    @property
    def down_names(self) -> list[str]:
        """Names of the stride-2 stages in forward order."""
        names = (["down0"] if self.stem_channels == 32 else []) + ["down1", "down2", "down3"]
        return names + (["down4"] if self.deep else [])

    @property
    def size_multiple(self) -> int:
        """Input height/width must be a multiple of this (2 ** number of down stages)."""
        return 2 ** len(self.down_names)

    @classmethod
    def preset(cls, arch: str, variant: str = "official") -> GeneratorConfig:
        """Config of a named layout: "g224", "g512", "deep" (fs_networks_fix deep=True) or "deep512"."""
        table = {"g224": (64, False), "g512": (32, False), "deep": (64, True), "deep512": (32, True)}
        if arch not in table:
            raise InputError(f"generator arch {arch!r} is not known; expected one of {sorted(table)}")
        stem, deep = table[arch]
        return cls(stem_channels=stem, deep=deep, variant=variant)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], variant: str = "official") -> GeneratorConfig:
        """Infer the layout from official state_dict keys and shapes (raises ``KeyError`` if keys are missing)."""
        stem = int(state["first_layer.1.weight"].shape[0])
        in_ch = int(state["first_layer.1.weight"].shape[1])
        out_ch = int(state["last_layer.1.weight"].shape[0])
        latent = int(state["BottleNeck.0.style1.linear.weight"].shape[1])
        blocks = {k.split(".")[1] for k in state if k.startswith("BottleNeck.")}
        n_blocks = len(blocks)
        deep = any(k.startswith("down4.") for k in state)
        return cls(stem_channels=stem, deep=deep, n_blocks=n_blocks, latent_dim=latent, in_channels=in_ch,
                   out_channels=out_ch, variant=variant)

    def with_variant(self, variant: str) -> GeneratorConfig:
        return replace(self, variant=variant)


class SimSwapGenerator(nn.Module):
    """SimSwap generator, built from a :class:`GeneratorConfig`; state_dict keys equal the official ones.

    ``forward(target [N,3,S,S] RGB [0,1], latent [N,512] unit norm) -> [N,3,S,S] RGB [0,1]`` for every variant
    (``latent`` may also be ``[1,512]`` or ``[512]``, broadcast over N). Attributes: ``config``, ``variant``,
    ``arch``, ``crop_size`` (the crop the checkpoint was made for).
    """

    _mean: Tensor  # non-persistent buffers [1,3,1,1] (ImageNet mean / std), see reset_constants
    _std: Tensor

    def __init__(self, config: GeneratorConfig | None = None, *, crop_size: int | None = None) -> None:
        super().__init__()
        config = config or GeneratorConfig()
        self.config = config
        self.crop_size = int(crop_size) if crop_size else config.default_crop_size
        stem = config.stem_channels
        # Registration order defines state_dict order; it matches the official classes.
        self.first_layer = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(config.in_channels, stem, 7), nn.BatchNorm2d(stem), nn.ReLU(True)
        )
        widths = {"down0": (32, 64), "down1": (64, 128), "down2": (128, 256), "down3": (256, 512),
                  "down4": (512, 512)}
        for name in config.down_names:
            self.add_module(name, _down(*widths[name]))
        self.BottleNeck = nn.Sequential(*[IdInjectionBlock(512, config.latent_dim) for _ in range(config.n_blocks)])
        for name in reversed(config.down_names):
            cin, cout = widths[name]
            self.add_module("up" + name[4:], _up(cout, cin))
        head: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(stem, config.out_channels, 7)]
        if config.variant == "official":
            head.append(nn.Tanh())
        self.last_layer = nn.Sequential(*head)
        self._down_stages = [getattr(self, n) for n in config.down_names]
        self._up_stages = [getattr(self, "up" + n[4:]) for n in reversed(config.down_names)]
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def reset_constants(self) -> None:
        """Refill the non-persistent ImageNet mean/std buffers (needed after ``to_empty``)."""
        with torch.no_grad():
            self._mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self._std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def variant(self) -> str:
        return self.config.variant

    @property
    def arch(self) -> str:
        return self.config.arch

    def extra_repr(self) -> str:
        return f"arch={self.arch}, variant={self.variant}, crop_size={self.crop_size}"

    def forward_raw(self, x: Tensor, latent: Tensor) -> Tensor:
        """The network in its native convention (no input checks).

        official: ``x`` RGB [0,1] -> ``(tanh + 1) / 2`` in (0,1). fix: ImageNet-normalised in -> ImageNet-normalised
        out.
        """
        x = self.first_layer(x)
        for stage in self._down_stages:
            x = stage(x)
        for block in self.BottleNeck:
            x = block(x, latent)
        for stage in self._up_stages:
            x = stage(x)
        x = self.last_layer(x)
        if self.config.variant == "official":
            x = (x + 1) / 2
        return x

    def forward(self, target: Tensor, latent: Tensor) -> Tensor:
        """Swap ``latent``'s identity onto ``target``: RGB [0,1] ``[N,3,S,S]`` -> RGB [0,1] ``[N,3,S,S]``."""
        target, latent = self._check_inputs(target, latent)
        if self.config.variant == "official":
            return self.forward_raw(target, latent)
        mean, std = self._mean.to(target.dtype), self._std.to(target.dtype)
        out = self.forward_raw((target - mean) / std, latent)
        return (out * std + mean).clamp(0.0, 1.0)

    def _check_inputs(self, target: Tensor, latent: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(target, Tensor) or target.dim() != 4 or target.shape[1] != self.config.in_channels:
            raise InputError(
                f"generator target must be a [N,{self.config.in_channels},S,S] RGB tensor in [0,1], got "
                f"{tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__}"
            )
        if not target.is_floating_point():
            raise InputError(f"generator target must be floating point RGB in [0,1], got dtype {target.dtype}")
        m = self.config.size_multiple
        if target.shape[2] % m or target.shape[3] % m:
            raise InputError(
                f"generator target size {tuple(target.shape[2:])} must be a multiple of {m} for arch {self.arch} "
                f"(the checkpoint expects {self.crop_size}x{self.crop_size} crops)"
            )
        if not isinstance(latent, Tensor) or latent.shape[-1] != self.config.latent_dim or latent.dim() > 2:
            raise InputError(
                f"generator latent must be [N,{self.config.latent_dim}] (unit norm), got "
                f"{tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__}"
            )
        n = target.shape[0]
        latent = latent.reshape(-1, self.config.latent_dim)
        if latent.shape[0] == 1 and n != 1:
            latent = latent.expand(n, -1)
        if latent.shape[0] != n:
            raise InputError(f"generator got {n} targets but {latent.shape[0]} latents (expected {n} or 1)")
        return target, latent.to(device=target.device, dtype=target.dtype)
