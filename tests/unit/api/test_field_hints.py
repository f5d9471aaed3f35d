"""Unknown fields are named as such, with the known field they were probably meant to be.

Pins:
- the suggestion is looked up at the place of the typo: the spec's top level, a nested optional model, an
  item of a list, the packaged trainer's config embedded in the spec, a sweep's trial template;
- a name like nothing known gets no guess but a pointer to `kubectl explain`;
- format_validation_error uses it only when told the model (the trainer's own CLI keeps pydantic's words).
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from trainsmart.api import HyperparamSweepSpec, TrainingJob, TrainingJobSpec, format_validation_error
from trainsmart.api.field_hints import unknown_field_reason


@pytest.mark.parametrize(
    ("model", "location", "meant"),
    [
        (TrainingJobSpec, ("replicaz",), "replicas"),
        (TrainingJobSpec, ("checkpoint", "intervalEpoch"), "intervalEpochs"),
        (TrainingJobSpec, ("trainer", "env", 0, "valeu"), "value"),
        (TrainingJobSpec, ("trainer", "config", "earlyStopping", "patiense"), "patience"),
        (TrainingJob, ("spec", "trainer", "config", "learningRatez"), "learningRate"),
        (HyperparamSweepSpec, ("trialTemplate", "runPolicy", "backofLimit"), "backoffLimit"),
        (HyperparamSweepSpec, ("parameters", 0, "mni"), "min"),
    ],
)
def test_the_closest_known_name_at_the_place_of_the_typo(
    model: type[TrainingJobSpec], location: tuple[int | str, ...], meant: str
) -> None:
    assert unknown_field_reason(model, location) == f"unknown field; did you mean {meant}?"


@pytest.mark.parametrize("location", [("zzz",), ("checkpoint", "foo"), ("nowhere", "deeper", "replicas"), ()], ids=str)
def test_no_guess_when_nothing_is_close(location: tuple[str, ...]) -> None:
    assert unknown_field_reason(TrainingJobSpec, location).startswith("unknown field")
    assert "did you mean" not in unknown_field_reason(TrainingJobSpec, location)


def test_format_validation_error_suggests_only_when_given_the_model() -> None:
    with pytest.raises(ValidationError) as info:
        TrainingJobSpec.model_validate({"replicaz": 2})
    assert format_validation_error(info.value, model=TrainingJobSpec) == [
        "spec.replicaz: unknown field; did you mean replicas?"
    ]
    assert format_validation_error(info.value) == ["spec.replicaz: Extra inputs are not permitted"]
