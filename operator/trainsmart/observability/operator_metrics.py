"""The operator's Prometheus registry: event counters (reconciles, errors, latency, report requests) plus the
level-based object series of `objects.ObjectsCollector`.

A registry per `OperatorMetrics` instead of prometheus-client's global one: tests build several runtimes in
one process, and a global registry would refuse the second set of collectors (or mix their counts).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest

from trainsmart.api import SWEEP_KIND, TRAININGJOB_KIND
from trainsmart.observability.objects import ObjectsCollector, ObjectStore, ReconciledCollector
from trainsmart.observability.snapshots import job_snapshot, sweep_snapshot

K = TypeVar("K")

RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: a reconcile is a few API calls (tens of ms); seconds mean a slow or struggling apiserver."""
REPORT_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: a report is answered in about a millisecond; the trainer's client gives up after 5 s."""
LOOP_LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds an event loop's timer fired late: anything above tens of ms is a callback blocking the loop."""
REJECTION_REASONS: Final = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "unknown_job",
    413: "too_large",
}
"""The report endpoint's refusals by HTTP status (report_endpoint.py), as a bounded `reason` label."""


class OperatorMetrics:
    """Everything `/metrics` shows for one operator process."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.store = ObjectStore()
        reg.register(ObjectsCollector(self.store))
        reg.register(ReconciledCollector(self.store))
        if process:
            # Memory and CPU of the operator itself: the figure to alert on long before an OOM kill.
            ProcessCollector(registry=reg)
        self.reconciles = Counter(
            "trainsmart_reconciles", "Reconciles run, by kind and outcome.", ["kind", "outcome"], registry=reg
        )
        self.reconcile_errors = Counter(
            "trainsmart_reconcile_errors",
            "Reconciles that raised (retried with backoff), by kind and exception type.",
            ["kind", "error"],
            registry=reg,
        )
        self.reconcile_seconds = Histogram(
            "trainsmart_reconcile_duration_seconds",
            "Wall time of one reconcile, by kind.",
            ["kind"],
            buckets=RECONCILE_BUCKETS,
            registry=reg,
        )
        self.report_requests = Counter(
            "trainsmart_report_requests", "Report endpoint requests, by HTTP status.", ["code"], registry=reg
        )
        self.report_rejections = Counter(
            "trainsmart_report_rejections", "Reports refused, by reason.", ["reason"], registry=reg
        )
        self.report_seconds = Histogram(
            "trainsmart_report_handling_seconds",
            "Time from a report request's arrival in its handler to its answer (token check included).",
            buckets=REPORT_BUCKETS,
            registry=reg,
        )
        self.token_read_seconds = Histogram(
            "trainsmart_report_token_read_seconds",
            "Time to read a job's report token from its Secret (a report for a job not yet in the cache).",
            buckets=REPORT_BUCKETS,
            registry=reg,
        )
        self.loop_lag = Histogram(
            "trainsmart_event_loop_lag_seconds",
            "How late a periodic timer of an event loop fired, by loop: the time a callback blocked it.",
            ["loop"],
            buckets=LOOP_LAG_BUCKETS,
            registry=reg,
        )
        self.tracking_points_dropped = Counter(
            "trainsmart_tracking_points_dropped",
            "Reported metric points the MLflow sync dropped because a run's queue was full (its server away "
            "for long), by kind of object. Labelled by kind only: bounded, whatever the number of jobs.",
            ["kind"],
            registry=reg,
        )
        for kind in (TRAININGJOB_KIND, SWEEP_KIND):
            for outcome in ("success", "error"):
                self.reconciles.labels(kind, outcome)
            self.reconcile_seconds.labels(kind)
            self.tracking_points_dropped.labels(kind)

    # ---- watch entry points: the object series ------------------------------------------------------------

    def observe_trainingjob(self, event: Mapping[str, Any]) -> None:
        """A TrainingJob watch event (or initial listing): keep its snapshot, or drop it when DELETED."""
        body = event.get("object") or {}
        meta = body.get("metadata") or {}
        if event.get("type") == "DELETED":
            self.store.forget_job(str(meta.get("namespace", "")), str(meta.get("name", "")))
        else:
            self.store.put_job(job_snapshot(body))

    def observe_sweep(self, event: Mapping[str, Any]) -> None:
        """A HyperparamSweep watch event (or initial listing): keep its snapshot, or drop it when DELETED."""
        body = event.get("object") or {}
        meta = body.get("metadata") or {}
        if event.get("type") == "DELETED":
            self.store.forget_sweep(str(meta.get("namespace", "")), str(meta.get("name", "")))
        else:
            self.store.put_sweep(sweep_snapshot(body))

    # ---- event counters -----------------------------------------------------------------------------------

    def timed_reconcile(
        self, kind: str, reconcile: Callable[[K], Awaitable[float | None]]
    ) -> Callable[[K], Awaitable[float | None]]:
        """`reconcile`, counted and timed. Errors are counted and re-raised (the work queue retries them);
        a cancelled reconcile (operator shutdown) is neither a success nor an error."""
        succeeded, failed = self.reconciles.labels(kind, "success"), self.reconciles.labels(kind, "error")
        seconds = self.reconcile_seconds.labels(kind)

        async def counted(key: K) -> float | None:
            started = time.perf_counter()
            try:
                result = await reconcile(key)
            except Exception as error:
                seconds.observe(time.perf_counter() - started)
                failed.inc()
                self.reconcile_errors.labels(kind, type(error).__name__).inc()
                raise
            seconds.observe(time.perf_counter() - started)
            succeeded.inc()
            if isinstance(key, tuple) and len(key) == 2:  # (namespace, name): JobKey
                self.store.mark_reconciled(kind, (str(key[0]), str(key[1])))
            return result

        return counted

    def report_response(self, status: int) -> None:
        """One response of the report endpoint (its hook in `reports.build_report_app`)."""
        self.report_requests.labels(str(status)).inc()
        if status >= 400:
            self.report_rejections.labels(REJECTION_REASONS.get(status, "other")).inc()

    def tracking_dropped(self, kind: str, count: int) -> None:
        """`count` reported points of an object of `kind` dropped by the MLflow sync (its `on_dropped`)."""
        self.tracking_points_dropped.labels(str(kind)).inc(count)

    def report_handled(self, seconds: float) -> None:
        """The handling time of one report request (its hook in `reports.build_report_app`)."""
        self.report_seconds.observe(seconds)

    def exposition(self, names: Collection[str] = ()) -> bytes:
        """The text format Prometheus scrapes; only the series `names` when given (`?name[]=...`)."""
        registry = self.registry.restricted_registry(names) if names else self.registry
        return bytes(generate_latest(registry))
