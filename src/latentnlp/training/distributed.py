"""Multi-process training under ``torchrun`` (torch.distributed).

``torchrun --nproc-per-node N -m latentnlp train ...`` sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env`
joins the process group (gloo on CPU, NCCL on CUDA). Each global batch is split
into ``world_size`` contiguous shards (:func:`shard_bounds`); gradient models
are wrapped in DistributedDataParallel, EM models all-reduce expected counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from typing import Any, Callable

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_from_env", "shard_bounds"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` in ``0..world_size-1``."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @classmethod
    def current(cls) -> "DistributedContext":
        """The context of an already-initialised process group, or a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()


def init_from_env(backend: str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment, if there is one.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) nothing is initialised and a
    single-process context is returned.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default gloo on CPU, nccl when CUDA is available.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return DistributedContext.current()


def shard_bounds(n: int, ctx: DistributedContext) -> tuple[int, int]:
    """``[start, stop)`` of this rank's contiguous share of ``n`` items (sizes differ by at most 1)."""
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return start, start + base + (1 if ctx.rank < extra else 0)


def run_distributed(train: "Callable[[Any, DistributedContext], int]", args: Any) -> int:
    """Run ``train(args, ctx)`` in torchrun's process group (or alone), then leave the group cleanly.

    Every rank waits at a barrier before the group is destroyed, so no rank exits (and
    tears down its gloo threads) while another still talks to it; without this a rank
    that finishes first can abort with "terminate called without an active exception".
    """
    ctx = init_from_env()
    try:
        rc = train(args, ctx)
        if ctx.enabled:
            dist.barrier()
        return rc
    finally:
        if ctx.enabled and dist.is_initialized():
            dist.destroy_process_group()
