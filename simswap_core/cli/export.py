"""``simswap export``: the generator or the ArcFace identity encoder as an ONNX file other tools can run.

    simswap export --what generator --out simswap_224.onnx [--generator NAME|PATH] [--names facefusion|rope]
                   [--input-norm unit|imagenet] [--precision fp32|fp16] [--opset 17] [--check]
    simswap export --what arcface --out simswap_arcface.onnx [--arcface NAME|PATH] [--check]
    simswap export --what generator --out g.onnx --precision fp16 --engine g.plan   # + a TensorRT engine

Names, ranges and conventions: ``simswap_core/export.py``. --check runs the file with onnxruntime against torch
(max |difference| printed; exit status 2 when above the tolerance). --engine builds a TensorRT engine from the
exported file (needs the ``tensorrt`` package and a CUDA GPU; ``simswap_core/tensorrt.py``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import add_common, int_in, positive_int


def add_parser(sub: Any) -> None:
    """Register ``export`` and its arguments on the subparsers ``sub``."""
    e = sub.add_parser("export", help="export the generator or the ArcFace encoder to ONNX (optionally TensorRT)",
                       description=__doc__.split("\n\n")[0])
    e.add_argument("--what", required=True, choices=["generator", "arcface"], help="which network to export")
    e.add_argument("--out", required=True, help="output .onnx file")
    e.add_argument("--generator", help="generator checkpoint path or name (default simswap_224 / simswap_512)")
    e.add_argument("--size", type=int, choices=[224, 512], default=None,
                   help="default generator: simswap_224 or simswap_512; crop size of the exported graph "
                        "(default: the generator's)")
    e.add_argument("--arcface", help="ArcFace checkpoint path or name (default arcface)")
    e.add_argument("--names", default="facefusion", choices=["facefusion", "rope"],
                   help="generator input/output names: facefusion (target, source -> output) or rope (input, "
                        "onnx::Gemm_1 -> output)")
    e.add_argument("--input-norm", default="unit", choices=["unit", "imagenet"],
                   help="generator crop input: unit = RGB [0,1]; imagenet = mean/std-normalised (FaceFusion's "
                        "simswap_256 convention); the output is RGB [0,1] either way")
    e.add_argument("--precision", default="fp32", choices=["fp32", "fp16"],
                   help="weights and compute fp32 or fp16 (float32 inputs/outputs either way); a TensorRT engine "
                        "has the ONNX file's precision (ONNX convolutions have no bf16)")
    e.add_argument("--opset", type=int_in(11, 21, "an ONNX opset 11..21"), default=17, help="ONNX opset (17)")
    e.add_argument("--check", action="store_true", help="compare the file with torch using onnxruntime")
    e.add_argument("--engine", default=None, metavar="PLAN",
                   help="also build a TensorRT engine (a .plan file) from the exported ONNX file")
    e.add_argument("--max-batch", type=positive_int, default=32,
                   help="TensorRT engine: largest batch of its optimisation profile (default 32)")
    add_common(e)
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import check_onnx, export_arcface, export_generator
    from ..io.atomic import refuse_existing
    from ..models.find import find_model
    from ..models.loaders import load_arcface, load_generator

    out = Path(args.out)
    if args.engine and args.what != "generator":
        raise InputError("--engine: TensorRT engines are built for the generator (--what generator)")
    refuse_existing(out, overwrite=args.overwrite)                     # fail before loading anything
    if args.engine:
        refuse_existing(args.engine, overwrite=args.overwrite)
    if args.what == "generator":
        name = args.generator or ("simswap_512" if args.size == 512 else "simswap_224")
        path = find_model(name, kind="generator" if args.generator is None else None)
        args.pending_output = out
        result = export_generator(load_generator(path), out, names=args.names, input_norm=args.input_norm,
                                  opset=args.opset, precision=args.precision, crop_size=args.size,
                                  overwrite=args.overwrite)
    else:
        path = find_model(args.arcface or "arcface", kind="arcface" if args.arcface is None else None)
        args.pending_output = out
        result = export_arcface(load_arcface(path), out, opset=args.opset, precision=args.precision,
                                overwrite=args.overwrite)
    args.pending_output = None
    lines = [f"wrote {result.describe()} from {path.name}"]
    if args.check:
        try:
            check_onnx(result)          # CheckpointError (exit 2) above the tolerance; the file stays written
        finally:
            if result.max_abs_diff:
                lines.append("check (onnxruntime vs torch fp32, batch 3): max |difference| " +
                             ", ".join(f"{n} {d:.3g}" for n, d in result.max_abs_diff.items()))
            if not args.quiet:
                print("\n".join(lines), file=sys.stderr)
            lines = []
    if args.engine:
        from ..tensorrt import build_engine

        engine = build_engine(result.path, args.engine, max_batch=args.max_batch, overwrite=args.overwrite)
        lines.append(f"wrote TensorRT engine {engine}")
    if not args.quiet and lines:
        print("\n".join(lines), file=sys.stderr)
    return 0
