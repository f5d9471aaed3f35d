"""Which GPU price applies on which node: the node's `nodeLabel` value (e.g. `nvidia.com/gpu.product`),
read with GET and kept for NODE_LABEL_TTL_S.

Why a GET cache and not a Node watch: the operator needs the labels of the few nodes its GPU pods run
on, and a GPU node's model label changes only when the node is rebuilt. A watch would need list and watch
on every node of the cluster and keep all of them (thousands on large clusters, mostly irrelevant) in
memory; the cache needs only `get` on nodes (the same verb node-loss handling uses; the chart grants it
when per-label prices are set) and holds one short string per GPU node seen. Reads happen only when
per-label prices are configured: with one price for every node there is nothing to look up.

A node the operator may not read (403), that is gone (404) or that the API cannot show right now is
priced at the default price; the cost is an estimate, and a reconcile never fails for want of a price.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from kubernetes.client.rest import ApiException

from trainsmart.settings import GpuPricing
from trainsmart.status.cost import NodePrices
from trainsmart.status.podview import view_pod

log = logging.getLogger(__name__)

NODE_LABEL_TTL_S: Final = 600.0
"""How long a node's label value is trusted: a relabelled node is priced anew within this time."""
PRUNE_ABOVE: Final = 1024
"""Cached nodes beyond which expired entries are dropped (nodes come and go in autoscaled clusters)."""


class NodeReader(Protocol):
    async def read_node(self, name: str) -> dict[str, Any] | None: ...


class NodePriceLookup:
    """The `NodePrices` for the pods of one job, with each node's label value cached."""

    def __init__(
        self,
        kube: NodeReader,
        pricing: GpuPricing | None,
        *,
        ttl: float = NODE_LABEL_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.pricing = pricing
        self.ttl = ttl
        self.clock = clock
        self._labels: dict[str, tuple[str | None, float]] = {}
        self._reading: dict[str, asyncio.Future[str | None]] = {}
        self._forbidden = False

    async def prices_for(self, pods: Sequence[Mapping[str, Any]]) -> NodePrices | None:
        """The prices for `pods` (API dicts); None when no price is configured."""
        pricing = self.pricing
        if pricing is None:
            return None
        if not pricing.by_label_value:
            return NodePrices(pricing)
        nodes = sorted({view.node for view in map(view_pod, pods) if view.gpus and view.node})
        values = await asyncio.gather(*(self.label_value(node) for node in nodes))
        return NodePrices(pricing, dict(zip(nodes, values, strict=True)))

    async def label_value(self, node: str) -> str | None:
        """The node's price label value (None: no such label, or the node cannot be read); one read per
        node at a time however many reconciles ask."""
        cached = self._labels.get(node)
        if cached is not None and self.clock() - cached[1] < self.ttl:
            return cached[0]
        reading = self._reading.get(node)
        if reading is None:
            reading = asyncio.ensure_future(self._read(node, self.pricing.node_label if self.pricing else ""))
            self._reading[node] = reading
            reading.add_done_callback(lambda _: self._reading.pop(node, None))
        # Shielded: one waiting reconcile cancelled must not cancel the read the others wait for.
        return await asyncio.shield(reading)

    async def _read(self, node: str, label: str) -> str | None:
        try:
            body = await self.kube.read_node(node)
        except ApiException as error:
            if error.status == 403:
                level = logging.DEBUG if self._forbidden else logging.WARNING
                self._forbidden = True
                log.log(
                    level, "the operator may not read node %s (%s): priced at the default price", node, error.reason
                )
            else:
                log.info("node %s could not be read (%s): priced at the default price this time", node, error.reason)
                return None  # not cached: the next reconcile asks again
            value = None
        else:
            labels = ((body or {}).get("metadata") or {}).get("labels") or {}
            raw = labels.get(label)
            value = raw if isinstance(raw, str) else None
        self._remember(node, value)
        return value

    def _remember(self, node: str, value: str | None) -> None:
        now = self.clock()
        if len(self._labels) >= PRUNE_ABOVE:
            self._labels = {name: entry for name, entry in self._labels.items() if now - entry[1] < self.ttl}
        self._labels[node] = (value, now)
