"""End-to-end fixtures: the node agent and the operator, each its own process, against the session's
control plane.

The agent (`support.node_agent`) is started once per session: registering nodes is quick, but every test
would otherwise wait for the scheduler to see new nodes. The operator (`operator_process`) runs against
that agent's nodes, started by the session-wide `start_operator` with its report endpoint where the
agent's pods reach the host.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.node_agent import RunningAgent, start_agent
from trainsmart.devcluster.controlplane import ControlPlane, free_port
from trainsmart.devcluster.operator_process import OperatorProcess, pod_gateway

__all__ = ["AgentStarter", "RunningAgent"]  # test modules import these names from here for their hints

AgentStarter = Callable[..., RunningAgent]


@pytest.fixture(scope="session")
def start_node_agent(control_plane: ControlPlane, api_client: client.ApiClient) -> AgentStarter:
    """Start an extra agent (own state dir, own node prefix) against the session control plane; the
    caller stops it and deletes its nodes."""
    core = client.CoreV1Api(api_client)

    def start(state_dir: Path, **options: Any) -> RunningAgent:
        return start_agent(control_plane.admin_kubeconfig, state_dir, core, **options)

    return start


@pytest.fixture(scope="session")
def node_agent(
    control_plane: ControlPlane, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAgent]:
    """The session's node agent: NODES simulated nodes with GPUS_PER_NODE `nvidia.com/gpu` each."""
    core = client.CoreV1Api(api_client)
    agent = start_agent(control_plane.admin_kubeconfig, tmp_path_factory.mktemp("node-agent"), core)
    try:
        yield agent
    finally:
        code = agent.stop()
        assert code == 0, f"the node agent exited with {code}:\n{agent.tail()}"


# ---- the operator, as `trainsmart operator` runs it ----------------------------------------------------------


@pytest.fixture(scope="session")
def operator_process(
    start_operator: Callable[..., OperatorProcess],
    api_client: client.ApiClient,
    node_agent: RunningAgent,
    trainsmart_crds: dict[str, Any],
) -> Iterator[OperatorProcess]:
    """The operator, watching every namespace, its report endpoint on the pods' gateway address and its
    /metrics on loopback (where a test's Prometheus scrapes it). Tests may `kill()` and `start()` it again.
    Stopped here, before the node agent it depends on."""
    gateway = pod_gateway(client.CoreV1Api(api_client), node_agent.node_names)
    operator = start_operator(report_host=gateway, metrics=("127.0.0.1", free_port("127.0.0.1")))
    try:
        yield operator
    finally:
        operator.stop()
