"""A sweep's trial: a TrainingJob made from the sweep's trialTemplate with one point of the search space set.

A point reaches the trial three ways: at the parameters' `path`s, through `${params.NAME}` placeholders in
the template's trainer command, args and env values (substituted here, `api/placeholders.py` has the
grammar), and, for every parameter, as environment variables and a JSON file in its pods, which the pod
builder derives from the parameters annotation (`builders/trial_params.py`).

A conditional parameter that does not exist in this trial (momentum when the optimizer is adam, issue 15)
reaches it nowhere: its path is left as the template has it, it is not in the annotation (so neither in the
pods' environment nor in their parameters file), and a command item, argument or env var whose text names
it is left out, so `--momentum=${params.momentum}` is passed only to the trials that have a momentum.

Everything the sweep needs to account for a trial is written onto the trial itself, so the sweep's
history can be rebuilt from its children alone (an operator restart keeps nothing in memory):

* labels: the sweep's name and the trial number (the watch and list selector, and the order of trials);
* annotations: the parameter values by name (JSON), and the sweep's objective metric and goal, which the
  TrainingJob status derivation honours so that the trial's per-epoch history tracks the sweep's
  objective whatever the trainer's own early-stopping metric is;
* a controller ownerReference to the sweep: deleting the sweep deletes its trials, and a sweep re-created
  under the same name never adopts the previous one's trials (the owner uid differs).

When the sweep stops a trial (early stopping, goal, budget, a failed sweep) it sets `spec.suspend` and the
`stopped` annotation in one patch; a trial the user's `spec.suspend` on the sweep holds has `spec.suspend`
without it. So "why is this trial suspended" is also readable from the child alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from trainsmart.api import API_VERSION, SWEEP_KIND, HyperparamSweep, apply_parameters
from trainsmart.api.common import ParameterValue
from trainsmart.api.placeholders import PlaceholderError, placeholder_names, substitute_template
from trainsmart.api.search_space import active_point, is_active
from trainsmart.builders.metadata import controller_reference
from trainsmart.names import (
    OBJECTIVE_GOAL_ANNOTATION,
    OBJECTIVE_METRIC_ANNOTATION,
    PARAMETERS_ANNOTATION,
    STOPPED_ANNOTATION,
    STOPPED_MESSAGE_ANNOTATION,
    sweep_name,
    trial_labels,
    trial_name,
)

MESSAGE_MAX_CHARS: Final = 1024


def sweep_owner_reference(sweep: HyperparamSweep) -> dict[str, Any]:
    """The controller reference that ties a trial to its sweep (garbage collection, adoption guard)."""
    return controller_reference(SWEEP_KIND, sweep_name(sweep), sweep.metadata)


def encode_parameters(parameters: Mapping[str, ParameterValue]) -> str:
    """Parameters as the annotation stores them: compact JSON, keys sorted (the same point, the same text)."""
    return json.dumps(dict(parameters), sort_keys=True, separators=(",", ":"))


def decode_parameters(text: object) -> dict[str, ParameterValue] | None:
    """The parameters from an annotation value, or None when it is missing or not a JSON object of values."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(v, bool | int | float | str | list | dict) for v in value.values()
    ):
        return None
    return {str(key): item for key, item in value.items()}


def build_trial(sweep: HyperparamSweep, number: int, parameters: Mapping[str, ParameterValue]) -> dict[str, Any]:
    """The TrainingJob manifest of trial `number` with `parameters` (by parameter name) substituted for
    their placeholders and set at their paths.

    The spec comes from `apply_parameters`, the same function admission checks every parameter with, so
    a value the webhook accepted for a path lands exactly where it said. Raises pydantic's ValidationError
    when a value makes an invalid spec (admission's edge-value checks make that unlikely, not impossible:
    a normal distribution has no edges), and KeyError when a parameter that exists in this point has no
    value. Values of parameters that do not exist in the point (see the module doc) are dropped.
    """
    spec = sweep.spec
    by_name = active_point(spec.parameters, parameters)
    for parameter in spec.parameters:
        if parameter.name not in by_name and is_active(parameter, by_name):
            raise KeyError(parameter.name)
    absent = {parameter.name for parameter in spec.parameters} - set(by_name)
    template = substitute_template(_without_sites_naming(spec.trial_template.to_api(), absent), by_name)
    values = {
        parameter.path: by_name[parameter.name]
        for parameter in spec.parameters
        if parameter.path is not None and parameter.name in by_name
    }
    trial_spec = apply_parameters(template, values).to_api()
    if spec.tracking is not None and "tracking" not in trial_spec:
        trial_spec["tracking"] = spec.tracking.to_api()  # trials log under the sweep's parent run (issue 14)
    name = sweep_name(sweep)
    namespace = sweep.metadata.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise ValueError("the HyperparamSweep has no metadata.namespace")
    goal = spec.objective.goal
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": trial_name(name, number),
            "namespace": namespace,
            "labels": trial_labels(name, number),
            "annotations": {
                PARAMETERS_ANNOTATION: encode_parameters(by_name),
                OBJECTIVE_METRIC_ANNOTATION: spec.objective.metric,
                OBJECTIVE_GOAL_ANNOTATION: goal.value,
            },
            "ownerReferences": [sweep_owner_reference(sweep)],
        },
        "spec": trial_spec,
    }


def _names_any(text: object, names: set[str]) -> bool:
    if not isinstance(text, str):
        return False
    try:
        return not names.isdisjoint(placeholder_names(text))
    except PlaceholderError:
        return False  # admission refuses it; substitution says so if it ever gets this far


def _without_sites_naming(template: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The camelCase spec without the trainer command items, args and env vars that name one of `names`."""
    trainer = template.get("trainer")
    if not names or not isinstance(trainer, dict):
        return template
    kept = dict(trainer)
    for field in ("command", "args"):
        if isinstance(trainer.get(field), list):
            kept[field] = [item for item in trainer[field] if not _names_any(item, names)]
    if isinstance(trainer.get("env"), list):
        kept["env"] = [
            var for var in trainer["env"] if not (isinstance(var, dict) and _names_any(var.get("value"), names))
        ]
    return {**template, "trainer": kept}


def suspend_patch(reason: str | None, message: str | None = None) -> dict[str, Any]:
    """The merge patch that stops a trial gracefully (its trainer checkpoints on SIGTERM); `reason` None:
    held by the sweep's own suspension, to run again when the sweep resumes."""
    annotations = {
        STOPPED_ANNOTATION: reason,
        STOPPED_MESSAGE_ANNOTATION: message[:MESSAGE_MAX_CHARS] if message else None,
    }
    return {"metadata": {"annotations": annotations}, "spec": {"suspend": True}}


def resume_patch() -> dict[str, Any]:
    """The merge patch that lets a suspended trial run again (from its newest checkpoint, if it has one)."""
    annotations = {STOPPED_ANNOTATION: None, STOPPED_MESSAGE_ANNOTATION: None}
    return {"metadata": {"annotations": annotations}, "spec": {"suspend": False}}
