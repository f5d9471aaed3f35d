"""Building the packaged trainer's TrainerReports; sending them is `trainsmart_client`'s job.

The reports are built here as the contract's pydantic models (so a wrong field fails in the trainer's own
tests, not at the endpoint) and handed, in their JSON form, to the client library's sender: the trainer,
the client library and the metrics wrapper share one implementation of the report transport (queueing,
coalescing of progress, retries with backoff, the bounded wait at exit), so the operator cannot tell them
apart. Progress reports during training go through the sender's coalescing slot; the first report, which
says where training runs, and every other kind are queued in order and are never coalesced away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from trainsmart_client.sender import ReportSender
from trainsmart_trainer.contract import (
    BestCheckpointInfo,
    CheckpointInfo,
    DeviceInfo,
    Diagnostic,
    FinalResult,
    JobIdentity,
    ReportKind,
    TrainerReport,
)


def wire_form(report: TrainerReport) -> dict[str, Any]:
    """The report as the endpoint receives it: camelCase JSON types, unset optional fields left out."""
    return report.model_dump(mode="json", by_alias=True, exclude_none=True)


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """JSON has no NaN/inf: non-finite values are left out (the diagnostics say what went wrong)."""
    return {key: float(value) for key, value in metrics.items() if math.isfinite(value)}


class Reporter:
    """Builds TrainerReports for one process and hands them to a sender (None: reporting is off)."""

    def __init__(
        self,
        *,
        identity: JobIdentity,
        device: DeviceInfo,
        total_epochs: int,
        objective_metric: str = "",
        sender: ReportSender | None = None,
    ) -> None:
        self.identity = identity
        self.device = device
        self.total_epochs = total_epochs
        self.objective_metric = objective_metric
        self.sender = sender

    def send(
        self,
        kind: ReportKind,
        *,
        step: int = 0,
        epoch: int = 0,
        metrics: Mapping[str, float] | None = None,
        samples_per_second: float | None = None,
        eta_seconds: float | None = None,
        diagnostics: Sequence[Diagnostic] = (),
        checkpoint: CheckpointInfo | None = None,
        best_checkpoint: BestCheckpointInfo | None = None,
        final: FinalResult | None = None,
        in_order: bool = False,
    ) -> TrainerReport:
        """Build the report (always: tests and the result file use it) and queue it when reporting is on.
        A progress report is coalesced with newer ones unless `in_order` (or it names a checkpoint)."""
        report = TrainerReport(
            job=self.identity,
            kind=kind,
            time=datetime.now(UTC),
            step=step,
            epoch=epoch,
            total_epochs=self.total_epochs,
            metrics=finite_metrics(metrics or {}),
            samples_per_second=samples_per_second
            if samples_per_second is not None and math.isfinite(samples_per_second)
            else None,
            eta_seconds=eta_seconds if eta_seconds is not None and math.isfinite(eta_seconds) else None,
            objective_metric=self.objective_metric,
            diagnostics=list(diagnostics),
            checkpoint=checkpoint,
            best_checkpoint=best_checkpoint,
            final=final,
            device=self.device,
        )
        if self.sender is not None:
            if kind == ReportKind.PROGRESS and not in_order and checkpoint is None:
                self.sender.submit_progress(wire_form(report))
            else:
                self.sender.submit(wire_form(report))
        return report

    def close(self, timeout_s: float = 10.0) -> bool:
        """Deliver what is queued within `timeout_s`; True when everything arrived (or nothing was to send)."""
        return self.sender.close(timeout_s) if self.sender is not None else True
