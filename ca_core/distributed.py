"""Distributed helpers: one code path for a single process and for ``torchrun --nproc_per_node N``.

Under torchrun (``WORLD_SIZE`` > 1 in the environment) :func:`setup` joins the process group
(NCCL on GPU, gloo on CPU). Evaluation shards images across ranks with :func:`shard_indices` and
reassembles per-image results in the original order with :func:`gather_per_image`, so every rank
ends with the same full result as a single process would compute. Training splits each global
batch with :func:`rank_share`, so the ranks together take exactly one process's batches.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (the process that writes files and shows progress)."""
    return world()[0] == 0


def setup() -> torch.device:
    """Join the process group when launched by torchrun; return this process's device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if world()[1] > 1:
        dist.barrier()


def shard_indices(n: int, rank: int | None = None, size: int | None = None) -> range:
    """The image indices this rank evaluates: ``rank, rank + size, ...`` (defaults: this process)."""
    if rank is None or size is None:
        rank, size = world()
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside a world of {size} processes")
    return range(rank, n, size)


def rank_share(batch: list[int], rank: int | None = None, size: int | None = None) -> list[int]:
    """This rank's contiguous share of one global batch (defaults: this process).

    Shares differ in length by at most one, and a rank gets an empty share when the batch holds
    fewer items than there are ranks: nothing is padded or duplicated, so the ranks together see
    exactly the items one process would.
    """
    if rank is None or size is None:
        rank, size = world()
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside a world of {size} processes")
    base, extra = divmod(len(batch), size)
    start = rank * base + min(rank, extra)
    return batch[start : start + base + (rank < extra)]


def gather_per_image(values: torch.Tensor, n: int) -> torch.Tensor:
    """Reassemble per-image results computed on :func:`shard_indices` shards into all ``n`` rows, in order.

    ``values`` holds this rank's rows (first dimension = its shard size); every rank receives the full tensor.
    """
    rank, size = world()
    if values.shape[0] != len(shard_indices(n, rank, size)):
        raise ValueError(f"rank {rank} holds {values.shape[0]} rows but its shard of {n} images has "
                         f"{len(shard_indices(n, rank, size))}")
    if size == 1:
        return values
    per_rank = -(-n // size)
    padded = values.new_zeros((per_rank, *values.shape[1:]))
    padded[: values.shape[0]] = values
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    out = values.new_empty((n, *values.shape[1:]))
    for r, part in enumerate(parts):
        idx = shard_indices(n, r, size)
        out[idx.start : n : size] = part[: len(idx)]
    return out


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (the tensor itself in a single process)."""
    if world()[1] > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values
