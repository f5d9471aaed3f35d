"""Read back what a W&B run wrote offline: the records of its `.wandb` file, and an item's name.

The .wandb file is a LevelDB log (google/leveldb doc/log_format.md) after a 7-byte W&B header: 32 KiB
blocks of records (crc32c, length, type; FULL=1, FIRST=2, MIDDLE=3, LAST=4) that carry serialized
`wandb_internal_pb2.Record`s. wandb >= 0.20 ships no Python reader of its own, so this is one.
"""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

_HEADER, _BLOCK, _RECORD_HEADER = 7, 32768, 7


def read_records(path: Path) -> list[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records: list[wandb_internal_pb2.Record] = []
    position, pending = _HEADER, b""
    while position + _RECORD_HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _RECORD_HEADER:
            position += left_in_block  # the block's zero trailer
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _RECORD_HEADER])
        payload = data[position + _RECORD_HEADER : position + _RECORD_HEADER + length]
        position += _RECORD_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending += payload
        if kind in (1, 4):  # FULL or LAST: a whole Record
            records.append(wandb_internal_pb2.Record.FromString(pending))
            pending = b""
    return records


def item_key(item: wandb_internal_pb2.HistoryItem | wandb_internal_pb2.SummaryItem) -> str:
    """A history or summary item's name: `key`, or the path in `nested_key` (what newer wandb writes)."""
    return item.key or "/".join(item.nested_key)
