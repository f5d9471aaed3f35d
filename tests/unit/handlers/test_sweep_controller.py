"""The sweep controller's pure helpers: parsing a stored sweep, and which transitions become Events.

Pins:
- a sweep the webhook would refuse parses to its problems, each with a field path; a valid one to the model;
- a condition that becomes True is announced once (Warning for Failed, InvalidSpec, BudgetExhausted;
  Normal otherwise), Running never (the trials' own Events say that); an unchanged status announces nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trainsmart.api import HyperparamSweep, HyperparamSweepStatus
from trainsmart.handlers.sweep_controller import parse_sweep
from trainsmart.sweep.sweep_derive import derive_sweep_status
from trainsmart.sweep.sweep_events import sweep_events

NOW = datetime(2025, 1, 1, tzinfo=UTC)
SPEC: dict[str, Any] = {
    "objective": {"metric": "val_accuracy", "goal": "maximize", "target": 0.9},
    "algorithm": {"name": "random", "seed": 1},
    "maxTrials": 2,
    "parameters": [{"name": "lr", "path": "trainer.config.learningRate", "type": "uniform", "min": 0.001, "max": 0.1}],
    "trialTemplate": {},
}


def body(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "tune", "namespace": "ml", "uid": "u", "generation": 1}, "spec": {**SPEC, **spec}}


def test_parse_sweep_returns_the_model_or_problems_with_field_paths() -> None:
    assert isinstance(parse_sweep(body()), HyperparamSweep)
    problems = parse_sweep(body(parallelTrials=3, maxFailedTrials=-1))
    assert isinstance(problems, list)
    assert any(p.startswith("spec.maxFailedTrials:") for p in problems), problems


def test_conditions_becoming_true_are_announced_once() -> None:
    sweep = HyperparamSweep.model_validate(body())
    first = derive_sweep_status(sweep, [], None, NOW)
    assert [reason for _, reason, _ in sweep_events(None, first)] == []  # a new sweep: nothing True to announce
    goal = first.model_copy(
        update={
            "conditions": [
                c.model_copy(update={"status": "True", "reason": "GoalReached"}) if c.type == "GoalReached" else c
                for c in first.conditions
            ]
        }
    )
    assert sweep_events(first, goal) == [("Normal", "GoalReached", goal.conditions[3].message)]
    assert sweep_events(goal, goal) == []
    failed = HyperparamSweepStatus.model_validate(
        {"conditions": [{"type": "Failed", "status": "True", "reason": "MaxFailedTrialsReached", "message": "x"}]}
    )
    assert sweep_events(None, failed) == [("Warning", "MaxFailedTrialsReached", "x")]
