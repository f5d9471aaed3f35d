"""One dimension of a sweep's search space, validated per distribution type.

The distributions are hyperopt's (so TPE, random and anneal can sample them directly) with bounds written
in real space, as a user thinks of them: `loguniform` from 1e-5 to 1e-1, not from ln(1e-5). Grid search is
our own; it needs a finite set per parameter, which `grid_size` decides without enumerating anything.

A parameter may exist only under some options of a choice (issue 15): `when: {parameter: optimizer, in:
[sgd]}` on `momentum`. Conditions form a forest (each parameter has at most one parent, a choice, and no
cycles), which is exactly what hyperopt's nested `hp.choice` branches express; `check_conditions` refuses
anything else with the field path to fix. A trial whose parent took another option has no value for the
parameter at all: it is not set in the trial spec, not in its environment, not in the trial table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, Self

from pydantic import ConfigDict, Field, model_validator

from trainsmart.api.cel import rule, validations
from trainsmart.api.common import ApiModel, ParameterValue, ParameterValueField

PARAMETER_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_CHOICES: Final = 1000
# Floats are compared and printed at this many significant digits: 0.1 * 3 must equal 0.3 from a user's YAML.
SIGNIFICANT_DIGITS: Final = 12
# Float steps are counted with this slack so that 0.1..0.5 by 0.1 has 5 points despite rounding.
_STEP_EPSILON: Final = 1e-9


class ParameterType(StrEnum):
    """Distributions a parameter can be drawn from."""

    UNIFORM = "uniform"
    LOGUNIFORM = "loguniform"
    QUNIFORM = "quniform"
    QLOGUNIFORM = "qloguniform"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"
    RANDINT = "randint"
    CHOICE = "choice"


# What each type needs, and what it may additionally take. Anything else set is an error: a `q` on a
# uniform parameter would otherwise be silently ignored.
_REQUIRED: Final[dict[ParameterType, tuple[str, ...]]] = {
    ParameterType.UNIFORM: ("min", "max"),
    ParameterType.LOGUNIFORM: ("min", "max"),
    ParameterType.QUNIFORM: ("min", "max", "q"),
    ParameterType.QLOGUNIFORM: ("min", "max", "q"),
    ParameterType.NORMAL: ("mu", "sigma"),
    ParameterType.LOGNORMAL: ("mu", "sigma"),
    ParameterType.RANDINT: ("min", "max"),
    ParameterType.CHOICE: ("values",),
}
_OPTIONAL: Final[dict[ParameterType, tuple[str, ...]]] = {
    ParameterType.UNIFORM: ("step",),
    ParameterType.LOGUNIFORM: ("step",),
}
_SETTINGS: Final = ("min", "max", "q", "mu", "sigma", "values", "step")
# Types whose values are always integers (given integral bounds and q).
INTEGER_TYPES: Final = frozenset({ParameterType.RANDINT})


def _parameter_rules() -> dict[str, Any]:
    """The CEL rules of a Parameter, built from the same _REQUIRED/_OPTIONAL tables as its validator.

    `values` is left out: its items may be any JSON value (untyped in the schema), and CEL cannot declare
    a field of no type, so a rule naming it does not compile. The webhook checks it.
    """
    checks = []
    settings = [name for name in _SETTINGS if name != "values"]
    for type_, required in _REQUIRED.items():
        allowed = required + _OPTIONAL.get(type_, ())
        clauses = [f"has(self.{name})" for name in required if name != "values"]
        clauses += [f"!has(self.{name})" for name in settings if name not in allowed]
        needs = " and ".join(name for name in required if name != "values")
        others = sorted(set(settings) - set(allowed))
        message = (
            f"type {type_.value} " + (f"needs {needs} and " if needs else "") + f"takes none of {', '.join(others)}"
        )
        checks.append(rule(f"self.type != '{type_.value}' || ({' && '.join(clauses)})", message))
    log_types = ", ".join(f"'{t.value}'" for t in (ParameterType.LOGUNIFORM, ParameterType.QLOGUNIFORM))
    checks += [
        rule("!has(self.min) || !has(self.max) || self.min < self.max", "max must be greater than min"),
        rule(
            f"!(self.type in [{log_types}]) || !has(self.min) || self.min > 0.0",
            "min must be > 0 for loguniform and qloguniform; bounds are in real space",
        ),
        rule(
            f"self.type != '{ParameterType.RANDINT.value}' || !has(self.min) || !has(self.max) || "
            "(double(int(self.min)) == self.min && double(int(self.max)) == self.max)",
            "randint bounds must be integers",
        ),
        rule(
            "!has(self.q) || !has(self.min) || !has(self.max) || self.q <= self.max - self.min",
            "q is larger than max - min; lower q",
        ),
        rule(
            f"!has(self.step) || self.type != '{ParameterType.LOGUNIFORM.value}' || self.step > 1.0",
            "step of a loguniform grid is a factor and must be > 1",
        ),
        rule(
            f"!has(self.step) || self.type != '{ParameterType.UNIFORM.value}' || !has(self.min) || "
            "!has(self.max) || self.step <= self.max - self.min",
            "step is larger than max - min; lower it",
        ),
    ]
    return validations(*checks)


class Condition(ApiModel):
    """When a parameter exists: only in trials whose choice parameter `parameter` took one of `in`."""

    parameter: str = Field(
        pattern=PARAMETER_NAME_PATTERN,
        max_length=63,
        description="Name of the choice parameter this one depends on (e.g. optimizer).",
    )
    in_: list[ParameterValueField] = Field(
        alias="in",
        min_length=1,
        max_length=MAX_CHOICES,
        description="The options of that parameter under which this one exists (e.g. [sgd]); each must be "
        "one of its values.",
    )


class Parameter(ApiModel):
    """A hyperparameter to search: where it goes in the trial spec and the distribution it is drawn from.

    Every trial's pods get every parameter (environment and a JSON file); `path` and `${params.NAME}`
    placeholders in the template's command, args and env values say where else it goes. One of the two is
    required (admission refuses a parameter that reaches nothing: it would be searched for no effect).
    """

    model_config = ConfigDict(json_schema_extra=_parameter_rules())

    name: str = Field(
        pattern=PARAMETER_NAME_PATTERN,
        max_length=63,
        description="Short name, used in the trial table and as the key in bestTrial.parameters.",
    )
    path: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="Where the value goes in trialTemplate, as dotted camelCase field names, e.g. "
        "trainer.config.learningRate or resources.requests.cpu; a number indexes a list "
        "(trainer.config.model.hiddenSizes.0). Unset: the value reaches the trial only through "
        "${params.NAME} placeholders in trainer.command, trainer.args and trainer.env values.",
    )
    type: ParameterType = Field(
        description="Distribution: uniform, loguniform, quniform, qloguniform (need min, max; q-types also "
        "q), normal, lognormal (need mu, sigma), randint (integer min..max, both included), choice (values)."
    )
    min: float | None = Field(default=None, description="Lower bound (real space; > 0 for log types).")
    max: float | None = Field(default=None, description="Upper bound (real space), > min.")
    q: float | None = Field(default=None, gt=0, description="Quantization step of quniform/qloguniform.")
    mu: float | None = Field(default=None, description="Mean of normal, or of the log for lognormal.")
    sigma: float | None = Field(default=None, gt=0, description="Standard deviation of normal/lognormal.")
    values: list[ParameterValueField] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CHOICES,
        description="The options of a choice parameter: numbers, strings, booleans, or lists and objects "
        "(e.g. [32], [64, 64] for trainer.config.model.hiddenSizes).",
    )
    when: Condition | None = Field(
        default=None,
        description="Makes the parameter conditional: it exists only in trials where the named choice parameter "
        "took one of the listed options (momentum only for optimizer sgd). Unset: in every trial.",
    )
    step: float | None = Field(
        default=None,
        gt=0,
        description="Grid search only: spacing of a uniform parameter (min, min+step, ...) or factor (> 1) of "
        "a loguniform one (min, min*step, ...).",
    )

    @model_validator(mode="after")
    def _check_settings(self) -> Self:
        required, optional = _REQUIRED[self.type], _OPTIONAL.get(self.type, ())
        missing = [name for name in required if getattr(self, name) is None]
        if missing:
            raise ValueError(f"type {self.type.value} needs {' and '.join(required)}; set {', '.join(missing)}")
        extra = [name for name in _SETTINGS if getattr(self, name) is not None and name not in required + optional]
        if extra:
            raise ValueError(f"{', '.join(extra)} does not apply to type {self.type.value}; remove it")
        if self.min is not None and self.max is not None:
            self._check_bounds(self.min, self.max)
        if self.values is not None:
            self._check_values(self.values)
        return self

    def _check_bounds(self, low: float, high: float) -> None:
        if not low < high:
            raise ValueError(f"max ({high:g}) must be greater than min ({low:g})")
        if self.type in (ParameterType.LOGUNIFORM, ParameterType.QLOGUNIFORM) and low <= 0:
            raise ValueError(f"min ({low:g}) must be > 0 for {self.type.value}; bounds are in real space")
        if self.type == ParameterType.RANDINT and not (low.is_integer() and high.is_integer()):
            raise ValueError(f"randint bounds must be integers, got min {low:g} and max {high:g}")
        if self.q is not None and self.q > high - low:
            raise ValueError(f"q ({self.q:g}) is larger than max - min ({high - low:g}); lower q")
        if self.step is not None:
            if self.type == ParameterType.LOGUNIFORM and self.step <= 1:
                raise ValueError(f"step ({self.step:g}) of a loguniform grid is a factor and must be > 1")
            if self.type == ParameterType.UNIFORM and self.step > high - low:
                raise ValueError(f"step ({self.step:g}) is larger than max - min ({high - low:g}); lower it")

    @staticmethod
    def _check_values(values: list[ParameterValue]) -> None:
        # JSON text tells 2 from 2.0 and "2" as the type-and-value pairs did, and also compares lists.
        keys = [json.dumps(value, sort_keys=True) for value in values]
        if len(set(keys)) != len(keys):
            raise ValueError("values contains duplicates; list each option once")

    def grid_size(self) -> int | None:
        """How many points grid search enumerates for this parameter, or None if it has no finite grid."""
        low, high = self.min, self.max
        if self.type == ParameterType.CHOICE:
            return len(self.values or ())
        if low is None or high is None:
            return None
        if self.type == ParameterType.RANDINT:
            return int(high) - int(low) + 1
        if self.q is not None:
            first, last = math.ceil(low / self.q - _STEP_EPSILON), math.floor(high / self.q + _STEP_EPSILON)
            return max(0, last - first + 1)
        if self.step is not None and self.type == ParameterType.UNIFORM:
            return math.floor((high - low) / self.step + _STEP_EPSILON) + 1
        if self.step is not None and self.type == ParameterType.LOGUNIFORM:
            return math.floor(math.log(high / low) / math.log(self.step) + _STEP_EPSILON) + 1
        return None

    def representative_values(self) -> list[ParameterValue]:
        """Values at the edges of the distribution, to check the trial spec accepts them at admission."""
        if self.values is not None:
            return list(self.values)
        if self.type == ParameterType.RANDINT and self.min is not None and self.max is not None:
            return [int(self.min), int(self.max)]
        if self.q is not None and self.min is not None and self.max is not None:
            first = math.ceil(self.min / self.q - _STEP_EPSILON) * self.q
            last = math.floor(self.max / self.q + _STEP_EPSILON) * self.q
            return [_tidy(first), _tidy(last)]
        if self.min is not None and self.max is not None:
            return [self.min, self.max]
        if self.mu is not None:
            return [math.exp(self.mu) if self.type == ParameterType.LOGNORMAL else self.mu]
        return []  # pragma: no cover - every type has bounds, a centre or values

    def yields_integers(self) -> bool:
        """Whether every value drawn is an integer, so the parameter can fill an integer field."""
        if self.type == ParameterType.CHOICE:
            return all(isinstance(value, int) and not isinstance(value, bool) for value in self.values or ())
        if self.type in INTEGER_TYPES:
            return True
        if self.q is not None and self.min is not None:
            return self.q.is_integer()
        return False


def _tidy(value: float) -> float | int:
    """Quantized values as integers when they are, so `q: 1` fills integer fields."""
    rounded = round(value, 12)
    return int(rounded) if rounded.is_integer() else rounded


# ---- conditional spaces -----------------------------------------------------------------------------------


def tidy_float(value: float) -> float:
    """`value` rounded to 12 significant digits, so grid steps and q multiples print and compare cleanly."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value


def value_key(value: ParameterValue) -> tuple[str, Any]:
    """A hashable key under which equal values match whatever JSON did to them (2, 2.0 and 2.0000000000001
    agree, also inside lists and objects: `[64, 64]` read back as `[64.0, 64]` is the same point).

    The apiserver writes an integral float back as an integer, so numbers compare by value, not by type;
    booleans and strings never equal a number, and a list never equals an object.
    """
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, list):
        return ("list", tuple(value_key(item) for item in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(key), value_key(item)) for key, item in value.items())))
    if value is None:
        return ("null", None)
    return ("number", tidy_float(float(value)))


def check_conditions(parameters: Sequence[Parameter]) -> None:
    """Refuse `when` conditions that do not form a forest of choices, naming the field to fix.

    Each condition must name another, existing choice parameter, list only its values (each once), and no
    chain of conditions may come back to where it started: hyperopt can only nest a parameter under one
    branch point, and a cycle would make a parameter exist only if it exists.
    """
    by_name = {parameter.name: parameter for parameter in parameters}
    listed = ", ".join(by_name)
    for index, parameter in enumerate(parameters):
        when = parameter.when
        if when is None:
            continue
        where = f"parameters[{index}] ({parameter.name}).when"
        parent = by_name.get(when.parameter)
        if parent is None:
            raise ValueError(f"{where}.parameter: {when.parameter!r} names no parameter; parameters are {listed}")
        if parent.type != ParameterType.CHOICE:
            raise ValueError(
                f"{where}.parameter: {when.parameter!r} is a {parent.type.value} parameter; a condition needs a "
                "choice parameter"
            )
        options = {value_key(value) for value in parent.values or ()}
        seen: set[tuple[str, Any]] = set()
        for position, value in enumerate(when.in_):
            key, shown = value_key(value), json.dumps(value)
            if key not in options:
                listed_values = ", ".join(json.dumps(option) for option in parent.values or ())
                raise ValueError(
                    f"{where}.in[{position}]: {shown} is not one of {parent.name}'s values ({listed_values})"
                )
            if key in seen:
                raise ValueError(f"{where}.in[{position}]: {shown} is listed twice")
            seen.add(key)
        chain = [parameter.name]
        current: Parameter | None = parent
        while current is not None:
            chain.append(current.name)
            if current.name == parameter.name:
                raise ValueError(f"{where}: the conditions form a cycle ({' -> '.join(chain)}); remove one of them")
            current = by_name.get(current.when.parameter) if current.when is not None else None


def ancestry_order(parameters: Sequence[Parameter]) -> list[Parameter]:
    """The parameters with every parent before its children, otherwise in the order listed.

    Flat spaces keep their order exactly (grid enumeration, and so trial N's point, do not change). Assumes
    `check_conditions` passed.
    """
    by_name = {parameter.name: parameter for parameter in parameters}
    placed: dict[str, Parameter] = {}

    def place(parameter: Parameter) -> None:
        if parameter.name in placed:
            return
        if parameter.when is not None and parameter.when.parameter in by_name:
            place(by_name[parameter.when.parameter])
        placed[parameter.name] = parameter

    for parameter in parameters:
        place(parameter)
    return list(placed.values())


def is_active(parameter: Parameter, point: Mapping[str, ParameterValue]) -> bool:
    """Whether `parameter` exists in a trial whose (other) values are `point`: unconditional, or its parent
    is in the point with one of the listed options. Inactive parents are absent, so this follows the chain."""
    when = parameter.when
    if when is None:
        return True
    if when.parameter not in point:
        return False
    return value_key(point[when.parameter]) in {value_key(value) for value in when.in_}


def active_point(parameters: Sequence[Parameter], point: Mapping[str, ParameterValue]) -> dict[str, ParameterValue]:
    """`point` without the values of parameters that do not exist in it (their parent took another option,
    or is itself absent), in ancestry order. Values of unknown names are dropped too."""
    kept: dict[str, ParameterValue] = {}
    for parameter in ancestry_order(parameters):
        if parameter.name in point and is_active(parameter, kept):
            kept[parameter.name] = point[parameter.name]
    return kept


def condition_context(parameters: Sequence[Parameter], parameter: Parameter) -> dict[str, ParameterValue]:
    """Values (by path) of the ancestors that make `parameter` exist: for each, the first option listed in
    its child's condition. Admission applies a conditional parameter's edge values together with these, so
    momentum is checked in a template whose optimizer is sgd, as it will be in every trial that has it."""
    by_name = {candidate.name: candidate for candidate in parameters}
    context: dict[str, ParameterValue] = {}
    current = parameter
    seen = {parameter.name}
    while current.when is not None and current.when.parameter in by_name and current.when.parameter not in seen:
        parent = by_name[current.when.parameter]
        seen.add(parent.name)
        if parent.path is not None:
            context.setdefault(parent.path, current.when.in_[0])
        current = parent
    return context


def conditional_grid_size(parameters: Sequence[Parameter]) -> int | None:
    """Points in the grid of a (possibly conditional) space: only valid combinations are counted, so
    momentum's 3 values add 3 points under sgd, not 3 times every point. None if some parameter has no grid.

    Each parameter counts as the sum over its options of the product of its active children's counts, and
    the roots multiply; for a flat space this is the product of the parameters' grid sizes.
    """
    sizes = {parameter.name: parameter.grid_size() for parameter in parameters}
    if None in sizes.values():
        return None
    children: dict[str, list[Parameter]] = {}
    for parameter in parameters:
        if parameter.when is not None:
            children.setdefault(parameter.when.parameter, []).append(parameter)

    def count(parameter: Parameter) -> int:
        below = children.get(parameter.name, [])
        if not below:
            return sizes[parameter.name] or 0
        total = 0
        for option in parameter.values or ():
            point = {parameter.name: option}
            total += math.prod(count(child) for child in below if is_active(child, point))
        return total

    return math.prod(count(parameter) for parameter in parameters if parameter.when is None)
