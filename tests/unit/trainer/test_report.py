"""The packaged trainer's reports, the result file and the termination message.

Sending is `trainsmart_client`'s sender (its tests, in tests/unit/client/test_sender_delivery.py, hold
what this file pinned about the trainer's former sender); here:

Pins:
- the Reporter hands the sender exactly the JSON the contract's model serialises to (camelCase, unset
  fields left out, non-finite values dropped), so the operator sees the same reports as before;
- progress reports during training are coalesced by the sender; the first one (the device) and reports
  naming a checkpoint are queued in order, and every other kind is queued in order;
- the termination message is valid JSON within 4 KiB whatever the size of the result;
- the result file is written atomically; final results map exit codes and drop non-finite values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainsmart_trainer import results
from trainsmart_trainer.contract import (
    CheckpointInfo,
    DeviceInfo,
    Diagnostic,
    DiagnosticType,
    EpochValue,
    FinalResult,
    FinalStatus,
    JobIdentity,
    ReportKind,
    Severity,
)
from trainsmart_trainer.report import Reporter
from trainsmart_trainer.results import termination_message

DEVICE = DeviceInfo(type="cpu", simulated_gpus=True, gpus=2, name="x86_64")
JOB = JobIdentity(namespace="ns", name="job", rank=0, world_size=2)


class SpySender:
    """Stands in for the client's ReportSender: records which queue each report went to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def submit(self, report: dict[str, Any]) -> None:
        self.calls.append(("ordered", report))

    def submit_progress(self, report: dict[str, Any]) -> None:
        self.calls.append(("coalesced", report))

    def close(self, timeout_s: float = 10.0) -> bool:
        return True


def test_the_sender_gets_exactly_the_contracts_json() -> None:
    spy = SpySender()
    reporter = Reporter(identity=JOB, device=DEVICE, total_epochs=5, objective_metric="val_loss", sender=spy)  # type: ignore[arg-type]
    saved = CheckpointInfo(path="/ckpt/epoch-3.pt", epoch=3, time=datetime.now(UTC))
    finding = Diagnostic(type=DiagnosticType.OVERFITTING, severity=Severity.WARNING, message="m", epoch=3)
    final = FinalResult(
        status=FinalStatus.SUCCEEDED,
        exit_code=0,
        objective_metric="val_loss",
        metrics={"val_loss": 0.25},
        objective_history=[EpochValue(epoch=3, value=0.25)],
    )
    built = reporter.send(
        ReportKind.FINAL,
        step=30,
        epoch=3,
        metrics={"val_loss": 0.25, "broken": float("inf")},
        samples_per_second=float("nan"),
        eta_seconds=1.5,
        diagnostics=[finding],
        checkpoint=saved,
        final=final,
    )
    ((queue, sent),) = spy.calls
    assert queue == "ordered"
    assert sent == json.loads(built.model_dump_json(by_alias=True, exclude_none=True))
    assert sent["metrics"] == {"val_loss": 0.25} and "samplesPerSecond" not in sent
    assert sent["checkpoint"]["path"] == "/ckpt/epoch-3.pt" and sent["final"]["objectiveHistory"][0]["epoch"] == 3
    assert sent["job"] == {"namespace": "ns", "name": "job", "rank": 0, "worldSize": 2}
    assert sent["device"]["simulatedGpus"] is True and sent["objectiveMetric"] == "val_loss"


def test_only_routine_progress_is_coalesced() -> None:
    spy = SpySender()
    reporter = Reporter(identity=JOB, device=DEVICE, total_epochs=5, sender=spy)  # type: ignore[arg-type]
    saved = CheckpointInfo(path="/ckpt/p.pt", epoch=1, time=datetime.now(UTC))
    reporter.send(ReportKind.PROGRESS, in_order=True)
    reporter.send(ReportKind.PROGRESS, step=10)
    reporter.send(ReportKind.PROGRESS, step=11, checkpoint=saved)
    reporter.send(ReportKind.EPOCH, epoch=1)
    reporter.send(ReportKind.DIAGNOSTIC, epoch=1)
    assert [queue for queue, _ in spy.calls] == ["ordered", "coalesced", "ordered", "ordered", "ordered"]
    assert Reporter(identity=JOB, device=DEVICE, total_epochs=5).send(ReportKind.EPOCH, epoch=1).epoch == 1


def test_termination_message_stays_valid_json_within_the_limit() -> None:
    metrics = {f"metric_{i:04d}": float(i) for i in range(500)}
    final = FinalResult(
        status=FinalStatus.FAILED, exit_code=11, reason="x" * 2000, metrics=metrics, objective_metric="metric_0001"
    )
    text = termination_message(final, limit=1024)
    assert len(text.encode()) <= 1024
    data = json.loads(text)
    assert data["exitCode"] == 11 and data["metrics"] == {"metric_0001": 1.0}
    small = FinalResult(status=FinalStatus.SUCCEEDED, exit_code=0, metrics={"a": 1.0})
    assert json.loads(termination_message(small))["metrics"] == {"a": 1.0}


def test_result_file_is_written_atomically(tmp_path: Path) -> None:
    final = FinalResult(status=FinalStatus.SUCCEEDED, exit_code=0, epochs_completed=3)
    path = tmp_path / "out" / "result.json"
    assert results.write_result_file(path, results.result_document(final, {"name": "job"}))
    assert json.loads(path.read_text())["final"]["epochsCompleted"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_final_result_maps_exit_codes_and_drops_non_finite_values() -> None:
    from trainsmart_trainer.contract import ExitCode
    from trainsmart_trainer.objective import BestTracker

    best = BestTracker(best=0.25, best_epoch=3)
    final = results.final_result(
        ExitCode.EARLY_STOPPED,
        "",
        epochs_completed=5,
        objective_metric="val_loss",
        best=best,
        metrics={"val_loss": 0.3, "broken": float("inf")},
        duration_seconds=12.0,
    )
    assert (final.status, final.exit_code, final.best_value, final.best_epoch) == (
        FinalStatus.EARLY_STOPPED, 12, 0.25, 3
    )  # fmt: skip
    assert final.metrics == {"val_loss": 0.3}
    failed = results.final_result(
        ExitCode.RETRYABLE_FAILURE,
        "x" * 5000,
        epochs_completed=0,
        objective_metric="",
        best=BestTracker(best=float("nan"), best_epoch=1),
        metrics={},
        duration_seconds=-1,
    )
    assert failed.status == FinalStatus.FAILED and len(failed.reason) == 2048
    assert failed.best_value is None and failed.best_epoch is None and failed.duration_seconds == 0
