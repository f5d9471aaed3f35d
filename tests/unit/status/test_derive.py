"""Deriving the TrainingJob status from the job, its pods, the last status and the trainer's reports.

Pins:
- phase per situation: no pods / pending / all running / partly finished -> Pending or Running; all
  succeeded (early stop included) -> Succeeded; permanent exit -> Failed naming replica, code, reason and
  the last diagnostic; retryable exit -> Restarting with restarts + 1, or Failed once backoffLimit is used
  up; eviction / deletion / disappearance while running -> Restarting without counting; suspend, resume,
  deadline; Succeeded and Failed are final;
- a restart is counted once: while the old pods terminate, restarts stays put; once they are gone the
  Restarting condition turns False (ReplicasRecreated); the count is recovered from pod labels if lost;
- every condition type is present, in a fixed order, with reason and message; lastTransitionTime is kept
  while a status stays; observedGeneration follows the job;
- deriving again from the result at the same instant gives an equal status (running idempotence);
- startTime/completionTime, replica counts, GPU seconds, reports folded (and foreign reports ignored);
- transitions produce Events; an unparsable spec gives InvalidSpec without touching the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from support import models
from support.models import iso
from trainsmart.api import (
    ConditionStatus,
    Reason,
    TrainingJob,
    TrainingJobConditionType,
    TrainingJobPhase,
    TrainingJobStatus,
)
from trainsmart.api.conditions import find_condition
from trainsmart.settings import OperatorSettings
from trainsmart.status import derive_trainingjob_status, invalid_spec_status, status_events
from trainsmart_trainer.contract import TrainerReport

SETTINGS = OperatorSettings()
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
Phase = TrainingJobPhase
Type = TrainingJobConditionType


def make_job(spec: dict[str, Any] | None = None, generation: int = 1) -> TrainingJob:
    return models.make_job({"replicas": 2, **(spec or {})}, generation=generation)


pod = partial(models.replica_pod, settings=SETTINGS, started=T0, now=NOW)
"""A replica pod as the API would return it: built by the real builder, with a status."""


def prior(phase: Phase | None = None, restarts: int = 0, **conditions: bool) -> TrainingJobStatus:
    """A previous status with the given phase and conditions (keyword: condition type -> holds)."""
    items = [
        {"type": type_, "status": "True" if holds else "False", "reason": "Before", "message": "before"}
        | {"lastTransitionTime": iso(T0)}
        for type_, holds in conditions.items()
    ]
    return TrainingJobStatus.model_validate(
        {"phase": phase, "restarts": restarts, "conditions": items, "startTime": iso(T0) if phase else None}
    )


def derive(
    job: TrainingJob,
    pods: list[dict[str, Any]],
    previous: TrainingJobStatus | None = None,
    reports: list[TrainerReport] | None = None,
    now: datetime = NOW,
) -> TrainingJobStatus:
    return derive_trainingjob_status(job, pods, previous, reports or [], now)


def condition(status: TrainingJobStatus, type_: Type) -> tuple[str, str, str]:
    found = find_condition(status.conditions, type_)
    assert found is not None and found.reason and found.message
    return found.status.value, found.reason, found.message


JOB = make_job()


@pytest.mark.parametrize(
    ("pods", "previous", "phase", "reason"),
    [
        ([], None, Phase.PENDING, Reason.WAITING_FOR_PODS),
        ([pod(JOB, 0, "pending"), pod(JOB, 1, "running")], None, Phase.PENDING, Reason.WAITING_FOR_PODS),
        ([pod(JOB, 0), pod(JOB, 1)], None, Phase.RUNNING, Reason.ALL_REPLICAS_RUNNING),
        ([pod(JOB, 0), pod(JOB, 1, "exited")], None, Phase.RUNNING, Reason.ALL_REPLICAS_RUNNING),
        ([pod(JOB, 0, "exited"), pod(JOB, 1, "exited")], None, Phase.SUCCEEDED, Reason.TRAINING_SUCCEEDED),
        (
            [pod(JOB, 0, "exited", code=12), pod(JOB, 1, "exited", code=12)],
            None,
            Phase.SUCCEEDED,
            Reason.TRAINING_SUCCEEDED,
        ),
        ([pod(JOB, 0), pod(JOB, 1, "exited", code=11)], None, Phase.FAILED, Reason.PERMANENT_EXIT_CODE),
        ([pod(JOB, 0), pod(JOB, 1, "exited", code=10)], None, Phase.RESTARTING, Reason.RETRYABLE_EXIT_CODE),
        (
            [pod(JOB, 0), pod(JOB, 1, "exited", code=137, reason="OOMKilled")],
            None,
            Phase.RESTARTING,
            Reason.RETRYABLE_EXIT_CODE,
        ),
        ([pod(JOB, 0), pod(JOB, 1, "evicted", code=13)], None, Phase.RESTARTING, "PodDisrupted"),
        ([pod(JOB, 0), pod(JOB, 1, deleting=True)], None, Phase.RESTARTING, "PodDisrupted"),
        ([pod(JOB, 0)], prior(Phase.RUNNING, Running=True), Phase.RESTARTING, "PodDisrupted"),
        ([pod(JOB, 0)], prior(Phase.PENDING, Running=False), Phase.PENDING, Reason.WAITING_FOR_PODS),
    ],
    ids=[
        "no-pods",
        "one-pending",
        "all-running",
        "one-finished",
        "all-succeeded",
        "early-stopped",
        "permanent",
        "retryable",
        "oom-killed",
        "evicted",
        "deleted",
        "vanished-while-running",
        "missing-before-running",
    ],
)
def test_phase(pods: list[dict[str, Any]], previous: TrainingJobStatus | None, phase: Phase, reason: str) -> None:
    status = derive(JOB, pods, previous)
    assert status.phase == phase
    holds = {
        Phase.RUNNING: Type.RUNNING,
        Phase.SUCCEEDED: Type.SUCCEEDED,
        Phase.FAILED: Type.FAILED,
        Phase.RESTARTING: Type.RESTARTING,
    }.get(phase, Type.RUNNING)
    assert condition(status, holds)[1] == reason
    assert [c.type for c in status.conditions] == [t.value for t in Type]
    assert all(c.reason and c.message and c.observed_generation == 1 for c in status.conditions)
    assert derive(JOB, pods, status) == status  # running idempotence


def test_waiting_reason_is_shown() -> None:
    pods = [pod(JOB, 0, "pending", reason="ImagePullBackOff", message="Back-off pulling image"), pod(JOB, 1)]
    status = derive(JOB, pods)
    assert condition(status, Type.CREATED)[0] == "True"
    message = condition(status, Type.RUNNING)[2]
    assert "1/2 replicas running" in message and "ImagePullBackOff: Back-off pulling image" in message
    assert (status.replicas.pending, status.replicas.running) == (1, 1)


def test_running_sets_start_time_and_counts() -> None:
    pods = [pod(JOB, 0, started=T0 + timedelta(seconds=30)), pod(JOB, 1, started=T0 + timedelta(seconds=7))]
    status = derive(JOB, pods)
    assert status.start_time == T0 + timedelta(seconds=7)
    assert status.replicas.running == 2
    assert status.completion_time is None


def test_success_sets_completion_time() -> None:
    status = derive(JOB, [pod(JOB, 0, "exited"), pod(JOB, 1, "exited", code=12)])
    assert status.completion_time == NOW
    assert "early-stopping" in condition(status, Type.SUCCEEDED)[2]
    assert condition(status, Type.RUNNING)[0] == "False"
    assert status.replicas.succeeded == 2


def test_permanent_failure_message_names_replica_code_reason_and_diagnostic() -> None:
    final_message = '{"exitCode":11,"reason":"dataset path /data/x does not exist","status":"failed"}'
    pods = [pod(JOB, 0), pod(JOB, 1, "exited", code=11, message=final_message)]
    diagnostic = {"type": "NonFiniteLoss", "severity": "Error", "message": "loss is nan at step 40"}
    report = TrainerReport.model_validate(
        {
            "job": {"namespace": "ml", "name": "mnist"},
            "kind": "diagnostic",
            "time": iso(T0),
            "totalEpochs": 5,
            "device": {"type": "cpu"},
            "diagnostics": [diagnostic],
        }
    )
    status = derive(JOB, pods, reports=[report])
    _, reason, message = condition(status, Type.FAILED)
    assert reason == Reason.PERMANENT_EXIT_CODE
    assert "replica 1 (pod mnist-1)" in message
    assert "11 (PERMANENT_FAILURE)" in message
    assert "dataset path /data/x does not exist" in message
    assert "NonFiniteLoss: loss is nan at step 40" in message
    assert condition(status, Type.SUCCEEDED)[0] == "False"
    assert status.completion_time == NOW


def _diagnostic_report(*diagnostics: dict[str, str]) -> TrainerReport:
    return TrainerReport.model_validate(
        {
            "job": {"namespace": "ml", "name": "mnist"},
            "kind": "diagnostic",
            "time": iso(T0),
            "totalEpochs": 5,
            "device": {"type": "cpu"},
            "diagnostics": list(diagnostics),
        }
    )


def test_a_serious_diagnostic_raises_the_training_warning_condition_while_training_goes_on() -> None:
    pods = [pod(JOB, 0), pod(JOB, 1)]
    assert condition(derive(JOB, pods), Type.TRAINING_WARNING)[:2] == ("False", Reason.NO_TRAINING_WARNINGS)
    info = {"type": "ClassImbalance", "severity": "Info", "message": "balanced weights applied"}
    assert condition(derive(JOB, pods, reports=[_diagnostic_report(info)]), Type.TRAINING_WARNING)[0] == "False"

    overfit = {
        "type": "Overfitting",
        "severity": "Warning",
        "message": "validation loss rose for 3 epochs",
        "suggestion": "raise weightDecay or dropout",
    }
    status = derive(JOB, pods, reports=[_diagnostic_report(info, overfit)])
    state, reason, message = condition(status, Type.TRAINING_WARNING)
    assert (state, reason) == ("True", "Overfitting")
    assert message == "validation loss rose for 3 epochs; suggestion: raise weightDecay or dropout"
    assert status.phase == Phase.RUNNING


def test_root_cause_is_the_earliest_failure() -> None:
    pods = [
        pod(JOB, 0, "exited", code=10, finished=T0 + timedelta(minutes=3)),
        pod(JOB, 1, "exited", code=137, finished=T0 + timedelta(minutes=1)),
    ]
    assert "replica 1" in condition(derive(JOB, pods), Type.RESTARTING)[2]


@pytest.mark.parametrize(
    ("restarts", "limit", "phase"),
    [(0, 3, Phase.RESTARTING), (2, 3, Phase.RESTARTING), (3, 3, Phase.FAILED), (0, 0, Phase.FAILED)],
)
def test_backoff_limit(restarts: int, limit: int, phase: Phase) -> None:
    job = make_job({"runPolicy": {"backoffLimit": limit}})
    pods = [pod(job, 0, attempt=restarts), pod(job, 1, "exited", code=10, attempt=restarts)]
    status = derive(job, pods, prior(Phase.RUNNING, restarts, Running=True))
    assert status.phase == phase
    if phase == Phase.RESTARTING:
        assert status.restarts == restarts + 1
        assert f"restart {restarts + 1} of {limit}" in condition(status, Type.RESTARTING)[2]
    else:
        assert status.restarts == restarts
        assert condition(status, Type.FAILED)[1] == Reason.BACKOFF_LIMIT_EXCEEDED


def test_run_policy_codes_override_defaults() -> None:
    job = make_job({"runPolicy": {"permanentExitCodes": [10]}})
    assert derive(job, [pod(job, 0), pod(job, 1, "exited", code=10)]).phase == Phase.FAILED


def test_a_restart_is_counted_once() -> None:
    failed = [pod(JOB, 0), pod(JOB, 1, "exited", code=10)]
    first = derive(JOB, failed, prior(Phase.RUNNING, Running=True))
    assert (first.phase, first.restarts) == (Phase.RESTARTING, 1)
    failure_message = condition(first, Type.RESTARTING)[2]
    # The plan deleted the pods; they terminate, one more fails on the way out.
    draining = [pod(JOB, 0, "exited", code=13, deleting=True), pod(JOB, 1, "exited", code=10, deleting=True)]
    second = derive(JOB, draining, first, now=NOW + timedelta(seconds=5))
    assert (second.phase, second.restarts) == (Phase.RESTARTING, 1)
    assert condition(second, Type.RESTARTING)[2] == failure_message
    third = derive(JOB, [], second, now=NOW + timedelta(seconds=30))
    assert (third.phase, third.restarts) == (Phase.PENDING, 1)
    assert condition(third, Type.RESTARTING)[:2] == ("False", "ReplicasRecreated")
    fourth = derive(JOB, [pod(JOB, 0, attempt=1), pod(JOB, 1, attempt=1)], third, now=NOW + timedelta(seconds=60))
    assert (fourth.phase, fourth.restarts) == (Phase.RUNNING, 1)
    assert condition(fourth, Type.RESTARTING)[:2] == ("False", "ReplicasRecreated")
    assert condition(fourth, Type.FAILED)[2] == "no permanent failure; 1 of 3 restarts used"


def test_disruption_is_not_counted_even_when_peers_then_fail() -> None:
    pods = [pod(JOB, 0, "exited", code=10), pod(JOB, 1, "evicted", code=13)]
    status = derive(JOB, pods, prior(Phase.RUNNING, Running=True))
    assert (status.phase, status.restarts) == (Phase.RESTARTING, 0)
    _, reason, message = condition(status, Type.RESTARTING)
    assert reason == "PodDisrupted"
    assert "replica 1 (pod mnist-1) was stopped from outside (Evicted)" in message
    assert "not counted" in message


def test_restart_count_is_recovered_from_pod_labels() -> None:
    status = derive(JOB, [pod(JOB, 0, attempt=2), pod(JOB, 1, attempt=2)], None)
    assert (status.phase, status.restarts) == (Phase.RUNNING, 2)


def test_init_container_failure_is_classified() -> None:
    broken = pod(JOB, 1, "pending")
    broken["status"]["phase"] = "Failed"
    broken["status"]["initContainerStatuses"] = [
        {"name": "fetch", "state": {"terminated": {"exitCode": 127, "reason": "Error", "message": "wget: not found"}}}
    ]
    status = derive(JOB, [pod(JOB, 0), broken])
    _, _, message = condition(status, Type.FAILED)
    assert status.phase == Phase.FAILED
    assert "in container fetch" in message and "command not found" in message


def test_suspend_and_resume() -> None:
    job = make_job({"suspend": True})
    running = prior(Phase.RUNNING, Running=True, Suspended=False)
    suspended = derive(job, [pod(job, 0), pod(job, 1)], running)
    assert suspended.phase == Phase.SUSPENDED and suspended.start_time is None
    assert condition(suspended, Type.SUSPENDED)[:2] == ("True", Reason.SUSPENDED_BY_USER)
    terminating = [pod(job, 0, "exited", code=13, deleting=True)]
    assert derive(job, terminating, suspended).phase == Phase.SUSPENDED
    resumed_job = make_job({"suspend": False}, generation=2)
    draining = derive(resumed_job, terminating, suspended)
    assert draining.phase == Phase.RESTARTING and draining.restarts == 0
    assert condition(draining, Type.RESTARTING)[1] == Reason.RESUMED
    resumed = derive(resumed_job, [], draining)
    assert resumed.phase == Phase.PENDING and resumed.restarts == 0
    assert condition(resumed, Type.SUSPENDED)[:2] == ("False", Reason.RESUMED)
    assert resumed.observed_generation == 2


def test_created_suspended_as_kueue_does() -> None:
    job = make_job({"suspend": True, "queueName": "team-a"})
    status = derive(job, [])
    assert status.phase == Phase.SUSPENDED
    assert condition(status, Type.CREATED) == (
        "False",
        Reason.SUSPENDED_BY_USER,
        "no pods are created while spec.suspend is true",
    )
    admitted = derive(make_job({"queueName": "team-a"}), [], status)
    assert admitted.phase == Phase.PENDING
    assert condition(admitted, Type.CREATED)[:2] == ("False", Reason.WAITING_FOR_PODS)


def test_deadline() -> None:
    job = make_job({"runPolicy": {"activeDeadlineSeconds": 600}})
    pods = [pod(job, 0), pod(job, 1)]
    assert derive(job, pods, now=T0 + timedelta(seconds=599)).phase == Phase.RUNNING
    status = derive(job, pods, now=T0 + timedelta(seconds=600))
    assert status.phase == Phase.FAILED
    assert condition(status, Type.FAILED)[1] == Reason.DEADLINE_EXCEEDED


def test_finished_is_final() -> None:
    failed = derive(JOB, [pod(JOB, 0), pod(JOB, 1, "exited", code=11)])
    later = derive(
        make_job(generation=2), [pod(JOB, 0, "exited"), pod(JOB, 1, "exited")], failed, now=NOW + timedelta(hours=1)
    )
    assert later.phase == Phase.FAILED
    assert later.completion_time == failed.completion_time
    assert [(c.type, c.status, c.reason, c.last_transition_time) for c in later.conditions] == [
        (c.type, c.status, c.reason, c.last_transition_time) for c in failed.conditions
    ]
    assert later.observed_generation == 2 and later.replicas.succeeded == 2


def test_transition_times_are_kept_while_nothing_changes() -> None:
    pods = [pod(JOB, 0), pod(JOB, 1)]
    first = derive(JOB, pods, now=NOW)
    later = derive(JOB, pods, first, now=NOW + timedelta(hours=2))
    assert later == first
    assert all(c.last_transition_time == NOW for c in later.conditions)


def test_gpu_seconds_accumulate_between_derivations() -> None:
    job = make_job({"gpusPerReplica": 2})
    pods = [pod(job, 0), pod(job, 1, "exited", code=0, finished=T0 + timedelta(seconds=40))]
    since = T0 + timedelta(seconds=10)
    now = T0 + timedelta(seconds=70)
    status = derive_trainingjob_status(job, pods, prior(Phase.RUNNING), [], now, gpu_accounted_until=since)
    assert status.gpu_seconds == 2 * 60 + 2 * 30
    again = derive_trainingjob_status(job, pods, status, [], now, gpu_accounted_until=now)
    assert again.gpu_seconds == status.gpu_seconds


def test_foreign_reports_are_ignored() -> None:
    def report(name: str) -> TrainerReport:
        return TrainerReport.model_validate(
            {
                "job": {"namespace": "ml", "name": name},
                "kind": "epoch",
                "time": iso(T0),
                "epoch": 2,
                "totalEpochs": 4,
                "device": {"type": "cpu"},
            }
        )

    status = derive(JOB, [pod(JOB, 0), pod(JOB, 1)], reports=[report("other")])
    assert status.progress is None
    status = derive(JOB, [pod(JOB, 0), pod(JOB, 1)], reports=[report("mnist")])
    assert status.progress is not None and status.progress.percent == 50.0


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        derive(JOB, [], now=datetime(2025, 1, 1))


def test_events_on_transitions() -> None:
    running = derive(JOB, [pod(JOB, 0), pod(JOB, 1)])
    events = status_events(None, running)
    assert [(e.type, e.reason) for e in events] == [("Normal", "ChildrenCreated"), ("Normal", "AllReplicasRunning")]
    assert status_events(running, running) == []
    restarting = derive(JOB, [pod(JOB, 0), pod(JOB, 1, "exited", code=10)], running)
    assert [(e.type, e.reason) for e in status_events(running, restarting)] == [("Warning", "RetryableExitCode")]


def test_invalid_spec() -> None:
    running = derive(JOB, [pod(JOB, 0), pod(JOB, 1)])
    status = invalid_spec_status(running, 3, ["spec.replicas: must be >= 1"], NOW)
    assert condition(status, Type.INVALID_SPEC) == ("True", Reason.SPEC_INVALID, "spec.replicas: must be >= 1")
    assert status.phase == Phase.RUNNING and status.observed_generation == 3
    fresh = invalid_spec_status(None, 1, ["a", "b"], NOW)
    assert fresh.phase == Phase.PENDING
    assert [c.status for c in fresh.conditions] == [ConditionStatus.TRUE]
    assert status_events(running, status)[0].type == "Warning"
