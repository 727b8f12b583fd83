"""What every command shares: the common flags, argument types, the device, model loading and the progress bar.

Model loaders are imported inside the functions (``from ..models.loaders import ...``) so the CLI starts fast
and tests can replace them on ``simswap_core.models.loaders``.
"""
from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from ..errors import InputError


def add_common(sp: argparse.ArgumentParser) -> None:
    """--device, --overwrite and --quiet, the flags of every command."""
    sp.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    sp.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")


def device(name: str | None) -> torch.device:
    """--device value -> torch.device (None, "" or "auto": cuda if available, else cpu)."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"--device: expected cpu, cuda or cuda:N, got {name!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: this torch build or machine has no CUDA device; use --device cpu")
    return dev


# --------------------------------------------------------------------------------------------- argument types

def parse_size(text: str) -> int:
    if text not in ("224", "512"):
        raise argparse.ArgumentTypeError(f"expected 224 or 512, got {text!r}")
    return int(text)


def int_in(low: int, high: int | None, expected: str) -> Callable[[str], int]:
    """An argparse ``type=``: the text as an integer in low..high (high None = no bound), else an error saying
    ``expected`` (e.g. "a positive integer")."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if v < low or (high is not None and v > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return v

    return parse


positive_int = int_in(1, None, "a positive integer")


def smooth_strength(text: str) -> str:
    if text == "auto":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0,1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected auto or a number in [0,1], got {text!r}")
    return text


def unit_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0,1), got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0,1), got {text!r}")
    return v


# --------------------------------------------------------------------------------------------- models

#: what runs the detector network (= simswap_core.detection.backend.BACKENDS; not imported, the CLI starts light)
DETECTOR_BACKENDS = ("torch", "onnxruntime")


def add_detector_backend(p: argparse.ArgumentParser) -> None:
    """``--detector-backend torch|onnxruntime`` on a command that detects faces."""
    p.add_argument("--detector-backend", default=DETECTOR_BACKENDS[0], choices=DETECTOR_BACKENDS,
                   help="what runs the face detector network: torch (default; on --device, no onnxruntime needed) "
                        "or onnxruntime (optional: pip install onnxruntime, or onnxruntime-gpu)")


def load_detector_cli(name: str, threshold: float | None, device: torch.device, backend: str | None = None) -> Any:
    """A FaceDetector by name (yunet | antelopev2 | buffalo_l | PATH.onnx), with --det-threshold and
    --detector-backend if given."""
    from ..detection import load_detector

    kwargs: dict[str, Any] = {"device": device}
    if threshold is not None:
        kwargs["threshold"] = threshold
    if backend is not None:
        kwargs["backend"] = backend
    return load_detector(name, **kwargs)


def model_file(args: argparse.Namespace, role: str) -> Path:
    """The file the swap flags name for model ``role``: "generator" (--generator, else the official 224 or 512 by
    --size), "arcface" (--arcface), "parser" (--parser, else BiSeNet) or "sam" (--sam), found in the model folders.
    The one place these names are resolved: loading, the output's label and ``simswap batch``'s records agree."""
    from ..models.find import find_model

    if role == "generator":
        name = args.generator or ("simswap_512" if args.size == 512 else "simswap_224")
        return find_model(name, kind="generator" if args.generator is None else None)
    if role == "arcface":
        return find_model(args.arcface or "arcface", kind="arcface" if args.arcface is None else None)
    if role == "parser":
        return find_model(args.parser or "bisenet", kind="parser" if args.parser is None else None)
    if role == "sam":
        return find_model(args.sam, kind="sam")
    raise ValueError(f"model_file: unknown role {role!r}")


def load_models(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """(generator, arcface, detector) from --generator/--size, --arcface, --detector/--det-threshold."""
    from ..models.loaders import load_arcface, load_generator

    gen_path, arc_path = model_file(args, "generator"), model_file(args, "arcface")
    generator = load_generator(gen_path)
    if args.size is not None and getattr(generator, "crop_size", args.size) != args.size and args.generator:
        warnings.warn(f"--size {args.size} but {gen_path.name} was made for {generator.crop_size} crops; "
                      f"using {args.size}", stacklevel=2)
    arcface = load_arcface(arc_path)
    detector = load_detector_cli(args.detector, args.det_threshold, device, getattr(args, "detector_backend", None))
    return generator.to(device), arcface.to(device), detector


def load_parser_cli(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """The BiSeNet face parser from --parser (default: bisenet, found in the model folders)."""
    from ..models.loaders import load_parser

    return load_parser(model_file(args, "parser"), device=device)


# --------------------------------------------------------------------------------------------- progress

class ProgressBar:
    """A tqdm bar (on stderr, off with --quiet) fed by ``progress(done, total)`` with done counted over the run."""

    def __init__(self, total: int | None, desc: str, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="frame", disable=quiet, dynamic_ncols=True)
        self.done = 0

    def __call__(self, done: int, total: int | None) -> None:
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
