"""One training job over several processes, as started by ``torchrun``.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` for each process it starts; a plain
``featinv train`` sees none of them and runs as a world of one. Processes talk through
``torch.distributed``: NCCL between GPUs, gloo on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as tdist

from ..errors import FeatinvError


_joined = False  # whether join() created the process group (and leave() should destroy it)


@dataclass(frozen=True)
class World:
    """This process's place in the job: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes on this node (they share its cores and memory)

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, validates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world torchrun describes in the environment (a world of one without torchrun)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
    except ValueError as exc:
        raise FeatinvError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc}); start "
                           "distributed runs with torchrun.") from None
    if size < 1 or not 0 <= rank < size or local < 0 or local_size < 1:
        raise FeatinvError(f"RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local} describe no process "
                           "of a job (0 <= RANK < WORLD_SIZE); torchrun sets them: unset them to "
                           "train in one process, or start distributed runs with torchrun.")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
    if size > 1 and missing and not tdist.is_initialized():
        raise FeatinvError(f"WORLD_SIZE={size} asks for a job of {size} processes, but "
                           f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not "
                           "set; unset WORLD_SIZE and RANK to train in one process, or start "
                           "distributed runs with torchrun.")
    return World(rank, size, local, local_size)


def join(world: World, device: torch.device) -> torch.device:
    """Join the process group (a no-op for a world of one); returns this process's device.

    Under CUDA each process takes the GPU numbered by its local rank.
    """
    if not world.distributed:
        return device
    if device.type == "cuda":
        if torch.cuda.device_count() <= world.local_rank:
            raise FeatinvError(f"Process {world.rank} wants GPU {world.local_rank} but this node "
                               f"has {torch.cuda.device_count()}; start fewer processes per node.")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    global _joined
    if not tdist.is_initialized():  # a caller's own process group is used as it is
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                 timeout=timedelta(minutes=60))
        _joined = True
    return device


def leave(world: World) -> None:
    """Leave the process group if ``join`` created it."""
    global _joined
    if _joined and tdist.is_initialized():
        tdist.destroy_process_group()
    _joined = False


def mean_over_ranks(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a tensor over all processes (itself for a world of one)."""
    if not world.distributed:
        return value
    value = value.detach().clone()
    tdist.all_reduce(value)
    return value / world.size


def barrier(world: World) -> None:
    if world.distributed:
        tdist.barrier()
