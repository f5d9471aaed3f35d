"""`${params.NAME}` placeholders: how a trial's parameters reach any command, not only fields of the spec.

A sweep over a user's own script cannot set `trainer.config.learningRate`; the script takes `--lr`. So a
trial template may write `${params.lr}` in `trainer.command`, `trainer.args` and `trainer.env[].value`, and
each trial gets the value there as text. The grammar lives here, below admission and the builders, so the
webhook that refuses an unknown name and the builder that substitutes it read placeholders the same way.

Grammar: `${params.NAME}` with NAME a parameter name; `$${` is a literal `${` (so `$${params.lr}` reaches
the container as `${params.lr}`). Any other `${params.` is malformed, and admission refuses it: a typo must
not reach the script verbatim. Everything else is left alone, in particular Kubernetes' own `$(VAR)`
references and their `$$(VAR)` escape, which the kubelet expands afterwards.

A value becomes text as JSON writes it: strings as they are, numbers as JSON numbers (`0.001`, `32`),
booleans `true`/`false`, lists and objects as compact JSON with sorted keys (`[64,64]`). The environment
variables `TRAINSMART_PARAM_<NAME>` carry the same text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from trainsmart.api.common import ParameterValue

_NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*"
# Left to right: the escape first, then a well-formed placeholder, then anything else that starts one.
_TOKEN: Final = re.compile(r"(?P<escape>\$\$\{)|\$\{params\.(?P<name>" + _NAME + r")\}|(?P<bad>\$\{params\.)")
_MALFORMED_SHOWN: Final = 40


class PlaceholderError(ValueError):
    """A `${params.` that does not form a placeholder."""


def render_value(value: ParameterValue) -> str:
    """The text a placeholder (and the parameter's environment variable) becomes for `value`."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def placeholder_names(text: str) -> list[str]:
    """The parameter names `text` refers to, in order (repeats kept); PlaceholderError if one is malformed."""
    names: list[str] = []
    for match in _TOKEN.finditer(text):
        if match.group("bad") is not None:
            start = match.start()
            shown = text[start : start + _MALFORMED_SHOWN]
            raise PlaceholderError(
                f"malformed placeholder at {shown!r}: write ${{params.NAME}} with a parameter name, or $${{ for a "
                "literal ${"
            )
        if match.group("name") is not None:
            names.append(match.group("name"))
    return names


def substitute(text: str, values: Mapping[str, ParameterValue]) -> str:
    """`text` with every placeholder replaced and every `$${` made `${`; KeyError for a name without a value."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escape") is not None:
            return "${"
        name = match.group("name")
        if name is None:
            raise PlaceholderError(f"malformed placeholder in {text!r}")
        return render_value(values[name])

    return _TOKEN.sub(replace, text)


def placeholder_sites(template: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(field path, text) of every string of a camelCase TrainingJob spec that may hold placeholders:
    `trainer.command[i]`, `trainer.args[i]` and `trainer.env[i].value`."""
    trainer = template.get("trainer") or {}
    for field in ("command", "args"):
        for index, text in enumerate(trainer.get(field) or []):
            if isinstance(text, str):
                yield f"trainer.{field}[{index}]", text
    for index, var in enumerate(trainer.get("env") or []):
        value = var.get("value") if isinstance(var, Mapping) else None
        if isinstance(value, str):
            yield f"trainer.env[{index}].value", value


def substitute_template(template: Mapping[str, Any], values: Mapping[str, ParameterValue]) -> dict[str, Any]:
    """A copy of the camelCase spec `template` with the placeholders of its trainer fields substituted
    (only the trainer's dicts and lists are copied; `template` is never modified)."""
    trainer = template.get("trainer")
    if not isinstance(trainer, Mapping):
        return dict(template)
    copied = dict(trainer)
    for field in ("command", "args"):
        items = trainer.get(field)
        if isinstance(items, list):
            copied[field] = [substitute(item, values) if isinstance(item, str) else item for item in items]
    env = trainer.get("env")
    if isinstance(env, list):
        copied["env"] = [_substitute_var(var, values) for var in env]
    return {**template, "trainer": copied}


def _substitute_var(var: Any, values: Mapping[str, ParameterValue]) -> Any:
    if isinstance(var, Mapping) and isinstance(var.get("value"), str):
        return {**var, "value": substitute(var["value"], values)}
    return var
