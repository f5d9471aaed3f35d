"""Dotted field paths into a TrainingJob spec (`trainer.config.learningRate`), as sweeps use them.

A sweep parameter names the field it varies by path. Resolving the path against the models at admission
turns a typo (`trainer.config.learningrate`) into an error naming the parameter, instead of a sweep whose
every trial silently trains with the template's value; `apply_parameters` is the one way trial specs are
made, so the builder and the validator cannot disagree about what a path means.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Any, Final, Literal

from pydantic import BaseModel

from trainsmart.api.trainingjob_spec import TrainingJobSpec

LeafKind = Literal["int", "float", "bool", "str", "any"]
# Fields a sweep controls itself (it suspends and resumes its trials); a parameter may not set them.
UNSWEEPABLE: Final = frozenset({"suspend"})


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _leaf_kind(annotation: Any) -> LeafKind:
    annotation = _unwrap_optional(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum | str)):
        return "str"
    return "any"


def _field_by_alias(model: type[BaseModel], alias: str) -> Any:
    for name, info in model.model_fields.items():
        if alias == (info.alias or name):  # camelCase only: one spelling per field in a dumped spec
            return info.annotation
    known = ", ".join(sorted(info.alias or name for name, info in model.model_fields.items()))
    raise ValueError(f"{model.__name__} has no field {alias!r}; known fields: {known}")


def resolve_path(path: str, model: type[BaseModel] = TrainingJobSpec) -> LeafKind:
    """The kind of value at `path` in `model`, or ValueError naming the first segment that does not exist.

    A map field (`resources.requests`, `nodeSelector`) takes the rest of the path as its key, so keys with
    dots (`nodeSelector.nvidia.com/gpu.product`) work. Free-form objects accept any remaining path.
    """
    segments = path.split(".")
    if not all(segments):
        raise ValueError(f"path {path!r} has an empty segment; write field names separated by single dots")
    if segments[0] in UNSWEEPABLE:
        raise ValueError(f"path {path!r} is controlled by the sweep itself and cannot be a parameter")
    current: Any = model
    for index, segment in enumerate(segments):
        current = _unwrap_optional(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = _field_by_alias(current, segment)
            continue
        origin = typing.get_origin(_strip_annotated(current))
        if origin is dict:
            value_type = typing.get_args(_strip_annotated(current))[1]
            if value_type is Any:
                raise ValueError(f"path {path!r} goes into a free-form object, which a sweep cannot set")
            return _leaf_kind(value_type)
        if origin is list:
            raise ValueError(f"path {path!r} goes into a list at {'.'.join(segments[:index])}; lists cannot be set")
        raise ValueError(f"path {path!r} continues past the value at {'.'.join(segments[:index])}")
    leaf = _strip_annotated(_unwrap_optional(current))
    if isinstance(leaf, type) and issubclass(leaf, BaseModel):
        raise ValueError(f"path {path!r} names an object; name one of its fields")
    if typing.get_origin(leaf) in (dict, list):
        raise ValueError(f"path {path!r} names a whole map or list; name a single value inside a map instead")
    return _leaf_kind(current)


def _strip_annotated(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def with_path(
    data: Mapping[str, Any], path: str, value: Any, model: type[BaseModel] = TrainingJobSpec
) -> dict[str, Any]:
    """A copy of the camelCase spec dict `data` with `value` at `path`, creating objects on the way.

    Only the dicts along the path are copied (the rest is shared with `data`, which is never modified),
    so making many trials from one template costs little more than validating them.
    """
    resolve_path(path, model)  # the same rules as admission, including where map keys begin
    segments = path.split(".")
    root = dict(data)
    current, annotation = root, _unwrap_optional(model)
    for index, segment in enumerate(segments[:-1]):
        child = dict(current.get(segment) or {})
        current[segment] = child
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = _unwrap_optional(_field_by_alias(annotation, segment))
            if typing.get_origin(_strip_annotated(annotation)) is dict:
                child[".".join(segments[index + 1 :])] = value
                return root
        current = child
    current[segments[-1]] = value
    return root


def apply_parameters(
    template: TrainingJobSpec | Mapping[str, Any], values: Mapping[str, bool | int | float | str]
) -> TrainingJobSpec:
    """A trial spec: the template with each `path -> value` set, validated like any TrainingJob spec.

    The template may be given already dumped (`template.to_api()`), which saves re-dumping it when many
    trials are made from one template.
    """
    data: Mapping[str, Any] = template.to_api() if isinstance(template, TrainingJobSpec) else template
    for path, value in values.items():
        data = with_path(data, path, value)
    return TrainingJobSpec.model_validate(data)
