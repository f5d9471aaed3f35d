"""The contract between the agent's pod lifecycle (what a kubelet decides) and its sandbox (how a
container is made to run as a local process).

Kept in one small module so both sides can be written and tested apart: the lifecycle side
(`pods.py`, `nodes.py`) only ever sees these types; the sandbox side (`sandbox.py` and friends) only
ever implements them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Mount:
    """A host directory or file made visible to the container at `container_path`."""

    host_path: Path
    container_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerLaunch:
    """Everything needed to start one container of a pod, already resolved against the API.

    `argv` is command + args with `$(VAR)` references expanded as a kubelet does; `env` is the fully
    resolved environment (literal values, fieldRef, secretKeyRef, configMapKeyRef, plus what the agent
    adds: GPU indices, simulated-GPU marker, KUBERNETES_SERVICE_* where applicable).
    """

    pod_uid: str
    namespace: str
    pod_name: str
    container_name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    working_dir: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    run_as_user: int | None = None
    run_as_group: int | None = None
    termination_message: Mount | None = None
    """The host file for this run's termination message, bound at the container's terminationMessagePath
    (writable even when the volumes are not); None: no message file (see `termination.py`)."""


class ContainerProcess(Protocol):
    """A running (or finished) container process."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """Exit code if finished, else None. Killed by signal N -> 128 + N, as container runtimes report."""

    def terminate(self, grace_seconds: float) -> int:
        """SIGTERM, wait up to `grace_seconds`, then SIGKILL; returns the exit code. Idempotent."""


class PodSandbox(Protocol):
    """One pod's isolation: its own network identity (IP) and hosts file, shared by its containers."""

    @property
    def ip(self) -> str: ...

    def launch(self, launch: ContainerLaunch) -> ContainerProcess: ...

    def close(self) -> None:
        """Release the pod's network identity and any mounts; processes must already be stopped."""
