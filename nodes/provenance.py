"""SimSwap Save Image (labelled): saves an IMAGE batch into ComfyUI's output folder with the synthetic-media label
(XMP digital source type, PNG text / EXIF, C2PA when a signing key is configured), like core Save Image otherwise.

``node_label`` is also how SimSwap Swap Video labels its VIDEO output (container tags). The label records the
models connected (file name + sha256), never the source person's identity.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comfy_api.latest import io

from . import _types as t
from ._common import CATEGORY, folder_paths, image_to_nchw
from .search_aliases import search_aliases

__all__ = ["NODES", "SimSwapSaveImageLabelled", "node_label"]

DISPLAY_NAME = "SimSwap Save Image (labelled)"
FORMATS = ["png", "jpg", "webp"]


def node_label(**models: Any) -> Any:
    """The synthetic-media label of a node's output: role=model (a ManagedModel with ``.path``, a detector with
    ``.model_path``, or None) -> their files and sha256 (a model without a file on disk is left out)."""
    from simswap_core.provenance import make_label

    paths: dict[str, str | None] = {}
    for role, model in models.items():
        path = getattr(model, "path", None) or getattr(model, "model_path", None)
        paths[role] = str(path) if path and Path(str(path)).is_file() else None
    return make_label(**paths)


def label_text(label: Any) -> str:
    """One line about the label for the node's text (or that labelling is off)."""
    from simswap_core.provenance import OFF_MESSAGE, labelling_enabled

    if not labelling_enabled():
        return f"NOT labelled: {OFF_MESSAGE} (SIMSWAP_LABEL=0)"
    models = ", ".join(f"{m.role} {m.name} ({m.sha256[:12]})" for m in label.models) or "none recorded"
    return f"labelled: {label.text()}; models: {models}"


def workflow_text(hidden: Any) -> dict[str, str] | None:
    """ComfyUI's "prompt" and workflow text chunks of a PNG, as core Save Image writes them (drag the file back into
    ComfyUI to load its workflow); None with ``--disable-metadata`` or outside a run."""
    try:
        from comfy.cli_args import args
    except ImportError:
        return None
    if args.disable_metadata or hidden is None:
        return None
    chunks: dict[str, str] = {}
    if getattr(hidden, "prompt", None):
        chunks["prompt"] = json.dumps(hidden.prompt)
    for key, value in (getattr(hidden, "extra_pnginfo", None) or {}).items():
        chunks[str(key)] = json.dumps(value)
    return chunks or None


class SimSwapSaveImageLabelled(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSaveImageLabelled",
            **search_aliases("SimSwapSaveImageLabelled"),
            display_name=DISPLAY_NAME,
            category=f"{CATEGORY}/utility",
            description=("Saves images into ComfyUI's output folder (like core Save Image) with a machine-readable "
                         "synthetic-media label, as the EU AI Act (Article 50) asks of AI-generated media: the IPTC "
                         "digital source type in XMP, a PNG text / EXIF description a viewer shows, the models used "
                         "with their sha256 (connect them), and a C2PA manifest when SIMSWAP_C2PA_CERT / "
                         "SIMSWAP_C2PA_KEY name a signing certificate and key. Never the source person's identity. "
                         "'simswap inspect FILE' reads the label back. SIMSWAP_LABEL=0 turns labelling off (the "
                         "node then says so); labelling is then your legal responsibility."),
            inputs=[
                io.Image.Input("images", tooltip="The swapped images to save (one file each)."),
                io.String.Input("filename_prefix", default="SimSwap/swap",
                                tooltip="File name prefix, with subfolders if wanted (as core Save Image)."),
                io.Combo.Input("format", options=FORMATS, default="png",
                               tooltip="png (lossless; XMP + tEXt + EXIF, and the workflow as core Save Image "
                                       "writes it), jpg or webp (EXIF + XMP; no workflow)."),
                io.Int.Input("quality", default=95, min=1, max=100,
                             tooltip="JPEG / WebP quality (not used for png)."),
                t.Generator.Input("generator", optional=True,
                                  tooltip="The generator that made the images: its file and sha256 go in the label."),
                t.Detector.Input("detector", optional=True, tooltip="The face detector used (recorded in the label)."),
                t.ArcFace.Input("arcface", optional=True, tooltip="The ArcFace encoder used (recorded in the label)."),
                t.Parser.Input("parser", optional=True, tooltip="The face parser used (recorded in the label)."),
            ],
            outputs=[],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, format: str | None = None) -> bool | str:
        return t.combo_errors(cls, format=format)

    @classmethod
    def execute(cls, images: Any, filename_prefix: str = "SimSwap/swap", format: str = "png", quality: int = 95,
                generator: Any = None, detector: Any = None, arcface: Any = None,
                parser: Any = None) -> io.NodeOutput:
        from simswap_core.checks import check_integer
        from simswap_core.errors import InputError
        from simswap_core.io.images import write_image

        if format not in FORMATS:
            raise InputError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
        quality = check_integer(quality, "quality", low=1, high=100)
        frames = image_to_nchw(images, "images")
        if folder_paths is None:
            raise InputError(f"{DISPLAY_NAME}: runs inside ComfyUI only (its output folder)")
        height, width = int(frames.shape[-2]), int(frames.shape[-1])
        folder, name, counter, subfolder, _prefix = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), width, height)
        label = node_label(generator=generator, arcface=arcface, detector=detector, parser=parser)
        text_chunks = workflow_text(cls.hidden) if format == "png" else None
        saved = []
        for i in range(int(frames.shape[0])):
            file = f"{name}_{counter:05}_.{format}"
            write_image(Path(folder) / file, frames[i:i + 1], label=label, quality=quality, png_text=text_chunks)
            saved.append({"filename": file, "subfolder": subfolder, "type": "output"})
            counter += 1
        text = f"saved {len(saved)} image(s); {label_text(label)}"
        return io.NodeOutput(ui={"images": saved, "text": [text]})


NODES = [SimSwapSaveImageLabelled]
