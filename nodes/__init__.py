"""SimSwap node classes (ComfyUI V3 schema), one module per node family, and the pack's ComfyExtension.

ComfyUI imports the pack's ``__init__.py``, which hands over ``comfy_entrypoint``: it registers the model folders
(models/simswap, and the shared models/insightface; added to what extra_model_paths.yaml configured, never
replacing it) and returns the extension whose ``get_node_list`` gives ``NODES``. ``NODE_CLASS_MAPPINGS`` /
``NODE_DISPLAY_NAME_MAPPINGS`` are derived from the schemas for tools and tests; they are deliberately NOT exported
by the pack's ``__init__.py`` (ComfyUI would then take its V1 loading path and never call the entry point).
"""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from . import (
    detect,
    faces,
    gender,
    identity,
    loaders,
    mapping,
    provenance,
    quick,
    restore,
    sam,
    scoring,
    swap,
    utility,
    video,
)
from ._common import register_model_folders

NODES: list[type[io.ComfyNode]] = [*loaders.NODES, *sam.NODES, *identity.NODES, *gender.NODES,
                                   *detect.NODES, *mapping.NODES, *swap.NODES, *faces.NODES, *restore.NODES,
                                   *quick.NODES, *utility.NODES, *video.NODES,
                                   *scoring.NODES, *provenance.NODES]

NODE_CLASS_MAPPINGS = {node.define_schema().node_id: node for node in NODES}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: node.define_schema().display_name
                              for node_id, node in NODE_CLASS_MAPPINGS.items()}


class SimSwapExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folders()  # idempotent; ComfyUI 0.3.75 never calls on_load, comfy_entrypoint does it too

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> SimSwapExtension:
    """ComfyUI's V3 entry point (``nodes.load_custom_node``): model folders first, then the nodes."""
    register_model_folders()
    return SimSwapExtension()


__all__ = ["NODES", "NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "SimSwapExtension", "comfy_entrypoint"]
