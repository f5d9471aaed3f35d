"""The client's background sender: what a chatty or failing run costs the operator and the run.

Pins:
- a burst of progress reports is coalesced: the newest is sent, at most one per interval, never thousands;
- epoch, diagnostic and final reports all arrive, in order; a pending progress report older than a newer
  epoch report is dropped (sent after it, it would move the status's progress backwards);
- when full, the oldest non-final report goes first; the final report is never dropped;
- a refused report (401/403/400) is dropped, not retried;
- an endpoint that never answered makes `close` give up at once instead of delaying the end of training;
- an endpoint that was reached but fails for a moment is retried until the report arrives;
- a report that cannot be JSON (NaN slipped in) is dropped, not retried forever.
"""

from __future__ import annotations

import math
import time
from typing import Any

from support.client_reports import PostRecorder
from trainsmart_client.sender import ReportSender

URL = "http://127.0.0.1:9/v1/reports"


def report(kind: str, epoch: int = 0, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "epoch": epoch, **extra}


def test_a_burst_of_progress_reports_is_coalesced(recorder: PostRecorder) -> None:
    sender = ReportSender(URL, "t", post=recorder, progress_interval_s=60.0)
    for step in range(5000):
        sender.submit_progress(report("progress", step=step))
    assert sender.close(5)
    assert 1 <= len(recorder.bodies) <= 2
    assert recorder.bodies[-1]["step"] == 4999


def test_ordered_reports_all_arrive_in_order_and_stale_progress_is_dropped(recorder: PostRecorder) -> None:
    sender = ReportSender(URL, "t", post=recorder, progress_interval_s=60.0)
    sender.submit_progress(report("progress", step=1))
    time.sleep(0.2)  # the first progress report goes out; the next waits for the interval
    sender.submit_progress(report("progress", step=2))
    for epoch in range(1, 6):
        sender.submit(report("epoch", epoch))
    sender.submit(report("final", 5))
    assert sender.close(5)
    assert [(body["kind"], body.get("step", body["epoch"])) for body in recorder.bodies] == [
        ("progress", 1),
        ("epoch", 1),
        ("epoch", 2),
        ("epoch", 3),
        ("epoch", 4),
        ("epoch", 5),
        ("final", 5),
    ]


def test_when_full_the_oldest_non_final_report_goes_and_the_final_one_stays() -> None:
    recorder = PostRecorder(fail=True)
    sender = ReportSender(URL, "t", post=recorder, capacity=3, backoff_initial_s=30.0)
    sender.submit(report("final", 0))
    for epoch in range(1, 6):
        sender.submit(report("epoch", epoch))
    assert sender.pending() == 3
    assert sender.dropped == 3
    recorder.fail = False
    assert sender.close(5)
    assert [(body["kind"], body["epoch"]) for body in recorder.bodies] == [("final", 0), ("epoch", 4), ("epoch", 5)]


def test_a_refused_report_is_dropped_not_retried() -> None:
    recorder = PostRecorder(refuse=True)
    sender = ReportSender(URL, "wrong", post=recorder)
    sender.submit(report("epoch", 1))
    sender.submit(report("epoch", 2))
    assert sender.close(5)
    assert recorder.calls == 2


def test_an_endpoint_never_reached_does_not_delay_the_end() -> None:
    recorder = PostRecorder(fail=True)
    sender = ReportSender(URL, "t", post=recorder, backoff_initial_s=0.05)
    for epoch in range(1, 4):
        sender.submit(report("epoch", epoch))
    sender.submit(report("final", 3))
    time.sleep(0.3)
    started = time.monotonic()
    assert not sender.close(30)
    assert time.monotonic() - started < 2.0


def test_an_endpoint_down_for_a_moment_is_retried_until_the_report_arrives() -> None:
    recorder = PostRecorder()
    sender = ReportSender(URL, "t", post=recorder, backoff_initial_s=0.05, backoff_max_s=0.1)
    sender.submit(report("epoch", 1))
    deadline = time.monotonic() + 5
    while not recorder.bodies and time.monotonic() < deadline:
        time.sleep(0.01)
    recorder.fail = True
    sender.submit(report("epoch", 2))
    time.sleep(0.5)
    assert recorder.calls > 2  # retried while down
    recorder.fail = False
    assert sender.close(5)
    assert [body["epoch"] for body in recorder.bodies] == [1, 2]


def test_a_report_that_cannot_be_json_is_dropped(recorder: PostRecorder) -> None:
    sender = ReportSender(URL, "t", post=recorder)
    sender.submit(report("epoch", 1, metrics={"loss": math.nan}))
    sender.submit(report("epoch", 2))
    assert sender.close(5)
    assert [body["epoch"] for body in recorder.bodies] == [2]
