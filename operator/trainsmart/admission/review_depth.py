"""AdmissionReviews nested too deeply for Python's JSON decoder: refused with a field path, not a 500.

The apiserver stores objects nested up to 10,000 levels, but Python's `json` decoder recurses once per level
and raises RecursionError near 1,000 (the interpreter's recursion limit); Kopf's webhook server then
answers 500 and the user reads "failed calling webhook" with no hint of what is wrong (issue 13's fuzz
suite). Raising the recursion limit only moves the cliff, and every later step (Kopf's body wrappers,
pydantic) would need the same. So a review that cannot be decoded is scanned here without recursion, up
to the first place nested deeper than the admission rules allow, and refused with that path, in the words
`admission.rules` uses for objects deep enough to decode.

The scan reads only what it needs (keys, brackets, commas, strings) and stops at the first place too
deep, so it costs a fraction of a decode. The review's uid and apiVersion, which the answer must echo,
are read by pattern: the apiserver (Go's encoder, fields in declaration order) writes `apiVersion`
before `request`, and `uid` first in `request`, so the first `"uid"` of the text is the review's.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from trainsmart.admission.rules import MAX_SPEC_DEPTH, too_deep_message

OBJECT_KEYS: Final = ("object", "oldObject")
_UID_RE: Final = re.compile(r'"uid"\s*:\s*"([^"\\]*)"')
_API_VERSION_RE: Final = re.compile(r'"apiVersion"\s*:\s*"(admission\.k8s\.io/v1(?:beta1)?)"')
_WHITESPACE: Final = " \t\r\n"

Path = tuple[str | int, ...]


def may_be_too_deep(text: str, levels: int = 500) -> bool:
    """A cheap necessary condition for nesting `levels` deep (brackets counted at C speed)."""
    return text.count("{") + text.count("[") >= levels


def _string_end(text: str, start: int) -> int:
    """Index of the quote closing the string that opens at `start`."""
    end = start + 1
    while True:
        end = text.index('"', end)
        backslashes = 0
        while text[end - 1 - backslashes] == "\\":
            backslashes += 1
        if backslashes % 2 == 0:
            return end
        end += 1


def path_deeper_than(text: str, limit: int) -> Path | None:
    """The keys and indices leading to the first object or list opened `limit` levels below the top of
    the JSON `text` (None: nothing that deep, or not JSON). Iterative, and stops there."""
    stack: list[list[Any]] = []  # per open container: [kind, key or index]
    index, size = 0, len(text)
    try:
        while index < size:
            char = text[index]
            if char == '"':
                end = _string_end(text, index)
                if stack and stack[-1][0] == "{":
                    after = end + 1
                    while after < size and text[after] in _WHITESPACE:
                        after += 1
                    if after < size and text[after] == ":":
                        stack[-1][1] = json.loads(text[index : end + 1])
                index = end + 1
                continue
            if char in "{[":
                stack.append([char, 0 if char == "[" else None])
                if len(stack) > limit:
                    return tuple(entry[1] for entry in stack[:-1])
            elif char in "}]":
                stack.pop()
            elif char == "," and stack and stack[-1][0] == "[":
                stack[-1][1] += 1
            index += 1
    except (ValueError, IndexError):
        return None
    return None


def too_deep_denial(text: str) -> dict[str, Any] | None:
    """The AdmissionReview answer refusing a review whose object is nested deeper than the admission
    rules allow (None: it is not, or the review's uid cannot be found)."""
    uid = _UID_RE.search(text)
    if uid is None:
        return None
    # review -> request -> object -> spec -> MAX_SPEC_DEPTH levels below spec.
    path = path_deeper_than(text, 4 + MAX_SPEC_DEPTH)
    if path is None or len(path) < 3 or path[0] != "request" or path[1] not in OBJECT_KEYS:
        return None
    field_path = path[2:]
    prefix = str(field_path[0])
    message = too_deep_message(prefix, field_path[1:], MAX_SPEC_DEPTH)
    version = _API_VERSION_RE.search(text)
    return {
        "apiVersion": version.group(1) if version else "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid.group(1), "allowed": False, "status": {"code": 422, "message": message}},
    }
