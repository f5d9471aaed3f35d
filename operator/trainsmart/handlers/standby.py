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
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from trainsmart.kube import Kube
from trainsmart.names import ACTIVE_LABEL
from trainsmart.options import ActiveLabelOptions

log = logging.getLogger(__name__)

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
    """Keeps `ACTIVE_LABEL` on our own pod in step with the peering object, through the operator's `Kube`
    (the one module that writes to the API). Started and stopped by the operator runtime."""

    def __init__(self, kube: Kube, options: ActiveLabelOptions) -> None:
        self.kube = kube
        self.options = options
        self.task: asyncio.Task[None] | None = None

    async def read_peers(self) -> Mapping[str, Any]:
        return await self.kube.read_peering_status(self.options.peering)

    async def set_label(self, active: bool) -> None:
        await self.kube.set_pod_label(self.options.pod, ACTIVE_LABEL, "true" if active else None)

    def start(self) -> None:
        self.task = asyncio.create_task(keep_active_label(self.read_peers, self.set_label, self.options.priority))

    async def stop(self) -> None:
        """Stop the loop and drop the label, so reports stop coming here before the process ends."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        try:
            await self.set_label(False)
        except Exception as error:  # the pod may be gone already
            log.warning("could not remove the %s label: %s", ACTIVE_LABEL, error)
