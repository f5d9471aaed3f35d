"""`handlers.podcache.PodCache`: the replica pods as listed and then watched, and why reads stay level-based.

Pins:
- nothing is read before its namespace was listed; concurrent first reads share one LIST;
- watch events (ADDED/MODIFIED/DELETED) keep the cache current without another LIST;
- events that arrive while a LIST is in flight are replayed on top of its result (a pod created or deleted
  meanwhile is neither lost nor resurrected);
- a re-list by the watch (an event of type None) makes the next read list the namespace again, which
  drops pods whose deletion the gap hid;
- the operator's own writes show at once (`record_created`, `record_deleting`, `record_gone`), but never
  override what the watch said later: a late answer cannot bring back a pod the watch saw deleted, nor
  replace a newer state; an old pod's late DELETED does not remove its successor of the same name;
- `invalidate` and `refresh_after` make the next read list the job again; a failed LIST raises and is
  retried by the next read;
- pods are kept slim: identity, labels, deletion mark, controller owner, trainer limits and status only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from trainsmart.api.common import GPU_RESOURCE, TRAINER_CONTAINER_NAME
from trainsmart.handlers.podcache import PodCache, slim_pod
from trainsmart.names import JOB_NAME_LABEL
from trainsmart.report_endpoint import JobKey
from trainsmart.status.podview import view_pod

JOB = JobKey("ml", "digits")


def pod(name: str, job: str = "digits", namespace: str = "ml", phase: str = "Pending", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "labels": {JOB_NAME_LABEL: job},
            "managedFields": [{"manager": "x"}],
            **meta,
        },
        "spec": {
            "containers": [
                {"name": TRAINER_CONTAINER_NAME, "resources": {"limits": {GPU_RESOURCE: "1"}}, "env": [{"name": "A"}]},
                {"name": "sidecar", "image": "busybox"},
            ],
            "volumes": [{"name": "data"}],
        },
        "status": {"phase": phase},
    }


class Lister:
    """A pod LIST standing in for the API: returns `pods` (what the cluster holds); can be held open."""

    def __init__(self, pods: list[dict[str, Any]] | None = None) -> None:
        self.pods = pods or []
        self.calls: list[tuple[str, str | None]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, namespace: str, job: str | None) -> list[dict[str, Any]]:
        self.calls.append((namespace, job))
        snapshot = [p for p in self.pods if p["metadata"]["namespace"] == namespace]
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return snapshot


def names(pods: list[dict[str, Any]]) -> list[str]:
    return sorted(p["metadata"]["name"] for p in pods)


@pytest.mark.asyncio
async def test_the_first_read_lists_the_namespace_and_later_reads_do_not() -> None:
    lister = Lister([pod("digits-0"), pod("other-0", job="other"), pod("x-0", namespace="elsewhere")])
    cache = PodCache(lister)
    assert names(await cache.pods(JOB)) == ["digits-0"]
    assert names(await cache.pods(JobKey("ml", "other"))) == ["other-0"]
    assert names(await cache.pods(JobKey("ml", "new"))) == []
    assert lister.calls == [("ml", None)]


@pytest.mark.asyncio
async def test_concurrent_first_reads_share_one_list() -> None:
    lister = Lister([pod("digits-0")])
    lister.gate = asyncio.Event()
    cache = PodCache(lister)
    reads = [asyncio.create_task(cache.pods(JobKey("ml", f"job{i}"))) for i in range(10)]
    await lister.entered.wait()
    lister.gate.set()
    await asyncio.gather(*reads)
    assert lister.calls == [("ml", None)]


@pytest.mark.asyncio
async def test_watch_events_keep_the_cache_current_without_listing() -> None:
    lister = Lister([pod("digits-0")])
    cache = PodCache(lister)
    await cache.pods(JOB)
    assert cache.observe("ADDED", pod("digits-1")) == JOB
    cache.observe("MODIFIED", pod("digits-0", phase="Running"))
    cache.observe("DELETED", pod("digits-1"))
    pods = await cache.pods(JOB)
    assert names(pods) == ["digits-0"]
    assert pods[0]["status"]["phase"] == "Running"
    assert lister.calls == [("ml", None)]


@pytest.mark.asyncio
async def test_events_during_a_list_are_replayed_on_top_of_its_result() -> None:
    lister = Lister([pod("digits-0"), pod("digits-1")])  # the snapshot the LIST returns
    lister.gate = asyncio.Event()
    cache = PodCache(lister)
    read = asyncio.create_task(cache.pods(JOB))
    await lister.entered.wait()
    cache.observe("ADDED", pod("digits-2"))  # created after the snapshot
    cache.observe("DELETED", pod("digits-1"))  # deleted after the snapshot
    cache.observe("MODIFIED", pod("digits-0", phase="Running"))
    lister.gate.set()
    pods = await read
    assert names(pods) == ["digits-0", "digits-2"]
    assert next(p for p in pods if p["metadata"]["name"] == "digits-0")["status"]["phase"] == "Running"


@pytest.mark.asyncio
async def test_a_relist_by_the_watch_makes_the_next_read_list_again() -> None:
    lister = Lister([pod("digits-0"), pod("digits-1")])
    cache = PodCache(lister)
    await cache.pods(JOB)
    # digits-1 is deleted while the watch is down: no DELETED event; the watch re-lists (type None)
    lister.pods = [pod("digits-0")]
    cache.observe(None, pod("digits-0"))
    assert names(await cache.pods(JOB)) == ["digits-0"]
    assert lister.calls == [("ml", None), ("ml", None)]
    assert names(await cache.pods(JOB)) == ["digits-0"]
    assert len(lister.calls) == 2


@pytest.mark.asyncio
async def test_own_writes_show_at_once() -> None:
    cache = PodCache(Lister([pod("digits-0")]))
    await cache.pods(JOB)
    cache.record_created(pod("digits-1"))
    cache.record_deleting(pod("digits-0", deletionTimestamp="2025-01-01T00:00:00Z"))
    pods = {p["metadata"]["name"]: p for p in await cache.pods(JOB)}
    assert set(pods) == {"digits-0", "digits-1"}
    assert pods["digits-0"]["metadata"]["deletionTimestamp"]
    cache.record_gone(JOB, "digits-1", "uid-digits-1")
    assert names(await cache.pods(JOB)) == ["digits-0"]


@pytest.mark.asyncio
async def test_a_late_delete_answer_does_not_bring_back_a_pod_the_watch_saw_go() -> None:
    cache = PodCache(Lister([pod("digits-0")]))
    await cache.pods(JOB)
    cache.observe("DELETED", pod("digits-0"))  # deleted at once (never scheduled): the event came first
    cache.record_deleting(pod("digits-0", deletionTimestamp="2025-01-01T00:00:00Z"))
    assert await cache.pods(JOB) == []


@pytest.mark.asyncio
async def test_a_late_create_answer_does_not_replace_newer_watch_state_or_a_deleted_pod() -> None:
    cache = PodCache(Lister())
    await cache.pods(JOB)
    cache.observe("ADDED", pod("digits-0"))
    cache.observe("MODIFIED", pod("digits-0", phase="Running"))
    cache.record_created(pod("digits-0"))  # the create's answer, older than both events
    assert [p["status"]["phase"] for p in await cache.pods(JOB)] == ["Running"]
    cache.observe("ADDED", pod("digits-1"))
    cache.observe("DELETED", pod("digits-1"))
    cache.record_created(pod("digits-1"))
    assert names(await cache.pods(JOB)) == ["digits-0"]


@pytest.mark.asyncio
async def test_an_old_pods_late_deleted_event_does_not_remove_its_successor() -> None:
    cache = PodCache(Lister([pod("digits-0")]))
    await cache.pods(JOB)
    cache.record_gone(JOB, "digits-0", "uid-digits-0")  # deleted at once by the operator
    successor = pod("digits-0")
    successor["metadata"]["uid"] = "uid-successor"
    cache.record_created(successor)
    cache.observe("DELETED", pod("digits-0"))  # the old pod's event, late
    assert [p["metadata"]["uid"] for p in await cache.pods(JOB)] == ["uid-successor"]


@pytest.mark.asyncio
async def test_invalidate_makes_the_next_read_list_the_job() -> None:
    lister = Lister([pod("digits-0")])
    cache = PodCache(lister)
    await cache.pods(JOB)
    lister.pods = [pod("digits-0"), pod("digits-1")]  # a pod the cache never heard of
    cache.invalidate(JOB)
    assert names(await cache.pods(JOB)) == ["digits-0", "digits-1"]
    assert lister.calls == [("ml", None), ("ml", "digits")]


@pytest.mark.asyncio
async def test_a_job_is_listed_again_after_refresh_after() -> None:
    now = [0.0]
    lister = Lister([pod("digits-0", job="digits")])
    cache = PodCache(lister, refresh_after=60.0, clock=lambda: now[0])
    await cache.pods(JOB)
    now[0] = 59.0
    await cache.pods(JOB)
    assert lister.calls == [("ml", None)]
    # the label was removed by hand: the label-filtered watch said nothing, the LIST no longer shows it
    lister.pods = []
    now[0] = 61.0
    assert await cache.pods(JOB) == []
    assert lister.calls == [("ml", None), ("ml", "digits")]


@pytest.mark.asyncio
async def test_a_failed_list_raises_and_the_next_read_lists_again() -> None:
    lister = Lister([pod("digits-0")])
    lister.fail = RuntimeError("apiserver unavailable")
    cache = PodCache(lister)
    with pytest.raises(RuntimeError):
        await cache.pods(JOB)
    lister.fail = None
    assert names(await cache.pods(JOB)) == ["digits-0"]
    assert len(lister.calls) == 2


@pytest.mark.asyncio
async def test_events_of_pods_without_a_job_label_are_ignored() -> None:
    cache = PodCache(Lister())
    await cache.pods(JOB)
    stray = pod("stray")
    del stray["metadata"]["labels"][JOB_NAME_LABEL]
    assert cache.observe("ADDED", stray) is None
    assert cache.size() == 0


@pytest.mark.asyncio
async def test_events_of_unlisted_namespaces_are_not_kept() -> None:
    cache = PodCache(Lister())
    cache.observe("ADDED", pod("digits-0"))
    assert cache.size() == 0  # the namespace's LIST will bring it


def test_pods_are_kept_slim() -> None:
    owner = {"uid": "job-uid", "controller": True, "kind": "TrainingJob", "name": "digits", "apiVersion": "x"}
    other_owner = {"uid": "other", "kind": "ConfigMap", "name": "x", "apiVersion": "v1"}
    slim = slim_pod(pod("digits-0", ownerReferences=[owner, other_owner], deletionTimestamp="t"))
    assert slim == {
        "metadata": {
            "name": "digits-0",
            "namespace": "ml",
            "uid": "uid-digits-0",
            "labels": {JOB_NAME_LABEL: "digits"},
            "deletionTimestamp": "t",
            "ownerReferences": [{"uid": "job-uid", "controller": True}],
        },
        "spec": {"containers": [{"name": TRAINER_CONTAINER_NAME, "resources": {"limits": {GPU_RESOURCE: "1"}}}]},
        "status": {"phase": "Pending"},
    }


def test_a_slim_pod_looks_the_same_to_the_reconcile_as_the_whole_pod() -> None:
    """What the plan reads of a terminating pod on a node (`status/node_loss.py`) survives slimming: the
    node-loss e2e test found the node cut away, and pods on a lost node were never force-deleted."""
    whole = pod("digits-0", deletionTimestamp="2026-12-07T12:02:00Z", deletionGracePeriodSeconds=120)
    whole["spec"]["nodeName"] = "gpu-node-7"
    whole["spec"]["containers"][0]["env"] = [{"name": "X", "value": "y"}]
    assert view_pod(slim_pod(whole)) == view_pod(whole)
    assert view_pod(slim_pod(whole)).node == "gpu-node-7"
    assert view_pod(slim_pod(whole)).deletion_requested_at is not None
