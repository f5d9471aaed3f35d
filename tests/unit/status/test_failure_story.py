"""Which failure a restart or a failure names when several replicas failed, and what the message keeps.

Pins:
- the failure named is the earliest by the trainer container's finishedAt; the API keeps whole seconds, so
  when failures share a second an exit from outside the trainer (a signal: SIGKILL, OOM kill) is named
  before the code a rank exits with when it loses a peer (10, 13 or an uncaught error's 1), then by index;
- the named failure's code, why, time and message come first; every other failed replica follows in
  time order ("then replica 0 exited with code 10 ..."), in the Restarting and Failed conditions and so in
  their Warning Events;
- the message stays bounded: other replicas' details are cut short and at most a few are named.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from support import models
from trainsmart.api import Reason, TrainingJob, TrainingJobConditionType, TrainingJobPhase, TrainingJobStatus
from trainsmart.api.conditions import find_condition
from trainsmart.settings import OperatorSettings
from trainsmart.status import derive_trainingjob_status, status_events
from trainsmart.status.verdict import OTHER_FAILURES_NAMED

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
KILLED_AT = T0 + timedelta(minutes=3)
pod = partial(models.replica_pod, settings=OperatorSettings(), started=T0, now=NOW)
PEER_LOST = '{"status":"failed","exitCode":10,"reason":"RuntimeError: Connection closed by peer"}'


def make_job(replicas: int = 2, **spec: Any) -> TrainingJob:
    return models.make_job({"replicas": replicas, **spec})


def derive(job: TrainingJob, pods: list[dict[str, Any]]) -> TrainingJobStatus:
    previous = TrainingJobStatus.model_validate({"phase": "Running", "startTime": models.iso(T0)})
    return derive_trainingjob_status(job, pods, previous, [], NOW)


def message_of(status: TrainingJobStatus, type_: TrainingJobConditionType) -> str:
    condition = find_condition(status.conditions, type_)
    assert condition is not None and condition.status.value == "True" and condition.message
    return condition.message


def test_a_killed_rank_is_named_before_the_peer_that_lost_it_within_the_same_second() -> None:
    """The issue's story: rank 1 SIGKILLed, rank 0 exits 10 a moment later (the same whole second)."""
    job = make_job()
    pods = [
        pod(job, 0, "exited", code=10, message=PEER_LOST, finished=KILLED_AT),
        pod(job, 1, "exited", code=137, finished=KILLED_AT),
    ]
    status = derive(job, pods)
    assert (status.phase, status.restarts) == (TrainingJobPhase.RESTARTING, 1)
    message = message_of(status, TrainingJobConditionType.RESTARTING)
    assert message.startswith("replica 1 (pod mnist-1) exited with code 137 (SIGKILL) at 2025-01-01T12:03:00Z")
    assert "then replica 0 (pod mnist-0) exited with code 10 (RETRYABLE_FAILURE)" in message
    assert "killed by SIGKILL: out of memory (the OOM killer) or killed from outside" in message
    assert "Connection closed by peer" in message
    assert message.index("137") < message.index("replica 0") < message.index("restarting all 2 replicas")
    warning = next(event for event in status_events(None, status) if event.type == "Warning")
    assert warning.reason == Reason.RETRYABLE_EXIT_CODE
    assert warning.message.startswith("replica 1 (pod mnist-1) exited with code 137")
    assert "then replica 0" in warning.message


def test_the_earliest_finish_is_named_whatever_the_codes() -> None:
    job = make_job()
    pods = [
        pod(job, 0, "exited", code=137, finished=KILLED_AT + timedelta(seconds=2)),
        pod(job, 1, "exited", code=10, message=PEER_LOST, finished=KILLED_AT),
    ]
    message = message_of(derive(job, pods), TrainingJobConditionType.RESTARTING)
    assert message.startswith("replica 1 (pod mnist-1) exited with code 10")
    assert "then replica 0 (pod mnist-0) exited with code 137 (SIGKILL) at 2025-01-01T12:03:02Z" in message


def test_same_second_same_kind_of_exit_falls_back_to_the_index() -> None:
    job = make_job()
    pods = [pod(job, 0, "exited", code=10, finished=KILLED_AT), pod(job, 1, "exited", code=10, finished=KILLED_AT)]
    message = message_of(derive(job, pods), TrainingJobConditionType.RESTARTING)
    assert message.startswith("replica 0 (pod mnist-0) exited with code 10")
    assert "then replica 1 (pod mnist-1) exited with code 10" in message


def test_a_permanent_failure_keeps_the_other_failures_in_the_failed_message() -> None:
    job = make_job()
    pods = [
        pod(job, 0, "exited", code=10, message=PEER_LOST, finished=KILLED_AT + timedelta(seconds=1)),
        pod(job, 1, "exited", code=11, message="dataset path /data/x does not exist", finished=KILLED_AT),
    ]
    status = derive(job, pods)
    assert status.phase == TrainingJobPhase.FAILED
    message = message_of(status, TrainingJobConditionType.FAILED)
    assert message.startswith("replica 1 (pod mnist-1) exited with code 11 (PERMANENT_FAILURE)")
    assert "dataset path /data/x does not exist; then replica 0 (pod mnist-0) exited with code 10" in message


def test_other_failures_are_summarised_within_bounds() -> None:
    job = make_job(replicas=8)
    long_reason = "x" * 2000
    pods = [pod(job, 0, "exited", code=137, finished=KILLED_AT)]
    pods += [
        pod(job, i, "exited", code=10, message=long_reason, finished=KILLED_AT + timedelta(seconds=i))
        for i in range(1, 8)
    ]
    message = message_of(derive(job, pods), TrainingJobConditionType.RESTARTING)
    assert message.startswith("replica 0 (pod mnist-0) exited with code 137")
    named = [f"then replica {i} " for i in range(1, 8) if f"then replica {i} " in message]
    assert len(named) == OTHER_FAILURES_NAMED
    assert f"and {7 - OTHER_FAILURES_NAMED} more replicas failed" in message
    assert len(message) < 1024 + 200
