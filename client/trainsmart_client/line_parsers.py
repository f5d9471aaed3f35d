"""Metrics in a program's output lines: JSON objects, `key=value` pairs, or a regex with named groups.

Training output is messy, and every parser here takes it as it comes: ANSI colour codes are stripped,
carriage-return progress bars (tqdm, Lightning, Keras) end a line just as a newline does (so the bar's last
state is read), bytes that are not UTF-8 are replaced instead of failing, and a line that is not metrics
yields nothing. `LineSplitter` turns a byte stream into lines, holding partial lines across reads and
dropping a line past its size limit rather than growing without bound.

A parsed line is an epoch report when it carries the epoch key with a whole value (`epoch=3`,
`"epoch": 3.0`); a fractional epoch (Hugging Face logs `'epoch': 0.25` between epochs) or none at all is
progress: latest values, no history point.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Pattern

JSON = "json"
KEY_VALUE = "kv"
REGEX = "regex"
FORMATS = (JSON, KEY_VALUE, REGEX)

DEFAULT_EPOCH_KEY = "epoch"
STEP_KEYS = frozenset({"step", "global_step"})
TOTAL_EPOCH_KEYS = frozenset({"total_epochs", "num_epochs", "epochs", "max_epochs"})
TOTAL_STEP_KEYS = frozenset({"total_steps", "max_steps"})
DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
_LITERAL_MAX_CHARS = 64 * 1024
_FLATTEN_DEPTH = 3

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
# Python prints float("nan") bare, which literal_eval refuses: quoted, `_number` reads it back.
_BARE_NON_FINITE = re.compile(r"(?<![\w'\"])(-?(?:nan|inf))(?![\w'\"])")
_NUMBER = r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf(?:inity)?)"
_KEY_VALUE = re.compile(r"(?<![\w./-])([A-Za-z_][\w./-]*)\s*=\s*(" + _NUMBER + r")(?![\w]|\.\d)", re.IGNORECASE)


@dataclass
class ParsedLine:
    """What one line said. `metrics` may hold NaN/inf: the session diagnoses them instead of sending them."""

    metrics: dict[str, float] = field(default_factory=dict)
    epoch: int | None = None
    epoch_fraction: float | None = None
    step: int | None = None
    total_epochs: int | None = None
    total_steps: int | None = None

    @property
    def empty(self) -> bool:
        return not self.metrics and self.epoch is None and self.epoch_fraction is None and self.step is None


LineParser = Callable[[str], Optional[ParsedLine]]


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text) if "\x1b" in text else text


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def assemble(pairs: Mapping[str, Any], epoch_key: str) -> ParsedLine | None:
    """A ParsedLine from name -> value pairs: the epoch, step and totals taken out, numbers kept as metrics."""
    line = ParsedLine()
    epoch_key = epoch_key.lower()
    for raw_name, raw_value in pairs.items():
        value = _number(raw_value)
        if value is None:
            continue
        name = raw_name.lower()
        whole = math.isfinite(value) and value >= 0 and value == int(value)
        if name == epoch_key:
            if whole:
                line.epoch = int(value)
            elif math.isfinite(value) and value >= 0:
                line.epoch_fraction = value
        elif name in STEP_KEYS:
            line.step = int(value) if whole else None
        elif name in TOTAL_EPOCH_KEYS:
            line.total_epochs = int(value) if whole and value >= 1 else None
        elif name in TOTAL_STEP_KEYS:
            line.total_steps = int(value) if whole and value >= 1 else None
        else:
            line.metrics[raw_name] = value
    return None if line.empty else line


def _flatten(data: Mapping[Any, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """`{"val": {"loss": 0.2}}` -> `{"val_loss": 0.2}` (a few levels deep)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = prefix + str(key)
        if isinstance(value, dict) and depth < _FLATTEN_DEPTH:
            flat.update(_flatten(value, name + "_", depth + 1))
        else:
            flat[name] = value
    return flat


def _load_object(text: str) -> dict[Any, Any] | None:
    """The JSON object in `text` (possibly after a log prefix), or a printed Python dict (Hugging Face's
    `{'loss': 0.69, 'epoch': 1.0}`)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    candidate = text[start : end + 1]
    try:
        loaded = json.loads(candidate)
    except ValueError:
        if "'" not in candidate or len(candidate) > _LITERAL_MAX_CHARS:
            return None
        try:
            loaded = ast.literal_eval(_BARE_NON_FINITE.sub(r'"\1"', candidate))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return loaded if isinstance(loaded, dict) else None


def json_parser(epoch_key: str = DEFAULT_EPOCH_KEY) -> LineParser:
    def parse(text: str) -> ParsedLine | None:
        if "{" not in text:
            return None
        loaded = _load_object(strip_ansi(text))
        return assemble(_flatten(loaded), epoch_key) if loaded else None

    return parse


def key_value_parser(epoch_key: str = DEFAULT_EPOCH_KEY) -> LineParser:
    def parse(text: str) -> ParsedLine | None:
        if "=" not in text:
            return None
        pairs = {match.group(1): match.group(2) for match in _KEY_VALUE.finditer(strip_ansi(text))}
        return assemble(pairs, epoch_key) if pairs else None

    return parse


def compile_pattern(pattern: str) -> Pattern[str]:
    """The user's regex; it must have named groups, since group names are the metric names."""
    compiled = re.compile(pattern)
    if not compiled.groupindex:
        raise ValueError(f"the pattern {pattern!r} has no named groups, e.g. (?P<val_loss>[0-9.eE+-]+)")
    return compiled


def regex_parser(pattern: str, epoch_key: str = DEFAULT_EPOCH_KEY) -> LineParser:
    """Every match of `pattern` in a line: each named group is a metric, except the epoch/step keys; a
    `name` and `value` group pair names the metric in the line itself (`(?P<name>\\w+): (?P<value>\\S+)`)."""
    compiled = compile_pattern(pattern)

    def parse(text: str) -> ParsedLine | None:
        pairs: dict[str, Any] = {}
        for match in compiled.finditer(strip_ansi(text)):
            groups = {name: value for name, value in match.groupdict().items() if value is not None}
            if "name" in groups and "value" in groups:
                pairs[groups.pop("name")] = groups.pop("value")
            pairs.update(groups)
        return assemble(pairs, epoch_key) if pairs else None

    return parse


def make_parser(output_format: str, pattern: str | None = None, epoch_key: str = DEFAULT_EPOCH_KEY) -> LineParser:
    if output_format == JSON:
        return json_parser(epoch_key)
    if output_format == KEY_VALUE:
        return key_value_parser(epoch_key)
    if output_format == REGEX:
        if not pattern:
            raise ValueError("--format regex needs --pattern")
        return regex_parser(pattern, epoch_key)
    raise ValueError(f"unknown format {output_format!r}; one of {', '.join(FORMATS)}")


class LineSplitter:
    """Bytes in, complete lines out (without terminators). `\\n`, `\\r\\n` and a lone `\\r` end a line."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._partial = bytearray()
        self._overflow = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            self._hold(chunk)
            return []
        lines: list[bytes] = []
        self._hold(parts[0])
        if not self._overflow:
            lines.append(bytes(self._partial))
        self._partial.clear()
        self._overflow = False
        lines.extend(part for part in parts[1:-1] if len(part) <= self._max)
        self._hold(parts[-1])
        return lines

    def _hold(self, data: bytes) -> None:
        if self._overflow:
            return
        if len(self._partial) + len(data) > self._max:
            self._partial.clear()
            self._overflow = True
        else:
            self._partial += data

    def flush(self) -> list[bytes]:
        """The last line when the stream ended without a terminator."""
        line = bytes(self._partial) if self._partial and not self._overflow else None
        self._partial.clear()
        self._overflow = False
        return [line] if line is not None else []


def decode(line: bytes) -> str:
    return line.decode("utf-8", "replace")
