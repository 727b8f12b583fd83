"""Face restoration nodes: load a restoration / upscale model, restore the swapped faces in their aligned crops.

The model travels as ComfyUI's own ``UPSCALE_MODEL`` (a spandrel ImageModelDescriptor): "SimSwap Load Face
Restorer" gives one that the core "Upscale Image (using Model)" node also takes, and the core "Load Upscale Model"
output plugs into "SimSwap Restore Faces" and into the swap nodes' restorer inputs. Files are read by the
library's safe readers (``simswap_core.restore``), never by ``torch.load``.

For the other nodes of the pack: :func:`make_restorer` (UPSCALE_MODEL -> FaceRestorer under ComfyUI's model
management), :func:`restorer_files` (the combo options, e.g. ``facerestore_models/GFPGANv1.4.pth``) and
:func:`load_restorer_by_name` (a FaceRestorer for one of those names, cached).
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from typing import Any

import torch
from comfy_api.latest import io

from . import _types as t
from ._common import (
    CATEGORY,
    FaceCrops,
    compute_device,
    file_fingerprint,
    folder_paths,
    folder_search_paths,
    list_files,
    progress_callback,
)
from .search_aliases import search_aliases

FACERESTORE_FOLDER = "facerestore_models"  # ReActor's / facerestore_cf's folder: GFPGAN, CodeFormer, ...
UPSCALE_FOLDER = "upscale_models"          # ComfyUI's own: ESRGAN-family 2x/4x upscalers
FOLDERS = (FACERESTORE_FOLDER, UPSCALE_FOLDER)
MODEL_EXTENSIONS = {".pth", ".pt", ".safetensors", ".ckpt", ".bin"}
NO_FILES = "(no models in models/facerestore_models or models/upscale_models)"
DOWNLOADS = ("GFPGANv1.4.pth from https://github.com/TencentARC/GFPGAN/releases (v1.3.4), or codeformer.pth from "
             "https://github.com/sczhou/CodeFormer/releases (v0.1.0; needs spandrel_extra_arches)")
RESTORE_LICENCE = ("Licences: GFPGAN's code is Apache-2.0 but its released weights carry their own terms "
                   "(StyleGAN2 and other parts under separate licences); CodeFormer weights are S-Lab License 1.0, "
                   "non-commercial only; check the terms of any upscaler you use.")
_CACHE_SIZE = 2

_patchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # descriptor -> ModelPatcher
_by_name: OrderedDict[tuple[str, str], Any] = OrderedDict()        # (path, fingerprint) -> descriptor
_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------------- files
def register_restore_folders() -> None:
    """models/facerestore_models in ComfyUI's registry (as ReActor / facerestore_cf register it; paths others
    configured are kept and stay first), and models/upscale_models should a ComfyUI lack it. Idempotent."""
    if folder_paths is None:
        return
    for name in FOLDERS:
        folder_paths.add_model_folder_path(name, os.path.join(folder_paths.models_dir, name))  # idempotent
        paths, exts = folder_paths.folder_names_and_paths[name]
        if not exts:  # created just now, or by an extra_model_paths.yaml entry: give it our extensions. A set
            # another pack or ComfyUI made (often the shared supported_pt_extensions) is never modified.
            folder_paths.folder_names_and_paths[name] = (paths, set(MODEL_EXTENSIONS))


def restorer_files() -> list[str]:
    """Options of a restorer widget: ``facerestore_models/<file>`` (GFPGAN, CodeFormer, RestoreFormer first),
    then ``upscale_models/<file>``; ``[NO_FILES]`` when both folders are empty. ONNX files (ReActor's GPEN) are
    not listed: they are not spandrel models."""
    register_restore_folders()
    face = [f"{FACERESTORE_FOLDER}/{n}" for n in list_files(FACERESTORE_FOLDER, MODEL_EXTENSIONS)]
    rank = ("gfpganv1.4", "gfpgan", "codeformer", "restoreformer")
    face.sort(key=lambda n: (next((i for i, k in enumerate(rank) if k in n.lower()), len(rank)), n.lower()))
    ups = [f"{UPSCALE_FOLDER}/{n}" for n in list_files(UPSCALE_FOLDER, MODEL_EXTENSIONS)]
    return face + ups or [NO_FILES]


def _split(name: str) -> tuple[str, str]:
    folder, _, rel = str(name).replace("\\", "/").partition("/")
    return folder, rel


def restorer_path(name: str, widget: str = "restore_model") -> str:
    """Absolute path of a restorer option; MissingModelError naming the widget, the folders and where models come
    from."""
    from simswap_core.errors import MissingModelError

    register_restore_folders()
    folder, rel = _split(name)
    path = None
    if folder in FOLDERS and rel and folder_paths is not None:
        path = folder_paths.get_full_path(folder, rel)
    if path is None:
        searched = [p for f in FOLDERS for p in folder_search_paths(f)]
        what = "no model file chosen" if not name or name.startswith("(") else f"{name!r} not found"
        raise MissingModelError(f"{widget}: {what}; put a face restoration model ({DOWNLOADS}) or an upscale model "
                                f"into one of {searched} and refresh the page (R)")
    return path


def _choice_error(value: str | None, widget: str) -> bool | str:
    if value is None:
        return True
    if value in restorer_files() and not value.startswith("("):
        return True
    try:
        restorer_path(value, widget)
    except Exception as exc:
        return str(exc)
    return True


def _load_descriptor(path: str) -> Any:
    """The spandrel descriptor of ``path`` (CPU, eval), cached by file version (``_CACHE_SIZE`` models)."""
    from simswap_core.restore import load_restorer_model

    key = (path, file_fingerprint(path))
    with _lock:
        if key in _by_name:
            _by_name.move_to_end(key)
            return _by_name[key]
    model = load_restorer_model(path)
    with _lock:
        _by_name[key] = model
        while len(_by_name) > _CACHE_SIZE:
            _by_name.popitem(last=False)
    return model


# ---------------------------------------------------------------------------------------------------- restorer
def _patcher(model: Any) -> Any:
    """One ComfyUI ModelPatcher per descriptor (kept as long as the descriptor lives), or None outside ComfyUI."""
    try:
        import comfy.model_management as mm
        import comfy.model_patcher
    except ImportError:
        return None
    with _lock:
        patcher = _patchers.get(model)
        if patcher is None:
            patcher = comfy.model_patcher.ModelPatcher(model.model, load_device=mm.get_torch_device(),
                                                       offload_device=mm.unet_offload_device())
            _patchers[model] = patcher
    return patcher


def restorer_patchers() -> list[Any]:
    """The ModelPatchers of the restoration models SimSwap nodes handed to ComfyUI (for SimSwap Unload Models)."""
    with _lock:
        return list(_patchers.values())


def _make_class() -> type:
    from simswap_core.restore import FaceRestorer

    class ComfyFaceRestorer(FaceRestorer):
        """A FaceRestorer whose network is loaded by ComfyUI's model management (``load_models_gpu``, with the
        memory one chunk of faces needs), so ComfyUI can offload it when another model needs the memory."""

        def prepare(self, device: torch.device, size: int) -> torch.device:
            patcher = _patcher(self.model)
            if patcher is None:
                return super().prepare(device, size)
            import comfy.model_management as mm

            mm.load_models_gpu([patcher], memory_required=self.memory_estimate(self.batch_size, size),
                               force_full_load=True)
            target = patcher.load_device
            if self.model.device != target:  # moved by another node (the core upscale node moves it to the CPU)
                self.model.to(target)
            return target

    return ComfyFaceRestorer


def make_restorer(upscale_model: Any, *, fidelity: float = 0.5, batch_size: int = 4) -> Any:
    """A simswap_core FaceRestorer for an UPSCALE_MODEL value (any spandrel ImageModelDescriptor, ours or the
    core "Load Upscale Model"'s), run on ComfyUI's compute device under its model management. fidelity: CodeFormer's
    w in [0,1]. InputError naming ``restore_model`` for anything else."""
    from simswap_core.errors import InputError
    from simswap_core.restore import describe_model

    if upscale_model is None:
        raise InputError("restore_model: connect a face restoration or upscale model (SimSwap Load Face Restorer "
                         "or Load Upscale Model)")
    try:
        restorer = _make_class()(upscale_model, fidelity=fidelity, batch_size=batch_size,
                                 name=describe_model(upscale_model))
    except InputError as exc:
        raise InputError(f"restore_model: {exc}") from None
    if _patcher(upscale_model) is None:  # outside ComfyUI: the compute device
        restorer.device = compute_device()
    return restorer


def load_restorer_by_name(name: str, *, fidelity: float = 0.5, widget: str = "restore_model") -> Any:
    """A FaceRestorer for a :func:`restorer_files` option (for one-node workflows such as Quick Swap); the model
    is read once per file version and kept (the last two)."""
    return make_restorer(_load_descriptor(restorer_path(name, widget)), fidelity=fidelity)


# ---------------------------------------------------------------------------------------------------- nodes
class SimSwapLoadFaceRestorer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapLoadFaceRestorer",
            **search_aliases("SimSwapLoadFaceRestorer"),
            display_name="SimSwap Load Face Restorer",
            category=f"{CATEGORY}/loaders",
            description=("Loads a face restoration model (GFPGAN v1.3/v1.4, RestoreFormer; CodeFormer when "
                         "spandrel_extra_arches is installed) from models/facerestore_models, or any upscale model "
                         "from models/upscale_models, as ComfyUI's UPSCALE_MODEL (spandrel). Files are read without "
                         "running code from them. Feed it to 'SimSwap Restore Faces' or a swap node's restorer "
                         "input; the core 'Load Upscale Model' output works there too. An upscaler loaded here "
                         "also works in the core 'Upscale Image (using Model)'; face models belong in 'SimSwap "
                         "Restore Faces' (it runs GFPGAN/CodeFormer in their own [-1,1] range). " + RESTORE_LICENCE),
            inputs=[io.Combo.Input("model_name", options=restorer_files(),
                                   tooltip="A model from models/facerestore_models (GFPGANv1.4.pth, codeformer.pth, "
                                           "...) or models/upscale_models (2x/4x upscalers: the face is upscaled "
                                           "and shrunk back, which sharpens it without changing the identity). "
                                           "ONNX files are not listed. " + RESTORE_LICENCE)],
            outputs=[io.UpscaleModel.Output(display_name="restore_model",
                                            tooltip="The model (spandrel), for SimSwap Restore Faces, the swap "
                                                    "nodes, or Upscale Image (using Model).")],
        )

    @classmethod
    def validate_inputs(cls, model_name: str | None) -> bool | str:
        return _choice_error(model_name, "model_name")

    @classmethod
    def fingerprint_inputs(cls, model_name: str) -> str | float:
        try:
            return file_fingerprint(restorer_path(model_name, "model_name"))
        except Exception:
            return float("nan")

    @classmethod
    def execute(cls, model_name: str) -> io.NodeOutput:
        from simswap_core.restore import describe_model

        model = _load_descriptor(restorer_path(model_name, "model_name"))
        return io.NodeOutput(model, ui={"text": [f"{model_name}: {describe_model(model)}"]})


class SimSwapRestoreFaces(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapRestoreFaces",
            **search_aliases("SimSwapRestoreFaces"),
            display_name="SimSwap Restore Faces",
            category=f"{CATEGORY}/faces",
            description=("Restores the swapped faces only, in their aligned crops, before they are pasted back: "
                         "face_crops from a swap (or Align Faces) in, restored face_crops out with the same "
                         "alignment, for 'SimSwap Split Face Crops' / 'SimSwap Paste Faces'. Face models run at "
                         "512x512; upscalers upscale the crop and shrink it back. " + RESTORE_LICENCE),
            inputs=[
                t.FaceCrops.Input("face_crops", tooltip="Aligned face crops: the face_crops output of a SimSwap "
                                                        "swap node, or SimSwap Align Faces."),
                io.UpscaleModel.Input("restore_model",
                                      tooltip="From SimSwap Load Face Restorer or the core Load Upscale Model."),
                io.Float.Input("visibility", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="How much of the restored face is used: 0 = the crops unchanged (the model "
                                       "does not run), 1 = fully restored, in between a blend."),
                io.Float.Input("codeformer_fidelity", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="CodeFormer only (its w): 0 = strongest restoration, 1 = closest to the "
                                       "swapped face. Other models ignore it."),
            ],
            outputs=[t.FaceCrops.Output(display_name="face_crops",
                                        tooltip="The restored crops with the same alignment, masks and order.")],
        )

    @classmethod
    def execute(cls, face_crops: FaceCrops, restore_model: Any, visibility: float,
                codeformer_fidelity: float = 0.5) -> io.NodeOutput:
        from simswap_core.errors import InputError
        from simswap_core.restore import restore_faces

        if not isinstance(face_crops, FaceCrops):
            raise InputError(f"face_crops: expected SIMSWAP_FACE_CROPS, got {type(face_crops).__name__}")
        restorer = make_restorer(restore_model, fidelity=float(codeformer_fidelity))
        n = len(face_crops)
        if n == 0:
            return io.NodeOutput(face_crops, ui={"text": ["no faces to restore"]})
        crops = restore_faces(face_crops.crops, restorer, float(visibility), progress_callback(n))
        out = FaceCrops(crops=crops, aligned=face_crops.aligned, mask_spec=face_crops.mask_spec,
                        parser=face_crops.parser)
        text = (f"{n} face(s) unchanged (visibility 0)" if float(visibility) == 0.0 else
                f"restored {n} face(s) with {restorer.name}, visibility {float(visibility):.2f}")
        return io.NodeOutput(out, ui={"text": [text]})


NODES = [SimSwapLoadFaceRestorer, SimSwapRestoreFaces]
