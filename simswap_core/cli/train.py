"""``simswap train`` and ``simswap finetune``: train SimSwap from scratch or fine-tune a generator.

    simswap train DATA OUT --arcface arcface_checkpoint.tar --efficientnet tf_efficientnet_lite0.safetensors
    simswap train DATA OUT --arcface ARC --path multiscale            # the paper's PatchGAN pair
    simswap train DATA OUT --resume                                   # continue the newest complete checkpoint
    simswap finetune DATA OUT --from latest_net_G.pth --arcface ARC   # official 224 (Tanh) -> multiscale path
    torchrun --nproc_per_node 8 -m simswap_core.cli train DATA OUT ...  # the same on 8 GPUs (or CPU processes)

DATA holds one folder per identity of aligned crops (``simswap prepare-faces`` makes them). Every bad input (an
empty dataset, too few identities for the batch, a generator file of the wrong kind or convention, a missing
ArcFace) fails with one clear line before training starts. See :mod:`simswap_core.train.trainer`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, InputError
from .common import positive_int

# What --path each generator convention trains on: the Tanh head is the older (multiscale) path's, the
# no-Tanh "fix" head train.py's (projected).
_PATH_OF_VARIANT = {"official": "multiscale", "fix": "projected"}


def crop_size(text: str) -> int:
    """224 or 512 (other multiples of 32 from 128 are accepted for experiments and tests)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 224 or 512, got {text!r}") from None
    if v % 32 or not 128 <= v <= 1024:
        raise argparse.ArgumentTypeError(f"expected 224 or 512, got {text!r}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def decay(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a decay in (0,1) such as 0.999, got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a decay in (0,1) such as 0.999, got {text!r}")
    return v


def _add_shared(c: argparse.ArgumentParser, *, finetune: bool) -> None:
    c.add_argument("data", help="training data: one folder per identity of aligned face crops")
    c.add_argument("out", help="run folder: checkpoints, samples/, train_log.csv (never overwritten)")
    c.add_argument("--arcface", required=False, help="ArcFace file (arcface_checkpoint.tar or a converted copy)")
    c.add_argument("--path", choices=("projected", "multiscale"), default=None,
                   help="training path: projected (released train.py: EfficientNet projected D) or multiscale "
                        "(the paper's two PatchGANs); default " +
                        ("from the generator's convention (Tanh -> multiscale, fix -> projected)" if finetune
                         else "projected"))
    c.add_argument("--crop-size", type=crop_size, default=None,
                   help="224 or 512 (default " + ("the generator's" if finetune else "224") + ")")
    c.add_argument("--efficientnet", default=None,
                   help="EfficientNet-lite0 ImageNet weights for the projected D (tf_efficientnet_lite0 .safetensors "
                        "or timm .pth)")
    c.add_argument("--discriminator", nargs="+", default=(), metavar="D_FILE",
                   help="start D from trained files: *_net_D.pth (projected; holds its backbone) or *_net_D1.pth "
                        "*_net_D2.pth (multiscale, e.g. the official 224 release)")
    c.add_argument("--random-backbone", action="store_true", help=argparse.SUPPRESS)
    c.add_argument("--batch-size", type=positive_int, default=4, help="rows per process and micro-step (default 4; "
                                                                      "the official README advises > 16)")
    c.add_argument("--accumulate", type=positive_int, default=1, help="micro-steps per optimiser step (default 1)")
    c.add_argument("--steps", type=positive_int, default=None,
                   help="total steps (default " + ("20000" if finetune else "1000000, the official") + "; with "
                        "--resume: the saved run's, or a new total)")
    c.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: the path's official)")
    c.add_argument("--lambda-id", type=nonneg_float, default=None, help="identity loss weight")
    c.add_argument("--lambda-feat", type=nonneg_float, default=None, help="weak feature matching weight")
    c.add_argument("--lambda-rec", type=nonneg_float, default=None, help="reconstruction weight")
    c.add_argument("--lambda-gp", type=nonneg_float, default=None, help="gradient penalty weight (default 0)")
    c.add_argument("--feature-matching", default=None,
                   help="weak feature matching preset (default: the path's official choice)")
    c.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast precision")
    c.add_argument("--ema", type=decay, default=None, metavar="DECAY",
                   help="keep an EMA of G (e.g. 0.999), used for samples and saved as {step}_net_G_ema")
    c.add_argument("--checkpoint-every", type=positive_int, default=10_000, help="steps (default 10000)")
    c.add_argument("--sample-every", type=positive_int, default=1_000, help="steps (default 1000)")
    c.add_argument("--log-every", type=positive_int, default=100, help="steps (default 100)")
    c.add_argument("--keep", type=positive_int, default=None, metavar="K", help="keep only the newest K checkpoints")
    c.add_argument("--seed", type=int, default=0, help="seed of the initial weights, batches and pairing")
    c.add_argument("--workers", type=int, default=4, help="data loader processes (default 4)")
    c.add_argument("--resume", action="store_true",
                   help="continue the newest complete checkpoint in OUT with the run's saved settings (only --steps, "
                        "--device, --workers and --quiet may change)")
    c.add_argument("--n-blocks", type=positive_int, default=9, help=argparse.SUPPRESS)
    c.add_argument("--device", default=None, help="cpu or cuda (default cuda if available; torchrun: one per rank)")
    c.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_parser(sub: Any) -> None:
    """Register ``train`` and ``finetune`` on the subparsers ``sub``."""
    t = sub.add_parser("train", help="train SimSwap from scratch (both official training paths)")
    _add_shared(t, finetune=False)
    t.add_argument("--gdeep", action="store_true", help="the deep generator (train.py's Gdeep; its 512 recipe)")
    t.set_defaults(func=cmd_train, finetune=False)
    f = sub.add_parser("finetune", help="fine-tune a SimSwap generator (e.g. the official latest_net_G.pth)")
    _add_shared(f, finetune=True)
    f.add_argument("--from", dest="init", required=False, help="generator to start from (.pth or .safetensors)")
    f.add_argument("--variant", choices=("official", "fix"), default=None,
                   help="the generator's convention when its file does not say (.pth files: official Tanh)")
    f.set_defaults(func=cmd_train, finetune=True)


def _generator_facts(path: str, variant: str | None) -> dict[str, str]:
    from ..models.loaders import inspect_checkpoint

    facts = inspect_checkpoint(path)
    if facts.get("kind") != "generator":
        raise CheckpointError(f"--from {path}: found {facts.get('kind', 'unknown')} weights ({facts.get('arch', '?')}, "
                              f"{facts.get('source', '?')}), expected a SimSwap generator (e.g. latest_net_G.pth)")
    if variant is not None:
        facts["variant"] = variant
    return facts


def build_config(args: argparse.Namespace) -> Any:
    """The TrainConfig of the parsed arguments (the checks that need no file read come first)."""
    from ..train.paths import PATHS, LossWeights
    from ..train.trainer import TrainConfig

    if args.resume:
        return _resume_config(args)
    if not args.arcface:
        raise InputError("--arcface is required: the ArcFace file the identity loss uses (arcface_checkpoint.tar)")
    gdeep = bool(getattr(args, "gdeep", False))
    crop, path = args.crop_size, args.path
    init = None
    if args.finetune:
        if not args.init:
            raise InputError("finetune needs --from GENERATOR (e.g. latest_net_G.pth)")
        facts = _generator_facts(args.init, args.variant)
        init = args.init
        path = path or _PATH_OF_VARIANT[facts["variant"]]
        crop = crop or int(facts["crop_size"])
        gdeep = facts["arch"] in ("deep", "deep512")
    path = path or "projected"
    crop = crop or 224
    defaults = PATHS[path].default_weights
    overrides = {name: value for name, value in (
        ("identity", args.lambda_id), ("feature_matching", args.lambda_feat), ("reconstruction", args.lambda_rec),
        ("gradient_penalty", args.lambda_gp)) if value is not None}
    from dataclasses import replace

    weights = replace(defaults, **overrides) if overrides else None
    assert weights is None or isinstance(weights, LossWeights)
    return TrainConfig(
        data=args.data, out=args.out, arcface=args.arcface, path=path, crop_size=crop, batch_size=args.batch_size,
        accumulate=args.accumulate, total_steps=args.steps or (20_000 if args.finetune else 1_000_000), lr=args.lr,
        weights=weights,
        feature_matching=args.feature_matching, precision=args.precision, ema_decay=args.ema,
        checkpoint_every=args.checkpoint_every, sample_every=args.sample_every, log_every=args.log_every,
        keep_checkpoints=args.keep, seed=args.seed, backbone_weights=args.efficientnet,
        allow_random_backbone=args.random_backbone, generator_init=init,
        generator_variant=getattr(args, "variant", None), discriminator_init=tuple(args.discriminator),
        gdeep=gdeep, n_blocks=args.n_blocks, device=args.device,
        num_workers=max(0, args.workers), resume=args.resume, quiet=args.quiet)


def _resume_config(args: argparse.Namespace) -> Any:
    """The saved run's TrainConfig (from its newest complete checkpoint), with --steps/--device/--workers/--quiet."""
    from dataclasses import fields

    from ..train.checkpointing import find_latest_checkpoint
    from ..train.paths import LossWeights
    from ..train.trainer import TrainConfig

    out = Path(args.out)
    if not out.is_dir():
        raise InputError(f"--resume {out}: no such run folder")
    record = find_latest_checkpoint(out)
    if record is None:
        raise InputError(f"--resume {out}: no complete checkpoint ({{step}}_train_state.pt with its files) found")
    saved = dict(record.state.get("config") or {})
    known = {f.name for f in fields(TrainConfig)}
    saved = {k: v for k, v in saved.items() if k in known}
    if isinstance(saved.get("weights"), dict):
        saved["weights"] = LossWeights(**saved["weights"])
    saved.update(out=str(out), resume=True, quiet=args.quiet, num_workers=max(0, args.workers))
    if args.device is not None:
        saved["device"] = args.device
    if args.steps is not None:
        saved["total_steps"] = args.steps
    if Path(args.data).resolve() != Path(str(saved.get("data"))).resolve():
        raise InputError(f"--resume {out}: the run was trained on {saved.get('data')}, not {args.data}; the "
                         f"batches could not be reproduced")
    try:
        return TrainConfig(**saved)
    except TypeError as exc:
        raise InputError(f"--resume {out}: its saved settings are incomplete ({exc})") from None


def cmd_train(args: argparse.Namespace) -> int:
    from ..train.trainer import Trainer
    from .main import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated

    config = build_config(args)
    trainer = Trainer(config)
    try:
        if trainer.step >= config.total_steps:
            trainer.info(f"{config.out}: already at step {trainer.step} of {config.total_steps}; nothing to do")
            return 0
        trainer.fit()
    except (KeyboardInterrupt, Terminated) as exc:
        # not "nothing was written": the checkpoints made so far are complete and kept
        from ..train.checkpointing import find_latest_checkpoint

        record = find_latest_checkpoint(Path(config.out)) if trainer.ctx.is_main else None
        if trainer.ctx.is_main:
            where = (f"the newest complete checkpoint is step {record.step}; continue with --resume" if record
                     else "no checkpoint was complete yet")
            how = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "terminated (SIGTERM)"
            print(f"simswap: {how} at step {trainer.step}; {where}", file=sys.stderr)
        return EXIT_INTERRUPTED if isinstance(exc, KeyboardInterrupt) else EXIT_TERMINATED
    finally:
        trainer.close()
    if trainer.ctx.is_main and not args.quiet:
        print(f"trained to step {trainer.step}; checkpoints in {config.out} (latest_net_G.safetensors loads with "
              f"simswap swap --generator)", file=sys.stderr)
    return 0
