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

LeafKind = Literal["int", "float", "bool", "str", "list", "object", "any"]
# Fields a sweep controls itself (it suspends and resumes its trials); a parameter may not set them.
UNSWEEPABLE: Final = frozenset({"suspend"})


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _strip_annotated(annotation: Any) -> Any:
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _bare(annotation: Any) -> Any:
    """The type under Optional and Annotated (in either order)."""
    return _strip_annotated(_unwrap_optional(_strip_annotated(annotation)))


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _leaf_kind(annotation: Any) -> LeafKind:
    annotation = _bare(annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Enum | str)):
        return "str"
    if origin is list:
        return "list"
    if origin is dict or _is_model(annotation):
        return "object"
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
    dots (`nodeSelector.nvidia.com/gpu.product`) work. A number indexes a list
    (`trainer.config.model.hiddenSizes.0`); whether the entry exists depends on the template, which
    `with_path` checks. A path may also end at a whole list, map or object (kind `list` or `object`), which
    a choice among lists or objects then replaces.
    """
    segments = path.split(".")
    if not all(segments):
        raise ValueError(f"path {path!r} has an empty segment; write field names separated by single dots")
    if segments[0] in UNSWEEPABLE:
        raise ValueError(f"path {path!r} is controlled by the sweep itself and cannot be a parameter")
    current: Any = model
    for index, segment in enumerate(segments):
        current = _bare(current)
        if _is_model(current):
            current = _field_by_alias(current, segment)
            continue
        origin = typing.get_origin(current)
        if origin is dict:
            value_type = typing.get_args(current)[1]
            if value_type is Any:
                raise ValueError(f"path {path!r} goes into a free-form object, which a sweep cannot set")
            return _leaf_kind(value_type)
        if origin is list:
            if not segment.isdigit():
                where = ".".join(segments[:index])
                raise ValueError(
                    f"path {path!r} goes into a list at {where}; index it with a number ({where}.0), or set the "
                    "whole list with list values"
                )
            current = typing.get_args(current)[0]
            continue
        raise ValueError(f"path {path!r} continues past the value at {'.'.join(segments[:index])}")
    return _leaf_kind(current)


def with_path(
    data: Mapping[str, Any], path: str, value: Any, model: type[BaseModel] = TrainingJobSpec
) -> dict[str, Any]:
    """A copy of the camelCase spec dict `data` with `value` at `path`, creating objects on the way.

    Only the dicts and lists along the path are copied (the rest is shared with `data`, which is never
    modified), so making many trials from one template costs little more than validating them. A list
    index must name an entry the template has: ValueError otherwise (a sweep does not invent list entries).
    """
    resolve_path(path, model)  # the same rules as admission, including where map keys begin
    result = _set(data, path.split("."), value, model, [])
    assert isinstance(result, dict)
    return result


def _set(node: Any, segments: list[str], value: Any, annotation: Any, walked: list[str]) -> Any:
    """`node` (of type `annotation`) with `value` at `segments`, copying what it changes."""
    if not segments:
        return value
    head, rest = segments[0], segments[1:]
    annotation = _bare(annotation)
    if _is_model(annotation):
        copied = dict(node) if isinstance(node, Mapping) else {}
        copied[head] = _set(copied.get(head), rest, value, _field_by_alias(annotation, head), [*walked, head])
        return copied
    if typing.get_origin(annotation) is dict:
        copied = dict(node) if isinstance(node, Mapping) else {}
        copied[".".join(segments)] = value
        return copied
    items = list(node) if isinstance(node, list) else []
    entry = int(head)
    if entry >= len(items):
        where = ".".join(walked)
        has = f"has {len(items)} entries" if node is not None else "does not set it"
        raise ValueError(
            f"{where} has no entry {entry}: the trialTemplate {has}; set {where} in the trialTemplate (a "
            "sweep replaces entries, it does not add them), or give the parameter whole lists as values"
        )
    items[entry] = _set(items[entry], rest, value, typing.get_args(annotation)[0], [*walked, head])
    return items


def apply_parameters(template: TrainingJobSpec | Mapping[str, Any], values: Mapping[str, Any]) -> TrainingJobSpec:
    """A trial spec: the template with each `path -> value` set, validated like any TrainingJob spec.

    The template may be given already dumped (`template.to_api()`), which saves re-dumping it when many
    trials are made from one template.
    """
    data: Mapping[str, Any] = template.to_api() if isinstance(template, TrainingJobSpec) else template
    for path, value in values.items():
        data = with_path(data, path, value)
    return TrainingJobSpec.model_validate(data)
