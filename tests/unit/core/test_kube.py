"""`kube.merge_patch`: the RFC 7386 merge patch the status write sends.

Pins:
- equal documents give an empty patch (the caller then skips the API call);
- a removed key becomes null, an added or changed scalar is sent, nested maps are diffed key by key and a
  nested map with no change is left out;
- lists are sent whole when they differ in any way (conditions are written whole), never diffed;
- a map replaced by a scalar (or the reverse) is sent whole;
- applying the patch to `old` with RFC 7386 semantics gives `new` (checked for every case).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from trainsmart.kube import merge_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 section 2, as written: the reference the operator's patches must agree with."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("no change", {"phase": "Running", "progress": {"epoch": 1}}, {"phase": "Running", "progress": {"epoch": 1}}, {}),
    ("both empty", {}, {}, {}),
    ("scalar changed", {"phase": "Pending"}, {"phase": "Running"}, {"phase": "Running"}),
    ("key added", {}, {"restarts": 1}, {"restarts": 1}),
    ("key removed", {"phase": "Running", "message": "x"}, {"phase": "Running"}, {"message": None}),
    (
        "nested change only",
        {"progress": {"epoch": 1, "total": 3}, "phase": "Running"},
        {"progress": {"epoch": 2, "total": 3}, "phase": "Running"},
        {"progress": {"epoch": 2}},
    ),
    (
        "nested key removed",
        {"metrics": {"latest": {"loss": 0.5, "acc": 0.9}}},
        {"metrics": {"latest": {"loss": 0.4}}},
        {"metrics": {"latest": {"loss": 0.4, "acc": None}}},
    ),
    ("nested map removed", {"checkpoint": {"epoch": 2}}, {}, {"checkpoint": None}),
    ("nested map added", {}, {"checkpoint": {"epoch": 2}}, {"checkpoint": {"epoch": 2}}),
    (
        "unchanged nested map left out",
        {"a": {"x": 1}, "b": {"y": 2}},
        {"a": {"x": 1}, "b": {"y": 3}},
        {"b": {"y": 3}},
    ),
    (
        "list replaced whole",
        {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "False"}]},
        {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]},
        {"conditions": [{"type": "Created", "status": "True"}, {"type": "Running", "status": "True"}]},
    ),
    ("list shortened", {"history": [1, 2, 3]}, {"history": [2, 3]}, {"history": [2, 3]}),
    ("equal list left out", {"history": [1, 2], "phase": "A"}, {"history": [1, 2], "phase": "B"}, {"phase": "B"}),
    ("map becomes scalar", {"x": {"y": 1}}, {"x": 5}, {"x": 5}),
    ("scalar becomes map", {"x": 5}, {"x": {"y": 1}}, {"x": {"y": 1}}),
    ("map becomes list", {"x": {"y": 1}}, {"x": [1]}, {"x": [1]}),
]


@pytest.mark.parametrize(("old", "new", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_merge_patch_is_the_minimal_rfc7386_patch(
    old: dict[str, Any], new: dict[str, Any], expected: dict[str, Any]
) -> None:
    patch = merge_patch(old, new)
    assert patch == expected
    assert apply_merge_patch(old, patch) == new


def test_merge_patch_does_not_modify_its_inputs() -> None:
    old = {"a": {"b": 1}, "c": [1]}
    new = {"a": {"b": 2}, "c": [2]}
    merge_patch(old, new)
    assert old == {"a": {"b": 1}, "c": [1]}
    assert new == {"a": {"b": 2}, "c": [2]}
