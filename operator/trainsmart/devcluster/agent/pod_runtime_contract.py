"""The pod runtime contract: everything the agent's pod lifecycle (what a kubelet decides) and its sandbox
(how a container is made to run as a local process) say to each other, and nothing else.

Kept in one small module so both sides can be written and tested apart: the lifecycle side
(`pod_worker.py`, `agent.py`) only ever sees these types; the sandbox side (`sandbox/`) only ever
implements them. `PodRuntime` is what the lifecycle asks of the sandbox as a whole; `PodSandbox` and
`ContainerProcess` are one pod's isolation and one container's process; `ContainerLaunch` and `Mount`
are the data they pass; `ContainerConfigError` is the one failure a retry may fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


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
    (writable even when the volumes are not); None: no message file (see `termination_messages.py`)."""


class ContainerProcess(Protocol):
    """A running (or finished) container process."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None:
        """Exit code if finished, else None. Killed by signal N -> 128 + N, as container runtimes report."""

    def notify_exit(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from any thread) as soon as the process has exited, so `poll` has the code; at
        once if it already has. This is how the lifecycle learns of exits: it does not poll for them."""

    def terminate(self, grace_seconds: float) -> int:
        """SIGTERM, wait up to `grace_seconds`, then SIGKILL (no grace: SIGKILL alone); returns the exit
        code. Idempotent."""


class PodSandbox(Protocol):
    """One pod's isolation: its own network identity (IP) and hosts file, shared by its containers."""

    @property
    def ip(self) -> str: ...

    def launch(self, launch: ContainerLaunch) -> ContainerProcess: ...

    def close(self) -> None:
        """Release the pod's network identity and any mounts; processes must already be stopped."""


class ContainerConfigError(RuntimeError):
    """What a retry may fix (a missing Secret key, a volume whose claim does not exist yet): the container
    waits with `reason` (the kubelet's `CreateContainerConfigError`, or `ContainerCreating` for volumes)
    and is retried with back-off, because the missing object may appear later."""

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


class PodRuntime(Protocol):
    """What the agent needs from the sandbox side as a whole: pod sandboxes, resolving a container against
    the API (env, `$(VAR)` in argv, volumes) into a `ContainerLaunch`, and keeping pods' DNS current."""

    def start(self) -> None:
        """Shared setup (the pods' bridge, say) and cleanup of what a crashed predecessor left."""

    @property
    def host_ip(self) -> str:
        """Where pods reach the host: the nodes' InternalIP."""
        ...

    def open_sandbox(self, pod: Mapping[str, Any]) -> PodSandbox:
        """The pod's network identity and volumes; may raise `ContainerConfigError`."""
        ...

    def container_launch(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        sandbox: PodSandbox,
        *,
        defaults: Mapping[str, str],
        overrides: Mapping[str, str],
        log_path: Path,
    ) -> ContainerLaunch:
        """`defaults` sit under the container's own env, `overrides` above it (device variables).
        Raises `ContainerConfigError` for what a retry may fix."""
        ...

    def release_pod(self, pod: Mapping[str, Any]) -> None:
        """The pod object is gone: drop what lives exactly as long as it (emptyDir volumes)."""

    def cluster_changed(self, pods: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]]) -> None:
        """Every bound pod and every Service as last seen (coalesced): cluster DNS follows them."""

    def close(self) -> None:
        """The agent stops: release what is shared by all pods."""
