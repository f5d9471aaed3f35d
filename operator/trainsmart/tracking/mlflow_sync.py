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

A deleted object (`forget`, from the controllers when they learn it is gone) has its run ended: still
open, it becomes KILLED (`closing_run`), with the points that were still waiting. That is one more task
per run, off the reconcile path and bounded: at most `max_closing` at a time, inside the same
`concurrency` limit, given up after `close_deadline` seconds; it never creates a run. After an operator
restart a run whose object was deleted meanwhile cannot be found any more (the operator knows runs only
through live objects), so it stays as it was; docs/tracking.md says so.
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
    closing_run,
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
CLOSE_DEADLINE_S: Final = 120.0
"""How long the run of a deleted object is retried (through backoff) before it is left as it is."""
MAX_CLOSING: Final = 1024
"""Deleted objects' runs being ended at once; beyond (a namespace of thousands deleted while MLflow is down)
the rest are left as they are, with one log line each."""
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
PointsDropped = Callable[[TrackedKind, int], None]
"""Called with how many reported points a run of that kind just dropped from its full queue (a metric)."""


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

    def add(self, points: Iterable[MetricPoint]) -> int:
        """Queue `points`; returns how many (the oldest) were dropped to stay within `max_points`."""
        dropped = 0
        for point in points:
            if len(self.points) >= self.max_points:
                self.points.popleft()
                dropped += 1
            self.points.append(point)
        self.dropped += dropped
        return dropped

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
        on_dropped: PointsDropped | None = None,
        close_deadline: float = CLOSE_DEADLINE_S,
        max_closing: int = MAX_CLOSING,
    ) -> None:
        self.read_secret = read_secret
        self.on_health_change = on_health_change
        self.on_dropped = on_dropped
        self.close_deadline = close_deadline
        self.max_closing = max_closing
        self.default_uri = default_uri
        self.max_points = max_points
        self.request_timeout = request_timeout
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.clock = clock
        self._runs: dict[tuple[TrackedKind, JobKey], _Run] = {}
        self._closing: set[asyncio.Task[None]] = set()
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
        tasks = [run.task for run in self._runs.values() if run.task is not None] + list(self._closing)
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
            self._drop(TrackedKind.JOB, key)  # no longer tracked: its run stays as it is
            return None
        return self._offer(TrackedKind.JOB, key, target, job_run(job, status, self.clock()), report_points(reports))

    def offer_sweep(self, key: JobKey, sweep: HyperparamSweep, status: HyperparamSweepStatus) -> TrackingHealth | None:
        """The sweep as just derived; its health (None: not tracked)."""
        target = resolve_target(sweep.spec.tracking, self.default_uri, key.namespace)
        if target is None:
            self._drop(TrackedKind.SWEEP, key)
            return None
        return self._offer(TrackedKind.SWEEP, key, target, sweep_run(sweep, status, self.clock()), ())

    def health(self, kind: TrackedKind, key: JobKey) -> TrackingHealth | None:
        run = self._runs.get((kind, key))
        return run.health if run is not None else None

    def forget(self, kind: TrackedKind, key: JobKey) -> None:
        """The object was deleted: stop syncing it and end its run if still open (KILLED), in the background."""
        run = self._runs.get((kind, key))
        if run is not None:
            self._close(run)

    def _drop(self, kind: TrackedKind, key: JobKey) -> _Run | None:
        """Stop syncing an object (its run stays in MLflow as it is); returns what was tracked of it."""
        run = self._runs.pop((kind, key), None)
        if run is not None and run.task is not None:
            run.task.cancel()
        return run

    def _close(self, run: _Run) -> None:
        """Drop `run`'s object and, when its run needs it, start the task that ends it (`_end`)."""
        in_flight = run.task
        self._drop(run.kind, run.key)
        closing = closing_run(run.desired, self.clock())
        if in_flight is None and not run.points and closing == run.synced:
            return  # ended and fully synced already: nothing to send
        if self._session is None:
            return
        if len(self._closing) >= self.max_closing:
            log.warning(
                "%s %s: deleted while %d runs are being ended; its MLflow run is left as it is",
                run.kind,
                run.key,
                len(self._closing),
            )
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        run.desired = closing
        task = loop.create_task(self._end(run, in_flight), name=f"mlflow end {run.kind} {run.key}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _offer(
        self, kind: TrackedKind, key: JobKey, target: MlflowTarget, desired: DesiredRun, points: Sequence[MetricPoint]
    ) -> TrackingHealth:
        run = self._runs.get((kind, key))
        if run is None or run.target != target or run.desired.uid != desired.uid:
            # A new object under the name (the old one is gone: its run ends), or another server/experiment
            # (the run on the old one stays as it is): start over.
            if run is not None and run.desired.uid != desired.uid:
                self._close(run)
            else:
                self._drop(kind, key)
            run = _Run(kind, key, target, desired, self.max_points)
            self._runs[(kind, key)] = run
        run.desired = desired
        self._count_dropped(run, run.add(points))
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
            # The newer points last; the oldest go first if the queue is full.
            self._count_dropped(run, run.add(points) + run.add(pending))
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

    def _count_dropped(self, run: _Run, dropped: int) -> None:
        if dropped and self.on_dropped is not None:
            self.on_dropped(run.kind, dropped)

    async def _end(self, run: _Run, in_flight: asyncio.Task[None] | None) -> None:
        """Bring a deleted object's run to `run.desired` (its closing run) with the points still waiting:
        retried through the server's backoff until `close_deadline`, then left as it is. Never creates
        a run: a deleted object whose run was never created gets none."""
        if in_flight is not None:
            await asyncio.gather(in_flight, return_exceptions=True)  # cancelled: let it unwind first
        run.remote = None  # a cancelled sync may have written half: read the run back
        points = list(run.points)
        try:
            async with asyncio.timeout(self.close_deadline):
                while True:
                    wait = self._down_until.get(run.target.uri, 0.0) - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    try:
                        async with self._limit:
                            await self._sync(run, points, create=False)
                        return
                    except MlflowUnreachableError:
                        run.failures += 1
                        run.remote = None
                        await asyncio.sleep(backoff(run.failures, self.backoff_first, self.backoff_max))
        except TimeoutError:
            log.info(
                "%s %s: deleted; its MLflow run could not be ended within %.0f s and is left as it is",
                run.kind,
                run.key,
                self.close_deadline,
            )
        except MlflowError as error:
            log.info("%s %s: deleted; its MLflow run could not be ended: %s", run.kind, run.key, error)
        except Exception as error:
            log.warning("%s %s: unexpected error ending the MLflow run", run.kind, run.key, exc_info=error)

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

    async def _sync(self, run: _Run, points: list[MetricPoint], *, create: bool = True) -> None:
        """Bring `run` up to date; `create=False` (a deleted object's run) sends nothing when MLflow has no
        run of the object, and leaves a sweep's children as they are."""
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
            if found is None and not create:
                return
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
        if run.kind == TrackedKind.SWEEP and create:
            children = await client.search_runs(run.experiment_id, tag_filter(SWEEP_UID_TAG, desired.uid))
            for change in child_tag_changes(map(remote_run_of, children), remote.run_id, desired.best_child):
                if change.value is None:
                    await client.delete_tag(change.run_id, change.key)
                else:
                    await client.set_tag(change.run_id, change.key, change.value)
        # A trial whose sweep's run does not exist yet looks for it again when it next changes; the sweep's
        # own sync also points its children at it (`child_tag_changes`).
        run.synced = desired
