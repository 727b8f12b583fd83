"""SimSwap Unload Models: frees the SimSwap models from ComfyUI's model management and Quick Face Swap's cache.

A passthrough (any value in -> the same value out), so it can sit anywhere in a graph: put it after the node whose
result should exist before the memory is given back (e.g. after Quick Face Swap, before an upscaler).
"""
from __future__ import annotations

import gc
import logging
from typing import Any

from comfy_api.latest import io

from ._common import CATEGORY
from .search_aliases import search_aliases

__all__ = ["NODES", "SimSwapUnloadModels", "unload_simswap_models"]


_KINDS = {"SimSwapGenerator": "generator", "IResNet": "ArcFace", "BiSeNet": "face parser"}


def _is_simswap_module(module: Any) -> bool:
    return type(module).__module__.startswith("simswap_core.")


def unload_simswap_models() -> list[str]:
    """Unload every SimSwap torch model (generator, ArcFace, parser, and face restorers loaded by SimSwap nodes)
    that ComfyUI's model management holds on the compute device, drop Quick Face Swap's cached models and empty
    the torch cache; returns what was freed (one short text each). Other packs' models stay loaded."""
    from .quick import clear_model_cache
    from .restore import restorer_patchers

    freed: list[str] = []
    try:
        import comfy.model_management as mm
    except ImportError:
        mm = None
    if mm is not None:
        restorers = restorer_patchers()
        loaded = mm.current_loaded_models
        for i in range(len(loaded) - 1, -1, -1):
            patcher = loaded[i].model
            module = getattr(patcher, "model", None) if patcher is not None else None
            if module is None or not (_is_simswap_module(module) or any(patcher is r for r in restorers)):
                continue
            size = patcher.loaded_size() if hasattr(patcher, "loaded_size") else 0
            loaded[i].model_unload()
            loaded.pop(i)
            name = type(module).__name__
            what = _KINDS.get(name, name) if _is_simswap_module(module) else f"face restorer {name}"
            freed.append(f"{what} ({size / 2**20:.0f} MB on {patcher.load_device})")
    freed += [f"cached {name}" for name in clear_model_cache()]
    gc.collect()
    if mm is not None:
        mm.soft_empty_cache(True)
    else:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    logging.info("SimSwap Unload Models: %s", "; ".join(freed) or "nothing was loaded")
    return freed


class SimSwapUnloadModels(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapUnloadModels",
            display_name="SimSwap Unload Models",
            category=f"{CATEGORY}/utility",
            **search_aliases("SimSwapUnloadModels"),
            description=("Frees the memory of the SimSwap models: unloads the SimSwap generator, ArcFace and face "
                         "parser from ComfyUI's model management (other models stay), drops the models Quick Face "
                         "Swap keeps between runs and empties the torch cache. Passes its input through unchanged; "
                         "runs every time the graph runs. The node shows what it freed."),
            inputs=[io.AnyType.Input("value", tooltip="Anything (an IMAGE, a MASK, ...): passed through unchanged. "
                                                      "The models are freed once this value exists.")],
            outputs=[io.AnyType.Output(display_name="value", tooltip="The input, unchanged.")],
            not_idempotent=True,
        )

    @classmethod
    def fingerprint_inputs(cls, value: Any = None) -> float:
        return float("nan")  # never cached: freeing is the point of running it

    @classmethod
    def execute(cls, value: Any) -> io.NodeOutput:
        freed = unload_simswap_models()
        text = ("Freed: " + "; ".join(freed)) if freed else "Nothing to free: no SimSwap model was loaded."
        return io.NodeOutput(value, ui={"text": [text]})


NODES = [SimSwapUnloadModels]
