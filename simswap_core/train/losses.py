"""SimSwap's training losses as pure functions (training_spec.md sections 2.3, 5, 6 and 7).

Shapes: images ``[N,3,H,W]``; discriminator logits any shape ``[N,...]``; a multi-discriminator argument is a sequence
with one entry per discriminator, and the hinge terms are averaged over the discriminators (the older path's
``GANLoss``). Every function returns a scalar tensor unless it says ``[N]``.

Weak Feature Matching (section 7): the layers compared are explicit and named (:data:`PATCH_FM_PRESETS` for the
PatchGAN pair of the older path, :data:`BACKBONE_FM_PRESETS` for the projected discriminator's EfficientNet taps):

* ``all_layers`` (older path, official ``fs_model``): all five intermediate PatchGAN outputs of D1 and D2, each mean-L1
  term weighted ``1/num_D * 4/(n_layers_D + 1) = 0.4``; times lambda_feat 10 that is the official weight 4 per term.
* ``paper_last_layers`` (the paper's "last few layers"): the last two intermediate outputs before the logits
  (PatchGAN ``down4`` and ``conv1``; backbone taps 2 and 3), weight 1 per term, summed over discriminators -- the
  paper's formula. Which first layer the paper used could not be checked (spec section 12); this is our reading.
* ``backbone_last`` (released ``train.py``): the deepest frozen EfficientNet tap only, weight 1.
* ``backbone_all``: all four EfficientNet taps, weight 1 each (not an official choice; for experiments).

The real side is always detached: the features of the target carry no gradient.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

__all__ = [
    "BACKBONE_FM_PRESETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PATCH_FM_PRESETS",
    "FeatureMatchingPreset",
    "arcface_input",
    "cosine_similarity",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "identity_loss",
    "r1_penalty",
    "reconstruction_loss",
    "weak_feature_matching_loss",
    "wgan_gradient_penalty",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Logits = Union[Tensor, Sequence[Tensor]]


def _as_list(logits: Logits, what: str) -> list[Tensor]:
    items = [logits] if isinstance(logits, Tensor) else list(logits)
    if not items or not all(isinstance(t, Tensor) for t in items):
        raise InputError(f"{what} must be a tensor or a non-empty sequence of tensors (one per discriminator)")
    return items


def hinge_generator_loss(fake_logits: Logits) -> Tensor:
    """``mean_D(-mean(logits_D(fake)))``: the generator's hinge term. ``fake_logits``: ``[N,...]`` or one per D."""
    items = _as_list(fake_logits, "fake_logits")
    return torch.stack([-t.mean() for t in items]).mean()


def hinge_discriminator_loss(real_logits: Logits, fake_logits: Logits) -> tuple[Tensor, Tensor]:
    """``(mean_D(mean(relu(1 - logits_D(real)))), mean_D(mean(relu(1 + logits_D(fake)))))``: the real and fake parts
    of the discriminator's hinge loss (the caller detaches the fake). Each argument ``[N,...]`` or one per D."""
    real = _as_list(real_logits, "real_logits")
    fake = _as_list(fake_logits, "fake_logits")
    loss_real = torch.stack([F.relu(1.0 - t).mean() for t in real]).mean()
    loss_fake = torch.stack([F.relu(1.0 + t).mean() for t in fake]).mean()
    return loss_real, loss_fake


@dataclass(frozen=True)
class FeatureMatchingPreset:
    """Which discriminator features the Weak Feature Matching loss compares, and the weight of each mean-L1 term.

    layers: indices into each discriminator's feature list (PatchGAN: outputs 0..5, 5 = logits) or backbone tap
    names ("0".."3"). term_weight: multiplies every ``mean|fake - real|`` term (before lambda_feat).
    """

    name: str
    layers: tuple[int | str, ...]
    term_weight: float
    description: str


_N_LAYERS_D = 4  # the official n_layers_D, hard-coded in fs_model
PATCH_FM_PRESETS: dict[str, FeatureMatchingPreset] = {
    "all_layers": FeatureMatchingPreset(
        "all_layers", (0, 1, 2, 3, 4), 0.5 * 4.0 / (_N_LAYERS_D + 1),
        "official older path: the 5 intermediate outputs of D1 and D2, 1/num_D * 4/(n_layers_D+1) per term"),
    "paper_last_layers": FeatureMatchingPreset(
        "paper_last_layers", (3, 4), 1.0,
        "the paper's 'last few layers': the last two intermediate outputs of each D, summed"),
}
BACKBONE_FM_PRESETS: dict[str, FeatureMatchingPreset] = {
    "backbone_last": FeatureMatchingPreset(
        "backbone_last", ("3",), 1.0, "released train.py: the deepest frozen EfficientNet tap only"),
    "paper_last_layers": FeatureMatchingPreset(
        "paper_last_layers", ("2", "3"), 1.0, "the paper's 'last few layers': the two deepest EfficientNet taps"),
    "backbone_all": FeatureMatchingPreset(
        "backbone_all", ("0", "1", "2", "3"), 1.0, "all four EfficientNet taps (not an official choice)"),
}

PatchFeatures = Sequence[Sequence[Tensor]]
BackboneFeatures = Mapping[str, Tensor]


def weak_feature_matching_loss(fake_features: PatchFeatures | BackboneFeatures,
                               real_features: PatchFeatures | BackboneFeatures,
                               preset: str | FeatureMatchingPreset) -> Tensor:
    """``sum over discriminators and preset layers of term_weight * mean|f_fake - f_real.detach()|`` (lambda_feat not
    applied).

    fake_features / real_features: either the PatchGAN outputs, one list of six ``[N,C,h,w]`` per discriminator
    (presets of :data:`PATCH_FM_PRESETS`), or the projected discriminator's backbone taps ``{'0'..'3': [N,C,h,w]}``
    (presets of :data:`BACKBONE_FM_PRESETS`). ``real_features`` are those of the TARGET image.
    """
    backbone = isinstance(fake_features, Mapping)
    table = BACKBONE_FM_PRESETS if backbone else PATCH_FM_PRESETS
    if isinstance(preset, str):
        if preset not in table:
            kind = "projected-discriminator backbone taps" if backbone else "PatchGAN outputs"
            raise InputError(f"feature matching preset {preset!r} does not apply to {kind}; expected one of "
                             f"{sorted(table)}")
        preset = table[preset]
    if isinstance(real_features, Mapping) != backbone:
        raise InputError("fake_features and real_features must be of the same kind (both tap dicts or both lists)")
    if backbone:
        fake_sets: list[Sequence[Tensor] | Mapping[str, Tensor]] = [fake_features]  # type: ignore[list-item]
        real_sets: list[Sequence[Tensor] | Mapping[str, Tensor]] = [real_features]  # type: ignore[list-item]
    else:
        fake_sets, real_sets = list(fake_features), list(real_features)  # type: ignore[arg-type]
        if len(fake_sets) != len(real_sets):
            raise InputError(f"got features of {len(fake_sets)} fake and {len(real_sets)} real discriminators")
    total: Tensor | None = None
    for fake_d, real_d in zip(fake_sets, real_sets):
        for layer in preset.layers:
            try:
                f, r = fake_d[layer], real_d[layer]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                raise InputError(f"feature matching preset {preset.name!r} needs layer {layer!r}, which the "
                                 f"discriminator features do not have") from None
            term = F.l1_loss(f, r.detach()) * preset.term_weight
            total = term if total is None else total + term
    if total is None:
        raise InputError(f"feature matching preset {preset.name!r} selects no layer")
    return total


def arcface_input(images: Tensor, preprocessing: str) -> Tensor:
    """ArcFace's training-time input ``[N,3,112,112]`` (ImageNet-normalised) from ``images [N,3,S,S]``.

    ``"bicubic"`` (released train.py): images already ImageNet-normalised, bicubic resize to 112 (align_corners False,
    no antialias). ``"nearest"`` (older path, as inference): images RGB [0,1], nearest resize to 112, then
    ``(x - mean) / std``.
    """
    if preprocessing == "bicubic":
        return F.interpolate(images, size=(112, 112), mode="bicubic")
    if preprocessing == "nearest":
        x = F.interpolate(images, size=(112, 112))
        mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std
    raise InputError(f"ArcFace preprocessing {preprocessing!r} is not known; expected 'bicubic' or 'nearest'")


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Per-row ``sum(a*b) / (|a| |b|)`` (no eps, as the official code). ``[N,D], [N,D] -> [N]``."""
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


def identity_loss(latent_fake: Tensor, latent_id: Tensor) -> Tensor:
    """Per-row identity loss ``1 - cos(latent_fake, latent_id)``, ``[N,512], [N,512] -> [N]`` (the caller averages:
    the released path takes the mean, the older path returns it per sample). Latents may be raw or normalised."""
    if latent_fake.shape != latent_id.shape:
        raise InputError(f"identity_loss: latents {tuple(latent_fake.shape)} and {tuple(latent_id.shape)} differ")
    return 1.0 - cosine_similarity(latent_fake, latent_id)


def reconstruction_loss(fake: Tensor, target: Tensor, same_identity: Tensor | None = None) -> Tensor:
    """``mean|fake - target|`` over all elements, or over the rows where ``same_identity [N]`` (bool) is True (zero,
    still connected to the graph, when no row is). Lambda_rec is not applied."""
    if same_identity is None:
        return F.l1_loss(fake, target)
    mask = same_identity.to(device=fake.device, dtype=torch.bool).reshape(-1)
    if mask.numel() != fake.shape[0]:
        raise InputError(f"same_identity has {mask.numel()} entries, expected one per row ({fake.shape[0]})")
    if not bool(mask.any()):
        return fake.sum() * 0.0
    return F.l1_loss(fake[mask], target[mask])


def wgan_gradient_penalty(discriminator: Callable[[Tensor], Logits], real: Tensor, fake: Tensor,
                          alpha: Tensor | None = None) -> Tensor:
    """WGAN-GP (the older path's unused helper): ``x = alpha*real + (1-alpha)*fake``, ``g = d sum(logits(x)) / dx``
    (graph kept, so the penalty trains D), ``mean_n (|g_n|_2 - 1)^2``. ``alpha [N,1,1,1]`` ~ U[0,1) if None;
    ``discriminator`` returns logits or a list whose last entry is the logit map (PatchGAN)."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    out = discriminator(x)
    logits = out if isinstance(out, Tensor) else out[-1]
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()


def r1_penalty(discriminator: Callable[[Tensor], Logits], real: Tensor) -> Tensor:
    """R1 (the released path's unused ``compute_grad2``): per sample ``sum((d sum(logits(real)) / d real)^2)``,
    ``[N]`` (graph kept). ``discriminator`` returns logits, a list ending with them, or ``(logits, features)``."""
    x = real.detach().requires_grad_(True)
    out = discriminator(x)
    if isinstance(out, tuple):
        logits = out[0]
    elif isinstance(out, list):
        logits = out[-1]
    else:
        logits = out
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(1)
