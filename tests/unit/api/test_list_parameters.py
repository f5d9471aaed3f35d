"""Parameters whose values are lists or objects, list-index paths, and parameters without a path.

Pins:
- "sweep the MLP's hidden width over {32, 64, 128}" is accepted in two forms: a choice among lists at
  `trainer.config.model.hiddenSizes`, and plain values at `trainer.config.model.hiddenSizes.0` when the
  template sets hiddenSizes; the trial spec then has the list (or the entry) set;
- plain values at a list path are refused with both working forms in the message; an index the template's
  list does not have is refused naming the list; a continuous type at a list or object path is refused;
- list values that make an invalid trial (a width of 0) are refused like any other value;
- a choice may be among objects (`trainer.config.optimizer`), and choice values that are equal as JSON
  are duplicates, lists included;
- `with_path` on a list copies it and leaves the template as it was;
- `path` is optional (admission decides whether the parameter reaches anything), and two parameters whose
  names give the same `TRAINSMART_PARAM_*` variable are refused.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import HyperparamSweepSpec
from trainsmart.api.paths import apply_parameters, with_path

MLP: dict[str, Any] = {"trainer": {"config": {"model": {"name": "mlp"}, "dataset": {"name": "digits"}}}}
MLP_64_64: dict[str, Any] = {
    "trainer": {"config": {"model": {"name": "mlp", "hiddenSizes": [64, 64]}, "dataset": {"name": "digits"}}}
}
SIZES = "trainer.config.model.hiddenSizes"


def spec(parameters: list[dict[str, Any]], template: dict[str, Any] = MLP) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_accuracy", "goal": "maximize"},
            "algorithm": {"name": "grid"},
            "parameters": parameters,
            "trialTemplate": template,
        }
    )


def test_a_choice_among_lists_sets_the_whole_list() -> None:
    sweep = spec([{"name": "sizes", "path": SIZES, "type": "choice", "values": [[32], [64, 64], [128, 64, 32]]}])
    assert sweep.parameters[0].values == [[32], [64, 64], [128, 64, 32]]
    assert sweep.grid_size() == 3
    trial = apply_parameters(sweep.trial_template, {SIZES: [128, 64, 32]})
    assert trial.trainer.config is not None
    assert trial.trainer.config.model.hidden_sizes == [128, 64, 32]


def test_an_index_path_sets_one_entry_of_the_templates_list() -> None:
    sweep = spec([{"name": "width", "path": f"{SIZES}.0", "type": "choice", "values": [32, 64, 128]}], MLP_64_64)
    trial = apply_parameters(sweep.trial_template, {f"{SIZES}.0": 128})
    assert trial.trainer.config is not None
    assert trial.trainer.config.model.hidden_sizes == [128, 64]
    assert spec([{"name": "width", "path": f"{SIZES}.1", "type": "randint", "min": 8, "max": 16}], MLP_64_64)


def test_plain_values_at_a_list_path_are_refused_with_both_forms_that_work() -> None:
    with pytest.raises(ValidationError) as caught:
        spec([{"name": "width", "path": SIZES, "type": "choice", "values": [32, 64, 128]}])
    message = str(caught.value)
    assert "parameters[0] (width)" in message
    assert "values: [[32], [64], [128]]" in message
    assert f"path {SIZES}.0" in message


def test_an_index_the_template_does_not_have_is_refused_naming_the_list() -> None:
    with pytest.raises(ValidationError, match=rf"{SIZES} has no entry 0: the trialTemplate does not set it"):
        spec([{"name": "width", "path": f"{SIZES}.0", "type": "choice", "values": [32, 64]}])
    with pytest.raises(ValidationError, match=r"has no entry 2: the trialTemplate has 2 entries"):
        spec([{"name": "width", "path": f"{SIZES}.2", "type": "choice", "values": [32, 64]}], MLP_64_64)


@pytest.mark.parametrize("path", [SIZES, "trainer.config.optimizer"])
def test_a_continuous_type_cannot_fill_a_list_or_object(path: str) -> None:
    with pytest.raises(ValidationError, match=rf"path '{path}' names an? (list|object); use type choice"):
        spec([{"name": "x", "path": path, "type": "uniform", "min": 1, "max": 2, "step": 1}])


def test_list_values_that_make_an_invalid_trial_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"the value \[0\] makes an invalid trial: trialTemplate.trainer"):
        spec([{"name": "sizes", "path": SIZES, "type": "choice", "values": [[32], [0]]}])


def test_a_choice_may_be_among_objects() -> None:
    optimizers = [{"name": "sgd", "momentum": 0.9}, {"name": "adam"}]
    sweep = spec([{"name": "opt", "path": "trainer.config.optimizer", "type": "choice", "values": optimizers}])
    trial = apply_parameters(sweep.trial_template, {"trainer.config.optimizer": optimizers[0]})
    assert trial.trainer.config is not None
    assert (trial.trainer.config.optimizer.name, trial.trainer.config.optimizer.momentum) == ("sgd", 0.9)


@pytest.mark.parametrize("values", [[[64, 64], [64, 64]], [{"a": 1, "b": 2}, {"b": 2, "a": 1}], ["x", "x"], [2, 2]])
def test_equal_choice_values_are_duplicates(values: list[Any]) -> None:
    with pytest.raises(ValidationError, match="values contains duplicates"):
        spec([{"name": "x", "type": "choice", "values": values}])


def test_types_still_tell_choice_values_apart() -> None:
    assert spec([{"name": "x", "type": "choice", "values": [2, 2.0, "2", True, [2], {"2": 2}]}])


def test_setting_a_list_entry_copies_the_list() -> None:
    template = copy.deepcopy(MLP_64_64)
    before = copy.deepcopy(template)
    trial = with_path(template, f"{SIZES}.1", 8)
    assert trial["trainer"]["config"]["model"]["hiddenSizes"] == [64, 8]
    assert template == before


def test_a_parameter_needs_no_path() -> None:
    sweep = spec([{"name": "lr", "type": "choice", "values": [0.1, 0.01]}])
    assert sweep.parameters[0].path is None


def test_names_that_share_an_environment_variable_are_refused() -> None:
    with pytest.raises(ValidationError, match="'LR' gives the same environment variable TRAINSMART_PARAM_LR as"):
        spec([{"name": "lr", "type": "choice", "values": [1]}, {"name": "LR", "type": "choice", "values": [2]}])
