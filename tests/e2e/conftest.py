"""End-to-end fixtures: the node agent, run as its own process against the session's control plane.

As a subprocess (not in-process) because that is how `trainsmart dev` runs it, and because its sandbox
work (network and mount namespaces, as root) must not share the test process's state. Started once per session:
registering nodes is quick, but every test would otherwise wait for the scheduler to see new nodes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from trainsmart.devcluster.agent.agent import agent_log_path
from trainsmart.devcluster.controlplane import ControlPlane, die_with_parent

NODES = 2
GPUS_PER_NODE = 4
NODE_PREFIX = "e2e-gpu"


@dataclass
class RunningAgent:
    """A node agent process and what tests need to know about it."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    node_names: tuple[str, ...]
    gpus_per_node: int

    @property
    def output(self) -> Path:
        return self.state_dir / "agent.out"

    def container_log(self, pod: client.V1Pod, container: str) -> str:
        meta = pod.metadata
        path = agent_log_path(self.state_dir, meta.namespace, meta.name, meta.uid, container)
        return path.read_text() if path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        if not self.output.exists():
            return ""
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_agent(
    kubeconfig: Path,
    state_dir: Path,
    core: client.CoreV1Api,
    *,
    nodes: int = NODES,
    gpus_per_node: int = GPUS_PER_NODE,
    prefix: str = NODE_PREFIX,
    cpu_nodes: int = 0,
    timeout: float = 60.0,
) -> RunningAgent:
    """Start `python -m trainsmart.devcluster.agent` and wait until all its nodes are Ready. CPU nodes
    are named `<prefix>-cpu-<i>`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "trainsmart.devcluster.agent",
        "--kubeconfig", str(kubeconfig),
        "--state-dir", str(state_dir),
        "--nodes", str(nodes),
        "--gpus-per-node", str(gpus_per_node),
        "--node-prefix", prefix,
        "--cpu-nodes", str(cpu_nodes),
        "--cpu-node-prefix", f"{prefix}-cpu",
    ]  # fmt: skip
    with (state_dir / "agent.out").open("ab") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
    names = [f"{prefix}-{i}" for i in range(nodes)] + [f"{prefix}-cpu-{i}" for i in range(cpu_nodes)]
    agent = RunningAgent(process, state_dir, tuple(names), gpus_per_node)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the node agent exited with {process.returncode}:\n{agent.tail()}")
        ready = {
            n.metadata.name
            for n in core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        }
        if ready >= set(agent.node_names):
            return agent
        if time.monotonic() > deadline:
            agent.stop()
            raise RuntimeError(f"nodes {agent.node_names} not Ready within {timeout:.0f}s:\n{agent.tail()}")
        time.sleep(0.05)


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


@dataclass
class RunningOperator:
    """A `python -m trainsmart.cli operator` process against the session control plane; restartable."""

    argv: list[str]
    log_path: Path
    report_base: str
    """Where tests reach the report endpoint (http://host:port)."""
    process: subprocess.Popen[bytes] | None = None
    metrics_base: str = ""
    """Where tests (and a test's Prometheus) reach the operator's /metrics (http://host:port); "" when off."""

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.report_base}/healthz", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the operator did not come up within {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies or the OOM killer strikes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def operator_argv(
    kubeconfig: Path, host: str, port: int, report_url: str, metrics: tuple[str, int] | None = None
) -> list[str]:
    """`metrics`: (host, port) of /metrics; None: not served (no fixed port that parallel runs could share)."""
    metrics_flags = (
        ["--metrics-host", metrics[0], "--metrics-port", str(metrics[1])] if metrics else ["--metrics-port", "0"]
    )
    return [
        sys.executable, "-m", "trainsmart.cli", "operator",
        "--kubeconfig", str(kubeconfig),
        "--report-host", host,
        "--report-port", str(port),
        "--report-url", report_url,
        *metrics_flags,
    ]  # fmt: skip


def pod_gateway(core: client.CoreV1Api, node_names: tuple[str, ...]) -> str:
    """Where pods reach the host: the agent's nodes' InternalIP (the pod bridge's gateway address)."""
    for node in core.list_node().items:
        if node.metadata.name in node_names:
            for address in node.status.addresses or []:
                if address.type == "InternalIP" and address.address:
                    return str(address.address)
    raise RuntimeError(f"no InternalIP on nodes {node_names}")


@pytest.fixture(scope="session")
def e2e_crds(api_client: client.ApiClient) -> None:
    """The generated CRDs, created if absent (the cluster tier's fixture is not visible here) and served."""
    import yaml
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(api_client)
    objects = client.CustomObjectsApi(api_client)
    for path in sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        try:
            extensions.create_custom_resource_definition(manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
        names = manifest["spec"]["names"]
        deadline = time.monotonic() + 30
        while True:
            try:
                objects.list_cluster_custom_object(manifest["spec"]["group"], "v1alpha1", names["plural"], limit=1)
                break
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


@pytest.fixture(scope="session")
def operator_process(
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    node_agent: RunningAgent,
    e2e_crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningOperator]:
    """The operator, watching every namespace, its report endpoint on the pods' gateway address."""
    from trainsmart.devcluster.controlplane import free_port

    gateway = pod_gateway(client.CoreV1Api(api_client), node_agent.node_names)
    port = free_port(gateway)
    base = f"http://{gateway}:{port}"
    metrics = ("127.0.0.1", free_port("127.0.0.1"))
    argv = operator_argv(control_plane.admin_kubeconfig, gateway, port, f"{base}/v1/reports", metrics)
    operator = RunningOperator(argv, tmp_path_factory.mktemp("operator") / "operator.log", base)
    operator.metrics_base = f"http://{metrics[0]}:{metrics[1]}"
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()
