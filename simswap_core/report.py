"""The identity-score report of a swap: JSON for tools, a small self-contained HTML page for people (the source,
original and swapped crops side by side as inline base64 PNGs), and a preview image for the node.

What a report holds: the inputs' names, the scorer and its threshold (``scoring``), per face the SFace cosine to
the source and to the original target face with a verdict, the means, and the per-photo quality of the source
identity (``face_quality``) when known. Never an embedding: a report carries no biometric template.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import InputError
from .io.atomic import atomic_write, refuse_existing
from .scoring import IdentityScore

__all__ = ["REPORT_VERSION", "build_report", "preview_image", "report_paths", "write_report"]

REPORT_VERSION = "1"
_VERDICT_COLOURS = {"source": "#1b7f3b", "both": "#9a6b00", "target": "#b3261e", "neither": "#555"}


def build_report(score: IdentityScore, *, inputs: dict[str, Any] | None = None,
                 source_quality: list[dict] | None = None, notes: list[str] | None = None) -> dict[str, Any]:
    """The JSON-ready report: ``{"format": "simswap-identity-report", "version", "inputs", "scorer",
    "threshold", "summary", "faces": [...], "source_quality": [...], "notes": [...]}``."""
    body = score.to_dict()
    return {"format": "simswap-identity-report", "version": REPORT_VERSION,
            "inputs": {k: str(v) for k, v in (inputs or {}).items()}, **body,
            "source_quality": list(source_quality or []), "notes": list(notes or [])}


def _png_data_uri(crop: Tensor) -> str:
    """[3,S,S] RGB [0,1] -> ``data:image/png;base64,...``."""
    from PIL import Image

    arr = (crop.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(report: dict[str, Any], score: IdentityScore, max_faces: int = 200) -> str:
    """A self-contained HTML page (no external resources) of ``report`` with the crops of ``score``."""
    esc = html.escape
    s = report["summary"]
    rows = []
    source_img = _png_data_uri(score.source_crops[0]) if score.source_crops.shape[0] else ""
    for k, rec in enumerate(report["faces"][:max_faces]):
        target = _png_data_uri(score.target_crops[k]) if score.target_crops is not None else ""
        cells = [f"<td>{rec['frame']}</td><td>{rec['face']}</td>",
                 f"<td><img src='{source_img}' alt='source'></td>" if source_img else "<td>-</td>",
                 f"<td><img src='{target}' alt='original'></td>" if target else "<td>-</td>",
                 f"<td><img src='{_png_data_uri(score.result_crops[k])}' alt='result'></td>",
                 f"<td>{rec['to_source']:.3f}</td>",
                 f"<td>{'-' if rec['to_target'] is None else format(rec['to_target'], '.3f')}</td>",
                 f"<td style='color:{_VERDICT_COLOURS.get(rec['verdict'], '#000')}'><b>{esc(rec['verdict'])}</b>"
                 "</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = len(report["faces"]) - max_faces
    if more > 0:
        rows.append(f"<tr><td colspan='8'>... {more} more face(s) in the JSON report</td></tr>")
    quality = ""
    if report.get("source_quality"):
        qrows = "".join(
            f"<tr><td>{esc(str(r.get('name', r['image'])))}</td><td>{r['quality']:.2f}</td>"
            f"<td>{r['detection']:.2f}</td><td>{r['size']:.2f}</td><td>{r['sharpness']:.2f}</td>"
            f"<td>{r['frontal']:.2f}</td><td>{'-' if r.get('weight') is None else format(r['weight'], '.2f')}</td>"
            "</tr>" for r in report["source_quality"])
        quality = ("<h2>Source photos</h2><table><tr><th>photo</th><th>quality</th><th>detection</th><th>size</th>"
                   f"<th>sharpness</th><th>frontal</th><th>weight</th></tr>{qrows}</table>")
    inputs = "".join(f"<li>{esc(k)}: {esc(v)}</li>" for k, v in report["inputs"].items())
    notes = "".join(f"<li>{esc(n)}</li>" for n in report.get("notes", []))
    mean_t = "-" if s["mean_to_target"] is None else f"{s['mean_to_target']:.3f}"
    mean_s = "-" if s["mean_to_source"] is None else f"{s['mean_to_source']:.3f}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SimSwap identity report</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:center}}img{{width:112px;height:112px}}</style></head>
<body><h1>SimSwap identity report</h1>
<p>{esc(report['scorer'])}. Same person at cosine &ge; {report['threshold']}.
Mean to the source: <b>{mean_s}</b>, to the original faces: <b>{mean_t}</b>;
{s['faces_reading_as_source']} of {s['faces']} face(s) read as the source.</p>
<ul>{inputs}</ul>
<table><tr><th>frame</th><th>face</th><th>source</th><th>original</th><th>result</th><th>to source</th>
<th>to original</th><th>verdict</th></tr>{''.join(rows)}</table>
{quality}<ul>{notes}</ul></body></html>
"""


def report_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(JSON path, HTML path) of ``--report PATH``: ``x.json`` -> (x.json, x.html); ``x.html`` -> (x.json,
    x.html); another or no suffix -> PATH + .json / .html."""
    p = Path(path)
    if p.suffix.lower() in (".json", ".html", ".htm"):
        return p.with_suffix(".json"), p.with_suffix(".html")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".html")


def write_report(path: str | os.PathLike, score: IdentityScore, *, inputs: dict[str, Any] | None = None,
                 source_quality: list[dict] | None = None, notes: list[str] | None = None,
                 overwrite: bool = False) -> tuple[Path, Path]:
    """Write the JSON report and the HTML page (:func:`report_paths`), each atomically; returns both paths.
    An existing file is refused (InputError) unless ``overwrite``."""
    json_path, html_path = report_paths(path)
    for p in (json_path, html_path):
        if p.is_dir():
            raise InputError(f"--report {path}: {p} is a folder; expected a file name like report.json")
        refuse_existing(p, overwrite=overwrite)
    report = build_report(score, inputs=inputs, source_quality=source_quality, notes=notes)
    page = render_html(report, score)
    atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(report, indent=2), encoding="utf-8"),
                 overwrite=overwrite)
    atomic_write(html_path, lambda tmp: tmp.write_text(page, encoding="utf-8"), overwrite=overwrite)
    return json_path, html_path


def preview_image(score: IdentityScore, max_faces: int = 32) -> Tensor:
    """[1,3,H,W] RGB [0,1]: one row per face (source | original | result crops, 112 px each) with the scores
    written beside it (white text on dark grey); an empty score gives a small grey image with the reason."""
    from PIL import Image, ImageDraw

    n = min(len(score), max_faces)
    tile, text_w = 112, 200
    cols = 3 if score.target_crops is not None else 2
    height = max(n, 1) * tile
    canvas = Image.new("RGB", (cols * tile + text_w, height), (40, 40, 40))
    draw = ImageDraw.Draw(canvas)
    if n == 0:
        draw.text((8, 8), "no face found: nothing to score", fill=(255, 255, 255))
    records = score.to_dict()["faces"]

    def paste(crop: Tensor, x: int, y: int) -> None:
        arr = (crop.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        canvas.paste(Image.fromarray(arr), (x, y))

    for k in range(n):
        y = k * tile
        if score.source_crops.shape[0]:
            paste(score.source_crops[0], 0, y)
        if score.target_crops is not None:
            paste(score.target_crops[k], tile, y)
        paste(score.result_crops[k], (cols - 1) * tile, y)
        rec = records[k]
        lines = [f"frame {rec['frame']} face {rec['face']}", f"to source {rec['to_source']:.3f}"]
        if rec["to_target"] is not None:
            lines.append(f"to original {rec['to_target']:.3f}")
        lines.append(rec["verdict"])
        draw.multiline_text((cols * tile + 8, y + 8), "\n".join(lines), fill=(255, 255, 255), spacing=6)
    arr = torch.frombuffer(bytearray(canvas.tobytes()), dtype=torch.uint8).view(canvas.height, canvas.width, 3)
    return arr.permute(2, 0, 1)[None].float() / 255.0


def scoring_sink(sink: Any, detector: Any, source_images: list[Tensor], *, every: int = 1, max_faces: int = 256,
                 device: torch.device | str | None = None, backend: str = "torch") -> Any:
    """``sink`` wrapped in a :class:`scoring.ScoringSink` that scores the swapped faces of every ``every``-th
    frame with SFace against the largest face of each of ``source_images`` (list of [1,3,H,W] RGB [0,1])."""
    from .scoring import ScoringSink, SFaceEmbedder, source_reference

    embedder = SFaceEmbedder(backend=backend, device=device)
    ref = source_reference(embedder, detector, source_images)
    return ScoringSink(sink, embedder, ref, every=every, max_faces=max_faces)


def finish_report(path: str | os.PathLike, sink: Any, *, inputs: dict[str, Any], source_quality: list[dict],
                  source_names: list[str] | None = None, overwrite: bool = False) -> list[str]:
    """Write the report of a finished run whose sink is a ScoringSink; returns the lines to show the user."""
    from .scoring import IdentityScore

    score = sink.score()
    notes = []
    if score is None:
        score = IdentityScore(torch.zeros(0), None, torch.zeros(0, dtype=torch.int64),
                              torch.zeros(0, dtype=torch.int64), 0, torch.zeros(0, 3, 112, 112), None,
                              sink.source.crops)
        notes.append("no swapped face was scored (no face swapped in the scored frames)")
    if sink.every > 1:
        notes.append(f"every {sink.every}th frame scored")
    if sink.scored >= sink.max_faces:
        notes.append(f"scoring stopped after {sink.max_faces} faces")
    quality = [dict(r, name=source_names[r["image"]]) if source_names and 0 <= r["image"] < len(source_names)
               else r for r in source_quality]
    json_path, html_path = write_report(path, score, inputs=inputs, source_quality=quality, notes=notes,
                                        overwrite=overwrite)
    s = score.summary()
    if not s["faces"]:
        head = "identity report: no swapped face scored"
    else:
        head = (f"identity report (SFace, same person >= {score.threshold}): {s['faces_reading_as_source']} of "
                f"{s['faces']} face(s) read as the source; mean to source {s['mean_to_source']:.3f}")
        if s["mean_to_target"] is not None:
            head += f", to the original faces {s['mean_to_target']:.3f}"
    return [head, f"wrote {json_path} and {html_path}"]
