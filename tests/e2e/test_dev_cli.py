"""`trainsmart dev` as a user drives it, through the real CLI and kubectl.

Pins:
- `up` prints an `export KUBECONFIG=...` line and returns with GPU nodes Ready;
- `kubectl apply` of a GPU Pod runs it to Succeeded on a simulated GPU node with a GPU index, and a plain
  Pod (no GPU, no toleration) runs on the untainted CPU node;
- `logs` prints what the pod's container wrote;
- `status` shows the nodes with their GPU capacity; a second `up` reuses the running cluster;
- `down` stops every process the cluster started, and `status` then says none runs (exit code 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PLAIN_POD = """
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo plain pod ran']
"""
POD = """
apiVersion: v1
kind: Pod
metadata: {name: hello-gpu}
spec:
  restartPolicy: Never
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo "gpus=$NVIDIA_VISIBLE_DEVICES"']
    resources: {limits: {nvidia.com/gpu: "1"}}
"""


def _trainsmart(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainsmart.cli", "dev", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _wait_phase(kubeconfig: str, pod: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    phase = ""
    while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
        phase = _kubectl(kubeconfig, "get", "pod", pod, "-n", "default", "-o", "jsonpath={.status.phase}").stdout
        time.sleep(0.2)
    return phase


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_dev_up_runs_a_pod_on_a_gpu_node_and_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    up = _trainsmart("up", "--nodes", "1", "--gpus-per-node", "2", state_dir=state_dir)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        export = [line for line in up.stdout.splitlines() if line.startswith("export KUBECONFIG=")]
        assert export, up.stdout
        kubeconfig = export[0].split("=", 1)[1]
        state = json.loads((state_dir / "state.json").read_text())
        pids = [int(state["supervisorPid"]), int(state["agentPid"]), *map(int, state["pids"].values())]

        nodes = json.loads(_kubectl(kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
        gpu_nodes = [n for n in nodes if "nvidia.com/gpu" in n["status"]["capacity"]]
        assert len(gpu_nodes) == 1
        assert len(nodes) == 2
        assert gpu_nodes[0]["status"]["capacity"]["nvidia.com/gpu"] == "2"

        for manifest, name in ((POD, "hello-gpu"), (PLAIN_POD, "plain")):
            applied = _kubectl(kubeconfig, "apply", "-n", "default", "-f", "-", stdin=manifest)
            assert applied.returncode == 0, applied.stderr
            assert _wait_phase(kubeconfig, name) == "Succeeded"
        gpu_log = _trainsmart("logs", "hello-gpu", state_dir=state_dir)
        assert gpu_log.stdout.strip() in ("gpus=0", "gpus=1"), gpu_log
        assert _trainsmart("logs", "plain", state_dir=state_dir).stdout.strip() == "plain pod ran"

        status = _trainsmart("status", state_dir=state_dir)
        assert status.returncode == 0
        assert gpu_nodes[0]["metadata"]["name"] in status.stdout

        again = _trainsmart("up", state_dir=state_dir)
        assert again.returncode == 0
        assert json.loads((state_dir / "state.json").read_text())["supervisorPid"] == state["supervisorPid"]
    finally:
        down = _trainsmart("down", state_dir=state_dir)
    assert down.returncode == 0
    assert "stopped" in down.stdout
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]
    after = _trainsmart("status", state_dir=state_dir)
    assert after.returncode == 3
    assert "no dev cluster is running" in after.stdout
    assert os.path.exists(state_dir / "supervisor.log")
