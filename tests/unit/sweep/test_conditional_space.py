"""Conditional and structured search spaces (issue 15): parameters that exist only under a choice.

Pins:
- random, TPE and anneal never draw momentum without optimizer sgd, and do draw it with sgd; a trial's
  point simply has no momentum otherwise;
- nested choices (opt -> nesterov -> momentum, listed children first) follow the whole chain, and hyperopt
  sees them as nested `hp.choice` branches: its `vals` leave inactive labels empty;
- point <-> vals: a value recorded for a parameter that cannot exist under the point's options (momentum
  with adam, or under a parent option no longer listed) is left out of `vals`; round trips keep the rest;
- a parameter shared by two options of its parent is one label (drawn under both);
- grid search of a conditional space enumerates only valid combinations, matches `grid_size`, keeps a flat
  space's order, and skips points already tried whatever their key order;
- the trial: an absent parameter is not set (its path keeps the template's value, it is not in the
  parameters annotation), and a command item, argument or env var naming it is left out; list and object
  values land at their path as lists and objects.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from support import models
from trainsmart.api import HyperparamSweepSpec, TrainingJobSpec
from trainsmart.builders.trial import build_trial, decode_parameters
from trainsmart.names import PARAMETERS_ANNOTATION
from trainsmart.sweep import TrialOutcome, TrialPoint, grid_points, suggest
from trainsmart.sweep.space import hyperopt_space, point_from_vals, vals_from_point

SGD_ONLY: list[dict[str, Any]] = [
    {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 1e-1},
    {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]},
    {
        "name": "momentum",
        "path": "trainer.config.optimizer.momentum",
        "type": "uniform",
        "min": 0.5,
        "max": 0.99,
        "when": {"parameter": "opt", "in": ["sgd"]},
    },
]
# Children listed before their parents on purpose: the order of the list must not matter.
NESTED: list[dict[str, Any]] = [
    {
        "name": "momentum",
        "path": "trainer.config.optimizer.momentum",
        "type": "quniform",
        "min": 0.5,
        "max": 0.9,
        "q": 0.2,
        "when": {"parameter": "nesterov", "in": [True]},
    },
    {
        "name": "nesterov",
        "path": "trainer.config.optimizer.nesterov",
        "type": "choice",
        "values": [False, True],
        "when": {"parameter": "opt", "in": ["sgd"]},
    },
    {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]},
]


def spec(parameters: list[dict[str, Any]], algorithm: str = "tpe", **extra: Any) -> HyperparamSweepSpec:
    settings = {"tpe": {"startupTrials": 3}} if algorithm == "tpe" else {}
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "algorithm": {"name": algorithm, **settings},
            "parameters": parameters,
            "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
            "maxTrials": 50,
            **extra,
        }
    )


def run(sweep: HyperparamSweepSpec, trials: int, seed: int = 3) -> list[TrialPoint]:
    history: list[TrialPoint] = []
    for number in range(trials):
        (point,) = suggest(sweep, history, 1, seed)
        loss = float(point.get("lr", 0.01)) + (0.0 if point.get("opt") == "sgd" else 0.5)
        history.append(TrialPoint(number, point, TrialOutcome.SUCCEEDED, loss))
    return history


@pytest.mark.parametrize("algorithm", ["random", "tpe", "anneal"])
def test_momentum_is_drawn_exactly_when_the_optimizer_is_sgd(algorithm: str) -> None:
    history = run(spec(SGD_ONLY, algorithm), 16)
    for point in history:
        assert ("momentum" in point.parameters) == (point.parameters["opt"] == "sgd"), point
    optimizers = {point.parameters["opt"] for point in history}
    assert optimizers == {"adam", "sgd"}  # both branches are explored, so the test sees both cases
    assert all(0.5 <= point.parameters["momentum"] <= 0.99 for point in history if "momentum" in point.parameters)


@pytest.mark.parametrize("algorithm", ["random", "tpe", "anneal"])
def test_nested_choices_follow_the_whole_chain(algorithm: str) -> None:
    history = run(spec(NESTED, algorithm), 24, seed=11)
    for point in history:
        values = point.parameters
        assert ("nesterov" in values) == (values["opt"] == "sgd"), values
        assert ("momentum" in values) == (values.get("nesterov") is True), values
        if "momentum" in values:
            assert values["momentum"] in (0.6, 0.8)
    assert any("momentum" in point.parameters for point in history)


def test_hyperopt_space_nests_children_in_the_branches_of_their_parent() -> None:
    space = hyperopt_space(spec(NESTED).parameters)
    assert list(space) == ["opt"]  # only the root is top level; nesterov and momentum live in its branches
    text = str(space["opt"])
    assert "nesterov" in text and "momentum" in text


def test_vals_leave_out_values_that_cannot_exist_under_the_points_options() -> None:
    parameters = spec(NESTED).parameters
    inconsistent = {"opt": "adam", "nesterov": True, "momentum": 0.8}
    assert vals_from_point(parameters, inconsistent) == {"momentum": [], "nesterov": [], "opt": [0]}
    consistent = {"opt": "sgd", "nesterov": True, "momentum": 0.8}
    vals = vals_from_point(parameters, consistent)
    assert vals["opt"] == [1] and vals["nesterov"] == [1] and vals["momentum"]
    assert point_from_vals(parameters, vals) == consistent
    assert point_from_vals(parameters, {"opt": [0], "nesterov": [], "momentum": []}) == {"opt": "adam"}
    # A parent option that is no longer listed takes its children with it.
    assert vals_from_point(parameters, {"opt": "rmsprop", "nesterov": True}) == {
        "momentum": [],
        "nesterov": [],
        "opt": [],
    }


def test_a_parameter_shared_by_two_options_is_one_label_drawn_under_both() -> None:
    parameters = [
        {
            "name": "opt",
            "path": "trainer.config.optimizer.name",
            "type": "choice",
            "values": ["adam", "sgd", "rmsprop"],
        },
        {**SGD_ONLY[2], "when": {"parameter": "opt", "in": ["sgd", "rmsprop"]}},
    ]
    history = run(spec(parameters, "random"), 20)
    with_momentum = {point.parameters["opt"] for point in history if "momentum" in point.parameters}
    assert with_momentum == {"sgd", "rmsprop"}
    assert all("momentum" not in point.parameters for point in history if point.parameters["opt"] == "adam")


def test_grid_of_a_conditional_space_holds_only_valid_combinations() -> None:
    sweep = spec(NESTED, "grid")
    points = list(grid_points(sweep.parameters))
    assert points == [
        {"opt": "adam"},
        {"opt": "sgd", "nesterov": False},
        {"opt": "sgd", "nesterov": True, "momentum": 0.6},
        {"opt": "sgd", "nesterov": True, "momentum": 0.8},
    ]
    assert sweep.grid_size() == len(points) == sweep.planned_trials()


def test_grid_size_counts_each_branch_once_per_option_it_exists_under() -> None:
    parameters: list[dict[str, Any]] = [
        {"name": "lr", "path": "trainer.config.learningRate", "type": "choice", "values": [0.1, 0.01, 0.001]},
        {
            "name": "opt",
            "path": "trainer.config.optimizer.name",
            "type": "choice",
            "values": ["adam", "sgd", "rmsprop"],
        },
        {
            "name": "momentum",
            "path": "trainer.config.optimizer.momentum",
            "type": "choice",
            "values": [0.5, 0.9],
            "when": {"parameter": "opt", "in": ["sgd", "rmsprop"]},
        },
    ]
    sweep = spec(parameters, "grid")
    points = list(grid_points(sweep.parameters))
    assert sweep.grid_size() == len(points) == 3 * (1 + 2 + 2)
    assert len({json.dumps(point, sort_keys=True) for point in points}) == len(points)


def test_grid_suggestions_skip_conditional_points_already_tried() -> None:
    sweep = spec(NESTED, "grid")
    tried = TrialPoint(0, {"nesterov": True, "momentum": 0.6, "opt": "sgd"}, TrialOutcome.SUCCEEDED, 1.0)
    assert suggest(sweep, [tried], 10, seed=0) == [
        {"opt": "adam"},
        {"opt": "sgd", "nesterov": False},
        {"opt": "sgd", "nesterov": True, "momentum": 0.8},
    ]


def test_a_flat_grid_keeps_its_order() -> None:
    parameters = [
        {"name": "a", "path": "trainer.config.learningRate", "type": "choice", "values": [0.1, 0.2]},
        {"name": "b", "path": "trainer.config.batchSize", "type": "choice", "values": [8, 16]},
    ]
    assert [tuple(p.values()) for p in grid_points(spec(parameters, "grid").parameters)] == [
        (0.1, 8),
        (0.1, 16),
        (0.2, 8),
        (0.2, 16),
    ]


# ---- the trial --------------------------------------------------------------------------------------------

STRUCTURED: list[dict[str, Any]] = [
    {"name": "arch", "path": "trainer.config.model.name", "type": "choice", "values": ["mlp", "cnn"]},
    {
        "name": "hidden",
        "path": "trainer.config.model.hiddenSizes",
        "type": "choice",
        "values": [[32], [64, 64], [128, 64, 32]],
        "when": {"parameter": "arch", "in": ["mlp"]},
    },
    *SGD_ONLY[1:],
]


def structured_sweep() -> Any:
    return models.make_sweep(
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "maxTrials": 5,
            "parameters": STRUCTURED,
            "trialTemplate": {
                "trainer": {
                    "config": {"dataset": {"name": "digits"}, "epochs": 2},
                    "args": ["--opt=${params.opt}", "--momentum=${params.momentum}"],
                    "env": [{"name": "MOMENTUM", "value": "${params.momentum}"}, {"name": "KEEP", "value": "1"}],
                }
            },
        }
    )


def test_an_absent_parameter_is_not_set_and_its_placeholders_are_left_out() -> None:
    manifest = build_trial(structured_sweep(), 0, {"arch": "cnn", "opt": "adam", "momentum": 0.9})
    trainer = manifest["spec"]["trainer"]
    assert "momentum" not in trainer["config"].get("optimizer", {})
    assert "hiddenSizes" not in trainer["config"]["model"]
    assert trainer["args"] == ["--opt=adam"]
    assert [var["name"] for var in trainer["env"]] == ["KEEP"]
    assert decode_parameters(manifest["metadata"]["annotations"][PARAMETERS_ANNOTATION]) == {
        "arch": "cnn",
        "opt": "adam",
    }


def test_list_values_round_trip_to_the_trial_spec_at_their_path() -> None:
    point = {"arch": "mlp", "hidden": [128, 64, 32], "opt": "sgd", "momentum": 0.9}
    manifest = build_trial(structured_sweep(), 1, point)
    spec_ = TrainingJobSpec.model_validate(manifest["spec"])
    assert spec_.to_api()["trainer"]["config"]["model"]["hiddenSizes"] == [128, 64, 32]
    assert spec_.to_api()["trainer"]["config"]["optimizer"]["momentum"] == 0.9
    assert manifest["spec"]["trainer"]["args"] == ["--opt=sgd", "--momentum=0.9"]
    assert decode_parameters(manifest["metadata"]["annotations"][PARAMETERS_ANNOTATION]) == point


def test_a_parameter_that_exists_in_the_point_must_have_a_value() -> None:
    with pytest.raises(KeyError, match="momentum"):
        build_trial(structured_sweep(), 2, {"arch": "cnn", "opt": "sgd"})
