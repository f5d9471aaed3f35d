"""Grid search: every combination of each parameter's finite set, in one fixed order.

hyperopt has no grid search, so this is ours. The order is `itertools.product` over the parameters as the
spec lists them (the last one varies fastest), which makes trial N the same point on every run, and lets
the suggester skip points already tried without remembering anything but the trials themselves.

A conditional space's grid holds only valid combinations (issue 15): momentum's values are crossed with
optimizer sgd, while adam appears once, without momentum. Enumeration follows the same order, a parent
placed before its children (`ancestry_order`), and a parameter that does not exist under the options
chosen so far is simply skipped; for a flat space this is exactly the product above.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence

from trainsmart.api.search_space import Parameter, ParameterType, ancestry_order, is_active
from trainsmart.sweep.space import ParameterValue, quantized_range, tidy_float, tidy_number


def parameter_grid(parameter: Parameter) -> list[ParameterValue]:
    """The values grid search tries for one parameter, in ascending order (choice: as listed).

    Raises ValueError for a parameter without a finite grid (admission refuses such grid sweeps already).
    """
    low, high = parameter.min, parameter.max
    size = parameter.grid_size()
    if size is None:
        raise ValueError(f"parameter {parameter.name} ({parameter.type}) has no finite grid")
    if parameter.type == ParameterType.CHOICE:
        return list(parameter.values or ())
    assert low is not None and high is not None
    if parameter.type == ParameterType.RANDINT:
        return list(range(int(low), int(high) + 1))
    if parameter.q is not None:
        first, last = quantized_range(parameter)
        return [tidy_number(index * parameter.q) for index in range(first, last + 1)]
    assert parameter.step is not None
    if parameter.type == ParameterType.LOGUNIFORM:
        return [tidy_float(low * parameter.step**index) for index in range(size)]
    return [tidy_float(low + parameter.step * index) for index in range(size)]


def grid_points(parameters: Sequence[Parameter]) -> Iterator[dict[str, ParameterValue]]:
    """Every point of the grid, lazily, in enumeration order (the last parameter varies fastest); in a
    conditional space, only the parameters that exist under each point's options (see module doc)."""
    if all(parameter.when is None for parameter in parameters):
        names = [parameter.name for parameter in parameters]
        axes = [parameter_grid(parameter) for parameter in parameters]
        for combination in itertools.product(*axes):
            yield dict(zip(names, combination, strict=True))
        return
    ordered = ancestry_order(parameters)
    by_name = {parameter.name: parameter_grid(parameter) for parameter in ordered}
    yield from _conditional_points(ordered, by_name, 0, {})


def _conditional_points(
    ordered: Sequence[Parameter],
    axes: Mapping[str, Sequence[ParameterValue]],
    index: int,
    point: dict[str, ParameterValue],
) -> Iterator[dict[str, ParameterValue]]:
    if index == len(ordered):
        yield dict(point)
        return
    parameter = ordered[index]
    if not is_active(parameter, point):
        yield from _conditional_points(ordered, axes, index + 1, point)
        return
    for value in axes[parameter.name]:
        point[parameter.name] = value
        yield from _conditional_points(ordered, axes, index + 1, point)
    del point[parameter.name]
