"""The phase decision of a running TrainingJob: what its pods, its spec and its last status add up to.

Everything the decision needs to remember between reconciles is in the status the operator wrote last:
`restarts` (also the `attempt` label of the current replicas), the phase and the Running condition. A
restart is recorded in status *before* any pod is deleted (the I/O side patches status first), so a
failure is counted exactly once even though the pod that showed it disappears.

Order of the checks, first match wins (each explained where it is made):
success > permanent failure > suspension > deadline > a restart or resume in progress (wait until every
old pod is gone) > disruption (restart all, not counted) > retryable failure (restart all, counted, or
fail once backoffLimit is used up) > pending / running.

Failure policy: any replica failing restarts all of them, since DDP cannot rejoin one rank. Pods that are
being deleted never count as failures: the operator deleted them (restart, suspend) or someone did, and
a rank killed by SIGTERM exits with the trainer's TERMINATED code anyway.
Success policy: the job succeeds when every replica's trainer exited with success (0 or Reason.EARLY_STOPPED).

Which failure a message names (issue 13): when one rank dies, its peers fail a moment later ("Connection
closed by peer"), so the failure named is the earliest by the trainer container's finishedAt, and every
other failed replica follows it in the message ("...; then replica 0 exited with code 10 ..."), so the
Restarting/Failed condition and its Warning Event tell the whole story, cause first. The API keeps
finishedAt in whole seconds, and a peer usually fails within the same second: there an exit from outside
the trainer (a signal such as SIGKILL or the OOM killer, an eviction) is named before the codes a rank exits
with when it loses a peer (10 RETRYABLE_FAILURE, 13 TERMINATED, 1 an uncaught error), then the lowest index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from trainsmart.api import Reason, TrainingJob, TrainingJobConditionType, TrainingJobPhase, TrainingJobStatus
from trainsmart.api.common import TRAINER_CONTAINER_NAME
from trainsmart.api.conditions import find_condition, is_condition_true
from trainsmart.names import job_name, pod_name
from trainsmart.status.exitcodes import ExitClass, classify_exit, describe_exit_code, explain_wrapped_exit
from trainsmart.status.podview import PodState, PodView, shorten
from trainsmart_trainer.contract import ExitCode

OTHER_FAILURES_NAMED: Final = 3
"""Other failed replicas a message names after the first; the rest are counted, so the message (and the
Event, cut at 1024 characters) stays short on a job of many replicas."""
OTHER_DETAIL_MAX_CHARS: Final = 120
FOLLOW_ON_EXIT_CODES: Final = frozenset({1, ExitCode.RETRYABLE_FAILURE, ExitCode.TERMINATED})
"""Codes a rank exits with when a peer is lost (or it was told to stop): within one second, named after
an exit from outside the trainer."""


@dataclass(frozen=True)
class Verdict:
    """The phase, the restart count after this observation, and why, for the conditions."""

    phase: TrainingJobPhase
    restarts: int
    reason: str
    message: str
    recreated: str = ""
    """Set when replicas are recreated at once (a disruption with no pod left to wait for): why."""


def exit_class(view: PodView, job: TrainingJob) -> ExitClass | None:
    """The class of a pod's exit, None while it has not exited (disruptions have no class)."""
    if view.state != PodState.EXITED or view.exit_code is None:
        return None
    return classify_exit(view.exit_code, job.spec.run_policy, view.reason).exit_class


def _at(view: PodView) -> str:
    if view.finished_at is None:
        return ""
    return " at " + view.finished_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _what_happened(view: PodView) -> str:
    """`replica 1 (pod x-1) exited with code 137 (SIGKILL) at <finishedAt>`, or was stopped from outside."""
    who = f"replica {view.index} (pod {view.name})"
    if view.state == PodState.DISRUPTED:
        return f"{who} was stopped from outside ({view.reason}){_at(view)}"
    code = view.exit_code if view.exit_code is not None else 0
    where = "" if view.container == TRAINER_CONTAINER_NAME else f" in container {view.container}"
    return f"{who} exited with code {describe_exit_code(code)}{where}{_at(view)}"


def describe_failure(view: PodView, job: TrainingJob, diagnostic: str = "") -> str:
    """`replica 1 (pod x-1) exited with code 11 (PERMANENT_FAILURE) at <time>: <why>; <detail>; last
    diagnostic: ...`."""
    text = _what_happened(view)
    if view.state != PodState.DISRUPTED:
        code = view.exit_code if view.exit_code is not None else 0
        why = classify_exit(code, job.spec.run_policy, view.reason).why
        if job.spec.trainer.metrics is not None and view.container == TRAINER_CONTAINER_NAME:
            why = explain_wrapped_exit(code, view.reason, view.message) or why
        text += f": {why}"
    if view.message:
        text += f"; {view.message}"
    if diagnostic:
        text += f"; last diagnostic: {diagnostic}"
    return text


def _failure_order(view: PodView) -> tuple[float, int, int]:
    """Earliest finish (whole seconds, as the API keeps them; unknown last), then an exit from outside the
    trainer before a peer's follow-on exit (module docstring), then the index."""
    finished = view.finished_at.replace(microsecond=0).timestamp() if view.finished_at is not None else float("inf")
    follows = view.state == PodState.EXITED and view.exit_code in FOLLOW_ON_EXIT_CODES and view.reason != "OOMKilled"
    return finished, int(follows), view.index if view.index is not None else 0


def _first(views: Sequence[PodView]) -> PodView:
    """The failure to name: the earliest to finish (the root cause; the others followed)."""
    return min(views, key=_failure_order)


def describe_failures(first: PodView, failed: Sequence[PodView], job: TrainingJob, diagnostic: str = "") -> str:
    """`first` in full (`describe_failure`), then the other replicas in `failed` briefly, in the order they
    failed ("then replica 0 ...", or "earlier, replica 0 ..." for one that failed before `first`), at most
    OTHER_FAILURES_NAMED of them, then the last diagnostic."""
    text = describe_failure(first, job)
    unique = {view.name: view for view in failed if view.name != first.name}
    others = sorted(unique.values(), key=_failure_order)
    for view in others[:OTHER_FAILURES_NAMED]:
        when = "earlier, " if _failure_order(view) < _failure_order(first) else "then "
        text += f"; {when}{_what_happened(view)}"
        if view.message:
            text += f": {shorten(view.message, OTHER_DETAIL_MAX_CHARS)}"
    if len(others) > OTHER_FAILURES_NAMED:
        more = len(others) - OTHER_FAILURES_NAMED
        text += f"; and {more} more replica{'s' if more != 1 else ''} failed"
    if diagnostic:
        text += f"; last diagnostic: {diagnostic}"
    return text


def _pending_message(job: TrainingJob, current: dict[int, PodView]) -> str:
    replicas = job.spec.replicas
    if not current:
        return f"creating {replicas} replica pod{'s' if replicas != 1 else ''}"
    running = sum(1 for view in current.values() if view.state == PodState.RUNNING)
    message = f"{running}/{replicas} replicas running"
    missing = [index for index in range(replicas) if index not in current]
    if missing:
        message += f"; creating {', '.join(pod_name(job_name(job), i) for i in missing)}"
    waiting = next((view for view in current.values() if view.state == PodState.PENDING and view.reason), None)
    if waiting is not None:
        detail = f": {waiting.message}" if waiting.message else ""
        message += f"; replica {waiting.index} is waiting: {waiting.reason}{detail}"
    return message


def decide(
    job: TrainingJob,
    previous: TrainingJobStatus,
    views: Sequence[PodView],
    restarts: int,
    start_time: datetime | None,
    now: datetime,
    diagnostic: str = "",
) -> Verdict:
    """The verdict for a job that has not finished; `restarts` is the count recovered from status and pods."""
    spec = job.spec
    replicas, limit = spec.replicas, spec.run_policy.backoff_limit
    current = {view.index: view for view in views if view.index is not None and view.is_current(restarts, replicas)}
    classes = {index: exit_class(view, job) for index, view in current.items()}
    restarting = is_condition_true(previous.conditions, TrainingJobConditionType.RESTARTING)
    resuming = previous.phase == TrainingJobPhase.SUSPENDED and not spec.suspend

    # Evidence first: every replica finished well, even if a suspension or restart was just requested.
    if len(current) == replicas and all(value == ExitClass.SUCCESS for value in classes.values()):
        early = any(view.exit_code not in (0, None) for view in current.values())
        how = " (stopped early by the trainer's early-stopping rule)" if early else ""
        return Verdict(
            TrainingJobPhase.SUCCEEDED, restarts, Reason.TRAINING_SUCCEEDED, f"all {replicas} replicas succeeded{how}"
        )
    live = [view for index, view in current.items() if not view.terminating]
    in_transition = restarting or resuming
    permanent = [view for view in live if classes[view.index or 0] == ExitClass.PERMANENT]
    failed = [
        view
        for view in live
        if view.state == PodState.DISRUPTED
        or classes.get(view.index or 0) in (ExitClass.RETRYABLE, ExitClass.PERMANENT)
    ]
    if permanent and not in_transition:
        message = describe_failures(_first(permanent), failed, job, diagnostic)
        return Verdict(TrainingJobPhase.FAILED, restarts, Reason.PERMANENT_EXIT_CODE, message)
    if spec.suspend:
        message = "spec.suspend is true: replicas are stopped (the trainer checkpoints on SIGTERM) until it is false"
        return Verdict(TrainingJobPhase.SUSPENDED, restarts, Reason.SUSPENDED_BY_USER, message)
    deadline = spec.run_policy.active_deadline_seconds
    if deadline is not None and start_time is not None and now >= start_time + timedelta(seconds=deadline):
        since = start_time.isoformat().replace("+00:00", "Z")
        message = f"the job ran for more than activeDeadlineSeconds ({deadline} s) since it started at {since}"
        return Verdict(TrainingJobPhase.FAILED, restarts, Reason.DEADLINE_EXCEEDED, message)
    if in_transition:
        if views:
            # Names are reused, and ranks of two runs must never meet at a rendezvous: wait for all to go.
            if restarting:
                reason, message = _restart_in_progress(previous)
            else:
                count = f"{len(views)} pod{'s' if len(views) != 1 else ''}"
                reason, message = Reason.RESUMED, f"resuming: waiting for {count} of the suspended run to terminate"
            return Verdict(TrainingJobPhase.RESTARTING, restarts, reason, message)
        current, classes = {}, {}
    disrupted = [view for view in current.values() if view.state == PodState.DISRUPTED or view.terminating]
    if is_condition_true(previous.conditions, TrainingJobConditionType.RUNNING) and not in_transition:
        disrupted += [_missing(job, index, restarts) for index in range(replicas) if index not in current]
    if disrupted:
        first = _first(disrupted)
        message = (
            f"{describe_failures(first, [*disrupted, *failed], job)}; restarting all {replicas} replicas "
            f"(not counted against backoffLimit: not a training failure)"
        )
        if views:
            return Verdict(TrainingJobPhase.RESTARTING, restarts, Reason.PODS_DISRUPTED, message)
        # Nothing left to stop: recreate now. Waiting in Restarting for pod events that cannot come
        # would stall the job (and derive would not be a fixed point).
        pending = _pending_message(job, {})
        return Verdict(TrainingJobPhase.PENDING, restarts, Reason.WAITING_FOR_PODS, pending, recreated=message)
    retryable = [view for view in live if classes.get(view.index or 0) == ExitClass.RETRYABLE]
    if retryable:
        failure = describe_failures(_first(retryable), failed, job, diagnostic)
        if restarts >= limit:
            message = f"{failure}; no restarts left (backoffLimit {limit} used up)"
            return Verdict(TrainingJobPhase.FAILED, restarts, Reason.BACKOFF_LIMIT_EXCEEDED, message)
        message = f"{failure}; restarting all {replicas} replicas (restart {restarts + 1} of {limit})"
        return Verdict(TrainingJobPhase.RESTARTING, restarts + 1, Reason.RETRYABLE_EXIT_CODE, message)
    running = sum(1 for view in current.values() if view.state == PodState.RUNNING)
    up = [view.state == PodState.RUNNING or classes[index] == ExitClass.SUCCESS for index, view in current.items()]
    if len(current) == replicas and running and all(up):
        succeeded = sum(1 for value in classes.values() if value == ExitClass.SUCCESS)
        message = f"{running}/{replicas} replicas running"
        if succeeded:
            message += f", {succeeded} finished"
        return Verdict(TrainingJobPhase.RUNNING, restarts, Reason.ALL_REPLICAS_RUNNING, message)
    return Verdict(TrainingJobPhase.PENDING, restarts, Reason.WAITING_FOR_PODS, _pending_message(job, current))


def _restart_in_progress(previous: TrainingJobStatus) -> tuple[str, str]:
    """The Restarting condition as it was set when the restart began: it names the failure."""
    condition = find_condition(previous.conditions, TrainingJobConditionType.RESTARTING)
    if condition is not None and condition.reason:
        return condition.reason, condition.message or "restarting all replicas"
    return Reason.RETRYABLE_EXIT_CODE, "restarting all replicas"


def _missing(job: TrainingJob, index: int, restarts: int) -> PodView:
    """A stand-in for a replica that vanished while the job was running (deleted and already gone)."""
    name = pod_name(job_name(job), index)
    return PodView(
        name=name,
        index=index,
        attempt=restarts,
        pod_phase="Unknown",
        state=PodState.DISRUPTED,
        terminating=False,
        reason="PodDeleted",
        message="the pod disappeared while the job was running",
    )
