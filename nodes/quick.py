"""SimSwap Quick Face Swap: source photo + target photo(s) -> swapped image(s) and mask, models picked in the node.

The one-node path for the common case (what ReActor's "Fast Face Swap" does): the same library calls as the full
node set (``FaceSwapper.extract_identity`` / ``extract_identities`` on the source, ``FaceSwapper.swap`` on the
target), with the models chosen in combos and kept in a small in-process cache keyed by file path + size + mtime,
so a second run (another target, another option) does not read the files again. The torch models are handed to
ComfyUI's model management (``ManagedModel``) like the loader nodes do: ComfyUI may offload them when another model
needs the memory; "SimSwap Unload Models" drops them and this cache.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from comfy_api.latest import io

from simswap_core import masks as _masks

from ._common import (
    CATEGORY,
    LICENCE_NOTE,
    SIMSWAP_FOLDER,
    ManagedModel,
    check_interrupt,
    compute_device,
    file_fingerprint,
    folder_search_paths,
    full_path,
    image_to_nchw,
    load_managed,
    n1hw_to_mask,
    nchw_to_image,
    progress_callback,
    report_status,
    soft_empty_cache,
)
from .loaders import (
    _detector_path,
    arcface_files,
    detector_files,
    generator_files,
    model_choice_error,
    parser_files,
)
from .search_aliases import search_aliases
from .selection import MASK_KINDS, parse_indices

# the kinds this node can build from its own model pickers (a SAM kind needs SimSwap Load SAM: use SimSwap Face Swap)
QUICK_MASK_KINDS = [k for k in MASK_KINDS if not _masks.MASKERS[k].needs_sam]

if TYPE_CHECKING:
    import torch

    from simswap_core.identity import Identity

__all__ = ["NODES", "SimSwapQuickSwap", "cached_models", "clear_model_cache", "load_counts"]

NO_RESTORE = "none"

# ------------------------------------------------------------------------------------------------ model cache
_CACHE: dict[str, tuple[tuple, Any, str]] = {}  # slot ("generator", "arcface", ...) -> (key, model, file name)
_LOADS: Counter[str] = Counter()             # slot -> how many times a file was read (tests, the unload report)
_LOCK = threading.Lock()


def _file_key(path: str | None) -> tuple:
    if path is None:
        return ("builtin",)
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _cached(slot: str, key: tuple, load: Callable[[], Any], label: str) -> Any:
    """The model of ``slot`` for ``key`` (path + size + mtime [+ options]); loaded with ``load`` when the slot
    holds another file (one model per slot: the cache never holds two generators)."""
    with _LOCK:
        hit = _CACHE.get(slot)
        if hit is not None and hit[0] == key:
            return hit[1]
    logging.info("SimSwap Quick Face Swap: loading %s %s", slot, label)
    model = load()
    with _LOCK:
        _CACHE[slot] = (key, model, label)
        _LOADS[slot] += 1
    return model


def load_counts() -> dict[str, int]:
    """slot -> number of times Quick Face Swap read a model file for it (a cache hit does not count)."""
    with _LOCK:
        return dict(_LOADS)


def cached_models() -> list[str]:
    """'slot: file name' of every model held by the cache."""
    with _LOCK:
        return [f"{slot}: {label}" for slot, (_, _, label) in _CACHE.items()]


def clear_model_cache() -> list[str]:
    """Drop every cached model; returns 'slot: file name' of what was dropped."""
    with _LOCK:
        dropped = [f"{slot}: {label}" for slot, (_, _, label) in _CACHE.items()]
        _CACHE.clear()
    return dropped


def _generator(name: str) -> ManagedModel:
    from simswap_core import load_generator

    path = full_path(SIMSWAP_FOLDER, name, "generator", "generator", generator_files())

    def load() -> ManagedModel:
        module = load_generator(path)
        return ManagedModel(module, kind="generator", name=name, path=path, crop_size=int(module.crop_size),
                            arch=getattr(module, "arch", "?"), variant=getattr(module, "variant", "official"))

    return _cached("generator", _file_key(path), load, name)


def _arcface(name: str) -> ManagedModel:
    from simswap_core import load_arcface

    path = full_path(SIMSWAP_FOLDER, name, "arcface", "arcface", arcface_files())
    return _cached("arcface", _file_key(path),
                   lambda: ManagedModel(load_arcface(path), kind="arcface", name=name, path=path), name)


def _parser() -> ManagedModel:
    from simswap_core.models.loaders import load_parser

    name = parser_files()[0]
    path = full_path(SIMSWAP_FOLDER, name, "mask = parsing needs a face parser; parser", "parser")
    return _cached("parser", _file_key(path),
                   lambda: ManagedModel(load_parser(path), kind="parser", name=name, path=path), name)


def _detector(name: str) -> Any:
    from simswap_core.detection import load_detector

    path = _detector_path(name)
    device = compute_device()
    search = folder_search_paths(SIMSWAP_FOLDER)

    def load() -> Any:
        det = load_detector(path or "yunet", threshold=0.5, det_size=640, device=device, search_dirs=search or None)
        soft_empty_cache()
        return det

    return _cached("detector", (*_file_key(path), str(device)), load, name)


# ------------------------------------------------------------------------------------------------ restoration
def _restore_api() -> tuple[Callable[[], list[str]], Callable[..., Any]] | None:
    """(restorer_files, load_restorer_by_name) of nodes/restore.py when that module provides them, else None
    (the node then has no restoration widgets)."""
    try:
        from . import restore
    except Exception:  # not there (or broken): Quick Face Swap works without restoration
        return None
    files = getattr(restore, "restorer_files", None)
    load = getattr(restore, "load_restorer_by_name", None) or getattr(restore, "load_restorer", None)
    if callable(files) and callable(load):
        return files, load
    return None


def _restore_options() -> list[str]:
    api = _restore_api()
    if api is None:
        return []
    try:
        return [NO_RESTORE, *(n for n in api[0]() if not n.startswith("("))]
    except Exception as exc:  # listing must never break the node list
        logging.warning("SimSwap Quick Face Swap: cannot list face restoration models (%s)", exc)
        return [NO_RESTORE]


def _restore_inputs() -> list:
    options = _restore_options()
    if not options:
        return []
    return [
        io.Combo.Input("face_restore_model", options=options, default=NO_RESTORE, optional=True,
                       tooltip="Restore the swapped faces only (in the aligned crop, before paste-back) with a model "
                               "of models/facerestore_models or models/upscale_models (GFPGAN, CodeFormer, GPEN... "
                               "loaded by ComfyUI/spandrel). none = no restoration. Check each model's licence "
                               "(CodeFormer weights: S-Lab License, non-commercial)."),
        io.Float.Input("face_restore_visibility", default=1.0, min=0.0, max=1.0, step=0.05, optional=True,
                       tooltip="Blend of the restored face over the swapped one: 0 = not restored, 1 = fully "
                               "restored."),
    ]


# ------------------------------------------------------------------------------------------------ the node
class SimSwapQuickSwap(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapQuickSwap",
            display_name="SimSwap Quick Face Swap",
            category=CATEGORY,
            **search_aliases("SimSwapQuickSwap"),
            description=("One-node face swap: the face(s) of source_image are swapped into target_image (a photo or "
                         "video frames), with the models picked here. Faces are numbered left to right from 0, as "
                         "in ReActor: source_faces_index '0,1' with target_faces_index '1,0' puts source face 0 on "
                         "target face 1 and source face 1 on target face 0. Models are loaded once and kept until "
                         "'SimSwap Unload Models' runs. For detection thresholds, parsing regions, reference faces "
                         "or saved identities use the full node set (Load Generator, Extract Identity, Face "
                         "Swap). " + LICENCE_NOTE),
            inputs=[
                io.Image.Input("source_image", tooltip="Photo(s) of the person to swap in. Several images: the "
                                                       "identity is averaged over them."),
                io.Image.Input("target_image", tooltip="Photo(s) or video frames whose faces are replaced."),
                io.Combo.Input("generator", options=generator_files(),
                               tooltip="SimSwap generator in models/simswap (latest_net_G.pth = the 224 model; "
                                       "550000_net_G.pth = the 512 beta). SimSwap weights: CC BY-NC 4.0 "
                                       "(non-commercial)."),
                io.Combo.Input("arcface", options=arcface_files(),
                               tooltip="SimSwap's ArcFace identity encoder in models/simswap "
                                       "(arcface_checkpoint.tar). CC BY-NC 4.0 (non-commercial)."),
                io.Combo.Input("detector", options=detector_files(),
                               tooltip="Face detector: the built-in YuNet (MIT), or an SCRFD file of "
                                       "models/insightface (antelopev2 scrfd_10g_bnkps, buffalo_l det_10g; "
                                       "insightface packs: non-commercial research only)."),
                io.String.Input("source_faces_index", default="0",
                                tooltip="Which face(s) of source_image to take, numbered left to right from 0 "
                                        "(e.g. '0' or '0,1'). Several: one identity per listed face, mapped in "
                                        "order onto target_faces_index."),
                io.String.Input("target_faces_index", default="0",
                                tooltip="Which face(s) of each target image to replace, numbered left to right from "
                                        "0 (e.g. '0' or '0,2'). With fewer source faces than target faces the "
                                        "source faces are reused in turn."),
                io.Combo.Input("mask", options=QUICK_MASK_KINDS, default="box",
                               tooltip="Region of each face that is replaced: box = the whole aligned crop (official "
                                       "SimSwap), ellipse = a face ellipse from the landmarks, parsing = skin, "
                                       "brows, eyes, nose, lips, mouth, occlusion = the same but hands, hair, "
                                       "glasses and anything else in front of the face stay (parsing and occlusion "
                                       "need 79999_iter.pth in models/simswap). SAM-refined masks: use SimSwap Face "
                                       "Swap with SimSwap Load SAM."),
                io.Boolean.Input("color_match", default=False,
                                 tooltip="Match the swapped face's colours to the target face."),
                *_restore_inputs(),
            ],
            hidden=[io.Hidden.unique_id],
            outputs=[
                io.Image.Output(display_name="image",
                                tooltip="target_image with the faces swapped (same count, order and size); frames "
                                        "where no listed face was found come back unchanged (the node says so)."),
                io.Mask.Output(display_name="mask",
                               tooltip="Where each image was changed (1 = swapped, 0 = untouched), same size as "
                                       "the images."),
            ],
        )

    @classmethod
    def validate_inputs(cls, generator: str | None, arcface: str | None, detector: str | None) -> bool | str:
        """The model combos, before anything runs: a missing model names the folder, the file, its source and
        the install command. (ComfyUI repeats this text once per argument, so only the model widgets are
        checked here; the face numbers are checked at the start of the run, before any model is loaded.)"""
        errors = [r for r in (model_choice_error("generator", generator, "generator"),
                              model_choice_error("arcface", arcface, "arcface"),
                              model_choice_error("detector", detector, "detector")) if r is not True]
        return "; ".join(str(e) for e in errors) or True

    @classmethod
    def fingerprint_inputs(cls, generator: str, arcface: str, detector: str, **_others: Any) -> str | float:
        """The chosen model files' path + mtime + size (a file replaced under the same name runs the node again;
        ComfyUI adds the other inputs itself); NaN (always run) when one cannot be resolved (the run says why)."""
        try:
            return ":".join([file_fingerprint(full_path(SIMSWAP_FOLDER, generator, "generator")),
                             file_fingerprint(full_path(SIMSWAP_FOLDER, arcface, "arcface")),
                             file_fingerprint(_detector_path(detector))])
        except Exception:
            return float("nan")

    @classmethod
    def execute(cls, source_image: torch.Tensor, target_image: torch.Tensor, generator: str, arcface: str,
                detector: str, source_faces_index: str, target_faces_index: str, mask: str, color_match: bool,
                face_restore_model: str = NO_RESTORE, face_restore_visibility: float = 1.0) -> io.NodeOutput:
        from simswap_core.checks import check_number
        from simswap_core.detection.select import FaceSelection
        from simswap_core.errors import InputError, NoFaceError
        from simswap_core.masks import MaskSpec
        from simswap_core.swap import FaceSwapper

        src = image_to_nchw(source_image, "source_image")
        frames = image_to_nchw(target_image, "target_image")
        src_idx = parse_indices(source_faces_index, "source_faces_index")
        tgt_idx = parse_indices(target_faces_index, "target_faces_index")
        if mask not in QUICK_MASK_KINDS:
            raise InputError(f"mask: expected one of {QUICK_MASK_KINDS}, got {mask!r}")
        visibility = check_number(face_restore_visibility, "face_restore_visibility", low=0.0, high=1.0)
        check_interrupt()
        gen, arc, det = _generator(generator), _arcface(arcface), _detector(detector)
        parser = _parser() if MaskSpec(kind=mask).needs_parser else None
        restorer = _restorer(face_restore_model) if visibility > 0 else None
        g, a, p = load_managed(gen, arc, parser)
        swapper = FaceSwapper(g, a, det, parser=p, device=compute_device(), crop_size=gen.info.get("crop_size"))

        try:
            identity = _source_identities(swapper, src, src_idx)
        except NoFaceError as exc:
            raise NoFaceError(f"source_image / source_faces_index: {exc}") from None
        check_interrupt()
        select = FaceSelection(how="index", indices=tgt_idx, order="left-right")
        kwargs: dict[str, Any] = {}
        if restorer is not None:
            kwargs.update(restorer=restorer, restore_visibility=visibility)
        # on_step: the progress bar advances face by face and Cancel stops within one generator call
        result = swapper.swap(frames, identity, select=select, mask=MaskSpec(kind=mask), color_match=bool(color_match),
                              if_no_face="keep", on_step=progress_callback(frames.shape[0]), **kwargs)
        soft_empty_cache()
        status = _status(result, len(src_idx))
        if result.frames_without_face:  # never silent: on the node, as a notification and in the server log
            node_id = cls.hidden.unique_id if cls.hidden is not None else None
            report_status(node_id, f"SimSwap Quick Face Swap: {status}", "warning")
        return io.NodeOutput(nchw_to_image(result.images), n1hw_to_mask(result.mask), ui={"text": [status]})


def _restorer(name: str) -> Any:
    """The face restorer of ``name`` (None for "none"); nodes/restore.py reads each file once and keeps it."""
    from simswap_core.errors import InputError

    if not name or name == NO_RESTORE:
        return None
    api = _restore_api()
    if api is None:
        raise InputError(f"face_restore_model: {name!r} cannot be used: face restoration is not available in this "
                         f"install; choose '{NO_RESTORE}'")
    return api[1](name, widget="face_restore_model")


def _source_identities(swapper: Any, src: torch.Tensor, indices: tuple[int, ...]) -> Identity | list[Identity]:
    """One identity per listed source face (averaged over the source images); a single index gives one."""
    from simswap_core.detection.select import FaceSelection
    from simswap_core.identity import extract_identities

    def pick(*idx: int) -> FaceSelection:
        return FaceSelection(how="index", indices=idx, order="left-right")

    if len(indices) == 1:
        return swapper.extract_identity(src, select=pick(indices[0]), combine="mean", if_no_face="error")
    if src.shape[0] == 1:  # one detection pass gives every listed face, in the listed order
        return extract_identities(swapper.arcface, swapper.detector, src, crop_size=swapper.crop_size,
                                  align_mode=swapper.align_mode, select=pick(*indices), if_no_face="error",
                                  device=swapper.device)
    return [swapper.extract_identity(src, select=pick(i), combine="mean", if_no_face="error") for i in indices]


def _status(result: Any, n_sources: int) -> str:
    summary = str(result.summary())
    if n_sources > 1:
        summary += f" (from {n_sources} source faces)"
    return summary[:1].upper() + summary[1:]


NODES = [SimSwapQuickSwap]
