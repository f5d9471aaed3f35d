"""Objects as the operator's pure layer sees them: parsed models and the child dicts the API returns.

For unit tests of builders, status derivation and plans. Children are made by the real builders
(`build_worker_pod`, `build_trial`) and then given what the apiserver, the kubelet or the TrainingJob
controller would add, so a test never pins a hand-written manifest that the builders no longer produce.
Times are arguments: each test module keeps its own clock (T0, NOW).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from trainsmart.api import HyperparamSweep, TrainingJob
from trainsmart.builders import build_worker_pod
from trainsmart.builders.trial import build_trial
from trainsmart.names import STOPPED_ANNOTATION
from trainsmart.settings import OperatorSettings

SWEEP_UID = "sweep-uid"


def iso(moment: datetime) -> str:
    """An API timestamp (RFC 3339 with a Z), as the apiserver writes them."""
    return moment.isoformat().replace("+00:00", "Z")


def make_job(
    spec: Mapping[str, Any] | None = None,
    name: str = "mnist",
    *,
    namespace: str = "ml",
    uid: str = "uid-1",
    generation: int = 1,
) -> TrainingJob:
    """A parsed TrainingJob as the apiserver stored it (uid, generation)."""
    metadata = {"name": name, "namespace": namespace, "uid": uid, "generation": generation}
    return TrainingJob.model_validate({"metadata": metadata, "spec": dict(spec or {})})


def make_sweep(
    spec: Mapping[str, Any],
    name: str = "tune",
    *,
    namespace: str = "ml",
    uid: str = SWEEP_UID,
    generation: int | None = 1,
) -> HyperparamSweep:
    """A parsed HyperparamSweep; `generation=None` leaves it out, as a body that never reached the API."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
    if generation is not None:
        metadata["generation"] = generation
    return HyperparamSweep.model_validate({"metadata": metadata, "spec": dict(spec)})


def replica_pod(
    job: TrainingJob,
    index: int,
    state: str = "running",
    *,
    started: datetime,
    now: datetime,
    settings: OperatorSettings | None = None,
    attempt: int = 0,
    code: int = 0,
    reason: str = "",
    message: str = "",
    deleting: bool = False,
    finished: datetime | None = None,
) -> dict[str, Any]:
    """A replica pod as the API returns it: the builder's manifest with the status a kubelet writes.

    `state`: pending (waiting, `reason` default ContainerCreating), running, exited (with `code`; reason
    Completed or Error unless given) or evicted (terminated, and the pod Failed with reason Evicted).
    `finished` defaults to five minutes after `started`; `deleting` marks it deleted at `now`."""
    manifest = build_worker_pod(job, index, attempt, settings or OperatorSettings())
    if deleting:
        manifest["metadata"]["deletionTimestamp"] = iso(now)
    trainer: dict[str, Any] = {"name": "trainer"}
    status: dict[str, Any] = {"phase": "Pending", "containerStatuses": [trainer]}
    if state == "pending":
        trainer["state"] = {"waiting": {"reason": reason or "ContainerCreating", "message": message}}
    elif state == "running":
        status["phase"] = "Running"
        trainer["state"] = {"running": {"startedAt": iso(started)}}
    elif state in ("exited", "evicted"):
        end = finished or started + timedelta(minutes=5)
        terminated = {
            "exitCode": code,
            "reason": reason or ("Completed" if code == 0 else "Error"),
            "message": message,
            "startedAt": iso(started),
            "finishedAt": iso(end),
        }
        trainer["state"] = {"terminated": terminated}
        status["phase"] = "Succeeded" if code == 0 and state == "exited" else "Failed"
        if state == "evicted":
            status["reason"] = "Evicted"
            status["message"] = "The node was low on resource: memory."
    manifest["status"] = status
    return manifest


def trial_job(
    sweep: HyperparamSweep,
    number: int,
    phase: str | None = "Running",
    curve: Sequence[float] = (),
    *,
    params: Mapping[str, Any],
    created: datetime,
    suspend: bool = False,
    stopped: str | None = None,
    gpu_seconds: float = 0.0,
    latest: Mapping[str, float] | None = None,
    best: Mapping[str, float] | None = None,
    owner_uid: str = SWEEP_UID,
    failed_reason: str = "PermanentExitCode",
    objective: str = "val_accuracy",
) -> dict[str, Any]:
    """A trial TrainingJob dict: `build_trial`'s manifest plus what the apiserver and the TrainingJob
    controller add (uid, creation time, a status with `curve` as the objective's per-epoch history)."""
    manifest = build_trial(sweep, number, params)
    meta = manifest["metadata"]
    meta["uid"] = f"uid-{number}"
    meta["creationTimestamp"] = iso(created)
    meta["ownerReferences"][0]["uid"] = owner_uid
    if stopped:
        meta["annotations"][STOPPED_ANNOTATION] = stopped
    manifest["spec"]["suspend"] = suspend
    status: dict[str, Any] = {"gpuSeconds": gpu_seconds}
    if phase is not None:
        status["phase"] = phase
    if curve or latest:
        status["metrics"] = {
            "objective": objective,
            "history": [{"epoch": i + 1, "value": v} for i, v in enumerate(curve)],
            "latest": dict(latest or ({objective: curve[-1]} if curve else {})),
            "best": dict(best or {}),
        }
        status["progress"] = {"epoch": len(curve)}
    if phase in ("Succeeded", "Failed"):
        status["completionTime"] = iso(created + timedelta(minutes=1))
    if phase == "Failed":
        status["conditions"] = [{"type": "Failed", "status": "True", "reason": failed_reason, "message": "exit 11"}]
    if suspend:
        status["conditions"] = [
            {"type": "Suspended", "status": "True", "reason": "SuspendedByUser", "lastTransitionTime": iso(created)}
        ]
    manifest["status"] = status
    return manifest
