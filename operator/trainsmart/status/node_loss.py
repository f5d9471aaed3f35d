"""Replica pods left Terminating on a node that is gone: when to force-delete them.

A replica's name is deterministic (`<job>-<index>`), so a new replica cannot be created while the old pod
object exists, and a pod bound to a node is removed only when that node's kubelet confirms its containers
stopped. A node that lost power never confirms: its pods stay Terminating for ever (Kubernetes' node
lifecycle controller evicts them, which only sets the same deletionTimestamp; PodGC removes them only once
the Node object itself is deleted, or, from 1.26, when someone taints it `out-of-service`). A restarted
job would then wait with its checkpoint on disk and its other replicas idle until a person intervenes.

So the operator force-deletes (grace 0) a replica pod when both hold:
- its deletion was asked for (by the operator's restart, or the eviction) at least `CANDIDATE_AFTER`
  ago, so ordinary terminations, which finish in seconds, never cost a node read;
- its node is lost: the Node object is gone, it carries the `out-of-service` taint, or its Ready
  condition has been Unknown (the kubelet stopped posting status) for at least the configured time
  (`--lost-node-force-delete-after`, 60 s by default; on top of the node controller's own grace, 40-50 s
  on a default cluster).
A node whose kubelet reports NotReady (False) is not lost: that kubelet still runs and will finish the
deletion. The one risk is a partitioned node whose processes still run: a replica that lost its peers
fails its next collective and exits, and checkpoints are replaced atomically, so the worst case is one
stale writer for a bounded time; `--lost-node-force-delete-after -1` turns this off for clusters that
prefer a person to decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from trainsmart.status.podview import PodView, parse_time

CANDIDATE_AFTER: Final = timedelta(seconds=10)
"""A terminating pod is worth a look at its node once its deletion is this old."""
RECHECK_S: Final = 10.0
"""While a candidate remains, reconcile again this often (the node's state does not trigger the job)."""
OUT_OF_SERVICE_TAINT: Final = "node.kubernetes.io/out-of-service"
"""The taint an administrator puts on a node known to be shut down (Kubernetes' non-graceful shutdown)."""


@dataclass(frozen=True)
class StuckPod:
    """A replica pod whose deletion has waited long enough that its node deserves a look."""

    name: str
    node: str


def stuck_pods(views: Iterable[PodView], now: datetime) -> tuple[StuckPod, ...]:
    """Terminating pods, bound to a node, whose deletion was asked for at least `CANDIDATE_AFTER` ago."""
    return tuple(
        StuckPod(view.name, view.node)
        for view in views
        if view.terminating
        and view.node
        and view.deletion_requested_at is not None
        and now - view.deletion_requested_at >= CANDIDATE_AFTER
    )


def next_candidate_in(views: Iterable[PodView], now: datetime) -> float | None:
    """Seconds until the next look at a terminating pod's node: when the next one becomes a candidate,
    and every RECHECK_S while one is (None: no terminating pod on a node)."""
    waits: list[float] = []
    for view in views:
        if not (view.terminating and view.node and view.deletion_requested_at is not None):
            continue
        until = (view.deletion_requested_at + CANDIDATE_AFTER - now).total_seconds()
        waits.append(until if until > 0 else RECHECK_S)
    return min(waits) if waits else None


@dataclass(frozen=True)
class NodeVerdict:
    """Whether a node is lost, and the words for an Event that says so."""

    lost: bool
    why: str


def judge_node(node: Mapping[str, Any] | None, now: datetime, lost_after: timedelta) -> NodeVerdict:
    """Is this node (its API object; None: deleted) lost for good enough to force-delete its pods?"""
    if node is None:
        return NodeVerdict(True, "no longer exists")
    spec = node.get("spec") or {}
    for taint in spec.get("taints") or []:
        if isinstance(taint, Mapping) and taint.get("key") == OUT_OF_SERVICE_TAINT:
            return NodeVerdict(True, f"is tainted {OUT_OF_SERVICE_TAINT}")
    ready = next(
        (
            condition
            for condition in (node.get("status") or {}).get("conditions") or []
            if isinstance(condition, Mapping) and condition.get("type") == "Ready"
        ),
        None,
    )
    if ready is None or ready.get("status") != "Unknown":
        return NodeVerdict(False, "is reporting")
    since = parse_time(ready.get("lastTransitionTime"))
    if since is None or now - since < lost_after:
        return NodeVerdict(False, "stopped reporting only recently")
    heartbeat = ready.get("lastHeartbeatTime") or ready.get("lastTransitionTime")
    return NodeVerdict(
        True, f"has not reported since {heartbeat} (Ready Unknown for {int((now - since).total_seconds())} s)"
    )


def force_delete_message(pod: str, node: str, verdict: NodeVerdict) -> str:
    """The Warning Event's message: what was done, why, and the one risk to know about."""
    return (
        f"pod {pod} was force-deleted: its node {node} {verdict.why}, so its kubelet cannot finish the "
        "deletion and the replica could never be recreated; if the node is only cut off, its process may "
        "run until it notices its peers are gone"
    )
