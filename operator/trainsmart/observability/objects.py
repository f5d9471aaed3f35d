"""Level-based object metrics: a Prometheus collector over the latest snapshot of every watched object.

The watch entry points put a snapshot per object (`observe`) and drop it on DELETED (`forget`); every
scrape derives all object series from the map as it is then. So there is no per-series bookkeeping to get
wrong: a deleted job's series vanish by construction (no unbounded label growth), a restarted operator
rebuilds everything from its initial listing, and a phase change moves a job from one series to another
without leaving a stale one behind.

Watch events write the map on the event loop; a scrape may read it from a worker thread. No lock is
needed: `collect` copies the values with one `list(dict.values())` (C code that runs no Python in between,
so under the GIL it sees the map whole) and snapshots are immutable, so the copy cannot change under it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trainsmart.api import SWEEP_KIND, TRAININGJOB_KIND, SweepPhase, TrainingJobPhase
from trainsmart.api.conditions import Reason
from trainsmart.observability.snapshots import JobSnapshot, SweepSnapshot

UNKNOWN_PHASE: Final = "Unknown"
"""The phase label of an object the operator has not given a phase yet."""
JOB_LABELS: Final = ("namespace", "job", "sweep", "trial")
SWEEP_LABELS: Final = ("namespace", "sweep")
TRACKING_NOT_READY_REASONS: Final = (
    str(Reason.TRACKING_UNREACHABLE),
    str(Reason.TRACKING_REFUSED),
    str(Reason.TRACKING_CREDENTIALS_MISSING),
)
"""The `reason` label values of trainsmart_tracking_runs_not_ready; any other reason (a status edited by
hand) counts as OTHER_REASON, so the label stays bounded."""
OTHER_REASON: Final = "Other"
_PHASES: Final = {
    TRAININGJOB_KIND: (*(str(p) for p in TrainingJobPhase), UNKNOWN_PHASE),
    SWEEP_KIND: (*(str(p) for p in SweepPhase), UNKNOWN_PHASE),
}

Key = tuple[str, str]


class ObjectStore:
    """(namespace, name) -> latest snapshot, per kind; and which of them this process has reconciled."""

    def __init__(self) -> None:
        self.jobs: dict[Key, JobSnapshot] = {}
        self.sweeps: dict[Key, SweepSnapshot] = {}
        self.reconciled: dict[str, set[Key]] = {TRAININGJOB_KIND: set(), SWEEP_KIND: set()}
        """Per kind, the watched objects reconciled at least once since this process started: when it
        counts every watched object, the first full pass after a (re)start is over (issue 13's resync
        time). Only objects still in the map are added, and DELETED drops them, so it never outgrows it."""

    def mark_reconciled(self, kind: str, key: Key) -> None:
        """A reconcile of `key` succeeded; counted only while the object is watched (a reconcile that
        runs after the DELETED event, finding the object gone, must not add it back)."""
        watched = self.jobs if kind == TRAININGJOB_KIND else self.sweeps
        if key in watched:
            self.reconciled[kind].add(key)

    def put_job(self, snapshot: JobSnapshot) -> None:
        self.jobs[(snapshot.namespace, snapshot.name)] = snapshot

    def put_sweep(self, snapshot: SweepSnapshot) -> None:
        self.sweeps[(snapshot.namespace, snapshot.name)] = snapshot

    def forget_job(self, namespace: str, name: str) -> None:
        self.jobs.pop((namespace, name), None)
        self.reconciled[TRAININGJOB_KIND].discard((namespace, name))

    def forget_sweep(self, namespace: str, name: str) -> None:
        self.sweeps.pop((namespace, name), None)
        self.reconciled[SWEEP_KIND].discard((namespace, name))


def _phase_counts(kind: str, phases: Iterable[str]) -> Iterator[tuple[list[str], float]]:
    """Every known phase of `kind`, zeros included: `trainsmart_objects{phase="Failed"}` reads 0, not absent."""
    counts = dict.fromkeys(_PHASES[kind], 0)
    for phase in phases:
        counts[phase or UNKNOWN_PHASE] = counts.get(phase or UNKNOWN_PHASE, 0) + 1
    for phase, count in counts.items():
        yield [kind, phase], float(count)


def _tracking_counts(kind: str, reasons: Iterable[str]) -> Iterator[tuple[list[str], float]]:
    """Objects of `kind` per TrackingReady=False reason, every known reason included (zeros)."""
    counts = dict.fromkeys((*TRACKING_NOT_READY_REASONS, OTHER_REASON), 0)
    for reason in reasons:
        if reason:
            label = reason if reason in counts else OTHER_REASON
            counts[label] += 1
    for reason, count in counts.items():
        yield [kind, reason], float(count)


def _gauge(name: str, documentation: str, labels: Iterable[str] = JOB_LABELS) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


class ObjectsCollector(Collector):
    """Derives the object series from an `ObjectStore` at each scrape."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so registering does not call `collect` on an empty store."""
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        jobs = list(self.store.jobs.values())
        sweeps = list(self.store.sweeps.values())
        families = self._families()
        objects = families["objects"]
        for labels, value in _phase_counts(TRAININGJOB_KIND, (job.phase for job in jobs)):
            objects.add_metric(labels, value)
        for labels, value in _phase_counts(SWEEP_KIND, (sweep.phase for sweep in sweeps)):
            objects.add_metric(labels, value)
        for job in jobs:
            _add_job(families, job)
        for sweep in sweeps:
            _add_sweep(families, sweep)
        not_ready = families["tracking_not_ready"]
        for kind, reasons in (
            (TRAININGJOB_KIND, (j.tracking_not_ready for j in jobs)),
            (SWEEP_KIND, (s.tracking_not_ready for s in sweeps)),
        ):
            for labels, value in _tracking_counts(kind, reasons):
                not_ready.add_metric(labels, value)
        return list(families.values())

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        return {
            "objects": _gauge("trainsmart_objects", "Watched objects by kind and phase.", ("kind", "phase")),
            "job_phase": _gauge(
                "trainsmart_job_phase", "1 for the TrainingJob's current phase.", (*JOB_LABELS, "phase")
            ),
            "gpus_requested": _gauge(
                "trainsmart_job_gpus_requested",
                "GPUs the TrainingJob wants (replicas x gpusPerReplica while pending, running or restarting).",
            ),
            "gpus_running": _gauge("trainsmart_job_gpus_running", "GPUs of the TrainingJob's running replicas."),
            "restarts": CounterMetricFamily(
                "trainsmart_job_restarts", "Whole-job restarts (status.restarts).", labels=list(JOB_LABELS)
            ),
            "gpu_seconds": CounterMetricFamily(
                "trainsmart_job_gpu_seconds", "GPU time consumed by all attempts.", labels=list(JOB_LABELS)
            ),
            "estimated_cost": _gauge(
                "trainsmart_job_estimated_cost",
                "Estimated cost of the job's GPU time (status.estimatedCost), in `currency`; an estimate from the "
                "operator's configured GPU price, not a bill. Absent without a price.",
                (*JOB_LABELS, "currency"),
            ),
            "epoch": _gauge("trainsmart_job_epoch", "Epochs completed."),
            "total_epochs": _gauge("trainsmart_job_total_epochs", "Epochs the run will do."),
            "progress": _gauge("trainsmart_job_progress_ratio", "Share of epochs completed, 0-1."),
            "samples_per_second": _gauge(
                "trainsmart_job_samples_per_second", "Training throughput over all ranks, from the latest report."
            ),
            "objective": _gauge(
                "trainsmart_job_objective", "Latest value of the job's objective metric.", (*JOB_LABELS, "metric")
            ),
            "objective_best": _gauge(
                "trainsmart_job_objective_best", "Best value so far of the objective metric.", (*JOB_LABELS, "metric")
            ),
            "loss": _gauge("trainsmart_job_loss", "Latest mean loss per split.", (*JOB_LABELS, "split")),
            "accuracy": _gauge("trainsmart_job_accuracy", "Latest accuracy per split.", (*JOB_LABELS, "split")),
            "sweep_phase": _gauge(
                "trainsmart_sweep_phase", "1 for the HyperparamSweep's current phase.", (*SWEEP_LABELS, "phase")
            ),
            "sweep_trials": _gauge("trainsmart_sweep_trials", "The sweep's trials by state.", (*SWEEP_LABELS, "state")),
            "sweep_planned": _gauge("trainsmart_sweep_trials_planned", "Trials the sweep runs at most.", SWEEP_LABELS),
            "sweep_cost": _gauge(
                "trainsmart_sweep_estimated_cost",
                "Estimated cost of all the sweep's trials (status.estimatedCost), in `currency`.",
                (*SWEEP_LABELS, "currency"),
            ),
            "tracking_not_ready": _gauge(
                "trainsmart_tracking_runs_not_ready",
                "Tracked objects whose MLflow run is not up to date (TrackingReady=False), by kind and reason; "
                "zeros included, so an alert on > 0 always has a series.",
                ("kind", "reason"),
            ),
            "sweep_best": _gauge(
                "trainsmart_sweep_best_objective",
                "Objective value of the best finished trial so far.",
                (*SWEEP_LABELS, "metric"),
            ),
        }


class ReconciledCollector(Collector):
    """`trainsmart_objects_reconciled{kind}`: a collector of its own, so a scrape that asks only for it
    (`/metrics?name[]=trainsmart_objects_reconciled`, as a resync wait polls it) costs a few bytes instead
    of every job's series."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for kind, keys in self.store.reconciled.items():
            family.add_metric([kind], float(len(keys)))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return _gauge(
            "trainsmart_objects_reconciled",
            "Watched objects reconciled at least once by this process, by kind: equal to "
            "sum(trainsmart_objects) by kind once its first full pass after a start is over.",
            ("kind",),
        )


def _add_job(families: Mapping[str, GaugeMetricFamily | CounterMetricFamily], job: JobSnapshot) -> None:
    labels = [job.namespace, job.name, job.sweep, job.trial]
    families["job_phase"].add_metric([*labels, job.phase or UNKNOWN_PHASE], 1.0)
    families["gpus_requested"].add_metric(labels, float(job.gpus_requested))
    families["gpus_running"].add_metric(labels, float(job.gpus_running))
    families["restarts"].add_metric(labels, float(job.restarts))
    families["gpu_seconds"].add_metric(labels, job.gpu_seconds)
    if job.estimated_cost is not None:
        families["estimated_cost"].add_metric([*labels, job.cost_currency], job.estimated_cost)
    for key, value in (
        ("epoch", job.epoch),
        ("total_epochs", job.total_epochs),
        ("progress", job.progress_ratio),
        ("samples_per_second", job.samples_per_second),
    ):
        if value is not None:
            families[key].add_metric(labels, value)
    if job.objective is not None:
        families["objective"].add_metric([*labels, job.objective_metric], job.objective)
    if job.objective_best is not None:
        families["objective_best"].add_metric([*labels, job.objective_metric], job.objective_best)
    for split, value in job.loss:
        families["loss"].add_metric([*labels, split], value)
    for split, value in job.accuracy:
        families["accuracy"].add_metric([*labels, split], value)


def _add_sweep(families: Mapping[str, GaugeMetricFamily | CounterMetricFamily], sweep: SweepSnapshot) -> None:
    labels = [sweep.namespace, sweep.name]
    families["sweep_phase"].add_metric([*labels, sweep.phase or UNKNOWN_PHASE], 1.0)
    for state, count in sweep.trials:
        families["sweep_trials"].add_metric([*labels, state], float(count))
    if sweep.planned is not None:
        families["sweep_planned"].add_metric(labels, float(sweep.planned))
    if sweep.estimated_cost is not None:
        families["sweep_cost"].add_metric([*labels, sweep.cost_currency], sweep.estimated_cost)
    if sweep.best is not None:
        families["sweep_best"].add_metric([*labels, sweep.objective_metric], sweep.best)
