"""Identity nodes: extract an identity from source photos (one, or one per face), save it, load it, blend several,
and read out how close swapped faces are to it.

A SIMSWAP_IDENTITY socket carries either one ``simswap_core.identity.Identity`` or, from Extract Identity with
``combine = each``, a plain ``list[Identity]`` (one per listed source face); the Swap node maps identity k onto
the k-th listed target face. Save Identity writes a list as one file per identity (name_0, name_1, ...)."""
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
from .search_aliases import search_aliases
from .selection import ORDERS, make_selection, validate_face_index

if TYPE_CHECKING:  # simswap_core is imported where it is used
    from collections.abc import Sequence

    import torch

    from simswap_core.detection import FaceDetector
    from simswap_core.identity import Identity

    from ._common import ManagedModel

NO_IDENTITIES = "(no identities saved yet)"
CROP_SIZES = ["auto", "224", "512"]
EXTRACT_COMBINE = ["mean", "median", "weighted", "quality", "each"]
IDENTITY_SOCKET_NOTE = ("A SIMSWAP_IDENTITY is one identity, or a list of identities from Extract Identity with "
                        "combine = each.")
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
            **search_aliases("SimSwapExtractIdentity"),
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
                io.String.Input("face_index", default="0",
                                tooltip="Face number(s) used when face = index, numbered in 'order' from 0 as the "
                                        "Detect Faces preview shows them: '0', or several separated by commas "
                                        "('0,1'; with combine = each: one identity per listed face, in the listed "
                                        "order)."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="How faces are numbered for face = index."),
                io.Combo.Input("combine", options=EXTRACT_COMBINE, default="mean",
                               tooltip="How several faces become one identity: mean, median (robust to an odd "
                                       "photo), mean weighted by detection score, or quality: weighted by "
                                       "detection score x face size x sharpness x frontalness (each photo's "
                                       "quality is shown on the node: drop poor ones). each: no combining, one "
                                       "identity PER chosen face (e.g. face = index, face_index '0,1' on a photo "
                                       "of two people), a list the Swap node maps onto the target faces it swaps "
                                       "(source face k -> k-th target face)."),
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
                                               "ArcFace embedding (combine = each: a list, one identity per face).")],
        )

    @classmethod
    def validate_inputs(cls, face: str | None, order: str | None, combine: str | None, if_no_face: str | None,
                        face_index: str | None = None, crop_size: str | None = None) -> bool | str:
        return t.first_error(t.combo_errors(cls, face=face, order=order, combine=combine, if_no_face=if_no_face,
                                            crop_size=crop_size),
                             validate_face_index(None if face_index is None else str(face_index)))

    @classmethod
    def execute(cls, source_images: torch.Tensor, arcface: ManagedModel, detector: FaceDetector, face: str,
                face_index: str, order: str, combine: str, if_no_face: str, generator: ManagedModel | None = None,
                crop_size: str = "auto") -> io.NodeOutput:
        from simswap_core.errors import InputError
        from simswap_core.face_quality import quality_text
        from simswap_core.identity import extract_identities, extract_identity, identity_quality

        if combine not in EXTRACT_COMBINE:
            raise InputError(f"combine: expected one of {EXTRACT_COMBINE}, got {combine!r}")
        images = image_to_nchw(source_images, "source_images")
        selection = make_selection(face, str(face_index), order)  # an old workflow's int 0 arrives as "0" too
        (encoder,) = load_managed(arcface)
        size = identity_crop_size(crop_size, generator)
        identity: Identity | list[Identity]
        if combine == "each":
            identity = extract_identities(encoder, detector, images, crop_size=size, select=selection,
                                          if_no_face=if_no_face, device=compute_device())
            text = (f"{len(identity)} identities (one per face): "
                    + ", ".join(f"image {i.meta['source_image']} face {i.meta['source_face']}" for i in identity))
        else:
            identity = extract_identity(encoder, detector, images, crop_size=size, select=selection,
                                        combine=combine, if_no_face=if_no_face, device=compute_device())
            text = f"1 identity from {identity.num_sources} face(s) ({combine}), crop size {size}"
            quality = identity_quality(identity)
            if quality:
                text += "\n" + quality_text(quality)
        soft_empty_cache()
        return io.NodeOutput(identity, ui={"text": [text]})


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


def _forget_listing() -> None:
    """Drop ComfyUI's cached file list of models/simswap, so the next /object_info lists a file just written
    (its cache is keyed on folder mtimes, which can miss a write within the same timestamp tick)."""
    from . import _common

    cache = getattr(_common.folder_paths, "filename_list_cache", None)
    if isinstance(cache, dict):
        cache.pop(SIMSWAP_FOLDER, None)


class SimSwapSaveIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapSaveIdentity",
            **search_aliases("SimSwapSaveIdentity"),
            display_name="SimSwap Save Identity",
            category=f"{CATEGORY}/identity",
            description=("Saves an identity as models/simswap/identities/<name>.safetensors (latent, embedding, "
                         "number of sources, metadata) so it can be reused with 'SimSwap Load Identity' (its list "
                         "updates after the run, no page reload). The node shows the file actually written. A list "
                         "of identities (Extract Identity, combine = each) is saved as one file per identity: "
                         "<name>_0, <name>_1, ... Existing files are never overwritten unless if_exists = "
                         "overwrite."),
            is_output_node=True,
            inputs=[
                t.Identity.Input("identity", tooltip="The identity to save (a list from combine = each: one file "
                                                     "per identity, <name>_0, <name>_1, ...)."),
                io.String.Input("name", default="identity",
                                tooltip="File name without extension (letters, digits, space, _ . -)."),
                io.Combo.Input("if_exists", options=["increment", "overwrite", "error"], default="increment",
                               tooltip="When the file exists: write name_001, name_002...; replace it; or stop with "
                                       "an error."),
            ],
            outputs=[
                t.Identity.Output(display_name="identity", tooltip="The same identity, passed through."),
                io.String.Output(display_name="file",
                                 tooltip="The file name written, relative to identities/ (as Load Identity lists "
                                         "it); several files separated by ', '."),
            ],
        )

    @classmethod
    def validate_inputs(cls, if_exists: str | None) -> bool | str:
        return t.combo_errors(cls, if_exists=if_exists)

    @classmethod
    def execute(cls, identity: Identity | Sequence[Identity], name: str, if_exists: str) -> io.NodeOutput:
        from simswap_core.errors import InputError
        from simswap_core.identity import identity_list, save_identity

        if if_exists not in ("increment", "overwrite", "error"):
            raise InputError(f"if_exists: expected 'increment', 'overwrite' or 'error', got {if_exists!r}")
        items = identity_list(identity, "identity")          # every item checked before anything is written
        several = isinstance(identity, (list, tuple))
        written = []
        try:
            for k, item in enumerate(items):
                path = _identity_file(f"{name}_{k}" if several else name, if_exists)
                save_identity(item, path, overwrite=(if_exists == "overwrite"))
                written.append(os.path.basename(path))
        finally:
            if written:
                _forget_listing()
        folder = _identity_dir()
        text = (f"saved {written[0]}" if len(written) == 1 else f"saved {len(written)} identities: "
                + ", ".join(written)) + f" (in {folder}; pick it in SimSwap Load Identity)"
        return io.NodeOutput(identity, ", ".join(written), ui={"text": [text], "simswap_identity_saved": written})


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
            **search_aliases("SimSwapLoadIdentity"),
            display_name="SimSwap Load Identity",
            category=f"{CATEGORY}/identity",
            description="Loads an identity saved by 'SimSwap Save Identity' from models/simswap/identities/.",
            inputs=[
                io.Combo.Input("identity_name", options=_identity_names(),
                               tooltip="A .safetensors identity in models/simswap/identities (one saved by Save "
                                       "Identity appears here after its run; files copied in by hand: press R)."),
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
        from simswap_core.face_quality import quality_text
        from simswap_core.identity import identity_quality

        identity = load_identity(_identity_to_load(identity_name))
        records = identity_quality(identity)
        if not records:
            return io.NodeOutput(identity)
        text = (f"{identity_name}: {identity.num_sources} source face(s) "
                f"({identity.meta.get('combine', '?')})\n{quality_text(records)}")
        return io.NodeOutput(identity, ui={"text": [text]})


BLEND_SLOTS = ("a", "b", "c", "d")


def _single_identity(value: object, slot: str) -> Identity:
    """The identity of input ``identity_<slot>``; a list (combine = each) is refused with a clear message."""
    from simswap_core.errors import InputError
    from simswap_core.identity import check_identity

    if isinstance(value, (list, tuple)):
        raise InputError(f"identity_{slot}: a list of {len(value)} identities (Extract Identity with combine = "
                         f"each); blend single identities: extract with combine = mean, or save the list and load "
                         f"the ones to blend")
    return check_identity(value, f"identity_{slot}")


class SimSwapBlendIdentities(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        inputs: list = []
        for k, slot in enumerate(BLEND_SLOTS):
            optional = k >= 2
            inputs.append(t.Identity.Input(f"identity_{slot}", optional=optional,
                                           tooltip=f"Identity {slot.upper()}" + (" (optional)." if optional else
                                                                                 ".")))
            inputs.append(io.Float.Input(f"weight_{slot}", default=1.0, min=0.0, max=10.0, step=0.05,
                                         tooltip=f"How much of identity {slot.upper()} goes into the blend (relative "
                                                 f"to the other weights; 0 = left out)."
                                                 + (" Ignored while identity_" + slot + " is not connected."
                                                    if optional else "")))
        return io.Schema(
            node_id="SimSwapBlendIdentities",
            **search_aliases("SimSwapBlendIdentities"),
            display_name="SimSwap Blend Identities",
            category=f"{CATEGORY}/identity",
            description=("Blends 2 to 4 identities into one: the weighted mean of their unit latents, re-normalised "
                         "to unit length (the same way Extract Identity combines several photos). Identities "
                         "extracted for different crop sizes (224 vs 512 generator) are refused. Save the result "
                         "with Save Identity to reuse it."),
            inputs=inputs,
            outputs=[t.Identity.Output(display_name="identity", tooltip="The blended identity.")],
        )

    @classmethod
    def execute(cls, identity_a: Identity, identity_b: Identity, weight_a: float = 1.0, weight_b: float = 1.0,
                weight_c: float = 1.0, weight_d: float = 1.0, identity_c: Identity | None = None,
                identity_d: Identity | None = None) -> io.NodeOutput:
        from simswap_core.checks import check_number
        from simswap_core.errors import InputError
        from simswap_core.identity import blend_identities

        given = {"a": identity_a, "b": identity_b, "c": identity_c, "d": identity_d}
        weights = {"a": weight_a, "b": weight_b, "c": weight_c, "d": weight_d}
        slots = [s for s in BLEND_SLOTS if given[s] is not None]
        items = [_single_identity(given[s], s) for s in slots]
        w = [check_number(weights[s], f"weight_{s}", low=0.0, high=10.0) for s in slots]
        if sum(w) <= 0:
            raise InputError("weight_a..weight_d: every weight of a connected identity is 0; give at least one "
                             "identity a weight above 0")
        blended = blend_identities(items, w, what="SimSwap Blend Identities")
        total = sum(w)
        text = "blend of " + ", ".join(f"{s.upper()} {wk / total:.0%}" for s, wk in zip(slots, w))
        return io.NodeOutput(blended, ui={"text": [text]})


class SimSwapFaceSimilarity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapFaceSimilarity",
            **search_aliases("SimSwapFaceSimilarity"),
            display_name="SimSwap Face Similarity",
            category=f"{CATEGORY}/identity",
            description=("How close the faces of an image (a swap result) are to the source identity: ArcFace "
                         "cosine similarity per face (1 = same direction, about 0 = unrelated), and with the "
                         "original target also how much of the target's own face is left. Not an independent "
                         "measure: it uses the same ArcFace the swap optimised."),
            inputs=[
                t.Identity.Input("identity", tooltip="The source identity the faces should match (a list from "
                                                     "combine = each: each face is scored against the closest)."),
                io.Image.Input("images", tooltip="The swapped result to score."),
                t.ArcFace.Input("arcface",
                                tooltip="SimSwap's ArcFace encoder. Caveat: this is the network the generator was "
                                        "driven by, so the score is NOT an independent judge of the swap (it "
                                        "tends to read high); use it to compare settings, not as a quality "
                                        "metric."),
                t.Detector.Input("detector", tooltip="Face detector that finds the faces to score."),
                io.Image.Input("original_images", optional=True,
                               tooltip="Optional: the target before the swap (same size). Faces are then found in "
                                       "it and each swapped face is also compared with the original face at the "
                                       "same place."),
                io.Combo.Input("crop_size", options=CROP_SIZES, default="auto", optional=True,
                               tooltip="How faces are aligned for ArcFace: 224 (pose templates) or 512 (FFHQ). "
                                       "auto: what the identity was extracted with, else 224."),
            ],
            outputs=[
                io.Float.Output(display_name="similarity",
                                tooltip="Mean cosine similarity of the faces to the source identity (-1..1; NaN "
                                        "when no face was found). Same-ArcFace readout, not an independent "
                                        "score."),
                io.String.Output(display_name="report",
                                 tooltip="One line per face (image, face number left to right, similarity to the "
                                         "source and to the original target face) and the means."),
            ],
        )

    @classmethod
    def validate_inputs(cls, crop_size: str | None = None) -> bool | str:
        return t.combo_errors(cls, crop_size=crop_size)

    @classmethod
    def execute(cls, identity: Identity | Sequence[Identity], images: torch.Tensor, arcface: ManagedModel,
                detector: FaceDetector, original_images: torch.Tensor | None = None,
                crop_size: str = "auto") -> io.NodeOutput:
        from simswap_core.similarity import face_similarity

        frames = image_to_nchw(images, "images")
        originals = image_to_nchw(original_images, "original_images") if original_images is not None else None
        (encoder,) = load_managed(arcface)
        result = face_similarity(encoder, detector, frames, identity, originals=originals,
                                 crop_size=None if crop_size in (None, "auto") else int(crop_size),
                                 device=compute_device())
        soft_empty_cache()
        report = result.report()
        return io.NodeOutput(result.mean(), report, ui={"text": [report]})


NODES = [SimSwapExtractIdentity, SimSwapSaveIdentity, SimSwapLoadIdentity, SimSwapBlendIdentities,
         SimSwapFaceSimilarity]
