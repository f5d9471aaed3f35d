"""`${params.NAME}` placeholders: the grammar admission and the trial builder share.

Pins:
- each value type becomes the text JSON writes: strings as they are, numbers as JSON numbers (`0.001`,
  `32`, `1e-05`), booleans `true`/`false`, lists and objects as compact JSON with sorted keys;
- `$${` is a literal `${` (so `$${params.lr}` is not substituted); Kubernetes' `$(VAR)` and `$$(VAR)` and
  any other `${...}` pass through unchanged;
- names are found in order; a `${params.` that is not a placeholder is malformed (and names the spot);
- a name without a value is a KeyError;
- the places placeholders may appear are trainer.command[i], trainer.args[i] and trainer.env[i].value
  (not valueFrom); substituting a template copies what it changes and leaves the template as it was.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trainsmart.api.placeholders import (
    PlaceholderError,
    placeholder_names,
    placeholder_sites,
    render_value,
    substitute,
    substitute_template,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("adamw", "adamw"),
        ("with space", "with space"),
        (0.001, "0.001"),
        (1e-5, "1e-05"),
        (32, "32"),
        (2.5, "2.5"),
        (True, "true"),
        (False, "false"),
        ([128, 64, 32], "[128,64,32]"),
        ({"name": "sgd", "momentum": 0.9}, '{"momentum":0.9,"name":"sgd"}'),
        ([{"b": 1, "a": [True]}], '[{"a":[true],"b":1}]'),
    ],
)
def test_every_value_type_becomes_the_text_json_writes(value: Any, text: str) -> None:
    assert render_value(value) == text
    assert substitute("--x=${params.x}", {"x": value}) == f"--x={text}"


def test_every_placeholder_in_a_string_is_replaced() -> None:
    values = {"lr": 0.01, "bs": 64}
    assert substitute("${params.lr}/${params.bs}/${params.lr}", values) == "0.01/64/0.01"
    assert placeholder_names("${params.lr}/${params.bs}/${params.lr}") == ["lr", "bs", "lr"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$${params.lr}", "${params.lr}"),
        ("cost: $${HOME}", "cost: ${HOME}"),
        ("$${params.lr}=${params.lr}", "${params.lr}=0.1"),
        ("$(HOME) $$(HOME) ${HOME} $5", "$(HOME) $$(HOME) ${HOME} $5"),
        ("${param.lr} ${PARAMS.lr}", "${param.lr} ${PARAMS.lr}"),
    ],
)
def test_escapes_and_other_dollars_are_left_for_kubernetes_and_the_shell(text: str, expected: str) -> None:
    assert substitute(text, {"lr": 0.1}) == expected


def test_an_escaped_placeholder_names_nothing() -> None:
    assert placeholder_names("$${params.lr}") == []


@pytest.mark.parametrize("text", ["${params.}", "${params.lr", "${params.1x}", "a ${params.l-r} b", "${params.a b}"])
def test_malformed_placeholders_are_errors_naming_the_spot(text: str) -> None:
    with pytest.raises(PlaceholderError, match=r"malformed placeholder at '\$\{params\."):
        placeholder_names(text)


def test_a_name_without_a_value_is_a_key_error() -> None:
    with pytest.raises(KeyError, match="lr"):
        substitute("${params.lr}", {"bs": 1})


TEMPLATE: dict[str, Any] = {
    "replicas": 1,
    "trainer": {
        "image": "python:3.12",
        "command": ["python", "train.py"],
        "args": ["--lr", "${params.lr}", "--sizes=${params.sizes}"],
        "env": [
            {"name": "LR", "value": "${params.lr}"},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "${params.lr}"}}},
        ],
    },
}


def test_placeholders_are_looked_for_in_command_args_and_env_values_only() -> None:
    template = copy.deepcopy(TEMPLATE)
    template["trainer"]["command"] = ["run-${params.mode}"]
    sites = dict(placeholder_sites(template))
    assert sites == {
        "trainer.command[0]": "run-${params.mode}",
        "trainer.args[0]": "--lr",
        "trainer.args[1]": "${params.lr}",
        "trainer.args[2]": "--sizes=${params.sizes}",
        "trainer.env[0].value": "${params.lr}",
    }


def test_substituting_a_template_fills_the_trainer_fields_and_leaves_the_template_alone() -> None:
    before = copy.deepcopy(TEMPLATE)
    trial = substitute_template(TEMPLATE, {"lr": 0.003, "sizes": [64, 64]})
    assert trial["trainer"]["args"] == ["--lr", "0.003", "--sizes=[64,64]"]
    assert trial["trainer"]["env"][0] == {"name": "LR", "value": "0.003"}
    assert trial["trainer"]["env"][1] == TEMPLATE["trainer"]["env"][1]  # valueFrom is not text to fill
    assert trial["trainer"]["command"] == ["python", "train.py"]
    assert before == TEMPLATE


def test_a_template_without_a_trainer_is_returned_as_is() -> None:
    assert substitute_template({"replicas": 2}, {"lr": 1}) == {"replicas": 2}
