"""The report inbox between the endpoint and the reconcile.

Pins:
- reports come out in arrival order, per job;
- reports put back after a failed status patch go ahead of those that arrived meanwhile, so the newest
  report (whose progress and latest metrics the fold keeps) is still folded last;
- the bound drops the oldest report first, also when putting back.
"""

from __future__ import annotations

from typing import Any

from trainsmart.report_endpoint import JobKey, ReportInbox
from trainsmart_trainer.contract import TrainerReport

JOB = JobKey("ml", "digits")


def epoch_report(epoch: int) -> TrainerReport:
    body: dict[str, Any] = {
        "kind": "epoch",
        "time": "2025-01-01T12:00:00+00:00",
        "epoch": epoch,
        "totalEpochs": 3,
        "device": {"type": "cpu"},
        "job": {"namespace": JOB.namespace, "name": JOB.name},
    }
    return TrainerReport.model_validate(body)


def test_reports_put_back_go_ahead_of_those_that_arrived_since() -> None:
    inbox = ReportInbox()
    inbox.put(JOB, epoch_report(1))
    taken = inbox.take(JOB)
    inbox.put(JOB, epoch_report(2))
    inbox.put(JOB, epoch_report(3))
    inbox.put_back(JOB, taken)
    assert [report.epoch for report in inbox.take(JOB)] == [1, 2, 3]
    assert inbox.take(JOB) == []


def test_the_bound_drops_the_oldest_report_also_when_putting_back() -> None:
    inbox = ReportInbox(capacity=2)
    inbox.put(JOB, epoch_report(1))
    inbox.put(JOB, epoch_report(2))
    taken = inbox.take(JOB)
    inbox.put(JOB, epoch_report(3))
    inbox.put_back(JOB, taken)
    assert [report.epoch for report in inbox.take(JOB)] == [2, 3]
