"""Glue shared by the SimSwap nodes: tensor layout conversions, model folders, model management, progress.

No maths here: layouts are only permuted ([B,H,W,C] <-> [N,3,H,W], [B,H,W] <-> [N,1,H,W]); everything else is
a call into ``simswap_core`` or into ComfyUI. This module imports without a running ComfyUI (its ComfyUI parts
are then ``None`` or plain-torch stand-ins); the V3 socket types of the nodes are in ``_types.py``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # simswap_core is imported where it is used
    from simswap_core.align import AlignedFaces
    from simswap_core.detection.select import FaceSelection
    from simswap_core.faces import DetectedFaces
    from simswap_core.masks import MaskSpec
    from simswap_core.progress import StepFn

try:  # inside ComfyUI
    import folder_paths
except ImportError:  # imported outside ComfyUI
    folder_paths = None

CATEGORY = "SimSwap"
SIMSWAP_FOLDER = "simswap"            # models/simswap: generators, ArcFace, parser, identities/
INSIGHTFACE_FOLDER = "insightface"    # models/insightface: SCRFD/RetinaFace .onnx (shared with ReActor & co)
SAM_FOLDER = "sams"                   # models/sams: Segment Anything checkpoints (shared with other packs)
IDENTITY_SUBFOLDER = "identities"     # models/simswap/identities/*.safetensors

TORCH_EXTENSIONS = {".pth", ".pt", ".safetensors", ".ckpt", ".bin", ".tar"}
ONNX_EXTENSIONS = {".onnx"}

LICENCE_NOTE = ("Licences: the official SimSwap weights are CC BY-NC 4.0 (non-commercial); insightface detector "
                "packs (antelopev2, buffalo_l) are for non-commercial research only; YuNet (OpenCV Zoo) is MIT.")


# ---------------------------------------------------------------------------------------------------- layouts
def image_to_nchw(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """ComfyUI IMAGE [B,H,W,C] float [0,1] -> [B,3,H,W] (RGB; an alpha channel is dropped). Values are checked
    (finite, in [0,1]; simswap_core.checks.check_images) so a bad batch is refused naming ``name``."""
    from simswap_core.checks import check_images
    from simswap_core.errors import InputError

    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"{name}: expected a ComfyUI IMAGE batch [B,H,W,3], got {shape}")
    if image.shape[0] == 0:
        raise InputError(f"{name}: the IMAGE batch is empty")
    if image.shape[-1] == 1:
        image = image.expand(-1, -1, -1, 3)
    if not image.is_floating_point():
        raise InputError(f"{name}: expected a float IMAGE in [0,1], got dtype {image.dtype} (divide by 255)")
    return check_images(image[..., :3].movedim(-1, 1).float(), name)


def nchw_to_image(x: torch.Tensor) -> torch.Tensor:
    """[N,3,H,W] -> ComfyUI IMAGE [N,H,W,3] float32 on ComfyUI's intermediate device."""
    return x.movedim(1, -1).to(device=intermediate_device(), dtype=torch.float32).contiguous()


def mask_to_n1hw(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """ComfyUI MASK [B,H,W] (or [H,W]) -> [B,1,H,W], values checked (finite, in [0,1])."""
    from simswap_core.checks import check_masks
    from simswap_core.errors import InputError

    if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"{name}: expected a ComfyUI MASK [B,H,W], got {shape}")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if not mask.is_floating_point():
        raise InputError(f"{name}: expected a float MASK in [0,1], got dtype {mask.dtype}")
    return check_masks(mask.unsqueeze(1).float(), name)


def n1hw_to_mask(x: torch.Tensor) -> torch.Tensor:
    """[N,1,H,W] -> ComfyUI MASK [N,H,W] float32 on ComfyUI's intermediate device."""
    return x[:, 0].to(device=intermediate_device(), dtype=torch.float32).contiguous()


def align_selected(frames: torch.Tensor, faces: DetectedFaces, crop_size: int, mode: str | None,
                   selection: FaceSelection) -> AlignedFaces:
    """AlignedFaces of the faces ``selection`` keeps (a FaceSelection), aligned on the compute device."""
    from simswap_core.align import align_faces
    from simswap_core.detection import select_faces

    device = compute_device()
    faces = faces.to(device)
    chosen = faces.select(select_faces(faces, selection))
    return align_faces(frames.to(device), chosen, int(crop_size), mode)


# ---------------------------------------------------------------------------------------------------- ComfyUI
def intermediate_device() -> torch.device:
    try:
        import comfy.model_management as mm
    except ImportError:
        return torch.device("cpu")
    return mm.intermediate_device()


def compute_device() -> torch.device:
    try:
        import comfy.model_management as mm
    except ImportError:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return mm.get_torch_device()


def soft_empty_cache() -> None:
    """Give back cached accelerator memory after onnxruntime work (invisible to ComfyUI's model management)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.soft_empty_cache()


PROGRESS_STEPS = 100  # bar units per frame: a single photo's bar advances face by face


def progress_callback(total: int) -> StepFn | None:
    """A ``progress(done, total)`` callable for the core pipeline (``swap(on_step=...)``, or any ``ProgressFn``):
    ``done`` may be fractional (frames finished plus the finished part of the current frame). It drives ComfyUI's
    progress bar (PROGRESS_STEPS units per frame) and raises ComfyUI's InterruptProcessingException as soon as the
    user cancels (checked on every call, i.e. after every generator call)."""
    try:
        import comfy.model_management as mm
        import comfy.utils
    except ImportError:
        return None
    bar = comfy.utils.ProgressBar(max(int(total), 1) * PROGRESS_STEPS)

    def progress(done: float, total_: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(round(float(done) * PROGRESS_STEPS), max(int(total_), 1) * PROGRESS_STEPS)

    return progress


STATUS_EVENT = "simswap.status"  # websocket event shown as a toast by web/simswap_status.js
_status_log = logging.getLogger("simswap")


def report_status(node_id: str | None, message: str, level: str = "warning") -> None:
    """Tell the user something they must not miss (e.g. frames where nothing was swapped): a line in the server
    log (``logging`` at ``level``: "info", "warning" or "error") AND a toast in the browser (websocket event
    ``simswap.status`` {node, message, level}, shown by web/simswap_status.js). Works without a server (log only)."""
    if level not in ("info", "warning", "error"):
        level = "warning"
    _status_log.log(getattr(logging, level.upper()), "[SimSwap] %s%s", f"node {node_id}: " if node_id else "",
                    message)
    try:
        from server import PromptServer
    except ImportError:
        return
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return
    try:
        instance.send_sync(STATUS_EVENT, {"node": node_id, "message": message, "level": level})
    except Exception as e:  # no event loop (e.g. a script): the log line is there
        _status_log.debug("simswap.status not sent: %s", e)


def check_interrupt() -> None:
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


# ---------------------------------------------------------------------------------------------------- folders
def _register(name: str, default_path: str, extensions: set[str]) -> None:
    """Add our default folder to ComfyUI's registry and merge our file extensions into its entry.

    Paths that users configured (extra_model_paths.yaml, other packs) are kept and stay first; the entry is
    never replaced."""
    folder_paths.add_model_folder_path(name, default_path)  # appends (or creates) without dropping paths
    paths, exts = folder_paths.folder_names_and_paths[name]
    if isinstance(exts, set):
        exts.update(extensions)
    else:  # a list or tuple in some packs: rebuild the tuple around the SAME paths list
        folder_paths.folder_names_and_paths[name] = (paths, set(exts) | extensions)


def register_model_folders() -> None:
    if folder_paths is None:
        return
    _register(SIMSWAP_FOLDER, os.path.join(folder_paths.models_dir, SIMSWAP_FOLDER),
              TORCH_EXTENSIONS | ONNX_EXTENSIONS)
    _register(INSIGHTFACE_FOLDER, os.path.join(folder_paths.models_dir, INSIGHTFACE_FOLDER), ONNX_EXTENSIONS)
    _register(SAM_FOLDER, os.path.join(folder_paths.models_dir, SAM_FOLDER), TORCH_EXTENSIONS)


def list_files(folder: str, extensions: set[str], *, exclude_prefix: str | None = None,
               only_prefix: str | None = None) -> list[str]:
    """Relative file names in a registered model folder (all its paths, recursive), sorted."""
    if folder_paths is None:
        return []
    try:
        names = folder_paths.get_filename_list(folder)
    except KeyError:
        return []
    out = []
    for n in names:
        norm = n.replace("\\", "/")
        if os.path.splitext(norm)[1].lower() not in extensions:
            continue
        if exclude_prefix and norm.startswith(exclude_prefix + "/"):
            continue
        if only_prefix is not None:
            if not norm.startswith(only_prefix + "/"):
                continue
            n = norm[len(only_prefix) + 1:]
        out.append(n)
    return sorted(out, key=str.lower)


def prefer(names: list[str], *keywords: str) -> list[str]:
    """The same names, those containing one of the keywords first (so the widget default is plausible)."""
    hit = [n for n in names if any(k in n.lower() for k in keywords)]
    return hit + [n for n in names if n not in hit]


def full_path(folder: str, name: str, what: str, kind: str | None = None,
              available: list[str] | None = None) -> str:
    """Absolute path of a file chosen in widget ``what``; when it is missing, a clear error naming the widget, the
    folders searched and, for a model ``kind`` ("generator", "arcface", "parser", "detector"), the file expected,
    its official source and the install command (``available``: the files the widget lists)."""
    from simswap_core.errors import MissingModelError
    from simswap_core.models.find import missing_kind_message

    if folder_paths is None:
        raise MissingModelError(f"{what}: {name!r} cannot be resolved outside ComfyUI")
    path = None if not name or name.startswith("(") else folder_paths.get_full_path(folder, name)
    if path is not None:
        return path
    if kind is not None:
        listed = [n for n in (available or []) if not n.startswith("(")]
        raise MissingModelError(missing_kind_message(kind, what, folder, folder_search_paths(folder), name, listed))
    if not name or name.startswith("("):
        raise MissingModelError(f"{what}: no model file chosen; put one into {folder_search_paths(folder)} "
                                f"and refresh the page (R)")
    raise MissingModelError(f"{what}: {name!r} not found in the '{folder}' model folders "
                            f"{folder_search_paths(folder)}")


def folder_search_paths(folder: str) -> list[str]:
    if folder_paths is None:
        return []
    try:
        return folder_paths.get_folder_paths(folder)
    except KeyError:
        return []


def file_fingerprint(path: str | None) -> str:
    """mtime+size of a file, for fingerprint_inputs (a changed file re-runs the loader)."""
    if not path or not os.path.exists(path):
        return "missing"
    st = os.stat(path)
    return f"{path}:{st.st_mtime_ns}:{st.st_size}"


# ---------------------------------------------------------------------------------------------------- models
class ManagedModel:
    """A torch module registered with ComfyUI's model management (a ModelPatcher), so ComfyUI can offload it
    when a diffusion model needs the memory. ``module()`` loads it onto the compute device and returns it."""

    def __init__(self, module: torch.nn.Module, *, kind: str, name: str, path: str, **info: Any) -> None:
        self.kind, self.name, self.path, self.info = kind, name, path, info
        try:
            import comfy.model_management as mm
            import comfy.model_patcher
        except ImportError:
            self.patcher = None
            self._module: torch.nn.Module | None = module
        else:
            self.patcher = comfy.model_patcher.ModelPatcher(
                module, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device())
            self._module = None

    def module(self) -> torch.nn.Module:
        return load_managed(self)[0]

    def __repr__(self) -> str:
        return f"<SimSwap {self.kind} {self.name}>"


def load_managed(*models: ManagedModel | None) -> list:
    """The torch modules of several managed models, loaded onto the compute device by ONE call of ComfyUI's
    ``load_models_gpu`` (so loading one never offloads another of the same run); None stays None."""
    patchers = [m.patcher for m in models if m is not None and m.patcher is not None]
    if patchers:
        import comfy.model_management as mm

        mm.load_models_gpu(patchers)
    out: list[torch.nn.Module | None] = []
    for m in models:
        if m is None:
            out.append(None)
        else:
            out.append(m._module if m.patcher is None else m.patcher.model)
    return out


@dataclass
class FaceCrops:
    """SIMSWAP_FACE_CROPS: aligned face crops (e.g. the swapped faces) plus how they map back into the frames.

    crops:     [F,3,S,S] float32 RGB [0,1] (swapped faces, or the target crops for 'Align Faces'), on ComfyUI's
               intermediate device for a swap's output (not every crop of a video held on the GPU)
    aligned:   simswap_core.align.AlignedFaces (target crops, matrices frame px -> crop px, frame_index, sizes)
    mask_spec: simswap_core.masks.MaskSpec the faces were blended with (None = whole crop)
    parser:    the ManagedModel face parser given with a parsing mask, else None
    """
    crops: torch.Tensor
    aligned: AlignedFaces
    mask_spec: MaskSpec | None = None
    parser: ManagedModel | None = None

    def __len__(self) -> int:
        return int(self.crops.shape[0])
