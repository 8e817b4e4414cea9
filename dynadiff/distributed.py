"""Data-parallel training across processes (``torchrun``, or ``srun`` on SLURM).

Every process draws the *same global batch* and the same noise (one seed, same random streams) and
computes the loss on its contiguous share of the rows; gradients are averaged across processes
before clipping and the optimiser step. With equal shares, the average of the per-share mean losses
is the global mean loss, so ``N`` processes take the same steps as one process with the same global
batch, to the float rounding of the all-reduce (the linear scaling rule is *not* applied: the batch
and the learning rate are what the config says, whatever ``N``). This is what
``DistributedDataParallel`` computes; it is done in the training loop instead of by wrapping the
model, because the loss functions call ``encode``/``decode``/``regress`` rather than ``forward``.

Rank 0 alone logs, shows progress, writes checkpoints and artifacts; every rank resumes from the
same checkpoint. ``World()`` is the single process, where every helper is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` data-parallel processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs and writes."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of ``n`` rows (equal shares)."""
        if n % self.size:
            raise ValueError(
                f"a global batch of {n} does not split evenly over {self.size} processes; choose a "
                f"batch_size divisible by {self.size} (and no larger than the dataset)"
            )
        k = n // self.size
        return slice(self.rank * k, (self.rank + 1) * k)

    def average(self, tensors: Sequence[Tensor]) -> None:
        """Average ``tensors`` across processes, in place (one flattened all-reduce)."""
        if self.size == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= self.size
        start = 0
        for t in tensors:
            t.copy_(flat[start : start + t.numel()].view_as(t))
            start += t.numel()

    def average_gradients(self, params: Iterable[Tensor]) -> None:
        """Average the gradients that exist (every rank runs the same code on other rows, so the
        same parameters have gradients; a mismatch fails in the all-reduce, never silently)."""
        self.average([p.grad for p in params if p.grad is not None])

    def broadcast(self, tensors: Iterable[Tensor]) -> None:
        """Rank 0's values everywhere (the starting weights)."""
        if self.size > 1:
            for t in tensors:
                dist.broadcast(t, 0)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


SINGLE = World()


def init_world(device: torch.device | None = None) -> World:
    """The world of this process, from ``torchrun``'s (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) or
    SLURM's (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``) variables; initialises the
    process group (NCCL on CUDA, gloo on the CPU) when there is more than one process.

    Under ``srun`` the rendezvous is ``MASTER_ADDR`` (default: ``SLURM_LAUNCH_NODE_IPADDR``) and
    ``MASTER_PORT`` (default: 29500 + the job id modulo 1000).
    """
    env = os.environ
    if "WORLD_SIZE" in env:
        rank, size, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    elif int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        rank, size = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
        local = int(env.get("SLURM_LOCALID", 0))
        env.setdefault("MASTER_ADDR", env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
        env.setdefault("MASTER_PORT", str(29500 + int(env.get("SLURM_JOB_ID", "0")) % 1000))
        env.setdefault("RANK", str(rank))
        env.setdefault("WORLD_SIZE", str(size))
    else:
        return SINGLE
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=size)
    return World(rank, size, local)
