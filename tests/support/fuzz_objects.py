"""Hypothesis strategies for TrainingJobs and HyperparamSweeps: valid, near-valid and hostile (issue 13).

The objects are derived from the pydantic models' JSON schema (`model_json_schema(by_alias=True)`, the
source of the CRD schemas), so a new field is fuzzed the day it is added:

* **valid**: a known-good base (`admission_cases.JOB_BASE`/`SWEEP_BASE`) with a few optional fields, at any
  depth, filled with values the schema allows (bounds, enums, patterns, list-map keys unique). The models'
  cross-field rules may still refuse some of them; that is a refusal with a path, which is fine.
* **near-valid**: a valid object with one thing wrong: a value of the wrong type, a number out of range,
  a misspelt key, a value wrapped in an extra object or list, a key removed.
* **hostile**: a valid object with one hostile value: a string at its schema bound, one past it or far
  beyond (unicode, emoji, RTL and zero-width marks, NUL), a deeply nested free-form object in a
  pass-through field (affinity, a volume, a toleration), a number JSON allows but no spec expects
  (1e308, -0.0, 2**63, -2**63-1), or a hostile name, label or annotation.

Every object stays well under 1 MiB as the kubernetes client sends it (`json.dumps` escapes non-ASCII):
`MAX_BODY_BYTES`. Replica and trial counts of valid objects stay small, so a thousand accepted objects do
not become tens of thousands of pods on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from hypothesis import strategies as st
from kubernetes import client

from support.admission_cases import JOB_BASE, SWEEP_BASE
from support.manifests import sweep_body, trainingjob_body
from trainsmart.api import HyperparamSweepSpec, TrainingJobSpec

MAX_BODY_BYTES: Final = 700 * 1024
"""Largest body (as sent: ASCII-escaped JSON) a generated object may have; well under 1 MiB."""
LONG_STRING_CHARS: Final = (64, 254, 4096, 40_000)
"""Lengths of hostile strings beyond small bounds (schema bounds and bound + 1 are tried too)."""
KNOWN_DEFECTS: Final = os.environ.get("TRAINSMART_FUZZ_KNOWN_DEFECTS", "") not in ("", "0")
"""Also generate what hits the defects reported outside this suite's reach (tests/fuzz/test_known_defects.py):
free-form pass-through values (affinity, tolerations, volume sources...) of any shape, which the operator
cannot turn into pods (nested 32 levels too), and a priorityClassName no PriorityClass has."""
DEEP_NESTING: Final = (65, 100, 300, 1000, *((32,) if KNOWN_DEFECTS else ()))
"""Depths of hostile nested free-form objects (more than `rules.MAX_SPEC_DEPTH`: refused at admission; 1000
is deeper than Python's JSON decoder reads, refused by `admission/review_depth.py`)."""
EXTREME_NUMBERS: Final[tuple[int | float, ...]] = (1e308, -1e308, -0.0, 2**63, -(2**63) - 1, 2**64, 2**31, -1, 5e-324)
# Few of each so that a thousand objects do not turn into tens of thousands of pods.
SMALL_COUNTS: Final = {"replicas": 3, "maxTrials": 4, "parallelTrials": 2, "count": 4, "processesPerReplica": 4}
ODD_TEXT: Final = (
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u202e",  # right-to-left override
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew (RTL)
    "\U0001f680\U0001f9e0",  # emoji
    "\U0001f469\u200d\U0001f4bb",  # a ZWJ emoji sequence
    "e\u0301",  # combining accent
    "\x00",  # NUL, legal in JSON strings
    "\ufeff",  # byte-order mark
    "${params.lr}",
    "../../etc/passwd",
    '"\\',
)
# Text without lone surrogates (not encodable as UTF-8, so not JSON an apiserver accepts).
UNICODE = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)


@dataclass(frozen=True)
class Schema:
    """A model's JSON schema and its `$defs`, with `$ref` resolution."""

    root: dict[str, Any]
    defs: dict[str, Any]

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = {**self.defs[str(node["$ref"]).rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    def branches(self, node: dict[str, Any]) -> list[dict[str, Any]]:
        """The non-null alternatives `node` stands for (a nullable field is its value's schema)."""
        node = self.resolve(node)
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            return [
                branch for option in node["anyOf"] for branch in self.branches(option) if branch.get("type") != "null"
            ]
        return [node]


@functools.cache
def schema_of(model: type[TrainingJobSpec] | type[HyperparamSweepSpec]) -> Schema:
    root = model.model_json_schema(by_alias=True, mode="validation")
    return Schema(root, root.get("$defs", {}))


# -- valid values from a schema ------------------------------------------------------------------------


def json_values(max_leaves: int = 4) -> st.SearchStrategy[Any]:
    """Small free-form JSON: what a pass-through field may hold."""
    scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3),
        max_leaves=max_leaves,
    )


def value_for(schema: Schema, node: dict[str, Any], name: str = "", depth: int = 0) -> st.SearchStrategy[Any]:
    """Values the schema `node` allows (a field called `name`, for the few counts kept small)."""
    options = schema.branches(node)
    if len(options) > 1:
        return st.one_of([value_for(schema, option, name, depth) for option in options])
    node = options[0]
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if node.get("x-kubernetes-int-or-string"):
        return st.integers(0, 64) | st.sampled_from(["500m", "1", "2Gi", "16Mi", "1e3", ".5"])
    kind = node.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low = int(node.get("minimum", node.get("exclusiveMinimum", -1) + 1 if "exclusiveMinimum" in node else 0))
        high = int(node.get("maximum", low + 10_000))
        return st.integers(low, min(high, low + SMALL_COUNTS[name]) if name in SMALL_COUNTS else high)
    if kind == "number":
        return st.floats(
            min_value=node.get("minimum", node.get("exclusiveMinimum")),
            max_value=node.get("maximum", node.get("exclusiveMaximum")),
            exclude_min="exclusiveMinimum" in node,
            exclude_max="exclusiveMaximum" in node,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "string":
        low, high = int(node.get("minLength", 0)), int(node.get("maxLength", 32))
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True).filter(lambda text: low <= len(text) <= high)
        return st.text(min_size=low, max_size=min(high, 24))
    if kind == "array":
        items = node.get("items", {})
        low, high = int(node.get("minItems", 0)), min(int(node.get("maxItems", 3)), 3)
        keys = node.get("x-kubernetes-list-map-keys")
        element = value_for(schema, items, "", depth + 1) if depth < 6 else json_values(1)
        unique: Callable[[Any], Any] | None = None
        if keys:
            unique = functools.partial(_list_key, tuple(keys))
        return st.lists(element, min_size=low, max_size=max(low, high), unique_by=unique)
    if kind == "object" and "properties" in node:
        return _object_for(schema, node, depth)
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        inner = value_for(schema, node["additionalProperties"], "", depth + 1)
        return st.dictionaries(st.from_regex(r"[a-z][a-z0-9.-]{0,15}", fullmatch=True), inner, max_size=3)
    return json_values()


def _list_key(keys: tuple[str, ...], item: Any) -> Any:
    return tuple(json.dumps(item.get(key), sort_keys=True) for key in keys) if isinstance(item, dict) else id(item)


def _object_for(schema: Schema, node: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    """Every required property and up to two optional ones."""
    properties: dict[str, Any] = node["properties"]
    required = [key for key in node.get("required", []) if key in properties]
    optional = sorted(key for key in properties if key not in required and _fuzzable(schema, properties[key]))

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        chosen = (
            draw(st.lists(st.sampled_from(optional), max_size=2 if depth < 4 else 0, unique=True)) if optional else []
        )
        return {key: draw(value_for(schema, properties[key], key, depth + 1)) for key in [*required, *chosen]}

    return build()


def _fuzzable(schema: Schema, node: dict[str, Any]) -> bool:
    """False for free-form Kubernetes objects (unless `KNOWN_DEFECTS`): random JSON there is no Kubernetes
    object, and the operator cannot build pods from it (reported; see tests/fuzz/test_known_defects.py)."""
    if KNOWN_DEFECTS:
        return True
    if "NamedObject" in json.dumps(node):  # a Volume: only its name is typed
        return False
    if schema.resolve(node).get("title") == "Priorityclassname":  # names a PriorityClass nobody created
        return False
    for branch in schema.branches(node):
        item = schema.resolve(branch.get("items", {})) if branch.get("type") == "array" else branch
        free_form = item.get("x-kubernetes-preserve-unknown-fields") and "properties" not in item
        if free_form and item.get("type") == "object":
            return False
    return True


def deep_merge(base: Any, extra: Any) -> Any:
    """`extra` laid over `base`, objects merged key by key (lists and scalars replaced)."""
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(extra)


# -- the three families --------------------------------------------------------------------------------

KINDS: Final = {
    "TrainingJob": (TrainingJobSpec, JOB_BASE, trainingjob_body),
    "HyperparamSweep": (HyperparamSweepSpec, SWEEP_BASE, sweep_body),
}


@dataclass(frozen=True)
class Fuzzed:
    """One generated object and how it was made (for the figures and for failure messages)."""

    family: str
    """valid, near-valid or hostile."""
    how: str
    """What was done to it, e.g. `near-valid: wrong type at spec.trainer.config.epochs`."""
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])


@st.composite
def valid_specs(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    model, base, _ = KINDS[kind]
    schema = schema_of(model)
    extra = draw(_object_for(schema, {**schema.root, "required": []}, depth=0))
    spec: dict[str, Any] = deep_merge(copy.deepcopy(base), extra)
    if kind == "HyperparamSweep":
        # The trials are TrainingJobs too: keep their replica count small whatever the template says.
        template = spec.setdefault("trialTemplate", {})
        if isinstance(template, dict) and isinstance(template.get("replicas"), int):
            template["replicas"] = min(template["replicas"], SMALL_COUNTS["replicas"])
    return spec


def paths_in(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value inside `value` (objects and lists followed), the root excluded."""
    found: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        path = (*prefix, key)
        found.append(path)
        found += paths_in(item, path)
    return found


def dotted(path: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _get(root: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        root = root[part]
    return root


def _typo(draw: st.DrawFn, key: str) -> str:
    if not key:
        return "x"
    index = draw(st.integers(0, len(key) - 1))
    how = draw(st.sampled_from(["double", "drop", "case", "append"]))
    if how == "double":
        return key[: index + 1] + key[index:]
    if how == "drop" and len(key) > 1:
        return key[:index] + key[index + 1 :]
    if how == "case":
        return key[:index] + key[index].swapcase() + key[index + 1 :]
    return key + draw(st.sampled_from(["z", "s", "_", "2"]))


def _wrong_type(value: Any) -> list[Any]:
    options: list[Any] = ["text", 7, 1.5, True, None, [], {}, ["a"], {"a": 1}]
    return [option for option in options if type(option) is not type(value)]


@st.composite
def near_valid(draw: st.DrawFn, kind: str) -> tuple[dict[str, Any], str]:
    """A valid spec with exactly one mutation somewhere inside it; (spec, what was done)."""
    spec = draw(valid_specs(kind))
    path = draw(st.sampled_from(paths_in(spec)))
    parent, key = _get(spec, path[:-1]), path[-1]
    value = parent[key]
    where = dotted(("spec", *path))
    how = draw(st.sampled_from(["wrong type", "out of range", "misspelt key", "extra nesting", "removed"]))
    if how == "misspelt key" and isinstance(key, str):
        parent[_typo(draw, key)] = parent.pop(key)
    elif how == "removed":
        del parent[key]
    elif how == "extra nesting":
        parent[key] = draw(st.sampled_from([{"value": value}, [value], {key if isinstance(key, str) else "x": value}]))
    elif how == "out of range":
        parent[key] = draw(st.sampled_from([-1, 0, 10**6, 2**31, 2**63, -(2**63) - 1, 1e308, -1e308, -0.0, 1e-300]))
    else:
        how = "wrong type"
        parent[key] = draw(st.sampled_from(_wrong_type(value)))
    return spec, f"{how} at {where}"


def hostile_strings(bound: int | None = None) -> st.SearchStrategy[str]:
    lengths = sorted({*LONG_STRING_CHARS, *((bound, bound + 1) if bound else ())})
    piece = st.sampled_from(ODD_TEXT) | UNICODE.filter(bool) | st.just("a")

    @st.composite
    def build(draw: st.DrawFn) -> str:
        length = draw(st.sampled_from(lengths))
        unit = draw(piece)
        return (unit * (length // len(unit) + 1))[:length]

    return st.sampled_from(ODD_TEXT) | UNICODE | build()


def nested(depth: int, leaf: Any = "x") -> Any:
    """`{"a": [{"a": [... leaf ...]}]}`, `depth` levels of objects and lists."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


@st.composite
def hostile(draw: st.DrawFn, kind: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A valid spec with one hostile value; (spec, metadata additions, what was done)."""
    spec = draw(valid_specs(kind))
    job = spec["trialTemplate"] if kind == "HyperparamSweep" else spec
    prefix = "spec.trialTemplate" if kind == "HyperparamSweep" else "spec"
    how = draw(st.sampled_from(["long string", "deep nesting", "extreme number", "unicode", "metadata"]))
    metadata: dict[str, Any] = {}
    if how == "deep nesting":
        depth = draw(st.sampled_from(DEEP_NESTING))
        where = draw(st.sampled_from(["affinity", "volumes", "tolerations", "template.securityContext"]))
        deep = nested(depth)
        if where == "affinity":
            job["affinity"] = {"nodeAffinity": deep}
        elif where == "volumes":
            job["volumes"] = [{"name": "data", "emptyDir": deep}]
        elif where == "tolerations":
            job["tolerations"] = [{"key": "k", "operator": "Exists", "x": deep}]
        else:
            job["template"] = {"securityContext": {"seLinuxOptions": deep}}
        return spec, metadata, f"deep nesting ({depth}) at {prefix}.{where}"
    if how == "metadata":
        field = draw(st.sampled_from(["labels", "annotations", "generateName"]))
        text = draw(hostile_strings(63))
        if field == "generateName":
            metadata["generateName"] = text
        else:
            metadata[field] = {draw(st.sampled_from(["a", "trainsmart.dev/x", text[:300] or "k"])): text}
        return spec, metadata, f"hostile metadata.{field}"
    paths = [path for path in paths_in(spec) if not isinstance(_get(spec, path), dict | list)]
    path = draw(st.sampled_from(paths))
    parent, key = _get(spec, path[:-1]), path[-1]
    where = dotted(("spec", *path))
    if how == "extreme number":
        parent[key] = draw(st.sampled_from(EXTREME_NUMBERS))
        return spec, metadata, f"extreme number {parent[key]!r} at {where}"
    bound = draw(st.sampled_from([None, 63, 128, 253, 256, 1024, 4096]))
    parent[key] = draw(hostile_strings(bound) if how == "long string" else UNICODE | st.sampled_from(ODD_TEXT))
    return spec, metadata, f"{how} ({len(parent[key])} chars) at {where}"


@st.composite
def fuzzed_objects(draw: st.DrawFn, name: Callable[[], str]) -> Fuzzed:
    """One object of either kind from one of the three families; `name()` gives each a fresh name."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    family = draw(st.sampled_from(["valid", "near-valid", "hostile"]))
    _, _, body_of = KINDS[kind]
    metadata: dict[str, Any] = {}
    if family == "valid":
        spec, how = draw(valid_specs(kind)), "valid"
    elif family == "near-valid":
        spec, how = draw(near_valid(kind))
    else:
        spec, metadata, how = draw(hostile(kind))
    body = body_of(name(), spec)
    if "generateName" in metadata:
        del body["metadata"]["name"]
    body["metadata"].update(metadata)
    if len(encode(body)) > MAX_BODY_BYTES:
        # A hostile string far beyond its bound in a big object: cut it down rather than reject the draw.
        body = _shrink(body)
    return Fuzzed(family, f"{kind} {how}", body)


@contextlib.contextmanager
def deep_recursion(limit: int = 10_000) -> Iterator[None]:
    """Room for Python's recursive JSON encoder and decoder on the deeply nested hostile objects."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def encode(body: Any) -> bytes:
    """`body` as the kubernetes client sends it (ASCII-escaped JSON), however deep."""
    with deep_recursion():
        return json.dumps(body).encode()


def decode(data: bytes | str) -> Any:
    with deep_recursion():
        return json.loads(data)


def _shrink(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 4096:
        return value[:4096]
    if isinstance(value, dict):
        return {key: _shrink(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shrink(item) for item in value]
    return value


@dataclass
class RawApi:
    """Requests of raw JSON bytes: the kubernetes client's own (de)serialization is recursive Python,
    which cannot carry the deepest hostile objects the apiserver accepts."""

    api_client: client.ApiClient

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        configuration = self.api_client.configuration
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for auth in configuration.auth_settings().values():
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        response = self.api_client.rest_client.pool_manager.request(
            method, configuration.host + path, body=body, headers=headers, timeout=60
        )
        data = response.data
        try:
            return response.status, decode(data)
        except ValueError:
            return response.status, {"message": data.decode(errors="replace")}
