"""The reason given for a field the API does not have: "unknown field; did you mean learningRate?".

A misspelt field is the mistake a new user makes most, and pydantic's own words for it ("Extra inputs are
not permitted") neither say that the field does not exist nor which one was meant. The known names come
from the model's JSON schema (camelCase aliases, as the user writes them), looked up along the error's
location, so nested models, lists and maps are followed the way the object nests them.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import Any, Final

from pydantic import BaseModel

# How alike a known name must be to be suggested (difflib ratio): `learningRatez` -> `learningRate`,
# `mni` -> `min`, `intervalEpoch` -> `intervalEpochs`, but not `foo` -> `format`.
_CUTOFF: Final = 0.6


def unknown_field_reason(model: type[BaseModel], location: Sequence[int | str]) -> str:
    """Why `location` (relative to `model`, ending in the unknown name) is refused, with the closest known
    name at that place when one is close enough."""
    if not location:
        return "unknown field"
    known = _known_names(model, tuple(location[:-1]))
    guess = difflib.get_close_matches(str(location[-1]), known, n=1, cutoff=_CUTOFF)
    if guess:
        return f"unknown field; did you mean {guess[0]}?"
    return "unknown field; check its spelling against `kubectl explain`"


def _known_names(model: type[BaseModel], parent: tuple[int | str, ...]) -> list[str]:
    schema, defs = _schema(model)
    node: dict[str, Any] | None = schema
    for part in parent:
        node = _step(node, defs, part) if node is not None else None
    if node is None:
        return []
    return sorted({name for branch in _branches(node, defs) for name in branch.get("properties", {})})


@functools.cache
def _schema(model: type[BaseModel]) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return schema, schema.get("$defs", {})


def _branches(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The concrete schemas `node` may stand for: references followed, unions (a nullable model) split."""
    if "$ref" in node:
        return _branches(defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {}), defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            return [branch for option in node[key] for branch in _branches(option, defs)]
    return [node]


def _step(node: dict[str, Any], defs: dict[str, Any], part: int | str) -> dict[str, Any] | None:
    for branch in _branches(node, defs):
        if isinstance(part, int) and isinstance(branch.get("items"), dict):
            return dict(branch["items"])
        if isinstance(part, str) and part in branch.get("properties", {}):
            return dict(branch["properties"][part])
        if isinstance(part, str) and isinstance(branch.get("additionalProperties"), dict):
            return dict(branch["additionalProperties"])
    return None
