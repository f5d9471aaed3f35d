"""The MLflow sync: keeps each tracked object's run up to date, off the reconcile path.

Who logs, and why the operator (issue 14): the operator already receives every report (any training
code: the packaged trainer, the client library, the wrapped command) and derives the status, so it can
log for all of them with no tracking credentials in any training pod, and retries live in one place.

How: a controller hands over the object after each reconcile (`offer_job`, `offer_sweep`: the desired
run, derived purely by `mlflow_plan`, plus the metric points of the reports that reconcile folded) and
gets back the current `TrackingHealth` for its TrackingReady condition. It never waits on MLflow. Each
tracked object has a small task of its own that brings its run up to date when there is something new:

* restart-safe: the run is found by its uid tag (runs/search) before one is created, and metrics are
  sent only above the highest step MLflow has per key, so replays and restarts duplicate nothing;
* bounded: reported points wait in a per-run queue of `max_points` (the oldest are dropped, and counted
  in the condition's message), at most `concurrency` syncs talk to servers at once, each call has a
  timeout;
* an unreachable server is retried with capped exponential backoff, and all runs of that server wait
  out the same backoff (one failing call per period, not one per run); the health says so, and the
  controller's next reconcile (triggered through `on_health_change`) shows it as a condition. A server
  that refuses (credentials, a value) is retried at the cap.

Credentials are read from the object's credentialsSecret by the operator (`read_secret`), cached
briefly, sent as a header only and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import aiohttp

from trainsmart.api import HyperparamSweep, HyperparamSweepStatus, TrainingJob, TrainingJobStatus
from trainsmart.report_endpoint import JobKey
from trainsmart.status.tracking_condition import TrackingHealth, TrackingState
from trainsmart.tracking.mlflow_plan import (
    SWEEP_UID_TAG,
    DesiredRun,
    MetricPoint,
    MlflowTarget,
    RemoteRun,
    after_update,
    child_tag_changes,
    job_run,
    plan_run_update,
    remote_run_of,
    report_points,
    resolve_target,
    sweep_run,
)
from trainsmart.tracking.mlflow_rest import (
    Credentials,
    MlflowError,
    MlflowRest,
    MlflowUnreachableError,
    tag_filter,
)
from trainsmart_trainer.contract import TrainerReport

log = logging.getLogger(__name__)

MAX_POINTS_PER_RUN: Final = 5000
"""Reported points waiting per run while its server is away: about 5000 epochs' worth of one metric, or a
few hundred epochs of a dozen metrics; beyond, the oldest go (the status history keeps the objective)."""
CONCURRENCY: Final = 8
REQUEST_TIMEOUT_S: Final = 10.0
BACKOFF_FIRST_S: Final = 1.0
BACKOFF_MAX_S: Final = 60.0
CREDENTIALS_TTL_S: Final = 60.0
"""A rotated credentialsSecret is picked up within this long."""
MESSAGE_MAX_CHARS: Final = 1024
PENDING: Final = TrackingHealth(TrackingState.PENDING, "waiting for the first sync with MLflow")

ReadSecret = Callable[[str, str], Awaitable[Mapping[str, str] | None]]
"""(namespace, name) -> the Secret's decoded data, or None when it does not exist."""


class TrackedKind(StrEnum):
    JOB = "TrainingJob"
    SWEEP = "HyperparamSweep"


HealthChanged = Callable[[TrackedKind, JobKey], None]
"""Called (in the loop) when an object's health changed: its controller should reconcile it."""


class CredentialsMissingError(MlflowError):
    """The credentialsSecret is absent or has no MLFLOW_TRACKING_* key."""


@dataclass(eq=False)
class _Run:
    kind: TrackedKind
    key: JobKey
    target: MlflowTarget
    desired: DesiredRun
    max_points: int
    points: deque[MetricPoint] = field(default_factory=deque)
    dropped: int = 0
    health: TrackingHealth = field(default_factory=lambda: PENDING)
    synced: DesiredRun | None = None
    """The desired run last brought fully up to date (nothing to do while it is unchanged)."""
    remote: RemoteRun | None = None
    """What MLflow holds, kept from our own writes; None: read it back (first sync, after an error)."""
    experiment_id: str | None = None
    parent_run_id: str | None = None
    failures: int = 0
    task: asyncio.Task[None] | None = None

    def add(self, points: Iterable[MetricPoint]) -> None:
        for point in points:
            if len(self.points) >= self.max_points:
                self.points.popleft()
                self.dropped += 1
            self.points.append(point)

    def has_work(self) -> bool:
        return bool(self.points) or self.desired != self.synced


def utc_now() -> datetime:
    return datetime.now(UTC)


def backoff(failures: int, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> float:
    """Seconds before retry `failures` (1, 2, 3...): doubling from `first`, capped at `cap`."""
    return float(min(cap, first * 2 ** max(0, failures - 1)))


class TrackingSync:
    """Every tracked object's run; one per operator process (started and stopped by the runtime)."""

    def __init__(
        self,
        read_secret: ReadSecret,
        on_health_change: HealthChanged,
        default_uri: str | None = None,
        *,
        concurrency: int = CONCURRENCY,
        max_points: int = MAX_POINTS_PER_RUN,
        request_timeout: float = REQUEST_TIMEOUT_S,
        backoff_first: float = BACKOFF_FIRST_S,
        backoff_max: float = BACKOFF_MAX_S,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.read_secret = read_secret
        self.on_health_change = on_health_change
        self.default_uri = default_uri
        self.max_points = max_points
        self.request_timeout = request_timeout
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.clock = clock
        self._runs: dict[tuple[TrackedKind, JobKey], _Run] = {}
        self._limit = asyncio.Semaphore(concurrency)
        self._down_until: dict[str, float] = {}
        self._experiments: dict[tuple[str, str], str] = {}
        self._credentials: dict[tuple[str, str], tuple[float, Credentials | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- called by the controllers (never blocks) -----------------------------------------------------------

    def offer_job(
        self, key: JobKey, job: TrainingJob, status: TrainingJobStatus, reports: Sequence[TrainerReport] = ()
    ) -> TrackingHealth | None:
        """The job as just derived, and the reports that derivation folded; its health (None: not tracked)."""
        target = resolve_target(job.spec.tracking, self.default_uri, key.namespace)
        if target is None:
            self.forget(TrackedKind.JOB, key)
            return None
        return self._offer(TrackedKind.JOB, key, target, job_run(job, status, self.clock()), report_points(reports))

    def offer_sweep(self, key: JobKey, sweep: HyperparamSweep, status: HyperparamSweepStatus) -> TrackingHealth | None:
        """The sweep as just derived; its health (None: not tracked)."""
        target = resolve_target(sweep.spec.tracking, self.default_uri, key.namespace)
        if target is None:
            self.forget(TrackedKind.SWEEP, key)
            return None
        return self._offer(TrackedKind.SWEEP, key, target, sweep_run(sweep, status, self.clock()), ())

    def health(self, kind: TrackedKind, key: JobKey) -> TrackingHealth | None:
        run = self._runs.get((kind, key))
        return run.health if run is not None else None

    def forget(self, kind: TrackedKind, key: JobKey) -> None:
        """Drop a deleted (or no longer tracked) object; its run stays in MLflow as it is."""
        run = self._runs.pop((kind, key), None)
        if run is not None and run.task is not None:
            run.task.cancel()

    def _offer(
        self, kind: TrackedKind, key: JobKey, target: MlflowTarget, desired: DesiredRun, points: Sequence[MetricPoint]
    ) -> TrackingHealth:
        run = self._runs.get((kind, key))
        if run is None or run.target != target or run.desired.uid != desired.uid:
            self.forget(kind, key)  # a new object under the name, or another server/experiment: start over
            run = _Run(kind, key, target, desired, self.max_points)
            self._runs[(kind, key)] = run
        run.desired = desired
        run.add(points)
        if run.task is None and run.has_work() and self._session is not None:
            run.task = asyncio.get_running_loop().create_task(self._drive(run), name=f"mlflow {kind} {key}")
        return run.health

    # ---- the per-run task -----------------------------------------------------------------------------------

    async def _drive(self, run: _Run) -> None:
        try:
            while run.has_work():
                wait = self._down_until.get(run.target.uri, 0.0) - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                async with self._limit:
                    delay = await self._attempt(run)
                if delay:
                    await asyncio.sleep(delay)
        finally:
            run.task = None

    async def _attempt(self, run: _Run) -> float:
        """One sync of `run`; returns how long to wait before the next attempt (0: none needed)."""
        uri = run.target.uri
        points, run.points = run.points, deque()
        try:
            await self._sync(run, list(points))
        except Exception as error:
            pending, run.points = run.points, deque()
            run.add(points)
            run.add(pending)  # the newer points last; the oldest go first if the queue is full
            run.remote = None  # what MLflow holds is unknown now: read it back next time
            run.failures += 1
            state = TrackingState.UNREACHABLE
            if isinstance(error, CredentialsMissingError):
                state = TrackingState.CREDENTIALS_MISSING
            elif not isinstance(error, MlflowUnreachableError):
                state = TrackingState.REFUSED
            if state == TrackingState.UNREACHABLE:
                delay = backoff(run.failures, self.backoff_first, self.backoff_max)
                self._down_until[uri] = max(self._down_until.get(uri, 0.0), time.monotonic() + delay)
                message = (
                    f"MLflow at {uri} is unreachable ({error}); retrying with backoff up to "
                    f"{self.backoff_max:.0f} s. Training is not affected; up to {self.max_points} reported metric "
                    "points per run wait meanwhile."
                )
            else:
                delay = self.backoff_max
                message = f"MLflow at {uri}: {error}; retrying every {self.backoff_max:.0f} s."
            if not isinstance(error, MlflowError):
                log.warning("%s %s: unexpected tracking error", run.kind, run.key, exc_info=error)
            log.log(
                logging.INFO if run.failures > 1 else logging.WARNING,
                "%s %s: tracking sync failed (%s): %s",
                run.kind,
                run.key,
                state.value,
                error,
            )
            self._set_health(run, TrackingHealth(state, message[:MESSAGE_MAX_CHARS]))
            return delay
        run.failures = 0
        self._down_until.pop(uri, None)
        remote = run.remote
        message = f"MLflow run {remote.run_id if remote else '?'} in experiment {run.target.experiment!r} at {uri}"
        message += " is up to date."
        if run.dropped:
            message += f" {run.dropped} reported metric points were dropped while MLflow was unreachable."
        self._set_health(run, TrackingHealth(TrackingState.SYNCED, message[:MESSAGE_MAX_CHARS]))
        return 0.0

    def _set_health(self, run: _Run, health: TrackingHealth) -> None:
        if health != run.health:
            run.health = health
            if self._runs.get((run.kind, run.key)) is run:
                self.on_health_change(run.kind, run.key)

    async def _client(self, run: _Run) -> MlflowRest:
        assert self._session is not None
        secret = run.target.credentials_secret
        credentials = None
        if secret is not None:
            cached = self._credentials.get((run.key.namespace, secret))
            if cached is None or cached[0] < time.monotonic():
                data = await self.read_secret(run.key.namespace, secret)
                found = Credentials.from_secret(data) if data is not None else None
                cached = (time.monotonic() + CREDENTIALS_TTL_S, found)
                self._credentials[(run.key.namespace, secret)] = cached
            credentials = cached[1]
            if credentials is None:
                raise CredentialsMissingError(
                    f"Secret {secret} in {run.key.namespace} is missing or has none of MLFLOW_TRACKING_TOKEN, "
                    "MLFLOW_TRACKING_USERNAME"
                )
        return MlflowRest(self._session, run.target.uri, credentials, self.request_timeout)

    async def _sync(self, run: _Run, points: list[MetricPoint]) -> None:
        desired, target = run.desired, run.target
        client = await self._client(run)
        if run.experiment_id is None:
            cache = (target.uri, target.experiment)
            if cache not in self._experiments:
                self._experiments[cache] = await client.experiment_id(target.experiment)
            run.experiment_id = self._experiments[cache]
        remote = run.remote
        if remote is None:
            found = await client.find_run(run.experiment_id, desired.uid)
            if found is None:
                found = await client.create_run(
                    run.experiment_id, desired.run_name, desired.start_time_ms, desired.tags
                )
            remote = remote_run_of(found)
            run.remote = remote
        if desired.parent_uid is not None and run.parent_run_id is None:
            parent = await client.find_run(run.experiment_id, desired.parent_uid)
            run.parent_run_id = remote_run_of(parent).run_id if parent is not None else None
        update = plan_run_update(desired, remote, points, run.parent_run_id)
        for batch in update.batches:
            await client.log_batch(remote.run_id, batch)
        if update.status is not None:
            await client.update_run(remote.run_id, update.status, update.end_time_ms)
        run.remote = after_update(remote, update)
        if update.conflicting_params:
            log.info(
                "%s %s: parameters %s changed after MLflow logged them; MLflow keeps the first values",
                run.kind,
                run.key,
                list(update.conflicting_params),
            )
        if run.kind == TrackedKind.SWEEP:
            children = await client.search_runs(run.experiment_id, tag_filter(SWEEP_UID_TAG, desired.uid))
            for change in child_tag_changes(map(remote_run_of, children), remote.run_id, desired.best_child):
                if change.value is None:
                    await client.delete_tag(change.run_id, change.key)
                else:
                    await client.set_tag(change.run_id, change.key, change.value)
        # A trial whose sweep's run does not exist yet looks for it again when it next changes; the sweep's
        # own sync also points its children at it (`child_tag_changes`).
        run.synced = desired
