"""SimSwap Load SAM: a Segment Anything checkpoint from models/sams, for the 'sam' and 'sam_parsing' face masks."""
from __future__ import annotations

import logging
import os

from comfy_api.latest import io

from ._common import (
    CATEGORY,
    SAM_FOLDER,
    TORCH_EXTENSIONS,
    ManagedModel,
    _register,
    file_fingerprint,
    folder_paths,
    folder_search_paths,
    list_files,
)
from ._types import Sam
from .search_aliases import search_aliases

#: the widget's single entry when models/sams holds no SAM v1 checkpoint
MISSING_SAM = "(no SAM checkpoint in models/sams)"
_ORDER = {"vit_b": 0, "vit_l": 1, "vit_h": 2}
_logged: set[str] = set()


def register_sam_folder() -> None:
    """Add models/sams to ComfyUI's model folders (paths configured elsewhere are kept first); idempotent (also
    done by ``_common.register_model_folders`` with the other model folders)."""
    if folder_paths is not None:
        _register(SAM_FOLDER, os.path.join(folder_paths.models_dir, SAM_FOLDER), TORCH_EXTENSIONS)


def sam_files() -> list[str]:
    """Options of the sam_name widget: the files of models/sams whose weights ARE a SAM v1 checkpoint (read from the
    header, never by name), vit_b first (fastest), then vit_l, vit_h; SAM 2, HQ-SAM, MobileSAM and others are left
    out. ``[MISSING_SAM]`` when there is none."""
    from simswap_core.models.sniff import Sniffed, sniff_model_file

    register_sam_folder()
    found: list[tuple[str, Sniffed]] = []
    for name in list_files(SAM_FOLDER, TORCH_EXTENSIONS):
        try:
            path = folder_paths.get_full_path(SAM_FOLDER, name) if folder_paths is not None else None
            s = sniff_model_file(path) if path else Sniffed("unknown", error="cannot be resolved")
        except Exception as exc:  # listing must never fail
            s = Sniffed("unknown", error=f"{type(exc).__name__}: {exc}")
        if s.kind == "sam":
            found.append((name, s))
        elif name not in _logged and len(_logged) < 1000:
            _logged.add(name)
            logging.info("SimSwap: sams/%s is not listed by SimSwap Load SAM (%s)", name,
                         s.error[:300] or f"its weights are {s.kind}, not SAM v1")
    found.sort(key=lambda ns: (_ORDER.get(ns[1].detail, 3), ns[0].lower()))
    return [n for n, _ in found] or [MISSING_SAM]


def _sam_path(name: str) -> str:
    """Absolute path of the chosen file; MissingModelError naming the widget, the folders and the official files."""
    from simswap_core.errors import MissingModelError
    from simswap_core.models.catalogue import CATALOGUE

    path = None
    if folder_paths is not None and name and not name.startswith("("):
        path = folder_paths.get_full_path(SAM_FOLDER, name)
    if path is not None:
        return path
    official = ", ".join(f"{e.filename} ({e.urls[0]})" for e in CATALOGUE.values() if e.kind == "sam")
    shown = f"{name!r} not found; " if name and not name.startswith("(") else ""
    raise MissingModelError(f"sam_name: {shown}no SAM checkpoint in the '{SAM_FOLDER}' model folders (searched: "
                            f"{', '.join(folder_search_paths(SAM_FOLDER)) or '(none registered)'}). Put an official "
                            f"Segment Anything file there: {official}; or run `python install.py sam_vit_b`, then "
                            f"refresh the page (R).")


class SimSwapSamLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSamLoader",
            **search_aliases("SimSwapSamLoader"),
            display_name="SimSwap Load SAM",
            category=f"{CATEGORY}/loaders",
            description=("Loads a Segment Anything (SAM v1) checkpoint from models/sams (the official "
                         "sam_vit_b_01ec64.pth, sam_vit_l_0b3195.pth or sam_vit_h_4b8939.pth, the files other packs "
                         "use too) for the 'sam' and 'sam_parsing' face masks: SAM segments each face from its box "
                         "and landmarks, so a hand, a microphone or hair in front of it is not swapped. The "
                         "architecture is read from the weights; unsafe pickles are refused (no code from the file "
                         "runs); no torchvision or segment-anything package is needed. The model is handed to "
                         "ComfyUI's model management. Licence: Apache-2.0."),
            inputs=[
                io.Combo.Input("sam_name", options=sam_files(),
                               tooltip="SAM checkpoint in models/sams; only files whose weights are SAM v1 "
                                       "(vit_b, vit_l, vit_h) are listed, vit_b first (the fastest; vit_h is the "
                                       "largest and most precise)."),
            ],
            outputs=[Sam.Output(display_name="sam",
                                tooltip="The Segment Anything model, for the 'sam' / 'sam_parsing' masks of the swap "
                                        "and Face Mask nodes (one image embedding per frame, shared by its faces).")],
        )

    @classmethod
    def validate_inputs(cls, sam_name: str | None) -> bool | str:
        if sam_name is None or (sam_name in sam_files() and not sam_name.startswith("(")):
            return True
        try:
            path = _sam_path(sam_name)
        except Exception as exc:  # MissingModelError
            return str(exc)
        from simswap_core.models.sniff import sniff_model_file

        found = sniff_model_file(path)
        what = found.error[:300] if found.kind == "unknown" else f"its header says it is a {found.kind} model"
        return f"sam_name: {sam_name!r} not in list: {what}; expected a SAM v1 checkpoint (vit_b, vit_l, vit_h)."

    @classmethod
    def fingerprint_inputs(cls, sam_name: str) -> str | float:
        try:
            return file_fingerprint(_sam_path(sam_name))
        except Exception:
            return float("nan")

    @classmethod
    def execute(cls, sam_name: str) -> io.NodeOutput:
        from simswap_core.models.loaders import load_sam

        path = _sam_path(sam_name)
        model = load_sam(path)
        return io.NodeOutput(ManagedModel(model, kind="sam", name=sam_name, path=path, arch=model.arch))


NODES = [SimSwapSamLoader]
