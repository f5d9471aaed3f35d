"""Scalars from TensorBoard event files, read with the standard library only.

An event file (`events.out.tfevents.*`) is a TFRecord stream: each record is an 8-byte little-endian
length, a masked CRC-32C of those 8 bytes, the payload, and a masked CRC-32C of the payload. The payload is
a serialized `Event` protobuf; the fields read here (field numbers from TensorFlow's public .proto files):

    Event:            1 wall_time (double), 2 step (int64), 5 summary (Summary)
    Summary:          1 value (repeated Value)
    Summary.Value:    1 tag (string), 2 simple_value (float), 8 tensor (TensorProto), 9 metadata
    SummaryMetadata:  1 plugin_data -> PluginData: 1 plugin_name (string)
    TensorProto:      1 dtype, 2 tensor_shape, 4 tensor_content (raw bytes), 5 float_val, 6 double_val,
                      7 int_val, 10 int64_val, 13 half_val (float16/bfloat16 bits)
    TensorShapeProto: 2 dim (repeated) -> Dim: 1 size

Writers store a scalar either as `simple_value` (TF1 style, PyTorch's SummaryWriter by default) or as a
one-element tensor (TF2, `add_scalar(new_style=True)`); both are read. Everything else (histograms,
images, text) is skipped. Files are polled while the writer appends: a record that is not complete yet
is read on the next poll.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

_HEADER = 12
_FOOTER = 4
_VERIFY_PAYLOAD_MAX = 64 * 1024
"""Payloads above this (images, audio) are not CRC-checked: pure-Python CRC-32C is slow, and such records
never hold a scalar."""
_READ_MAX = 16 * 1024 * 1024

_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_BFLOAT16, _DT_INT64, _DT_HALF = 1, 2, 3, 14, 9, 19
_RAW_FORMATS = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_INT32: "<i", _DT_INT64: "<q", _DT_HALF: "<e"}


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masking of CRC-32C (so a CRC of data that contains CRCs stays well distributed)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---- protobuf wire format ------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def fields(data: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a message: ints for varints, bytes for everything else."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        value: object
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire_type == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire_type == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, wire_type, value


def _packed_varints(data: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


def _repeated(wire_type: int, value: object, fmt: str) -> list[float]:
    """A repeated numeric field's values, packed (one length-delimited blob) or not."""
    assert isinstance(value, (bytes, int))
    if isinstance(value, int):
        return [float(_signed64(value))]
    if wire_type == 2 and fmt == "varint":
        return [float(_signed64(item)) for item in _packed_varints(value)]
    if fmt == "varint":
        return []
    size = struct.calcsize(fmt)
    return [struct.unpack(fmt, value[i : i + size])[0] for i in range(0, len(value) - size + 1, size)]


def _half_bits(bits: int, dtype: int) -> float:
    if dtype == _DT_BFLOAT16:
        return float(struct.unpack("<f", struct.pack("<I", (bits & 0xFFFF) << 16))[0])
    return float(struct.unpack("<e", struct.pack("<H", bits & 0xFFFF))[0])


def tensor_scalar(data: bytes) -> float | None:
    """The value of a one-element numeric TensorProto, None for anything else (histograms, text...)."""
    dtype, elements = 0, 1
    values: list[float] = []
    content = b""
    for number, wire_type, value in fields(data):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2 and isinstance(value, bytes):
            for dim_number, _, dim in fields(value):
                if dim_number == 2 and isinstance(dim, bytes):
                    size = next((int(v) for n, _, v in fields(dim) if n == 1 and isinstance(v, int)), 0)
                    elements *= size
        elif number == 4 and isinstance(value, bytes):
            content = value
        elif number == 5:
            values += _repeated(wire_type, value, "<f")
        elif number == 6:
            values += _repeated(wire_type, value, "<d")
        elif number in (7, 10):
            values += _repeated(wire_type, value, "varint")
        elif number == 13:
            values += [_half_bits(int(bits), dtype) for bits in _repeated(wire_type, value, "varint")]
    if elements != 1 or dtype not in (*_RAW_FORMATS, _DT_BFLOAT16):
        return None
    if content:
        if dtype == _DT_BFLOAT16:
            return _half_bits(struct.unpack("<H", content[:2])[0], dtype) if len(content) == 2 else None
        fmt = _RAW_FORMATS[dtype]
        return float(struct.unpack(fmt, content)[0]) if len(content) == struct.calcsize(fmt) else None
    return float(values[0]) if len(values) == 1 else None


def _plugin_name(metadata: bytes) -> str:
    for number, _, value in fields(metadata):
        if number == 1 and isinstance(value, bytes):
            for inner, _, name in fields(value):
                if inner == 1 and isinstance(name, bytes):
                    return name.decode("utf-8", "replace")
    return ""


@dataclass(frozen=True)
class Scalar:
    step: int
    wall_time: float
    tag: str
    value: float


def event_scalars(payload: bytes, plugins: dict[str, str]) -> list[Scalar]:
    """The scalars in one serialized Event. `plugins` remembers each tag's plugin: writers put metadata on
    a tag's first value only."""
    step, wall_time = 0, 0.0
    summaries: list[bytes] = []
    for number, _, value in fields(payload):
        if number == 1 and isinstance(value, bytes) and len(value) == 8:
            wall_time = struct.unpack("<d", value)[0]
        elif number == 2 and isinstance(value, int):
            step = _signed64(value)
        elif number == 5 and isinstance(value, bytes):
            summaries.append(value)
    found = []
    for summary in summaries:
        for number, _, value in fields(summary):
            if number != 1 or not isinstance(value, bytes):
                continue
            tag, scalar, tensor = "", None, None
            for inner, _, item in fields(value):
                if inner == 1 and isinstance(item, bytes):
                    tag = item.decode("utf-8", "replace")
                elif inner == 2 and isinstance(item, bytes) and len(item) == 4:
                    scalar = float(struct.unpack("<f", item)[0])
                elif inner == 8 and isinstance(item, bytes):
                    tensor = item
                elif inner == 9 and isinstance(item, bytes):
                    plugins[tag] = _plugin_name(item)
            if scalar is None and tensor is not None and plugins.get(tag, "scalars") in ("scalars", ""):
                scalar = tensor_scalar(tensor)
            if tag and scalar is not None:
                found.append(Scalar(step, wall_time, tag, scalar))
    return found


class EventFileReader:
    """Reads one event file incrementally: each `read()` returns the scalars appended since the last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._plugins: dict[str, str] = {}
        self._broken = False

    def read(self) -> list[Scalar]:
        if self._broken:
            return []
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read(_READ_MAX)
        except OSError:
            return []
        scalars: list[Scalar] = []
        pos = 0
        while len(data) - pos >= _HEADER:
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            if struct.unpack("<I", data[pos + 8 : pos + 12])[0] != masked_crc(header):
                log.warning("%s: corrupt record header at byte %d; not read further", self.path, self._offset + pos)
                self._broken = True
                break
            end = pos + _HEADER + length + _FOOTER
            if end > len(data):
                break  # the writer has not finished this record yet
            payload = data[pos + _HEADER : pos + _HEADER + length]
            pos = end
            if length <= _VERIFY_PAYLOAD_MAX and struct.unpack("<I", data[end - 4 : end])[0] != masked_crc(payload):
                continue
            try:
                scalars += event_scalars(payload, self._plugins)
            except (ValueError, IndexError, struct.error):
                continue  # not an Event we understand; the next record may be
        self._offset += pos
        return scalars


class EventDirectoryWatcher:
    """All event files under a directory (recursively, as writers create per-run subdirectories)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._readers: dict[Path, EventFileReader] = {}

    def poll(self) -> list[Scalar]:
        if self.directory.is_dir():
            for path in sorted(self.directory.rglob("*tfevents*")):
                if path.is_file() and path not in self._readers:
                    self._readers[path] = EventFileReader(path)
        scalars: list[Scalar] = []
        for reader in self._readers.values():
            scalars += reader.read()
        return scalars
