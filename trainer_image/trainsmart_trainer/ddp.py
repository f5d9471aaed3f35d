"""torch.distributed from the env contract: process group set-up and the few collectives the loop needs.

Every helper is a no-op (returning its input) in a single-process run, so the training loop has one code
path. Backend: nccl for CUDA tensors, gloo on the CPU (simulated GPUs included).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from trainsmart_trainer import contract

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (classic variables, as torchrun or our launcher set them)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone reports, checkpoints and writes the result."""
        return self.rank == 0


class DistConfigError(ValueError):
    """The distributed variables contradict each other (an operator or launcher bug: permanent)."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise DistConfigError(f"{name}={raw!r} is not an integer") from None


def dist_info_from_env(env: Mapping[str, str]) -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE; unset means a single process."""
    world = _int(env, contract.WORLD_SIZE, 1)
    rank = _int(env, contract.RANK, 0)
    local_rank = _int(env, contract.LOCAL_RANK, 0)
    local_world = _int(env, contract.LOCAL_WORLD_SIZE, 1)
    if world < 1 or not 0 <= rank < world:
        raise DistConfigError(f"{contract.RANK}={rank} is outside 0..{contract.WORLD_SIZE}-1 ({world})")
    if not 0 <= local_rank < max(local_world, 1):
        raise DistConfigError(f"{contract.LOCAL_RANK}={local_rank} is outside 0..{contract.LOCAL_WORLD_SIZE}-1")
    if world > 1 and (not env.get(contract.MASTER_ADDR) or not env.get(contract.MASTER_PORT)):
        raise DistConfigError(f"{contract.WORLD_SIZE}={world} needs {contract.MASTER_ADDR} and {contract.MASTER_PORT}")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)


def backend_for(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def init_process_group(info: DistInfo, device: torch.device) -> str:
    """Join the job's process group (env:// rendezvous at MASTER_ADDR:MASTER_PORT); returns the backend."""
    if not info.distributed:
        return ""
    backend = backend_for(device.type)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    log.info("joined process group: rank %d of %d (%s)", info.rank, info.world_size, backend)
    return backend


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (in place, and returned)."""
    if _active():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on any: lets all ranks stop at the same step (no one left waiting
    in a collective for a peer that already left)."""
    if not _active():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_gather_equal(local: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's tensor (all the same shape: DistributedSampler gives each rank equally many samples)."""
    if not _active():
        return [local]
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local.contiguous())
    return parts


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank `src`'s object on every rank (the resume state: only rank 0 may be able to read the volume)."""
    if not _active():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def gather_objects(value: Any) -> list[Any] | None:
    """Every rank's object, on rank 0 only (None elsewhere); [value] in a single process."""
    if not _active():
        return [value]
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
