"""The chaos tier's own node agent (nodes `chaos-gpu-*`, its own state dir for the trainers' logs) and its own
operator, watching only the test's namespace, which the chaos driver SIGKILLs and restarts.

Own ones, not the e2e tier's session agent and operator: the driver kills the operator dozens of times and
reads the trainers' logs from the agent's state dir; the e2e tier must not inherit either. The driver pins
its pods to these nodes. An e2e operator watching every namespace must not be running at the same time
(it would reconcile this namespace too); pytest runs tests/chaos before tests/e2e.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from support.node_agent import RunningAgent, start_agent
from trainsmart.devcluster.controlplane import ControlPlane
from trainsmart.devcluster.operator_process import OperatorProcess, pod_gateway


@pytest.fixture(scope="module")
def chaos_agent(
    control_plane: ControlPlane, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAgent]:
    core = client.CoreV1Api(api_client)
    agent = start_agent(
        control_plane.admin_kubeconfig, tmp_path_factory.mktemp("chaos-agent"), core, prefix="chaos-gpu"
    )
    try:
        yield agent
    finally:
        agent.stop()
        for name in agent.node_names:
            try:
                core.delete_node(name)
            except client.ApiException as error:
                if error.status != 404:
                    raise


@pytest.fixture
def chaos_operator(
    start_operator: Callable[..., OperatorProcess],
    api_client: client.ApiClient,
    chaos_agent: RunningAgent,
    trainsmart_crds: dict[str, Any],
    namespace: str,
) -> Iterator[OperatorProcess]:
    gateway = pod_gateway(client.CoreV1Api(api_client), chaos_agent.node_names)
    operator = start_operator(report_host=gateway, extra_args=["--namespace", namespace])
    try:
        yield operator
    finally:
        operator.stop()
