"""Choosing the device: real GPUs, simulated GPUs (CPU, said loudly), or the CPU.

`resolve_device` is pure; `probe_cuda` is the only place that asks torch about CUDA. The rule that matters:
a pod that was *given* GPUs but cannot use them fails fast with a permanent error. Silently training on the
CPU would burn GPU quota for hours at a fraction of the speed, and nobody would notice until the bill.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from trainsmart_trainer import contract

# NVIDIA_VISIBLE_DEVICES values that do not mean "this container was given specific GPUs".
_NOT_A_REQUEST = frozenset({"", "all", "void", "none"})


class DeviceError(Exception):
    """GPUs were requested but cannot be used; retrying on the same node cannot help."""


@dataclass(frozen=True)
class CudaProbe:
    """What torch can see of CUDA."""

    available: bool
    count: int = 0
    names: tuple[str, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class DevicePlan:
    """The device a process trains on and the line that announces it."""

    type: str  # "cpu" | "cuda"
    index: int | None
    simulated_gpus: bool
    gpus: int
    name: str
    announcement: str

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}" if self.type == "cuda" else "cpu"


def requested_gpus(visible: str | None) -> list[str]:
    """The GPUs the device plugin handed this container, from NVIDIA_VISIBLE_DEVICES."""
    value = (visible or "").strip()
    if value.lower() in _NOT_A_REQUEST:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def resolve_device(*, simulated: bool, visible_devices: str | None, cuda: CudaProbe, local_rank: int = 0) -> DevicePlan:
    """Simulated GPUs -> CPU; requested GPUs -> CUDA or DeviceError; otherwise CUDA when present, else CPU."""
    requested = requested_gpus(visible_devices)
    cpu_name = platform.machine() or "cpu"
    if simulated:
        return DevicePlan(
            type="cpu",
            index=None,
            simulated_gpus=True,
            gpus=len(requested),
            name=cpu_name,
            announcement=f"device: cpu ({len(requested)} simulated GPUs, {contract.SIMULATED_GPUS}=1): "
            "the GPUs are simulated, training runs on the CPU",
        )
    if requested and not cuda.available:
        detail = f": {cuda.error}" if cuda.error else ""
        raise DeviceError(
            f"GPUs were requested ({contract.NVIDIA_VISIBLE_DEVICES}={visible_devices}) but CUDA is unusable"
            f"{detail}. Check the node's NVIDIA driver and device plugin, use an image with CUDA-enabled torch, "
            "or remove gpusPerReplica to train on the CPU"
        )
    if cuda.available:
        if local_rank >= cuda.count:
            raise DeviceError(
                f"process with {contract.LOCAL_RANK}={local_rank} needs its own GPU but only {cuda.count} are "
                "visible; set processesPerReplica <= gpusPerReplica"
            )
        name = cuda.names[local_rank] if local_rank < len(cuda.names) else "cuda"
        return DevicePlan(
            type="cuda",
            index=local_rank,
            simulated_gpus=False,
            gpus=cuda.count,
            name=name,
            announcement=f"device: cuda:{local_rank} ({name}; {cuda.count} GPUs visible)",
        )
    return DevicePlan(
        type="cpu",
        index=None,
        simulated_gpus=False,
        gpus=0,
        name=cpu_name,
        announcement=f"device: cpu ({cpu_name}; no GPUs requested)",
    )


def probe_cuda() -> CudaProbe:
    """Ask torch about CUDA; a broken driver shows up as an exception, kept as the reason."""
    import torch

    if torch.version.cuda is None:
        return CudaProbe(available=False, error=f"this torch build ({torch.__version__}) has no CUDA support")
    try:
        if not torch.cuda.is_available():
            return CudaProbe(available=False, error="torch.cuda.is_available() is false (no driver or no device)")
        count = torch.cuda.device_count()
        names = tuple(torch.cuda.get_device_name(i) for i in range(count))
    except (RuntimeError, AssertionError) as error:
        return CudaProbe(available=False, error=str(error))
    return CudaProbe(available=count > 0, count=count, names=names)
