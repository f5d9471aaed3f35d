"""`trainsmart get | describe | watch | logs | report | tensorboard` against a real job: control plane, node
agent, operator and the packaged trainer, through the real CLI as a user runs it.

One training job serves every read (it is the slow part); a second one fails at once.

Pins:
- `watch` under tmux (a real terminal) shows the bar advancing while the job trains and ends with
  `job X Succeeded in ...: val_loss=...` (a lone job's objective) and exit code 0;
- `watch` of a failing job (not a terminal: plain lines) exits 1 with the final line naming the failure;
- `get` lists the job with its phase, progress and metric; `-o json` gives the object;
- `describe` tells phase, progress, objective, pods and Events;
- `logs` prints the trainer's log of rank 0 (from the local cluster's files: the agent has no kubelet);
- `report -o job.html -o job.png` writes both;
- `tensorboard --print-only` names the job's checkpoint volume directory (a local hostPath);
- an unknown name exits 2 with "list them with `trainsmart get`"; a user without RBAC exits 4 with the
  permission to ask for.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import create_job
from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV, SLOW_DIGITS
from trainsmart.devcluster.controlplane import RESTRICTED_USERS, ControlPlane

pytestmark = pytest.mark.e2e


def trainsmart(kubeconfig: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainsmart.cli", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def watch_under_tmux(kubeconfig: Path, namespace: str, job: str, timeout: float = 90) -> tuple[list[str], str]:
    """Run `trainsmart watch` in a detached tmux session; every distinct screen seen, and the last one."""
    socket = f"trainsmart-test-{secrets.token_hex(4)}"
    command = (
        f"{sys.executable} -m trainsmart.cli watch {job} -n {namespace} --kubeconfig {kubeconfig}; "
        "echo EXIT=$?; sleep 120"
    )
    tmux = ["tmux", "-L", socket]
    subprocess.run([*tmux, "new-session", "-d", "-x", "160", "-y", "20", command], check=True, env=os.environ)
    screens: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True, text=True, check=True).stdout
            if not screens or screens[-1] != screen:
                screens.append(screen)
            if "EXIT=" in screen:
                break
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    return screens, screens[-1] if screens else ""


def test_a_user_follows_reads_and_reports_a_job(
    operator_process: Any,
    node_agent: Any,
    control_plane: ControlPlane,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    kubeconfig = control_plane.admin_kubeconfig
    spec = {
        "tolerations": GPU_TOLERATIONS,
        "checkpoint": {"size": "1Gi"},
        "trainer": {"env": ONE_THREAD_ENV, "config": {**SLOW_DIGITS, "epochs": 4}},
    }
    create_job(api_client, namespace, "digits", spec)
    screens, last = watch_under_tmux(kubeconfig, namespace, "digits")
    assert "EXIT=0" in last, "\n---\n".join(screens[-3:])
    assert re.search(r"job digits Succeeded in \S+: val_loss=\d\.\d+", last), last
    percents = [int(m) for screen in screens for m in re.findall(r"(\d+)%", screen)]
    assert len(set(percents)) >= 3 and percents == sorted(percents), percents  # the bar advanced, never back

    listed = trainsmart(kubeconfig, "get", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith("digits ")]
    assert "Succeeded" in row and "4/4 (100%)" in row and "val_loss=" in row
    as_json = json.loads(trainsmart(kubeconfig, "get", "tj", "digits", "-n", namespace, "-o", "json").stdout)
    assert as_json["items"][0]["status"]["phase"] == "Succeeded"

    described = trainsmart(kubeconfig, "describe", "digits", "-n", namespace)
    assert described.returncode == 0, described.stderr
    for expected in ("Phase:        Succeeded", "epoch 4/4", "Objective:    val_loss", "digits-0", "Events:"):
        assert expected in described.stdout, described.stdout

    dev_state = tmp_path / "dev"
    dev_state.mkdir()
    (dev_state / "agent").symlink_to(node_agent.state_dir)
    logs = trainsmart(kubeconfig, "logs", "digits", "-n", namespace, "--state-dir", str(dev_state))
    assert logs.returncode == 0, logs.stderr
    assert "epoch" in logs.stdout.lower() and len(logs.stdout.splitlines()) >= 4, logs.stdout[-2000:]

    html, png = tmp_path / "job.html", tmp_path / "job.png"
    report = trainsmart(kubeconfig, "report", "digits", "-n", namespace, "-o", str(html), "-o", str(png))
    assert report.returncode == 0, report.stderr
    assert 'id="objective-curve"' in html.read_text() and png.read_bytes()[:4] == b"\x89PNG"

    board = trainsmart(kubeconfig, "tensorboard", "digits", "-n", namespace, "--print-only")
    assert board.returncode == 0, board.stderr
    claim = client.CoreV1Api(api_client).read_namespaced_persistent_volume_claim("digits-checkpoints", namespace)
    volume = client.CoreV1Api(api_client).read_persistent_volume(claim.spec.volume_name)
    assert f"--logdir_spec digits:{volume.spec.host_path.path}/tensorboard" in board.stdout, board.stdout
    assert "TensorBoard at http://localhost:6006/" in board.stdout


def test_watch_of_a_failing_job_exits_1_and_errors_say_what_to_do(
    operator_process: Any, control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    kubeconfig = control_plane.admin_kubeconfig
    spec = {
        "tolerations": GPU_TOLERATIONS,
        "runPolicy": {"backoffLimit": 0},
        "trainer": {"command": ["python3", "-c", "import sys; sys.exit(11)"], "env": ONE_THREAD_ENV},
    }
    create_job(api_client, namespace, "broken", spec)
    watched = trainsmart(kubeconfig, "watch", "broken", "-n", namespace, timeout=90)
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert watched.stdout.splitlines()[-1].startswith("job broken Failed in "), watched.stdout

    unknown = trainsmart(kubeconfig, "describe", "nope", "-n", namespace)
    assert unknown.returncode == 2
    assert f"no TrainingJob or HyperparamSweep named nope in namespace {namespace}" in unknown.stderr
    assert "list them with `trainsmart get`" in unknown.stderr

    forbidden = trainsmart(control_plane.kubeconfig(RESTRICTED_USERS[0]), "get", "-n", namespace)
    assert forbidden.returncode == 4, forbidden.stderr
    assert "forbidden: cannot list trainingjobs.trainsmart.dev" in forbidden.stderr
    assert "ask your cluster admin for get, list and watch on trainingjobs.trainsmart.dev" in forbidden.stderr
