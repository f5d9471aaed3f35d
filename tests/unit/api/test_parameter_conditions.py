"""`when` conditions on sweep parameters and `warmStart` in the sweep spec (issue 15).

Pins:
- `when: {parameter, in}` parses, and writes back as `in` (the CRD's spelling);
- refused, with the field path to fix: a condition naming an unknown parameter, a non-choice parameter,
  values not among the choice's (compared by value: 1.0 is option 1), a value listed twice, and cycles
  (a parameter under itself, or two under each other);
- admission checks a conditional parameter in a template where its conditions hold: momentum (which the
  trainer refuses with adam, its default optimizer) is accepted under `opt in [sgd]`, refused without it;
- warmStart names a sweep, and does not combine with grid search.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import HyperparamSweepSpec

OPT = {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]}
LR = {"name": "lr", "path": "trainer.config.learningRate", "type": "uniform", "min": 0.001, "max": 0.1}


def momentum(**when: Any) -> dict[str, Any]:
    parameter = {
        "name": "momentum",
        "path": "trainer.config.optimizer.momentum",
        "type": "uniform",
        "min": 0.5,
        "max": 0.9,
    }
    return {**parameter, "when": when} if when else parameter


def sweep(*parameters: dict[str, Any], **extra: Any) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "parameters": list(parameters),
            "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
            "maxTrials": 10,
            **extra,
        }
    )


def refused(*parameters: dict[str, Any], **extra: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        sweep(*parameters, **extra)
    return str(caught.value)


def test_a_condition_parses_and_is_written_back_as_in() -> None:
    spec = sweep(OPT, momentum(parameter="opt", **{"in": ["sgd"]}))
    assert spec.to_api()["parameters"][1]["when"] == {"parameter": "opt", "in": ["sgd"]}


def test_a_condition_naming_an_unknown_parameter_is_refused_with_its_path() -> None:
    message = refused(OPT, momentum(parameter="optimizer", **{"in": ["sgd"]}))
    assert "parameters[1] (momentum).when.parameter: 'optimizer' names no parameter; parameters are opt" in message


def test_a_condition_on_a_non_choice_parameter_is_refused() -> None:
    message = refused(LR, momentum(parameter="lr", **{"in": [0.01]}))
    assert "parameters[1] (momentum).when.parameter: 'lr' is a uniform parameter; a condition needs a choice" in message


def test_values_not_among_the_choices_are_refused_and_equal_numbers_match() -> None:
    message = refused(OPT, momentum(parameter="opt", **{"in": ["sgd", "adamw"]}))
    assert 'parameters[1] (momentum).when.in[1]: "adamw" is not one of opt\'s values ("adam", "sgd")' in message
    assert "listed twice" in refused(OPT, momentum(parameter="opt", **{"in": ["sgd", "sgd"]}))
    layers = {"name": "layers", "path": "trainer.config.epochs", "type": "choice", "values": [1, 2]}
    width = {"name": "width", "path": "trainer.config.batchSize", "type": "randint", "min": 8, "max": 64}
    sweep(layers, {**width, "when": {"parameter": "layers", "in": [2.0]}})  # 2.0 is the option 2


def test_cycles_are_refused() -> None:
    own = {**OPT, "when": {"parameter": "opt", "in": ["sgd"]}}
    assert "cycle (opt -> opt)" in refused(own)
    a = {
        "name": "a",
        "path": "trainer.config.optimizer.name",
        "type": "choice",
        "values": ["adam", "sgd"],
        "when": {"parameter": "b", "in": [True]},
    }
    b = {
        "name": "b",
        "path": "trainer.config.optimizer.nesterov",
        "type": "choice",
        "values": [False, True],
        "when": {"parameter": "a", "in": ["sgd"]},
    }
    assert "parameters[0] (a).when: the conditions form a cycle (a -> b -> a)" in refused(a, b)


def test_a_conditional_parameter_is_checked_where_its_condition_holds() -> None:
    sweep(OPT, momentum(parameter="opt", **{"in": ["sgd"]}))
    message = refused(OPT, momentum())
    assert "parameters[1] (momentum)" in message and "momentum does not apply to adam" in message


def test_warm_start_names_a_sweep_and_is_not_for_grid() -> None:
    spec = sweep(OPT, warmStart={"sweep": "earlier-search"})
    assert spec.warm_start is not None and spec.to_api()["warmStart"] == {"sweep": "earlier-search"}
    assert "warmStart does not apply to algorithm grid" in refused(
        OPT, warmStart={"sweep": "earlier-search"}, algorithm={"name": "grid"}
    )
    assert "warmStart.sweep" in refused(OPT, warmStart={"sweep": "Not_A_Name"})
