"""Gender model loader: insightface's genderage.onnx (gender and age of each detected face) for the Swap node's
gender filter. Files are recognised by what they are (a 96x96 gender/age ONNX model), not by their name."""
from __future__ import annotations

import os

from comfy_api.latest import io

from . import _types as t
from ._common import (
    CATEGORY,
    INSIGHTFACE_FOLDER,
    ONNX_EXTENSIONS,
    compute_device,
    file_fingerprint,
    folder_search_paths,
    list_files,
    soft_empty_cache,
)
from .search_aliases import search_aliases

NO_GENDER_MODEL = "(no gender model in models/insightface)"
GENDER_LICENCE = ("insightface's pretrained models (genderage.onnx of the buffalo_l pack) are for non-commercial "
                  "research use only.")


def _full(name: str) -> str | None:
    from ._common import folder_paths

    if folder_paths is None or not name or name.startswith("("):
        return None
    return folder_paths.get_full_path(INSIGHTFACE_FOLDER, name)


def _is_genderage(path: str) -> bool:
    """What the file is, from its ONNX header (cached by path, size and mtime)."""
    try:
        from simswap_core.models.sniff import sniff_model_file
    except ImportError:  # pragma: no cover - the sniffer ships with the package
        from simswap_core.detection.genderage import looks_like_genderage

        return os.path.getsize(path) < (64 << 20) and looks_like_genderage(path)
    return sniff_model_file(path).kind == "genderage"


def gender_model_files() -> list[str]:
    """The genderage-like .onnx files of models/insightface (any subfolder), genderage.onnx names first."""
    names = []
    for name in list_files(INSIGHTFACE_FOLDER, ONNX_EXTENSIONS):
        path = _full(name)
        if path and _is_genderage(path):
            names.append(name)
    named = [n for n in names if os.path.basename(n).lower() == "genderage.onnx"]
    return named + [n for n in names if n not in named] or [NO_GENDER_MODEL]


def _gender_path(name: str) -> str:
    from simswap_core.errors import MissingModelError

    path = _full(name)
    if path is None:
        raise MissingModelError(f"gender_model: {name!r:.100} not found; put genderage.onnx (insightface buffalo_l "
                                f"pack, non-commercial licence) into {folder_search_paths(INSIGHTFACE_FOLDER)} "
                                f"(e.g. models/insightface/models/buffalo_l/genderage.onnx) and press R")
    return path


class SimSwapLoadGenderModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapLoadGenderModel",
            **search_aliases("SimSwapLoadGenderModel"),
            display_name="SimSwap Load Gender Model",
            category=f"{CATEGORY}/loaders",
            description=("Loads a gender/age model (insightface genderage.onnx, e.g. "
                         "models/insightface/models/buffalo_l/genderage.onnx, the file ReActor's gender detection "
                         "uses) for the Swap node's gender filter; runs as a torch module (no onnxruntime). "
                         + GENDER_LICENCE),
            inputs=[
                io.Combo.Input("gender_model", options=gender_model_files(),
                               tooltip="A gender/age .onnx model in models/insightface (recognised by its inputs "
                                       "and outputs: a 96x96 face in, two gender scores and age out). "
                                       + GENDER_LICENCE),
            ],
            outputs=[t.GenderModel.Output(display_name="gender_model",
                                          tooltip="Gender (female/male) and age of every detected face; connect "
                                                  "it to the Swap node to swap only faces of one gender.")],
        )

    @classmethod
    def validate_inputs(cls, gender_model: str | None) -> bool | str:
        return t.combo_errors(cls, gender_model=gender_model)

    @classmethod
    def fingerprint_inputs(cls, gender_model: str) -> str | float:
        try:
            return file_fingerprint(_gender_path(gender_model))
        except Exception:
            return float("nan")

    @classmethod
    def execute(cls, gender_model: str) -> io.NodeOutput:
        from simswap_core.detection.genderage import load_genderage

        if gender_model == NO_GENDER_MODEL:
            from simswap_core.errors import MissingModelError

            raise MissingModelError(f"gender_model: no gender model found; put genderage.onnx (insightface "
                                    f"buffalo_l pack; {GENDER_LICENCE}) into "
                                    f"{folder_search_paths(INSIGHTFACE_FOLDER)} and press R")
        estimator = load_genderage(_gender_path(gender_model), device=compute_device())
        soft_empty_cache()
        return io.NodeOutput(estimator, ui={"text": [f"{gender_model}: {estimator.input_size}px input, "
                                                      f"{estimator.providers[0]}"]})


NODES = [SimSwapLoadGenderModel]
