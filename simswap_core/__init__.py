"""SimSwap core: the exact SimSwap networks, checkpoint loading, identities and the batched face pipeline.

Public names are imported lazily (PEP 562), so ``import simswap_core`` stays light: nothing heavy (and never
onnxruntime or av) is imported until a name is used. Images are float32 ``[N,3,H,W]`` RGB in [0,1].

Engine API::

    G = load_generator(path, variant=None)      # G(target [N,3,S,S] RGB [0,1], latent [N,512]) -> RGB [0,1]
    A = load_arcface(path)                      # ImageNet-normalised [N,3,112,112] -> raw [N,512]
    identity_latent(A, crops) / identity_embedding(A, crops)
    convert_checkpoint(src, dst)                # -> .safetensors with metadata
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CheckpointError,
    DependencyError,
    InputError,
    MissingModelError,
    NoFaceError,
    SimSwapError,
    UnsafeCheckpointError,
)

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY: dict[str, str] = {
    # engine
    "load_generator": "models.loaders",
    "load_arcface": "models.loaders",
    "convert_checkpoint": "models.loaders",
    "inspect_checkpoint": "models.loaders",
    "load_model": "models.loaders",
    "identity_latent": "identity",
    "identity_embedding": "identity",
    "Identity": "identity",
    "combine_identities": "identity",
    "save_identity": "identity",
    "load_identity": "identity",
    "SimSwapGenerator": "networks.generator",
    "GeneratorConfig": "networks.generator",
    "IResNet": "networks.arcface",
    "ArcFaceConfig": "networks.arcface",
    "write_seeded_checkpoints": "models.seeded",
    "seeded_state_dict": "models.seeded",
    # other modules of the package (contract names)
    "DetectedFaces": "faces",
    "AlignedFaces": "align",
    "align_faces": "align",
    "estimate_alignment": "align",
    "warp_faces": "align",
    "invert_affine": "align",
    "paste_faces": "paste",
    "load_parser": "models.loaders",
    "load_sam": "models.loaders",
    "load_detector": "detection",
    "FaceSelection": "detection.select",
    "select_faces": "detection.select",
    "order_faces": "detection.select",
    "find_model": "models.find",
    "FaceSwapper": "swap",
    "SwapResult": "swap",
}

# spelled out (not built from _LAZY) so linters and type checkers see the re-exports; tests/test_load_model.py
# checks that it names exactly the error classes and _LAZY
__all__ = [
    "CheckpointError", "DependencyError", "InputError", "MissingModelError", "NoFaceError", "SimSwapError",
    "UnsafeCheckpointError", "load_generator", "load_arcface", "convert_checkpoint", "inspect_checkpoint",
    "load_model", "identity_latent", "identity_embedding", "Identity", "combine_identities", "save_identity",
    "load_identity", "SimSwapGenerator", "GeneratorConfig", "IResNet", "ArcFaceConfig", "write_seeded_checkpoints",
    "seeded_state_dict", "DetectedFaces", "AlignedFaces", "align_faces", "estimate_alignment", "warp_faces",
    "invert_affine", "paste_faces", "load_parser", "load_sam", "load_detector", "FaceSelection", "select_faces",
    "order_faces", "find_model", "FaceSwapper", "SwapResult",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'simswap_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .identity import (
        Identity,
        combine_identities,
        identity_embedding,
        identity_latent,
        load_identity,
        save_identity,
    )
    from .models.loaders import (
        convert_checkpoint,
        inspect_checkpoint,
        load_arcface,
        load_generator,
        load_model,
        load_parser,
        load_sam,
    )
    from .models.seeded import seeded_state_dict, write_seeded_checkpoints
    from .networks.arcface import ArcFaceConfig, IResNet
    from .networks.generator import GeneratorConfig, SimSwapGenerator
