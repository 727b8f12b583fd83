"""``simswap inspect FILE``: print the synthetic-media label of an image or video (XMP, text fields, container
tags, C2PA manifest). Exit status 0 when the file is labelled, 1 when it carries no label."""
from __future__ import annotations

import argparse
import json
from typing import Any

EXIT_UNLABELLED = 1


def add_parser(sub: Any) -> None:
    """Register ``inspect`` and its flags on the subparsers ``sub``."""
    s = sub.add_parser(
        "inspect", help="print the synthetic-media label (provenance) of an image or video",
        description="Read the machine-readable synthetic-media label of an output back: the IPTC digital source "
                    "type in XMP, the text fields a viewer shows (PNG text, EXIF, container comment), the models "
                    "and their sha256, and the C2PA manifest with its validation state when the file has one "
                    "(needs c2pa-python). Exit status 0 when the file is labelled, 1 when it is not.")
    s.add_argument("file", help="image (.png .jpg .webp .tif .gif) or video (.mp4 .mov .mkv .webm ...)")
    s.add_argument("--json", action="store_true", help="print the label as JSON")
    s.set_defaults(func=cmd_inspect)


def report_dict(report: Any) -> dict[str, Any]:
    """A ``ProvenanceReport`` as JSON-ready data."""
    c2pa = report.c2pa
    return {"file": str(report.path), "labelled": report.labelled,
            "label": report.label.as_dict() if report.label is not None else None,
            "found_in": list(report.carriers), "texts": dict(report.texts),
            "c2pa": None if c2pa is None else {
                "validation_state": c2pa.get("validation_state"),
                "validation_status": c2pa.get("validation_status"),
                "signature": (c2pa.get("active_manifest") or {}).get("signature_info"),
                "assertions": [a.get("label") for a in (c2pa.get("active_manifest") or {}).get("assertions", [])]},
            "notes": list(report.notes)}


def report_lines(report: Any) -> list[str]:
    """The human-readable lines of a ``ProvenanceReport``."""
    if not report.labelled:
        lines = [f"{report.path}: no synthetic-media label found (no XMP digital source type, no C2PA manifest)"]
        lines += [f"  {name}: {text}" for name, text in report.texts.items()]
        return lines + [f"  note: {n}" for n in report.notes]
    lines = [f"{report.path}: labelled as AI-generated (synthetic media)"]
    label = report.label
    if label is not None:
        lines += [f"  digital source type: {label.digital_source_type}",
                  f"  action:              {label.action}",
                  f"  generator:           {label.generator} {label.version}".rstrip(),
                  f"  created:             {label.created}"]
        if label.models:
            for i, m in enumerate(label.models):
                lines.append(f"  {'models:' if i == 0 else '':<21}{m.role}: {m.name} sha256 {m.sha256}")
        else:
            lines.append("  models:              not recorded")
    lines.append(f"  found in:            {', '.join(report.carriers)}")
    c2pa = report.c2pa
    if c2pa is not None:
        sig = (c2pa.get("active_manifest") or {}).get("signature_info") or {}
        lines.append(f"  C2PA:                signed by {sig.get('common_name') or '?'} (issuer "
                     f"{sig.get('issuer') or '?'}, {sig.get('alg') or '?'}); validation "
                     f"{c2pa.get('validation_state') or 'not done'}")
        codes = [s.get("code") for s in c2pa.get("validation_status") or [] if isinstance(s, dict)]
        if codes:
            lines.append(f"  {'':<21}validation notes: {', '.join(str(c) for c in codes)}")
    else:
        lines.append("  C2PA:                none")
    return lines + [f"  note: {n}" for n in report.notes]


def cmd_inspect(args: argparse.Namespace) -> int:
    from ..provenance.reader import read_provenance

    report = read_provenance(args.file)
    if args.json:
        print(json.dumps(report_dict(report), indent=2))
    else:
        print("\n".join(report_lines(report)))
    return 0 if report.labelled else EXIT_UNLABELLED
