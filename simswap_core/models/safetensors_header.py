"""The header of a .safetensors file, read and checked before the safetensors library touches the file.

Standard library only: the installer checks downloads with it before torch is installed, and the loader maps the
dtype names to torch dtypes (:meth:`SafetensorsHeader.meta_state`). The first 8 bytes give the JSON header's
length; the header maps tensor names to ``dtype``, ``shape`` and ``data_offsets`` in the data section, plus
``__metadata__`` (str -> str). :func:`read_safetensors_header` bounds the header, checks every entry (a known
dtype, non-negative shape, offsets that match the shape) and that the tensors tile the data section exactly, in
order, with no gap, overlap or trailing bytes (as the safetensors library writes and requires);
:func:`check_metadata` range-checks the metadata keys SimSwap writes.
"""
from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, InputError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["CROP_SIZE_RANGE", "DTYPE_ITEM_BYTES", "MAX_HEADER_BYTES", "SafetensorsHeader", "check_crop_size",
           "check_metadata", "read_safetensors_header"]

MAX_HEADER_BYTES = 16 * 1024 * 1024
_MAX_ENTRIES = 20_000
_MAX_DIMS = 16
_MAX_METADATA_KEYS = 64
_MAX_METADATA_VALUE = 4096
#: crop sizes a generator file may declare (the released ones are 224 and 512)
CROP_SIZE_RANGE = (32, 2048)

#: the safetensors dtype names this reader accepts, with their item size in bytes (which of them a model may
#: hold is the loader's decision: :mod:`.checkpoints` refuses complex, float8 and unsigned weights by name)
DTYPE_ITEM_BYTES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8,
}
_TORCH_DTYPE_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "U16": "uint16", "U32": "uint32",
    "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64",
}
_KINDS = ("generator", "arcface", "parser", "detector", "patch_discriminator", "projected_discriminator",
          "efficientnet_lite0")
_EXPECTED = "a complete .safetensors file"


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: name -> (dtype name, shape, begin, end) offsets in the data section, and the metadata."""

    path: Path
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]]
    metadata: dict[str, str]

    def describe(self) -> str:
        """A short description for messages, e.g. 'a safetensors file of 12 tensors'."""
        return f"a safetensors file of {len(self.tensors)} tensors"

    def meta_state(self) -> dict[str, Tensor]:
        """The declared tensors as meta tensors (shapes and torch dtypes, no memory); imports torch."""
        import torch

        state: dict[str, Tensor] = {}
        for key, (dtype_name, shape, _, _) in self.tensors.items():
            dtype = getattr(torch, _TORCH_DTYPE_NAMES[dtype_name], None)
            if not isinstance(dtype, torch.dtype):
                raise CheckpointError(f"{self.path}: found tensor {key[:80]!r} of dtype {dtype_name}, which this "
                                      f"torch {torch.__version__} cannot represent; expected float32/16 weights")
            state[key] = torch.empty(shape, dtype=dtype, device="meta")
        return state


def read_safetensors_header(path: str | os.PathLike, source: str | None = None) -> SafetensorsHeader:
    """Read and check the header of ``path``; CheckpointError naming ``source`` (default: the path), what was
    found and what was expected. Reads the 8-byte length and the header only, never the data."""
    path = Path(path)
    name = source or str(path)

    def bad(found: str) -> CheckpointError:
        return CheckpointError(f"{name}: found {found}; expected {_EXPECTED}")

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) != 8:
                raise bad(f"a {len(head)}-byte file, shorter than the 8-byte header length")
            n = struct.unpack("<Q", head)[0]
            if not 2 <= n <= MAX_HEADER_BYTES or n + 8 > size:
                raise bad(f"a declared header of {n:,} bytes in a {size:,}-byte file (limit "
                          f"{MAX_HEADER_BYTES:,} bytes)")
            raw = fh.read(n)
    except OSError as exc:
        raise CheckpointError(f"{name}: cannot be read ({exc.strerror or exc}); expected {_EXPECTED}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad(f"a header that is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(header, dict):
        raise bad(f"a header of type {type(header).__name__}, not a JSON object")
    if len(header) > _MAX_ENTRIES:
        raise bad(f"{len(header):,} header entries (limit {_MAX_ENTRIES:,})")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise bad("__metadata__ that is not a map of strings to strings")
    data_size = size - 8 - n
    tensors: dict[str, tuple[str, tuple[int, ...], int, int]] = {}
    for key, entry in header.items():
        where = f"tensor {key[:80]!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"a malformed entry for {where} (expected exactly dtype, shape and data_offsets)")
        dtype_name, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if not isinstance(dtype_name, str) or dtype_name not in DTYPE_ITEM_BYTES:
            raise bad(f"{where} of dtype {str(dtype_name)[:20]!r}, which this reader does not know (expected one "
                      f"of {', '.join(DTYPE_ITEM_BYTES)})")
        if not (isinstance(shape, list) and len(shape) <= _MAX_DIMS and all(type(v) is int and v >= 0
                                                                            for v in shape)):
            raise bad(f"{where} with shape {str(shape)[:80]} (expected at most {_MAX_DIMS} non-negative ints)")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(v) is int for v in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise bad(f"{where} with data offsets {str(offsets)[:80]} outside the {data_size:,} data bytes "
                      f"(truncated?)")
        nbytes = math.prod(shape) * DTYPE_ITEM_BYTES[dtype_name]
        if nbytes != offsets[1] - offsets[0]:
            raise bad(f"{where} {dtype_name}{shape} that needs {nbytes:,} bytes but its offsets span "
                      f"{offsets[1] - offsets[0]:,}")
        tensors[key] = (dtype_name, tuple(shape), offsets[0], offsets[1])
    _check_tiling(tensors, data_size, bad)
    return SafetensorsHeader(path, tensors, dict(metadata))


def _check_tiling(tensors: dict[str, tuple[str, tuple[int, ...], int, int]], data_size: int,
                  bad: Callable[[str], CheckpointError]) -> None:
    """The tensors, in offset order, cover the data section exactly: no overlap, gap or trailing bytes."""
    position, previous = 0, None
    for begin, end, key in sorted((b, e, k) for k, (_, _, b, e) in tensors.items()):
        if begin < position:
            raise bad(f"tensors {previous!r} and {key[:80]!r} sharing bytes (overlapping offsets)")
        if begin > position:
            raise bad(f"{begin - position:,} unused bytes before tensor {key[:80]!r} at offset {position:,} "
                      f"(spliced or damaged)")
        position, previous = end, key[:80]
    if position != data_size:
        raise bad(f"tensors covering {position:,} of the {data_size:,} data bytes (extra bytes after the last "
                  f"tensor: spliced or damaged)")


def check_crop_size(value: object, where: str) -> int:
    """A crop size as an int within :data:`CROP_SIZE_RANGE`; InputError naming ``where`` otherwise."""
    try:
        crop = int(str(value).strip()) if not isinstance(value, bool) else -1
    except ValueError:
        raise InputError(f"{where}: crop_size {str(value)[:40]!r} is not an integer; expected e.g. 224 or 512") \
            from None
    lo, hi = CROP_SIZE_RANGE
    if not lo <= crop <= hi:
        raise InputError(f"{where}: crop_size {crop} is outside {lo}..{hi}; expected e.g. 224 or 512")
    return crop


def check_metadata(metadata: dict[str, str], source: str) -> dict[str, str]:
    """The metadata of a SimSwap file with every known key type- and range-checked; CheckpointError naming the
    file, key and value otherwise. Unknown keys are kept (length-bounded)."""
    if len(metadata) > _MAX_METADATA_KEYS:
        raise CheckpointError(f"{source}: found {len(metadata)} metadata entries (limit {_MAX_METADATA_KEYS})")

    def bad(key: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{source}: metadata {key}={metadata[key][:60]!r} is invalid; expected {expected}")

    for key, value in metadata.items():
        if len(key) > 128 or len(value) > _MAX_METADATA_VALUE:
            raise CheckpointError(f"{source}: metadata entry {key[:60]!r} is too long (limit 128 / "
                                  f"{_MAX_METADATA_VALUE} characters)")
    if "kind" in metadata and metadata["kind"] not in _KINDS:
        raise bad("kind", f"one of {', '.join(_KINDS)}")
    if "format" in metadata and metadata["format"] != "simswap":
        raise bad("format", "'simswap'")
    if "crop_size" in metadata:
        try:
            check_crop_size(metadata["crop_size"], source)
        except InputError:
            raise bad("crop_size", f"an integer in {CROP_SIZE_RANGE[0]}..{CROP_SIZE_RANGE[1]} (224 or 512 for the "
                                   f"released models)") from None
    if "variant" in metadata:
        from ..networks.generator import normalize_variant

        try:
            normalize_variant(metadata["variant"])
        except InputError:
            raise bad("variant", "'official' or 'fix'") from None
    if "arch" in metadata and not re.fullmatch(r"[a-z0-9_]{1,32}", metadata["arch"]):
        raise bad("arch", "a layout name such as g224, g512 or ir_se_101")
    if "layers" in metadata and not re.fullmatch(r"\d{1,3}(,\d{1,3}){0,7}", metadata["layers"]):
        raise bad("layers", "comma-separated block counts such as 3,4,23,3")
    if "use_se" in metadata and metadata["use_se"] not in ("true", "false"):
        raise bad("use_se", "'true' or 'false'")
    return metadata
