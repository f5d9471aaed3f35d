"""Which GPU price applies on which node, read from real Node objects of the session's apiserver.

Pins (`handlers/node_prices.py`):
- a GPU pod's node is priced by its `nodeLabel` value; another value, no label or a node that does not
  exist get the default price; pods without GPUs or not yet scheduled cause no read;
- a node's label value is cached for the TTL: a relabelled node is priced anew only once it expired;
- with one price for every node (no per-label prices) nothing is read at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from support import models
from trainsmart.handlers.node_prices import NodePriceLookup
from trainsmart.kube import Kube
from trainsmart.settings import GpuPricing

pytestmark = [pytest.mark.cluster]

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"
PRICING = GpuPricing(price_per_gpu_hour=2.0, by_label_value={H100: 6.0, "NVIDIA-A100-SXM4-80GB": 3.0})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingKube(Kube):
    """The real client, counting node reads (to see the cache work)."""

    reads = 0

    async def read_node(self, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return await super().read_node(name)


@pytest.fixture
def nodes(api_client: client.ApiClient) -> Iterator[dict[str, str]]:
    """Two nodes named for this test: one labelled as an H100 node, one without the label."""
    core = client.CoreV1Api(api_client)
    suffix = secrets.token_hex(3)
    names = {"h100": f"cost-h100-{suffix}", "plain": f"cost-plain-{suffix}"}
    core.create_node(
        client.V1Node(metadata=client.V1ObjectMeta(name=names["h100"], labels={"nvidia.com/gpu.product": H100}))
    )
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name=names["plain"])))
    try:
        yield names
    finally:
        for name in names.values():
            core.delete_node(name)


def pod_on(node: str, index: int, gpus: int = 1) -> dict[str, Any]:
    job = models.make_job({"replicas": 4, "gpusPerReplica": gpus})
    pod = models.replica_pod(job, index, started=T0, now=T0)
    if node:
        pod["spec"]["nodeName"] = node
    return pod


@pytest.mark.asyncio
async def test_gpu_pods_are_priced_by_their_nodes_label_value(
    api_client: client.ApiClient, nodes: dict[str, str]
) -> None:
    kube = CountingKube(api_client)
    try:
        lookup = NodePriceLookup(kube, PRICING)
        pods = [pod_on(nodes["h100"], 0), pod_on(nodes["plain"], 1), pod_on("no-such-node", 2), pod_on("", 3)]
        prices = await lookup.prices_for(pods)
        assert prices is not None
        assert prices.per_gpu_hour(nodes["h100"]) == 6.0
        assert prices.per_gpu_hour(nodes["plain"]) == prices.per_gpu_hour("no-such-node") == 2.0
        assert kube.reads == 3  # the unscheduled pod's node is not looked up
        cpu_only = [pod_on(f"cpu-{secrets.token_hex(3)}", 0, gpus=0)]
        await lookup.prices_for(cpu_only)
        assert kube.reads == 3
    finally:
        kube.close()


@pytest.mark.asyncio
async def test_a_relabelled_node_is_priced_anew_once_its_cached_value_expired(
    api_client: client.ApiClient, nodes: dict[str, str]
) -> None:
    kube = CountingKube(api_client)
    clock = Clock()
    try:
        lookup = NodePriceLookup(kube, PRICING, ttl=600.0, clock=clock)
        assert await lookup.label_value(nodes["plain"]) is None
        patch = {"metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}}}
        client.CoreV1Api(api_client).patch_node(nodes["plain"], patch)
        clock.now = 599.0
        assert await lookup.label_value(nodes["plain"]) is None and kube.reads == 1
        clock.now = 601.0
        prices = await lookup.prices_for([pod_on(nodes["plain"], 0)])
        assert prices is not None and prices.per_gpu_hour(nodes["plain"]) == 3.0 and kube.reads == 2
    finally:
        kube.close()


@pytest.mark.asyncio
async def test_with_one_price_for_every_node_nothing_is_read(
    api_client: client.ApiClient, nodes: dict[str, str]
) -> None:
    kube = CountingKube(api_client)
    try:
        prices = await NodePriceLookup(kube, GpuPricing(price_per_gpu_hour=2.0)).prices_for([pod_on(nodes["h100"], 0)])
        assert prices is not None and prices.per_gpu_hour(nodes["h100"]) == 2.0 and kube.reads == 0
        assert await NodePriceLookup(kube, None).prices_for([pod_on(nodes["h100"], 0)]) is None
    finally:
        kube.close()
