"""Identity nodes: extract an identity from source photos, save it, load it."""
from __future__ import annotations

import os
import re

from ._common import (CATEGORY, IDENTITY_SUBFOLDER, SIMSWAP_FOLDER, compute_device, file_fingerprint,
                      folder_search_paths, full_path, image_to_nchw, list_files, load_managed,
                      soft_empty_cache)
from .selection import ORDERS, make_selection

NO_IDENTITIES = "(no identities saved yet)"


def make_swapper(generator, arcface, detector, parser=None):
    """A FaceSwapper over models managed by ComfyUI (loaded onto the compute device now)."""
    from simswap_core.swap import FaceSwapper

    g, a, p = load_managed(generator, arcface, parser)
    return FaceSwapper(g, a, detector, parser=p, device=compute_device(), crop_size=generator.info.get("crop_size"))


class SimSwapExtractIdentity:
    DESCRIPTION = ("Builds the identity to swap in (SIMSWAP_IDENTITY) from one or more source photos: in each "
                   "image one face is chosen, aligned like the generator expects and encoded by ArcFace; several "
                   "images are combined (mean, median, or weighted by detection score). Photos of different "
                   "sizes can be batched with core 'Batch Images'.")
    CATEGORY = f"{CATEGORY}/identity"
    FUNCTION = "extract"
    RETURN_TYPES = ("SIMSWAP_IDENTITY",)
    RETURN_NAMES = ("identity",)
    OUTPUT_TOOLTIPS = ("The source identity: unit-norm latent for the generator + raw ArcFace embedding.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "source_images": ("IMAGE", {"tooltip": "One or more photos of the person whose face is swapped in."}),
            "generator": ("SIMSWAP_GENERATOR", {
                "tooltip": "The generator the identity is for: its crop size (224/512) sets the source alignment."}),
            "arcface": ("SIMSWAP_ARCFACE", {"tooltip": "SimSwap's ArcFace identity encoder."}),
            "detector": ("SIMSWAP_DETECTOR", {"tooltip": "Face detector used on the source photos."}),
            "face": (["largest", "best", "index", "all"], {
                "default": "largest",
                "tooltip": "Which face of each photo: largest box, best detection score, the face number "
                           "'face_index' (see Detect Faces preview), or all faces of every photo."}),
            "face_index": ("INT", {"default": 0, "min": 0, "max": 99,
                                   "tooltip": "Face number used when face = index (numbered in 'order')."}),
            "order": (ORDERS, {"default": "left-right",
                               "tooltip": "How faces are numbered for face = index."}),
            "combine": (["mean", "median", "weighted"], {
                "default": "mean",
                "tooltip": "How several faces become one identity: mean, median (robust to an odd photo), or "
                           "mean weighted by detection score."}),
            "if_no_face": (["error", "skip"], {
                "default": "error",
                "tooltip": "A photo without a usable face: stop with an error, or skip it (an error is still "
                           "raised when no photo has a face)."}),
        }}

    def extract(self, source_images, generator, arcface, detector, face, face_index, order, combine, if_no_face):
        images = image_to_nchw(source_images, "source_images")
        selection = make_selection(face, str(face_index), order)
        swapper = make_swapper(generator, arcface, detector)
        identity = swapper.extract_identity(images.to(swapper.device), select=selection, combine=combine,
                                            if_no_face=if_no_face)
        soft_empty_cache()
        return (identity,)


def _identity_dir() -> str:
    paths = folder_search_paths(SIMSWAP_FOLDER)
    if not paths:
        from simswap_core.errors import MissingModelError

        raise MissingModelError("no 'simswap' model folder is registered in ComfyUI")
    # the first registered simswap folder (extra_model_paths.yaml entries come before models/simswap)
    return os.path.join(paths[0], IDENTITY_SUBFOLDER)


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")


class SimSwapSaveIdentity:
    DESCRIPTION = ("Saves an identity as models/simswap/identities/<name>.safetensors (latent, embedding, number "
                   "of sources, metadata) so it can be reused with 'SimSwap Load Identity'. Existing files are "
                   "never overwritten unless if_exists = overwrite.")
    CATEGORY = f"{CATEGORY}/identity"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("SIMSWAP_IDENTITY", "STRING")
    RETURN_NAMES = ("identity", "file")
    OUTPUT_TOOLTIPS = ("The same identity, passed through.", "The file name written, relative to identities/.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "identity": ("SIMSWAP_IDENTITY", {"tooltip": "The identity to save."}),
            "name": ("STRING", {"default": "identity",
                                "tooltip": "File name without extension (letters, digits, space, _ . -)."}),
            "if_exists": (["increment", "overwrite", "error"], {
                "default": "increment",
                "tooltip": "When the file exists: write name_001, name_002...; replace it; or stop with an error."}),
        }}

    def save(self, identity, name, if_exists):
        from simswap_core.errors import InputError
        from simswap_core.identity import save_identity

        name = name.strip()
        if name.lower().endswith(".safetensors"):
            name = name[: -len(".safetensors")]
        if not _NAME_RE.match(name) or ".." in name:
            raise InputError(f"name: expected a plain file name (letters, digits, space, _ . -; no folders), "
                             f"got {name!r}")
        folder = _identity_dir()
        os.makedirs(folder, exist_ok=True)
        filename = f"{name}.safetensors"
        if os.path.exists(os.path.join(folder, filename)) and if_exists == "increment":
            i = 1
            while os.path.exists(os.path.join(folder, f"{name}_{i:03d}.safetensors")):
                i += 1
            filename = f"{name}_{i:03d}.safetensors"
        path = os.path.join(folder, filename)
        if os.path.exists(path) and if_exists == "error":
            raise InputError(f"name: {path} already exists; choose another name or set if_exists to "
                             f"'increment' or 'overwrite'")
        save_identity(identity, path, overwrite=(if_exists == "overwrite"))
        return {"ui": {"text": [filename]}, "result": (identity, filename)}


class SimSwapLoadIdentity:
    DESCRIPTION = "Loads an identity saved by 'SimSwap Save Identity' from models/simswap/identities/."
    CATEGORY = f"{CATEGORY}/identity"
    FUNCTION = "load"
    RETURN_TYPES = ("SIMSWAP_IDENTITY",)
    RETURN_NAMES = ("identity",)
    OUTPUT_TOOLTIPS = ("The saved identity.",)

    @classmethod
    def INPUT_TYPES(cls):
        names = list_files(SIMSWAP_FOLDER, {".safetensors"}, only_prefix=IDENTITY_SUBFOLDER) or [NO_IDENTITIES]
        return {"required": {
            "identity_name": (names, {"tooltip": "A .safetensors identity in models/simswap/identities "
                                                 "(refresh the page after saving a new one)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, identity_name):
        try:
            return file_fingerprint(full_path(SIMSWAP_FOLDER, f"{IDENTITY_SUBFOLDER}/{identity_name}",
                                              "identity_name"))
        except Exception:
            return float("nan")

    def load(self, identity_name):
        from simswap_core.identity import load_identity

        if identity_name == NO_IDENTITIES:
            from simswap_core.errors import MissingModelError

            raise MissingModelError("identity_name: no identity saved yet; save one with 'SimSwap Save Identity'")
        path = full_path(SIMSWAP_FOLDER, f"{IDENTITY_SUBFOLDER}/{identity_name}", "identity_name")
        return (load_identity(path),)


NODE_CLASS_MAPPINGS = {
    "SimSwapExtractIdentity": SimSwapExtractIdentity,
    "SimSwapSaveIdentity": SimSwapSaveIdentity,
    "SimSwapLoadIdentity": SimSwapLoadIdentity,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SimSwapExtractIdentity": "SimSwap Extract Identity",
    "SimSwapSaveIdentity": "SimSwap Save Identity",
    "SimSwapLoadIdentity": "SimSwap Load Identity",
}
