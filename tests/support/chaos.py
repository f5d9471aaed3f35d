"""The chaos driver (issue 13): a mix of TrainingJob and HyperparamSweep lifecycles while the operator is
SIGKILLed at random moments and started again at once (as its Deployment would), then counted.

What runs (`LIFECYCLE_KINDS`, cycled in a seeded shuffle):
- `plain`: a job that only has to succeed;
- `retry`: a job whose command (a wrapper around the packaged trainer) SIGKILLs the trainer once a
  checkpoint of epoch 2 exists and exits RETRYABLE_FAILURE (10), once: the job restarts (restarts == 1)
  and the next attempt resumes from the checkpoint;
- `suspend`: a job with checkpoints, suspended after its first checkpoint and resumed once it is
  Suspended with no pods left;
- `ttl`: a job with ttlSecondsAfterFinished, which must succeed and then be deleted;
- `median`: a random sweep with median early stopping (no checkpoints);
- `asha`: a grid sweep with ASHA (reduction factor 2) and per-trial checkpoints (`size`), so stopped
  trials checkpoint and the promoted one resumes (resumePromoted defaults to true then).

What is counted (every goal is 0), from a pod watch and a TrainingJob watch over the whole run (resumed by
resourceVersion, so a pod created and deleted between two polls is still seen) and from the logs:
- duplicate pods: a second pod for one (job, replica index, attempt) without a resume of that job (its
  spec.suspend going back to false) between the two creations, by resourceVersion (etcd's revision, one
  order for all objects) rather than by wall clock;
- duplicate trials: two TrainingJobs (uids) for one (sweep, trial number), plus trial numbers beyond
  the planned count;
- stuck objects: a lifecycle not ended by its deadline, and, after the quiet period, any TrainingJob or
  sweep not in a terminal state (a trial counts as ended when suspended by a finished sweep), any pod
  still Pending or Running, any TTL job still there;
- lost epochs beyond the checkpoint interval: for each job with checkpoints, per replica-0 pod in
  creation order, the last epoch the previous pod logged minus the epoch the next one resumed from
  (the trainer's "resumed from ...: N epochs done"; 0 when it did not resume);
- wrong outcomes: a lifecycle that ended other than expected (Failed, NoMetric, restarts != 1 ...);
- operator tracebacks in its log (all its runs appended to one file); kills are reported, not a goal.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from support.manifests import FAST_DIGITS, GPU_TOLERATIONS, ONE_THREAD_ENV, SLOW_DIGITS, sweep_body, trainingjob_body
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.agent.kubeio import agent_log_path
from trainsmart.devcluster.operator_process import OperatorProcess
from trainsmart.names import (
    ATTEMPT_LABEL,
    JOB_NAME_LABEL,
    REPLICA_INDEX_LABEL,
    SWEEP_NAME_LABEL,
    TRIAL_NUMBER_LABEL,
)

LIFECYCLE_KINDS = ("plain", "retry", "suspend", "ttl", "median", "asha")
TERMINAL = frozenset({"Succeeded", "Failed"})
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+:")
RESUMED_LINE = re.compile(r"resumed from \S+: (\d+) epochs done")

# Kills the packaged trainer once a checkpoint of epoch 2 exists and exits RETRYABLE_FAILURE, once per
# job (a marker on the checkpoint volume); every later attempt is the plain trainer.
FAIL_ONCE = """
import os, pathlib, subprocess, sys, time
d = pathlib.Path(os.environ["TRAINSMART_CHECKPOINT_DIR"])
marker = d / "chaos-failed-once"
cmd = [sys.executable, "-m", "trainsmart_trainer"]
if marker.exists():
    os.execv(sys.executable, cmd)
p = subprocess.Popen(cmd)
while p.poll() is None:
    if list(d.glob("checkpoint-000002-*.pt")):
        marker.write_text("failed once")
        p.kill()
        p.wait()
        print("chaos: trainer killed after the epoch-2 checkpoint, exiting 10", flush=True)
        sys.exit(10)
    time.sleep(0.1)
sys.exit(p.returncode)
"""


def rv(obj: Any) -> int:
    """An object's resourceVersion as a number (etcd's revision on this apiserver)."""
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    version = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
    return int(version)


@dataclass
class ChaosConfig:
    lifecycles: int = 6
    seed: int = 1
    concurrency: int = 6
    """Lifecycles in flight at once (each is 1-2 trainer processes)."""
    kill_min: float = 3.0
    kill_max: float = 15.0
    max_kills: int | None = None
    """None: keep killing until every lifecycle has ended."""
    quiet: float = 120.0
    """Seconds of quiet (no kills, nothing new) after the last lifecycle ended, before the final count."""
    lifecycle_timeout: float = 420.0
    nodes: tuple[str, ...] = ()
    """Pin the pods to these nodes (the run's own agent's); empty: anywhere."""


@dataclass
class Figures:
    lifecycles: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    pods_seen: int = 0
    trials_seen: int = 0
    duplicate_pods: int = 0
    duplicate_trials: int = 0
    stuck: int = 0
    lost_epochs: int = 0
    """Resumes that lost more epochs than the checkpoint interval."""
    lost_epochs_total: int = 0
    """Epochs redone over all resumes (within the interval is expected after a SIGKILL)."""
    resumes_checked: int = 0
    wrong_outcomes: int = 0
    tracebacks: int = 0
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)

    GOALS = ("duplicate_pods", "duplicate_trials", "stuck", "lost_epochs", "wrong_outcomes", "tracebacks")

    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.GOALS if getattr(self, name)}

    def table(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.by_kind.items()))
        lines = [
            f"chaos: {self.lifecycles} lifecycles ({kinds}), {self.kills} operator SIGKILLs, {self.seconds:.0f} s",
            f"  pods created {self.pods_seen}, trials created {self.trials_seen}, resumes checked "
            f"{self.resumes_checked}, epochs redone {self.lost_epochs_total}",
            f"  {'figure':<46} {'value':>6}   goal",
        ]
        labels = {
            "duplicate_pods": "duplicate pods (job, index, attempt)",
            "duplicate_trials": "duplicate trials (or more than planned)",
            "stuck": "stuck objects after the quiet period",
            "lost_epochs": "resumes losing more than the checkpoint interval",
            "wrong_outcomes": "lifecycles with an unexpected outcome",
            "tracebacks": "operator tracebacks in its log",
        }
        lines += [f"  {labels[name]:<46} {getattr(self, name):>6}   0" for name in self.GOALS]
        lines += [f"  ! {d}" for d in self.details]
        return "\n".join(lines)


# ---- the watches ------------------------------------------------------------------------------------------


@dataclass
class PodRecord:
    uid: str
    name: str
    job: str
    index: str
    attempt: str
    rv: int


@dataclass
class JobRecord:
    uids: set[str] = field(default_factory=set)
    suspended: bool = False
    resumes: list[int] = field(default_factory=list)
    """resourceVersions at which spec.suspend went from true back to false."""
    sweep: str | None = None
    number: int | None = None
    phases: list[str] = field(default_factory=list)
    deleted: bool = False


class Recorder:
    """Every pod and TrainingJob event of the namespace, from one watch each, resumed by resourceVersion."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.pods: dict[str, PodRecord] = {}
        self.jobs: dict[str, JobRecord] = defaultdict(JobRecord)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._loop, args=(self._pod_lister, self._on_pod), daemon=True),
            threading.Thread(target=self._loop, args=(self._job_lister, self._on_job), daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)

    # The watch decodes events by the list function's own return type, so it gets the client's bound method
    # itself (V1Pod objects for pods, dicts for TrainingJobs), never a wrapper.
    def _pod_lister(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.core.list_namespaced_pod, (self.namespace,)

    def _job_lister(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return self.objects.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, TRAININGJOB_PLURAL)

    def _loop(self, lister: Callable[[], Any], on_event: Callable[[str, Any], None]) -> None:
        func, args = lister()
        version = ""
        while not self.stop.is_set():
            try:
                if not version:  # (re)list: everything that exists now, then watch from there
                    listed = func(*args)
                    items = listed["items"] if isinstance(listed, dict) else listed.items
                    for item in items:
                        on_event("ADDED", item)
                    meta = listed["metadata"] if isinstance(listed, dict) else listed.metadata
                    version = meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version
                stream = watch.Watch().stream(func, *args, resource_version=version, timeout_seconds=5)
                for event in stream:
                    if event["type"] == "ERROR":
                        version = ""  # 410 Gone: list again
                        break
                    if event["type"] == "BOOKMARK":
                        continue
                    on_event(event["type"], event["object"])
                    version = str(rv(event["object"]))
            except client.ApiException as error:
                if error.status == 410:
                    version = ""
                else:
                    self.errors.append(f"watch: {error.status} {error.reason}")
                    time.sleep(0.5)
            except Exception as error:  # a watch must outlive a dropped connection
                self.errors.append(f"watch: {error!r}")
                time.sleep(0.5)

    def _on_pod(self, kind: str, pod: Any) -> None:
        labels = pod.metadata.labels or {}
        job = labels.get(JOB_NAME_LABEL)
        if job is None or kind != "ADDED":
            return
        with self.lock:
            if pod.metadata.uid not in self.pods:
                self.pods[pod.metadata.uid] = PodRecord(
                    pod.metadata.uid,
                    pod.metadata.name,
                    job,
                    labels.get(REPLICA_INDEX_LABEL, "?"),
                    labels.get(ATTEMPT_LABEL, "?"),
                    rv(pod),
                )

    def _on_job(self, kind: str, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        labels = meta.get("labels") or {}
        with self.lock:
            record = self.jobs[meta["name"]]
            record.uids.add(meta["uid"])
            if SWEEP_NAME_LABEL in labels and TRIAL_NUMBER_LABEL in labels:
                record.sweep, record.number = labels[SWEEP_NAME_LABEL], int(labels[TRIAL_NUMBER_LABEL])
            if kind == "DELETED":
                record.deleted = True
                return
            suspended = bool((job.get("spec") or {}).get("suspend"))
            if record.suspended and not suspended:
                record.resumes.append(rv(job))
            record.suspended = suspended
            phase = (job.get("status") or {}).get("phase")
            if phase and (not record.phases or record.phases[-1] != phase):
                record.phases.append(phase)


# ---- the lifecycles ---------------------------------------------------------------------------------------


@dataclass
class Lifecycle:
    name: str
    kind: str
    started: float = 0.0
    ended: bool = False
    outcome: str = ""
    expected: bool = True
    resumed: bool = False
    suspended_at: float = 0.0
    planned_trials: int = 0
    checkpoints: bool = False


class Chaos:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        operator: OperatorProcess,
        agent_state_dir: Path,
        config: ChaosConfig,
        log: Callable[[str], None] = print,
    ) -> None:
        self.api = api
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.operator = operator
        self.agent_state_dir = agent_state_dir
        self.config = config
        self.log = log
        self.rng = random.Random(config.seed)
        self.recorder = Recorder(api, namespace)
        self.figures = Figures()
        self.killer_errors: list[str] = []

    # -- manifests ------------------------------------------------------------------------------------------

    def _base(self, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "tolerations": GPU_TOLERATIONS,
            "trainer": {"env": ONE_THREAD_ENV, "config": config},
            **extra,
        }
        if self.config.nodes:
            term = {
                "matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": list(self.config.nodes)}
                ]
            }
            spec["affinity"] = {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}
            }
        return spec

    def _create(self, lc: Lifecycle) -> None:
        lr = {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 0.001, "max": 0.05}
        create_job = self.objects.create_namespaced_custom_object
        if lc.kind == "plain":
            spec = self._base({**FAST_DIGITS, "epochs": 3})
        elif lc.kind == "retry":
            lc.checkpoints = True
            spec = self._base({**SLOW_DIGITS, "batchSize": 4, "epochs": 4}, checkpoint={"size": "64Mi"})
            spec["trainer"]["command"] = ["python", "-c", FAIL_ONCE]
        elif lc.kind == "suspend":
            lc.checkpoints = True
            # Ten epochs: with five, 11 of 17 suspend lifecycles of a 100-lifecycle run finished before the
            # suspension landed (the operator is down for seconds at a time), so suspend went mostly untested.
            spec = self._base({**SLOW_DIGITS, "batchSize": 2, "epochs": 10}, checkpoint={"size": "64Mi"})
        elif lc.kind == "ttl":
            spec = self._base({**FAST_DIGITS, "epochs": 2}, runPolicy={"ttlSecondsAfterFinished": 3})
        elif lc.kind == "median":
            lc.planned_trials = 3
            sweep = {
                "objective": {"metric": "val_accuracy", "goal": "maximize"},
                "algorithm": {"name": "random", "seed": self.rng.randrange(1000)},
                "maxTrials": 3,
                "parallelTrials": 3,
                "earlyStopping": {"rule": "median", "minEpochs": 1},
                "parameters": [lr],
                "trialTemplate": self._base({**SLOW_DIGITS, "batchSize": 8, "epochs": 3}),
            }
            create_job(GROUP, VERSION, self.namespace, SWEEP_PLURAL, sweep_body(lc.name, sweep))
            return
        else:  # asha
            lc.planned_trials, lc.checkpoints = 2, True
            values = [0.003, 1e-6]
            sweep = {
                "objective": {"metric": "val_accuracy", "goal": "maximize"},
                "algorithm": {"name": "grid"},
                "parallelTrials": 1,
                "earlyStopping": {"rule": "asha", "minEpochs": 1, "reductionFactor": 2, "resumePromoted": True},
                "parameters": [
                    {"name": "lr", "path": "trainer.config.learningRate", "type": "choice", "values": values}
                ],
                "trialTemplate": self._base({**SLOW_DIGITS, "batchSize": 2, "epochs": 6}, checkpoint={"size": "64Mi"}),
            }
            create_job(GROUP, VERSION, self.namespace, SWEEP_PLURAL, sweep_body(lc.name, sweep))
            return
        create_job(GROUP, VERSION, self.namespace, TRAININGJOB_PLURAL, trainingjob_body(lc.name, spec))

    # -- one step of a lifecycle --------------------------------------------------------------------------

    def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return obj

    def _step(self, lc: Lifecycle) -> None:
        """Advance `lc`; sets `ended` (and `outcome`, `expected`) once it has run its course."""
        if lc.kind in ("median", "asha"):
            sweep = self._get(SWEEP_PLURAL, lc.name)
            status = (sweep or {}).get("status") or {}
            if status.get("phase") in TERMINAL:
                lc.ended, lc.outcome = True, status["phase"]
                lc.expected = status["phase"] == "Succeeded"
            return
        job = self._get(TRAININGJOB_PLURAL, lc.name)
        if job is None:
            if lc.kind == "ttl":
                phases = self.recorder.jobs[lc.name].phases
                lc.ended, lc.outcome = True, f"deleted after {phases[-1] if phases else '?'}"
                lc.expected = bool(phases) and phases[-1] == "Succeeded"
            else:
                lc.ended, lc.outcome, lc.expected = True, "deleted", False
            return
        status = job.get("status") or {}
        phase = status.get("phase")
        if lc.kind == "suspend" and not lc.resumed:
            patch = self.objects.patch_namespaced_custom_object
            if not lc.suspended_at and ((status.get("checkpoint") or {}).get("latestEpoch") or 0) >= 1:
                patch(GROUP, VERSION, self.namespace, TRAININGJOB_PLURAL, lc.name, {"spec": {"suspend": True}})
                lc.suspended_at = time.monotonic()
            elif lc.suspended_at and phase == "Suspended" and not self._pods(lc.name):
                patch(GROUP, VERSION, self.namespace, TRAININGJOB_PLURAL, lc.name, {"spec": {"suspend": False}})
                lc.resumed = True
        if phase in TERMINAL and lc.kind != "ttl":
            lc.ended, lc.outcome = True, f"{phase} restarts={status.get('restarts', 0)}"
            lc.expected = phase == "Succeeded" and status.get("restarts", 0) == (1 if lc.kind == "retry" else 0)
            if lc.kind == "suspend" and not lc.resumed:
                lc.outcome += " (finished before the suspension landed)"

    def _pods(self, job: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}").items)

    # -- the killer ---------------------------------------------------------------------------------------

    def _maybe_kill(self) -> None:
        """SIGKILL the operator when its (seeded, random) time has come and start it again at once.

        From the main thread on purpose: the operator dies with the thread that started it (its
        die-with-parent guard is PR_SET_PDEATHSIG, which follows the thread), so a killer thread's
        operators would all die when that thread ends."""
        if self.config.max_kills is not None and self.figures.kills >= self.config.max_kills:
            return
        if time.monotonic() < self.next_kill:
            return
        self.operator.kill()
        self.figures.kills += 1
        self.log(f"chaos: operator SIGKILLed (#{self.figures.kills}) at {time.monotonic() - self.t0:.0f} s")
        for _ in range(3):
            try:
                self.operator.start(60)
                break
            except RuntimeError as error:
                self.killer_errors.append(f"operator restart failed: {str(error)[:300]}")
        self.next_kill = time.monotonic() + self.rng.uniform(self.config.kill_min, self.config.kill_max)

    # -- the run ------------------------------------------------------------------------------------------

    def run(self) -> Figures:
        self.t0 = time.monotonic()
        kinds = [LIFECYCLE_KINDS[i % len(LIFECYCLE_KINDS)] for i in range(self.config.lifecycles)]
        self.rng.shuffle(kinds)
        pending = [Lifecycle(f"c{i}-{kind}", kind) for i, kind in enumerate(kinds)]
        self.figures.lifecycles = len(pending)
        self.figures.by_kind = {k: kinds.count(k) for k in set(kinds)}
        active: list[Lifecycle] = []
        done: list[Lifecycle] = []
        self.recorder.start()
        self.next_kill = self.t0 + self.rng.uniform(self.config.kill_min, self.config.kill_max)
        while pending or active:
            while pending and len(active) < self.config.concurrency:
                lc = pending.pop(0)
                lc.started = time.monotonic()
                self._create(lc)
                active.append(lc)
            time.sleep(1.0)
            self._maybe_kill()
            for lc in list(active):
                try:
                    self._step(lc)
                except client.ApiException as error:  # e.g. a conflict on a patch: try again next tick
                    self.log(f"chaos: {lc.name}: {error.status} {error.reason}")
                if not lc.ended and time.monotonic() - lc.started > self.config.lifecycle_timeout:
                    lc.ended, lc.outcome, lc.expected = True, "timed out", False
                    self.figures.stuck += 1
                    self.figures.details.append(f"stuck: {lc.name} not ended in {self.config.lifecycle_timeout:g} s")
                if lc.ended:
                    active.remove(lc)
                    done.append(lc)
                    self.log(f"chaos: {lc.name} ended: {lc.outcome} ({time.monotonic() - lc.started:.0f} s)")
        if not self.operator.running:
            self.operator.start(60)
        self.log(f"chaos: all lifecycles ended at {time.monotonic() - self.t0:.0f} s; {self.config.quiet:g} s of quiet")
        time.sleep(self.config.quiet)
        self._count(done)
        self.recorder.close()
        self.figures.seconds = time.monotonic() - self.t0
        return self.figures

    # -- the counts ---------------------------------------------------------------------------------------

    def _count(self, done: list[Lifecycle]) -> None:
        f = self.figures
        for lc in done:
            if not lc.expected and lc.outcome != "timed out":
                f.wrong_outcomes += 1
                f.details.append(f"outcome: {lc.name}: {lc.outcome}")
        with self.recorder.lock:
            pods = sorted(self.recorder.pods.values(), key=lambda p: p.rv)
            jobs = {name: record for name, record in self.recorder.jobs.items()}
        f.pods_seen = len(pods)
        # duplicate pods: the same key again with no resume of its job in between
        last: dict[tuple[str, str, str], PodRecord] = {}
        for pod in pods:
            key = (pod.job, pod.index, pod.attempt)
            before = last.get(key)
            if before is not None and not any(before.rv < r < pod.rv for r in jobs[pod.job].resumes):
                f.duplicate_pods += 1
                f.details.append(f"duplicate pod: {key} created at rv {before.rv} and again at rv {pod.rv}")
            last[key] = pod
        # duplicate trials
        lifecycles = {lc.name: lc for lc in done}
        numbers: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
        for name, record in jobs.items():
            if record.sweep is not None and record.number is not None:
                numbers[record.sweep][record.number] |= record.uids
                if name != f"{record.sweep}-{record.number}":
                    f.details.append(f"trial {name} labelled as {record.sweep} #{record.number}")
        for sweep, by_number in numbers.items():
            f.trials_seen += sum(len(uids) for uids in by_number.values())
            for number, uids in by_number.items():
                if len(uids) > 1:
                    f.duplicate_trials += len(uids) - 1
                    f.details.append(f"duplicate trial: {sweep} #{number} created {len(uids)} times")
            planned = lifecycles[sweep].planned_trials if sweep in lifecycles else 0
            extra = [n for n in by_number if n >= planned]
            if planned and extra:
                f.duplicate_trials += len(extra)
                f.details.append(f"more trials than planned: {sweep} has numbers {sorted(extra)} (planned {planned})")
        self._count_stuck(lifecycles)
        self._count_lost_epochs(pods, jobs, lifecycles)
        text = self.operator.log_path.read_text(errors="replace") if self.operator.log_path.exists() else ""
        f.tracebacks = text.count("Traceback (most recent call last)")
        for match in list(re.finditer(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)*(.*)", text))[:5]:
            f.details.append(f"operator traceback: {match.group(1)[:200]}")
        for error in self.killer_errors + self.recorder.errors[:5]:
            f.details.append(error)

    def _count_stuck(self, lifecycles: dict[str, Lifecycle]) -> None:
        f = self.figures
        sweeps = self.objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, SWEEP_PLURAL)["items"]
        finished_sweeps = set()
        for sweep in sweeps:
            phase = (sweep.get("status") or {}).get("phase")
            if phase in TERMINAL:
                finished_sweeps.add(sweep["metadata"]["name"])
            else:
                f.stuck += 1
                f.details.append(f"stuck: sweep {sweep['metadata']['name']} phase={phase}")
        jobs = self.objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, TRAININGJOB_PLURAL)["items"]
        for job in jobs:
            name, labels = job["metadata"]["name"], job["metadata"].get("labels") or {}
            phase = (job.get("status") or {}).get("phase")
            trial_of_finished = labels.get(SWEEP_NAME_LABEL) in finished_sweeps
            if phase in TERMINAL and not (lifecycles.get(name) and lifecycles[name].kind == "ttl"):
                continue
            if trial_of_finished and job["spec"].get("suspend") and phase == "Suspended":
                continue
            f.stuck += 1
            f.details.append(f"stuck: TrainingJob {name} phase={phase} suspend={job['spec'].get('suspend')}")
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if pod.status.phase in ("Pending", "Running"):
                f.stuck += 1
                f.details.append(f"stuck: pod {pod.metadata.name} {pod.status.phase}")

    def _count_lost_epochs(
        self, pods: list[PodRecord], jobs: dict[str, JobRecord], lifecycles: dict[str, Lifecycle]
    ) -> None:
        f = self.figures
        interval = 1  # every job here checkpoints every epoch (the default intervalEpochs)
        by_job: dict[str, list[PodRecord]] = defaultdict(list)
        for pod in pods:
            record = jobs.get(pod.job)
            owner = record.sweep if record and record.sweep else pod.job
            if pod.index == "0" and owner in lifecycles and lifecycles[owner].checkpoints:
                by_job[pod.job].append(pod)
        for job, runs in by_job.items():
            previous_done: int | None = None
            for pod in runs:
                log = agent_log_path(self.agent_state_dir, self.namespace, pod.name, pod.uid, "trainer")
                text = log.read_text(errors="replace") if log.exists() else ""
                resumed = [int(n) for n in RESUMED_LINE.findall(text)]
                epochs = [int(n) for n in EPOCH_LINE.findall(text)]
                start = resumed[0] if resumed else 0
                if previous_done is not None:
                    f.resumes_checked += 1
                    lost = max(0, previous_done - start)
                    f.lost_epochs_total += lost
                    if lost > interval:
                        f.lost_epochs += 1
                        f.details.append(
                            f"lost epochs: {job} pod {pod.uid[:8]} resumed at epoch {start} after {previous_done} done"
                        )
                if epochs and epochs[0] != start + 1:
                    f.details.append(f"note: {job} pod {pod.uid[:8]} resumed at {start}, first epoch {epochs[0]}")
                previous_done = max([start, *epochs])
