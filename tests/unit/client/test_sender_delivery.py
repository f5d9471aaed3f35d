"""The one report sender every trainer-side reporter uses (the packaged trainer, the client library, the
wrapper): delivery order, eviction and giving up. These pinned the packaged trainer's own sender before it
was replaced by this one; the assertions are the same.

Pins:
- queue eviction: the oldest progress report first, then the oldest epoch/diagnostic one; a final report
  is never evicted;
- backoff grows with the attempts and stays within its cap (with jitter);
- reports arrive in order with the bearer token after transient failures (connection refused, 503);
- a refused report (4xx) is dropped, not retried, and no token means no Authorization header;
- submitting never blocks while the endpoint hangs: a flood of progress reports is dropped, not queued;
- `close` with an endpoint that never answered returns within about one attempt, reporting non-delivery,
  after one try for the final report;
- a real local HTTP server receives the packaged trainer's reports as valid TrainerReport JSON with the
  token (non-finite metrics left out).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainsmart_client.sender import RejectedError, ReportSender, backoff_delay, enqueue
from trainsmart_trainer.contract import DeviceInfo, FinalResult, FinalStatus, JobIdentity, ReportKind, TrainerReport
from trainsmart_trainer.report import Reporter, wire_form

DEVICE = DeviceInfo(type="cpu")
JOB = JobIdentity(namespace="ns", name="job")


def make(kind: ReportKind, epoch: int = 0) -> dict[str, Any]:
    final = FinalResult(status=FinalStatus.SUCCEEDED, exit_code=0) if kind == ReportKind.FINAL else None
    report = TrainerReport(
        job=JOB, kind=kind, time=datetime.now(UTC), epoch=epoch, total_epochs=5, device=DEVICE, final=final
    )
    return wire_form(report)


def test_eviction_drops_progress_first_and_never_the_final() -> None:
    queue: deque[dict[str, Any]] = deque()
    for item in (make(ReportKind.PROGRESS, 1), make(ReportKind.EPOCH, 1), make(ReportKind.PROGRESS, 2)):
        assert enqueue(queue, item, capacity=3) is None
    evicted = enqueue(queue, make(ReportKind.EPOCH, 2), capacity=3)
    assert evicted is not None and (evicted["kind"], evicted["epoch"]) == ("progress", 1)
    evicted = enqueue(queue, make(ReportKind.DIAGNOSTIC, 2), capacity=3)
    assert evicted is not None and evicted["kind"] == "progress"
    evicted = enqueue(queue, make(ReportKind.FINAL, 3), capacity=3)
    assert evicted is not None and (evicted["kind"], evicted["epoch"]) == ("epoch", 1)
    for _ in range(5):
        enqueue(queue, make(ReportKind.FINAL, 3), capacity=1)
    assert all(item["kind"] == "final" for item in queue) and len(queue) == 6


def test_backoff_grows_and_is_capped() -> None:
    delays = [backoff_delay(attempt, 0.5, 4.0) for attempt in range(1, 8)]
    assert all(0.25 <= delay <= 4.0 for delay in delays)
    assert backoff_delay(7, 0.5, 4.0) >= 2.0


class Recorder:
    """A post function that fails as scripted, then records."""

    def __init__(self, failures: list[Exception] | None = None, block: threading.Event | None = None) -> None:
        self.failures = failures or []
        self.block = block
        self.bodies: list[dict[str, object]] = []
        self.headers: list[dict[str, str]] = []
        self.calls = 0

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        self.calls += 1
        if self.block is not None:
            self.block.wait(timeout)
        if self.failures:
            raise self.failures.pop(0)
        self.bodies.append(json.loads(body))
        self.headers.append(headers)


def test_reports_arrive_in_order_with_the_token_after_transient_failures() -> None:
    post = Recorder(failures=[ConnectionRefusedError("down"), OSError("503")])
    sender = ReportSender("http://op/reports", "secret", post=post, backoff_initial_s=0.01, backoff_max_s=0.02)
    for epoch in (1, 2):
        sender.submit(make(ReportKind.EPOCH, epoch))
    sender.submit(make(ReportKind.FINAL, 2))
    deadline = time.monotonic() + 10
    while len(post.bodies) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sender.close(timeout_s=5)
    assert [(b["kind"], b["epoch"]) for b in post.bodies] == [("epoch", 1), ("epoch", 2), ("final", 2)]
    assert post.headers[0]["Authorization"] == "Bearer secret"
    assert sender.failures == 2 and sender.sent == 3


def test_rejected_reports_are_dropped_not_retried() -> None:
    post = Recorder(failures=[RejectedError("HTTP 422")])
    sender = ReportSender("http://op/reports", None, post=post, backoff_initial_s=0.01)
    sender.submit(make(ReportKind.EPOCH, 1))
    sender.submit(make(ReportKind.FINAL, 1))
    assert sender.close(timeout_s=5)
    assert [b["kind"] for b in post.bodies] == ["final"] and "Authorization" not in post.headers[0]


def test_submit_never_blocks_on_a_hanging_endpoint() -> None:
    hang = threading.Event()
    post = Recorder(block=hang)
    sender = ReportSender("http://op/reports", "t", post=post, capacity=4)
    started = time.monotonic()
    for step in range(200):
        sender.submit_progress(make(ReportKind.PROGRESS, step))
    assert time.monotonic() - started < 0.5
    assert sender.dropped >= 195
    hang.set()
    assert sender.close(timeout_s=5)


def test_close_gives_up_quickly_when_the_endpoint_never_answered() -> None:
    post = Recorder(failures=[ConnectionRefusedError("down")] * 100)
    sender = ReportSender("http://op/reports", "t", post=post, backoff_initial_s=5, backoff_max_s=5)
    sender.submit(make(ReportKind.PROGRESS))
    time.sleep(0.1)  # the first attempt fails; the sender is now backing off for ~5 s
    sender.submit(make(ReportKind.FINAL))
    started = time.monotonic()
    assert not sender.close(timeout_s=30)
    assert time.monotonic() - started < 2
    assert post.calls == 2  # the progress report, then one try for the final one


class _Handler(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, object]]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append((self.headers.get("Authorization", ""), json.loads(self.rfile.read(length))))
        self.send_response(202)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, list[tuple[str, dict[str, object]]]]]:
    received: list[tuple[str, dict[str, object]]] = []
    handler = type("Handler", (_Handler,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/reports", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_real_http_endpoint_receives_valid_reports(endpoint: tuple[str, list[tuple[str, dict[str, object]]]]) -> None:
    url, received = endpoint
    reporter = Reporter(identity=JOB, device=DEVICE, total_epochs=5, sender=ReportSender(url, "tok"))
    reporter.send(ReportKind.EPOCH, epoch=1, metrics={"val_loss": 0.5, "broken": float("nan")})
    reporter.send(ReportKind.FINAL, epoch=1, final=FinalResult(status=FinalStatus.SUCCEEDED, exit_code=0))
    assert reporter.close(timeout_s=10)
    assert [token for token, _ in received] == ["Bearer tok", "Bearer tok"]
    first = TrainerReport.model_validate(received[0][1])
    assert first.metrics == {"val_loss": 0.5}  # NaN left out: JSON cannot carry it
    assert TrainerReport.model_validate(received[1][1]).final is not None
