"""Warm start (issue 15): another sweep's finished trials seed this sweep's suggester.

Pins:
- TPE's next suggestion changes with a warm start (it models the other sweep's results from trial 0 on,
  and lands nearer their optimum than a cold start does), deterministically: the same inputs, the same point;
- warm trials are not this sweep's: numbering, seeds and the sweep's own history are untouched; rows still
  running teach nothing, so a warm start of only unfinished trials equals a cold start;
- the reconcile decision passes them through to the trials it creates;
- the other sweep's table: Succeeded/EarlyStopped rows are observations, Failed ones failures, rows deleted
  unfinished and unfinished rows are skipped;
- ignored, saying why: a missing sweep, the sweep itself, other parameter names or types, another
  objective metric, an invalid spec; a different goal is fine;
- Events only when trials are created: a WarmStartIgnored Warning each time, one WarmStarted at the start.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from support import models
from trainsmart.api import HyperparamSweepSpec, HyperparamSweepStatus
from trainsmart.sweep import TrialOutcome, TrialPoint, suggest
from trainsmart.sweep.sweep_decision import decide_sweep
from trainsmart.sweep.sweep_derive import sweep_seed
from trainsmart.sweep.sweep_plan import NewTrial, SweepPlan
from trainsmart.sweep.warm_start import WarmStartHistory, warm_start_events, warm_start_history

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
X = {"name": "x", "path": "trainer.config.learningRate", "type": "uniform", "min": 0.01, "max": 10.0}
OPT = {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]}


def spec_dict(*parameters: dict[str, Any], metric: str = "val_loss", goal: str = "minimize") -> dict[str, Any]:
    return {
        "objective": {"metric": metric, "goal": goal},
        "algorithm": {"name": "tpe", "tpe": {"startupTrials": 5}},
        "parameters": list(parameters) or [X],
        "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
        "maxTrials": 10,
    }


def earlier_results(count: int = 20) -> list[TrialPoint]:
    """A finished search over x with its optimum at x = 3."""
    xs = [0.01 + n * 9.99 / (count - 1) for n in range(count)]
    return [TrialPoint(n, {"x": x}, TrialOutcome.SUCCEEDED, (x - 3) ** 2) for n, x in enumerate(xs)]


def test_warm_start_changes_tpes_next_suggestion_towards_the_earlier_optimum() -> None:
    spec = HyperparamSweepSpec.model_validate(spec_dict())
    warm = earlier_results()
    cold_points = [suggest(spec, [], 1, seed)[0]["x"] for seed in range(6)]
    warm_points = [suggest(spec, [], 1, seed, warm)[0]["x"] for seed in range(6)]
    assert all(c != w for c, w in zip(cold_points, warm_points, strict=True))
    assert statistics.mean(abs(x - 3) for x in warm_points) < 1.0 < statistics.mean(abs(x - 3) for x in cold_points)
    assert [suggest(spec, [], 1, seed, warm)[0]["x"] for seed in range(6)] == warm_points  # deterministic


def test_warm_trials_do_not_take_numbers_and_unfinished_ones_teach_nothing() -> None:
    spec = HyperparamSweepSpec.model_validate(spec_dict())
    own = [TrialPoint(0, {"x": 5.0}, TrialOutcome.SUCCEEDED, 4.0)]
    running = [TrialPoint(0, {"x": 2.0}, TrialOutcome.ACTIVE), TrialPoint(7, {"x": 9.0}, TrialOutcome.ACTIVE)]
    assert suggest(spec, own, 2, seed=1, warm=running) == suggest(spec, own, 2, seed=1)
    # Warm numbers that collide with the sweep's own are no problem: they are renumbered below zero.
    warm = earlier_results()
    batch = suggest(spec, own, 2, seed=1, warm=warm)
    assert batch[:1] == suggest(spec, own, 1, seed=1, warm=warm)


def test_the_reconcile_decision_creates_trials_from_the_warm_history() -> None:
    sweep = models.make_sweep({**spec_dict(), "parallelTrials": 2})
    warm = tuple(earlier_results())
    cold = decide_sweep(sweep, [], None, NOW)
    warmed = decide_sweep(sweep, [], None, NOW, warm=warm)
    assert [new.number for new in warmed.plan.create] == [0, 1] == [new.number for new in cold.plan.create]
    assert [dict(new.parameters) for new in warmed.plan.create] == suggest(sweep.spec, [], 2, sweep_seed(sweep), warm)
    assert warmed.plan.create != cold.plan.create


def source_body(spec: dict[str, Any], rows: list[dict[str, Any]], name: str = "earlier") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ml"}, "spec": spec, "status": {"trials": rows}}


def row(number: int, phase: str, value: float | None = None, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": f"earlier-{number}",
        "number": number,
        "phase": phase,
        "parameters": {"x": 1.0 + number},
    }
    if value is not None:
        out["metricValue"] = value
    if reason is not None:
        out["reason"] = reason
    return {**out, **extra}


def warm_sweep(**spec: Any) -> Any:
    return models.make_sweep({**spec_dict(), "warmStart": {"sweep": "earlier"}, **spec})


def test_finished_rows_are_observations_and_the_rest_is_skipped() -> None:
    rows = [
        row(0, "Succeeded", 0.5),
        row(1, "EarlyStopped", 0.9, "EarlyStopped"),
        row(2, "Failed", reason="NoMetric"),
        row(3, "Failed", reason="OOMKilled"),
        row(4, "Failed", reason="TrialDeleted"),
        row(5, "Running"),
        row(6, "Suspended"),
    ]
    history = warm_start_history(warm_sweep(), source_body(spec_dict(goal="maximize"), rows))
    assert history.problem is None and history.source == "earlier"
    assert [(p.number, p.outcome, p.value) for p in history.points] == [
        (0, TrialOutcome.SUCCEEDED, 0.5),
        (1, TrialOutcome.EARLY_STOPPED, 0.9),
        (2, TrialOutcome.NO_METRIC, None),
        (3, TrialOutcome.FAILED, None),
    ]


def test_a_warm_start_that_cannot_apply_is_ignored_and_says_why() -> None:
    sweep = warm_sweep()
    cases = {
        "was not found in namespace ml": None,
        "it has no parameter x; only it has parameter opt": source_body(spec_dict(OPT), []),
        "x is loguniform there, uniform here": source_body(spec_dict({**X, "type": "loguniform"}), []),
        "it optimizes val_accuracy, this sweep val_loss": source_body(spec_dict(metric="val_accuracy"), []),
        "is invalid (parameters": source_body({**spec_dict(), "parameters": []}, []),
    }
    for expected, body in cases.items():
        history = warm_start_history(sweep, body)
        assert history.points == () and history.problem is not None and expected in history.problem, history
    itself = warm_start_history(models.make_sweep({**spec_dict(), "warmStart": {"sweep": "tune"}}), None)
    assert itself.problem == "warmStart.sweep 'tune' is this sweep itself; name another sweep"
    assert warm_start_history(models.make_sweep(spec_dict()), None) == WarmStartHistory()


def test_events_are_posted_only_when_trials_are_created() -> None:
    creating = SweepPlan(create=(NewTrial(0, {"x": 1.0}),))
    ignored = WarmStartHistory("earlier", problem="HyperparamSweep 'earlier' was not found in namespace ml")
    used = WarmStartHistory("earlier", points=tuple(earlier_results(3)))
    started = HyperparamSweepStatus.model_validate({"trials": [row(0, "Running")]})
    assert warm_start_events(ignored, None, SweepPlan()) == []
    ((kind, reason, message),) = warm_start_events(ignored, started, creating)
    assert (kind, reason) == ("Warning", "WarmStartIgnored") and "not found" in message
    ((kind, reason, message),) = warm_start_events(used, None, creating)
    assert (kind, reason, message) == (
        "Normal",
        "WarmStarted",
        "suggesting with 3 finished trials of HyperparamSweep 'earlier'",
    )
    assert warm_start_events(used, started, creating) == []
    assert warm_start_events(WarmStartHistory(), None, creating) == []
