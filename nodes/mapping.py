"""SimSwap Map Identity: several identities in one pass, each to its own target faces (by a photo of the person to
replace, by face number, or by track id). Chain the nodes like LoRA loaders: each adds one identity to the map it
gets, and the last one goes to the swap node's (or the video node's) identity_map input."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from comfy_api.latest import io

from . import _types as t
from ._common import CATEGORY
from .search_aliases import search_aliases
from .selection import ORDERS

if TYPE_CHECKING:  # simswap_core is imported where it is used
    from simswap_core.identity import Identity
    from simswap_core.mapping import IdentityMap

TARGETS = ["reference", "face index", "track id"]
_BY = {"reference": "reference", "face index": "index", "track id": "track"}
MAX_NUMBER = 9999  # face numbers and track ids as the previews show them


class SimSwapMapIdentity(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SimSwapMapIdentity",
            **search_aliases("SimSwapMapIdentity"),
            display_name="SimSwap Map Identity",
            category=CATEGORY,
            description=("Adds one identity to an identity map: which faces it replaces, by a photo of the person "
                         "(SimSwap's multi-specific ArcFace match), by face number, or by track id (video). Chain "
                         "several, each taking the previous one's identity_map, and connect the last to the swap "
                         "node's identity_map. A face gets at most one identity; faces no entry names are left "
                         "alone. In a video a tracked face keeps its identity (a turned head stays swapped)."),
            inputs=[
                t.Identity.Input("identity",
                                 tooltip="The identity to swap in (Extract or Load Identity; one identity)."),
                io.Combo.Input("target", options=TARGETS, default="reference",
                               tooltip="Which faces get this identity: reference = the face matching the "
                                       "'reference' identity (a photo of the person to replace; needs the swap "
                                       "node's arcface input); face index = the face with number face_index in "
                                       "'order' in each frame (as SimSwap Detect Faces numbers them); track id = "
                                       "the faces of track track_id in a video (SimSwap Detect Faces with "
                                       "track_faces shows the ids)."),
                io.Int.Input("face_index", default=0, min=0, max=MAX_NUMBER,
                             tooltip="For target = face index: the face number in each frame (0 = first in "
                                     "'order')."),
                io.Int.Input("track_id", default=0, min=0, max=MAX_NUMBER,
                             tooltip="For target = track id: the track number (video frames)."),
                io.Float.Input("threshold", default=0.03, min=0.001, max=1.0, step=0.001,
                               tooltip="For target = reference: the largest MSE between raw ArcFace embeddings "
                                       "that still counts as the same person (official --id_thres 0.03)."),
                io.Combo.Input("order", options=ORDERS, default="left-right",
                               tooltip="For target = face index: how faces are numbered (as the swap node). "
                                       "Every face-index entry of one map uses the same order."),
                t.Identity.Input("reference", optional=True,
                                 tooltip="For target = reference: the person to replace (Extract Identity of a "
                                         "photo of them)."),
                t.IdentityMap.Input("identity_map", optional=True,
                                    tooltip="The map built so far (another SimSwap Map Identity); this node adds "
                                            "its identity to it."),
            ],
            outputs=[t.IdentityMap.Output(display_name="identity_map",
                                          tooltip="The identity map with this identity added: connect it to the "
                                                  "next SimSwap Map Identity or to the swap node's identity_map.")],
        )

    @classmethod
    def validate_inputs(cls, target: str | None = None, order: str | None = None) -> bool | str:
        return t.combo_errors(cls, target=target, order=order)

    @classmethod
    def execute(cls, identity: Identity | list[Identity], target: str, face_index: int, track_id: int,
                threshold: float, order: str, reference: Identity | list[Identity] | None = None,
                identity_map: IdentityMap | None = None) -> io.NodeOutput:
        from simswap_core.checks import check_integer, check_number
        from simswap_core.errors import InputError
        from simswap_core.identity import check_identity
        from simswap_core.mapping import IdentityMap, MapEntry

        if target not in TARGETS:
            raise InputError(f"target: expected one of {TARGETS}, got {target!r}")
        if order not in ORDERS:
            raise InputError(f"order: expected one of {ORDERS}, got {order!r}")
        source = check_identity(_one(identity, "identity"), "identity")
        base = identity_map if identity_map is not None else IdentityMap(order=order)
        if not isinstance(base, IdentityMap):
            raise InputError(f"identity_map: expected the output of another 'SimSwap Map Identity', got "
                             f"{type(base).__name__}")
        by = _BY[target]
        label = f"#{len(base)}"
        if by == "reference":
            if reference is None:
                raise InputError("reference: target = reference needs the 'reference' input (Extract Identity of a "
                                 "photo of the person to replace); or set target to face index / track id")
            ref = check_identity(_one(reference, "reference"), "reference")
            entry = MapEntry(source, "reference", reference=ref,
                             threshold=check_number(threshold, "threshold", low=0.0, low_open=True, high=1.0),
                             label=label)
        elif by == "index":
            entry = MapEntry(source, "index", index=check_integer(face_index, "face_index", low=0, high=MAX_NUMBER),
                             label=label)
            if any(e.by == "index" and e.index == entry.index for e in base.entries):
                raise InputError(f"face_index: face {entry.index} already has an identity in this map (each face "
                                 "gets one)")
        else:
            entry = MapEntry(source, "track", track=check_integer(track_id, "track_id", low=0, high=MAX_NUMBER),
                             label=label)
            if any(e.by == "track" and e.track == entry.track for e in base.entries):
                raise InputError(f"track_id: track {entry.track} already has an identity in this map (each track "
                                 "gets one)")
        new = base.add(entry, order=order if by == "index" else None)
        return io.NodeOutput(new, ui={"text": [new.describe()]})


def _one(value: Any, name: str) -> Any:
    """One Identity from a socket that may carry a list (Extract Identity with combine = each)."""
    from simswap_core.errors import InputError

    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InputError(f"{name}: got {len(value)} identities (Extract Identity with combine = each); a map "
                             "entry takes one: use one SimSwap Map Identity per identity, or combine = mean")
        return value[0]
    return value


NODES = [SimSwapMapIdentity]
