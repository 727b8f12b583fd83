"""Which detected faces to swap: parse a selection spec and pick faces per frame, batched over all frames.

Specs (case-insensitive, spaces ignored):
  "all"                      every face
  "largest"                  per frame, the face with the largest box
  "best"                     per frame, the highest detector score (official single-face mode)
  "index:N" / "index:0,2"    per frame, faces numbered in ``order`` from 0 (0..MAX_FACE_INDEX);
  "index:0,2@top-bottom"     ... with the order given: left-right (default), top-bottom, size (largest first),
                             score (highest first). The preview (draw_faces) numbers faces the same way.
  "reference" / "ref"        per frame, the one face closest to a reference identity if its distance is below the
  "reference:0.05"           threshold (official "specific person" mode: raw-ArcFace MSE < --id_thres 0.03);
  "reference:all[:0.05]"     every face below the threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..checks import check_number
from ..errors import InputError
from ..faces import DetectedFaces
from .base import rank_within_frame

ORDERS = ("left-right", "top-bottom", "size", "score")
MODES = ("all", "largest", "best", "index", "reference")
MAX_FACE_INDEX = 9999  # face numbers as the preview shows them; larger numbers are typos (or overflow)
DEFAULT_REFERENCE_THRESHOLD = 0.03  # official --id_thres, MSE of raw ArcFace embeddings
_ALIASES = {"ref": "reference", "specific": "reference", "biggest": "largest", "highest": "best", "first": "best"}
_SYNTAX = ('"all", "largest", "best", "index:N[,M...][@order]" (order: left-right, top-bottom, size, score), '
           '"reference[:all][:threshold]"')


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


@dataclass(frozen=True)
class FaceSelection:
    """A parsed selection. how: one of MODES; indices: for "index"; order: numbering for "index";
    threshold: max reference distance for "reference"; all_matches: "reference:all" (every face below threshold
    instead of the closest one per frame)."""

    how: str = "all"
    indices: tuple[int, ...] = ()
    order: str = "left-right"
    threshold: float = DEFAULT_REFERENCE_THRESHOLD
    all_matches: bool = False

    def __post_init__(self) -> None:
        if self.how not in MODES:
            raise InputError(f"face selection: unknown mode {self.how!r}; expected one of {_SYNTAX}")
        if self.order not in ORDERS:
            raise InputError(f"face selection: unknown order {self.order!r}; expected one of {', '.join(ORDERS)}")
        if self.how == "index" and not self.indices:
            raise InputError("face selection 'index': expected at least one face number, e.g. 'index:0'")
        if isinstance(self.indices, list):
            object.__setattr__(self, "indices", tuple(self.indices))
        if not isinstance(self.indices, tuple) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= MAX_FACE_INDEX for i in self.indices):
            raise InputError(f"face selection 'index': face numbers must be integers 0..{MAX_FACE_INDEX} as the "
                             f"preview numbers them, got {_short(self.indices)}; expected one of {_SYNTAX}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or \
                not math.isfinite(self.threshold) or not self.threshold > 0:
            raise InputError(f"face selection: reference threshold must be > 0 and finite, got "
                             f"{self.threshold!r}")

    @property
    def needs_reference(self) -> bool:
        return self.how == "reference"

    @classmethod
    def parse(cls, spec: str | FaceSelection, *, order: str | None = None,
              threshold: float | None = None) -> FaceSelection:
        """FaceSelection from a spec string (see module doc); ``order`` / ``threshold`` override the spec's."""
        if isinstance(spec, FaceSelection):
            sel = spec
        else:
            if not isinstance(spec, str):
                raise InputError(f"face selection: expected a string like {_SYNTAX}; got {type(spec).__name__}")
            sel = cls._parse(spec)
        if order is not None or threshold is not None:
            if order is not None and not isinstance(order, str):
                raise InputError(f"face order: expected one of {', '.join(ORDERS)}, got {type(order).__name__}")
            o = order.strip().lower() if order is not None else sel.order
            sel = cls(sel.how, sel.indices, o, sel.threshold if threshold is None else
                      check_number(threshold, "face selection: reference threshold", low=0, low_open=True),
                      sel.all_matches)
        return sel

    @classmethod
    def _parse(cls, spec: str) -> FaceSelection:
        s = "".join(spec.split()).lower()
        head, _, rest = s.partition(":")
        head = _ALIASES.get(head, head)
        if head in ("all", "largest", "best"):
            if rest:
                raise InputError(f"face selection {spec!r}: {head!r} takes no argument; expected one of {_SYNTAX}")
            return cls(head)
        if head == "index":
            nums, _, order = rest.partition("@")
            order = order or "left-right"
            if order not in ORDERS:
                raise InputError(f"face selection {spec!r}: unknown order {order!r}; expected one of "
                                 f"{', '.join(ORDERS)}")
            texts = nums.split(",")
            if not all(t.isdigit() and t.isascii() and len(t) <= len(str(MAX_FACE_INDEX)) for t in texts) or \
                    any(int(t) > MAX_FACE_INDEX for t in texts):
                raise InputError(f"face selection {_short(spec)}: expected comma-separated face numbers "
                                 f"0..{MAX_FACE_INDEX} after 'index:', e.g. 'index:0' or 'index:0,2' (0 = first face "
                                 f"in {order} order); valid forms: {_SYNTAX}")
            idx = tuple(int(t) for t in texts)
            return cls("index", tuple(dict.fromkeys(idx)), order)
        if head == "reference":
            parts = [p for p in rest.split(":")] if rest else []
            all_matches, thr = False, DEFAULT_REFERENCE_THRESHOLD
            for p in parts:
                if p == "all":
                    all_matches = True
                    continue
                try:
                    thr = float(p)
                except ValueError:
                    raise InputError(f"face selection {_short(spec)}: expected 'reference', 'reference:all', "
                                     f"'reference:<threshold>' or 'reference:all:<threshold>'") from None
            return cls("reference", threshold=thr, all_matches=all_matches)
        raise InputError(f"face selection {spec!r}: unknown mode {head!r}; expected one of {_SYNTAX}")

    def __str__(self) -> str:
        if self.how == "index":
            return "index:" + ",".join(map(str, self.indices)) + ("" if self.order == "left-right"
                                                                  else f"@{self.order}")
        if self.how == "reference":
            return "reference" + (":all" if self.all_matches else "") + f":{self.threshold:g}"
        return self.how


def order_faces(faces: DetectedFaces, order: str = "left-right") -> torch.Tensor:
    """[F] int64 rank of each face within its frame (0 = first) in ``order``:
    "left-right" (box centre x, ties by y), "top-bottom" (centre y, ties by x), "size" (largest box first),
    "score" (highest first). Used by "index:N" selection and by the preview numbering."""
    if order not in ORDERS:
        raise InputError(f"face order: unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    cx = (faces.boxes[:, 0] + faces.boxes[:, 2]) / 2
    cy = (faces.boxes[:, 1] + faces.boxes[:, 3]) / 2
    key, tie = {"left-right": (cx, cy), "top-bottom": (cy, cx), "size": (-faces.areas(), cx),
                "score": (-faces.scores, cx)}[order]
    return rank_within_frame(faces.frame_index, key, faces.num_frames, tiebreak=tie)


def _one_per_frame(faces: DetectedFaces, value: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """[F] bool: per frame, the face with the highest ``value`` among ``valid`` ones (ties: the first face)."""
    f = len(faces)
    fi = faces.frame_index
    v = value.float() if valid is None else torch.where(valid, value.float(), torch.full_like(value.float(),
                                                                                          float("-inf")))
    best = torch.full((faces.num_frames,), float("-inf"), device=v.device).scatter_reduce(0, fi, v, "amax")
    cand = v == best[fi]
    if valid is not None:
        cand &= valid
    pos = torch.arange(f, device=v.device)
    first = torch.full((faces.num_frames,), f, device=v.device, dtype=torch.int64).scatter_reduce(
        0, fi, torch.where(cand, pos, torch.full_like(pos, f)), "amin")
    return cand & (pos == first[fi])


def select_faces(faces: DetectedFaces, selection: FaceSelection | str, *,
                 reference_distance: torch.Tensor | None = None) -> torch.Tensor:
    """[F] bool mask of the faces to swap. Batched over all frames (scatter ops over frame_index).

    reference_distance: [F] distance of each face to the reference identity (official: MSE of raw ArcFace
    embeddings), required for "reference".
    """
    sel = FaceSelection.parse(selection)
    f = len(faces)
    dev = faces.device
    if sel.how == "reference":
        if reference_distance is None:
            raise InputError("face selection 'reference': needs reference_distance [F] (distance of each face to "
                             "the reference identity); pass a reference identity")
        d = torch.as_tensor(reference_distance, device=dev).float().reshape(-1)
        if d.shape[0] != f:
            raise InputError(f"face selection 'reference': reference_distance has {d.shape[0]} values for {f} faces")
    if f == 0:
        return torch.zeros(0, dtype=torch.bool, device=dev)
    if sel.how == "all":
        return torch.ones(f, dtype=torch.bool, device=dev)
    if sel.how == "largest":
        return _one_per_frame(faces, faces.areas())
    if sel.how == "best":
        return _one_per_frame(faces, faces.scores)
    if sel.how == "index":
        rank = order_faces(faces, sel.order)
        want = torch.tensor(sel.indices, dtype=torch.int64, device=dev)
        return (rank[:, None] == want[None, :]).any(1)
    below = d < sel.threshold  # official: swap only if min distance < id_thres
    if sel.all_matches:
        return below
    return _one_per_frame(faces, -d, valid=below)


def assign_identities(faces: DetectedFaces, selection: FaceSelection | str, kept: torch.Tensor,
                      num_identities: int) -> torch.Tensor:
    """[K] int64: which of ``num_identities`` source identities each kept face gets (several sources -> several
    targets, like ReActor's source/target face indices).

    faces: the candidate faces the selection ran on; kept: [K] int64 indices into them (the selected faces).
    "index:a,b,c": identity k goes to the k-th LISTED face number (face a gets identity 0, b identity 1, ...),
    cycled when there are fewer identities than listed faces. "all": the face numbered r in the selection's order
    gets identity r (cycled), so "all" and "index:0,1,2,..." agree. Every other selection (one face per frame, or
    reference matches) uses identity 0. Batched: no loop over faces.
    """
    sel = FaceSelection.parse(selection)
    kept = kept.to(faces.device, torch.int64)
    if num_identities <= 1 or kept.numel() == 0 or sel.how not in ("index", "all"):
        return torch.zeros(kept.shape[0], dtype=torch.int64, device=faces.device)
    rank = order_faces(faces, sel.order)[kept]
    if sel.how == "all":
        return rank % num_identities
    want = torch.tensor(sel.indices, dtype=torch.int64, device=faces.device)
    position = (rank[:, None] == want[None, :]).to(torch.int64).argmax(1)  # where in the list each face is
    return position % num_identities
