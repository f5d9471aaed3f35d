"""Termination messages, as a kubelet handles them: a per-run host file at the container's
`terminationMessagePath`, read back into `state.terminated.message` when the container exits.

Why the agent does this at all: the trainer writes its final result there, and the operator folds that
message into the TrainingJob status when the trainer's reports never reached it (operator restarting,
endpoint unreachable). Without it the local cluster could not show that path working.

Kubelet semantics kept: a fresh empty file for every run of a container (a restart never shows the
previous run's message), writable by the container's user even under a read-only root filesystem (it is
a bind mount), at most 4096 bytes read back, and with `FallbackToLogsOnError` the log tail (80 lines,
2048 bytes at most) when the file is empty and the container failed. The file lives beside the
container's log file, so it outlives the sandbox and is gone with the agent's state.

Limit: the host-network fallback (no root, no mount namespaces) cannot place a file at a container path,
so there the file is not mounted and messages stay empty.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from trainsmart.devcluster.agent.pod_runtime_contract import ContainerLaunch, Mount

log = logging.getLogger(__name__)

DEFAULT_PATH: Final = "/dev/termination-log"
POLICY_FILE: Final = "File"
POLICY_FALLBACK: Final = "FallbackToLogsOnError"
MESSAGE_MAX_BYTES: Final = 4096
"""The kubelet's limit per container."""
LOG_TAIL_LINES: Final = 80
LOG_TAIL_MAX_BYTES: Final = 2048
_LOG_READ_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class MessageSpec:
    """Where a container writes its message, and what stands in for an empty one."""

    path: str = DEFAULT_PATH
    policy: str = POLICY_FILE


def message_spec(container: Mapping[str, Any]) -> MessageSpec:
    """The container's fields, with the API server's defaults (pods from the API always carry both)."""
    path = container.get("terminationMessagePath") or DEFAULT_PATH
    policy = container.get("terminationMessagePolicy") or POLICY_FILE
    return MessageSpec(str(path), str(policy))


def message_file(log_path: Path) -> Path:
    """The host file for a container whose output goes to `log_path` (`<container>.log`)."""
    return log_path.with_name(log_path.stem + ".termination-log")


def prepare_message_file(path: Path, uid: int | None, gid: int | None) -> bool:
    """An empty file owned by the container's user (the run's own; a previous run's is discarded).
    False (logged) when it cannot be made: the container then runs without one, as it would anyway."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
    except OSError as error:
        log.warning("cannot create the termination message file %s: %s", path, error)
        return False
    return True


def bind_message_file(container: Mapping[str, Any], launch: ContainerLaunch) -> tuple[ContainerLaunch, Path | None]:
    """`launch` with a fresh message file bound at the container's path, as a kubelet does for every run,
    and that file; `launch` unchanged and None when the path is unusable or the file cannot be made."""
    path = message_spec(container).path
    if not path.startswith("/") or path.rstrip("/") == "":
        return launch, None
    host = message_file(launch.log_path)
    if not prepare_message_file(host, launch.run_as_user, launch.run_as_group):
        return launch, None
    return replace(launch, termination_message=Mount(host_path=host, container_path=path)), host


def _head(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        return handle.read(limit)


def _tail(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(size - limit, 0))
        return handle.read()


def log_tail(log_path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_MAX_BYTES) -> str:
    """The last `lines` lines of a log, at most `max_bytes` (the newest bytes kept)."""
    try:
        data = _tail(log_path, _LOG_READ_BYTES)
    except OSError:
        return ""
    kept = b"\n".join(data.rstrip(b"\n").split(b"\n")[-lines:])
    return kept[-max_bytes:].decode("utf-8", errors="replace")


def read_message(path: Path | None, spec: MessageSpec, exit_code: int, log_path: Path | None) -> str:
    """What goes into `state.terminated.message`: the file's first 4096 bytes, else (policy
    FallbackToLogsOnError, non-zero exit) the log tail, else nothing. Never raises."""
    text = ""
    if path is not None:
        try:
            text = _head(path, MESSAGE_MAX_BYTES).decode("utf-8", errors="replace")
        except OSError as error:
            log.warning("cannot read the termination message file %s: %s", path, error)
    if not text.strip() and spec.policy == POLICY_FALLBACK and exit_code != 0 and log_path is not None:
        text = log_tail(log_path)
    return text
