"""Multi-objective sweeps: admission, Pareto dominance/front/hypervolume, Optuna's samplers, the front in status.

Pins:
- admission: exactly one of objective and objectives; two or three distinct metrics; refused with the field
  named: a target, early stopping, keepBest, anneal, nsga2 without objectives, tpe.gamma, normal parameters
  with the Optuna samplers (random and grid take them, and every algorithm but anneal takes objectives);
  the wire form round-trips without the filled-in primary objective; the CRD does not require objective;
- dominance, the front (duplicates kept, maximize negated) and the hypervolume on known sets, and the
  hypervolume equal to Optuna's own on random 2-D and 3-D sets;
- the samplers (multi-objective TPE, NSGA-II): every point lies in its parameter's space, with the type
  promised; the same seed gives the same points, another seed others; a batch equals one at a time; the
  history's order does not matter; failed, running and gap trials are accepted; NSGA-II's generations
  follow the trial number;
- the trial table reads each objective's final-epoch value; a trial that succeeds without one of them is
  Failed/NoMetric naming it; derive puts the Succeeded trials on the front (with their values, by number)
  into status, keeps them once the TrainingJob is deleted, and leaves single-objective status without one.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from pydantic import ValidationError

from support import models
from trainsmart.api import HyperparamSweepSpec, TrialPhase
from trainsmart.api.crdgen import build_crds
from trainsmart.sweep import TrialOutcome, TrialPoint, suggest
from trainsmart.sweep.multiobjective import dominates, hypervolume, pareto_front, to_optuna
from trainsmart.sweep.sweep_derive import derive_sweep_status
from trainsmart.sweep.trial_table import to_record, view_trials

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
TEMPLATE = {"trainer": {"config": {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "epochs": 3}}}
OBJECTIVES = [{"metric": "val_accuracy", "goal": "maximize"}, {"metric": "param_count", "goal": "minimize"}]
PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 1e-1},
    {"name": "dropout", "path": "trainer.config.dropout", "type": "uniform", "min": 0.0, "max": 0.5},
    {"name": "bs", "path": "trainer.config.batchSize", "type": "quniform", "min": 16, "max": 128, "q": 16},
    {"name": "epochs", "path": "trainer.config.epochs", "type": "randint", "min": 1, "max": 5},
    {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd", "adamw"]},
    {"name": "wd", "path": "trainer.config.weightDecay", "type": "qloguniform", "min": 0.001, "max": 0.1, "q": 0.001},
]


def body(**spec: Any) -> dict[str, Any]:
    return {"objectives": OBJECTIVES, "parameters": PARAMETERS, "trialTemplate": TEMPLATE, "maxTrials": 50, **spec}


def spec_of(algorithm: str, **settings: Any) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(body(algorithm={"name": algorithm, **settings}))


def refusal(**spec: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        HyperparamSweepSpec.model_validate(body(**spec))
    return str(caught.value)


# ---- admission ----------------------------------------------------------------------------------------------


def test_objectives_fill_the_primary_objective_and_the_wire_form_round_trips() -> None:
    spec = HyperparamSweepSpec.model_validate(body())
    assert spec.objective.metric == "val_accuracy"
    wire = spec.to_api()
    assert "objective" not in wire
    assert wire["objectives"] == OBJECTIVES
    assert HyperparamSweepSpec.model_validate(wire) == spec


def test_the_crd_requires_neither_objective_nor_objectives_but_a_rule_wants_exactly_one() -> None:
    crd = build_crds()["hyperparamsweeps.trainsmart.dev.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "objective" not in spec["required"]
    assert spec["properties"]["objectives"]["maxItems"] == 3
    rules = [rule["rule"] for rule in spec["x-kubernetes-validations"]]
    assert "has(self.objective) != has(self.objectives)" in rules


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"objective": OBJECTIVES[0]}, "set exactly one of objective and objectives"),
        ({"objectives": OBJECTIVES[:1]}, "at least 2 items"),
        ({"objectives": [*OBJECTIVES, OBJECTIVES[0]]}, "objectives[2].metric 'val_accuracy' is listed twice"),
        ({"objectives": [OBJECTIVES[0], {**OBJECTIVES[1], "target": 1000}]}, "objectives[1].target"),
        ({"earlyStopping": {"rule": "asha"}}, "earlyStopping.rule must be none with objectives"),
        ({"trialRetention": {"policy": "keepBest", "count": 2}}, "trialRetention.policy keepBest"),
        ({"algorithm": {"name": "anneal"}}, "algorithm anneal optimizes one objective"),
        ({"algorithm": {"name": "tpe", "tpe": {"gamma": 0.3}}}, "algorithm.tpe.gamma applies to hyperopt's TPE"),
        (
            {"parameters": [{"name": "x", "path": "trainer.config.dropout", "type": "normal", "mu": 0.1, "sigma": 1}]},
            "parameters[0].type normal has no equivalent in Optuna",
        ),
        ({"algorithm": {"name": "random", "nsga2": {"populationSize": 4}}}, "nsga2 settings apply only to name nsga2"),
    ],
)
def test_what_cannot_work_with_objectives_is_refused_naming_the_field(change: dict[str, Any], words: str) -> None:
    assert words in refusal(**change)


def test_nsga2_needs_objectives_and_a_spec_needs_an_objective() -> None:
    single = {k: v for k, v in body().items() if k != "objectives"}
    with pytest.raises(ValidationError, match="algorithm nsga2 needs objectives"):
        HyperparamSweepSpec.model_validate({**single, "objective": OBJECTIVES[0], "algorithm": {"name": "nsga2"}})
    with pytest.raises(ValidationError, match="objective\n  Field required"):
        HyperparamSweepSpec.model_validate(single)


@pytest.mark.parametrize("algorithm", ["grid", "random"])
def test_grid_and_random_take_objectives_and_any_parameter_type(algorithm: str) -> None:
    normal = {"name": "x", "path": "trainer.config.dropout", "type": "normal", "mu": 0.1, "sigma": 1}
    parameters = [{"name": "x", "path": "trainer.config.dropout", "type": "choice", "values": [0.1, 0.2]}]
    chosen = parameters if algorithm == "grid" else [normal]
    spec = HyperparamSweepSpec.model_validate(body(algorithm={"name": algorithm}, parameters=chosen))
    assert len(suggest(spec, [], 2, seed=1)) == 2


# ---- dominance, front, hypervolume -------------------------------------------------------------------------


def test_dominance_needs_no_worse_everywhere_and_better_somewhere() -> None:
    assert dominates((1, 2), (2, 2))
    assert not dominates((1, 2), (1, 2))  # equal: neither dominates
    assert not dominates((1, 3), (2, 2))  # a trade-off
    with pytest.raises(ValueError, match="different lengths"):
        dominates((1, 2), (1, 2, 3))


def test_the_front_keeps_the_non_dominated_points_in_order_and_equal_ones_twice() -> None:
    points = [(3, 1), (2, 2), (2.5, 2.5), (1, 3), (2, 2), (4, 4)]
    assert pareto_front(points) == [0, 1, 3, 4]
    assert pareto_front([]) == []


def test_hypervolume_of_known_2d_and_3d_sets() -> None:
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    assert hypervolume([(1, 3), (2, 2), (3, 1), (3, 3), (5, 0)], (4, 4)) == pytest.approx(6.0)  # dominated, outside
    assert hypervolume([(0, 0, 0)], (1, 2, 3)) == pytest.approx(6.0)
    assert hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 2)) == pytest.approx(5.0)  # 4 + 2 - 1 shared
    assert hypervolume([], (1, 1)) == 0.0
    with pytest.raises(ValueError, match="2 or 3 objectives"):
        hypervolume([(0, 0, 0, 0)], (1, 1, 1, 1))


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_equals_optunas_on_random_sets(dims: int) -> None:
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    rng = random.Random(dims)
    for _ in range(5):
        points = [tuple(rng.random() for _ in range(dims)) for _ in range(30)]
        reference = (1.1,) * dims
        expected = compute_hypervolume(np.array(points), np.array(reference))
        assert hypervolume(points, reference) == pytest.approx(expected, rel=1e-9)


# ---- the samplers -------------------------------------------------------------------------------------------


def two_objectives(point: dict[str, Any]) -> dict[str, float]:
    """Accuracy rises with dropout near 0.2 and a larger batch; the size grows with the batch."""
    return {"val_accuracy": 1 - (point["dropout"] - 0.2) ** 2 - 16 / point["bs"], "param_count": point["bs"] * 1e3}


def run(spec: HyperparamSweepSpec, trials: int, seed: int) -> list[TrialPoint]:
    history: list[TrialPoint] = []
    for number in range(trials):
        (point,) = suggest(spec, history, 1, seed)
        outcome = TrialOutcome.FAILED if number % 7 == 3 else TrialOutcome.SUCCEEDED
        history.append(TrialPoint(number, point, outcome, objective_values=two_objectives(point)))
    return history


SAMPLERS = [("tpe", {"tpe": {"startupTrials": 4}}), ("nsga2", {"nsga2": {"populationSize": 4}})]


@pytest.mark.parametrize(("algorithm", "settings"), SAMPLERS)
def test_every_point_lies_in_its_parameters_space_with_its_type(algorithm: str, settings: dict[str, Any]) -> None:
    spec = spec_of(algorithm, **settings)
    for point in run(spec, 14, seed=3):
        p = point.parameters
        assert 1e-4 <= p["lr"] <= 1e-1 and isinstance(p["lr"], float)
        assert 0.0 <= p["dropout"] <= 0.5
        assert p["bs"] in range(16, 129, 16) and isinstance(p["bs"], int)
        assert p["epochs"] in range(1, 6) and isinstance(p["epochs"], int)
        assert p["opt"] in ("adam", "sgd", "adamw")
        assert 0.001 <= p["wd"] <= 0.1 and round(p["wd"] / 0.001, 6).is_integer()
        # and it reads back into the same Optuna form it was drawn as
        assert all(to_optuna(parameter, p[parameter.name]) is not None for parameter in spec.parameters)


@pytest.mark.parametrize(("algorithm", "settings"), SAMPLERS)
def test_the_same_seed_gives_the_same_points_and_another_seed_others(algorithm: str, settings: dict[str, Any]) -> None:
    spec = spec_of(algorithm, **settings)
    first = [point.parameters for point in run(spec, 12, seed=7)]
    assert first == [point.parameters for point in run(spec, 12, seed=7)]
    assert all(a != b for a, b in zip(first, [p.parameters for p in run(spec, 12, seed=8)], strict=True))


@pytest.mark.parametrize(("algorithm", "settings"), SAMPLERS)
def test_a_batch_equals_one_at_a_time_and_history_order_does_not_matter(
    algorithm: str, settings: dict[str, Any]
) -> None:
    spec = spec_of(algorithm, **settings)
    history = run(spec, 10, seed=5)
    history.append(TrialPoint(10, history[0].parameters, TrialOutcome.ACTIVE))
    history.append(TrialPoint(12, history[1].parameters, TrialOutcome.NO_METRIC))  # 11 is a gap
    batch = suggest(spec, history, 3, seed=5)
    one_at_a_time: list[TrialPoint] = list(history)
    for number in (13, 14, 15):
        (point,) = suggest(spec, one_at_a_time, 1, seed=5)
        one_at_a_time.append(TrialPoint(number, point, TrialOutcome.ACTIVE))
    assert batch == [point.parameters for point in one_at_a_time[-3:]]
    assert suggest(spec, list(reversed(history)), 3, seed=5) == batch


def test_nsga2_generations_follow_the_trial_number() -> None:
    from optuna import create_study

    from trainsmart.sweep.multiobjective import _numbered_nsga2_class

    sampler = _numbered_nsga2_class()(population_size=4, seed=0)
    study = create_study(directions=["minimize", "minimize"], sampler=sampler)
    trials = [study.ask() for _ in range(9)]
    assert [sampler.get_trial_generation(study, trial._cached_frozen_trial) for trial in trials] == [
        0, 0, 0, 0, 1, 1, 1, 1, 2,
    ]  # fmt: skip


# ---- the trial table and the front in status ---------------------------------------------------------------


def make_sweep(**spec: Any) -> Any:
    return models.make_sweep(body(algorithm={"name": "random", "seed": 7}, maxTrials=6, **spec))


def trial(sweep: Any, number: int, phase: str | None, latest: dict[str, float] | None = None) -> dict[str, Any]:
    make = partial(models.trial_job, params={"lr": 0.01, "dropout": 0.1, "bs": 32, "epochs": 2, "opt": "adam",
                                             "wd": 0.01}, created=T0)  # fmt: skip
    curve = [latest["val_accuracy"]] if latest and "val_accuracy" in latest else []
    return make(sweep, number, phase, curve, latest=latest)


def test_derive_puts_the_succeeded_trials_on_the_front_with_their_final_values() -> None:
    sweep = make_sweep()
    jobs = [
        trial(sweep, 0, "Succeeded", {"val_accuracy": 0.90, "param_count": 5000}),
        trial(sweep, 1, "Succeeded", {"val_accuracy": 0.95, "param_count": 9000}),
        trial(sweep, 2, "Succeeded", {"val_accuracy": 0.85, "param_count": 6000}),  # dominated by trial 0
        trial(sweep, 3, "Running", {"val_accuracy": 0.99, "param_count": 100}),  # not finished: not on the front
        trial(sweep, 4, "Succeeded", {"val_accuracy": 0.80, "param_count": 1000}),
    ]
    status = derive_sweep_status(sweep, jobs, None, NOW)
    assert status.pareto_front is not None
    assert [(entry.name, entry.values) for entry in status.pareto_front] == [
        ("tune-0", {"val_accuracy": 0.90, "param_count": 5000}),
        ("tune-1", {"val_accuracy": 0.95, "param_count": 9000}),
        ("tune-4", {"val_accuracy": 0.80, "param_count": 1000}),
    ]
    assert status.pareto_front_size == 3
    assert status.best_trial is not None and status.best_trial.name == "tune-1"  # best on the primary objective
    # once the TrainingJobs are gone, their rows keep the values and the front
    assert derive_sweep_status(sweep, [], status, NOW).pareto_front == status.pareto_front


def test_a_trial_without_one_objective_is_failed_no_metric_naming_it() -> None:
    sweep = make_sweep()
    (view,) = view_trials(sweep, [trial(sweep, 0, "Succeeded", {"val_accuracy": 0.9})], [])
    assert view.phase == TrialPhase.FAILED and view.reason == "NoMetric"
    assert view.message is not None and "'param_count'" in view.message
    assert to_record(view, deleted=False).objective_values == {"val_accuracy": 0.9}


def test_a_single_objective_sweep_has_no_front() -> None:
    single = {k: v for k, v in body().items() if k != "objectives"}
    sweep = models.make_sweep({**single, "objective": OBJECTIVES[0], "algorithm": {"name": "random"}})
    status = derive_sweep_status(sweep, [trial(sweep, 0, "Succeeded", {"val_accuracy": 0.9})], None, NOW)
    assert status.pareto_front is None and status.pareto_front_size is None
    assert status.trials[0].objective_values is None
