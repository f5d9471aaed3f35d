"""With several operator replicas, route trainer reports to the acting one: it labels its own pod.

Why: Kopf peering pauses event handling in every replica but the one with the highest priority, but the
report endpoint is a plain HTTP server that runs in every replica. A report reaching a paused replica
would trigger a reconcile there, from a pod cache that its paused watch no longer feeds, and a stale view
must never drive writes. So the Helm chart's report Service selects only pods labelled `ACTIVE_LABEL`, and
each replica keeps that label on its own pod equal to whether it is the active peer, by the rule Kopf
pauses with: no other live peer has a priority as high as ours (replicas draw distinct random priorities,
see `trainsmart operator --peering-priority`). Trainers retry failed reports, so the seconds of a handover
lose nothing.

Why not readiness: a standby that is never Ready keeps `kubectl rollout status`, `helm --wait` and Argo
CD's health check in "Progressing" forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import kopf
from kubernetes import client

from trainsmart.kube import FIELD_MANAGER, MERGE_PATCH, new_api_client

log = logging.getLogger(__name__)

ACTIVE_LABEL: Final = "trainsmart.dev/peering-active"
CHECK_INTERVAL_S: Final = 5.0


def _alive(peer: Mapping[str, Any], now: datetime) -> bool:
    try:
        lastseen = datetime.fromisoformat(str(peer["lastseen"]))
        lifetime = timedelta(seconds=int(peer.get("lifetime", 60)))
    except (KeyError, ValueError, TypeError):
        return False
    if lastseen.tzinfo is None:
        lastseen = lastseen.replace(tzinfo=UTC)
    return lastseen + lifetime > now


def is_active(peers: Mapping[str, Any], priority: int, now: datetime) -> bool:
    """Whether the replica with `priority` acts, given a Kopf peering object's `status` (identity -> peer).

    It acts when its own entry is live and no other live entry reaches its priority (a tie pauses both).
    """
    rivals = [
        int(peer.get("priority", 0))
        for peer in peers.values()
        if isinstance(peer, Mapping) and _alive(peer, now) and int(peer.get("priority", 0)) >= priority
    ]
    return rivals == [priority]


@dataclass(frozen=True)
class PeeringRef:
    """Where this replica's peers are: a ClusterKopfPeering, or the KopfPeering in `namespace`."""

    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class OwnPod:
    namespace: str
    name: str


async def keep_active_label(
    read_peers: Callable[[], Awaitable[Mapping[str, Any]]],
    set_label: Callable[[bool], Awaitable[None]],
    priority: int,
    *,
    interval: float = CHECK_INTERVAL_S,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Forever: every `interval`, label our pod active or not; writes only on change (and once at first)."""
    labelled: bool | None = None
    while True:
        try:
            active = is_active(await read_peers(), priority, clock())
            if active != labelled:
                await set_label(active)
                log.info("this replica %s", "acts: reports come here" if active else "does not act (yet): no reports")
                labelled = active
        except Exception as error:  # an API hiccup must not end the loop; the next round retries
            log.warning("could not update the %s label: %s", ACTIVE_LABEL, error)
        await asyncio.sleep(interval)


class ActivePodLabeller:
    """The I/O side: reads the peering object and patches our own pod's label, with its own API client."""

    def __init__(self, peering: PeeringRef, pod: OwnPod, priority: int, kubeconfig: str | None = None) -> None:
        self.peering, self.pod, self.priority = peering, pod, priority
        self.api = new_api_client(kubeconfig)
        self.task: asyncio.Task[None] | None = None

    async def read_peers(self) -> Mapping[str, Any]:
        objects = client.CustomObjectsApi(self.api)
        if self.peering.namespace is None:
            body = await asyncio.to_thread(
                objects.get_cluster_custom_object, "kopf.dev", "v1", "clusterkopfpeerings", self.peering.name
            )
        else:
            body = await asyncio.to_thread(
                objects.get_namespaced_custom_object,
                "kopf.dev",
                "v1",
                self.peering.namespace,
                "kopfpeerings",
                self.peering.name,
            )
        status = body.get("status") if isinstance(body, Mapping) else None
        return status if isinstance(status, Mapping) else {}

    async def set_label(self, active: bool) -> None:
        patch = {"metadata": {"labels": {ACTIVE_LABEL: "true" if active else None}}}
        core = client.CoreV1Api(self.api)
        await asyncio.to_thread(
            core.patch_namespaced_pod,
            self.pod.name,
            self.pod.namespace,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )

    def start(self) -> None:
        self.task = asyncio.create_task(keep_active_label(self.read_peers, self.set_label, self.priority))

    async def stop(self) -> None:
        """Stop the loop and drop the label, so reports stop coming here before the process ends."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        try:
            await self.set_label(False)
        except Exception as error:  # the pod may be gone already
            log.warning("could not remove the %s label: %s", ACTIVE_LABEL, error)
        self.api.close()


def enable_active_pod_label(
    peering: PeeringRef,
    pod: OwnPod,
    priority: int,
    *,
    kubeconfig: str | None = None,
    registry: kopf.OperatorRegistry | None = None,
) -> None:
    """Register Kopf startup/cleanup handlers that keep our pod's `ACTIVE_LABEL` up to date."""
    holder: dict[str, ActivePodLabeller] = {}

    @kopf.on.startup(id="trainsmart-active-label", registry=registry)
    async def _start(**_: Any) -> None:
        labeller = ActivePodLabeller(peering, pod, priority, kubeconfig)
        labeller.start()
        holder["labeller"] = labeller

    @kopf.on.cleanup(id="trainsmart-active-label", registry=registry)
    async def _stop(**_: Any) -> None:
        labeller = holder.pop("labeller", None)
        if labeller is not None:
            await labeller.stop()
