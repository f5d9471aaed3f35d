"""`trainsmart dev`: a local cluster with simulated GPU nodes that outlives the command that started it.

`up` starts a detached supervisor (`dev serve`) and waits until it reports ready; the supervisor owns the
control plane and the node agent and stops both on SIGTERM, which is all `down` sends. Everything the other
commands need is in one state directory (`state.json`, the kubeconfig, logs), so they work from any shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainsmart.devcluster.binaries import ensure_binaries
from trainsmart.devcluster.controlplane import ControlPlane

STATE_FILE = "state.json"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "trainsmart" / "dev"


@dataclass(frozen=True)
class DevOptions:
    state_dir: Path
    nodes: int = 2
    gpus_per_node: int = 4
    # GPU nodes carry the nvidia.com/gpu taint, as real GPU pools do; an untainted CPU node is where plain
    # pods (and, later, the operator) run.
    cpu_nodes: int = 1


def read_state(state_dir: Path) -> dict[str, Any] | None:
    """The running cluster's state, or None when none runs (a stale file from a crash counts as none)."""
    path = state_dir / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not _pid_alive(int(state.get("supervisorPid", 0))):
        path.unlink(missing_ok=True)
        return None
    return state


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def up(opts: DevOptions, timeout: float = 900.0) -> dict[str, Any]:
    """Start the supervisor unless one runs, and wait for it to be ready. Returns the state."""
    existing = read_state(opts.state_dir)
    if existing is not None:
        return existing
    # Binaries first, in the foreground, so a first-time build shows its progress here.
    ensure_binaries(lambda msg: print(msg, flush=True))
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = opts.state_dir / "supervisor.log"
    argv = [
        sys.executable, "-m", "trainsmart.cli", "dev", "serve",
        "--state-dir", str(opts.state_dir),
        "--nodes", str(opts.nodes),
        "--gpus-per-node", str(opts.gpus_per_node),
        "--cpu-nodes", str(opts.cpu_nodes),
    ]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(opts.state_dir)
        if state is not None and state.get("ready"):
            return state
        if proc.poll() is not None:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"the dev cluster failed to start (log: {log_path}):\n{tail}")
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"the dev cluster did not become ready in {timeout:.0f}s (log: {log_path})")


def down(state_dir: Path, timeout: float = 20.0) -> bool:
    """Stop the running cluster. Returns False when none was running."""
    state = read_state(state_dir)
    if state is None:
        return False
    pid = int(state["supervisorPid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return True


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_dir / STATE_FILE)


def _wait_for_nodes(kubeconfig: Path, count: int, agent: subprocess.Popen[bytes], timeout: float) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if agent.poll() is not None:
                raise RuntimeError(f"the node agent exited with {agent.returncode}")
            ready = [
                n
                for n in core.list_node().items
                if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or []))
            ]
            if len(ready) >= count:
                return
            time.sleep(0.1)
        raise RuntimeError(f"{count} Ready nodes did not appear within {timeout:.0f}s")
    finally:
        api.close()


def serve(opts: DevOptions) -> int:
    """The supervisor: run the control plane and the node agent until SIGTERM/SIGINT, then stop both."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    state_dir = opts.state_dir
    cp = ControlPlane(workdir=state_dir / "controlplane", log=lambda m: print(m, flush=True))
    agent: subprocess.Popen[bytes] | None = None
    try:
        cp.start()
        kubeconfig = state_dir / "kubeconfig"
        kubeconfig.write_bytes(cp.admin_kubeconfig.read_bytes())
        kubeconfig.chmod(0o600)
        agent_dir = state_dir / "agent"
        agent_dir.mkdir(exist_ok=True)
        with (state_dir / "agent.log").open("ab") as agent_log:
            agent = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trainsmart.devcluster.agent",
                    "--kubeconfig",
                    str(kubeconfig),
                    "--nodes",
                    str(opts.nodes),
                    "--gpus-per-node",
                    str(opts.gpus_per_node),
                    "--cpu-nodes",
                    str(opts.cpu_nodes),
                    "--state-dir",
                    str(agent_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=agent_log,
                stderr=subprocess.STDOUT,
            )
        _wait_for_nodes(kubeconfig, opts.nodes + opts.cpu_nodes, agent, timeout=60)
        state = {
            "ready": True,
            "supervisorPid": os.getpid(),
            "agentPid": agent.pid,
            "kubeconfig": str(kubeconfig),
            "nodes": opts.nodes,
            "gpusPerNode": opts.gpus_per_node,
            "cpuNodes": opts.cpu_nodes,
            **cp.describe(),
        }
        state["kubeconfig"] = str(kubeconfig)
        _write_state(state_dir, state)
        print(f"dev cluster ready: {cp.server}", flush=True)
        while not stop.wait(0.5):
            if agent.poll() is not None:
                print(f"node agent exited with {agent.returncode}; stopping", flush=True)
                return 1
        return 0
    finally:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        cp.stop()


def log_files(state_dir: Path, namespace: str, pod: str) -> dict[str, Path]:
    """Container name -> log file of the newest pod of that name. The agent has no kubelet server, so
    `kubectl logs` cannot work; this is its stand-in."""
    from trainsmart.devcluster.agent.kubeio import pod_log_paths

    return pod_log_paths(state_dir / "agent", namespace, pod)


def set_node_down(state_dir: Path, node: str, down: bool) -> None:
    """`trainsmart dev node down|up NODE`: ask the cluster's node agent (`agent/node_control.py`)."""
    from trainsmart.devcluster.agent.node_control import set_node_down

    set_node_down(state_dir / "agent", node, down)


def status_lines(state_dir: Path) -> list[str]:
    """Human-readable status: where the cluster is and what its GPU nodes hold."""
    state = read_state(state_dir)
    if state is None:
        return ["no dev cluster is running (start one with `trainsmart dev up`)"]
    from kubernetes import client, config

    lines = [
        f"server:     {state['server']}",
        f"kubeconfig: {state['kubeconfig']}",
        f"state dir:  {state_dir}",
        "",
        f"{'NODE':<28}{'READY':<8}{'GPUS':<8}{'GPUS USED':<11}PODS",
    ]
    api = config.new_client_from_config(config_file=str(state["kubeconfig"]))
    try:
        core = client.CoreV1Api(api)
        pods = core.list_pod_for_all_namespaces().items
        for node in core.list_node().items:
            name = node.metadata.name
            ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
            gpus = (node.status.capacity or {}).get("nvidia.com/gpu", "0")
            on_node = [p for p in pods if p.spec.node_name == name and p.status.phase in ("Pending", "Running")]
            used = sum(
                int((c.resources.limits or {}).get("nvidia.com/gpu", 0))
                for p in on_node
                for c in p.spec.containers
                if c.resources is not None
            )
            lines.append(f"{name:<28}{('yes' if ready else 'no'):<8}{gpus:<8}{used:<11}{len(on_node)}")
    finally:
        api.close()
    return lines
