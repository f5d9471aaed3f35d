"""The node agent as a subprocess against a test control plane, and what tests read from it.

As a subprocess (not in-process) because that is how `trainsmart dev` runs it, and because its sandbox
work (network and mount namespaces, as root) must not share the test process's state. It dies with the
test process (PR_SET_PDEATHSIG), so a killed run leaves no agent holding nodes and pods. The e2e tier's
session agent and the tests that need a cluster of their own (the Helm chart's) start it the same way.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from trainsmart.devcluster.agent.agent import agent_log_path
from trainsmart.devcluster.agent.node_control import set_node_down
from trainsmart.devcluster.controlplane import die_with_parent
from trainsmart.devcluster.operator_process import terminate

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

    def node_down(self, name: str) -> None:
        """Take `name` down as a failing machine (heartbeats stop, its pods' processes are SIGKILLed);
        the agent acts within `node_control.POLL_SECONDS`."""
        set_node_down(self.state_dir, name, down=True)

    def node_up(self, name: str) -> None:
        """Bring `name` back as a rebooted machine."""
        set_node_down(self.state_dir, name, down=False)

    def stop(self, timeout: float = 20.0) -> int:
        return terminate(self.process, timeout)


def start_agent(
    kubeconfig: Path,
    state_dir: Path,
    core: client.CoreV1Api,
    *,
    nodes: int = NODES,
    gpus_per_node: int = GPUS_PER_NODE,
    prefix: str = NODE_PREFIX,
    cpu_nodes: int = 0,
    extra_args: Sequence[str] = (),
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
        *extra_args,
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
