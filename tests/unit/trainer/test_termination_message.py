"""The trainer's termination message: the final result as compact JSON the operator can fold into status.

Pins:
- the final result carries the objective's newest values per epoch (at most 64, finite, with epochs);
- the message stays valid JSON within 4096 bytes: history shrinks first (newest kept), the test metrics
  survive that, and it parses back with the contract's schema, as the operator parses it;
- writing it never fails the run: an unwritable path is logged and skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from trainsmart_trainer import contract, results
from trainsmart_trainer.contract import ExitCode, FinalResult
from trainsmart_trainer.objective import BestTracker


def result(epochs: int, metrics: dict[str, float] | None = None) -> FinalResult:
    history = [{"epoch": float(e), "val_accuracy": 0.5 + e / 1000, "val_loss": 1.0 / e} for e in range(1, epochs + 1)]
    history.insert(0, {"epoch": 0.0, "val_accuracy": 0.1})  # not an epoch: skipped
    history.append({"epoch": float(epochs + 1), "val_loss": 0.1})  # no objective: skipped
    history.append({"epoch": float(epochs + 2), "val_accuracy": float("nan")})  # not finite: skipped
    return results.final_result(
        ExitCode.SUCCESS,
        "",
        epochs_completed=epochs,
        objective_metric="val_accuracy",
        best=BestTracker(best=0.9, best_epoch=epochs),
        metrics=metrics or {"val_accuracy": 0.9, "test_accuracy": 0.88},
        duration_seconds=1.0,
        history=history,
    )


def test_final_result_keeps_the_newest_finite_objective_values() -> None:
    final = result(100)
    assert len(final.objective_history) == contract.FINAL_HISTORY_MAX_ITEMS
    assert [p.epoch for p in final.objective_history] == list(range(37, 101))
    assert final.objective_history[-1].value == pytest.approx(0.6)


@pytest.mark.parametrize("epochs", [1, 10, 64, 1000])
@pytest.mark.parametrize("metric_count", [2, 60])
def test_message_is_valid_json_within_the_limit(epochs: int, metric_count: int) -> None:
    metrics = {f"train_metric_with_a_long_name_{i:03d}": 0.123456789 for i in range(metric_count)}
    final = result(epochs, {**metrics, "val_accuracy": 0.9, "test_accuracy": 0.88})
    text = results.termination_message(final)
    assert len(text.encode()) <= contract.TERMINATION_MESSAGE_MAX_BYTES
    parsed = FinalResult.model_validate_json(text)
    assert parsed.metrics["val_accuracy"] == 0.9
    if parsed.objective_history:
        assert parsed.objective_history[-1].epoch == epochs  # the newest kept
    if metric_count == 2:
        assert parsed.metrics["test_accuracy"] == 0.88
        assert parsed.objective_history == final.objective_history  # it all fits


def test_history_shrinks_before_metrics_are_dropped() -> None:
    final = result(64)
    full = results.termination_message(final, limit=100_000)
    limit = len(full.encode()) - 200
    parsed = json.loads(results.termination_message(final, limit=limit))
    assert "test_accuracy" in parsed["metrics"]
    assert 0 < len(parsed["objectiveHistory"]) < 64
    assert parsed["objectiveHistory"][-1]["epoch"] == 64


def test_unwritable_path_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        results.write_termination_message(tmp_path / "missing-dir" / "termination-log", "{}")
        results.write_termination_message(tmp_path, "{}")  # a directory
        results.write_termination_message(None, "{}")
    assert caplog.text.count("cannot write the termination message") == 2
