"""ComfyUI-SimSwap: SimSwap face swapping as ComfyUI nodes (entry point ComfyUI imports from custom_nodes/).

The nodes live in ``nodes/`` and only adapt ComfyUI types to ``simswap_core`` (the pip-installable library in
this folder). When the pack is used from ComfyUI/custom_nodes without ``pip install``, ``simswap_core`` is made
importable by appending this folder to ``sys.path`` (only if the import fails: an installed copy wins).
Importing this file outside ComfyUI does not fail; the node classes are still defined.
"""
import os
import sys

try:
    import simswap_core  # noqa: F401
except ImportError:
    _here = os.path.dirname(os.path.abspath(__file__))
    if _here not in sys.path:
        sys.path.append(_here)  # appended, not prepended: ComfyUI's own top-level `nodes` module must win
    import simswap_core  # noqa: F401

if __package__:  # imported as a package (ComfyUI does this): load the nodes
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
else:  # imported as a loose module (e.g. by a tool scanning the repo): nothing to register
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

WEB_DIRECTORY = None  # no front-end extension: every node is a plain declarative V1 node

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
