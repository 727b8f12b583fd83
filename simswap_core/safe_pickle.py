"""Restricted loading of PyTorch pickle checkpoints: nothing from the file is ever executed.

``torch.load(weights_only=True)`` refuses the official ``arcface_checkpoint.tar``, because that file is a whole
pickled ``nn.Module`` (``models.arcface_models.ResNet``; the 2021 file is a dict whose ``'model'`` is a
``DataParallel``-wrapped ``models.ResNet``, next to ``models.ArcMarginModel`` and an optimizer). This module reads
such files with its own unpickler:

* ``find_class`` resolves ONLY an allow-list of names, and never imports anything. Module classes (SimSwap's
  ``ResNet``/``IRBlock``/``SEBlock`` and the ``torch.nn`` layers they hold) and the irrelevant extras (optimizers,
  ``ArcMarginModel``, ``torch.device``) become inert :class:`PickledObject` records that only store the state the
  pickle hands them; tensors are rebuilt by our own functions; ``OrderedDict``/``set``/dtypes are the real
  (harmless) objects. Any other global -- ``os.system``, ``builtins.eval``, ``subprocess.Popen``... -- raises
  :class:`~simswap_core.errors.UnsafeCheckpointError` naming it, before anything runs.
* Storages are read from the zip archive (torch >= 1.6 format) with :mod:`zipfile`, or from the legacy
  (torch < 1.6) stream format. The very old tar format and TorchScript archives are refused.

The result is plain data: dicts, tensors and :class:`PickledObject` trees; :func:`module_state_dict` turns a
pickled module tree into a ``state_dict`` without calling any of its code.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from .errors import CheckpointError, UnsafeCheckpointError

__all__ = ["PickledObject", "PickledModule", "module_state_dict", "restricted_load", "sniff_format"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class PickledObject:
    """Inert stand-in for an object of class ``pickle_global`` found in a checkpoint; stores args and state only."""

    pickle_global: str = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["pickle_args"] = args
        self.__dict__["pickle_state"] = None

    def __setstate__(self, state: Any) -> None:
        self.__dict__["pickle_state"] = state

    def __repr__(self) -> str:
        return f"<pickled {self.pickle_global}>"


class PickledModule(PickledObject):
    """Inert stand-in for a pickled ``nn.Module`` (its ``__dict__`` state: ``_parameters``, ``_buffers``, ``_modules``)."""


_STUB_CACHE: dict[str, type] = {}


def _stub(global_name: str, base: type) -> type:
    cls = _STUB_CACHE.get(global_name)
    if cls is None:
        cls = type(global_name.rsplit(".", 1)[-1], (base,), {"pickle_global": global_name, "__module__": __name__})
        _STUB_CACHE[global_name] = cls
    return cls


# ---------------------------------------------------------------------------------------------- allow-list
# Module classes of the official ArcFace pickles (both generations).
_SIMSWAP_MODULES = {
    ("models.arcface_models", "ResNet"), ("models.arcface_models", "IRBlock"), ("models.arcface_models", "SEBlock"),
    ("models", "ResNet"), ("models", "IRBlock"), ("models", "SEBlock"),
    # the 2021 file's margin head: an nn.Module too (the legacy format refers to every module class through a
    # "module" persistent record), kept as an inert record and never used
    ("models", "ArcMarginModel"), ("models.arcface_models", "ArcMarginModel"),
}
# torch.nn layers those modules are made of (matched by class name under torch.nn.modules.*).
_TORCH_NN_CLASSES = {
    "Conv2d", "BatchNorm1d", "BatchNorm2d", "PReLU", "ReLU", "MaxPool2d", "Dropout", "Linear", "Sequential",
    "ModuleList", "AdaptiveAvgPool2d", "Sigmoid", "Tanh", "Flatten", "Identity", "ReflectionPad2d", "Upsample",
}
# Objects that may sit next to the model in old training checkpoints; kept as inert records, never used.
_INERT = {
    ("torch", "device"), ("torch.nn.backends.thnn", "_get_thnn_function_backend"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
}
_OPTIMIZERS = {"SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "RAdam", "ASGD", "Rprop"}

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "float", "double", "half", "long", "int",
)}


class _StorageType:
    """What ``torch.FloatStorage`` & co. resolve to: only carries the dtype (no state a pickle could set)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to set the state of torch.{self.name} (BUILD on a type); "
                                    f"refused")


class _Storage:
    """A storage read from the checkpoint: a flat uint8 tensor plus its element dtype."""

    def __init__(self, data: Tensor, dtype: torch.dtype) -> None:
        self.data, self.dtype = data, dtype


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any) -> Tensor:
    """Our replacement of ``torch._utils._rebuild_tensor(_v2)``: a view of a checkpoint storage (bounds checked)."""
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"tensor record refers to {type(storage).__name__}, expected a storage")
    if not (isinstance(storage_offset, int) and all(isinstance(v, int) for v in (*size, *stride))
            and len(size) == len(stride)):
        raise CheckpointError(f"tensor record has invalid size/stride/offset {size!r} {stride!r} {storage_offset!r}")
    flat = storage.data.view(storage.dtype) if storage.dtype != torch.uint8 else storage.data
    try:
        return flat.as_strided(tuple(size), tuple(stride), storage_offset)
    except RuntimeError as exc:
        raise CheckpointError(f"tensor record does not fit its storage: {exc}") from None


def _rebuild_parameter(data: Any, *_ignored: Any) -> Tensor:
    """Parameters come back as plain tensors; requires_grad and backward hooks are dropped."""
    if not isinstance(data, Tensor):
        raise CheckpointError(f"parameter record holds {type(data).__name__}, expected a tensor")
    return data


class _Allowed:
    """An allow-listed function as the unpickler hands it out. Calling it calls ``fn`` with positional arguments
    only; it has no attributes a pickle could set (a BUILD opcode on it is refused), so a file can never alter
    our functions (e.g. their ``__defaults__``) for later loads."""

    __slots__ = ("fn", "name")

    def __init__(self, fn: Any, name: str) -> None:
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "name", name)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to set attribute {key!r} on the global '{self.name}'")

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to set the state of the global '{self.name}' (BUILD on a "
                                    f"function); refused")

    def __reduce__(self) -> Any:  # never pickled back out
        raise TypeError("allow-list entries cannot be pickled")

    def __repr__(self) -> str:
        return f"<allowed {self.name}>"


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Tensor:
    if not isinstance(func, _Allowed) or func.fn not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(
            args, tuple):
        raise CheckpointError("tensor subclass record uses an unexpected rebuild function")
    return func(*args)


class _TensorTypeMarker:
    """What ``torch.Tensor`` / ``torch.nn.Parameter`` resolve to: a name only, not callable, no settable state."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError("the pickle tries to set the state of torch.Tensor (BUILD on a type); refused")

    def __repr__(self) -> str:
        return "<tensor type>"


_TENSOR_TYPE = _TensorTypeMarker()


def _defaultdict(*args: Any) -> dict:
    """``collections.defaultdict`` is rebuilt as a plain dict (its factory is never called)."""
    return {}


def _allowed(module: str, name: str, fn: Any) -> tuple[tuple[str, str], _Allowed]:
    return (module, name), _Allowed(fn, f"{module}.{name}")


_FUNCTIONS: dict[tuple[str, str], Any] = {
    **dict([
        _allowed("torch._utils", "_rebuild_tensor_v2", _rebuild_tensor),
        _allowed("torch._utils", "_rebuild_tensor", _rebuild_tensor),
        _allowed("torch._utils", "_rebuild_parameter", _rebuild_parameter),
        _allowed("torch._utils", "_rebuild_parameter_with_state", _rebuild_parameter),
        _allowed("torch._tensor", "_rebuild_from_type_v2", _rebuild_from_type_v2),
        _allowed("torch.tensor", "_rebuild_from_type_v2", _rebuild_from_type_v2),
        _allowed("collections", "defaultdict", _defaultdict),
    ]),
    ("torch", "Tensor"): _TENSOR_TYPE,  # only ever an argument of _rebuild_from_type_v2
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("torch", "Size"): torch.Size,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "dict"): dict,
}


def _resolve(module: str, name: str, source: str) -> Any:
    """The allow-list. Returns our own object for ``module.name`` or raises UnsafeCheckpointError."""
    # protocol-2 pickles spell the builtins module the Python 2 way (set, frozenset, dict)
    key = ("builtins", name) if module == "__builtin__" else (module, name)
    if key in _FUNCTIONS:
        return _FUNCTIONS[key]
    if key in _SIMSWAP_MODULES:
        return _stub(f"{module}.{name}", PickledModule)
    if (module.startswith("torch.nn.modules.") or module in ("torch.nn", "torch.nn.parallel.data_parallel")) and (
            name in _TORCH_NN_CLASSES or name == "DataParallel"):
        return _stub(f"{module}.{name}", PickledModule)
    if key in _INERT or ((module == "torch.optim" or module.startswith("torch.optim.")) and name in _OPTIMIZERS):
        return _stub(f"{module}.{name}", PickledObject)
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _DTYPES:
        return _DTYPES[name]
    raise UnsafeCheckpointError(
        f"{source}: the pickle asks for the global '{module}.{name}', which is not on the allow-list of a SimSwap "
        f"checkpoint (model classes, torch layers, tensors); refused, nothing from the file was executed. "
        f"Only load checkpoints from a source you trust."
    )


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str, persistent_load: Any = None) -> None:
        super().__init__(file, encoding="utf-8")
        self._source = source
        self._pload = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        return _resolve(str(module), str(name), self._source)

    def persistent_load(self, pid: Any) -> Any:
        if self._pload is None:
            raise CheckpointError(f"{self._source}: unexpected persistent reference {pid!r} in a header pickle")
        return self._pload(pid)


def _plain_load(fh: BinaryIO, source: str) -> Any:
    return _RestrictedUnpickler(fh, source).load()


# ---------------------------------------------------------------------------------------------- file formats
def sniff_format(path: str | os.PathLike) -> str:
    """"zip", "legacy", "tar", "safetensors", "empty" or "unknown", from the first bytes of the file."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "empty"
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return "zip"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "legacy"
    if len(head) >= 9:
        n = struct.unpack("<Q", head[:8])[0]
        if 2 <= n < 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def _load_zip(path: Path, source: str) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{source}: not a readable PyTorch zip checkpoint ({exc}); the file may be truncated "
                              f"or corrupted") from None
    with zf:
        names = zf.namelist()
        if any(n.endswith("/constants.pkl") for n in names):
            raise CheckpointError(f"{source}: this is a TorchScript archive (torch.jit.save), not a checkpoint; "
                                  f"expected a state dict or the official pickled model")
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise CheckpointError(f"{source}: zip archive without a single '<archive>/data.pkl' record (found "
                                  f"{len(pkls)}); expected a torch.save checkpoint")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{source}: unknown byte order record {byteorder!r}")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                raise CheckpointError(f"{source}: unexpected persistent reference {pid!r}")
            _, stype, key, _location, numel = pid
            if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
                raise CheckpointError(f"{source}: malformed storage reference {pid!r}")
            if key in storages:
                return storages[key]
            name = f"{prefix}data/{key}"
            nbytes = numel * torch.empty((), dtype=stype.dtype).element_size()
            try:
                info = zf.getinfo(name)
            except KeyError:
                raise CheckpointError(f"{source}: storage record '{name}' is missing from the zip archive "
                                      f"(truncated or incomplete file)") from None
            if info.file_size != nbytes:
                raise CheckpointError(f"{source}: storage '{name}' holds {info.file_size} bytes, expected {nbytes}")
            data = torch.empty(nbytes, dtype=torch.uint8)
            try:
                with zf.open(info) as fh:
                    got = fh.readinto(memoryview(data.numpy())) if nbytes else 0
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise CheckpointError(f"{source}: cannot read storage '{name}' ({exc}); corrupted file") from None
            if got != nbytes:
                raise CheckpointError(f"{source}: storage '{name}' is truncated ({got} of {nbytes} bytes)")
            if byteorder != sys.byteorder and stype.dtype.itemsize > 1:
                data = data.view(-1, stype.dtype.itemsize).flip(1).reshape(-1).clone()
            storages[key] = _Storage(data, stype.dtype)
            return storages[key]

        try:
            payload = zf.read(pkls[0])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise CheckpointError(f"{source}: cannot read '{pkls[0]}' ({exc}); corrupted file") from None
        return _RestrictedUnpickler(io.BytesIO(payload), source, persistent_load).load()


def _load_legacy(path: Path, source: str) -> Any:
    with open(path, "rb") as fh:
        magic = _plain_load(fh, source)
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{source}: a pickle, but not a PyTorch checkpoint (no torch magic number)")
        protocol = _plain_load(fh, source)
        if protocol != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{source}: legacy PyTorch protocol {protocol!r} is not supported (expected 1001)")
        sys_info = _plain_load(fh, source)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", True):
            raise CheckpointError(f"{source}: big-endian legacy checkpoints are not supported")
        roots: dict[str, tuple[Tensor, torch.dtype]] = {}
        views: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> Any:
            if not isinstance(pid, tuple) or not pid:
                raise CheckpointError(f"{source}: unexpected persistent reference {pid!r}")
            kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
            if kind == "module" and len(pid) == 4:
                if not isinstance(pid[1], type) or not issubclass(pid[1], PickledModule):
                    raise CheckpointError(f"{source}: module reference to {pid[1]!r}")
                return pid[1]  # the class stand-in; the saved source code is ignored
            if kind != "storage" or len(pid) != 6:
                raise CheckpointError(f"{source}: unexpected persistent reference {pid!r}")
            _, stype, key, _location, numel, view = pid
            if not isinstance(stype, _StorageType) or not isinstance(numel, int) or numel < 0:
                raise CheckpointError(f"{source}: malformed storage reference {pid!r}")
            key = str(key)
            itemsize = torch.empty((), dtype=stype.dtype).element_size()
            if key not in roots:
                if numel * itemsize > os.path.getsize(path):
                    raise CheckpointError(f"{source}: storage {key} claims {numel} elements, more than the file holds")
                roots[key] = (torch.empty(numel * itemsize, dtype=torch.uint8), stype.dtype)
            data, dtype = roots[key]
            if view is None:
                return _Storage(data, dtype)
            vkey, offset, vsize = view
            if str(vkey) not in views:
                lo, hi = offset * itemsize, (offset + vsize) * itemsize
                if not (0 <= lo <= hi <= data.numel()):
                    raise CheckpointError(f"{source}: storage view {vkey} is out of bounds")
                views[str(vkey)] = _Storage(data[lo:hi], dtype)
            return views[str(vkey)]

        result = _RestrictedUnpickler(fh, source, persistent_load).load()
        keys = _plain_load(fh, source)
        if not isinstance(keys, list):
            raise CheckpointError(f"{source}: malformed storage key list")
        for key in keys:
            key = str(key)
            if key not in roots:
                raise CheckpointError(f"{source}: storage key {key} listed but never referenced")
            data, dtype = roots[key]
            itemsize = torch.empty((), dtype=dtype).element_size()
            header = fh.read(8)
            if len(header) != 8:
                raise CheckpointError(f"{source}: truncated before the data of storage {key}")
            numel = struct.unpack("<q", header)[0]
            if numel * itemsize != data.numel():
                raise CheckpointError(f"{source}: storage {key} has {numel} elements on disk, expected "
                                      f"{data.numel() // itemsize}")
            got = fh.readinto(memoryview(data.numpy())) if data.numel() else 0
            if got != data.numel():
                raise CheckpointError(f"{source}: storage {key} is truncated ({got} of {data.numel()} bytes)")
        return result


_EXPECTED = ("expected a complete PyTorch checkpoint (torch.save zip or legacy pickle: a state dict or the official "
             "pickled ArcFace model)")


def restricted_load(path: str | os.PathLike) -> Any:
    """Unpickle a torch checkpoint (zip or legacy format) with the allow-list; returns plain data.

    Tensors come back as CPU tensors, pickled modules as :class:`PickledModule` trees. Raises
    :class:`UnsafeCheckpointError` for a non-allow-listed global and :class:`CheckpointError` for a damaged file.
    """
    path = Path(path)
    source = str(path)
    fmt = sniff_format(path)
    try:
        if fmt == "zip":
            return _load_zip(path, source)
        if fmt == "legacy":
            return _load_legacy(path, source)
    except UnsafeCheckpointError as exc:
        if source not in str(exc):  # raised by a helper that does not know the file: name it
            raise UnsafeCheckpointError(f"{source}: {exc}; nothing from the file was executed") from None
        raise
    except CheckpointError as exc:
        msg = str(exc) if source in str(exc) else f"{source}: {exc}"
        if "expected" not in msg:
            msg += f"; {_EXPECTED}"
        if msg != str(exc):
            raise CheckpointError(msg) from None
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError,
            struct.error, RecursionError, MemoryError, OverflowError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{source}: found a corrupted or truncated pickle ({type(exc).__name__}: {exc}); "
                              f"{_EXPECTED}") from None
    if fmt == "tar":
        raise CheckpointError(f"{source}: a tar archive in the pre-2018 torch format is not supported; "
                              f"expected a torch.save checkpoint (zip or legacy pickle) or .safetensors")
    if fmt == "empty":
        raise CheckpointError(f"{source}: the file is empty; expected a PyTorch checkpoint")
    raise CheckpointError(f"{source}: found {fmt} data, expected a PyTorch checkpoint (zip or legacy pickle)")


# ---------------------------------------------------------------------------------------------- module trees
def module_state_dict(module: PickledModule, source: str = "checkpoint") -> dict[str, Tensor]:
    """``state_dict()`` of a pickled module tree, read from its stored ``_parameters``/``_buffers``/``_modules``.

    Order equals ``nn.Module.state_dict`` (parameters, then persistent buffers, then children, recursively).
    """
    out: dict[str, Tensor] = {}

    def walk(obj: Any, prefix: str, depth: int) -> None:
        if depth > 64:
            raise CheckpointError(f"{source}: pickled module nesting is too deep")
        state = obj.pickle_state
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slotstate)
            state = state[0]
        if not isinstance(state, dict):
            raise CheckpointError(f"{source}: pickled module {obj.pickle_global} has no attribute state")
        skip = state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            items = state.get(group) or {}
            if not isinstance(items, dict):
                raise CheckpointError(f"{source}: {obj.pickle_global}.{group} is {type(items).__name__}")
            for name, value in items.items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(name, str) or not isinstance(value, Tensor):
                    raise CheckpointError(f"{source}: {prefix}{name} of {obj.pickle_global} is not a tensor")
                out[prefix + name] = value
        children = state.get("_modules") or {}
        if not isinstance(children, dict):
            raise CheckpointError(f"{source}: {obj.pickle_global}._modules is {type(children).__name__}")
        for name, child in children.items():
            if child is None:
                continue
            if not isinstance(child, PickledModule):
                raise CheckpointError(f"{source}: submodule {prefix}{name} is {type(child).__name__}, not a module")
            walk(child, f"{prefix}{name}.", depth + 1)

    walk(module, "", 0)
    return out
