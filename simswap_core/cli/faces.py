"""``simswap faces``: draw and number the detected faces of an image (numbers = ``--faces index:N``), and JSON."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import add_common, add_detector_backend, device, load_detector_cli, unit_float


def add_parser(sub: Any) -> None:
    """Register ``faces`` and its flags on the subparsers ``sub``."""
    f = sub.add_parser("faces", help="draw and number the detected faces (numbers = index:N of --faces)")
    f.add_argument("image")
    f.add_argument("--out", required=True, help="preview image to write")
    f.add_argument("--json", help="also write boxes, points and scores as JSON")
    f.add_argument("--detector", default="yunet")
    f.add_argument("--det-threshold", type=unit_float, default=None)
    add_detector_backend(f)
    f.add_argument("--order", default="left-right", choices=["left-right", "top-bottom", "size", "score"])
    add_common(f)
    f.set_defaults(func=cmd_faces)


def cmd_faces(args: argparse.Namespace) -> int:
    from ..detection import draw_faces
    from ..io.atomic import atomic_write
    from ..io.images import is_image_path, read_image, write_image
    from ..io.output_guard import is_same_file, probe_writable, refuse_input_as_output

    dev = device(args.device)
    img = read_image(args.image, device=dev)
    out = Path(args.out)
    # outputs checked before detection: never the input photo (even with --overwrite), not each other, writable
    refuse_input_as_output("--out", out, [args.image])
    if not is_image_path(out):
        raise InputError(f"--out {out}: expected an image file name (.png .jpg .webp .bmp .tif)")
    if out.exists() and not args.overwrite:
        raise InputError(f"--out {out}: already exists; pass --overwrite to replace it")
    probe_writable("--out", out)
    if args.json:
        refuse_input_as_output("--json", args.json, [args.image])
        if is_same_file(args.json, out):
            raise InputError(f"--json {args.json}: is the same file as --out {out}; give them different names")
        if Path(args.json).exists() and not args.overwrite:
            raise InputError(f"--json {args.json}: already exists; pass --overwrite to replace it")
        probe_writable("--json", args.json)
    detector = load_detector_cli(args.detector, args.det_threshold, dev, args.detector_backend)
    faces = detector.detect(img.image)
    preview = draw_faces(img.image, faces, order=args.order)
    doc = None
    if args.json:
        from ..detection.select import order_faces

        rank = order_faces(faces, args.order).tolist() if len(faces) else []
        entries = faces.to_json()[0]
        for e, r in zip(entries, rank):
            e["index"] = int(r)
        entries.sort(key=lambda e: e["index"])
        doc = {"image": str(Path(args.image)), "size": list(img.size), "detector": args.detector,
               "order": args.order, "faces": entries}
    new_preview = not out.exists()
    write_image(out, preview, overwrite=args.overwrite)
    if doc is not None:
        try:
            atomic_write(Path(args.json), lambda p: p.write_text(json.dumps(doc, indent=2)),
                         overwrite=args.overwrite)
        except BaseException:
            if new_preview:                  # both files or neither (a preview without its JSON is half a result)
                out.unlink(missing_ok=True)
            raise
    if not args.quiet:
        print(f"{len(faces)} face(s) found in {args.image}; preview written to {out}", file=sys.stderr)
    return 0
