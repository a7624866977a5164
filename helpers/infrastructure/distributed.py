"""Process-group set-up and the batch arithmetic shared by every rank.

physicsnemo's `DistributedManager` detects torchrun, SLURM and MPI launches and picks NCCL on
GPUs and gloo on CPUs. One shim is needed on CPU: it passes ``device_id=cpu`` to
``init_process_group``, which recent torch rejects for non-accelerators.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.distributed as dist

from helpers.infrastructure.errors import ConfigError


def _allow_cpu_process_groups() -> None:
    if torch.cuda.is_available() or getattr(dist.init_process_group, "_corrdiff_cpu", False):
        return
    original = dist.init_process_group

    @functools.wraps(original)
    def init_process_group(*args: Any, device_id: Any = None, **kwargs: Any) -> None:
        if device_id is not None and torch.device(device_id).type == "cpu":
            device_id = None
        return original(*args, device_id=device_id, **kwargs)

    init_process_group._corrdiff_cpu = True
    dist.init_process_group = init_process_group


def init_distributed():
    """Initialise (once) and return physicsnemo's `DistributedManager`."""
    from physicsnemo.distributed import DistributedManager

    _allow_cpu_process_groups()
    if not DistributedManager.is_initialized():
        DistributedManager.initialize()
    return DistributedManager()


def is_multi_process() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (identity for a single process)."""
    if is_multi_process():
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def all_gather_objects(obj: Any) -> list[Any]:
    """One entry per rank (a one-element list for a single process)."""
    if not is_multi_process():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_to_rank0(obj: Any) -> list[Any] | None:
    """Every rank's value, in rank order, on rank 0; ``None`` elsewhere."""
    if not is_multi_process():
        return [obj]
    rank = dist.get_rank()
    gathered: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value on every rank."""
    if not is_multi_process():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def batch_layout(total_batch_size: int, batch_size_per_gpu: int | str, world_size: int
                 ) -> tuple[int, int]:
    """``(batch_size_per_gpu, accumulation_rounds)`` so that
    ``batch_size_per_gpu * world_size * rounds == total_batch_size``; a size that does not divide
    gets an error saying which values would."""
    if total_batch_size % world_size:
        below = total_batch_size - total_batch_size % world_size
        raise ConfigError(
            f"training.hp.total_batch_size={total_batch_size} cannot be split evenly over "
            f"{world_size} processes; use a multiple of {world_size}, e.g. {below or world_size} "
            f"or {below + world_size}"
        )
    per_rank = total_batch_size // world_size
    if batch_size_per_gpu == "auto":
        return per_rank, 1
    if per_rank % batch_size_per_gpu:
        valid = [b for b in range(1, per_rank + 1) if per_rank % b == 0]
        raise ConfigError(
            f"training.hp.batch_size_per_gpu={batch_size_per_gpu} does not divide the "
            f"{per_rank} samples each of {world_size} process(es) handles per step "
            f"(total_batch_size={total_batch_size}); use one of {valid} or 'auto'"
        )
    return batch_size_per_gpu, per_rank // batch_size_per_gpu
