"""The comparison interface of training_spec.md section 10.3, built on the library itself (absolute imports:
the check script loads this file by path).

``python tests/fixtures/training/check_against.py simswap_core/train/parity.py \
tests/fixtures/training/train_golden_public.npz --path both`` compares the library's networks
(:mod:`simswap_core.networks`), losses (:mod:`.losses`) and training paths (:mod:`.paths`) with the outputs of the
official training code for seeded weights: every loss, the totals, gradient norms and the parameters after one Adam
step. Every function below is a thin adapter: the computation is the trainer's own (``PATHS[...].generator_losses``
and friends), so a passing check vouches for what ``simswap train`` runs.

:data:`FEATURE_MATCHING` names the weak-FM preset each path is checked with (the official ones); changing it (e.g. to
``"backbone_all"``) must make the check fail, which the tests verify.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from simswap_core.errors import InputError
from simswap_core.networks.arcface import ArcFaceConfig, IResNet
from simswap_core.networks.generator import GeneratorConfig, normalize_variant
from simswap_core.networks.patch_discriminator import PatchDiscriminator, PatchDiscriminatorPair
from simswap_core.networks.projected_discriminator import ProjectedDiscriminator, normalize_state_keys
from simswap_core.train.paths import MULTISCALE, PATHS, PROJECTED, ModelSpaceGenerator, identity_latent

__all__ = [
    "FEATURE_MATCHING",
    "build_arcface",
    "build_generator",
    "build_patch_discriminator",
    "build_projected_discriminator",
    "make_optimizers",
    "multiscale_latent",
    "multiscale_losses",
    "projected_d_losses",
    "projected_g_losses",
]

#: the weak feature matching preset each path is compared with (the official code's choice)
FEATURE_MATCHING = {"projected": PROJECTED.default_feature_matching,
                    "multiscale": MULTISCALE.default_feature_matching}


def build_generator(sd: Mapping[str, Tensor], variant: str) -> ModelSpaceGenerator:
    """``"tanh"``: [0,1] in and out (Tanh head); ``"fix"``: ImageNet-normalised in and out. ``forward(img, latent)``."""
    v = normalize_variant(variant)
    G = ModelSpaceGenerator(GeneratorConfig.from_state_dict(sd, v), crop_size=224)
    G.load_state_dict(dict(sd), strict=True)
    return G


def build_arcface(sd: Mapping[str, Tensor]) -> IResNet:
    """``forward(x [N,3,112,112] ImageNet-normalised) -> [N,512]`` raw embedding."""
    arc = IResNet(ArcFaceConfig.from_state_dict(sd))
    arc.load_state_dict(dict(sd), strict=True)
    return arc


def build_patch_discriminator(sd: Mapping[str, Tensor]) -> PatchDiscriminator:
    """One PatchGAN in training mode; ``forward(x) -> [6 outputs]``."""
    D = PatchDiscriminator()
    D.load_state_dict(normalize_state_keys(sd), strict=True)
    return D.train()


def build_projected_discriminator(sd: Mapping[str, Tensor]) -> ProjectedDiscriminator:
    """The projected D with the modes of the released training: all in training mode, the feature network frozen."""
    D = ProjectedDiscriminator()
    D.load_state_dict(normalize_state_keys(sd), strict=True)
    return D.train()


def make_optimizers(path: str, G: nn.Module, D: nn.Module | Sequence[nn.Module]) -> tuple[Optimizer, Optimizer]:
    """The path's official Adam settings; ``D`` may be ``[D1, D2]`` (multiscale)."""
    if path not in PATHS:
        raise InputError(f"training path {path!r} is not known; expected one of {sorted(PATHS)}")
    if not isinstance(D, nn.Module):
        D = nn.ModuleList(list(D))  # holds the given modules; parameters() keeps their order
    return PATHS[path].make_optimizers(G, D)


def multiscale_latent(arcface: nn.Module, img_id: Tensor) -> Tensor:
    """The older path's identity latent: ``normalize(ArcFace(SpecificNorm(nearest112(img_id))))``, ``[N,512]``."""
    with torch.no_grad():
        return identity_latent(arcface, img_id, "multiscale")


def multiscale_losses(G: nn.Module, D1: PatchDiscriminator, D2: PatchDiscriminator, arcface: nn.Module,
                      img_att: Tensor, latent_id: Tensor) -> dict[str, Any]:
    """The official ``fsModel.forward`` terms (spec section 5), lambdas applied as it does (G_GAN_Feat and G_Rec)."""
    w = MULTISCALE.default_weights
    pair = PatchDiscriminatorPair(D1=D1, D2=D2)
    g, d = MULTISCALE.combined_losses(G, pair, arcface, img_att, latent_id=latent_id, reconstruct=True, weights=w,
                                      feature_matching=FEATURE_MATCHING["multiscale"])
    fake_out, real_out = d["D_fake_outputs"], d["D_real_outputs"]
    return {"fake": g["fake"], "D1_fake": fake_out[0], "D1_real": real_out[0], "D2_fake": fake_out[1],
            "D2_real": real_out[1], "G_GAN": g["adversarial"] * w.adversarial,
            "G_GAN_Feat": g["feature_matching"] * w.feature_matching, "G_ID": g["identity_rows"],
            "G_Rec": g["reconstruction"] * w.reconstruction, "D_fake": d["adversarial_fake"],
            "D_real": d["adversarial_real"]}


def _identity_image(src2: Tensor, step: int, perm: Sequence[int]) -> Tensor:
    """Even steps: the source batch; odd steps: its rows permuted by ``perm`` (train.py's ``randindex``)."""
    if step % 2 == 0:
        return src2
    return src2[torch.as_tensor(list(perm), dtype=torch.long, device=src2.device)]


def projected_g_losses(G: nn.Module, D: ProjectedDiscriminator, arcface: nn.Module, src1: Tensor, src2: Tensor,
                       step: int, perm: Sequence[int]) -> dict[str, Any]:
    """The G interval of the released train.py (spec 6.1) for ``step``."""
    w = PROJECTED.default_weights
    out = PROJECTED.generator_losses(G, D, arcface, src1, _identity_image(src2, step, perm),
                                     reconstruct=step % 2 == 0, weights=w,
                                     feature_matching=FEATURE_MATCHING["projected"])
    rec = out.get("reconstruction")
    return {"latent_id": out["latent_id"], "fake": out["fake"], "gen_logits": out["gen_logits"],
            "feat_fake": out["feat_fake"], "feat_real": out["feat_real"], "latent_fake": out["latent_fake"],
            "G_main": out["adversarial"], "G_ID": out["identity"], "G_feat_match": out["feature_matching"],
            "G_Rec": None if rec is None else rec * w.reconstruction, "G_total": out["total"]}


def projected_d_losses(G: nn.Module, D: ProjectedDiscriminator, arcface: nn.Module, src1: Tensor, src2: Tensor,
                       step: int, perm: Sequence[int], fake: Tensor | None = None) -> dict[str, Any]:
    """The D interval (spec 6.2); the real is the unpermuted source batch, as in train.py."""
    out = PROJECTED.discriminator_losses(G, D, arcface, src1, _identity_image(src2, step, perm), fake=fake,
                                         weights=PROJECTED.default_weights, real=src2)
    return {"latent_id": out["latent_id"], "fake": out["fake"], "gen_logits": out["gen_logits"],
            "real_logits": out["real_logits"], "D_gen": out["adversarial_fake"], "D_real": out["adversarial_real"],
            "D_total": out["total"]}
