"""Posting reports to the operator off the caller's thread, without ever slowing training down.

Callers only hand reports over (never blocks, never raises). One daemon thread POSTs them in order with the
job's bearer token and retries transient failures (connection errors, 408/425/429/5xx) with capped, jittered
exponential backoff. Two kinds of report are treated differently:

* progress reports (metrics without an epoch) can come from every line a script prints, thousands per
  second: only the newest is kept, and one is sent at most every `progress_interval_s`, so a chatty script
  cannot flood the operator;
* epoch, diagnostic and final reports (and a progress report that must not be coalesced away, such as
  the packaged trainer's first one, which names the device) are queued in order, bounded: when full, an
  ordered progress report goes first, then the oldest epoch or diagnostic one, the final one never. A
  newer ordered report makes a pending progress report stale, which is then dropped: sent afterwards, it
  would move the status's progress backwards.

`close` waits a bounded time for the queue to drain. When the endpoint never answered during the run it
gives the final report one try (the operator may just have come up) and drops everything else: a dead
endpoint must not hold up the end of training, and the termination message still carries the outcome.

This is the one implementation of the report protocol's transport on the trainer side: the packaged
trainer, the client library and the wrapper all send through it.
"""

from __future__ import annotations

import json
import logging
import random
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any, Callable, Dict

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 64
DEFAULT_PROGRESS_INTERVAL_S = 5.0
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_FINAL = "final"
_PROGRESS_ONLY = frozenset({"progress"})
_NOT_FINAL = frozenset({"progress", "epoch", "diagnostic"})

Report = Dict[str, Any]
# post(url, body, headers, timeout) -> None; raises Rejected (drop the report) or anything else (retry).
PostFunction = Callable[[str, bytes, Dict[str, str], float], None]


class RejectedError(Exception):
    """The endpoint refused the report for good (400, 401, 403, 404, 413): sending it again cannot help."""


def urllib_post(ca_file: str | None = None) -> PostFunction:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as error:
            if error.code in _RETRYABLE_STATUS:
                raise
            raise RejectedError(f"HTTP {error.code} {error.reason}") from error

    return post


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Jittered so that many trainers do not retry in lockstep after an operator restart."""
    base: float = min(maximum, initial * 2 ** max(attempt - 1, 0))
    return base * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography


def enqueue(queue: deque[Report], report: Report, capacity: int) -> Report | None:
    """Append `report`, evicting to stay within `capacity`; returns the evicted report, if any.

    Eviction order: the oldest progress report (possibly `report` itself), else the oldest epoch or
    diagnostic report. Final reports are never evicted, so only they can push the queue past capacity.
    """
    queue.append(report)
    if len(queue) <= capacity:
        return None
    for evictable in (_PROGRESS_ONLY, _NOT_FINAL):
        for index, queued in enumerate(queue):
            if queued.get("kind") in evictable:
                del queue[index]
                return queued
    return None


class ReportSender:
    """The background sender: `submit` / `submit_progress` from any thread, `close` at the end."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        post: PostFunction | None = None,
        ca_file: str | None = None,
        capacity: int = DEFAULT_CAPACITY,
        progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S,
        request_timeout_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 15.0,
    ) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = "Bearer " + token
        self._post = post or urllib_post(ca_file)
        self._capacity = capacity
        self._progress_interval = progress_interval_s
        self._timeout = request_timeout_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._ordered: deque[Report] = deque()
        self._progress: Report | None = None
        self._next_progress_at = 0.0
        self._cond = threading.Condition()
        self._closing = False
        self._ever_succeeded = False
        self._abandoned = False
        self._final_tried = False
        self._attempts = 0
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="trainsmart-client-sender", daemon=True)
        self._thread.start()

    def submit(self, report: Report) -> None:
        """Queue a report in order: epoch, diagnostic, final, or a progress report that must arrive."""
        with self._cond:
            if self._progress is not None:
                self._progress = None
                self.dropped += 1
            if enqueue(self._ordered, report, self._capacity) is not None:
                self.dropped += 1
            self._cond.notify_all()

    def submit_progress(self, report: Report) -> None:
        """Offer a progress report; it replaces any not yet sent."""
        with self._cond:
            if self._progress is not None:
                self.dropped += 1
            self._progress = report
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._ordered) + (self._progress is not None)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Send what is queued within `timeout_s` (a pending progress report goes out at once); True when
        everything was delivered."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._ordered or self._progress is not None) and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            left = len(self._ordered) + (self._progress is not None)
            abandoned = self._abandoned
        if left or abandoned:
            log.warning("report endpoint %s never answered or did not take all reports", self.url)
        return not left and not abandoned

    def _next(self) -> Report | None:
        """The report to send now (left queued until sent), or None when the thread should stop; waits."""
        with self._cond:
            while True:
                if self._closing and self._attempts and not self._ever_succeeded:
                    # Never reached during the whole run: one try for the final report, nothing else, instead
                    # of delaying the exit.
                    finals = [queued for queued in self._ordered if queued.get("kind") == _FINAL][:1]
                    if self._final_tried:
                        finals = []
                    self.dropped += len(self._ordered) - len(finals) + (self._progress is not None)
                    self._abandoned = True
                    self._ordered = deque(finals)
                    self._progress = None
                    if not finals:
                        self._cond.notify_all()
                        return None
                    self._final_tried = True
                    return finals[0]
                if self._ordered:
                    return self._ordered[0]
                if self._progress is not None:
                    wait = 0.0 if self._closing else self._next_progress_at - time.monotonic()
                    if wait <= 0:
                        return self._progress
                    self._cond.wait(wait)
                    continue
                if self._closing:
                    self._cond.notify_all()
                    return None
                self._cond.wait()

    def _run(self) -> None:
        while True:
            report = self._next()
            if report is None:
                return
            outcome = self._send(report)
            with self._cond:
                if outcome == "retry":
                    self._attempts += 1
                    closing, reached = self._closing, self._ever_succeeded
                else:
                    self._attempts = 0
                    if self._ordered and self._ordered[0] is report:
                        self._ordered.popleft()
                    elif report.get("kind") == "progress":
                        if self._progress is report:
                            self._progress = None
                        self._next_progress_at = time.monotonic() + self._progress_interval
                    if outcome == "sent":
                        self.sent += 1
                        self._ever_succeeded = True
                    self._cond.notify_all()
                    continue
            if closing:
                if reached:  # a short pause between the last tries; never reached: `_next` gives up now
                    time.sleep(min(self._backoff[0], 0.5))
            else:
                # Only close() cuts a backoff short (to try the last reports); new reports do not.
                with self._cond:
                    self._cond.wait_for(lambda: self._closing, backoff_delay(self._attempts, *self._backoff))

    def _send(self, report: Report) -> str:
        """POST one report: "sent", "rejected" (dropped) or "retry"."""
        try:
            body = json.dumps(report, separators=(",", ":"), allow_nan=False).encode()
        except ValueError as error:  # a NaN that slipped past the builders: the endpoint would refuse it too
            log.warning("a %s report is not valid JSON: %s (dropped)", report.get("kind"), error)
            return "rejected"
        try:
            self._post(self.url, body, self._headers, self._timeout)
        except RejectedError as error:
            log.warning("report endpoint rejected a %s report: %s (dropped)", report.get("kind"), error)
            return "rejected"
        except Exception as error:  # anything else is transient: network, DNS, TLS, timeouts, 5xx
            self.failures += 1
            if self.failures == 1 or self.failures % 10 == 0:
                log.warning("report endpoint %s unreachable (%d failures): %s", self.url, self.failures, error)
            return "retry"
        return "sent"
