"""SimSwap node classes, one module per node family; collected here for the pack's __init__.

Importing registers the model folders with ComfyUI (models/simswap, and the shared models/insightface), adding
to what extra_model_paths.yaml configured instead of replacing it.
"""
from . import detect, faces, identity, loaders, swap
from ._common import register_model_folders

register_model_folders()

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in (loaders, identity, detect, swap, faces):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
