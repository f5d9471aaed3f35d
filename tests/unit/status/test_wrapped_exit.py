"""A job run under the metrics wrapper whose image has no python3: the Failed condition says so.

Pins:
- exit 127 (command not found) of the trainer container of a job with spec.trainer.metrics fails the job
  at once (permanent), and the Failed message names the missing python3 >= 3.8 on PATH and the way out;
- a runtime start failure that names python3 (containerd's StartError) gets the same explanation; one
  that does not keep the plain verdict;
- without spec.trainer.metrics, 127 keeps the plain "command not found" (the user wrote the command).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from support import models
from trainsmart.api import Reason, TrainingJob, TrainingJobConditionType, TrainingJobPhase
from trainsmart.api.conditions import find_condition
from trainsmart.settings import OperatorSettings
from trainsmart.status import derive_trainingjob_status
from trainsmart.status.exitcodes import WRAPPER_NEEDS_PYTHON, explain_wrapped_exit

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)
pod = partial(models.replica_pod, settings=OperatorSettings(), started=T0, now=NOW)


def custom_job(metrics: dict[str, Any] | None) -> TrainingJob:
    trainer: dict[str, Any] = {"image": "busybox:1.36", "command": ["./train"]}
    if metrics is not None:
        trainer["metrics"] = metrics
    return models.make_job({"replicas": 2, "trainer": trainer})


def failed_message(job: TrainingJob, code: int, reason: str = "", message: str = "") -> str:
    pods = [pod(job, 0, "exited", code=code, reason=reason, message=message), pod(job, 1)]
    status = derive_trainingjob_status(job, pods, None, [], NOW)
    assert status.phase == TrainingJobPhase.FAILED
    condition = find_condition(status.conditions, TrainingJobConditionType.FAILED)
    assert condition is not None and condition.reason == Reason.PERMANENT_EXIT_CODE
    return condition.message or ""


def test_exit_127_of_a_wrapped_command_says_the_image_needs_python3() -> None:
    message = failed_message(custom_job({"format": "json"}), 127, message="setpriv: failed to execute python3")
    assert "replica 0 (pod mnist-0) exited with code 127" in message
    assert "the metrics wrapper needs python3 >= 3.8 on PATH in the image" in message
    assert "remove spec.trainer.metrics" in message
    assert "setpriv: failed to execute python3" in message


def test_a_start_failure_naming_python3_gets_the_same_explanation() -> None:
    containerd = 'exec: "python3": executable file not found in $PATH: unknown'
    message = failed_message(custom_job({"format": "json"}), 128, reason="StartError", message=containerd)
    assert WRAPPER_NEEDS_PYTHON in message
    assert explain_wrapped_exit(128, "StartError", "failed to mount /data") is None
    assert explain_wrapped_exit(1, "Error", "python3: can't open file") is None


def test_without_metrics_127_stays_command_not_found() -> None:
    message = failed_message(custom_job(None), 127)
    assert "command not found" in message
    assert "python3" not in message
