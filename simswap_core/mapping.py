"""Several identities in one pass: which identity goes to which target face.

An ``IdentityMap`` is a list of ``MapEntry`` (slot k = entries[k]), each naming one source identity and how its
target faces are found:

  reference  a photo of the person to replace (its Identity): SimSwap's "multi-specific" matching by the MSE of
             raw ArcFace embeddings (``identity.reference_distance``) below the entry's threshold (official
             --id_thres 0.03). In every frame each reference goes to its closest face, closest pairs first, so a face
             gets at most one identity and a reference at most one face per frame (the official script lets one
             reference take several faces of a frame; here two look-alikes never get the same swap).
  index      the face numbered ``index`` in the map's ``order`` in its frame (as 'SimSwap Detect Faces' numbers
             them).
  track      every face of track ``track`` (``DetectedFaces.track_id``, from ``tracking.FaceTracker``).

``assign_faces`` applies a map to the faces of a batch, batched over faces (the only loops run over the map's
references, a handful, and, with per-stream memory, over the frames in time order). Faces that no entry maps are
left alone. With ``track_slots`` (the per-stream memory ``temporal.TemporalState.track_slots``) a track that got an
identity keeps it in later frames: a turned head that no longer matches its reference stays swapped unless another
face of that frame matches the reference better, and people who change places keep their index identity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .errors import InputError
from .faces import DetectedFaces
from .identity import Identity, check_identity

BY = ("reference", "index", "track")
ORDERS = ("left-right", "top-bottom", "size", "score")
DEFAULT_THRESHOLD = 0.03  # official --id_thres: MSE of raw ArcFace embeddings
MAX_INDEX = 9999          # face numbers / track ids as the previews show them; larger numbers are typos


@dataclass(frozen=True)
class MapEntry:
    """One identity and the faces it goes to.

    identity: the source identity swapped in. by: "reference" | "index" | "track". reference: the Identity of the
    person to replace (by = reference). index: face number in the map's order (by = index). track: track id (by =
    track). threshold: maximum reference distance (raw-embedding MSE; by = reference). label: a name for messages
    (e.g. the source file's name; empty = "#k")."""

    identity: Identity
    by: str
    reference: Identity | None = None
    index: int | None = None
    track: int | None = None
    threshold: float = DEFAULT_THRESHOLD
    label: str = ""

    def __post_init__(self) -> None:
        if self.by not in BY:
            raise InputError(f"identity map: 'by' must be one of {', '.join(BY)}, got {self.by!r}")
        if self.by == "reference" and self.reference is None:
            raise InputError("identity map: a reference entry needs the reference identity (a photo of the person "
                             "to replace)")
        for name in ("index", "track"):
            value = getattr(self, name)
            if self.by == name and (not isinstance(value, int) or isinstance(value, bool)
                                    or not 0 <= value <= MAX_INDEX):
                raise InputError(f"identity map: {name} must be an integer 0..{MAX_INDEX}, got {value!r}")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= 1:
            raise InputError(f"identity map: threshold must be in (0, 1] (raw ArcFace MSE; official 0.03), got {t!r}")

    def target(self, order: str = "left-right") -> str:
        """'reference (threshold 0.03)' / 'face index 1 (left-right)' / 'track 3': the faces this entry maps."""
        if self.by == "reference":
            return f"reference (threshold {self.threshold:g})"
        if self.by == "index":
            return f"face index {self.index} ({order})"
        return f"track {self.track}"


@dataclass(frozen=True)
class IdentityMap:
    """Identities mapped onto target faces (see module doc). entries: slot k = entries[k] (``SwapResult.
    identity_slots`` index them); order: how index entries number the faces of a frame."""

    entries: tuple[MapEntry, ...] = ()
    order: str = "left-right"

    def __post_init__(self) -> None:
        if isinstance(self.entries, list):
            object.__setattr__(self, "entries", tuple(self.entries))
        if self.order not in ORDERS:
            raise InputError(f"identity map: order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if not all(isinstance(e, MapEntry) for e in self.entries):
            raise InputError("identity map: entries must be MapEntry records")

    def add(self, entry: MapEntry, order: str | None = None) -> IdentityMap:
        """A new map with ``entry`` appended (this one is not changed); ``order`` replaces the map's order (an error
        when index entries already use another order)."""
        new_order = self.order if order is None else order
        if new_order != self.order and entry.by == "index" and any(e.by == "index" for e in self.entries):
            raise InputError(f"order: the identity map numbers faces {self.order} for its face-index entries; "
                             f"use the same order for every face-index entry (got {new_order})")
        if new_order != self.order and any(e.by == "index" for e in self.entries):
            new_order = self.order  # keep the numbering of the entries already made
        return IdentityMap(self.entries + (entry,), new_order)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def identities(self) -> list[Identity]:
        """The source identities, slot k = entries[k]."""
        return [e.identity for e in self.entries]

    @property
    def references(self) -> list[Identity]:
        """The reference identities of the reference entries, in entry order (the columns of ``distances``)."""
        return [e.reference for e in self.entries if e.by == "reference" and e.reference is not None]

    @property
    def needs_arcface(self) -> bool:
        """True when faces are matched by reference (ArcFace embeddings of every candidate face)."""
        return any(e.by == "reference" for e in self.entries)

    @property
    def needs_tracks(self) -> bool:
        """True when an entry maps a track id (the faces must come from a tracker)."""
        return any(e.by == "track" for e in self.entries)

    def label(self, k: int) -> str:
        """The name of slot k for messages: its label, else '#k'."""
        return self.entries[k].label or f"#{k}"

    def describe(self) -> str:
        """'#0 -> reference (threshold 0.03); bob.png -> face index 1 (left-right)': one line for a person."""
        if not self.entries:
            return "an empty identity map"
        return "; ".join(f"{self.label(k)} -> {e.target(self.order)}" for k, e in enumerate(self.entries))

    def summary(self, faces_per_identity: list[int] | torch.Tensor) -> str:
        """'identities: alice.png -> 12 faces (face index 0 (left-right)); #1 -> no face (track 3)': what each
        entry got (faces_per_identity[k]: faces swapped with slot k, e.g. ``RunSummary.faces_per_identity`` or a
        bincount of ``SwapResult.identity_slots``)."""
        counts = [int(c) for c in (faces_per_identity.tolist() if isinstance(faces_per_identity, torch.Tensor)
                                   else faces_per_identity)]
        parts = []
        for k, e in enumerate(self.entries):
            n = counts[k] if k < len(counts) else 0
            got = "no face" if n == 0 else f"{n} face{'s' if n != 1 else ''}"
            parts.append(f"{self.label(k)} -> {got} ({e.target(self.order)})")
        return "identities: " + "; ".join(parts)

    def to(self, device: torch.device | str) -> IdentityMap:
        """The map with every identity on ``device``."""
        return IdentityMap(tuple(replace(e, identity=e.identity.to(device),
                                         reference=None if e.reference is None else e.reference.to(device))
                                 for e in self.entries), self.order)


def check_identity_map(identity_map: object, what: str = "identity_map") -> IdentityMap:
    """``identity_map`` if it is a usable IdentityMap (at least one entry, every identity valid), else InputError
    naming ``what``."""
    if not isinstance(identity_map, IdentityMap):
        raise InputError(f"{what}: expected an IdentityMap (SimSwap Map Identity / --map), got "
                         f"{type(identity_map).__name__}")
    if not identity_map.entries:
        raise InputError(f"{what}: the identity map is empty; add at least one identity")
    for k, e in enumerate(identity_map.entries):
        check_identity(e.identity, f"{what} entry {identity_map.label(k)}: identity")
        if e.reference is not None:
            check_identity(e.reference, f"{what} entry {identity_map.label(k)}: reference")
    tracks = [e.track for e in identity_map.entries if e.by == "track" and e.track is not None]
    indices = [e.index for e in identity_map.entries if e.by == "index" and e.index is not None]
    for name, values in (("track", tracks), ("face index", indices)):
        dup = sorted({v for v in values if values.count(v) > 1})
        if dup:
            raise InputError(f"{what}: {name} {dup[0]} is mapped twice; each {name} can get only one identity")
    return identity_map


def reference_distances(embeddings: torch.Tensor, identity_map: IdentityMap) -> torch.Tensor:
    """[F,R] raw-embedding MSE of faces (embeddings [F,512] raw ArcFace) to the map's R references (the columns in
    entry order), as ``identity.reference_distance`` does for one reference."""
    refs = [r.embedding.to(embeddings.device, torch.float32).reshape(-1) for r in identity_map.references]
    if not refs:
        return embeddings.new_zeros(embeddings.shape[0], 0)
    ref = torch.stack(refs)                                             # [R,512]
    emb = embeddings.float()
    # mean((e - r)^2) = (|e|^2 - 2 e.r + |r|^2) / 512, one matrix product for all pairs
    d = (emb.pow(2).sum(1, keepdim=True) - 2 * emb @ ref.T + ref.pow(2).sum(1)[None]) / emb.shape[1]
    return d.clamp(min=0)


def assign_faces(faces: DetectedFaces, identity_map: IdentityMap, *, distances: torch.Tensor | None,
                 track_slots: dict[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which faces get which identity of the map -> (keep [F] bool, slots [F] int64: entry index, -1 = not kept).

    faces: the candidate faces of a batch (frame order). distances: [F,R] distance of each face to each reference
    of the map (``reference_distances``; R = reference entries in entry order), required when the map has
    reference entries. track_slots: per-stream memory {track id: slot}, read and updated (None = no memory).

    Per frame: track entries first (every face of that track), then faces keeping their track's slot (sticky, see
    module doc), then the reference matching (closest pairs below their threshold first; a face and a reference
    used once), then index entries (the face numbered so in ``order`` among all the frame's candidates, when it is
    still free and no face of the frame holds that slot already)."""
    f, dev = len(faces), faces.device
    refs = [k for k, e in enumerate(identity_map.entries) if e.by == "reference"]
    if refs:
        if distances is None:
            raise InputError("identity map: reference entries need the distances [F,R] of the faces to the "
                             "references (ArcFace)")
        distances = torch.as_tensor(distances, device=dev).float().reshape(f, -1)
        if distances.shape[1] != len(refs):
            raise InputError(f"identity map: distances has {distances.shape[1]} columns for {len(refs)} references")
    else:
        distances = torch.zeros(f, 0, device=dev)
    if f == 0:
        return torch.zeros(0, dtype=torch.bool, device=dev), torch.zeros(0, dtype=torch.int64, device=dev)
    tracks = faces.track_id.to(dev) if faces.track_id is not None else None
    if track_slots is None or tracks is None:
        slots = _assign(faces, identity_map, distances, refs, torch.full((f,), -1, dtype=torch.int64, device=dev))
        return slots >= 0, slots
    # per-stream memory: frames in time order, each seeing what the earlier frames decided
    slots = torch.full((f,), -1, dtype=torch.int64, device=dev)
    counts = faces.counts()
    all_ids = tracks.tolist()                         # the faces' track ids, fetched once for the whole call
    start = 0
    tracked_kinds = torch.tensor([e.by != "track" for e in identity_map.entries], device=dev)
    for i, c in enumerate(counts):
        if c == 0:
            continue
        sl = slice(start, start + c)
        start += c
        frame = DetectedFaces(faces.boxes[sl], faces.points[sl], faces.scores[sl],           # faces are in frame
                              torch.zeros(c, dtype=torch.int64, device=dev), [faces.frame_sizes[i]],  # order: a
                              tracks[sl], None if faces.interpolated is None else faces.interpolated[sl])  # slice
        ids = all_ids[sl]
        sticky = torch.tensor([track_slots.get(t, -1) if t >= 0 else -1 for t in ids], dtype=torch.int64,
                              device=dev)
        got = _assign(frame, identity_map, distances[sl], refs, sticky)
        slots[sl] = got
        remember = (got >= 0) & tracked_kinds[got.clamp(min=0)]
        got_, remember_, sticky_ = torch.stack([got, remember.long(), sticky]).tolist()    # one host copy
        for t, s, r, old in zip(ids, got_, remember_, sticky_):
            if t < 0:
                continue
            if r:
                track_slots[t] = s
            elif old >= 0 and s != old:
                track_slots.pop(t, None)  # another face took this track's reference: it is someone else
    return slots >= 0, slots


def _assign(faces: DetectedFaces, identity_map: IdentityMap, distances: torch.Tensor, refs: list[int],
            sticky: torch.Tensor) -> torch.Tensor:
    """[F] slots of the faces (-1 = none), batched over frames; ``sticky`` [F]: the slot each face's track had
    (-1 = none). See ``assign_faces``."""
    from .detection.select import order_faces

    f, n, dev = len(faces), faces.num_frames, faces.device
    fi = faces.frame_index.to(dev)
    entries = identity_map.entries
    k_total = len(entries)
    slots = torch.full((f,), -1, dtype=torch.int64, device=dev)
    held = torch.zeros(n, k_total, dtype=torch.bool, device=dev)  # [N,K] slot k already given in frame i

    def give(mask: torch.Tensor, slot: torch.Tensor) -> None:
        nonlocal slots, held
        mask = mask & (slots < 0)
        slots = torch.where(mask, slot, slots)
        given = torch.zeros(held.shape, dtype=torch.int64, device=dev).index_put_(
            (fi, slot.clamp(min=0)), mask.long(), accumulate=True)       # a scatter: no host sync
        held = held | (given > 0)

    # 1. track entries
    tracks = faces.track_id.to(dev) if faces.track_id is not None else None
    if tracks is not None:
        for k, e in enumerate(entries):
            if e.by == "track":
                give(torch.eq(tracks, int(e.track or 0)), torch.full_like(slots, k))
    # 2. sticky slots of tracks (index entries always; reference entries unless another face matches better)
    sticky = sticky.to(dev)
    col = torch.full((k_total,), -1, dtype=torch.int64, device=dev)
    if refs:
        col[torch.tensor(refs, device=dev)] = torch.arange(len(refs), device=dev)
    thr = torch.tensor([e.threshold for e in entries], device=dev)
    has = sticky >= 0
    # computed even when no face has a sticky slot (an all-False mask gives nothing): no host sync
    s = sticky.clamp(min=0)
    c = col[s]
    is_ref = has & (c >= 0)
    if refs:
        valid = distances < thr[torch.tensor(refs, device=dev)][None]
        d = torch.where(valid, distances, torch.full_like(distances, math.inf))
        best = torch.full((n, len(refs)), math.inf, device=dev).scatter_reduce(
            0, fi[:, None].expand(-1, len(refs)), d, "amin")                    # [N,R] best valid match
        own = distances.gather(1, c.clamp(min=0)[:, None])[:, 0]
        beaten = is_ref & (best[fi, c.clamp(min=0)] < own)
        has = has & ~beaten
    # one face per slot and frame: the first face of the frame whose track holds it
    give(has & ~held[fi, s] & _first_per_key(fi * k_total + s, has, n * k_total), s)
    # 3. reference matching, closest pairs first
    if refs:
        ref_slots = torch.tensor(refs, device=dev)
        thr_r = thr[ref_slots]
        d = torch.where(distances < thr_r[None], distances, torch.full_like(distances, math.inf))
        for _ in range(len(refs)):
            free = (slots < 0)[:, None] & ~held[fi][:, ref_slots]                  # [F,R]
            dd = torch.where(free, d, torch.full_like(d, math.inf))
            m, r = dd.min(1)                                                        # per face: closest free ref
            best = torch.full((n,), math.inf, device=dev).scatter_reduce(0, fi, m, "amin")
            pick = torch.isfinite(m) & (m == best[fi])
            pos = torch.arange(f, device=dev)
            first = torch.full((n,), f, dtype=torch.int64, device=dev).scatter_reduce(
                0, fi, torch.where(pick, pos, torch.full_like(pos, f)), "amin")
            pick &= pos == first[fi]                                                # one pair per frame a round
            if not pick.any():
                break
            give(pick, ref_slots[r])
    # 4. index entries
    index_entries = [(k, e.index) for k, e in enumerate(entries) if e.by == "index"]
    if index_entries:
        rank = order_faces(faces, identity_map.order)
        for k, number in index_entries:
            give((rank == number) & ~held[fi, k], torch.full_like(slots, k))
    return slots


def _first_per_key(key: torch.Tensor, valid: torch.Tensor, size: int) -> torch.Tensor:
    """[F] bool: among the ``valid`` faces, the first one of each key value (e.g. frame * K + slot) in 0..size-1
    (``size`` known on the host: no device sync for the table)."""
    f = key.shape[0]
    pos = torch.arange(f, device=key.device)
    k = torch.where(valid, key, torch.zeros_like(key))
    first = torch.full((max(size, 1),), f, dtype=torch.int64, device=key.device).scatter_reduce(
        0, k, torch.where(valid, pos, torch.full_like(pos, f)), "amin")
    return valid & (pos == first[k])
