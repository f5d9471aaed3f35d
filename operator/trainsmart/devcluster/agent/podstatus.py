"""Pure derivation of a pod's `status` from what the agent knows about its containers.

Kept free of I/O so the kubelet's rules can be pinned by table-driven tests: which phase a set of
container states means under each restart policy, which conditions follow, and what a container status
looks like. Controllers (ours and the real ones) read these fields, so they follow the kubelet's
semantics, not our convenience:

- a container that exited and will be restarted is `waiting` with its exit in `lastState`;
- `Always` never yields a terminal phase; `OnFailure` is terminal only when every container succeeded;
- `Ready` and `ContainersReady` are true exactly when every app container runs (there are no probes).

The other pure rules of the lifecycle live here too: restart policy, adopting a previous agent's status,
the deletion grace period, and the shape of the Events the agent records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL_PHASES = frozenset({SUCCEEDED, FAILED})
CONTAINER_ID_SCHEME = "trainsmart://"
# A kubelet never gives a container less than this to stop, even on a forced delete.
MIN_GRACE_SECONDS = 2.0


def rfc3339(moment: datetime) -> str:
    """The apiserver's `metav1.Time` form: second precision, UTC, `Z`. Comparing our last write to a new
    one only works if both are rounded the same way."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Waiting:
    reason: str = "ContainerCreating"
    message: str = ""


@dataclass(frozen=True)
class Running:
    started_at: datetime


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    started_at: datetime | None
    finished_at: datetime
    reason: str = ""
    message: str = ""

    @property
    def effective_reason(self) -> str:
        return self.reason or termination_reason(self.exit_code)


ContainerState = Waiting | Running | Terminated


def termination_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


@dataclass(frozen=True)
class ContainerRecord:
    """One container as the agent sees it. `pid` is the current (or last) process, if one ever ran."""

    name: str
    image: str
    state: ContainerState = field(default_factory=Waiting)
    last_terminated: Terminated | None = None
    restart_count: int = 0
    pid: int | None = None

    @property
    def finished(self) -> bool:
        return isinstance(self.state, Terminated)

    @property
    def succeeded(self) -> bool:
        return isinstance(self.state, Terminated) and self.state.exit_code == 0


@dataclass(frozen=True)
class PodView:
    """Everything status derivation needs; `failure` is a pod-level (reason, message) that overrides the
    container-derived phase, e.g. when the agent could not admit the pod at all."""

    restart_policy: str
    init_containers: Sequence[ContainerRecord]
    containers: Sequence[ContainerRecord]
    host_ip: str
    pod_ip: str | None = None
    start_time: datetime | None = None
    failure: tuple[str, str] | None = None


def _counts_as_stopped(record: ContainerRecord) -> tuple[bool, bool]:
    """(stopped, succeeded) in the kubelet's sense: a container waiting to restart after an exit has
    stopped, with the outcome of that exit."""
    if isinstance(record.state, Terminated):
        return True, record.state.exit_code == 0
    if isinstance(record.state, Waiting) and record.last_terminated is not None:
        return True, record.last_terminated.exit_code == 0
    return False, False


def init_pending(view: PodView) -> bool:
    """Init containers still have work to do: not all of them terminated with success."""
    return any(not r.succeeded for r in view.init_containers)


def derive_phase(view: PodView) -> str:
    if view.failure is not None:
        return FAILED
    if init_pending(view):
        # An init container that failed for good fails the pod; otherwise the pod waits for them.
        if view.restart_policy == "Never" and any(
            isinstance(r.state, Terminated) and r.state.exit_code != 0 for r in view.init_containers
        ):
            return FAILED
        return PENDING
    running = waiting = stopped = succeeded = 0
    for record in view.containers:
        if isinstance(record.state, Running):
            running += 1
            continue
        is_stopped, ok = _counts_as_stopped(record)
        if is_stopped:
            stopped += 1
            succeeded += ok
        else:
            waiting += 1
    if waiting:
        return PENDING
    if running:
        return RUNNING
    if not stopped:
        return PENDING
    if view.restart_policy == "Always":
        return RUNNING  # every container is between an exit and its restart
    if stopped == succeeded:
        return SUCCEEDED
    return FAILED if view.restart_policy == "Never" else RUNNING


def _condition(
    kind: str, ok: bool, previous: Mapping[str, Mapping[str, Any]], now: str, reason: str = "", message: str = ""
) -> dict[str, Any]:
    """A condition whose lastTransitionTime only moves when its status does."""
    status = "True" if ok else "False"
    before = previous.get(kind) or {}
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    out: dict[str, Any] = {"type": kind, "status": status, "lastProbeTime": None}
    out["lastTransitionTime"] = since or now
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def derive_conditions(
    view: PodView, phase: str, previous: Sequence[Mapping[str, Any]], now: datetime
) -> list[dict[str, Any]]:
    stamp = rfc3339(now)
    by_type = {c.get("type", ""): c for c in previous}
    terminal = phase in TERMINAL_PHASES
    done_reason = "PodCompleted" if terminal else ""
    unready = [r.name for r in view.containers if not isinstance(r.state, Running)]
    ready = not terminal and not unready and view.failure is None
    not_ready_reason = done_reason or ("ContainersNotReady" if unready else "")
    not_ready_msg = "" if terminal else (f"containers with unready status: [{' '.join(unready)}]" if unready else "")
    pending_init = [r.name for r in view.init_containers if not r.succeeded]
    initialized = not pending_init or terminal
    init_reason = done_reason if initialized else "ContainersNotInitialized"
    init_msg = "" if initialized else f"containers with incomplete status: [{' '.join(pending_init)}]"
    ready_reason, ready_msg = ("", "") if ready else (not_ready_reason, not_ready_msg)
    conditions = [
        _condition("Initialized", initialized, by_type, stamp, init_reason, init_msg),
        _condition("Ready", ready, by_type, stamp, ready_reason, ready_msg),
        _condition("ContainersReady", ready, by_type, stamp, ready_reason, ready_msg),
    ]
    # The scheduler owns PodScheduled; carry it through unchanged (it is True: the pod is bound to us).
    scheduled = dict(by_type.get("PodScheduled") or {"type": "PodScheduled", "status": "True"})
    scheduled.setdefault("lastProbeTime", None)
    scheduled.setdefault("lastTransitionTime", stamp)
    return [*conditions, scheduled]


def state_dict(state: ContainerState) -> dict[str, Any]:
    if isinstance(state, Running):
        return {"running": {"startedAt": rfc3339(state.started_at)}}
    if isinstance(state, Terminated):
        term: dict[str, Any] = {
            "exitCode": state.exit_code,
            "reason": state.effective_reason,
            "startedAt": rfc3339(state.started_at) if state.started_at else None,
            "finishedAt": rfc3339(state.finished_at),
        }
        if state.message:
            term["message"] = state.message
        return {"terminated": term}
    waiting: dict[str, Any] = {"reason": state.reason}
    if state.message:
        waiting["message"] = state.message
    return {"waiting": waiting}


def container_status(record: ContainerRecord, ready: bool) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": record.name,
        "image": record.image,
        # Images are never pulled: commands run on the host's filesystem. Say so instead of faking a digest.
        "imageID": "",
        "ready": ready,
        "started": isinstance(record.state, Running),
        "restartCount": record.restart_count,
        "state": state_dict(record.state),
        "lastState": state_dict(record.last_terminated) if record.last_terminated else {},
    }
    if record.pid is not None:
        status["containerID"] = f"{CONTAINER_ID_SCHEME}{record.pid}"
    return status


def derive_pod_status(view: PodView, previous_conditions: Sequence[Mapping[str, Any]], now: datetime) -> dict[str, Any]:
    """The whole `status` object the agent writes (conditions and statuses lists are written whole).
    Fields set to None delete themselves in a merge patch: that is how a retried pod sheds an earlier
    failure reason, or a finished one keeps no stale IP from a previous agent."""
    phase = derive_phase(view)
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": derive_conditions(view, phase, previous_conditions, now),
        "hostIP": view.host_ip,
        "podIP": view.pod_ip,
        "podIPs": [{"ip": view.pod_ip}] if view.pod_ip else None,
        "startTime": rfc3339(view.start_time) if view.start_time else None,
        "containerStatuses": [
            container_status(r, isinstance(r.state, Running) and phase == RUNNING) for r in view.containers
        ],
        "reason": None,
        "message": None,
    }
    if view.init_containers:
        status["initContainerStatuses"] = [container_status(r, r.succeeded) for r in view.init_containers]
    if view.failure is not None:
        status["reason"], status["message"] = view.failure
    return status


def status_patch(last_sent: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The patch body to send, or None when nothing changed since our last write."""
    if last_sent is not None and dict(last_sent) == dict(desired):
        return None
    return {"status": dict(desired)}


# -- lifecycle rules the worker applies (pure as well) ----------------------------------------


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def adopt_record(spec: Mapping[str, Any], previous: Mapping[str, Any] | None, now: datetime) -> ContainerRecord:
    """Rebuild a container's record from the status a previous agent instance wrote. Its process was killed
    when this agent started, so a container that was running (or about to restart) has exited: say so,
    and let the restart policy decide, exactly as for any other exit."""
    name, image = spec["name"], spec.get("image", "")
    if not previous:
        return ContainerRecord(name=name, image=image)
    restarts = int(previous.get("restartCount") or 0)
    state = previous.get("state") or {}
    # A terminated state is final as written; a waiting one with a last exit was due to restart after it.
    done = state.get("terminated") or (
        None if state.get("running") else (previous.get("lastState") or {}).get("terminated")
    )
    if done:
        term = Terminated(
            exit_code=int(done.get("exitCode", 0)),
            started_at=parse_time(done.get("startedAt")),
            finished_at=parse_time(done.get("finishedAt")) or now,
            reason=done.get("reason") or "",
            message=done.get("message") or "",
        )
        return ContainerRecord(name=name, image=image, state=term, restart_count=restarts)
    if state.get("running"):
        killed = Terminated(
            exit_code=137,
            started_at=parse_time(state["running"].get("startedAt")),
            finished_at=now,
            reason="Error",
            message="the trainsmart node agent restarted and stopped this container",
        )
        return ContainerRecord(name=name, image=image, state=killed, restart_count=restarts)
    return ContainerRecord(name=name, image=image, restart_count=restarts)


def should_restart(restart_policy: str, exit_code: int, init: bool) -> bool:
    """Init containers restart on failure under both Always and OnFailure; app containers per policy."""
    if restart_policy == "Always" and not init:
        return True
    return restart_policy in ("Always", "OnFailure") and exit_code != 0


def is_terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def is_deleting(pod: Mapping[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def deletion_grace(pod: Mapping[str, Any]) -> float:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = spec.get("terminationGracePeriodSeconds", 30)
    return max(float(grace), MIN_GRACE_SECONDS)


def build_event(
    pod: Mapping[str, Any], container: str, warning: bool, reason: str, message: str, now: datetime
) -> dict[str, Any]:
    """A core/v1 Event about one of a pod's containers, signed the way a kubelet signs its own."""
    meta, node = pod["metadata"], pod["spec"].get("nodeName", "")
    stamp = rfc3339(now)
    return {
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
            "fieldPath": f"spec.containers{{{container}}}",
        },
        "type": "Warning" if warning else "Normal",
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "trainsmart-node-agent",
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def now_utc() -> datetime:
    return datetime.now(UTC)
