"""Training parity with the official code (training_spec.md section 10) and the loss functions.

The acceptance test runs the goldens' own comparison script (tests/fixtures/training/check_against.py, unchanged)
against simswap_core/train/parity.py, which is built on the library's networks, losses and training paths: every
loss, total, gradient norm and parameter after one Adam step of both official paths must be within the spec's
tolerances. A deliberate deviation (a non-official feature matching preset) must make the same script fail.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from simswap_core.errors import InputError
from simswap_core.networks.patch_discriminator import PatchDiscriminator, downsample_for_d2
from simswap_core.train import losses as L
from simswap_core.train import parity
from simswap_core.train.paths import (
    MULTISCALE,
    PATHS,
    PROJECTED,
    LossWeights,
    ModelSpaceGenerator,
    identity_latent,
)

ROOT = Path(__file__).resolve().parents[1]
TRAINING = Path(__file__).parent / "fixtures" / "training"
CHECK = TRAINING / "check_against.py"
GOLDEN = TRAINING / "train_golden_public.npz"
PARITY = ROOT / "simswap_core" / "train" / "parity.py"

if str(TRAINING) not in sys.path:
    sys.path.append(str(TRAINING))
import recipes  # noqa: E402  (tests/fixtures/training/recipes.py: the seeded weights of the goldens)


def _check(impl: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, str(CHECK), str(impl), str(GOLDEN), "--path", path], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def gold() -> dict[str, np.ndarray]:
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.slow
def test_check_script_passes_on_both_paths() -> None:
    res = _check(PARITY, "both")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "234/234 rows pass" in res.stdout, res.stdout[-2000:]
    assert "note:" not in res.stdout  # the eval-mode-backbone warning of the script


@pytest.mark.slow
def test_check_script_fails_on_a_deviation(tmp_path: Path) -> None:
    """The paper's 'last few layers' instead of the official all-layers feature matching: the check must see it."""
    impl = tmp_path / "deviating_parity.py"
    impl.write_text(textwrap.dedent("""
        from simswap_core.train import parity
        from simswap_core.train.parity import *  # noqa: F401,F403
        parity.FEATURE_MATCHING["multiscale"] = "paper_last_layers"
    """))
    res = _check(impl, "multiscale")
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    failing = [line for line in res.stdout.splitlines() if line.startswith("FAIL")]
    assert any("ms_G_GAN_Feat" in line for line in failing), res.stdout[-3000:]
    assert not any("ms_D1_" in line or "ms_fake" in line for line in failing)  # only what depends on the FM loss


# ------------------------------------------------------------------------------------------ loss functions
def test_hinge_terms() -> None:
    a = torch.tensor([[-2.0, 0.5], [1.5, 0.0]])
    b = torch.tensor([[3.0, -1.0]])
    assert float(L.hinge_generator_loss(a)) == pytest.approx(0.0)
    assert float(L.hinge_generator_loss([a, b])) == pytest.approx(0.5 * (0.0 - 1.0))
    real, fake = L.hinge_discriminator_loss(a, a)
    assert float(real) == pytest.approx((3.0 + 0.5 + 0.0 + 1.0) / 4)   # relu(1 - x)
    assert float(fake) == pytest.approx((0.0 + 1.5 + 2.5 + 1.0) / 4)   # relu(1 + x)
    real2, _ = L.hinge_discriminator_loss([a, b], [a, b])
    assert float(real2) == pytest.approx(0.5 * (float(real) + (0.0 + 2.0) / 2))
    with pytest.raises(InputError):
        L.hinge_generator_loss([])


def test_weak_feature_matching_presets() -> None:
    g = torch.Generator().manual_seed(0)
    fake = {str(k): torch.rand(2, 4, 3, 3, generator=g) for k in range(4)}
    real = {str(k): torch.rand(2, 4, 3, 3, generator=g) for k in range(4)}
    l1 = {k: float((fake[k] - real[k]).abs().mean()) for k in fake}
    assert float(L.weak_feature_matching_loss(fake, real, "backbone_last")) == pytest.approx(l1["3"])
    assert float(L.weak_feature_matching_loss(fake, real, "backbone_all")) == pytest.approx(sum(l1.values()))
    assert float(L.weak_feature_matching_loss(fake, real, "paper_last_layers")) == pytest.approx(l1["2"] + l1["3"])
    patch_fake = [[torch.rand(2, 1, 2, 2, generator=g) for _ in range(6)] for _ in range(2)]
    patch_real = [[torch.rand(2, 1, 2, 2, generator=g) for _ in range(6)] for _ in range(2)]
    terms = [[float((f - r).abs().mean()) for f, r in zip(fd, rd)] for fd, rd in zip(patch_fake, patch_real)]
    got = float(L.weak_feature_matching_loss(patch_fake, patch_real, "all_layers"))
    assert got == pytest.approx(0.4 * sum(sum(t[:5]) for t in terms))  # x lambda_feat 10 = the official 4 per term
    got = float(L.weak_feature_matching_loss(patch_fake, patch_real, "paper_last_layers"))
    assert got == pytest.approx(sum(t[3] + t[4] for t in terms))
    # the real side never carries gradient
    f = {k: v.clone().requires_grad_(True) for k, v in fake.items()}
    r = {k: v.clone().requires_grad_(True) for k, v in real.items()}
    L.weak_feature_matching_loss(f, r, "backbone_all").backward()
    assert all(t.grad is None for t in r.values()) and all(t.grad is not None for t in f.values())
    with pytest.raises(InputError, match="all_layers"):
        L.weak_feature_matching_loss(fake, real, "all_layers")   # a PatchGAN preset on backbone taps
    with pytest.raises(InputError):
        L.weak_feature_matching_loss(patch_fake, patch_real, "nope")


def test_identity_and_reconstruction_losses() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    assert L.identity_loss(a, b).tolist() == pytest.approx([1 - 1 / math.sqrt(2), 2.0])
    with pytest.raises(InputError):
        L.identity_loss(a, b[:1])
    fake = torch.zeros(3, 1, 2, 2)
    target = torch.stack([torch.full((1, 2, 2), v) for v in (1.0, 2.0, 4.0)])
    assert float(L.reconstruction_loss(fake, target)) == pytest.approx(7 / 3)
    assert float(L.reconstruction_loss(fake, target, torch.tensor([True, False, True]))) == pytest.approx(2.5)
    none = L.reconstruction_loss(fake.requires_grad_(True), target, torch.tensor([False, False, False]))
    assert float(none.detach()) == 0.0 and none.requires_grad
    with pytest.raises(InputError):
        L.reconstruction_loss(fake, target, torch.tensor([True]))
    x = torch.rand(2, 3, 224, 224)
    assert tuple(L.arcface_input(x, "bicubic").shape) == (2, 3, 112, 112)
    near = L.arcface_input(x, "nearest")  # keeps the even pixels of a 224 crop, then ImageNet-normalises
    ref = (x[:, :, ::2, ::2] - torch.tensor(L.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(L.IMAGENET_STD).view(
        1, 3, 1, 1)
    assert torch.equal(near, ref)
    with pytest.raises(InputError):
        L.arcface_input(x, "bilinear")


def test_r1_penalty_is_the_squared_input_gradient() -> None:
    w = torch.randn(1, 3, 4, 4)
    real = torch.randn(2, 3, 4, 4)
    r1 = L.r1_penalty(lambda x: (x * w).flatten(1).sum(1, keepdim=True), real)
    assert r1.shape == (2,)
    assert torch.allclose(r1, torch.full((2,), float(w.pow(2).sum())))


def test_wgan_gradient_penalty_matches_the_official_helper(gold: dict[str, np.ndarray]) -> None:
    """The golden's ms_gp_D1 / ms_gp_D2: the older path's (unused) helper on the pristine D1 / D2, alpha per section
    9.2, real = img_att, fake = the Tanh generator's output."""
    seed = int(gold["seed"])
    G = parity.build_generator(recipes.state_dict("g224", seed), "tanh").train()
    img_att = recipes.to01(gold["tgt_u8"])
    with torch.no_grad():
        fake = G(img_att, torch.from_numpy(gold["ms_latent_id"]))
    alpha = recipes.gp_alpha(seed)
    assert np.allclose(alpha.flatten().numpy(), gold["ms_gp_alpha"])
    for name, pool in (("D1", False), ("D2", True)):
        D = PatchDiscriminator()
        D.load_state_dict(recipes.state_dict("patch_d1" if name == "D1" else "patch_d2", seed))
        D.train()
        real, fk = (downsample_for_d2(img_att), downsample_for_d2(fake)) if pool else (img_att, fake)
        gp = L.wgan_gradient_penalty(D, real, fk, alpha)
        ref = float(gold[f"ms_gp_{name}"])
        assert float(gp.detach()) == pytest.approx(ref, rel=1e-3)
        assert gp.requires_grad  # the graph is kept: the penalty trains D


# ------------------------------------------------------------------------------------------ paths
def test_loss_weights_and_path_settings() -> None:
    assert set(PATHS) == {"projected", "multiscale"}
    assert PROJECTED.default_weights == LossWeights(identity=30, feature_matching=10, reconstruction=10)
    assert MULTISCALE.default_weights.identity == 20.0
    assert PROJECTED.default_feature_matching in PROJECTED.feature_matching_presets
    assert MULTISCALE.default_feature_matching == "all_layers"
    for bad in (-1.0, float("nan"), float("inf"), True):
        with pytest.raises(InputError):
            LossWeights(identity=bad, feature_matching=10)
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(PROJECTED.from_model_space(PROJECTED.to_model_space(x)), x, atol=1e-6)
    assert torch.equal(MULTISCALE.to_model_space(x), x)
    for bad_crop in (100, 200, 64):
        with pytest.raises(InputError, match="crop_size"):
            PROJECTED.build_discriminator(bad_crop)
    with pytest.raises(InputError, match="backbone"):
        MULTISCALE.build_discriminator(224, backbone_weights="x.pth")
    with pytest.warns(UserWarning, match="RANDOM"):
        D = PROJECTED.build_discriminator(224)
    G = torch.nn.Linear(2, 2)
    opt_g, opt_d = PROJECTED.make_optimizers(G, D, lr=1e-4)
    assert opt_g.param_groups[0]["lr"] == 1e-4 and opt_d.param_groups[0]["betas"] == (0.0, 0.99)
    assert len(opt_d.param_groups[0]["params"]) == len(list(D.parameters()))  # frozen ones too, as officially


def _small_models(seed: int = 1234) -> tuple[ModelSpaceGenerator, torch.nn.Module]:
    G = parity.build_generator(recipes.state_dict("g224", seed), "tanh").train()
    arc = parity.build_arcface(recipes.state_dict("arcface", seed)).eval().requires_grad_(False)
    return G, arc


def test_multiscale_split_losses_equal_the_official_single_pass() -> None:
    """What the trainer calls (generator_losses, discriminator_losses) gives the values of the official one-pass
    forward that the parity check verifies (batch statistics: only the running statistics see the extra forward)."""
    torch.manual_seed(0)
    G, arc = _small_models()
    D = MULTISCALE.build_discriminator(224)
    g = torch.Generator().manual_seed(5)
    target, ident = torch.rand(2, 3, 128, 128, generator=g), torch.rand(2, 3, 128, 128, generator=g)
    w = MULTISCALE.default_weights
    with torch.no_grad():
        latent = identity_latent(arc, ident, "multiscale")
    ref_g, ref_d = MULTISCALE.combined_losses(G, D, arc, target, latent_id=latent, reconstruct=True, weights=w,
                                              feature_matching="all_layers")
    out = MULTISCALE.generator_losses(G, D, arc, target, ident, reconstruct=True, weights=w,
                                      feature_matching="all_layers")
    for k in ("total", "adversarial", "identity", "feature_matching", "reconstruction"):
        assert float(out[k].detach()) == pytest.approx(float(ref_g[k].detach()), rel=1e-5, abs=1e-6), k
    dout = MULTISCALE.discriminator_losses(G, D, arc, target, ident, fake=out["fake"], weights=w)
    for k in ("total", "adversarial_real", "adversarial_fake"):
        assert float(dout[k].detach()) == pytest.approx(float(ref_d[k].detach()), rel=1e-5, abs=1e-6), k
    out["total"].backward()
    assert all(p.grad is not None for p in G.parameters())
    no_rec = MULTISCALE.generator_losses(G, D, arc, target, ident, reconstruct=False, weights=w,
                                         feature_matching="paper_last_layers")
    assert "reconstruction" not in no_rec


def test_paths_refuse_a_generator_of_the_other_convention() -> None:
    G, arc = _small_models()  # a Tanh ("official") generator
    D = MULTISCALE.build_discriminator(224)
    x = torch.rand(1, 3, 128, 128)
    with pytest.raises(InputError, match="'fix' generator"):
        PROJECTED.generator_losses(G, D, arc, x, x, reconstruct=True, weights=PROJECTED.default_weights,
                                   feature_matching="backbone_last")
    with pytest.raises(InputError, match="preset"):
        MULTISCALE.generator_losses(G, D, arc, x, x, reconstruct=True, weights=MULTISCALE.default_weights,
                                    feature_matching="backbone_last")
    with pytest.raises(InputError, match="image batch"):
        MULTISCALE.generator_losses(G, D, arc, x[:, :1], x, reconstruct=True, weights=MULTISCALE.default_weights,
                                    feature_matching="all_layers")


def test_model_space_generator_is_the_raw_network() -> None:
    from simswap_core.networks.generator import GeneratorConfig, SimSwapGenerator
    from simswap_core.train.paths import model_space_generator

    torch.manual_seed(0)
    G = SimSwapGenerator(GeneratorConfig(n_blocks=1, variant="fix"), crop_size=64).eval()
    M = model_space_generator(G)
    assert isinstance(M, ModelSpaceGenerator) and not M.training and M.crop_size == 64
    assert list(M.state_dict()) == list(G.state_dict())
    x, latent = torch.randn(1, 3, 64, 64), torch.nn.functional.normalize(torch.randn(1, 512), dim=1)
    with torch.no_grad():
        assert torch.equal(M(x, latent), G.forward_raw(x, latent))
        assert torch.equal(PROJECTED._generate(G, x, latent), G.forward_raw(x, latent))  # plain G: raw forward used
    assert model_space_generator(M) is M
