"""Training checkpoints: the official file names and layouts, a safetensors generator, and a full resume state.

Every ``checkpoint_every`` steps the trainer writes, each file atomically (:mod:`simswap_core.io.atomic`), in
this order::

    {step}_net_G.pth            generator state_dict (official keys; torch.save zip format, loads in the official code)
    {step}_net_G.safetensors    the same weights with metadata (kind, arch, variant, crop_size), for load_model
    {step}_net_G_ema.pth/.safetensors   the EMA generator (only with --ema)
    {step}_net_D.pth            projected path: the ProjectedDiscriminator state_dict (official keys)
    {step}_net_D1.pth, _D2.pth  multiscale path: the two PatchGAN state_dicts
    {step}_optim_G.pth, {step}_optim_D.pth   Adam.state_dict()s (as the official files)
    {step}_train_state.pt       what resuming needs besides those files (below); written LAST
    latest_*                    copies of the files above (replaced atomically), then iter.txt ("step\\ntotal\\n")

``{step}`` is the number of finished steps. The resume state is a plain pickle of dicts, lists, numbers, strings
and tensors (RNG states as uint8 tensors), so the project's allow-list reader
(:func:`simswap_core.models.pickle_containers.restricted_load`) reads it back: no ``torch.load``, no code from a
file runs. It lists every file of its checkpoint with its size; a checkpoint is *complete* when its state file
reads and every listed file is there with that size. :func:`find_latest_checkpoint` returns the newest complete
one, so a run killed while writing resumes from the previous checkpoint, never from a half-written one.
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ..io.atomic import atomic_write

__all__ = ["STATE_FORMAT", "CheckpointRecord", "find_latest_checkpoint", "list_checkpoints", "load_state_file",
           "prune_checkpoints", "read_weights", "remove_incomplete_after", "save_checkpoint", "save_generator_copy"]

STATE_FORMAT = "simswap-train-state"
STATE_VERSION = 1
_STATE_SUFFIX = "_train_state.pt"
_STEP_FILE = re.compile(
    r"^(\d+)_(net_G|net_G_ema|net_D|net_D1|net_D2|optim_G|optim_D|train_state)\.(pth|pt|safetensors)$")


@dataclass(frozen=True)
class CheckpointRecord:
    """A complete checkpoint: its ``step``, the resume ``state`` (plain data) and the ``files`` (name -> path)."""

    step: int
    state_path: Path
    state: dict[str, Any]
    files: dict[str, Path]


def _plain_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """CPU, contiguous, detached copies (no ``module.`` prefix, no parametrisation views)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _cpu_tree(obj: Any) -> Any:
    """An optimizer state_dict (or any tree) with every tensor moved to the CPU."""
    if isinstance(obj, Tensor):
        return obj.detach().to("cpu").clone()
    if isinstance(obj, dict):
        return {k: _cpu_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu_tree(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_cpu_tree(v) for v in obj)
    return obj


def _copier(src: Path) -> Callable[[Path], object]:
    return lambda tmp: shutil.copyfile(src, tmp)


def _torch_saver(obj: Any) -> Any:
    return lambda tmp: torch.save(obj, tmp)  # zip format (torch's default)


def generator_metadata(G: nn.Module, *, crop_size: int, path_name: str, step: int) -> dict[str, str]:
    """The safetensors metadata :func:`simswap_core.models.loaders.load_generator` understands (kind, arch,
    variant, crop_size), plus where the weights came from."""
    config = getattr(G, "config", None)
    if config is None:
        raise InputError("save_generator_copy: expected a SimSwapGenerator (with .config)")
    return {"format": "simswap", "format_version": "1", "kind": "generator", "arch": str(config.arch),
            "variant": str(config.variant), "crop_size": str(int(crop_size)), "training_path": path_name,
            "training_step": str(int(step))}


def save_generator_copy(path: Path, G: nn.Module, metadata: Mapping[str, str], *, overwrite: bool = False) -> Path:
    """``G``'s weights as ``.safetensors`` with ``metadata``, atomically."""
    from safetensors.torch import save_file

    tensors = _plain_state_dict(G)
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=dict(metadata)),
                        overwrite=overwrite)


def save_checkpoint(out: Path, step: int, *, G: nn.Module, D_parts: Mapping[str, nn.Module],
                    opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer, state: dict[str, Any],
                    crop_size: int, path_name: str, total_steps: int, G_ema: nn.Module | None = None,
                    keep: int | None = None) -> Path:
    """Write the checkpoint of ``step`` (see the module doc); returns the resume-state path.

    D_parts: {"D": D} (projected) or {"D1": D1, "D2": D2} (multiscale). state: the trainer's resume state (plain
    data: step, loader state, RNG states, scalers, config); the file list is added here. keep: keep only the
    newest ``keep`` complete checkpoints (None: all). The ``latest_*`` copies and ``iter.txt`` are replaced.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = generator_metadata(G, crop_size=crop_size, path_name=path_name, step=step)
    files: dict[str, Path] = {}

    def put(name: str, write: Any) -> None:
        target = out / f"{step}_{name}"
        write(target)
        files[name] = target

    put("net_G.pth", lambda p: atomic_write(p, _torch_saver(_plain_state_dict(G))))
    put("net_G.safetensors", lambda p: save_generator_copy(p, G, meta))
    if G_ema is not None:
        put("net_G_ema.pth", lambda p: atomic_write(p, _torch_saver(_plain_state_dict(G_ema))))
        put("net_G_ema.safetensors", lambda p: save_generator_copy(p, G_ema, meta | {"ema": "true"}))
    for name, part in D_parts.items():
        put(f"net_{name}.pth", lambda p, part=part: atomic_write(p, _torch_saver(_plain_state_dict(part))))
    put("optim_G.pth", lambda p: atomic_write(p, _torch_saver(_cpu_tree(opt_G.state_dict()))))
    put("optim_D.pth", lambda p: atomic_write(p, _torch_saver(_cpu_tree(opt_D.state_dict()))))
    full = dict(state)
    full.update(format=STATE_FORMAT, version=STATE_VERSION, step=int(step),
                files={name: int(p.stat().st_size) for name, p in files.items()})
    state_path = out / f"{step}{_STATE_SUFFIX}"
    atomic_write(state_path, _torch_saver(full))
    for name, p in files.items():
        atomic_write(out / f"latest_{name}", _copier(p), overwrite=True)
    atomic_write(out / "iter.txt", lambda tmp: tmp.write_text(f"{int(step)}\n{int(total_steps)}\n"), overwrite=True)
    if keep is not None:
        prune_checkpoints(out, keep)
    return state_path


def load_state_file(path: Path) -> dict[str, Any]:
    """Read a ``{step}_train_state.pt`` with the allow-list reader; CheckpointError if it is not one."""
    from ..models.pickle_containers import restricted_load

    obj = restricted_load(path)
    if not isinstance(obj, dict) or obj.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: found {type(obj).__name__} data, expected a simswap training state "
                              f"(format {STATE_FORMAT!r})")
    if obj.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: training state version {obj.get('version')!r}, expected {STATE_VERSION}")
    return obj


def read_weights(path: Path) -> Any:
    """A ``.pth`` state_dict or optimizer state written by the trainer (or the official code), through the
    allow-list reader (never torch.load)."""
    from ..models.pickle_containers import restricted_load

    return restricted_load(path)


def _complete(out: Path, state_path: Path) -> CheckpointRecord | None:
    try:
        state = load_state_file(state_path)
    except (CheckpointError, OSError):
        return None
    step = state.get("step")
    listed = state.get("files")
    if not isinstance(step, int) or not isinstance(listed, dict) or state_path.name != f"{step}{_STATE_SUFFIX}":
        return None
    files: dict[str, Path] = {}
    for name, size in listed.items():
        p = out / f"{step}_{name}"
        try:
            if p.stat().st_size != size:
                return None
        except OSError:
            return None
        files[str(name)] = p
    return CheckpointRecord(step, state_path, state, files)


def list_checkpoints(out: Path) -> list[int]:
    """Steps that have a resume-state file in ``out`` (complete or not), ascending."""
    steps = []
    for p in Path(out).glob(f"*{_STATE_SUFFIX}"):
        head = p.name[: -len(_STATE_SUFFIX)]
        if head.isdigit():
            steps.append(int(head))
    return sorted(steps)


def find_latest_checkpoint(out: Path) -> CheckpointRecord | None:
    """The newest complete checkpoint in ``out`` (state file readable, every listed file present with its size),
    or None."""
    for step in reversed(list_checkpoints(out)):
        record = _complete(Path(out), Path(out) / f"{step}{_STATE_SUFFIX}")
        if record is not None:
            return record
    return None


def prune_checkpoints(out: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` complete checkpoints (``latest_*`` are never removed); returns the
    removed files. The state file goes first, so an interrupted prune leaves an incomplete checkpoint, never a
    complete-looking one with files missing."""
    if keep < 1:
        raise InputError(f"keep_checkpoints must be >= 1, got {keep}")
    out = Path(out)
    complete = [r for r in (_complete(out, out / f"{s}{_STATE_SUFFIX}") for s in list_checkpoints(out)) if r]
    removed: list[Path] = []
    for record in complete[:-keep]:
        record.state_path.unlink(missing_ok=True)
        removed.append(record.state_path)
        for p in record.files.values():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def remove_incomplete_after(out: Path, step: int) -> list[Path]:
    """Remove the trainer's own step files (``{n}_net_G.pth`` & co.) for steps after ``step``: leftovers of an
    interrupted run (a resumed run rewrites those steps). Returns what was removed."""
    removed = []
    for p in Path(out).iterdir():
        m = _STEP_FILE.match(p.name)
        if m and int(m.group(1)) > step and p.is_file():
            p.unlink()
            removed.append(p)
    return removed


def file_list(out: Path) -> list[str]:
    """Names in ``out`` (for messages)."""
    try:
        return sorted(os.listdir(out))
    except OSError:
        return []
