"""What a replica pod (a plain API dict) says about training, reduced to the few facts decisions need.

The trainer container decides, not the pod phase: an extra container that keeps running would hold the
pod in `Running` after training ended, and with `restartPolicy: Never` the trainer's terminated state is
the final word. A pod counts as *disrupted* (stopped from outside, not a training failure) when it was
evicted or preempted (`reason: Evicted`, or a `DisruptionTarget` condition, which Kubernetes sets for
preemption, eviction-API drains, taint-manager deletions and node shutdown), or when it failed without
the trainer ever exiting (rejected at admission by the kubelet, node lost).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from trainsmart.api.common import GPU_RESOURCE, TRAINER_CONTAINER_NAME
from trainsmart.names import ATTEMPT_LABEL, JOB_NAME_LABEL, REPLICA_INDEX_LABEL, pod_name

MESSAGE_MAX_CHARS: Final = 512
RAW_MESSAGE_MAX_CHARS: Final = 4097
"""The kubelet keeps 4096 bytes of a termination message; one more character marks a longer one."""
DISRUPTION_CONDITION: Final = "DisruptionTarget"
EVICTED_REASON: Final = "Evicted"


class PodState(StrEnum):
    """Where one replica is."""

    PENDING = "Pending"
    """Created, trainer not running yet (scheduling, pulling, init containers)."""
    RUNNING = "Running"
    EXITED = "Exited"
    """The trainer (or an init container, which then prevents it from ever starting) terminated."""
    DISRUPTED = "Disrupted"


@dataclass(frozen=True)
class PodView:
    """One pod of a job, as decisions see it."""

    name: str
    index: int | None
    """Replica index from the label; None when missing or not matching the pod name."""
    attempt: int | None
    pod_phase: str
    state: PodState
    terminating: bool
    """metadata.deletionTimestamp is set: going away, and its name is still taken until it is gone."""
    container: str = TRAINER_CONTAINER_NAME
    """The container the exit code belongs to."""
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    gpus: int = 0
    node: str = ""
    """spec.nodeName: where the pod was bound ("" while unscheduled)."""
    deletion_requested_at: datetime | None = None
    """When its deletion was asked for (deletionTimestamp less the grace period it was given): how long a
    terminating pod has been waiting for its kubelet (`status/node_loss.py`)."""
    termination_message: str = ""
    """The trainer's termination message as written (cut after RAW_MESSAGE_MAX_CHARS), for folding its
    final result into status (`status/termination_fold.py`); `message` is only its readable part."""

    @property
    def finished(self) -> bool:
        """The pod itself is done (phase Succeeded or Failed): it holds no resources any more."""
        return self.pod_phase in ("Succeeded", "Failed")

    def is_current(self, attempt: int, replicas: int) -> bool:
        """A replica of attempt `attempt` with a valid index."""
        return self.index is not None and self.index < replicas and self.attempt == attempt


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the API (`...Z`), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _deletion_requested_at(metadata: Mapping[str, Any]) -> datetime | None:
    due = parse_time(metadata.get("deletionTimestamp"))
    if due is None:
        return None
    grace = metadata.get("deletionGracePeriodSeconds")
    return due - timedelta(seconds=grace) if isinstance(grace, int) and grace > 0 else due


def _int_label(labels: Mapping[str, Any], key: str) -> int | None:
    raw = labels.get(key)
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    return None


def shorten(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    """The tail of `text` (where a log's error is), one line per line, at most `limit` characters."""
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def termination_detail(message: str) -> str:
    """The readable part of a termination message: the trainer's JSON result's `reason`, else the text."""
    text = message.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("reason"), str):
            return shorten(document["reason"])
    return shorten(text)


def _status_of(statuses: Any, name: str) -> Mapping[str, Any]:
    for status in statuses or []:
        if isinstance(status, Mapping) and status.get("name") == name:
            return status
    return {}


def _gpus(spec: Mapping[str, Any]) -> int:
    for container in spec.get("containers") or []:
        if container.get("name") == TRAINER_CONTAINER_NAME:
            raw = ((container.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE, 0)
            try:
                return int(raw)
            except (TypeError, ValueError):
                return 0
    return 0


def _disruption(status: Mapping[str, Any]) -> tuple[str, str] | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == DISRUPTION_CONDITION and condition.get("status") == "True":
            return condition.get("reason") or DISRUPTION_CONDITION, condition.get("message") or ""
    if status.get("reason") == EVICTED_REASON:
        return EVICTED_REASON, status.get("message") or ""
    return None


def _failed_init_container(status: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    for container in status.get("initContainerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            return str(container.get("name", "")), terminated
    return None


def _waiting_detail(status: Mapping[str, Any], trainer: Mapping[str, Any]) -> tuple[str, str]:
    waiting = (trainer.get("state") or {}).get("waiting") or {}
    if waiting.get("reason"):
        return str(waiting["reason"]), shorten(str(waiting.get("message", "")))
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return str(condition.get("reason") or "Unschedulable"), shorten(str(condition.get("message", "")))
    return "", ""


def view_pod(pod: Mapping[str, Any]) -> PodView:
    """The facts about one pod dict (camelCase, as the API returns it)."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    labels = metadata.get("labels") or {}
    name = str(metadata.get("name", ""))
    index = _int_label(labels, REPLICA_INDEX_LABEL)
    job = labels.get(JOB_NAME_LABEL)
    if index is not None and (not isinstance(job, str) or name != pod_name(job, index)):
        index = None
    phase = str(status.get("phase") or "Pending")
    trainer = _status_of(status.get("containerStatuses"), TRAINER_CONTAINER_NAME)
    state = trainer.get("state") or {}
    terminated = state.get("terminated")
    base: dict[str, Any] = {
        "name": name,
        "index": index,
        "attempt": _int_label(labels, ATTEMPT_LABEL),
        "pod_phase": phase,
        "terminating": bool(metadata.get("deletionTimestamp")),
        "gpus": _gpus(spec),
        "node": str(spec.get("nodeName") or ""),
        "deletion_requested_at": _deletion_requested_at(metadata),
    }
    if terminated:
        base |= {
            "exit_code": int(terminated.get("exitCode", 0)),
            "reason": str(terminated.get("reason") or ""),
            "message": termination_detail(str(terminated.get("message") or "")),
            "termination_message": str(terminated.get("message") or "")[:RAW_MESSAGE_MAX_CHARS],
            "started_at": parse_time(terminated.get("startedAt")),
            "finished_at": parse_time(terminated.get("finishedAt")),
        }
    elif state.get("running"):
        base["started_at"] = parse_time(state["running"].get("startedAt"))
    disruption = _disruption(status)
    if disruption is not None:
        reason, message = disruption
        return PodView(**base | {"state": PodState.DISRUPTED, "reason": reason, "message": shorten(message)})
    if terminated:
        return PodView(**base, state=PodState.EXITED)
    init_failure = _failed_init_container(status)
    if init_failure is not None:
        container, init = init_failure
        return PodView(
            **base,
            state=PodState.EXITED,
            container=container,
            exit_code=int(init.get("exitCode", 1)),
            reason=str(init.get("reason") or ""),
            message=termination_detail(str(init.get("message") or "")),
            finished_at=parse_time(init.get("finishedAt")),
        )
    if phase == "Succeeded":
        return PodView(**base, state=PodState.EXITED, exit_code=0)
    if phase == "Failed":
        reason = str(status.get("reason") or "PodFailed")
        return PodView(**base, state=PodState.DISRUPTED, reason=reason, message=shorten(str(status.get("message", ""))))
    if state.get("running"):
        return PodView(**base, state=PodState.RUNNING)
    reason, message = _waiting_detail(status, trainer)
    return PodView(**base, state=PodState.PENDING, reason=reason, message=message)


def view_pods(pods: Iterable[Mapping[str, Any]], job_name: str) -> list[PodView]:
    """Views of the pods labelled as `job_name`'s, sorted by name (inputs in any order give one answer)."""
    own = [pod for pod in pods if ((pod.get("metadata") or {}).get("labels") or {}).get(JOB_NAME_LABEL) == job_name]
    return sorted((view_pod(pod) for pod in own), key=lambda view: view.name)


def gpu_seconds_between(views: Iterable[PodView], since: datetime, now: datetime) -> float:
    """GPU x seconds the trainers of `views` ran inside (since, now]; a pod's run ends at finishedAt.

    A disrupted pod with no finish time stopped at an unknown moment and adds nothing, so the total errs
    low rather than billing GPU time that may not have been used.
    """
    return sum((pod_gpu_seconds_between(view, since, now) for view in views), 0.0)


def pod_gpu_seconds_between(view: PodView, since: datetime, now: datetime) -> float:
    """One pod's share of `gpu_seconds_between` (the estimated cost prices each pod by its node)."""
    if not view.gpus or view.started_at is None:
        return 0.0
    end = view.finished_at or (now if view.state == PodState.RUNNING else None)
    if end is None:
        return 0.0
    seconds = (min(end, now) - max(view.started_at, since)).total_seconds()
    return view.gpus * max(seconds, 0.0)
