"""Grid search: exhaustive, duplicate-free, deterministic enumeration, and suggest() walking through it.

Pins:
- each parameter's grid is its finite set (choice values, randint range, multiples of q, min..max by step or
  by factor), tidy and as long as `Parameter.grid_size()` says;
- the grid is exactly `itertools.product` of those sets (last parameter fastest): size == product of sizes,
  no duplicates, the same on every call;
- suggest() hands out the grid in order, skips points already in the history (given in any order, with
  gaps, written back by JSON), returns fewer than asked at the end and nothing after, whatever batch sizes
  the controller asks for.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainsmart.api import HyperparamSweepSpec, Parameter
from trainsmart.sweep import TrialOutcome, TrialPoint, grid_points, parameter_grid, suggest

GRID_PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 1e-1, "step": 10},
    {"name": "bs", "path": "trainer.config.batchSize", "type": "randint", "min": 16, "max": 18},
    {"name": "wd", "path": "trainer.config.weightDecay", "type": "uniform", "min": 0, "max": 0.3, "step": 0.1},
    {"name": "ep", "path": "trainer.config.epochs", "type": "quniform", "min": 1, "max": 10, "q": 3},
    {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]},
]


def grid_sweep(parameters: list[dict[str, Any]] = GRID_PARAMETERS) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_accuracy", "goal": "maximize"},
            "algorithm": {"name": "grid"},
            "parameters": parameters,
            "trialTemplate": {"trainer": {"config": {"epochs": 3}}},
        }
    )


@pytest.mark.parametrize(
    ("parameter", "values"),
    [
        ({"type": "choice", "values": ["b", "a", 3, True]}, ["b", "a", 3, True]),
        ({"type": "randint", "min": -1, "max": 2}, [-1, 0, 1, 2]),
        ({"type": "quniform", "min": 0.05, "max": 0.45, "q": 0.1}, [0.1, 0.2, 0.3, 0.4]),
        ({"type": "quniform", "min": 1, "max": 10, "q": 3}, [3, 6, 9]),
        ({"type": "qloguniform", "min": 8, "max": 40, "q": 8}, [8, 16, 24, 32, 40]),
        ({"type": "uniform", "min": 0, "max": 0.5, "step": 0.1}, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
        ({"type": "uniform", "min": 0, "max": 0.55, "step": 0.1}, [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
        ({"type": "loguniform", "min": 1e-5, "max": 1e-2, "step": 10}, [1e-5, 1e-4, 1e-3, 1e-2]),
        ({"type": "loguniform", "min": 1, "max": 10, "step": 3}, [1.0, 3.0, 9.0]),
    ],
)
def test_each_parameters_grid_is_its_finite_set(parameter: dict[str, Any], values: list[Any]) -> None:
    declared = Parameter.model_validate({"name": "p", "path": "x", **parameter})
    grid = parameter_grid(declared)
    assert grid == values
    assert [type(value) for value in grid] == [type(value) for value in values]
    assert len(grid) == declared.grid_size()


@pytest.mark.parametrize(
    "parameter",
    [
        {"type": "uniform", "min": 0, "max": 1},
        {"type": "normal", "mu": 0, "sigma": 1},
        {"type": "lognormal", "mu": 0, "sigma": 1},
    ],
)
def test_a_parameter_without_a_finite_set_has_no_grid(parameter: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="has no finite grid"):
        parameter_grid(Parameter.model_validate({"name": "p", "path": "x", **parameter}))


def test_the_grid_is_the_product_of_the_parameters_sets_in_a_fixed_order() -> None:
    spec = grid_sweep()
    points = list(grid_points(spec.parameters))
    axes = [parameter_grid(parameter) for parameter in spec.parameters]
    names = [parameter.name for parameter in spec.parameters]
    assert points == [dict(zip(names, combination, strict=True)) for combination in itertools.product(*axes)]
    assert len(points) == spec.grid_size() == math.prod(len(axis) for axis in axes) == 4 * 3 * 4 * 3 * 2
    assert len({json.dumps(point, sort_keys=True) for point in points}) == len(points)
    assert points == list(grid_points(spec.parameters))
    assert points[:2] == [
        {"lr": 1e-4, "bs": 16, "wd": 0.0, "ep": 3, "opt": "adam"},
        {"lr": 1e-4, "bs": 16, "wd": 0.0, "ep": 3, "opt": "sgd"},
    ]


def finished(number: int, point: dict[str, Any]) -> TrialPoint:
    return TrialPoint(number=number, parameters=point, outcome=TrialOutcome.SUCCEEDED, value=0.5)


def test_suggest_walks_the_grid_in_order_and_stops_at_its_end() -> None:
    spec = grid_sweep()
    everything = list(grid_points(spec.parameters))
    history: list[TrialPoint] = []
    handed_out: list[dict[str, Any]] = []
    for count in itertools.cycle([1, 5, 2, 17]):
        batch = suggest(spec, history, count, seed=0)
        if not batch:
            break
        assert len(batch) == count or len(handed_out) + len(batch) == len(everything)
        history += [finished(len(history) + index, point) for index, point in enumerate(batch)]
        handed_out += batch
    assert handed_out == everything
    assert suggest(spec, history, 3, seed=0) == []


def test_points_in_the_history_are_skipped_in_any_order_with_gaps_and_after_json() -> None:
    spec = grid_sweep()
    everything = list(grid_points(spec.parameters))
    tried = [0, 1, 2, 5, 9]
    # Trial 3 was deleted and lost from the record; the others come back shuffled, through JSON, where the
    # apiserver may have turned 0.0 into 0.
    history = [finished(number, json.loads(json.dumps(everything[number]))) for number in tried]
    history[1] = finished(1, {**history[1].parameters, "wd": 0})
    random.Random(4).shuffle(history)
    expected = [point for index, point in enumerate(everything) if index not in tried][:6]
    assert suggest(spec, history, 6, seed=0) == expected


def test_a_seed_does_not_change_the_grid() -> None:
    spec = grid_sweep()
    assert suggest(spec, [], 10, seed=1) == suggest(spec, [], 10, seed=2)


@settings(max_examples=30, deadline=None)
@given(batches=st.lists(st.integers(1, 40), min_size=1, max_size=40), order=st.randoms(use_true_random=False))
def test_any_batch_sizes_cover_the_grid_exactly_once(batches: list[int], order: random.Random) -> None:
    spec = grid_sweep(GRID_PARAMETERS[1:])  # 3 * 4 * 3 * 2 = 72 points
    history: list[TrialPoint] = []
    for count in batches:
        batch = suggest(spec, history, count, seed=0)
        history += [finished(len(history) + index, point) for index, point in enumerate(batch)]
        order.shuffle(history)
    seen = [json.dumps(point.parameters, sort_keys=True) for point in history]
    assert len(seen) == len(set(seen)) == min(sum(batches), 72)
