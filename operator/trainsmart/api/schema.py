"""Pydantic JSON Schema -> Kubernetes structural OpenAPI v3 schema.

Pydantic writes JSON Schema 2020-12; a CRD needs the structural subset of OpenAPI v3.0 that every
apiserver from 1.20 on accepts: no `$ref`, a `type` on every node (or an explicit preserve-unknown /
int-or-string marker), `nullable` instead of unions with null, boolean `exclusiveMinimum`, no `title`,
`const`, `examples` or `additionalProperties: false`. The conversion is strict: a keyword it does not know
is an error at generation time, so nothing a 1.20 apiserver would reject can slip into the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

# Keywords passed through unchanged (after their children are converted).
_KEPT: Final = frozenset(
    {
        "type",
        "description",
        "enum",
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "multipleOf",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-validations",
    }
)
# Keywords pydantic writes that a CRD neither needs nor (on some versions) accepts.
_DROPPED: Final = frozenset({"title", "examples", "$defs"})
# Formats the apiserver knows; others (pydantic's "uri", "path", "duration") would be ignored at best.
_FORMATS: Final = frozenset({"date-time", "date", "int32", "int64", "float", "double", "byte", "uuid"})
_INT_OR_STRING: Final = [{"type": "integer"}, {"type": "string"}]
_SCALARS: Final = (bool, int, float, str)


class SchemaError(ValueError):
    """The model uses a construct that has no structural equivalent; the message names where."""


def structural_schema(
    model: type[BaseModel], *, keep_defaults: bool = True, keep_unknown_fields: bool = False
) -> dict[str, Any]:
    """The structural schema of `model`, with the camelCase field names the API uses.

    `keep_defaults=False` drops every default: for status, which only the operator writes, defaults would
    only make the apiserver invent values the operator never reported.

    `keep_unknown_fields=True` marks every object whose model forbids unknown fields with
    `x-kubernetes-preserve-unknown-fields`, so the apiserver stores a misspelt field instead of pruning it
    and the webhook (and, without a webhook, the operator) can refuse it by name. Without it the apiserver
    prunes unknown fields before admission: on servers with strict field validation (>= 1.25) clients that
    ask for it are refused, every other client loses the field silently.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    options = _Options(keep_defaults=keep_defaults, keep_unknown_fields=keep_unknown_fields)
    return _convert(raw, defs, path=model.__name__, is_field=True, options=options)


@dataclass(frozen=True)
class _Options:
    keep_defaults: bool
    keep_unknown_fields: bool


def _resolve(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """Inline `$ref` and single-entry `allOf`; keys beside the reference win over the referenced ones."""
    while True:
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            if name not in defs:
                raise SchemaError(f"{path}: unresolved $ref {node['$ref']}")
            siblings = {key: value for key, value in node.items() if key != "$ref"}
            node = {**defs[name], **siblings}
        elif "allOf" in node and len(node["allOf"]) == 1:
            siblings = {key: value for key, value in node.items() if key != "allOf"}
            node = {**node["allOf"][0], **siblings}
        else:
            return node


def _collapse_nullable(node: dict[str, Any], defs: dict[str, Any], path: str) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` -> X with `nullable: true`; any other union is not structural."""
    if "anyOf" not in node or node.get("x-kubernetes-int-or-string"):
        return node
    branches = node["anyOf"]
    others = [branch for branch in branches if branch != {"type": "null"}]
    if len(others) != 1:
        raise SchemaError(f"{path}: a union of {len(others)} types is not structural; use one type")
    siblings = {key: value for key, value in node.items() if key != "anyOf"}
    merged = {**_resolve(others[0], defs, path), **siblings}
    if len(others) < len(branches):
        merged["nullable"] = True
    return _collapse_nullable(merged, defs, path)


def _convert(
    node: dict[str, Any], defs: dict[str, Any], *, path: str, is_field: bool, options: _Options
) -> dict[str, Any]:
    node = _collapse_nullable(_resolve(node, defs, path), defs, path)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "description" and not is_field):
            continue  # descriptions of items and map values repeat the field's; `kubectl explain` shows the field's
        if key in _KEPT:
            out[key] = value
        elif key == "nullable":
            out["nullable"] = True
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if bound in node:
                raise SchemaError(f"{path}: both {bound} and {key}; keep one")
            out[bound], out[key] = value, True
        elif key == "default":
            if options.keep_defaults and isinstance(value, _SCALARS):
                out["default"] = value
        elif key == "anyOf":
            if value != _INT_OR_STRING:
                raise SchemaError(f"{path}: anyOf is only allowed for int-or-string")
            out["anyOf"] = value
        elif key == "properties":
            out["properties"] = {
                name: _convert(child, defs, path=f"{path}.{name}", is_field=True, options=options)
                for name, child in value.items()
            }
        elif key == "items":
            out["items"] = _convert(value, defs, path=f"{path}[]", is_field=False, options=options)
        elif key == "additionalProperties":
            _convert_additional(out, value, defs, path=path, options=options)
        else:
            raise SchemaError(f"{path}: JSON Schema keyword {key!r} has no structural equivalent")
    return _finish(out, path=path, is_field=is_field)


def _convert_additional(out: dict[str, Any], value: Any, defs: dict[str, Any], *, path: str, options: _Options) -> None:
    if value is False:  # extra="forbid": the models reject unknown fields; see `keep_unknown_fields`
        if options.keep_unknown_fields:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return
    if value is True or value == {}:
        out["x-kubernetes-preserve-unknown-fields"] = True
        return
    out["additionalProperties"] = _convert(value, defs, path=f"{path}{{}}", is_field=False, options=options)


def _finish(out: dict[str, Any], *, path: str, is_field: bool) -> dict[str, Any]:
    if out.get("format") not in (None, *_FORMATS):
        del out["format"]
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True  # a free-form object, said explicitly
    typed = "type" in out or out.get("x-kubernetes-preserve-unknown-fields") or out.get("x-kubernetes-int-or-string")
    if not typed:
        raise SchemaError(f"{path}: no type; give the field a concrete type")
    if is_field and not out.get("description"):
        raise SchemaError(f"{path}: no description; every field needs one (it is the `kubectl explain` text)")
    if "properties" in out and "additionalProperties" in out:
        raise SchemaError(f"{path}: properties and additionalProperties together are not structural")
    return out
