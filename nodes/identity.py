"""Identity nodes: extract an identity from source photos, save it, load it."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from comfy_api.latest import io

from . import _types as t
from ._common import (
    CATEGORY,
    IDENTITY_SUBFOLDER,
    SIMSWAP_FOLDER,
    compute_device,
    file_fingerprint,
    folder_search_paths,
    image_to_nchw,
    list_files,
    load_managed,
    soft_empty_cache,
)
from .selection import ORDERS, make_selection

if TYPE_CHECKING:  # simswap_core is imported where it is used
    import torch

    from simswap_core.detection import FaceDetector
    from simswap_core.identity import Identity

    from ._common import ManagedModel

NO_IDENTITIES = "(no identities saved yet)"
CROP_SIZES = ["auto", "224", "512"]
DEFAULT_CROP_SIZE = 224  # crop_size = auto without a generator: the official 224 model


def identity_crop_size(crop_size: str | None, generator: ManagedModel | None = None) -> int:
    """The crop size to align source faces at: a number chosen in the widget, else (auto) the connected
    generator's crop size, read from the loader's record (the generator is NOT loaded onto the GPU), else 224."""
    if crop_size not in (None, "auto"):
        return int(crop_size)
    if generator is not None:
        return int(generator.info.get("crop_size") or DEFAULT_CROP_SIZE)
    return DEFAULT_CROP_SIZE


class SimSwapExtractIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapExtractIdentity",
            display_name="SimSwap Extract Identity",
            category=f"{CATEGORY}/identity",
            description=("Builds the identity to swap in (SIMSWAP_IDENTITY) from one or more source photos: in each "
                         "image one face is chosen, aligned like the generator expects and encoded by ArcFace; "
                         "several images are combined (mean, median, or weighted by detection score). Photos of "
                         "different sizes can be batched with core 'Batch Images'."),
            inputs=[
                io.Image.Input("source_images",
                               tooltip="One or more photos of the person whose face is swapped in."),
                t.Generator.Input("generator", optional=True,
                                  tooltip="Optional: the generator the identity is for; with crop_size = auto its "
                                          "crop size (224/512) sets the source alignment (it is not loaded for "
                                          "this)."),
                t.ArcFace.Input("arcface", tooltip="SimSwap's ArcFace identity encoder."),
                t.Detector.Input("detector", tooltip="Face detector used on the source photos."),
                io.Combo.Input("face", options=["largest", "best", "index", "all"], default="largest",
                               tooltip="Which face of each photo: largest box, best detection score, the face number "
                                       "'face_index' (see Detect Faces preview), or all faces of every photo."),
                io.Int.Input("face_index", default=0, min=0, max=99,
                             tooltip="Face number used when face = index (numbered in 'order')."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="How faces are numbered for face = index."),
                io.Combo.Input("combine", options=["mean", "median", "weighted"], default="mean",
                               tooltip="How several faces become one identity: mean, median (robust to an odd "
                                       "photo), or mean weighted by detection score."),
                io.Combo.Input("if_no_face", options=["error", "skip"], default="error",
                               tooltip="A photo without a usable face: stop with an error, or skip it (an error is "
                                       "still raised when no photo has a face)."),
                io.Combo.Input("crop_size", options=CROP_SIZES, default="auto", optional=True,
                               tooltip="Aligned source face size: 224 (official 224 model, pose templates) or 512 "
                                       "(512 model, FFHQ template). auto: the connected generator's crop size, "
                                       "else 224."),
            ],
            outputs=[t.Identity.Output(display_name="identity",
                                       tooltip="The source identity: unit-norm latent for the generator + raw "
                                               "ArcFace embedding.")],
        )

    @classmethod
    def validate_inputs(cls, face: str | None, order: str | None, combine: str | None, if_no_face: str | None,
                        crop_size: str | None = None) -> bool | str:
        return t.combo_errors(cls, face=face, order=order, combine=combine, if_no_face=if_no_face,
                              crop_size=crop_size)

    @classmethod
    def execute(cls, source_images: torch.Tensor, arcface: ManagedModel, detector: FaceDetector, face: str,
                face_index: str, order: str, combine: str, if_no_face: str, generator: ManagedModel | None = None,
                crop_size: str = "auto") -> io.NodeOutput:
        from simswap_core.identity import extract_identity

        images = image_to_nchw(source_images, "source_images")
        selection = make_selection(face, str(face_index), order)
        (encoder,) = load_managed(arcface)
        identity = extract_identity(encoder, detector, images, crop_size=identity_crop_size(crop_size, generator),
                                    select=selection, combine=combine, if_no_face=if_no_face,
                                    device=compute_device())
        soft_empty_cache()
        return io.NodeOutput(identity)


def _identity_dir() -> str:
    paths = folder_search_paths(SIMSWAP_FOLDER)
    if not paths:
        from simswap_core.errors import MissingModelError

        raise MissingModelError("no 'simswap' model folder is registered in ComfyUI")
    # the first registered simswap folder (extra_model_paths.yaml entries come before models/simswap)
    return os.path.join(paths[0], IDENTITY_SUBFOLDER)


def _identity_file(name: str, if_exists: str) -> str:
    """Path of the identity file to write for ``name`` (confined to the identities folder by
    ``simswap_core.identity.identity_file``) and the if_exists policy (numbered sibling, same file, or an error
    when it exists)."""
    from simswap_core.errors import InputError
    from simswap_core.identity import identity_file

    if not isinstance(name, str) or "/" in name:
        raise InputError(f"name: expected a plain file name (letters, digits, space, _ . -; no folders), "
                         f"got {name!r:.100}")
    folder = _identity_dir()
    path = identity_file(folder, name)       # refuses '..', absolute paths, NUL bytes, empty and hidden names
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise InputError(f"name: the identities folder {folder} is a file; move it away so identities can be saved")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise InputError(f"name: cannot create the identities folder {folder} ({exc.strerror})") from None
    stem = path.name[: -len(".safetensors")]
    if path.exists() and if_exists == "increment":
        i = 1
        while path.with_name(f"{stem}_{i:03d}.safetensors").exists():
            i += 1
        path = path.with_name(f"{stem}_{i:03d}.safetensors")
    if path.exists() and if_exists == "error":
        raise InputError(f"name: {path} already exists; choose another name or set if_exists to "
                         f"'increment' or 'overwrite'")
    return str(path)


class SimSwapSaveIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSaveIdentity",
            display_name="SimSwap Save Identity",
            category=f"{CATEGORY}/identity",
            description=("Saves an identity as models/simswap/identities/<name>.safetensors (latent, embedding, "
                         "number of sources, metadata) so it can be reused with 'SimSwap Load Identity'. Existing "
                         "files are never overwritten unless if_exists = overwrite."),
            is_output_node=True,
            inputs=[
                t.Identity.Input("identity", tooltip="The identity to save."),
                io.String.Input("name", default="identity",
                                tooltip="File name without extension (letters, digits, space, _ . -)."),
                io.Combo.Input("if_exists", options=["increment", "overwrite", "error"], default="increment",
                               tooltip="When the file exists: write name_001, name_002...; replace it; or stop with "
                                       "an error."),
            ],
            outputs=[
                t.Identity.Output(display_name="identity", tooltip="The same identity, passed through."),
                io.String.Output(display_name="file", tooltip="The file name written, relative to identities/."),
            ],
        )

    @classmethod
    def validate_inputs(cls, if_exists: str | None) -> bool | str:
        return t.combo_errors(cls, if_exists=if_exists)

    @classmethod
    def execute(cls, identity: Identity, name: str, if_exists: str) -> io.NodeOutput:
        from simswap_core.identity import save_identity

        path = _identity_file(name, if_exists)
        save_identity(identity, path, overwrite=(if_exists == "overwrite"))
        filename = os.path.basename(path)
        return io.NodeOutput(identity, filename, ui={"text": [filename]})


def _identity_names() -> list[str]:
    return list_files(SIMSWAP_FOLDER, {".safetensors"}, only_prefix=IDENTITY_SUBFOLDER) or [NO_IDENTITIES]


def _identity_to_load(identity_name: str) -> str:
    """The file of ``identity_name`` in the first registered identities folder that has it, confined to that
    folder (``simswap_core.identity.identity_file``: no '..', absolute paths or symlinks leading out)."""
    from simswap_core.errors import MissingModelError
    from simswap_core.identity import identity_file

    folders = [os.path.join(p, IDENTITY_SUBFOLDER) for p in folder_search_paths(SIMSWAP_FOLDER)]
    for folder in folders:
        path = identity_file(folder, identity_name)
        if path.is_file():
            return str(path)
    raise MissingModelError(f"identity_name: {identity_name!r:.100} not found in the identities folders {folders}")


class SimSwapLoadIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapLoadIdentity",
            display_name="SimSwap Load Identity",
            category=f"{CATEGORY}/identity",
            description="Loads an identity saved by 'SimSwap Save Identity' from models/simswap/identities/.",
            inputs=[
                io.Combo.Input("identity_name", options=_identity_names(),
                               tooltip="A .safetensors identity in models/simswap/identities (refresh the page "
                                       "after saving a new one)."),
            ],
            outputs=[t.Identity.Output(display_name="identity", tooltip="The saved identity.")],
        )

    @classmethod
    def validate_inputs(cls, identity_name: str | None) -> bool | str:
        return t.combo_errors(cls, identity_name=identity_name)

    @classmethod
    def fingerprint_inputs(cls, identity_name: str) -> str | float:
        try:
            return file_fingerprint(_identity_to_load(identity_name))
        except Exception:
            return float("nan")

    @classmethod
    def execute(cls, identity_name: str) -> io.NodeOutput:
        from simswap_core.identity import load_identity

        if identity_name == NO_IDENTITIES:
            from simswap_core.errors import MissingModelError

            raise MissingModelError("identity_name: no identity saved yet; save one with 'SimSwap Save Identity'")
        return io.NodeOutput(load_identity(_identity_to_load(identity_name)))


NODES = [SimSwapExtractIdentity, SimSwapSaveIdentity, SimSwapLoadIdentity]
