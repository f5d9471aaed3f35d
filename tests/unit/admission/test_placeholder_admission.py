"""What admission says about a sweep's `${params.NAME}` placeholders and where its parameters go.

Pins:
- a sweep over a custom command whose parameters reach it only by placeholders passes, as does one with
  list values, and one whose parameter has both a path and a placeholder;
- a placeholder naming no parameter is refused at its field path (command, args or env value), listing
  the parameters; a malformed one likewise; each offending entry once, all of them in one answer;
- a parameter with neither a path nor a placeholder is refused as `spec.parameters[i] (name)`; an escaped
  `$${params.x}` does not count as a use;
- `TRAINSMART_PARAM_*` in trainer.env is refused like the other reserved names, for jobs and sweeps;
- the operator's InvalidSpec path (`parse_sweep`) reports the same problems as the webhook.
"""

from __future__ import annotations

from typing import Any

from support.manifests import sweep_body, trainingjob_body
from trainsmart.admission.rules import validate_sweep, validate_trainingjob
from trainsmart.handlers.sweep_controller import parse_sweep

LR: dict[str, Any] = {"name": "lr", "type": "loguniform", "min": 1e-4, "max": 0.1}
BATCH: dict[str, Any] = {"name": "batch", "type": "choice", "values": [32, 64]}


def sweep(parameters: list[dict[str, Any]], trainer: dict[str, Any]) -> dict[str, Any]:
    return sweep_body(
        "custom",
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "parameters": parameters,
            "trialTemplate": {"trainer": {"image": "python:3.12-slim", **trainer}},
            "maxTrials": 4,
        },
    )


def problems_of(body: dict[str, Any]) -> list[str]:
    return [str(problem) for problem in validate_sweep(body)]


def test_parameters_reaching_a_custom_command_by_placeholder_pass() -> None:
    trainer = {
        "command": ["python", "train.py"],
        "args": ["--lr=${params.lr}"],
        "env": [{"name": "BATCH", "value": "${params.batch}"}],
    }
    assert problems_of(sweep([LR, BATCH], trainer)) == []


def test_list_values_and_path_plus_placeholder_pass() -> None:
    sizes = {
        "name": "sizes",
        "path": "trainer.config.model.hiddenSizes",
        "type": "choice",
        "values": [[32], [64, 64], [128, 64, 32]],
    }
    body = sweep([sizes], {"args": ["--sizes=${params.sizes}"]})
    body["spec"]["trialTemplate"]["trainer"].pop("image")
    assert problems_of(body) == []


def test_a_placeholder_naming_no_parameter_is_refused_at_its_field() -> None:
    trainer = {
        "command": ["python", "${params.scrip}"],
        "args": ["--lr", "${params.lr}", "${params.lrr}"],
        "env": [{"name": "B", "value": "${params.bacth} ${params.bacth}"}],
    }
    assert problems_of(sweep([LR, BATCH], trainer)) == [
        "spec.parameters[1] (batch): reaches nothing: it has no path and no ${params.batch} in "
        "trialTemplate.trainer.command, args or env values; add a path or a placeholder",
        "spec.trialTemplate.trainer.args[2]: ${params.lrr} names no parameter; parameters are lr, batch",
        "spec.trialTemplate.trainer.command[1]: ${params.scrip} names no parameter; parameters are lr, batch",
        "spec.trialTemplate.trainer.env[0].value: ${params.bacth} names no parameter; parameters are lr, batch",
    ]


def test_a_malformed_placeholder_is_refused_at_its_field() -> None:
    problems = problems_of(sweep([LR], {"args": ["--lr=${params.lr", "${params.lr}"]}))
    assert problems == [
        "spec.trialTemplate.trainer.args[0]: malformed placeholder at '${params.lr': write ${params.NAME} with a "
        "parameter name, or $${ for a literal ${"
    ]


def test_a_parameter_that_reaches_nothing_is_refused() -> None:
    problems = problems_of(sweep([LR], {"args": ["$${params.lr}"]}))
    assert len(problems) == 1
    assert problems[0].startswith("spec.parameters[0] (lr): reaches nothing")


def test_parameter_variables_are_reserved_in_jobs_and_sweep_templates() -> None:
    env = [{"name": "TRAINSMART_PARAM_LR", "value": "1"}, {"name": "TRAINSMART_PARAMS_FILE", "value": "/x"}]
    job = trainingjob_body("mnist", {"trainer": {"env": env}})
    assert [problem.path for problem in validate_trainingjob(job)] == [
        "spec.trainer.env[0].name",
        "spec.trainer.env[1].name",
    ]
    body = sweep([LR], {"args": ["${params.lr}"], "env": env})
    assert [problem.path for problem in validate_sweep(body)] == [
        "spec.trialTemplate.trainer.env[0].name",
        "spec.trialTemplate.trainer.env[1].name",
    ]


def test_the_operator_reports_the_same_problems_as_the_webhook() -> None:
    body = sweep([LR], {"args": ["${params.lrr}"]})
    assert parse_sweep(body) == problems_of(body)
    assert len(problems_of(body)) == 2
