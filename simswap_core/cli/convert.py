"""``simswap convert``: an official ``.pth``/``.tar`` checkpoint to ``.safetensors`` (no unpickling needed later)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import add_common


def add_parser(sub: Any) -> None:
    """Register ``convert`` and its arguments on the subparsers ``sub``."""
    c = sub.add_parser("convert", help="convert an official .pth/.tar checkpoint to .safetensors")
    c.add_argument("src")
    c.add_argument("dst")
    add_common(c)
    c.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..io.output_guard import refuse_input_as_output

    dst = Path(args.dst)
    refuse_input_as_output("dst", dst, [args.src])       # never replaces the checkpoint it reads, even --overwrite
    if dst.exists() and not args.overwrite:
        raise InputError(f"{dst}: already exists; pass --overwrite to replace it")
    if not Path(args.src).is_file():
        raise FileNotFoundError(f"{args.src}: checkpoint file not found")
    from ..models.loaders import convert_checkpoint

    convert_checkpoint(args.src, dst, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {dst}", file=sys.stderr)
    return 0
