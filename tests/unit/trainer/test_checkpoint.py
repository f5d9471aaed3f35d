"""Checkpoint files: atomic writes, ordering, retention, corrupt files, RNG round trip.

Pins:
- names order by (epochs done, steps into the next epoch); temp files are never listed;
- a save leaves no temp file behind and keeps only the newest `keep`;
- resume takes the newest file that loads; truncated, garbage and foreign files are skipped with a warning;
- a failing write leaves the previous checkpoints untouched and no temp file;
- torch, numpy and Python RNG states survive a save/load (loaded with weights_only=True).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from trainsmart_trainer import checkpoint
from trainsmart_trainer.checkpoint import CheckpointName


def state(epoch: int, step: int = 0) -> dict[str, object]:
    return {
        "epoch": epoch,
        "step_in_epoch": step,
        "global_step": epoch * 10 + step,
        "model": {"w": torch.full((2, 2), float(epoch))},
        "optimizer": {"state": {}, "param_groups": []},
    }


def test_names_order_by_epoch_then_step() -> None:
    names = [CheckpointName(2, 0), CheckpointName(1, 30), CheckpointName(10, 0), CheckpointName(2, 5)]
    parsed = [CheckpointName.parse(n.filename) for n in names]
    assert parsed == names
    assert sorted(names)[-1] == CheckpointName(10, 0)
    assert CheckpointName.parse(".checkpoint-tmp-abc") is None
    assert CheckpointName.parse("checkpoint-1-2.pt") is None


def test_save_keeps_the_newest_and_leaves_no_temp_files(tmp_path: Path) -> None:
    for epoch in range(1, 6):
        checkpoint.save(tmp_path, state(epoch), keep=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [CheckpointName(e, 0).filename for e in (3, 4, 5)]
    path, loaded = checkpoint.load_newest_valid(tmp_path) or (None, {})
    assert path is not None and path.name == CheckpointName(5, 0).filename
    assert loaded["epoch"] == 5 and torch.equal(loaded["model"]["w"], torch.full((2, 2), 5.0))


def test_mid_epoch_checkpoint_is_newer_than_its_epoch(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, state(2), keep=3)
    checkpoint.save(tmp_path, state(2, step=7), keep=3)
    found = checkpoint.load_newest_valid(tmp_path)
    assert found is not None and found[1]["step_in_epoch"] == 7


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    checkpoint.save(tmp_path, state(1), keep=5)
    newest = checkpoint.save(tmp_path, state(2), keep=5)
    if damage == "truncate":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "garbage":
        newest.write_bytes(b"\x00not a zip file at all")
    else:
        torch.save({"something": "else"}, newest)
    with caplog.at_level(logging.WARNING, logger="trainsmart_trainer.checkpoint"):
        found = checkpoint.load_newest_valid(tmp_path)
    assert found is not None and found[1]["epoch"] == 1
    assert "skipping corrupt or incomplete checkpoint" in caplog.text and newest.name in caplog.text


def test_no_valid_checkpoint_means_none(tmp_path: Path) -> None:
    assert checkpoint.load_newest_valid(tmp_path / "absent") is None
    (tmp_path / CheckpointName(1, 0).filename).write_bytes(b"")
    assert checkpoint.load_newest_valid(tmp_path) is None


def test_a_failed_write_keeps_the_old_checkpoint_and_no_temp_file(tmp_path: Path) -> None:
    checkpoint.save(tmp_path, state(1), keep=3)

    def explode(_handle: object) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.atomic_write(tmp_path / CheckpointName(2, 0).filename, explode)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CheckpointName(1, 0).filename]


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".checkpoint-tmp-123").write_bytes(b"half")
    checkpoint.save(tmp_path, state(1), keep=3)
    checkpoint.remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [CheckpointName(1, 0).filename]


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    captured = checkpoint.capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.save(tmp_path, {**state(1), "rng": captured}, keep=1)
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    found = checkpoint.load_newest_valid(tmp_path)
    assert found is not None
    checkpoint.restore_rng(found[1]["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]
