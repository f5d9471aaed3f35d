"""Pushing TrainerReports to the operator off the training thread.

The training thread only appends to a bounded queue (`submit` never blocks and never raises); one daemon
thread POSTs the reports in order with the job's bearer token, retrying transient failures (connection
errors, 408/429/5xx) with capped exponential backoff. When the queue is full the oldest progress report is
dropped first (a newer one supersedes it), then the oldest epoch/diagnostic report; the final report is
never dropped. `close` gives the final report a bounded time to get through, and gives up at once when the
endpoint has never answered: a dead endpoint must not delay the end of training, and the result file and
termination message still carry the outcome.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from trainsmart_trainer.contract import (
    CheckpointInfo,
    DeviceInfo,
    Diagnostic,
    FinalResult,
    JobIdentity,
    ReportKind,
    TrainerReport,
)

log = logging.getLogger(__name__)

DEFAULT_CAPACITY: Final = 64
_RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
_PROGRESS_ONLY: Final = frozenset({ReportKind.PROGRESS})
_NOT_FINAL: Final = frozenset({ReportKind.PROGRESS, ReportKind.EPOCH, ReportKind.DIAGNOSTIC})


class PermanentRejectionError(Exception):
    """The endpoint refused the report for good (401, 403, 422...): retrying the same bytes cannot help."""


# post(url, body, headers, timeout) -> None; raises PermanentRejectionError or any other exception (= retry).
PostFunction = Callable[[str, bytes, dict[str, str], float], None]


def enqueue(queue: deque[TrainerReport], report: TrainerReport, capacity: int) -> TrainerReport | None:
    """Append `report`, evicting to stay within `capacity`; returns the evicted report, if any.

    Eviction order: the oldest progress report (possibly `report` itself), else the oldest epoch or
    diagnostic report. Final reports are never evicted, so only they can push the queue past capacity.
    """
    queue.append(report)
    if len(queue) <= capacity:
        return None
    for kinds in (_PROGRESS_ONLY, _NOT_FINAL):
        for index, queued in enumerate(queue):
            if queued.kind in kinds:
                del queue[index]
                return queued
    return None


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter (so many trainers do not retry in lockstep after an operator restart)."""
    base: float = min(maximum, initial * 2 ** max(attempt - 1, 0))
    return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


def urllib_post(ca_file: str | None = None) -> PostFunction:
    """A PostFunction on urllib (the trainer image carries no HTTP client library)."""
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as error:
            if error.code in _RETRYABLE_STATUS:
                raise
            raise PermanentRejectionError(f"HTTP {error.code} {error.reason}") from error

    return post


class ReportSender:
    """The background sender. Create, `start()`, `submit()` from the training thread, `close()` at the end."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        post: PostFunction | None = None,
        capacity: int = DEFAULT_CAPACITY,
        request_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 15.0,
        ca_file: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"report URL must be http(s), got {url!r}")
        self.url = url
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._post = post or urllib_post(ca_file)
        self._capacity = capacity
        self._timeout = request_timeout_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._queue: deque[TrainerReport] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="trainsmart-report-sender", daemon=True)
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self._ever_succeeded = False
        self._abandoned = False
        self._close_requested = threading.Event()

    def start(self) -> ReportSender:
        self._thread.start()
        return self

    def submit(self, report: TrainerReport) -> None:
        """Queue a report; O(capacity) at worst, never blocks on the network."""
        with self._cond:
            evicted = enqueue(self._queue, report, self._capacity)
            if evicted is not None:
                self.dropped += 1
            self._cond.notify()

    def close(self, timeout_s: float = 10.0) -> bool:
        """Wait until the queue is sent or `timeout_s` passes; True when everything was delivered."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing = True
            self._close_requested.set()
            self._cond.notify_all()
            while self._queue and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            delivered = not self._queue and not self._abandoned
        if not delivered:
            log.warning("report endpoint %s: %d reports not delivered", self.url, len(self._queue))
        return delivered

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                if self._closing and not self._ever_succeeded and attempt > 0:
                    # Never reached during the whole run: skip to the final report and give it one attempt.
                    finals = [queued for queued in self._queue if queued.kind == ReportKind.FINAL]
                    self.dropped += len(self._queue) - len(finals[:1])
                    self._abandoned = True
                    self._queue = deque(finals[:1])
                    if not self._queue:
                        self._cond.notify_all()
                        return
                report = self._queue[0]
            outcome = self._send(report)
            delay = 0.0
            with self._cond:
                if outcome == "retry":
                    attempt += 1
                    if self._closing and not self._ever_succeeded and report.kind == ReportKind.FINAL:
                        self._abandoned = True
                        self.dropped += len(self._queue)
                        self._queue.clear()
                        self._cond.notify_all()
                        return
                    if not self._closing or self._ever_succeeded:
                        delay = backoff_delay(attempt, *self._backoff)
            if outcome == "retry":
                # New reports must not cut the backoff short; only close() does (to try the final one).
                if self._close_requested.is_set():
                    time.sleep(delay)
                else:
                    self._close_requested.wait(delay)
                continue
            with self._cond:
                attempt = 0
                if self._queue and self._queue[0] is report:
                    self._queue.popleft()
                if outcome == "sent":
                    self.sent += 1
                    self._ever_succeeded = True
                self._cond.notify_all()

    def _send(self, report: TrainerReport) -> str:
        """POST one report: "sent", "rejected" (dropped) or "retry"."""
        body = report.model_dump_json(by_alias=True, exclude_none=True).encode()
        try:
            self._post(self.url, body, self._headers, self._timeout)
        except PermanentRejectionError as error:
            log.warning("report endpoint rejected a %s report: %s (dropped)", report.kind.value, error)
            return "rejected"
        except Exception as error:  # anything else is transient: network, DNS, TLS, timeouts, 5xx
            self.failures += 1
            if self.failures == 1 or self.failures % 10 == 0:
                log.warning("report endpoint %s unreachable (%d failures): %s", self.url, self.failures, error)
            return "retry"
        return "sent"


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
        final: FinalResult | None = None,
    ) -> TrainerReport:
        """Build the report (always: tests and the result file use it) and queue it when reporting is on."""
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
            final=final,
            device=self.device,
        )
        if self.sender is not None:
            self.sender.submit(report)
        return report

    def close(self, timeout_s: float = 10.0) -> bool:
        return self.sender.close(timeout_s) if self.sender is not None else True
