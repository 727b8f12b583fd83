"""Data-parallel training across processes (``torchrun``): the process group, gradient averaging, synchronised
BatchNorm and cross-rank batch gathering.

One process per device, started by ``torchrun`` (or ``python -m torch.distributed.run``); the same code runs in a
single process without it. Backend ``nccl`` on CUDA, ``gloo`` on the CPU; ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` come from torchrun's environment.

Why not ``DistributedDataParallel``: SimSwap's updates run several forwards of one network before each backward
(the projected D scores the fake, then extracts the target's features; the D interval scores fake and real) and
call methods other than ``forward`` (``get_feature``, the generator's ``forward_raw``). DDP's reducer expects
one ``forward`` per backward. What DDP does -- identical initial weights on every rank, then the gradients
averaged over ranks before each optimiser step -- is done here explicitly (:func:`average_gradients`, bucketed
all-reduce), which gives exactly DDP's update.

Batch statistics: the generator and both discriminators normalise with the statistics of the batch in hand
(training-mode BatchNorm, spec 2.1 / 4.5). For ``W`` processes with ``B`` rows each to make the same step as one
process with the ``W*B`` rows, the statistics must be those of the combined batch: :func:`sync_batchnorm` turns
every ``BatchNorm2d`` into :class:`SyncedBatchNorm2d` (same state-dict keys), which all-reduces the sums
(differentiably) in training mode. ``torch.nn.SyncBatchNorm`` cannot be used: in torch 2.13 it refuses CPU
tensors ("SyncBatchNorm expected input tensor to be on GPU"), so it would not run under gloo.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["DistContext", "SyncedBatchNorm2d", "average_gradients", "average_scalars", "broadcast_module",
           "describe", "gather_rows", "init_distributed", "sync_batchnorm"]

_BUCKET_ELEMENTS = 32 * 1024 * 1024


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its ``device``; ``is_main`` writes files and logs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    started_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.started_group and dist.is_initialized():
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(device: str | torch.device | None = None) -> DistContext:
    """The process group from torchrun's environment (none when ``WORLD_SIZE`` is unset or 1).

    device: "cpu", "cuda" (each rank takes ``cuda:LOCAL_RANK``) or None (cuda if available). Backend nccl on
    CUDA, gloo on the CPU.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    want = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if want.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("device cuda: this torch build or machine has no CUDA device; use --device cpu")
        index = local if (world > 1 or want.index is None) else want.index
        if index >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local} has no GPU (only {torch.cuda.device_count()} visible)")
        want = torch.device("cuda", index)
        torch.cuda.set_device(want)
    if world <= 1:
        return DistContext(0, 1, 0, want, False)
    if not 0 <= rank < world:
        raise InputError(f"RANK {rank} is outside 0..{world - 1} (WORLD_SIZE {world})")
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want.type == "cuda" else "gloo", rank=rank, world_size=world)
        started = True
    return DistContext(rank, world, local, want, started)


def broadcast_module(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical starting weights, as DDP does)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def average_gradients(params: list[nn.Parameter], ctx: DistContext) -> None:
    """Average the ``.grad`` of ``params`` over ranks in place (bucketed all-reduce); params without a gradient
    are skipped, and every rank must have the same set (checked)."""
    if not ctx.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    count = torch.tensor([len(grads), -len(grads)], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(count, op=dist.ReduceOp.MAX)
    if int(count[0]) != len(grads) or -int(count[1]) != len(grads):
        raise RuntimeError("ranks disagree on which parameters have gradients; every rank must run the same step")
    bucket: list[Tensor] = []
    size = 0
    for g in [*grads, None]:
        if g is not None:
            bucket.append(g)
            size += g.numel()
        if bucket and (g is None or size >= _BUCKET_ELEMENTS):
            flat = torch.cat([b.reshape(-1) for b in bucket])
            dist.all_reduce(flat)
            flat /= ctx.world_size
            offset = 0
            for b in bucket:
                b.copy_(flat[offset:offset + b.numel()].view_as(b))
                offset += b.numel()
            bucket, size = [], 0


def average_scalars(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """The mean over ranks of each scalar (for the log); every rank must pass the same keys in the same order."""
    if not ctx.distributed or not values:
        return dict(values)
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    t /= ctx.world_size
    return dict(zip(values, t.tolist(), strict=True))


def gather_rows(x: Tensor, ctx: DistContext) -> Tensor:
    """The combined batch ``[W*B,...]`` of every rank's ``x [B,...]``, in rank order (no gradient)."""
    if not ctx.distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(ctx.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, 0)


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics are those of the batch over all ranks (same keys, same
    eval behaviour). Mean first, then the centred sum of squares (two all-reduces, as accurate as one process);
    both are differentiable all-reduces, so gradients flow through the shared statistics as in one process."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        x32 = x.float()
        c = x.shape[1]
        dims = (0, 2, 3)
        local = torch.cat([x32.sum(dims), x32.new_tensor([x.numel() // c])])
        total = all_reduce(local)
        n = total[-1]
        mean = total[:c] / n
        centred = x32 - mean.view(1, c, 1, 1)
        var = all_reduce(centred.square().sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach().to(self.running_var.dtype), alpha=m)
        return y


def sync_batchnorm(module: nn.Module, ctx: DistContext) -> int:
    """Make every ``BatchNorm2d`` of ``module`` a :class:`SyncedBatchNorm2d` (in place, same tensors and keys);
    returns how many. Nothing changes in a single process."""
    if not ctx.distributed:
        return 0
    n = 0
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = SyncedBatchNorm2d
            n += 1
    return n


def describe(ctx: DistContext) -> dict[str, Any]:
    """For the run log: rank, world size, device, backend."""
    backend = dist.get_backend() if dist.is_initialized() else "none"
    return {"rank": ctx.rank, "world_size": ctx.world_size, "device": str(ctx.device), "backend": backend}
