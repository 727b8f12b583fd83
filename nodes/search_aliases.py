"""Search aliases of the SimSwap nodes (what users of ReActor and other face-swap packs type in the node search).

The list lives in ``web/simswap_search_aliases.json`` (one file for both sides): ComfyUI versions whose V3
``io.Schema`` has the ``search_aliases`` field (Comfy-Org/ComfyUI#12010, with frontend Comfy-Org/ComfyUI_frontend
#8223) get them through the schema, and ``web/simswap_search.js`` adds them to the node search of older frontends
(ComfyUI 0.3.75 with frontend 1.32, whose search only looks at the node id and display name). Usage in a node::

    io.Schema(node_id="SimSwapSwap", display_name="SimSwap Face Swap", **search_aliases("SimSwapSwap"), ...)
"""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

ALIASES_FILE = Path(__file__).resolve().parents[1] / "web" / "simswap_search_aliases.json"


@functools.lru_cache(maxsize=1)
def all_aliases() -> dict[str, list[str]]:
    """node id -> aliases, from web/simswap_search_aliases.json (keys starting with "_" are comments)."""
    data = json.loads(ALIASES_FILE.read_text(encoding="utf-8"))
    return {k: [str(a) for a in v] for k, v in data.items() if not k.startswith("_")}


@functools.lru_cache(maxsize=1)
def schema_supports_aliases() -> bool:
    """True when the running ComfyUI's ``io.Schema`` has a ``search_aliases`` field."""
    try:
        from comfy_api.latest import io
    except ImportError:
        return False
    try:
        return any(f.name == "search_aliases" for f in dataclasses.fields(io.Schema))
    except TypeError:  # not a dataclass in some version: look at the constructor instead
        import inspect

        return "search_aliases" in inspect.signature(io.Schema).parameters


def search_aliases(node_id: str) -> dict[str, list[str]]:
    """``{"search_aliases": [...]}`` to splat into ``io.Schema(...)`` where the running ComfyUI accepts it, else
    ``{}`` (older ComfyUI: the frontend extension web/simswap_search.js adds the aliases to the search)."""
    aliases = all_aliases().get(node_id)
    if not aliases or not schema_supports_aliases():
        return {}
    return {"search_aliases": list(aliases)}
