"""The replica pods as the pod watch shows them: an informer-style cache the TrainingJob reconcile reads
instead of LISTing its job's pods every time.

Why: the pod watch (Kopf's) delivers every change of every replica pod to the operator anyway, so a LIST
per reconcile re-reads what is already known, and it sits on the critical path from `kubectl apply` to the
first pod. The cache keeps what those events say, per job.

Why reading it is still level-based (a reconcile sees the watched *state*, not a stream of edges), also
across operator restarts:

* Nothing is trusted before it was listed. A namespace is used only after one LIST of its replica pods;
  events that arrive while that LIST is in flight are replayed on top of its result (they are newer or
  equal), so nothing that happened meanwhile is lost or undone. A restarted operator starts empty and lists
  again: nothing from a previous process is believed.
* A re-list by the watch (events of type None: Kopf lists again when a watch expired with `410 Gone` or
  broke) can hide deletions that happened in the gap, since no DELETED event is ever sent for them. Such an
  event marks its namespace stale, and the next read lists it again.
* The operator's own writes are recorded from the API's answers at once (a created pod, a pod now
  terminating), so the reconcile after a create does not create again before the watch event arrives.
  An answer can arrive after the watch already told something newer, so it never overrides the watch:
  a created pod is added only where the cache has no pod of that name, a terminating pod only replaces
  the same pod (by uid) not yet marked terminating, and neither comes back once the watch said DELETED
  (the uids of recently deleted pods are remembered). A DELETED event removes a pod only if its uid
  matches, so the old pod's late DELETED cannot remove its successor of the same name.
* Every job is listed again at least every `refresh_after` seconds whatever the events said, which bounds
  how long anything the watch cannot report (a label removed by hand: the label-filtered watch then says
  nothing more about that pod) can go unnoticed.

Pods are kept slim: only the fields status derivation and the plan read (`slim_pod`), so a thousand jobs
cost little memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal

from trainsmart.api.common import TRAINER_CONTAINER_NAME
from trainsmart.names import JOB_NAME_LABEL
from trainsmart.report_endpoint import JobKey

PodLister = Callable[[str, str | None], Awaitable[list[dict[str, Any]]]]
"""(namespace, job name or None for every job) -> the replica pods, as API dicts."""

DEFAULT_REFRESH_AFTER_S: Final = 60.0
DELETED_UIDS_KEPT: Final = 4096
"""How many uids of deleted pods are remembered, so a late answer to the operator's own write cannot
bring one back (only the last moments matter: answers arrive within seconds)."""
_KEPT_METADATA: Final = ("name", "namespace", "uid", "labels", "deletionTimestamp", "deletionGracePeriodSeconds")

_Kind = Literal["put", "drop", "created", "deleting", "gone"]
_Op = tuple[_Kind, JobKey, str, str, dict[str, Any] | None]
"""(what, job, pod name, pod uid, slim pod or None)."""


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a pod the reconcile reads (`status.podview.view_pod`, owner filtering, deletes by uid):
    metadata identity, labels and deletion mark (with its grace), the controller owner's uid, the node
    it is bound to (`status/node_loss.py`), the trainer container's resource limits, and the whole
    status. Spec details and managedFields are most of a pod's size."""
    meta = pod.get("metadata") or {}
    slim_meta: dict[str, Any] = {key: meta[key] for key in _KEPT_METADATA if key in meta}
    owners = [
        {"uid": ref.get("uid"), "controller": True}
        for ref in meta.get("ownerReferences") or []
        if isinstance(ref, Mapping) and ref.get("controller")
    ]
    if owners:
        slim_meta["ownerReferences"] = owners
    containers = [
        {"name": c.get("name"), "resources": {"limits": dict((c.get("resources") or {}).get("limits") or {})}}
        for c in (pod.get("spec") or {}).get("containers") or []
        if isinstance(c, Mapping) and c.get("name") == TRAINER_CONTAINER_NAME
    ]
    spec: dict[str, Any] = {"containers": containers}
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        spec["nodeName"] = node
    return {"metadata": slim_meta, "spec": spec, "status": pod.get("status") or {}}


def job_key_of(pod: Mapping[str, Any]) -> JobKey | None:
    """The job a replica pod belongs to by its label; None for a pod without one."""
    meta = pod.get("metadata") or {}
    job = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
    if not isinstance(job, str) or not job:
        return None
    return JobKey(str(meta.get("namespace", "")), job)


class PodCache:
    """Replica pods per job, as listed and then as watched; see the module docstring for why it is safe."""

    def __init__(
        self,
        lister: PodLister,
        *,
        refresh_after: float = DEFAULT_REFRESH_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list = lister
        self._refresh_after = refresh_after
        self._clock = clock
        self._pods: dict[JobKey, dict[str, dict[str, Any]]] = {}
        self._synced: set[str] = set()
        self._stale: set[str] = set()
        self._listed_at: dict[JobKey, float] = {}
        self._syncing: dict[str, asyncio.Task[None]] = {}
        self._buffers: list[tuple[str, str | None, list[_Op]]] = []
        """(namespace, job or None, ops) per LIST in flight: what changed while it was running."""
        self._deleted: OrderedDict[str, None] = OrderedDict()

    # ---- what the watch and the operator's own writes say --------------------------------------------------

    def observe(self, event_type: str | None, pod: Mapping[str, Any]) -> JobKey | None:
        """A pod watch event (type None: part of a listing); returns the job the pod belongs to."""
        key = job_key_of(pod)
        if key is None:
            return None
        if event_type is None and key.namespace in self._synced:
            self._stale.add(key.namespace)  # a re-list: deletions in the gap were never announced
        self._feed("drop" if event_type == "DELETED" else "put", key, pod)
        return key

    def record_created(self, pod: Mapping[str, Any]) -> None:
        """A pod as the API returned it after the operator created it."""
        key = job_key_of(pod)
        if key is not None:
            self._feed("created", key, pod)

    def record_deleting(self, pod: Mapping[str, Any]) -> None:
        """A pod as the API returned it after the operator deleted it (terminating, or already gone)."""
        key = job_key_of(pod)
        if key is not None:
            self._feed("deleting", key, pod)

    def record_gone(self, key: JobKey, name: str, uid: str) -> None:
        """A pod the API says it deleted at once."""
        self._feed("gone", key, None, name, uid)

    def invalidate(self, key: JobKey) -> None:
        """List this job again before its next read (the cache and the API disagreed, e.g. a name taken)."""
        self._listed_at[key] = -float("inf")

    def forget(self, key: JobKey) -> None:
        """The job is gone: drop its bookkeeping (its pods leave with their own DELETED events)."""
        self._listed_at.pop(key, None)

    # ---- reads -------------------------------------------------------------------------------------------

    async def pods(self, key: JobKey) -> list[dict[str, Any]]:
        """The job's pods (slim dicts), listing first when the cache cannot be trusted for this job yet."""
        namespace = key.namespace
        if namespace not in self._synced or namespace in self._stale:
            await self._sync_namespace(namespace)
        listed = self._listed_at.get(key)
        if listed is None:
            self._listed_at[key] = self._clock()  # covered by the namespace's LIST and the events since
        elif self._clock() - listed >= self._refresh_after:
            await self._list_into(namespace, key.name)
        return list(self._pods.get(key, {}).values())

    def size(self) -> int:
        return sum(len(pods) for pods in self._pods.values())

    # ---- internals ---------------------------------------------------------------------------------------

    def _feed(self, kind: _Kind, key: JobKey, pod: Mapping[str, Any] | None, name: str = "", uid: str = "") -> None:
        slim = slim_pod(pod) if pod is not None else None
        if slim is not None:
            name = str(slim["metadata"].get("name", ""))
            uid = str(slim["metadata"].get("uid", ""))
        item: _Op = (kind, key, name, uid, slim)
        for namespace, job, ops in self._buffers:
            if namespace == key.namespace and job in (None, key.name):
                ops.append(item)
        if key.namespace in self._synced:
            self._apply(item)

    def _apply(self, item: _Op) -> None:
        kind, key, name, uid, slim = item
        pods = self._pods.get(key, {})
        held = pods.get(name)
        held_uid = held["metadata"].get("uid") if held is not None else None
        if kind in ("drop", "gone"):
            self._remember_deleted(uid)
            if held is not None and held_uid == uid:
                del pods[name]
        elif slim is not None and uid not in self._deleted and self._takes(kind, held, uid):
            pods[name] = slim
        if pods:
            self._pods[key] = pods
        else:
            self._pods.pop(key, None)

    @staticmethod
    def _takes(kind: _Kind, held: Mapping[str, Any] | None, uid: str) -> bool:
        """Whether `kind` news replaces `held`: the watch always; an own create only where there is no pod
        of that name; an own delete only the same pod not yet marked terminating. (Nothing comes back once
        the watch said DELETED: the caller checks that.)"""
        if kind == "put":
            return True
        if kind == "created":
            return held is None
        meta = held["metadata"] if held is not None else {}
        return kind == "deleting" and meta.get("uid") == uid and not meta.get("deletionTimestamp")

    def _remember_deleted(self, uid: str) -> None:
        self._deleted[uid] = None
        self._deleted.move_to_end(uid)
        while len(self._deleted) > DELETED_UIDS_KEPT:
            self._deleted.popitem(last=False)

    async def _sync_namespace(self, namespace: str) -> None:
        """One LIST of the namespace's replica pods, shared by every reconcile waiting for it."""
        task = self._syncing.get(namespace)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._list_into(namespace, None))
            self._syncing[namespace] = task
            task.add_done_callback(lambda _: self._syncing.pop(namespace, None))
        # A reconcile cancelled while waiting must not cancel the LIST others wait for.
        await asyncio.shield(task)

    async def _list_into(self, namespace: str, job: str | None) -> None:
        """LIST (a namespace, or one job), replace what the cache held for it, replay what changed meanwhile."""
        ops: list[_Op] = []
        entry = (namespace, job, ops)
        self._buffers.append(entry)
        if job is None:
            self._stale.discard(namespace)  # a re-list noticed from now on asks for another LIST
        started = self._clock()
        try:
            items = await self._list(namespace, job)
        except BaseException:
            if job is None and namespace in self._synced:
                self._stale.add(namespace)
            raise
        finally:
            self._buffers.remove(entry)
        fresh: dict[JobKey, dict[str, dict[str, Any]]] = {}
        for item in items:
            key = job_key_of(item)
            if key is not None and key.namespace == namespace and job in (None, key.name):
                slim = slim_pod(item)
                fresh.setdefault(key, {})[str(slim["metadata"].get("name", ""))] = slim
        if job is None:
            for key in [key for key in self._pods if key.namespace == namespace]:
                del self._pods[key]
            self._pods.update(fresh)
            self._synced.add(namespace)
        else:
            key = JobKey(namespace, job)
            self._pods.pop(key, None)
            if key in fresh:
                self._pods[key] = fresh[key]
            self._listed_at[key] = started
        for op in ops:
            self._apply(op)
