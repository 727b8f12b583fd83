"""The two SimSwap training paths (training_spec.md sections 0-7): what G and D are, the space images live in, the
optimisers, and the losses of one generator / discriminator update, each as the official code computes them.

* ``PROJECTED`` ("projected", the released ``train.py``): no-Tanh generator ("fix"), every image ImageNet-normalised;
  projected discriminator (frozen EfficientNet-lite0); weak FM on the deepest backbone tap; bicubic ArcFace input;
  Adam lr 4e-4, betas (0, 0.99); weights id 30, fm 10, rec 10.
* ``MULTISCALE`` ("multiscale", the paper's older path): Tanh generator ("official"), images RGB [0,1]; PatchGAN pair
  D1/D2; weak FM over all five intermediate PatchGAN outputs; nearest ArcFace input; Adam lr 2e-4, betas (0.5, 0.999);
  weights id 20 (the released model's opt.txt), fm 10, rec 10.

``target`` and ``identity_image`` are ``[N,3,S,S]`` in the path's model space (:meth:`TrainingPath.to_model_space`).
The generator must compute in model space: pass a :class:`ModelSpaceGenerator` (or a plain
:class:`~simswap_core.networks.SimSwapGenerator`, whose ``forward_raw`` is then used); wrap a
:class:`ModelSpaceGenerator` (not a plain generator) in DistributedDataParallel. ``arcface`` is the frozen
:class:`~simswap_core.networks.IResNet` in eval mode.

Loss dictionaries: the scalar terms named in :data:`GENERATOR_TERMS` / :data:`DISCRIMINATOR_TERMS` (unweighted, except
``total``, the weighted sum to call ``backward`` on; ``reconstruction`` is absent when not computed, ``identity`` is the
batch mean), plus tensors for inspection (``fake`` in model space, ``latent_id``, ``latent_fake``, logits, features).
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Adam, Optimizer

from ..errors import InputError
from ..networks.generator import SimSwapGenerator
from ..networks.patch_discriminator import PatchDiscriminatorPair, downsample_for_d2
from ..networks.projected_discriminator import ProjectedDiscriminator
from .losses import (
    BACKBONE_FM_PRESETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PATCH_FM_PRESETS,
    arcface_input,
    hinge_discriminator_loss,
    hinge_generator_loss,
    identity_loss,
    r1_penalty,
    reconstruction_loss,
    weak_feature_matching_loss,
    wgan_gradient_penalty,
)

__all__ = [
    "DISCRIMINATOR_TERMS",
    "GENERATOR_TERMS",
    "MULTISCALE",
    "PATHS",
    "PROJECTED",
    "LossWeights",
    "ModelSpaceGenerator",
    "MultiscalePath",
    "ProjectedPath",
    "TrainingPath",
    "identity_latent",
    "model_space_generator",
]

#: scalar entries of generator_losses (reconstruction only when computed) and of discriminator_losses
GENERATOR_TERMS = ("total", "adversarial", "identity", "feature_matching", "reconstruction")
DISCRIMINATOR_TERMS = ("total", "adversarial_real", "adversarial_fake", "gradient_penalty")


@dataclass(frozen=True, kw_only=True)
class LossWeights:
    """lambda of each term: ``total_G = adversarial*L_adv + identity*L_id + feature_matching*L_wfm
    [+ reconstruction*L_rec]``, ``total_D = L_real + L_fake [+ gradient_penalty*L_gp]``. All finite and >= 0."""

    adversarial: float = 1.0
    identity: float
    feature_matching: float
    reconstruction: float = 10.0
    gradient_penalty: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"loss weight {f.name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, f.name, float(v))


class ModelSpaceGenerator(SimSwapGenerator):
    """A SimSwap generator whose ``forward`` is the raw network in its own convention (what training needs):
    "fix" ImageNet-normalised in and out, "official" RGB [0,1] in and ``(tanh+1)/2`` out. Same keys and parameters."""

    def forward(self, target: Tensor, latent: Tensor) -> Tensor:
        return self.forward_raw(target, latent)


def model_space_generator(G: SimSwapGenerator) -> ModelSpaceGenerator:
    """A :class:`ModelSpaceGenerator` with ``G``'s config, crop size, weights, device and mode (a copy)."""
    if isinstance(G, ModelSpaceGenerator):
        return G
    ref = next(G.parameters())
    out = ModelSpaceGenerator(G.config, crop_size=G.crop_size).to(device=ref.device, dtype=ref.dtype)
    out.load_state_dict(G.state_dict(), strict=True)
    return out.train(G.training)


def _inner(module: nn.Module) -> Any:
    """The module inside a DataParallel / DistributedDataParallel wrapper."""
    return getattr(module, "module", module)


def _embed(arcface: nn.Module, images: Tensor, preprocessing: str) -> Tensor:
    return arcface(arcface_input(images, preprocessing))


_PREPROCESSING = {"projected": "bicubic", "multiscale": "nearest"}


def identity_latent(arcface: nn.Module, images_model_space: Tensor, path_name: str) -> Tensor:
    """Unit identity latents ``[N,512]`` of ``images_model_space [N,3,S,S]`` with the path's training-time ArcFace
    input: bicubic 112 (projected; images ImageNet-normalised) or nearest 112 + ImageNet normalisation (multiscale;
    images [0,1]). ``F.normalize`` (eps 1e-12)."""
    if path_name not in _PREPROCESSING:
        raise InputError(f"training path {path_name!r} is not known; expected one of {sorted(_PREPROCESSING)}")
    return F.normalize(_embed(arcface, images_model_space, _PREPROCESSING[path_name]), p=2, dim=1)


def _check_images(x: Tensor, what: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"{what} must be a float [N,3,S,S] image batch in the path's model space, got {shape}")


class TrainingPath:
    """One official training recipe; see the module docstring. Subclasses: :class:`ProjectedPath`,
    :class:`MultiscalePath`."""

    name: str
    generator_variant: str
    default_weights: LossWeights
    feature_matching_presets: tuple[str, ...]
    default_feature_matching: str
    lr: float
    betas: tuple[float, float]
    eps: float = 1e-8

    def __repr__(self) -> str:
        return f"TrainingPath({self.name!r})"

    # ------------------------------------------------------------------------------------------ spaces
    def to_model_space(self, images01: Tensor) -> Tensor:
        """RGB [0,1] ``[N,3,S,S]`` -> the space G and D work in (identity for multiscale)."""
        return images01

    def from_model_space(self, x: Tensor) -> Tensor:
        """Model space ``[N,3,S,S]`` -> RGB [0,1], clamped (for sample grids)."""
        return x.clamp(0.0, 1.0)

    # ------------------------------------------------------------------------------------------ building
    def build_discriminator(self, crop_size: int, backbone_weights: str | os.PathLike | None = None) -> nn.Module:
        raise NotImplementedError

    def make_optimizers(self, G: nn.Module, D: nn.Module, lr: float | None = None) -> tuple[Optimizer, Optimizer]:
        """``(Adam(G.parameters()), Adam(D.parameters()))`` with the path's official settings; ``lr`` overrides the
        learning rate of both. Frozen D parameters are included, as officially (Adam skips them: no gradient)."""
        rate = self.lr if lr is None else float(lr)
        if not math.isfinite(rate) or rate <= 0:
            raise InputError(f"learning rate must be a finite number > 0, got {lr!r}")
        kw = dict(lr=rate, betas=self.betas, eps=self.eps, weight_decay=0.0)
        return Adam(G.parameters(), **kw), Adam(D.parameters(), **kw)  # type: ignore[arg-type]

    def _check_crop(self, crop_size: int) -> int:
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size < 128 or crop_size % 32:
            raise InputError(f"crop_size must be an integer multiple of 32, at least 128 (224 or 512), got "
                             f"{crop_size!r}")
        return crop_size

    def _check_preset(self, feature_matching: str) -> str:
        if feature_matching not in self.feature_matching_presets:
            raise InputError(f"feature matching preset {feature_matching!r} is not one of the {self.name} path's: "
                             f"{', '.join(self.feature_matching_presets)}")
        return feature_matching

    def _generate(self, G: nn.Module, target: Tensor, latent: Tensor) -> Tensor:
        inner = _inner(G)
        if isinstance(inner, SimSwapGenerator) and inner.variant != self.generator_variant:
            raise InputError(f"the {self.name} path trains a {self.generator_variant!r} generator, got a "
                             f"{inner.variant!r} one")
        if isinstance(inner, SimSwapGenerator) and not isinstance(inner, ModelSpaceGenerator):
            if inner is G:
                return inner.forward_raw(target, latent)
            raise InputError("wrap a ModelSpaceGenerator (train.paths.model_space_generator) in "
                             "DistributedDataParallel: a plain SimSwapGenerator's forward works in RGB [0,1], not in "
                             "the model space")
        return G(target, latent)

    # ------------------------------------------------------------------------------------------ losses
    def generator_losses(self, G: nn.Module, D: nn.Module, arcface: nn.Module, target: Tensor, identity_image: Tensor,
                         *, reconstruct: bool, weights: LossWeights, feature_matching: str) -> dict[str, Any]:
        raise NotImplementedError

    def discriminator_losses(self, G: nn.Module, D: nn.Module, arcface: nn.Module, target: Tensor,
                             identity_image: Tensor, *, fake: Tensor | None = None, weights: LossWeights,
                             real: Tensor | None = None) -> dict[str, Any]:
        raise NotImplementedError


class ProjectedPath(TrainingPath):
    """The released ``train.py`` (spec section 6)."""

    name = "projected"
    generator_variant = "fix"
    default_weights = LossWeights(identity=30.0, feature_matching=10.0, reconstruction=10.0)
    feature_matching_presets = tuple(BACKBONE_FM_PRESETS)
    default_feature_matching = "backbone_last"
    lr = 4e-4
    betas = (0.0, 0.99)

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return mean, std

    def to_model_space(self, images01: Tensor) -> Tensor:
        """RGB [0,1] -> ``(x - ImageNet mean) / std`` (the official loader's normalisation)."""
        mean, std = self._stats(images01)
        return (images01 - mean) / std

    def from_model_space(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        return (x * std + mean).clamp(0.0, 1.0)

    def build_discriminator(self, crop_size: int, backbone_weights: str | os.PathLike | None = None) -> nn.Module:
        """A :class:`ProjectedDiscriminator` (training mode, feature network frozen) whose backbone holds the
        EfficientNet-lite0 weights of ``backbone_weights`` (timm ``tf_efficientnet_lite0`` .pth/.safetensors, read
        safely); ``None`` leaves it random, which is only good for tests (a warning says so)."""
        self._check_crop(crop_size)
        D = ProjectedDiscriminator()
        if backbone_weights is None:
            warnings.warn("projected discriminator built with a RANDOM EfficientNet-lite0 backbone: fine for tests, "
                          "useless for real training; pass the ImageNet tf_efficientnet_lite0 weights file",
                          stacklevel=2)
        else:
            from ..models.loaders import load_efficientnet_lite0

            backbone = load_efficientnet_lite0(Path(backbone_weights))
            D.feature_network.pretrained.load_state_dict(backbone.state_dict(), strict=True)
        return D.train()

    def generator_losses(self, G: nn.Module, D: nn.Module, arcface: nn.Module, target: Tensor, identity_image: Tensor,
                         *, reconstruct: bool, weights: LossWeights, feature_matching: str) -> dict[str, Any]:
        """The G interval (spec 6.1), in the official order of stateful events: ArcFace(id), G, D(fake) (spectral-norm
        step, BN statistics), ArcFace(fake), backbone(target). ``adversarial = mean(-logits)``, ``identity =
        mean(1 - cos)`` on normalised latents, ``feature_matching`` on the preset's backbone taps vs the target,
        ``reconstruction = mean|fake - target|`` when ``reconstruct``."""
        _check_images(target, "target")
        _check_images(identity_image, "identity_image")
        self._check_preset(feature_matching)
        latent_id = identity_latent(arcface, identity_image, self.name)
        fake = self._generate(G, target, latent_id)
        gen_logits, feat_fake = D(fake, None)
        adversarial = hinge_generator_loss(gen_logits)
        latent_fake = F.normalize(_embed(arcface, fake, "bicubic"), p=2, dim=1)
        identity = identity_loss(latent_fake, latent_id).mean()
        feat_real = _inner(D).get_feature(target)
        fm = weak_feature_matching_loss(feat_fake, feat_real, feature_matching)
        total = adversarial * weights.adversarial + identity * weights.identity + fm * weights.feature_matching
        out = {"adversarial": adversarial, "identity": identity, "feature_matching": fm}
        if reconstruct:
            rec = reconstruction_loss(fake, target)
            out["reconstruction"] = rec
            total = total + rec * weights.reconstruction
        out.update(total=total, fake=fake, latent_id=latent_id, latent_fake=latent_fake, gen_logits=gen_logits,
                   feat_fake=feat_fake, feat_real=feat_real)
        return out

    def discriminator_losses(self, G: nn.Module, D: nn.Module, arcface: nn.Module, target: Tensor,
                             identity_image: Tensor, *, fake: Tensor | None = None, weights: LossWeights,
                             real: Tensor | None = None) -> dict[str, Any]:
        """The D interval (spec 6.2): the fake (regenerated by G without gradient when ``fake`` is None) and the real
        are scored: ``adversarial_fake = mean(relu(1 + D(fake)))``, ``adversarial_real = mean(relu(1 - D(real)))``;
        ``real`` defaults to ``identity_image`` (the official loop scores the unpermuted source batch: the same loss
        and gradients, rows in another order). ``gradient_penalty`` (R1 on the real, batch mean) only when its
        weight is > 0."""
        _check_images(target, "target")
        _check_images(identity_image, "identity_image")
        latent_id = identity_latent(arcface, identity_image, self.name)
        if fake is None:
            with torch.no_grad():
                fake = self._generate(G, target, latent_id)
        real = identity_image if real is None else real
        gen_logits, _ = D(fake.detach(), None)
        real_logits, _ = D(real, None)
        loss_real, loss_fake = hinge_discriminator_loss(real_logits, gen_logits)
        total = loss_fake + loss_real
        out = {"adversarial_real": loss_real, "adversarial_fake": loss_fake}
        if weights.gradient_penalty > 0:
            gp = r1_penalty(lambda x: D(x, None)[0], real).mean()
            out["gradient_penalty"] = gp
            total = total + gp * weights.gradient_penalty
        out.update(total=total, fake=fake, latent_id=latent_id, gen_logits=gen_logits,
                   real_logits=real_logits)
        return out


class MultiscalePath(TrainingPath):
    """The older path of the paper (spec section 5); its loop was never released: see :meth:`combined_losses`."""

    name = "multiscale"
    generator_variant = "official"
    default_weights = LossWeights(identity=20.0, feature_matching=10.0, reconstruction=10.0)
    feature_matching_presets = tuple(PATCH_FM_PRESETS)
    default_feature_matching = "all_layers"
    lr = 2e-4
    betas = (0.5, 0.999)

    def build_discriminator(self, crop_size: int, backbone_weights: str | os.PathLike | None = None) -> nn.Module:
        """A :class:`PatchDiscriminatorPair` (D1, D2; PyTorch's default init, training mode). No backbone."""
        self._check_crop(crop_size)
        if backbone_weights is not None:
            raise InputError("the multiscale path's PatchGAN discriminators have no pretrained backbone; "
                             "backbone_weights applies to the projected path only")
        return PatchDiscriminatorPair().train()

    @staticmethod
    def _pair(D: nn.Module) -> tuple[nn.Module, nn.Module]:
        inner = _inner(D)
        if not isinstance(inner, PatchDiscriminatorPair):
            raise InputError(f"the multiscale path needs a PatchDiscriminatorPair (D1, D2), got {type(inner).__name__}")
        return inner.D1, inner.D2

    def _scores(self, D: nn.Module, x: Tensor) -> list[list[Tensor]]:
        D1, D2 = self._pair(D)
        return [D1(x), D2(downsample_for_d2(x))]

    def _g_terms(self, arcface: nn.Module, fake: Tensor, target: Tensor, latent_id: Tensor,
                 fake_out: Sequence[Sequence[Tensor]], real_out: Sequence[Sequence[Tensor]], reconstruct: bool,
                 weights: LossWeights, feature_matching: str) -> dict[str, Any]:
        adversarial = hinge_generator_loss([o[-1] for o in fake_out])
        fm = weak_feature_matching_loss(fake_out, real_out, feature_matching)
        latent_fake = _embed(arcface, fake, "nearest")
        identity_rows = identity_loss(latent_fake, latent_id)
        total = adversarial * weights.adversarial + fm * weights.feature_matching
        total = total + identity_rows.mean() * weights.identity
        out = {"adversarial": adversarial, "feature_matching": fm, "identity": identity_rows.mean(),
               "identity_rows": identity_rows}
        if reconstruct:
            rec = reconstruction_loss(fake, target)
            out["reconstruction"] = rec
            total = total + rec * weights.reconstruction
        out.update(total=total, fake=fake, latent_id=latent_id, latent_fake=latent_fake)
        return out

    def _d_terms(self, D: nn.Module, fake_out: Sequence[Sequence[Tensor]], real_out: Sequence[Sequence[Tensor]],
                 real: Tensor, fake: Tensor, weights: LossWeights) -> dict[str, Any]:
        loss_real, loss_fake = hinge_discriminator_loss([o[-1] for o in real_out], [o[-1] for o in fake_out])
        total = loss_fake + loss_real
        out = {"adversarial_real": loss_real, "adversarial_fake": loss_fake}
        if weights.gradient_penalty > 0:
            D1, D2 = self._pair(D)
            gp = (wgan_gradient_penalty(D1, real, fake)
                  + wgan_gradient_penalty(D2, downsample_for_d2(real), downsample_for_d2(fake.detach())))
            out["gradient_penalty"] = gp
            total = total + gp * weights.gradient_penalty
        out["total"] = total
        return out

    def combined_losses(self, G: nn.Module, D: nn.Module, arcface: nn.Module, target: Tensor, *,
                        latent_id: Tensor, reconstruct: bool, weights: LossWeights,
                        feature_matching: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The official ``fsModel.forward``: one fake, then D1/D2 on fake.detach(), on the target, on the fake (in
        this order: each forward updates BatchNorm running statistics). Returns ``(generator dict, discriminator
        dict)`` as :meth:`generator_losses` / :meth:`discriminator_losses`, plus ``D_fake_outputs`` /
        ``D_real_outputs`` (per D, six tensors) in the discriminator dict. The real for D is the target."""
        _check_images(target, "target")
        self._check_preset(feature_matching)
        fake = self._generate(G, target, latent_id)
        fake_out_detached = self._scores(D, fake.detach())
        real_out = self._scores(D, target)
        fake_out = self._scores(D, fake)
        g = self._g_terms(arcface, fake, target, latent_id, fake_out, real_out, reconstruct, weights,
                          feature_matching)
        d = self._d_terms(D, fake_out_detached, real_out, target, fake, weights)
        d.update(D_fake_outputs=fake_out_detached, D_real_outputs=real_out)
        return g, d

    def generator_losses(self, G: nn.Module, D: nn.Module, arcface: nn.Module, target: Tensor, identity_image: Tensor,
                         *, reconstruct: bool, weights: LossWeights, feature_matching: str) -> dict[str, Any]:
        """The older path's G terms: ``adversarial`` hinge averaged over D1/D2, ``feature_matching`` on the preset's
        PatchGAN outputs vs the target, ``identity`` = batch mean of ``1 - cos`` (per row in ``identity_rows``),
        ``reconstruction`` = ``mean|fake - target|`` when ``reconstruct``. D scores the target (no gradient) then the
        fake."""
        _check_images(target, "target")
        _check_images(identity_image, "identity_image")
        self._check_preset(feature_matching)
        with torch.no_grad():
            latent_id = identity_latent(arcface, identity_image, self.name)
        fake = self._generate(G, target, latent_id)
        with torch.no_grad():
            real_out = self._scores(D, target)
        fake_out = self._scores(D, fake)
        out = self._g_terms(arcface, fake, target, latent_id, fake_out, real_out, reconstruct, weights,
                            feature_matching)
        out.pop("identity_rows")  # per-row values: combined_losses (parity) only; a trainer logs scalars
        return out

    def discriminator_losses(self, G: nn.Module, D: nn.Module, arcface: nn.Module, target: Tensor,
                             identity_image: Tensor, *, fake: Tensor | None = None, weights: LossWeights,
                             real: Tensor | None = None) -> dict[str, Any]:
        """``adversarial_fake = mean_D mean(relu(1 + D(fake)))``,
        ``adversarial_real = mean_D mean(relu(1 - D(real)))`` with ``real`` the TARGET by default (the older path
        scores the attribute image as real); WGAN-GP summed over D1 and D2 when its weight is > 0. ``fake`` None:
        regenerated by G without gradient."""
        _check_images(target, "target")
        _check_images(identity_image, "identity_image")
        if fake is None:
            with torch.no_grad():
                latent_id = identity_latent(arcface, identity_image, self.name)
                fake = self._generate(G, target, latent_id)
        real = target if real is None else real
        fake_out = self._scores(D, fake.detach())
        real_out = self._scores(D, real)
        out = self._d_terms(D, fake_out, real_out, real, fake.detach(), weights)
        out["fake"] = fake
        return out


PROJECTED = ProjectedPath()
MULTISCALE = MultiscalePath()
PATHS: dict[str, TrainingPath] = {PROJECTED.name: PROJECTED, MULTISCALE.name: MULTISCALE}
