"""The TrainingJob controller's I/O side: read -> parse -> derive -> plan -> patch status -> act.

One reconcile is a function of what is stored *now* plus the reports received since the last one, so it
is level-based and safe to repeat: a half-finished plan is completed by the next run. "What is stored":
the job read afresh (a GET), and its pods from the `PodCache` (the watched state, listed before it is
trusted; see `handlers/podcache.py`). One exception to the GET: a job the operator has never written
status to (just applied) starts from its ADDED event's body, the object as stored at that
resourceVersion. That takes a round-trip off the path from `kubectl apply` to the pods, and it is safe
where a stale body would not be: nothing of the job exists yet that a stale view could get wrong, and the
status patch carries the body's resourceVersion as a precondition (a conflict means "derive again from
a fresh read"). A job with status is always read afresh, so an event body that is already stale (the
job deleted meanwhile, its DELETED event still queued) cannot make the operator recreate its pods.

Order: the status is patched (only when it changed) before the plan is carried out whenever the plan
deletes anything: a restart is counted in status before any pod is deleted, so it is counted exactly once
even if the operator dies in between. A plan that deletes nothing and creates only pods of the attempt
the stored status already records (a new job's replicas, a recreated replica, a resume) is carried out
first and the status patched after it: if the patch then fails, or the operator dies before it, the pods
it created are ones the stored status already accounts for, and the next run derives again with them
present. That takes the patch off the path from `kubectl apply` to the pods (and out of the apiserver's
way while it creates them). Events are posted after the patch succeeded, so a retried reconcile does not
announce twice.

Triggers (see `queue.WorkQueue`): every watch event of a job, every event of a pod labelled with a job
name, every accepted report and the plan's `requeue_after`. Events that only echo the operator's own
status patch are recognised by their resourceVersion and ignored, or every patch would cause another
reconcile.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import pydantic
from kubernetes.client.rest import ApiException

from trainsmart.api import (
    TRAININGJOB_PLURAL,
    TrainingJob,
    TrainingJobConditionType,
    TrainingJobPhase,
    TrainingJobStatus,
    format_validation_error,
)
from trainsmart.api.conditions import Reason, StatusEvent, is_condition_true
from trainsmart.builders import (
    build_checkpoint_pvc,
    build_headless_service,
    build_report_token_secret,
    build_worker_pod,
)
from trainsmart.builders.metrics_wrapper import build_client_configmap
from trainsmart.handlers.controller_core import RESYNC_S, ControllerCore, utc_now
from trainsmart.handlers.node_prices import NodePriceLookup
from trainsmart.handlers.podcache import PodCache
from trainsmart.kube import Kube, StatusConflictError
from trainsmart.names import name_problems
from trainsmart.report_endpoint import JobKey, ReportInbox, TokenVerifier
from trainsmart.settings import OperatorSettings
from trainsmart.status import (
    Plan,
    derive_trainingjob_status,
    diagnostic_events,
    invalid_spec_status,
    plan_trainingjob,
    status_events,
)
from trainsmart.status.node_loss import NodeVerdict, StuckPod, force_delete_message, judge_node
from trainsmart.status.podview import shorten
from trainsmart.status.tracking_condition import with_tracking_condition
from trainsmart.tracking.mlflow_sync import TrackedKind, TrackingSync

log = logging.getLogger(__name__)

IDLE_RESYNC_S: Final = 600.0
"""Resync of a suspended job with no pods left: nothing about it changes with time (no GPU time, no
deadline running), so only an event (a spec edit, a pod event) has anything to act on, and the resync is
a safety net for a lost watch event. At RESYNC_S every suspended job cost a GET and a pod LIST per minute:
5,000 of them kept a 2-core apiserver busy with ~170 requests/s, and creating more jobs slowed to ~4/s
(issue 13's scale suite)."""
POD_REFUSED_RETRY_S: Final = 30.0
"""A replica pod the API refused: try again this much later (the cause, e.g. a PriorityClass, may be fixed)."""
REFUSAL_MAX_CHARS: Final = 1024
NAME_TAKEN_RETRY_S: Final = 2.0
"""A replica name still held by a pod of another object: look again soon, it is usually terminating."""


@functools.cache
def client_zipapp() -> bytes:
    """The metrics wrapper's zipapp (the stdlib-only client package), built once per process: every job's
    client ConfigMap then carries the same bytes, and the builder that wraps them stays pure."""
    from trainsmart_client.bundle import build_zipapp  # only jobs with spec.trainer.metrics need it

    return build_zipapp()


def parse_job(body: Mapping[str, Any]) -> TrainingJob | list[str]:
    """The parsed job, or the problems that make its spec unusable (one line each, with the field path)."""
    try:
        job = TrainingJob.model_validate({**body, "status": None})
    except pydantic.ValidationError as error:
        return format_validation_error(error, prefix="", model=TrainingJob)
    name = str((body.get("metadata") or {}).get("name", ""))
    return name_problems(name, job.spec.replicas) or job


def _api_message(error: ApiException) -> str:
    """The apiserver's own words for a refusal (the Status message), bounded."""
    try:
        message = str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        message = str(error.reason)
    return shorten(f"{error.status} {message}", REFUSAL_MAX_CHARS)


def may_act_before_writing_status(previous: TrainingJobStatus | None, status: TrainingJobStatus, plan: Plan) -> bool:
    """True when `plan` may be carried out before the status patch: it deletes nothing (no pod, not the
    job), so the restart-counted-before-delete invariant is untouched, and the pods it creates are of the
    attempt the *stored* status already records.

    Never while the stored status is still in a transition (Restarting, or Suspended with a resume under
    way): an operator killed between such creates and the patch would leave the new run's pods beside a
    stored status that says the old run is still being stopped, and its successor would take them for the
    old run and delete them (issue 13's chaos suite found exactly that: a duplicate pod of one attempt).
    Pods of a restart or resume are created only once the status says the transition is over."""
    stored_attempt = previous.restarts if previous is not None else 0
    in_transition = previous is not None and (
        previous.phase == TrainingJobPhase.SUSPENDED
        or is_condition_true(previous.conditions, TrainingJobConditionType.RESTARTING)
    )
    return (
        not in_transition
        and not plan.delete
        and not plan.delete_job
        and plan.attempt == stored_attempt == status.restarts
    )


def owned_pods(pods: Sequence[Mapping[str, Any]], uid: str) -> list[Mapping[str, Any]]:
    """The pods whose controller is this job: a job re-created under the same name must not inherit the
    previous one's terminating pods as failures."""
    return [
        pod
        for pod in pods
        if any(
            ref.get("uid") == uid and ref.get("controller")
            for ref in (pod.get("metadata") or {}).get("ownerReferences") or []
        )
    ]


def pod_dependencies(
    job: TrainingJob, settings: OperatorSettings, token: str, zipapp: bytes | None
) -> list[dict[str, Any]]:
    """What the pods of `job` refer to and so must exist before them: the headless Service, the checkpoint
    PVC (when the job asks for one by size), the ConfigMap carrying the metrics wrapper (a job with
    spec.trainer.metrics; `zipapp` is its content) and the report-token Secret holding `token` (when
    reports are on). The benchmark's raw floor creates the same list."""
    children = [build_headless_service(job, settings)]
    claim = build_checkpoint_pvc(job)
    if claim is not None:
        children.append(claim)
    if job.spec.trainer.metrics is not None:
        if zipapp is None:
            raise ValueError("a job with spec.trainer.metrics needs the metrics wrapper's zipapp")
        children.append(build_client_configmap(job, zipapp))
    if settings.report_url is not None:
        children.append(build_report_token_secret(job, token))
    return children


class TrainingJobController:
    """Reconciles TrainingJobs; shared by the Kopf handlers and the report endpoint through the Kopf memo."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        inbox: ReportInbox,
        tokens: TokenVerifier,
        *,
        clock: Callable[[], datetime] = utc_now,
        pods: PodCache | None = None,
        tracking: TrackingSync | None = None,
    ) -> None:
        self.kube = kube
        self.tracking = tracking
        self.core = ControllerCore(kube, TRAININGJOB_PLURAL, TrainingJobStatus, clock=clock, on_gone=self.forget)
        self.pods = pods if pods is not None else PodCache(kube.list_job_pods, refresh_after=RESYNC_S)
        self.settings = settings
        self.inbox = inbox
        self.tokens = tokens
        self.clock = clock
        self.prices = NodePriceLookup(kube, settings.pricing)
        self._accounted_until: dict[JobKey, datetime] = {}
        # job -> uid of the incarnation whose pod dependencies exist (a re-created job gets a new uid).
        self._children_ensured: dict[JobKey, str] = {}
        # job -> the body of its ADDED event while the job has no status yet (dropped once used).
        self._fresh: dict[JobKey, Mapping[str, Any]] = {}
        # job -> why the API refused one of its pods in this reconcile (posted as a Warning Event).
        self._refused: dict[JobKey, str] = {}
        # The API refused to show a node once (no RBAC for nodes): said once at WARNING, then at DEBUG.
        self._nodes_forbidden = False

    # ---- triggers (called by the Kopf handlers) ------------------------------------------------------------

    def is_own_echo(self, key: JobKey, body: Mapping[str, Any]) -> bool:
        """True for the watch event of the operator's own last status patch (nothing new to react to)."""
        return self.core.is_own_echo(key, body)

    def offer(self, key: JobKey, body: Mapping[str, Any]) -> None:
        """The job as its newest watch event carried it. Without status (just applied), the next reconcile
        starts from it instead of a GET; kept without managedFields (often most of a body, never read)."""
        if body.get("status"):
            self._fresh.pop(key, None)
            return
        meta = body.get("metadata") or {}
        self._fresh[key] = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}

    def forget(self, key: JobKey) -> None:
        """Drop what is remembered about a deleted job."""
        self._fresh.pop(key, None)
        self.pods.forget(key)
        self.inbox.forget(key)
        self.tokens.forget(key)
        self._accounted_until.pop(key, None)
        self.core.forget(key)
        self._children_ensured.pop(key, None)
        if self.tracking is not None:
            self.tracking.forget(TrackedKind.JOB, key)

    # ---- the reconcile -------------------------------------------------------------------------------------

    async def reconcile(self, key: JobKey) -> float | None:
        """One reconcile of `key`; returns seconds until the next one is due (None: on the next event)."""
        body = self._fresh.pop(key, None)
        if body is None:
            body = await self.core.read(key)
        if body is None:
            return None  # gone: `forget` ran
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # going away; its children follow by owner reference
        previous = self.core.previous_status(body)
        parsed = parse_job(body)
        if isinstance(parsed, list):
            now = self.clock()
            delay = await self.core.reconcile_invalid(
                key, body, previous, parsed, invalid_spec_status, status_events, now=now
            )
            if delay is None:
                self._accounted_until[key] = now  # the time under an invalid spec is not billed later
            return delay
        job = parsed
        uid = str(meta.get("uid", ""))
        pods = owned_pods(await self.pods.pods(key), uid)
        prices = await self.prices.prices_for(pods)
        reports = self.inbox.take(key)
        now = self.clock()
        status = derive_trainingjob_status(
            job, pods, previous, reports, now, gpu_accounted_until=self._accounted_until.get(key), prices=prices
        )
        if self.tracking is not None:  # hands the job to its MLflow sync (never waits on it), shows its health
            status = with_tracking_condition(status, self.tracking.offer_job(key, job, status, reports), now)
        plan = plan_trainingjob(job, pods, status, now)
        taken: bool | None = None
        try:
            if may_act_before_writing_status(previous, status, plan):
                # The plan first: its pod creates are what the user waits for.
                taken = await self._act(key, job, body, pods, plan)
            events = await self._write_status(key, body, previous, status, now)
        except StatusConflictError:
            log.info("%s changed while reconciling; deriving again", key)
            self.inbox.put_back(key, reports)
            return 0.0
        except BaseException:
            self.inbox.put_back(key, reports)
            raise
        if events is None:
            return None
        if taken is None:
            taken = await self._act(key, job, body, pods, plan)
        if plan.stuck:
            events = [*events, *await self._force_delete_lost(key, pods, plan.stuck, now)]
        refused = self._refused.pop(key, None)
        if refused is not None:
            log.warning("%s: a replica pod was refused: %s", key, refused)
            events = [*events, StatusEvent("Warning", Reason.POD_CREATE_REFUSED, refused)]
        await self.core.post_events(body, events)
        if refused is not None:
            return POD_REFUSED_RETRY_S
        if taken:
            return NAME_TAKEN_RETRY_S
        if plan.requeue_after is not None:
            return min(plan.requeue_after, RESYNC_S) if not plan.terminal else plan.requeue_after
        if plan.terminal:
            return None
        return IDLE_RESYNC_S if status.phase == TrainingJobPhase.SUSPENDED and not pods else RESYNC_S

    async def _write_status(
        self,
        key: JobKey,
        body: Mapping[str, Any],
        previous: TrainingJobStatus | None,
        status: TrainingJobStatus,
        now: datetime,
    ) -> list[StatusEvent] | None:
        """Patch the status if it changed; returns the Events that announce its transitions (None when the
        job is gone). StatusConflictError propagates: the caller requeues, and the next run derives from the
        newer object. The caller posts the Events after acting, so they never delay the pods."""
        written = await self.core.write_status(key, body, previous, status)
        if written is None:
            return None  # gone: `forget` ran
        self._accounted_until[key] = now
        if not written:
            return []
        return status_events(previous, status) + diagnostic_events(previous, status)

    async def _act(
        self, key: JobKey, job: TrainingJob, body: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], plan: Plan
    ) -> bool:
        """Carry out `plan`; True when a replica name was still taken by a foreign pod.

        Everything a pod depends on (`pod_dependencies`: the report-token Secret its env reads, the
        checkpoint PVC and the metrics wrapper's ConfigMap it mounts, the headless Service its peers resolve
        it by) is created before the pods, concurrently with each other, then the replicas concurrently (a
        gang is wanted anyway). A pod that reaches the scheduler or the kubelet before what it refers to
        exists gets Warning Events (FailedScheduling `persistentvolumeclaim ... not found`, FailedMount,
        `secret ... not found`) that page anyone alerting on them, and its start waits for the kubelet's
        retry back-off (issue 13); the dependencies cost one concurrent round-trip. Deletions are
        independent of both (a plan never creates a name it deletes) and go out alongside. A failed
        dependency create raises before any pod is sent; the next reconcile tries again (all creates are
        create-if-absent). What the API answers about pods is recorded in the pod cache at once."""
        uid = str((body.get("metadata") or {}).get("uid", ""))
        ensure = plan.ensure_children and bool(plan.create or self._children_ensured.get(key) != uid)
        uids = {str(pod["metadata"]["name"]): pod["metadata"].get("uid") for pod in pods}

        async def dependencies_then_replicas() -> list[bool]:
            if ensure:
                await asyncio.gather(*(self.kube.create_if_absent(child) for child in self._dependencies(job)))
                self._children_ensured[key] = uid
            return list(
                await asyncio.gather(*(self._create_replica(key, job, index, plan.attempt) for index in plan.create))
            )

        created, _ = await asyncio.gather(
            dependencies_then_replicas(),
            asyncio.gather(*(self._delete_replica(key, name, uids.get(name)) for name in plan.delete)),
        )
        taken = not all(created)
        if plan.delete_job:
            log.info("%s: ttlSecondsAfterFinished has passed; deleting the job", key)
            await self.kube.delete_trainingjob(key.namespace, key.name, uid)
            self.forget(key)
        return taken

    async def _create_replica(self, key: JobKey, job: TrainingJob, index: int, attempt: int) -> bool:
        """False when the name is taken (by a pod the cache did not show: it lists the job again).

        A pod the API refuses (a PriorityClass that does not exist, a quota, a pass-through field that is
        no Kubernetes object, which the client's own validation refuses before sending) is recorded for a
        Warning Event after the status patch and retried later: a refusal must reach the user as an Event on
        the job, never as a traceback on every retry with no status at all (issue 13's fuzz suite)."""
        pod = build_worker_pod(job, index, attempt, self.settings)
        try:
            created = await self.kube.create_if_absent(pod)
        except ApiException as error:
            if error.status is None or not 400 <= error.status < 500 or error.status == 429:
                raise  # not a refusal: the apiserver is unwell or busy
            self._refused[key] = f"pod {pod['metadata']['name']}: {_api_message(error)}"
            return True
        except (pydantic.ValidationError, ValueError, TypeError) as error:
            self._refused[key] = f"pod {pod['metadata']['name']}: {shorten(str(error), REFUSAL_MAX_CHARS)}"
            return True
        if created is None:
            self.pods.invalidate(key)
            return False
        self.pods.record_created(created)
        return True

    async def _delete_replica(self, key: JobKey, name: str, uid: str | None) -> bool:
        left = await self.kube.delete_pod(key.namespace, name, uid)
        if left is None:
            self.pods.invalidate(key)  # already gone, or another pod holds the name: look again
        elif left:
            self.pods.record_deleting(left)
        elif uid:
            self.pods.record_gone(key, name, uid)
        return True

    async def _force_delete_lost(
        self, key: JobKey, pods: Sequence[Mapping[str, Any]], stuck: Sequence[StuckPod], now: datetime
    ) -> list[StatusEvent]:
        """Force-delete the stuck pods whose node is lost (`status/node_loss.py`); their Warning Events.
        After the status patch, as every deletion: a restart is counted before its pods go."""
        after = self.settings.lost_node_force_delete_after_seconds
        if after is None:
            return []
        uids = {str(pod["metadata"]["name"]): pod["metadata"].get("uid") for pod in pods}
        verdicts: dict[str, NodeVerdict] = {}
        events: list[StatusEvent] = []
        for pod in stuck:
            if pod.node not in verdicts:
                try:
                    node = await self.kube.read_node(pod.node)
                except ApiException as error:
                    if error.status != 403:
                        raise
                    level = logging.DEBUG if self._nodes_forbidden else logging.WARNING
                    self._nodes_forbidden = True
                    log.log(
                        level,
                        "%s: pod %s waits for node %s, which the operator may not read (%s): "
                        "pods on a lost node are not force-deleted",
                        key,
                        pod.name,
                        pod.node,
                        error.reason,
                    )
                    return events
                verdicts[pod.node] = judge_node(node, now, timedelta(seconds=after))
            verdict = verdicts[pod.node]
            if not verdict.lost:
                log.debug("%s: pod %s is still terminating; its node %s %s", key, pod.name, pod.node, verdict.why)
                continue
            uid = uids.get(pod.name)
            if await self.kube.force_delete_pod(key.namespace, pod.name, uid):
                message = force_delete_message(pod.name, pod.node, verdict)
                log.warning("%s: %s", key, message)
                events.append(StatusEvent("Warning", Reason.POD_FORCE_DELETED, message))
            if uid:
                self.pods.record_gone(key, pod.name, uid)
            else:
                self.pods.invalidate(key)
        return events

    def _dependencies(self, job: TrainingJob) -> list[dict[str, Any]]:
        zipapp = client_zipapp() if job.spec.trainer.metrics is not None else None
        # The token is generated here and sent only to the API: never logged, never kept beyond this call.
        # When the Secret exists already, creation fails with AlreadyExists and its token stays.
        return pod_dependencies(job, self.settings, secrets.token_urlsafe(32), zipapp)
