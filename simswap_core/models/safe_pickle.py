"""The allow-list unpickler of PyTorch checkpoints: nothing from a file is ever executed.

``torch.load(weights_only=True)`` refuses the official ``arcface_checkpoint.tar``, because that file is a whole
pickled ``nn.Module`` (``models.arcface_models.ResNet``; the 2021 file is a dict whose ``'model'`` is a
``DataParallel``-wrapped ``models.ResNet``, next to ``models.ArcMarginModel`` and an optimizer). Such files are
read with the unpickler of this module:

* ``find_class`` resolves ONLY an allow-list of names, and never imports anything. Module classes (SimSwap's
  ``ResNet``/``IRBlock``/``SEBlock`` and the ``torch.nn`` layers they hold) and the irrelevant extras (optimizers,
  ``ArcMarginModel``, ``torch.device``) become inert :class:`PickledObject` records that only store the state the
  pickle hands them; tensors are rebuilt by our own functions; ``OrderedDict``/``set``/dtypes are the real
  (harmless) objects. Any other global -- ``os.system``, ``builtins.eval``, ``subprocess.Popen``... -- raises
  :class:`~simswap_core.errors.UnsafeCheckpointError` naming it, before anything runs.
* The containers (torch's zip archive and legacy stream formats) are read by :mod:`.pickle_containers`, whose
  :func:`~.pickle_containers.restricted_load` is the entry point.

The result is plain data: dicts, tensors and :class:`PickledObject` trees; :func:`module_state_dict` turns a
pickled module tree into a ``state_dict`` without calling any of its code. Tensors come out lazy: a meta tensor
whose layout was checked against its :class:`Storage` (dense, non-overlapping, inside the storage: no stride-0 or
out-of-bounds records), read only by :func:`materialize`, so callers can check dtypes and shapes first.
"""
from __future__ import annotations

import collections
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO

import torch
from torch import Tensor

from ..errors import CheckpointError, UnsafeCheckpointError

__all__ = ["PickledObject", "PickledModule", "RestrictedUnpickler", "Storage", "StorageType", "is_lazy", "materialize",
           "module_state_dict", "plain_load"]



class PickledObject:
    """Inert stand-in for an object of class ``pickle_global`` found in a checkpoint; stores args and state only."""

    pickle_global: str = "?"
    pickle_args: tuple[Any, ...]   # set in __init__ / __setstate__ through __dict__
    pickle_state: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["pickle_args"] = args
        self.__dict__["pickle_state"] = None

    def __setstate__(self, state: Any) -> None:
        self.__dict__["pickle_state"] = state

    def __repr__(self) -> str:
        return f"<pickled {self.pickle_global}>"


class PickledModule(PickledObject):
    """Inert stand-in for a pickled ``nn.Module`` (its ``__dict__`` state: ``_parameters``, ``_buffers``,
    ``_modules``)."""


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
    # read so that a loader can name them and refuse them as weights (see checkpoints.check_dtypes)
    "ComplexFloatStorage": torch.complex64, "ComplexDoubleStorage": torch.complex128,
}
_DTYPES = {name: getattr(torch, name) for name in (
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "float", "double", "half", "long", "int", "complex64", "complex128",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
) if isinstance(getattr(torch, name, None), torch.dtype)}
_MAX_DIMS = 16


class StorageType:
    """What ``torch.FloatStorage`` & co. resolve to: only carries the dtype (no state a pickle could set)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"the pickle tries to set the state of torch.{self.name} (BUILD on a type); "
                                    f"refused")


class Storage:
    """A storage declared by the checkpoint: its element dtype, its size in bytes, and how to read those bytes.

    Nothing is read or allocated until :meth:`data` is called (by :func:`materialize`), so a file's declared
    tensors can be checked first; ``read`` must return exactly ``nbytes`` bytes as a flat uint8 tensor.
    """

    def __init__(self, dtype: torch.dtype, nbytes: int, read: Callable[[], Tensor], name: str) -> None:
        self.dtype, self.nbytes, self.name = dtype, int(nbytes), name
        self._read: Callable[[], Tensor] | None = read
        self._data: Tensor | None = None

    def data(self) -> Tensor:
        """The storage's bytes (read once)."""
        if self._data is None:
            assert self._read is not None
            data = self._read()
            if data.dtype != torch.uint8 or data.numel() != self.nbytes:
                raise CheckpointError(f"storage {self.name} holds {data.numel()} bytes, expected {self.nbytes}")
            self._data, self._read = data, None
        return self._data


_VIEW_ATTR = "_simswap_checkpoint_view"


def _check_layout(storage: Storage, dtype: torch.dtype, offset: Any, size: Any, stride: Any) -> None:
    """Refuse a tensor record that is not a dense, non-overlapping view inside its storage (stride-0 tricks,
    negative sizes, offsets past the end), before anything is allocated."""
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list))):
        raise CheckpointError(f"tensor record has size {type(size).__name__} / stride {type(stride).__name__}, "
                              f"expected tuples of ints")
    if not (type(offset) is int and all(type(v) is int for v in (*size, *stride)) and len(size) == len(stride)
            and len(size) <= _MAX_DIMS):
        raise CheckpointError(f"tensor record has invalid size/stride/offset {size!r} {stride!r} {offset!r}")
    if offset < 0 or any(v < 0 for v in (*size, *stride)):
        raise CheckpointError(f"tensor record has a negative size, stride or offset ({size!r} {stride!r} "
                              f"{offset!r}); expected non-negative values")
    itemsize = dtype.itemsize
    if storage.nbytes % itemsize:
        raise CheckpointError(f"storage {storage.name} of {storage.nbytes} bytes is not a whole number of "
                              f"{dtype} elements")
    elements = storage.nbytes // itemsize
    if 0 in size:
        if offset > elements:
            raise CheckpointError(f"tensor record starts at element {offset}, past the end of storage "
                                  f"{storage.name} ({elements} elements)")
        return
    dims = sorted((st, sz) for sz, st in zip(size, stride) if sz > 1)
    reach = 0  # elements spanned by the inner dimensions so far, minus one
    for st, sz in dims:
        if st <= reach:
            raise CheckpointError(f"tensor record of size {tuple(size)} with stride {tuple(stride)} overlaps itself "
                                  f"(stride 0 or overlapping dimensions); expected a dense tensor")
        reach += (sz - 1) * st
    if offset + reach + 1 > elements:
        raise CheckpointError(f"tensor record of size {tuple(size)} (stride {tuple(stride)}, offset {offset}) "
                              f"needs {offset + reach + 1} elements, but its storage {storage.name} holds "
                              f"{elements}")


def _lazy_view(storage: Any, dtype: torch.dtype, offset: Any, size: Any, stride: Any) -> Tensor:
    """A meta tensor with the record's shape and dtype that remembers where its data is (see :func:`materialize`)."""
    if not isinstance(storage, Storage):
        raise CheckpointError(f"tensor record refers to {type(storage).__name__}, expected a storage")
    _check_layout(storage, dtype, offset, size, stride)
    size, stride = tuple(size), tuple(stride)
    meta = torch.empty(0, dtype=dtype, device="meta").as_strided(size, stride, offset)
    setattr(meta, _VIEW_ATTR, (storage, dtype, offset, size, stride))
    return meta


def is_lazy(tensor: Tensor) -> bool:
    """Whether ``tensor`` is a checkpoint record not read yet (a meta tensor from the unpickler)."""
    return hasattr(tensor, _VIEW_ATTR)


def materialize(tensor: Tensor) -> Tensor:
    """The CPU tensor a lazy record stands for: its storage is read (once) and viewed; other tensors unchanged."""
    view = getattr(tensor, _VIEW_ATTR, None)
    if view is None:
        return tensor
    storage, dtype, offset, size, stride = view
    data = storage.data()
    flat = data.view(dtype) if dtype != torch.uint8 else data
    return flat.as_strided(size, stride, offset)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any) -> Tensor:
    """Our replacement of ``torch._utils._rebuild_tensor(_v2)``: a (lazy, bounds-checked) view of a storage."""
    if not isinstance(storage, Storage):
        raise CheckpointError(f"tensor record refers to {type(storage).__name__}, expected a storage")
    return _lazy_view(storage, storage.dtype, storage_offset, size, stride)


def _rebuild_tensor_v3(storage: Any, storage_offset: Any, size: Any, stride: Any, _requires_grad: Any = None,
                       _hooks: Any = None, dtype: Any = None, *_ignored: Any) -> Tensor:
    """``torch._utils._rebuild_tensor_v3``: an untyped (byte) storage viewed as ``dtype`` (float8 & co.)."""
    if not isinstance(storage, Storage) or storage.dtype != torch.uint8 or not isinstance(dtype, torch.dtype):
        raise CheckpointError(f"tensor record (v3) holds {type(storage).__name__} and dtype {dtype!r}, expected an "
                              f"untyped storage and a dtype")
    return _lazy_view(storage, dtype, storage_offset, size, stride)


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
    fn: Any
    name: str

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
        _allowed("torch._utils", "_rebuild_tensor_v3", _rebuild_tensor_v3),
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
    if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
        return StorageType(name, _STORAGE_DTYPES[name])
    if module == "torch" and name in _DTYPES:
        return _DTYPES[name]
    raise UnsafeCheckpointError(
        f"{source}: the pickle asks for the global '{module}.{name}', which is not on the allow-list of a SimSwap "
        f"checkpoint (model classes, torch layers, tensors); refused, nothing from the file was executed. "
        f"Only load checkpoints from a source you trust."
    )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` is the allow-list; persistent references go to ``persistent_load``."""

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


def plain_load(fh: BinaryIO, source: str) -> Any:
    """One header pickle (no persistent references) through the allow-list."""
    return RestrictedUnpickler(fh, source).load()


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
