"""Search space -> hyperopt, and trial values <-> hyperopt's raw draws.

Pins:
- every parameter type becomes a hyperopt expression; what random, TPE and anneal suggest stays inside the
  parameter's range and has the parameter's type (randint and integral q-types give ints, choice gives the
  option itself, with its JSON type);
- q-types give the tidy multiple of q inside [min, max], even where hyperopt's rounding would step outside;
- a trial's value and hyperopt's raw form convert both ways without drift, also after a JSON round trip;
- values the current space cannot hold (an option no longer listed, out of bounds, wrong type, NaN) are
  left out of hyperopt's record of that trial instead of corrupting the model.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainsmart.api import HyperparamSweepSpec, Parameter
from trainsmart.sweep import TrialOutcome, TrialPoint, hyperopt_space, suggest
from trainsmart.sweep.space import from_hyperopt, to_hyperopt, vals_from_point, value_key

# (parameter, template config, check(value) -> bool); paths are chosen so every edge value is a valid trial.
CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"path": "trainer.config.dropout", "type": "uniform", "min": 0.1, "max": 0.5}, {}),
    ({"path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 1e-1}, {}),
    ({"path": "trainer.config.batchSize", "type": "quniform", "min": 16, "max": 128, "q": 16}, {}),
    ({"path": "trainer.config.batchSize", "type": "qloguniform", "min": 8, "max": 256, "q": 8}, {}),
    ({"path": "trainer.config.dropout", "type": "quniform", "min": 0.05, "max": 0.45, "q": 0.1}, {}),
    ({"path": "trainer.config.learningRate", "type": "normal", "mu": 0.05, "sigma": 0.01}, {}),
    ({"path": "trainer.config.learningRate", "type": "lognormal", "mu": math.log(0.01), "sigma": 0.5}, {}),
    ({"path": "trainer.config.epochs", "type": "randint", "min": 1, "max": 4}, {}),
    ({"path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd", "rmsprop"]}, {}),
    ({"path": "trainer.config.batchSize", "type": "choice", "values": [32, 64]}, {}),
    (
        {"path": "trainer.config.optimizer.nesterov", "type": "choice", "values": [True, False]},
        {"optimizer": {"name": "sgd"}},
    ),
]


def one_parameter_sweep(parameter: dict[str, Any], config: dict[str, Any], algorithm: str) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "algorithm": {"name": algorithm, **({"tpe": {"startupTrials": 5}} if algorithm == "tpe" else {})},
            "parameters": [{"name": "p", **parameter}],
            "trialTemplate": {"trainer": {"config": {"epochs": 3, **config}}},
            "maxTrials": 100,
        }
    )


def respects(parameter: Parameter, value: Any) -> bool:
    """Whether a suggested value has the parameter's type and lies in its range."""
    kind = parameter.type.value
    if kind == "choice":
        return any(type(value) is type(option) and value == option for option in parameter.values or ())
    if kind == "randint":
        return type(value) is int and parameter.min is not None and parameter.min <= value <= (parameter.max or 0)
    if kind in ("normal",):
        return type(value) is float and math.isfinite(value)
    if kind == "lognormal":
        return type(value) is float and value > 0
    assert parameter.min is not None and parameter.max is not None
    if not parameter.min <= value <= parameter.max:
        return False
    if parameter.q is not None:
        multiple = value / parameter.q
        integral_q = parameter.q.is_integer()
        return abs(multiple - round(multiple)) < 1e-9 and (type(value) is int) == integral_q
    return type(value) is float


@pytest.mark.parametrize("algorithm", ["random", "tpe", "anneal"])
@pytest.mark.parametrize(("parameter", "config"), CASES, ids=[case[0]["type"] for case in CASES])
def test_suggested_values_keep_the_parameters_type_and_range(
    parameter: dict[str, Any], config: dict[str, Any], algorithm: str
) -> None:
    spec = one_parameter_sweep(parameter, config, algorithm)
    (declared,) = spec.parameters
    history: list[TrialPoint] = []
    for number in range(25):  # past startupTrials, so TPE's and anneal's own samplers run too
        (point,) = suggest(spec, history, 1, seed=11)
        value = point["p"]
        assert respects(declared, value), (number, value)
        loss = float(value) if not isinstance(value, str) else float(len(value))
        history.append(TrialPoint(number, point, TrialOutcome.SUCCEEDED, loss))


def test_every_type_maps_to_a_hyperopt_expression_under_its_name() -> None:
    parameters = [Parameter.model_validate({"name": f"p{index}", **case[0]}) for index, case in enumerate(CASES)]
    space = hyperopt_space(parameters)
    assert list(space) == [parameter.name for parameter in parameters]
    for parameter in parameters:
        assert parameter.name in str(space[parameter.name])  # the label hyperopt records the draw under


def test_randint_draws_both_ends_of_its_inclusive_range() -> None:
    spec = one_parameter_sweep({"path": "trainer.config.epochs", "type": "randint", "min": 1, "max": 4}, {}, "random")
    values = {point["p"] for point in suggest(spec, [], 60, seed=3)}
    assert values == {1, 2, 3, 4}


@pytest.mark.parametrize(
    ("parameter", "raw", "value"),
    [
        ({"type": "quniform", "min": 0.5, "max": 10, "q": 1}, 0.0, 1),  # hyperopt may round below min
        ({"type": "quniform", "min": 0, "max": 9.5, "q": 2}, 10.0, 8),  # or above max
        ({"type": "quniform", "min": 0, "max": 1, "q": 0.1}, 0.30000000000000004, 0.3),
        ({"type": "qloguniform", "min": 1, "max": 100, "q": 5}, 0.0, 5),
        ({"type": "randint", "min": 3, "max": 5}, 2, 5),
        ({"type": "choice", "values": [1, 1.5, "x", True]}, 3, True),
        ({"type": "choice", "values": [1, 1.5, "x", True]}, 0, 1),
        ({"type": "uniform", "min": 0, "max": 1}, 0.25, 0.25),
    ],
)
def test_hyperopt_draws_become_tidy_typed_values(parameter: dict[str, Any], raw: Any, value: Any) -> None:
    declared = Parameter.model_validate({"name": "p", "path": "x", **parameter})
    converted = from_hyperopt(declared, raw)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ({"type": "choice", "values": ["adam", "sgd"]}, "adamw"),  # option removed from the list
        ({"type": "choice", "values": [1, 2]}, True),  # a boolean is not the number 1
        ({"type": "uniform", "min": 0, "max": 1}, 1.5),  # outside edited bounds
        ({"type": "uniform", "min": 0, "max": 1}, "0.5"),
        ({"type": "uniform", "min": 0, "max": 1}, math.nan),
        ({"type": "randint", "min": 0, "max": 5}, 2.5),
        ({"type": "quniform", "min": 2, "max": 10, "q": 2}, 12),
        ({"type": "lognormal", "mu": 0, "sigma": 1}, -1.0),
    ],
)
def test_values_the_space_cannot_hold_are_left_out_of_hyperopts_record(parameter: dict[str, Any], value: Any) -> None:
    declared = Parameter.model_validate({"name": "p", "path": "x", **parameter})
    assert to_hyperopt(declared, value) is None
    assert vals_from_point([declared], {"p": value}) == {"p": []}
    assert vals_from_point([declared], {}) == {"p": []}  # a parameter added after the trial ran


@pytest.mark.parametrize(("parameter", "config"), CASES, ids=[case[0]["type"] for case in CASES])
def test_suggested_values_survive_a_json_round_trip_back_to_the_same_draw(
    parameter: dict[str, Any], config: dict[str, Any]
) -> None:
    (declared,) = one_parameter_sweep(parameter, config, "random").parameters
    spec = one_parameter_sweep(parameter, config, "random")
    for point in suggest(spec, [], 20, seed=5):
        value = point["p"]
        raw = to_hyperopt(declared, value)
        assert raw is not None
        assert from_hyperopt(declared, raw) == value
        echoed = json.loads(json.dumps(value))
        assert to_hyperopt(declared, echoed) == raw
        if isinstance(value, float) and value.is_integer():  # the apiserver writes 3.0 back as 3
            assert to_hyperopt(declared, int(value)) == raw


@settings(max_examples=200, deadline=None)
@given(
    low=st.integers(-50, 50),
    span=st.integers(1, 100),
    q=st.sampled_from([0.1, 0.25, 1.0, 2.0, 5.0]),
    draw=st.floats(-200, 200, allow_nan=False),
)
def test_quantized_values_are_fixed_points_of_the_conversion(low: int, span: int, q: float, draw: float) -> None:
    if q > span:
        return
    declared = Parameter.model_validate(
        {"name": "p", "path": "x", "type": "quniform", "min": low, "max": low + span, "q": q}
    )
    value = from_hyperopt(declared, draw)
    assert isinstance(value, int | float)
    assert low - 1e-9 <= value <= low + span + 1e-9
    raw = to_hyperopt(declared, value)
    assert raw is not None and from_hyperopt(declared, raw) == value


def test_numbers_match_by_value_whatever_json_made_of_them() -> None:
    assert value_key(2) == value_key(2.0) == value_key(2.0000000000001)
    assert value_key(0.1 * 3) == value_key(0.3)
    assert value_key(True) != value_key(1)
    assert value_key("1") != value_key(1)
