"""Count device -> host synchronisation points of a block of torch code, on any device, the CPU included.

On a GPU a synchronisation stalls the host until the device queue drains; on the CPU nothing stalls, so the
counter counts the OPERATIONS that would synchronise (the issue 13 rule: "a test counts them on the CPU"):

- Python-level reads of device tensors (a ``TorchFunctionMode``): ``.item()``, ``.tolist()``, ``.numpy()`` /
  ``np.asarray(t)``, ``.cpu()`` (the explicit "bring it to the host"), ``.to("cpu")`` of a tensor that is not on
  the CPU, ``bool(t)`` / ``if t:``, ``int(t)``, ``float(t)``, ``operator.index(t)``, ``f"{t:.3f}"``.
- aten ops whose output size depends on the values, or that return a host value (a ``TorchDispatchMode``):
  ``_local_scalar_dense``, ``is_nonzero``, ``equal``, ``nonzero`` (``argwhere``, ``where(cond)``),
  ``masked_select``, ``unique*``, ``bincount``, ``repeat_interleave`` without ``output_size``, indexing with a
  bool mask (``t[mask]``, ``t[mask] = v`` with a tensor ``v``), device -> CPU copies.

An operation counted at the Python level is not counted again for the aten ops it runs inside (``.item()`` is one
sync, not two). Host data is followed (see ``SyncCounter``): work on tensors fetched once with ``.cpu()`` or made
on the host is free, as it is on a GPU machine.

    with SyncCounter() as sc:
        swapper.swap(...)
    sc.count, sc.by_kind(), sc.by_site()   # total; {"item": 2, ...}; {"simswap_core/paste.py:60 tolist": 1, ...}
"""
from __future__ import annotations

import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

# Tensor methods that read values to the host (Python level).
_READS = {"item", "tolist", "numpy", "__array__", "__bool__", "__int__", "__float__", "__index__", "__format__",
          "cpu"}
_aten = torch.ops.aten
# aten ops that synchronise whatever their arguments.
_ALWAYS = {_aten._local_scalar_dense.default, _aten.is_nonzero.default, _aten.equal.default,
           _aten.nonzero.default, _aten.nonzero.out, _aten.masked_select.default, _aten._unique.default,
           _aten._unique2.default, _aten.unique_dim.default, _aten.unique_consecutive.default,
           _aten.unique_dim_consecutive.default, _aten.bincount.default}
_REPEAT = {_aten.repeat_interleave.Tensor, _aten.repeat_interleave.self_Tensor, _aten.repeat_interleave.self_int}
_INDEX = {_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default, _aten._index_put_impl_.default}
_COPIES = {_aten._to_copy.default, _aten.copy_.default}


@dataclass
class SyncEvent:
    """One counted synchronisation: kind (e.g. "item", "aten.nonzero"), site ("file.py:line function")."""

    kind: str
    site: str


def _site() -> str:
    """The innermost frame of the project (simswap_core, nodes, bench) that led to the event, else the caller."""
    frames = traceback.extract_stack()[:-2]
    for fr in reversed(frames):
        path = fr.filename.replace("\\", "/")
        for root in ("simswap_core/", "nodes/", "bench/"):
            if f"/{root}" in path:
                return f"{root}{path.split('/' + root, 1)[1]}:{fr.lineno} {fr.name}"
    outside = [fr for fr in frames if "/torch/" not in fr.filename.replace("\\", "/")
               and not fr.filename.endswith("sync_counter.py")]
    fr = outside[-1] if outside else None
    return f"{fr.filename}:{fr.lineno} {fr.name}" if fr is not None else "?"


def _is_bool_index(indices: Any) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


def _dispatch_kind(func: Any, args: tuple, kwargs: dict) -> str | None:
    """The sync kind of an aten call, or None when it does not synchronise."""
    if func in _ALWAYS:
        return f"aten.{func.overloadpacket.__name__}"
    if func in _REPEAT:
        return None if kwargs.get("output_size") is not None or (len(args) > 3 and args[3] is not None) \
            else "aten.repeat_interleave"
    if func in _INDEX:
        return "aten.bool_index" if len(args) > 1 and _is_bool_index(args[1]) else None
    if func in _COPIES:
        src = args[1] if func is _aten.copy_.default else args[0]
        dst_dev = args[0].device if func is _aten.copy_.default else kwargs.get("device")
        if isinstance(src, torch.Tensor) and src.device.type not in ("cpu", "meta") and dst_dev is not None \
                and torch.device(dst_dev).type == "cpu":
            return "device->cpu copy"
    return None


_HOST = "_sync_counter_host"      # attribute set on tensors known to live on the host (see SyncCounter)


def is_host(t: object) -> bool:
    """True for a tensor the counter knows is host data (fetched with ``.cpu()``, made without a device, or
    computed from such tensors only)."""
    return isinstance(t, torch.Tensor) and getattr(t, _HOST, False) is True


def _mark(t: torch.Tensor, host: bool) -> None:
    try:
        setattr(t, _HOST, host)
    except (AttributeError, RuntimeError):      # e.g. a tensor subclass that refuses attributes
        pass


def _tensors(args: Any, kwargs: dict) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def _outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [x for x in out if isinstance(x, torch.Tensor)]
    return []


def _device_target(args: tuple, kwargs: dict) -> torch.device | None:
    """The device a ``Tensor.to(...)`` call names (None: a dtype-only conversion)."""
    for a in list(args[1:]) + [kwargs.get("device"), kwargs.get("other")]:
        if isinstance(a, (str, torch.device)):
            return torch.device(a)
        if isinstance(a, torch.Tensor):
            return a.device
    return None


class SyncCounter:
    """Context manager counting synchronisation points (see the module docstring); ``events`` lists them.

    Host data is followed, so host-side bookkeeping (as ``tracking.FaceTracker`` does on the CPU) is not counted:
    a tensor is HOST when it comes from ``.cpu()`` (counted once, as the one transfer), from a factory called
    without a device (``torch.zeros(3)``, ``torch.tensor([...])``), or from ops on host tensors only. Everything
    else is DEVICE data: the input frames, the weights, factories given a device, results of ``.to(device)``
    (even to the CPU: by convention ``.to(...)`` moves to the compute device and ``.cpu()`` fetches to the host;
    on the CPU ``.cpu()`` / ``.to()`` would return the tensor itself, so the counter returns a copy there, as a
    GPU would). Reads and value-dependent ops count only when a device tensor is involved.
    """

    def __init__(self) -> None:
        self.events: list[SyncEvent] = []
        self._inside = 0          # > 0 while a Python-level read runs (its aten ops are part of it)
        counter = self

        class _Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = getattr(func, "__name__", "")
                src = args[0] if args and isinstance(args[0], torch.Tensor) else None
                if src is not None and name in ("to", "cuda"):
                    return counter._move(func, args, kwargs, src, name)
                if src is not None and name in _READS and not is_host(src):
                    out = counter._read(name.strip("_"), func, args, kwargs)
                    if name == "cpu":
                        out = out.clone() if out is src else out
                        _mark(out, True)
                    return out
                out = func(*args, **kwargs)
                if isinstance(out, torch.Tensor) and not _tensors(args, kwargs):
                    _mark(out, kwargs.get("device") is None)     # a factory: host data unless given a device
                return out

        class _Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                inputs = _tensors(args, kwargs)
                host = bool(inputs) and all(is_host(t) for t in inputs)
                if not counter._inside and not host:
                    kind = _dispatch_kind(func, args, kwargs)
                    if kind is not None:
                        counter.events.append(SyncEvent(kind, _site()))
                out = func(*args, **kwargs)
                if func is _aten.lift_fresh.default:             # a tensor made from Python numbers (t[i] = 5)
                    host = True
                if inputs:
                    for t in _outputs(out):
                        _mark(t, host)
                return out

        self._modes = (_Dispatch(), _Functions())

    def _read(self, kind: str, func: Any, args: tuple, kwargs: dict) -> Any:
        """Run a counted Python-level read (its aten ops are not counted again)."""
        self.events.append(SyncEvent(kind, _site()))
        self._inside += 1
        try:
            return func(*args, **kwargs)
        finally:
            self._inside -= 1

    def _move(self, func: Any, args: tuple, kwargs: dict, src: torch.Tensor, name: str) -> Any:
        """``Tensor.to`` / ``.cuda``: a real device -> CPU copy is a sync; a move to a device gives device data."""
        target = torch.device("cuda") if name == "cuda" else _device_target(args, kwargs)
        if target is None:                                   # dtype only: host stays host
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                _mark(out, is_host(src))
            return out
        if target.type == "cpu" and src.device.type not in ("cpu", "meta"):
            out = self._read("to(cpu)", func, args, kwargs)
            _mark(out, True)
            return out
        out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            if out is src and is_host(src):
                out = out.clone()
            _mark(out, False)
        return out

    def __enter__(self) -> SyncCounter:
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)

    @property
    def count(self) -> int:
        return len(self.events)

    def by_kind(self) -> dict[str, int]:
        return dict(Counter(e.kind for e in self.events))

    def by_site(self) -> dict[str, int]:
        return dict(Counter(f"{e.site} {e.kind}" for e in self.events))

    def report(self) -> str:
        """One line per call site, most frequent first (for assertion messages)."""
        return "\n".join(f"{n:4d}  {s}" for s, n in Counter(f"{e.site} {e.kind}" for e in self.events).most_common())
