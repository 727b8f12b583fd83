"""``simswap demo``: a whole photo swap on sample photos with SEEDED RANDOM weights (not a real model)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .common import add_common, device, load_detector_cli, positive_int

DEMO_LABEL = ("SEEDED RANDOM WEIGHTS - NOT A REAL FACE-SWAP MODEL. This demo shows that the pipeline runs end "
              "to end (detect, align, identity, generate, mask, paste); the swapped faces are noise-like by "
              "design. Fetch the official SimSwap weights (see README) for real swaps.")


def add_parser(sub: Any) -> None:
    """Register ``demo`` and its flags on the subparsers ``sub``."""
    d = sub.add_parser("demo", help="run a full swap on sample photos with SEEDED RANDOM weights (not a real model)")
    d.add_argument("--out", required=True, help="folder for source/target/result/mask")
    d.add_argument("--weights-dir", default=None, help="where seeded weights are cached (default "
                                                       "~/.cache/simswap/seeded)")
    d.add_argument("--seed", type=int, default=1234)
    d.add_argument("--detector", default="yunet")
    d.add_argument("--batch-size", type=positive_int, default=8)
    add_common(d)
    d.set_defaults(func=cmd_demo)


def demo_photos() -> tuple[torch.Tensor, torch.Tensor, str, str]:
    """(source [1,3,H,W], target [1,3,H,W], source name, target name) from installed packages."""
    import importlib.util

    import numpy as np

    from ..io.images import read_image, uint8_to_image

    try:
        from skimage import data as skdata
    except ImportError as e:
        raise InputError("simswap demo needs scikit-image for its sample photo: pip install scikit-image") from e
    source = uint8_to_image(np.ascontiguousarray(skdata.astronaut()))
    spec = importlib.util.find_spec("insightface")
    if spec is not None and spec.submodule_search_locations:
        t1 = Path(list(spec.submodule_search_locations)[0]) / "data" / "images" / "t1.jpg"
        if t1.is_file():
            return source, read_image(t1).image, "skimage astronaut", "insightface t1.jpg (6 faces)"
    target = torch.flip(source, dims=[3])
    return source, target, "skimage astronaut", "skimage astronaut, mirrored (insightface not installed)"


def cmd_demo(args: argparse.Namespace) -> int:
    from ..io.atomic import atomic_write
    from ..io.images import write_image
    from ..io.output_guard import probe_writable
    from ..models.find import user_cache_models_dir
    from ..models.loaders import load_arcface, load_generator
    from ..models.seeded import write_seeded_checkpoints
    from ..provenance import make_label
    from ..swap import FaceSwapper

    dev = device(args.device)
    out = Path(args.out)
    names = ["source.png", "target.png", "result.png", "mask.png", "faces.json", "NOT_A_REAL_MODEL.txt"]
    if out.exists() and not args.overwrite:
        clash = [n for n in names if (out / n).exists()]
        if clash:
            raise InputError(f"--out {out}: {clash[0]} already exists; pass --overwrite or choose an empty folder")
    probe_writable("--out", out, folder=True)         # a read-only or full folder fails before the seeded weights
    print(DEMO_LABEL, file=sys.stderr)
    cache = Path(args.weights_dir) if args.weights_dir else user_cache_models_dir().parent / "seeded"
    paths = write_seeded_checkpoints(cache, seed=args.seed, kinds=("g224", "arcface"))
    generator = load_generator(paths["g224"])
    arcface = load_arcface(paths["arcface"])
    detector = load_detector_cli(args.detector, None, dev)
    source, target, sname, tname = demo_photos()
    swapper = FaceSwapper(generator, arcface, detector, device=dev)
    identity = swapper.extract_identity(source.to(dev), select="largest")
    res = swapper.swap(target.to(dev), identity, select="all", if_no_face="error", batch_size=args.batch_size)
    out.mkdir(parents=True, exist_ok=True)
    ow = args.overwrite
    doc = {"label": DEMO_LABEL, "source": sname, "target": tname, "weights": {k: str(v) for k, v in paths.items()},
           "seed": args.seed, "detector": args.detector, "faces_swapped": len(res.faces),
           "faces": res.faces.to_json()[0]}
    new_files = [out / n for n in names if not (out / n).exists()]
    try:          # all six files or none of the new ones (an interrupted demo leaves no partial set)
        write_image(out / "source.png", source, overwrite=ow)
        write_image(out / "target.png", target, overwrite=ow)
        write_image(out / "result.png", res.images, overwrite=ow,     # labelled as synthetic (provenance)
                    label=make_label(generator=paths["g224"], arcface=paths["arcface"],
                                     detector=getattr(detector, "model_path", None)))
        write_image(out / "mask.png", res.mask.expand(-1, 3, -1, -1), overwrite=ow)
        atomic_write(out / "faces.json", lambda p: p.write_text(json.dumps(doc, indent=2)), overwrite=ow)
        atomic_write(out / "NOT_A_REAL_MODEL.txt", lambda p: p.write_text(DEMO_LABEL + "\n"), overwrite=ow)
    except BaseException:
        for f in new_files:
            f.unlink(missing_ok=True)
        raise
    changed = (res.images != target.to(res.images.device)).any(1).float().mean().item()
    print(f"demo: {len(res.faces)} face(s) of {tname} swapped with the {sname} identity; "
          f"{changed:.1%} of pixels changed; results in {out}", file=sys.stderr)
    return 0
