"""Status models: the shape the operator writes, bounded, with the status vocabulary as constants.

Pins:
- a realistic TrainingJob and HyperparamSweep status parse and serialize to camelCase with RFC 3339 times;
- lists kept in status are bounded (history, diagnostics, conditions, the trial table);
- condition types include the ones the design promises, and phases are exactly the documented ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import (
    HyperparamSweepStatus,
    SweepConditionType,
    SweepPhase,
    TrainingJobConditionType,
    TrainingJobPhase,
    TrainingJobStatus,
)
from trainsmart.api.trainingjob_status import HISTORY_MAX_ITEMS

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

TRAININGJOB_STATUS: dict[str, Any] = {
    "observedGeneration": 3,
    "phase": "Running",
    "conditions": [
        {
            "type": "Created",
            "status": "True",
            "reason": "ChildrenCreated",
            "lastTransitionTime": "2025-01-02T03:04:05Z",
        },
        {"type": "Running", "status": "True", "reason": "AllReplicasRunning", "message": "2/2 replicas running"},
    ],
    "startTime": "2025-01-02T03:04:05Z",
    "replicas": {"running": 2},
    "restarts": 1,
    "progress": {"epoch": 3, "totalEpochs": 10, "percent": 30, "samplesPerSecond": 1520.5, "etaSeconds": 410},
    "metrics": {
        "latest": {"val_loss": 0.31, "val_accuracy": 0.91},
        "best": {"val_loss": 0.29, "val_accuracy": 0.92},
        "objective": "val_accuracy",
        "headline": "val_accuracy=0.9100",
        "history": [{"epoch": 1, "value": 0.85}, {"epoch": 2, "value": 0.9}, {"epoch": 3, "value": 0.91}],
    },
    "checkpoint": {"latestEpoch": 2, "path": "/checkpoints/epoch-2.pt", "time": "2025-01-02T03:10:00Z"},
    "gpuSeconds": 7200.5,
    "diagnostics": [
        {"type": "Overfitting", "severity": "Warning", "message": "val_loss rising", "suggestion": "add dropout"},
    ],
}


def test_a_trainingjob_status_round_trips_with_rfc3339_times() -> None:
    status = TrainingJobStatus.model_validate(TRAININGJOB_STATUS)
    assert status.phase == TrainingJobPhase.RUNNING
    assert status.conditions[0].last_transition_time == NOW
    wire = status.to_api()
    assert wire["conditions"][0]["lastTransitionTime"] == "2025-01-02T03:04:05Z"
    assert wire["replicas"] == {"pending": 0, "running": 2, "succeeded": 0, "failed": 0}
    assert TrainingJobStatus.model_validate(wire) == status


def test_a_sweep_status_round_trips() -> None:
    wire = {
        "phase": "Running",
        "seed": 12345,
        "counts": {"total": 3, "running": 1, "succeeded": 1, "earlyStopped": 1, "finished": 2, "planned": 20},
        "bestTrial": {"name": "s-0", "parameters": {"lr": 0.01, "opt": "adam"}, "metricValue": 0.93, "epoch": 4},
        "trials": [
            {
                "name": "s-0",
                "number": 0,
                "phase": "Succeeded",
                "parameters": {"lr": 0.01, "opt": "adam"},
                "metricValue": 0.93,
            },
            {
                "name": "s-1",
                "number": 1,
                "phase": "EarlyStopped",
                "parameters": {"lr": 0.1, "opt": "sgd"},
                "deleted": True,
            },
            {"name": "s-2", "number": 2, "phase": "Running", "parameters": {"lr": 0.001, "flag": True, "n": 3}},
        ],
        "gpuSeconds": 360.0,
    }
    status = HyperparamSweepStatus.model_validate(wire)
    assert status.trials[2].parameters == {"lr": 0.001, "flag": True, "n": 3}
    assert type(status.trials[2].parameters["n"]) is int
    assert HyperparamSweepStatus.model_validate(status.to_api()) == status


def test_the_objective_history_is_bounded() -> None:
    history = [{"epoch": epoch, "value": 1.0} for epoch in range(HISTORY_MAX_ITEMS + 1)]
    with pytest.raises(ValidationError, match=r"metrics\.history"):
        TrainingJobStatus.model_validate({"metrics": {"history": history}})


def test_times_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TrainingJobStatus.model_validate({"startTime": "2025-01-02T03:04:05"})


def test_condition_status_is_true_false_or_unknown() -> None:
    with pytest.raises(ValidationError, match="'True', 'False' or 'Unknown'"):
        TrainingJobStatus.model_validate({"conditions": [{"type": "Running", "status": "yes"}]})


def test_the_promised_condition_types_and_phases_exist() -> None:
    promised = {"Created", "Running", "Succeeded", "Failed", "Restarting", "Suspended", "InvalidSpec"}
    assert promised <= {member.value for member in TrainingJobConditionType}
    sweep_promised = {"Running", "Succeeded", "Failed", "GoalReached", "BudgetExhausted", "Suspended", "InvalidSpec"}
    assert sweep_promised <= {member.value for member in SweepConditionType}
    assert [phase.value for phase in TrainingJobPhase] == [
        "Pending",
        "Running",
        "Restarting",
        "Succeeded",
        "Failed",
        "Suspended",
    ]
    assert {phase.value for phase in SweepPhase} == {"Pending", "Running", "Succeeded", "Failed", "Suspended"}
