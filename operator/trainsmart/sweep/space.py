"""A sweep's parameters as a hyperopt search space, and values to and from hyperopt's `vals` form.

hyperopt records a trial's point as `vals`: per label, the raw draw (an index for a choice, an offset for a
randint, an unclamped multiple of q for the q-types). Trials keep the values users see: the option itself,
the integer, the tidy multiple of q. The two conversions here are inverse to each other, so a history read
back from child TrainingJobs becomes exactly the `vals` hyperopt drew.

A conditional parameter (`when: {parameter: optimizer, in: [sgd]}`) lives inside the branches of its
parent's `hp.choice`, as hyperopt expresses conditional spaces: the parent's options become branches, each
holding the expressions of the children that exist under that option (one node shared by every branch that
has it, so it keeps one label). hyperopt then draws momentum only in trials that chose sgd, and its `vals`
leave momentum empty in the others; a trial's point simply has no momentum. Nesting goes as deep as the
conditions do. A choice's options may be lists or objects (`[64, 64]`): hyperopt only ever sees their index.

A value hyperopt cannot represent (a choice option that is no longer listed, a number outside edited bounds,
a parameter added after the trial ran) is left out of that trial's `vals`, which hyperopt reads as
"parameter not used by this trial": TPE then models that parameter on the other trials only. A value of a
parameter that does not exist under the point's own options (momentum recorded with adam, say from a warm
start's history) is left out the same way, so hyperopt never sees a point its space could not have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from trainsmart.api.common import ParameterValue, Scalar
from trainsmart.api.search_space import Parameter, ParameterType, ancestry_order, is_active, tidy_float, value_key
from trainsmart.sweep.lean_hyperopt import import_hyperopt

__all__ = [
    "ParameterValue",
    "Scalar",
    "from_hyperopt",
    "hyperopt_expression",
    "hyperopt_space",
    "point_from_vals",
    "quantized_range",
    "tidy_float",
    "tidy_number",
    "to_hyperopt",
    "vals_from_point",
    "value_key",
]


def tidy_number(value: float) -> float | int:
    """A quantized value: an int when it is integral (so `q: 1` fills integer fields), else a tidy float."""
    tidy = tidy_float(value)
    return int(tidy) if tidy.is_integer() else tidy


def quantized_range(parameter: Parameter) -> tuple[int, int]:
    """The first and last multiple index of q inside [min, max] (the values a q-type may take)."""
    assert parameter.q is not None and parameter.min is not None and parameter.max is not None
    slack = 1e-9
    return math.ceil(parameter.min / parameter.q - slack), math.floor(parameter.max / parameter.q + slack)


def hyperopt_expression(parameter: Parameter) -> Any:
    """The hyperopt expression that draws `parameter` (bounds in real space become hyperopt's)."""
    import_hyperopt()
    from hyperopt import hp  # on first use: see suggest.py on the operator's memory

    label, low, high = parameter.name, parameter.min, parameter.max
    match parameter.type:
        case ParameterType.UNIFORM:
            return hp.uniform(label, low, high)
        case ParameterType.LOGUNIFORM:
            assert low is not None and high is not None
            return hp.loguniform(label, math.log(low), math.log(high))
        case ParameterType.QUNIFORM:
            return hp.quniform(label, low, high, parameter.q)
        case ParameterType.QLOGUNIFORM:
            assert low is not None and high is not None
            return hp.qloguniform(label, math.log(low), math.log(high), parameter.q)
        case ParameterType.NORMAL:
            return hp.normal(label, parameter.mu, parameter.sigma)
        case ParameterType.LOGNORMAL:
            return hp.lognormal(label, parameter.mu, parameter.sigma)
        case ParameterType.RANDINT:
            # One-argument randint (0..n-1) plus our own offset: hyperopt's two-argument form needs a
            # special case in TPE that anneal does not have.
            assert low is not None and high is not None
            return hp.randint(label, int(high) - int(low) + 1)
        case ParameterType.CHOICE:
            return hp.choice(label, list(range(len(parameter.values or ()))))
    raise AssertionError(f"unhandled parameter type {parameter.type}")  # pragma: no cover


def hyperopt_space(parameters: Sequence[Parameter]) -> dict[str, Any]:
    """The whole search space: the unconditional parameters by name, each conditional one nested in the
    branches of its parent's choice (see the module doc). A flat space is one expression per name."""
    import_hyperopt()
    from hyperopt import hp

    children: dict[str, list[Parameter]] = {}
    for parameter in parameters:
        if parameter.when is not None:
            children.setdefault(parameter.when.parameter, []).append(parameter)
    built: dict[str, Any] = {}

    def expression(parameter: Parameter) -> Any:
        if parameter.name in built:  # shared by every branch it exists under: one node, one label
            return built[parameter.name]
        below = children.get(parameter.name)
        if not below:
            built[parameter.name] = hyperopt_expression(parameter)
            return built[parameter.name]
        branches = []
        for option in parameter.values or ():
            present = [child for child in below if is_active(child, {parameter.name: option})]
            branches.append({child.name: expression(child) for child in present})
        built[parameter.name] = hp.choice(parameter.name, branches)
        return built[parameter.name]

    return {parameter.name: expression(parameter) for parameter in parameters if parameter.when is None}


def from_hyperopt(parameter: Parameter, raw: Any) -> ParameterValue:
    """The value a trial gets for hyperopt's draw `raw`, typed as the parameter promises."""
    match parameter.type:
        case ParameterType.CHOICE:
            return (parameter.values or [])[int(raw)]
        case ParameterType.RANDINT:
            assert parameter.min is not None
            return int(parameter.min) + int(raw)
        case ParameterType.QUNIFORM | ParameterType.QLOGUNIFORM:
            # hyperopt rounds an unclamped draw, so min 0.5 with q 1 can give 0: clamp to the multiples inside.
            assert parameter.q is not None
            first, last = quantized_range(parameter)
            index = min(max(round(float(raw) / parameter.q), first), last)
            return tidy_number(index * parameter.q)
        case _:
            return float(raw)


def to_hyperopt(parameter: Parameter, value: ParameterValue) -> float | int | None:
    """hyperopt's raw form of a trial's `value`, or None when the current space cannot hold it."""
    if parameter.type == ParameterType.CHOICE:
        wanted = value_key(value)
        for index, option in enumerate(parameter.values or ()):
            if value_key(option) == wanted:
                return index
        return None
    if isinstance(value, bool | str | list | dict) or value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    low, high = parameter.min, parameter.max
    if low is not None and high is not None and not _within(number, low, high, parameter):
        return None
    match parameter.type:
        case ParameterType.RANDINT:
            assert low is not None
            return round(number) - int(low) if number.is_integer() else None
        case ParameterType.LOGNORMAL:
            return number if number > 0 else None
        case _:
            return number


def _within(number: float, low: float, high: float, parameter: Parameter) -> bool:
    """Whether `number` lies in the parameter's range (a q-type's range is its outermost multiples)."""
    if parameter.q is not None:
        first, last = quantized_range(parameter)
        low, high = first * parameter.q, last * parameter.q
    slack = 1e-9 * max(1.0, abs(low), abs(high))
    return low - slack <= number <= high + slack


def point_from_vals(parameters: Sequence[Parameter], vals: Mapping[str, Sequence[Any]]) -> dict[str, ParameterValue]:
    """A trial's parameters from a hyperopt doc's `misc.vals` (a label holds one draw, or none when the
    parameter does not exist in this trial: it is then absent from the point)."""
    return {
        parameter.name: from_hyperopt(parameter, vals[parameter.name][0])
        for parameter in parameters
        if vals.get(parameter.name)
    }


def vals_from_point(parameters: Sequence[Parameter], point: Mapping[str, ParameterValue]) -> dict[str, list[Any]]:
    """hyperopt `vals` for a recorded trial; labels the space cannot hold, and those of parameters that do
    not exist under the point's own options, get no value (see module doc). Labels in the spec's order."""
    held: dict[str, ParameterValue] = {}
    for parameter in ancestry_order(parameters):
        raw = to_hyperopt(parameter, point[parameter.name]) if parameter.name in point else None
        if raw is not None and is_active(parameter, held):
            held[parameter.name] = point[parameter.name]
    vals: dict[str, list[Any]] = {}
    for parameter in parameters:
        raw = to_hyperopt(parameter, held[parameter.name]) if parameter.name in held else None
        vals[parameter.name] = [] if raw is None else [raw]
    return vals
