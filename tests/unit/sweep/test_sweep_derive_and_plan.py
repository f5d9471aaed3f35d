"""The sweep's pure layer: trials seen from their TrainingJobs, the derived status and the reconcile plan.

Pins:
- a trial's phase from its TrainingJob: Running, Succeeded with the best value and its epoch, Succeeded
  without the objective -> Failed/NoMetric with a reason naming what it did report, Failed with the job's
  reason, suspended with the sweep's `stopped` reason -> EarlyStopped, suspended without -> Suspended;
- trials owned by another sweep (same labels, other uid) are ignored;
- counts, bestTrial (finished trials only, ties to the lower number), gpuSeconds, seed (given, or from the
  uid), startTime from the first trial, every condition present with a reason and a message, phase;
- deriving again from the result gives an equal status; the table keeps a deleted trial's row (deleted:
  true) and a trial deleted before it finished becomes Failed/TrialDeleted, never re-run;
- endings: maxTrials reached, grid exhausted, goal reached (running trials stopped), maxDuration and
  maxGpuHours (BudgetExhausted, trials stopped, requeue at the deadline), more than maxFailedTrials
  (Failed naming the trials; TrialDeleted not counted), no successful trial -> Failed;
- the plan: at most parallelTrials active, never beyond the planned number, numbers continue after the
  highest (deleted trials included), the same suggestion twice, nothing while suspended (running trials
  held, then resumed), early stopping stops/promotes (promotions before new trials), retention deletes
  only recorded finished trials and waits while an early-stopping rule is on; editing maxTrials and
  parallelTrials takes effect at once; parallelTrials is a cap: above maxTrials or the grid's size only what
  remains is created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from support import models
from trainsmart.api import ConditionStatus, HyperparamSweep, HyperparamSweepStatus, SweepPhase, TrialPhase
from trainsmart.api.conditions import Reason
from trainsmart.sweep import TrialOutcome, suggest
from trainsmart.sweep.sweep_derive import SWEEP_CONDITION_ORDER, derive_sweep_status, sweep_seed
from trainsmart.sweep.sweep_plan import plan_sweep
from trainsmart.sweep.trial_table import invalid_trial_record, trial_history, view_trials

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
TEMPLATE = {"trainer": {"config": {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "epochs": 9}}}
PARAMETERS = [
    {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1},
    {"name": "batch", "path": "trainer.config.batchSize", "type": "choice", "values": [16, 32]},
]


def make_sweep(generation: int = 1, **spec: Any) -> HyperparamSweep:
    body = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "random", "seed": 7},
        "parameters": PARAMETERS,
        "trialTemplate": TEMPLATE,
        "maxTrials": 4,
        "parallelTrials": 2,
        **spec,
    }
    return models.make_sweep(body, generation=generation)


trial = partial(models.trial_job, params={"lr": 0.01, "batch": 32}, created=T0)
"""A trial TrainingJob dict: the builder's manifest, plus what the apiserver and the TJ controller add."""


def derive(
    sweep: HyperparamSweep,
    jobs: Sequence[Mapping[str, Any]],
    previous: HyperparamSweepStatus | None = None,
    now: datetime = NOW,
) -> HyperparamSweepStatus:
    return derive_sweep_status(sweep, jobs, previous, now)


def condition(status: HyperparamSweepStatus, type_: str) -> Any:
    return next(c for c in status.conditions if c.type == type_)


# ---- trials seen from their TrainingJobs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "job", "phase", "value", "reason"),
    [
        ("running", {"phase": "Running", "curve": [0.5, 0.7]}, TrialPhase.RUNNING, 0.7, None),
        ("created", {"phase": None}, TrialPhase.PENDING, None, None),
        ("best epoch wins", {"phase": "Succeeded", "curve": [0.5, 0.9, 0.8]}, TrialPhase.SUCCEEDED, 0.9, None),
        (
            "no objective",
            {"phase": "Succeeded", "latest": {"val_loss": 0.3}},
            TrialPhase.FAILED,
            None,
            "NoMetric",
        ),
        ("failed", {"phase": "Failed"}, TrialPhase.FAILED, None, "PermanentExitCode"),
        (
            "epoch reports lost, the final report arrived",
            {"phase": "Succeeded", "curve": [0.5], "best": {"val_accuracy": 0.93}},
            TrialPhase.SUCCEEDED,
            0.93,
            None,
        ),
        (
            "early stopped",
            {"phase": "Running", "curve": [0.4], "suspend": True, "stopped": "EarlyStopped"},
            TrialPhase.EARLY_STOPPED,
            0.4,
            "EarlyStopped",
        ),
        ("held by the sweep", {"phase": "Suspended", "suspend": True}, TrialPhase.SUSPENDED, None, None),
        (
            "finished before the stop landed",
            {"phase": "Succeeded", "curve": [0.4, 0.6], "suspend": True, "stopped": "EarlyStopped"},
            TrialPhase.SUCCEEDED,
            0.6,
            None,
        ),
    ],
)
def test_trial_phase_and_value_come_from_its_trainingjob(
    case: str, job: dict[str, Any], phase: TrialPhase, value: float | None, reason: str | None
) -> None:
    sweep = make_sweep()
    options = dict(job)
    [view] = view_trials(sweep, [trial(sweep, 0, options.pop("phase"), options.pop("curve", ()), **options)], [])
    assert (view.phase, view.value, view.reason) == (phase, value, reason), case
    if reason == "NoMetric":
        assert view.message is not None and "val_accuracy" in view.message and "val_loss" in view.message


def test_trials_owned_by_another_sweep_are_ignored() -> None:
    sweep = make_sweep()
    status = derive(sweep, [trial(sweep, 0, owner_uid="an-earlier-sweep-of-that-name")])
    assert status.counts.total == 0 and status.trials == []


# ---- the derived status -------------------------------------------------------------------------------------


def test_counts_best_trial_gpu_seconds_and_every_condition() -> None:
    sweep = make_sweep(maxTrials=5)
    jobs = [
        trial(sweep, 0, "Succeeded", [0.8, 0.9], params={"lr": 0.01, "batch": 16}, gpu_seconds=10),
        trial(sweep, 1, "Running", [0.6], suspend=True, stopped="EarlyStopped", gpu_seconds=5),
        trial(sweep, 2, "Running", [0.97], gpu_seconds=2.5),  # better, but not finished
        trial(sweep, 3, "Failed"),
    ]
    status = derive(sweep, jobs)
    assert status.phase == SweepPhase.RUNNING
    counts = status.counts
    assert (counts.total, counts.running, counts.succeeded, counts.failed, counts.early_stopped) == (4, 1, 1, 1, 1)
    assert (counts.finished, counts.planned) == (3, 5)
    assert status.best_trial is not None
    assert (status.best_trial.name, status.best_trial.metric_value, status.best_trial.epoch) == ("tune-0", 0.9, 2)
    assert status.best_trial.parameters == {"lr": 0.01, "batch": 16}
    assert status.gpu_seconds == 17.5 and status.seed == 7 and status.start_time == T0
    assert [c.type for c in status.conditions] == [str(t) for t in SWEEP_CONDITION_ORDER]
    assert all(c.reason and c.message for c in status.conditions)
    assert condition(status, "Running").status == ConditionStatus.TRUE
    assert [r.name for r in status.trials] == ["tune-0", "tune-1", "tune-2", "tune-3"]
    assert status.trials[1].phase == TrialPhase.EARLY_STOPPED and status.trials[1].reason == "EarlyStopped"


def test_deriving_again_from_the_result_changes_nothing() -> None:
    sweep = make_sweep(budget={"maxDuration": "1h"})
    jobs = [trial(sweep, 0, "Succeeded", [0.8]), trial(sweep, 1, "Running", [0.5])]
    first = derive(sweep, jobs)
    assert derive(sweep, jobs, first).to_api() == first.to_api()
    assert HyperparamSweepStatus.model_validate(first.to_api()) == first  # survives the API round trip


def test_seed_is_derived_from_the_uid_when_unset() -> None:
    one, two = make_sweep(algorithm={"name": "tpe"}), make_sweep(algorithm={"name": "tpe"})
    two.metadata["uid"] = "another-uid"
    assert sweep_seed(one) == sweep_seed(make_sweep(algorithm={"name": "tpe"})) != sweep_seed(two)
    assert derive(one, []).seed == sweep_seed(one)


def test_a_deleted_finished_trial_keeps_its_row_and_its_place_in_the_history() -> None:
    sweep = make_sweep(maxTrials=4, parallelTrials=2)
    first = derive(sweep, [trial(sweep, 0, "Succeeded", [0.9]), trial(sweep, 1, "Running", [0.5])])
    later = [trial(sweep, 1, "Running", [0.6])]
    status = derive(sweep, later, first)
    row = status.trials[0]
    assert (row.name, row.phase, row.metric_value, row.deleted) == ("tune-0", TrialPhase.SUCCEEDED, 0.9, True)
    assert status.best_trial is not None and status.best_trial.name == "tune-0"
    history = trial_history(view_trials(sweep, later, status.trials))
    assert [(p.number, p.outcome) for p in history] == [(0, TrialOutcome.SUCCEEDED), (1, TrialOutcome.ACTIVE)]
    plan = plan_sweep(sweep, later, status, NOW)
    assert [new.number for new in plan.create] == [2]  # continues after the highest, never re-runs 0


def test_a_trial_deleted_before_it_finished_is_failed_not_rerun_and_not_held_against_the_sweep() -> None:
    sweep = make_sweep(maxTrials=3, parallelTrials=1, maxFailedTrials=0)
    first = derive(sweep, [trial(sweep, 0, "Running", [0.5])])
    status = derive(sweep, [], first)
    row = status.trials[0]
    assert (row.phase, row.reason, row.deleted) == (TrialPhase.FAILED, "TrialDeleted", True)
    assert status.phase == SweepPhase.RUNNING
    assert [new.number for new in plan_sweep(sweep, [], status, NOW).create] == [1]


def test_a_point_that_made_an_invalid_trial_is_recorded_failed_and_the_sweep_moves_on() -> None:
    sweep = make_sweep(maxTrials=3, parallelTrials=1, maxFailedTrials=1)
    first = derive(sweep, [])
    row = invalid_trial_record(sweep, 0, {"lr": -1.0, "batch": 32}, "trialTemplate.trainer.config.learningRate: >0", T0)
    recorded = first.model_copy(update={"trials": [row]})
    status = derive(sweep, [], recorded)
    kept = status.trials[0]
    assert (kept.name, kept.phase, kept.reason, kept.deleted) == ("tune-0", TrialPhase.FAILED, "InvalidTrial", True)
    assert "learningRate" in (kept.message or "")
    assert status.counts.failed == 1 and status.phase == SweepPhase.RUNNING
    history = trial_history(view_trials(sweep, [], status.trials))
    assert [(p.number, p.outcome) for p in history] == [(0, TrialOutcome.FAILED)]
    plan = plan_sweep(sweep, [], status, NOW)
    assert [new.number for new in plan.create] == [1]  # a new number, so a new draw: never the same point again
    assert derive(sweep, [], status) == status  # the row stays as it is


# ---- how a sweep ends ---------------------------------------------------------------------------------------


def test_max_trials_reached_succeeds_and_plans_nothing() -> None:
    sweep = make_sweep(maxTrials=2)
    jobs = [trial(sweep, 0, "Succeeded", [0.8]), trial(sweep, 1, "Succeeded", [0.85])]
    status = derive(sweep, jobs)
    assert status.phase == SweepPhase.SUCCEEDED and status.completion_time == NOW
    assert condition(status, "Succeeded").reason == "MaxTrialsReached"
    assert "tune-1" in condition(status, "Succeeded").message
    plan = plan_sweep(sweep, jobs, status, NOW)
    assert plan.terminal and not (plan.create or plan.suspend or plan.resume)


def test_grid_ends_when_the_space_is_exhausted() -> None:
    grid = [{"name": "batch", "path": "trainer.config.batchSize", "type": "choice", "values": [16, 32]}]
    sweep = make_sweep(algorithm={"name": "grid"}, parameters=grid, maxTrials=None, parallelTrials=2)
    plan = plan_sweep(sweep, [], derive(sweep, []), NOW)
    assert [dict(new.parameters) for new in plan.create] == [{"batch": 16}, {"batch": 32}]
    jobs = [trial(sweep, i, "Succeeded", [0.8], params=dict(new.parameters)) for i, new in enumerate(plan.create)]
    status = derive(sweep, jobs)
    assert condition(status, "Succeeded").reason == "SearchSpaceExhausted"


def test_a_two_point_grid_with_more_parallel_trials_creates_two() -> None:
    grid = [{"name": "batch", "path": "trainer.config.batchSize", "type": "choice", "values": [16, 32]}]
    sweep = make_sweep(algorithm={"name": "grid"}, parameters=grid, maxTrials=None, parallelTrials=5)
    plan = plan_sweep(sweep, [], derive(sweep, []), NOW)
    assert [new.number for new in plan.create] == [0, 1]
    jobs = [trial(sweep, 0, "Running", [0.5], params={"batch": 16}), trial(sweep, 1, "Succeeded", [0.8])]
    assert plan_sweep(sweep, jobs, derive(sweep, jobs), NOW).create == ()


def test_goal_reached_stops_running_trials_then_succeeds() -> None:
    sweep = make_sweep(objective={"metric": "val_accuracy", "goal": "maximize", "target": 0.95}, maxTrials=6)
    jobs = [trial(sweep, 0, "Running", [0.9, 0.96]), trial(sweep, 1, "Running", [0.5])]
    status = derive(sweep, jobs)
    assert condition(status, "GoalReached").status == ConditionStatus.TRUE
    assert "tune-0" in condition(status, "GoalReached").message
    assert status.phase == SweepPhase.RUNNING  # until the trials have stopped
    plan = plan_sweep(sweep, jobs, status, NOW)
    assert sorted((a.name, a.reason) for a in plan.suspend) == [("tune-0", "GoalReached"), ("tune-1", "GoalReached")]
    assert plan.create == ()
    stopped = [
        trial(sweep, 0, "Suspended", [0.9, 0.96], suspend=True, stopped="GoalReached"),
        trial(sweep, 1, "Suspended", [0.5], suspend=True, stopped="GoalReached"),
    ]
    status = derive(sweep, stopped, status)
    assert status.phase == SweepPhase.SUCCEEDED
    assert status.best_trial is not None and status.best_trial.name == "tune-0"
    assert status.counts.early_stopped == 2


def test_duration_budget_requeues_at_the_deadline_then_stops_trials() -> None:
    sweep = make_sweep(budget={"maxDuration": "5m"})
    jobs = [trial(sweep, 0, "Running", [0.5])]
    early = derive(sweep, jobs, now=T0 + timedelta(minutes=2))
    assert condition(early, "BudgetExhausted").status == ConditionStatus.FALSE
    assert plan_sweep(sweep, jobs, early, T0 + timedelta(minutes=2)).requeue_after == 180
    late = derive(sweep, jobs, early, now=T0 + timedelta(minutes=5))
    budget = condition(late, "BudgetExhausted")
    assert (budget.status, budget.reason) == (ConditionStatus.TRUE, "MaxDurationReached")
    plan = plan_sweep(sweep, jobs, late, T0 + timedelta(minutes=5))
    assert [(a.name, a.reason) for a in plan.suspend] == [("tune-0", "MaxDurationReached")] and not plan.create
    done = derive(sweep, [trial(sweep, 0, "Running", [0.5], suspend=True, stopped="MaxDurationReached")], late)
    assert done.phase == SweepPhase.SUCCEEDED  # a result exists: the budget ends the sweep, it does not fail it


def test_gpu_hour_budget() -> None:
    sweep = make_sweep(budget={"maxGpuHours": 0.001})
    status = derive(sweep, [trial(sweep, 0, "Running", [0.5], gpu_seconds=4.0)])
    assert condition(status, "BudgetExhausted").reason == "MaxGpuHoursReached"


def test_more_than_max_failed_trials_fails_naming_them_and_stops_the_rest() -> None:
    sweep = make_sweep(maxFailedTrials=1, maxTrials=5, parallelTrials=3)
    jobs = [trial(sweep, 0, "Failed"), trial(sweep, 1, "Succeeded", latest={"loss": 1.0}), trial(sweep, 2)]
    status = derive(sweep, jobs)
    plan = plan_sweep(sweep, jobs, status, NOW)
    assert [(a.name, a.reason) for a in plan.suspend] == [("tune-2", "MaxFailedTrialsReached")]
    jobs[2] = trial(sweep, 2, "Running", suspend=True, stopped="MaxFailedTrialsReached")
    status = derive(sweep, jobs, status)
    failed = condition(status, "Failed")
    assert status.phase == SweepPhase.FAILED and failed.reason == "MaxFailedTrialsReached"
    assert "tune-0 (PermanentExitCode" in failed.message and "tune-1 (NoMetric" in failed.message
    # maxFailedTrials is editable: raising it lets the sweep go on.
    relaxed = make_sweep(generation=2, maxFailedTrials=5, maxTrials=5, parallelTrials=3)
    assert derive(relaxed, jobs, status).phase == SweepPhase.RUNNING


def test_no_trial_with_the_objective_fails_the_sweep() -> None:
    sweep = make_sweep(maxTrials=1, parallelTrials=1)
    status = derive(sweep, [trial(sweep, 0, "Succeeded", latest={"val_loss": 0.2})])
    assert status.phase == SweepPhase.FAILED
    assert condition(status, "Failed").reason == "NoSuccessfulTrial"


# ---- the plan -----------------------------------------------------------------------------------------------


def test_new_trials_fill_the_parallel_slots_with_suggested_points() -> None:
    sweep = make_sweep(maxTrials=4, parallelTrials=2)
    plan = plan_sweep(sweep, [], derive(sweep, []), NOW)
    assert [new.number for new in plan.create] == [0, 1]
    assert [dict(new.parameters) for new in plan.create] == suggest(sweep.spec, [], 2, 7)
    assert plan_sweep(sweep, [], derive(sweep, []), NOW) == plan  # the same inputs, the same plan


@pytest.mark.parametrize(
    ("max_trials", "parallel", "finished", "running", "created"),
    [
        (4, 2, 0, 1, [1]),
        (4, 2, 0, 2, []),
        (4, 2, 3, 1, []),  # maxTrials reached
        (6, 4, 2, 1, [3, 4, 5]),  # parallelTrials raised while running
        (2, 2, 1, 2, []),  # maxTrials lowered below what exists: nothing new, nothing stopped
        (2, 5, 0, 0, [0, 1]),  # parallelTrials above maxTrials: a cap, only what remains is created
        (3, 4, 1, 1, [2]),  # maxTrials lowered below parallelTrials on a running sweep
    ],
)
def test_at_most_parallel_trials_and_never_beyond_max_trials(
    max_trials: int, parallel: int, finished: int, running: int, created: list[int]
) -> None:
    sweep = make_sweep(maxTrials=max_trials, parallelTrials=parallel)
    jobs = [trial(sweep, i, "Succeeded", [0.8]) for i in range(finished)]
    jobs += [trial(sweep, finished + i, "Running", [0.5]) for i in range(running)]
    plan = plan_sweep(sweep, jobs, derive(sweep, jobs), NOW)
    assert [new.number for new in plan.create] == created
    assert plan.suspend == ()


def test_suspending_the_sweep_holds_running_trials_and_resuming_releases_them() -> None:
    sweep = make_sweep(suspend=True)
    jobs = [trial(sweep, 0, "Running", [0.5]), trial(sweep, 1, "Pending")]
    status = derive(sweep, jobs)
    assert status.phase == SweepPhase.SUSPENDED
    assert condition(status, "Suspended").status == ConditionStatus.TRUE
    plan = plan_sweep(sweep, jobs, status, NOW)
    assert [(a.name, a.reason) for a in plan.suspend] == [("tune-0", None), ("tune-1", None)] and not plan.create
    held = [trial(sweep, 0, "Suspended", [0.5], suspend=True), trial(sweep, 1, "Suspended", suspend=True)]
    resumed = make_sweep(generation=2)
    status = derive(resumed, held, status)
    assert condition(status, "Suspended").reason == "Resumed"
    plan = plan_sweep(resumed, held, status, NOW)
    assert [a.name for a in plan.resume] == ["tune-0", "tune-1"] and plan.create == ()


def test_median_rule_stops_a_trial_worse_than_the_others_and_frees_its_slot() -> None:
    sweep = make_sweep(earlyStopping={"rule": "median", "minEpochs": 1}, maxTrials=5, parallelTrials=1)
    jobs = [
        trial(sweep, 0, "Succeeded", [0.9, 0.95]),
        trial(sweep, 1, "Succeeded", [0.85, 0.9]),
        trial(sweep, 2, "Succeeded", [0.88, 0.93]),
        trial(sweep, 3, "Running", [0.5]),
    ]
    plan = plan_sweep(sweep, jobs, derive(sweep, jobs), NOW)
    assert [(a.name, a.reason) for a in plan.suspend] == [("tune-3", "EarlyStopped")]
    assert "median" in plan.suspend[0].message
    assert [new.number for new in plan.create] == [4]


def test_asha_promotes_a_paused_trial_before_starting_new_ones() -> None:
    sweep = make_sweep(
        earlyStopping={"rule": "asha", "minEpochs": 1, "reductionFactor": 2}, maxTrials=4, parallelTrials=1
    )
    jobs = [
        trial(sweep, 0, "Suspended", [0.9], suspend=True, stopped="EarlyStopped"),
        trial(sweep, 1, "Running", [0.5]),
    ]
    plan = plan_sweep(sweep, jobs, derive(sweep, jobs), NOW)
    assert [(a.name, a.reason) for a in plan.suspend] == [("tune-1", "EarlyStopped")]
    assert [(a.name, a.reason) for a in plan.resume] == [("tune-0", Reason.PROMOTED)]
    assert plan.create == ()  # the one slot goes to the promoted trial


def test_a_trial_stopped_for_the_goal_is_never_promoted() -> None:
    sweep = make_sweep(earlyStopping={"rule": "asha", "minEpochs": 1, "reductionFactor": 2}, maxTrials=2)
    jobs = [
        trial(sweep, 0, "Suspended", [0.9], suspend=True, stopped="MaxDurationReached"),
        trial(sweep, 1, "Succeeded", [0.5] * 9),
    ]
    plan = plan_sweep(sweep, jobs, derive(sweep, jobs), NOW)
    assert plan.resume == ()


@pytest.mark.parametrize(
    ("retention", "rule", "deleted"),
    [
        ({"policy": "keepAll"}, "none", []),
        ({"policy": "deleteFinished"}, "none", ["tune-0", "tune-1", "tune-2"]),
        ({"policy": "keepBest", "count": 1}, "none", ["tune-1", "tune-2"]),
        ({"policy": "deleteFinished"}, "median", []),  # curves are still needed while the sweep runs
    ],
)
def test_retention_deletes_only_finished_recorded_trials(
    retention: dict[str, Any], rule: str, deleted: list[str]
) -> None:
    sweep = make_sweep(trialRetention=retention, earlyStopping={"rule": rule}, maxTrials=5, parallelTrials=1)
    jobs = [
        trial(sweep, 0, "Succeeded", [0.9]),
        trial(sweep, 1, "Succeeded", [0.8]),
        trial(sweep, 2, "Failed"),
        trial(sweep, 3, "Running", [0.1]),
    ]
    status = derive(sweep, jobs)
    assert sorted(a.name for a in plan_sweep(sweep, jobs, status, NOW).delete) == deleted
