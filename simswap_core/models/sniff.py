"""What a model file IS, read from its header (never from its name), without loading any weight; cached.

``sniff_model_file(path)`` answers a :class:`Sniffed` record whose ``kind`` is one of

* ``"generator"``, ``"arcface"``, ``"parser"``: a SimSwap generator (``crop_size`` 224 or 512), SimSwap's ArcFace
  identity encoder, the BiSeNet face parser, told from the state-dict KEY NAMES (and the generator's layer shapes);
* ``"identity"``: a saved SimSwap identity (``.safetensors`` holding exactly ``latent`` and ``embedding``);
* ``"detector"``: an ONNX face detector this pack runs (``detail`` ``"yunet"`` or ``"scrfd"`` with key points);
* ``"swapper"``, ``"recognition"``, ``"genderage"``, ``"landmarks"``, ``"other"``: ONNX models of other packs
  (inswapper_128, w600k_r50 / glintr100, genderage, 1k3d68 / 2d106det, anything else), told from the graph's
  inputs and outputs;
* ``"sam"``: a Segment Anything (SAM v1) checkpoint, ``detail`` its layout ``"vit_b"`` / ``"vit_l"`` / ``"vit_h"``
  (or ``"sam_custom"``), told from its ``image_encoder.*`` / ``prompt_encoder.*`` / ``mask_decoder.*`` keys;
* other torch kinds of :mod:`.checkpoints` (``"patch_discriminator"``...), or ``"unknown"``: a file whose keys
  match nothing known, or that cannot be read (``error`` says why; sniffing never raises for a bad file).

How each container is read, cheaply and without running anything from the file:

* ``.pth``/``.tar``/``.pt``... zip checkpoints: the zip directory and ``data.pkl`` only, through the allow-list
  unpickler (:func:`.pickle_containers.load_checkpoint_pickle`); tensors stay lazy records, no storage is read.
  Legacy (torch < 1.6) pickles: the same reader (it reads at most the first 32 MiB of the file).
* ``.safetensors``: the JSON header only (:func:`.safetensors_header.read_safetensors_header`).
* ``.onnx``: the protobuf is WALKED field by field and only ``graph.input``, ``graph.output`` and the initializer
  names are read; every other field (weights, nodes) is skipped with a seek, so a 550 MB inswapper costs a few
  thousand small reads, not 550 MB. The model is never run and external data is never opened.

Results are cached in-process by (absolute path, size, mtime_ns), at most :data:`CACHE_SIZE` entries (least
recently used dropped first), so listing the same folder again costs one ``stat`` per file.
"""
from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .file_checks import read_varint

__all__ = ["CACHE_SIZE", "ONNX_KINDS", "Sniffed", "TORCH_KINDS", "clear_sniff_cache", "sniff_cache_info",
           "sniff_many", "sniff_model_file"]

#: kinds a torch/safetensors file can be (besides the extra ones of :func:`.checkpoints._detect_kind`)
TORCH_KINDS = ("generator", "arcface", "parser", "identity", "unknown")
#: kinds an ONNX file can be
ONNX_KINDS = ("detector", "swapper", "recognition", "genderage", "landmarks", "other", "unknown")
CACHE_SIZE = 4096

_MAX_FIELDS = 2_000_000         # protobuf fields walked in one ONNX file (a hostile file cannot loop for long)
_MAX_VALUE_INFO = 1 << 20       # bytes of one graph input/output description
_MAX_IO = 4096                  # graph inputs + outputs read


@dataclass(frozen=True)
class Sniffed:
    """What :func:`sniff_model_file` found.

    kind: see the module docstring. detail: a short refinement ("g224", "yunet", "scrfd", "scrfd without key
    points", ...) or ''. crop_size: a generator's crop size (224 / 512), else None. error: why a file is
    ``unknown`` (cannot be read, unsafe pickle...), else ''.
    """

    kind: str
    detail: str = ""
    crop_size: int | None = None
    error: str = ""


# ------------------------------------------------------------------------------------------------ cache
_CACHE: OrderedDict[tuple[str, int, int], Sniffed] = OrderedDict()
_LOCK = threading.Lock()
_STATS = {"hits": 0, "misses": 0}


def sniff_cache_info() -> dict[str, int]:
    """{"hits", "misses", "size"} of the cache since the last :func:`clear_sniff_cache` (tests, benchmarks)."""
    with _LOCK:
        return {**_STATS, "size": len(_CACHE)}


def clear_sniff_cache() -> None:
    with _LOCK:
        _CACHE.clear()
        _STATS.update(hits=0, misses=0)


def sniff_model_file(path: str | os.PathLike) -> Sniffed:
    """What the file at ``path`` is (see the module docstring); cached by path + size + mtime_ns.

    Never raises for a bad, hostile or unreadable file: it is ``Sniffed("unknown", error=...)``; a missing file
    or a folder too (and those answers are not cached)."""
    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError as exc:
        return Sniffed("unknown", error=f"{p}: cannot be read ({exc.strerror or exc})")
    if not stat.S_ISREG(st.st_mode):
        return Sniffed("unknown", error=f"{p}: not a regular file")
    key = (p, int(st.st_size), int(st.st_mtime_ns))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            _STATS["hits"] += 1
            return hit
        _STATS["misses"] += 1
    result = _sniff_uncached(Path(p))
    with _LOCK:
        _CACHE[key] = result
        _CACHE.move_to_end(key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return result


def _sniff_uncached(path: Path) -> Sniffed:
    from .model_file import check_model_file, sniff_format

    try:
        check_model_file(path, "a model file")
        fmt = sniff_format(path)
        if fmt == "safetensors":
            return _sniff_safetensors(path)
        if fmt in ("zip", "legacy"):
            return _sniff_pickle(path)
        if path.suffix.lower() == ".onnx" or fmt == "unknown":
            return _sniff_onnx(path)
        return Sniffed("unknown", error=f"{path}: a {fmt} file, not a model this pack reads")
    except Exception as exc:  # a file that cannot be sniffed is 'unknown', never an error here
        text = str(exc) or type(exc).__name__
        return Sniffed("unknown", error=text[:500])


# ------------------------------------------------------------------------------------------------ torch
def _from_state(state: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> Sniffed:
    """Classify by key names (and, for a generator, the layer shapes that give its crop size)."""
    from .checkpoints import _detect_kind

    keys = set(state)
    if keys == {"latent", "embedding"}:
        return Sniffed("identity")
    kind = _detect_kind(state)
    if kind == "sam":
        from ..networks.sam import SamConfig, sam_state

        try:
            return Sniffed("sam", detail=SamConfig.from_state_dict(sam_state(state)).arch)
        except (KeyError, ValueError, IndexError) as exc:
            return Sniffed("unknown", error=f"SAM keys are incomplete or inconsistent ({exc})"[:500])
    if kind != "generator":
        return Sniffed(kind)
    from ..networks.generator import GeneratorConfig

    config = GeneratorConfig.from_state_dict(state)
    crop = config.default_crop_size
    raw = (metadata or {}).get("crop_size")
    if raw is not None and str(raw).isdigit():
        crop = int(raw)
    return Sniffed("generator", detail=config.arch, crop_size=crop)


def _sniff_safetensors(path: Path) -> Sniffed:
    from .safetensors_header import read_safetensors_header

    header = read_safetensors_header(path)
    if set(header.tensors) == {"latent", "embedding"}:
        return Sniffed("identity")
    return _from_state(header.meta_state(), header.metadata)


def _sniff_pickle(path: Path) -> Sniffed:
    """The keys of a torch checkpoint, from its pickle only: no storage is read (tensors are lazy records)."""
    from .checkpoints import _unwrap
    from .pickle_containers import load_checkpoint_pickle

    def finish(obj: Any) -> Sniffed:
        state, _how = _unwrap(obj, str(path))
        return _from_state(state)

    return load_checkpoint_pickle(path, finish)


# ------------------------------------------------------------------------------------------------ onnx
class _Proto:
    """A protobuf walker over a file: reads tags and lengths, skips payloads with a seek."""

    def __init__(self, fh: BinaryIO, size: int, source: str) -> None:
        self.fh, self.size, self.source, self.fields = fh, size, source, 0

    def varint(self) -> int | None:
        """The next varint (file_checks.read_varint: a CheckpointError, a ValueError, for a bad one), None at the
        end of the file."""
        return read_varint(self.fh, self.source)

    def fields_of(self, start: int, end: int) -> Any:
        """Yield (field number, wire type, payload offset, payload length) of one message between start and end;
        varint payloads are yielded as (number, 0, value, 0). The caller may read the payload; the walker seeks
        past it afterwards."""
        pos = start
        while pos < end:
            self.fh.seek(pos)
            self.fields += 1
            if self.fields > _MAX_FIELDS:
                raise ValueError(f"{self.source}: more than {_MAX_FIELDS:,} protobuf fields; not a model this "
                                 f"pack reads")
            tag = self.varint()
            if tag is None:
                raise ValueError(f"{self.source}: a protobuf message is cut off (truncated)")
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise ValueError(f"{self.source}: protobuf field number 0; not an ONNX model")
            if wire == 0:
                value = self.varint()
                if value is None:
                    raise ValueError(f"{self.source}: a protobuf varint is cut off (truncated)")
                pos = self.fh.tell()
                yield number, 0, value, 0
                continue
            if wire == 1:
                length = 8
            elif wire == 5:
                length = 4
            elif wire == 2:
                n = self.varint()
                if n is None:
                    raise ValueError(f"{self.source}: a protobuf length is cut off (truncated)")
                length = n
            else:
                raise ValueError(f"{self.source}: protobuf wire type {wire}; not an ONNX model")
            offset = self.fh.tell()
            if offset + length > end:
                raise ValueError(f"{self.source}: field {number} needs {length:,} bytes past the end of its "
                                 f"message (truncated or not an ONNX model)")
            pos = offset + length
            yield number, wire, offset, length

    def read(self, offset: int, length: int) -> bytes:
        self.fh.seek(offset)
        return self.fh.read(length)


@dataclass(frozen=True)
class _Signature:
    inputs: list[tuple[str, list[int | str]]]   # graph inputs that are not initializers: name, shape
    outputs: list[tuple[str, list[int | str]]]


def _value_info(data: bytes) -> tuple[str, list[int | str]]:
    import onnx

    vi = onnx.ValueInfoProto.FromString(data)
    shape: list[int | str] = []
    if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
        for d in vi.type.tensor_type.shape.dim:
            shape.append(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?"))
    return vi.name, shape


def _onnx_signature(path: Path) -> _Signature:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        walker = _Proto(fh, size, str(path))
        graph: tuple[int, int] | None = None
        for number, wire, offset, length in walker.fields_of(0, size):
            if number == 7 and wire == 2:
                graph = (offset, length)
        if graph is None:
            raise ValueError(f"{path}: a protobuf without a graph; expected an ONNX model")
        ins: list[bytes] = []
        outs: list[bytes] = []
        init_names: set[str] = set()
        init_spans: list[tuple[int, int]] = []
        for number, wire, offset, length in walker.fields_of(graph[0], graph[0] + graph[1]):
            if wire != 2 or number not in (5, 11, 12):
                continue
            if number == 5:
                init_spans.append((offset, length))
                continue
            if length > _MAX_VALUE_INFO or len(ins) + len(outs) >= _MAX_IO:
                raise ValueError(f"{path}: an oversized graph input/output list; not a model this pack reads")
            (ins if number == 11 else outs).append(walker.read(offset, length))
        if len(ins) > 1:  # old exporters list the weights among the inputs: drop the initializers' names
            for offset, length in init_spans:
                for number, wire, off, n in walker.fields_of(offset, offset + length):
                    if number == 8 and wire == 2 and n <= 4096:
                        init_names.add(walker.read(off, n).decode("utf-8", "replace"))
                        break
    inputs = [v for v in map(_value_info, ins) if v[0] not in init_names]
    return _Signature(inputs, [_value_info(b) for b in outs])


def _classify_onnx(sig: _Signature) -> Sniffed:
    from ..detection.yunet import YUNET_OUTPUTS

    names = [n for n, _ in sig.outputs]
    n_out = len(names)
    if set(YUNET_OUTPUTS) <= set(names):
        return Sniffed("detector", "yunet")
    if len(sig.inputs) == 2:
        return Sniffed("swapper", "two inputs (a face and an identity), like inswapper_128")
    if len(sig.inputs) != 1:
        return Sniffed("other", f"{len(sig.inputs)} inputs")
    shape = sig.inputs[0][1]
    hw = tuple(shape[-2:]) if len(shape) == 4 else ()
    if n_out in (9, 15):
        return Sniffed("detector", "scrfd")
    if n_out in (6, 10):
        return Sniffed("other", "scrfd without key points (faces cannot be aligned)")
    if hw == (112, 112) and n_out == 1:
        return Sniffed("recognition", "a 112x112 face recognition model (e.g. w600k_r50, glintr100)")
    if hw == (96, 96):
        return Sniffed("genderage", "a 96x96 gender/age model (insightface genderage)")
    if hw == (192, 192):
        return Sniffed("landmarks", "a 192x192 landmark model (e.g. 1k3d68, 2d106det)")
    return Sniffed("other", f"{n_out} outputs, input {shape}")


def _sniff_onnx(path: Path) -> Sniffed:
    return _classify_onnx(_onnx_signature(path))


def sniff_many(paths: list[str | os.PathLike], keep: Callable[[Sniffed], bool]) -> list[str]:
    """The ``paths`` whose sniffed kind passes ``keep`` (order kept)."""
    return [os.fspath(p) for p in paths if keep(sniff_model_file(p))]
