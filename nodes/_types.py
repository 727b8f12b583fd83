"""The V3 socket types of the pack (``io.Custom("SIMSWAP_...")``) and the schema helpers every node shares.

ComfyUI matches sockets by these type strings; the ``SIMSWAP_`` prefix keeps another pack's ``FACE_MODEL`` or
``FACES`` out of our inputs. The values behind them are plain Python objects (ManagedModel, a detector,
``simswap_core`` records); ComfyUI never serialises them.
"""
from __future__ import annotations

from typing import Any

from comfy_api.latest import io

Generator = io.Custom("SIMSWAP_GENERATOR")    # nodes._common.ManagedModel of a SimSwap generator (info: crop_size)
ArcFace = io.Custom("SIMSWAP_ARCFACE")        # ManagedModel of SimSwap's ArcFace encoder
Detector = io.Custom("SIMSWAP_DETECTOR")      # a simswap_core.detection detector
Parser = io.Custom("SIMSWAP_PARSER")          # ManagedModel of the BiSeNet face parser
Identity = io.Custom("SIMSWAP_IDENTITY")      # simswap_core.identity.Identity
Faces = io.Custom("SIMSWAP_FACES")            # simswap_core.faces.DetectedFaces
FaceCrops = io.Custom("SIMSWAP_FACE_CROPS")   # nodes._common.FaceCrops
Alignment = io.Custom("SIMSWAP_ALIGNMENT")    # simswap_core.align.AlignedFaces
GenderModel = io.Custom("SIMSWAP_GENDER_MODEL")  # simswap_core.detection.genderage.GenderAgeEstimator
IdentityMap = io.Custom("SIMSWAP_IDENTITY_MAP")  # simswap_core.mapping.IdentityMap
Sam = io.Custom("SIMSWAP_SAM")                # ManagedModel of simswap_core.networks.sam.SamModel (SimSwap Load SAM)


def combo_errors(node: type[io.ComfyNode], **values: Any) -> bool | str:
    """``validate_inputs`` helper: True, or the error naming each combo value that is not among its choices.

    ComfyUI 0.3.75 checks a V1 list-combo against its choices but not a V3 ``io.Combo`` (newer versions do), so
    the nodes check their own combos: a bad value stays a validation error (HTTP 400) before anything runs.
    Values of linked inputs arrive as None and are skipped."""
    errors = []
    for inp in node.define_schema().inputs or []:
        if isinstance(inp, io.Combo.Input) and inp.id in values:
            value = values[inp.id]
            if value is not None and value not in inp.options:
                shown = inp.options if len(inp.options) <= 20 else f"a list of {len(inp.options)}"
                errors.append(f"{inp.id}: {value!r} not in list {shown}")
    return "; ".join(errors) or True


def first_error(*results: bool | str) -> bool | str:
    """The first validation result that is not True (an error text), else True."""
    return next((r for r in results if r is not True), True)
