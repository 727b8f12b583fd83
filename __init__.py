"""ComfyUI-SimSwap: SimSwap face swapping as ComfyUI nodes (entry point ComfyUI imports from custom_nodes/).

The nodes live in ``nodes/`` and only adapt ComfyUI types to ``simswap_core`` (the pip-installable library in
this folder). When the pack is used from ComfyUI/custom_nodes without ``pip install``, ``simswap_core`` is made
importable by appending this folder to ``sys.path`` (only if the import fails: an installed copy wins).
ComfyUI loads the nodes through the V3 entry point ``comfy_entrypoint`` (a ``ComfyExtension``; ComfyUI >= the
``requires-comfyui`` of pyproject.toml). Importing this file as a loose module outside ComfyUI does not fail.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the nodes import ComfyUI's comfy_api: never at run time here
    from nodes import SimSwapExtension

try:
    import simswap_core
except ImportError:
    _here = os.path.dirname(os.path.abspath(__file__))
    if _here not in sys.path:
        sys.path.append(_here)  # appended, not prepended: ComfyUI's own top-level `nodes` module must win
    import simswap_core  # noqa: F401

if __package__:  # imported as a package (ComfyUI does this): the V3 entry point of the nodes

    async def comfy_entrypoint() -> SimSwapExtension:
        """ComfyUI's V3 entry point; imports the nodes (and ComfyUI's comfy_api) only when ComfyUI calls it, so
        importing the pack outside ComfyUI (tools, test collection) never needs ComfyUI."""
        from .nodes import comfy_entrypoint as nodes_entrypoint

        return await nodes_entrypoint()

    __all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
else:  # imported as a loose module (e.g. by a tool scanning the repo): nothing to register
    __all__ = ["WEB_DIRECTORY"]

# No NODE_CLASS_MAPPINGS here on purpose: ComfyUI (nodes.load_custom_node) takes the V1 path when a pack exports
# it and would then never call comfy_entrypoint (which registers the model folders).
# The front-end extensions in web/ (served by ComfyUI at /extensions/<this folder's name>/, also for V3 packs: see
# nodes.load_custom_node): status text and toasts (simswap_status.js), identities, search aliases, templates.
WEB_DIRECTORY = "./web"
