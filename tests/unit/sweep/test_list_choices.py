"""Choice parameters among lists and objects, through every algorithm and the trial history.

Pins:
- grid, random and TPE suggest only listed options, as lists (or objects), and TPE keeps working when
  trials with list values finish;
- grid enumerates list options in order and skips points already tried even when the history's lists
  came back from JSON with integral floats (`[64.0, 64]`);
- value_key: lists and objects compare by value (numbers by value, keys in any order), never equal a
  scalar, and stay hashable; to_hyperopt finds the option of a list value read back from JSON;
- a trial's list parameters survive the trials' annotation (encode/decode).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from trainsmart.api import HyperparamSweepSpec
from trainsmart.builders.trial import decode_parameters, encode_parameters
from trainsmart.sweep import TrialOutcome, TrialPoint, suggest
from trainsmart.sweep.space import to_hyperopt, value_key

SIZES: list[Any] = [[32], [64, 64], [128, 64, 32]]
PARAMETERS: list[dict[str, Any]] = [
    {"name": "sizes", "path": "trainer.config.model.hiddenSizes", "type": "choice", "values": SIZES},
    {"name": "lr", "path": "trainer.config.learningRate", "type": "choice", "values": [0.1, 0.01]},
]


def sweep(algorithm: str) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "algorithm": {"name": algorithm, **({"tpe": {"startupTrials": 2}} if algorithm == "tpe" else {})},
            "parameters": PARAMETERS,
            "trialTemplate": {"trainer": {"config": {"model": {"name": "mlp"}, "epochs": 2}}},
            "maxTrials": 20,
        }
    )


def loss(point: dict[str, Any]) -> float:
    return float(len(point["sizes"]) + point["lr"])


@pytest.mark.parametrize("algorithm", ["random", "tpe", "anneal"])
def test_hyperopt_algorithms_suggest_only_listed_list_options(algorithm: str) -> None:
    spec = sweep(algorithm)
    history: list[TrialPoint] = []
    for number in range(8):
        (point,) = suggest(spec, history, 1, seed=7)
        assert point["sizes"] in SIZES and isinstance(point["sizes"], list)
        history.append(TrialPoint(number, point, TrialOutcome.SUCCEEDED, loss(point)))
    assert len({json.dumps(point.parameters["sizes"]) for point in history}) > 1  # options are drawn, not fixed


def test_tpe_reads_back_list_values_from_json_and_prefers_the_better_option() -> None:
    spec = sweep("tpe")
    history: list[TrialPoint] = []
    for number in range(14):
        (point,) = suggest(spec, history, 1, seed=3)
        # What the apiserver and the annotation give back: JSON text, integral floats written as floats.
        stored = json.loads(json.dumps(point).replace("64", "64.0"))
        history.append(TrialPoint(number, stored, TrialOutcome.SUCCEEDED, loss(point)))
    late = [point.parameters["sizes"] for point in history[8:]]
    assert sum(value_key(sizes) == value_key([32]) for sizes in late) >= len(late) // 2


def test_grid_enumerates_list_options_in_order() -> None:
    points = suggest(sweep("grid"), [], 10, seed=0)
    assert [point["sizes"] for point in points] == [[32], [32], [64, 64], [64, 64], [128, 64, 32], [128, 64, 32]]
    assert [point["lr"] for point in points] == [0.1, 0.01] * 3


def test_grid_skips_points_tried_even_when_their_lists_came_back_as_floats() -> None:
    tried = TrialPoint(0, {"sizes": [64.0, 64], "lr": 0.1}, TrialOutcome.SUCCEEDED, 1.0)
    first = TrialPoint(1, {"sizes": [32], "lr": 0.1}, TrialOutcome.ACTIVE)
    points = suggest(sweep("grid"), [tried, first], 10, seed=0)
    assert {"sizes": [64, 64], "lr": 0.1} not in points
    assert {"sizes": [32], "lr": 0.1} not in points
    assert len(points) == 4


@pytest.mark.parametrize(
    ("a", "b"),
    [([64, 64], [64.0, 64]), ({"a": 1, "b": [2]}, {"b": [2.0], "a": 1.0}), ([[1, 2]], [[1.0, 2]]), ([], [])],
)
def test_equal_lists_and_objects_share_a_key(a: Any, b: Any) -> None:
    assert value_key(a) == value_key(b)
    assert hash(value_key(a)) == hash(value_key(b))


@pytest.mark.parametrize(
    ("a", "b"), [([64, 64], [64]), ([64], 64), ([1, 2], [2, 1]), ({"a": 1}, [["a", 1]]), ([True], [1]), ({}, [])]
)
def test_different_lists_and_objects_have_different_keys(a: Any, b: Any) -> None:
    assert value_key(a) != value_key(b)


def test_to_hyperopt_finds_the_option_of_a_list_read_back_from_json() -> None:
    parameter = sweep("tpe").parameters[0]
    assert to_hyperopt(parameter, [128.0, 64, 32]) == 2
    assert to_hyperopt(parameter, [16]) is None


def test_list_parameters_survive_the_trial_annotation() -> None:
    point = {"sizes": [128, 64, 32], "opt": {"name": "sgd", "momentum": 0.9}, "lr": 0.01}
    assert decode_parameters(encode_parameters(point)) == point
