"""The node agent with the real control plane: real scheduler placement, real garbage collection, real
processes in real sandboxes.

Pins:
- a 1-GPU pod with the GPU toleration lands on one of the agent's nodes and succeeds, quickly, with a
  kubelet-shaped status (exit code, reason, IPs, conditions), a Started event and its output in the
  agent's log file;
- exit code 3 under Never -> Failed with exitCode 3;
- OnFailure restarts a failing container (the emptyDir survives the restart) until it succeeds;
- two pods sharing a node see disjoint GPU indices and the simulated-GPU marker;
- force-deleted GPU pods (gone from the API at once, their processes still stopping) hand their GPUs to
  the pods the scheduler binds next: those wait for them and run, none fails admission;
- a pod asking for more GPUs than any node has stays Pending with the scheduler's FailedScheduling
  event (Insufficient nvidia.com/gpu);
- deleting an owner garbage-collects its dependents through the real controller-manager, both ways:
  a deleted Pod takes its ConfigMap along, a deleted ConfigMap takes its Pod along;
- deletion with a grace period sends SIGTERM first (the process traps it), then the object goes away;
- restarting the agent after a crash does not duplicate processes: the old one is killed, the pod's
  container is restarted once;
- a CPU node (no GPUs, no taint) runs a pod without the GPU toleration, with no devices visible.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

if TYPE_CHECKING:
    from tests.e2e.conftest import AgentStarter, RunningAgent

pytestmark = pytest.mark.e2e

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def pod_manifest(
    name: str,
    script: str,
    *,
    gpus: int = 0,
    policy: str = "Never",
    node: str | None = None,
    grace: int | None = None,
    volumes: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "python:3.11-slim", "command": ["sh", "-c", script]}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {"restartPolicy": policy, "tolerations": [GPU_TOLERATION], "containers": [container]}
    if node:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    if volumes:
        spec["volumes"] = volumes
    metadata: dict[str, Any] = {"name": name}
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def wait_pod(
    core: client.CoreV1Api, ns: str, name: str, done: Callable[[client.V1Pod], bool], timeout: float = 60.0
) -> client.V1Pod:
    deadline = time.monotonic() + timeout
    while True:
        pod = core.read_namespaced_pod(name, ns)
        if done(pod):
            return pod
        if time.monotonic() > deadline:
            raise AssertionError(f"pod {ns}/{name} did not get there in {timeout:.0f}s: {pod.status}")
        time.sleep(0.05)


def phase_is(*phases: str) -> Callable[[client.V1Pod], bool]:
    return lambda pod: pod.status.phase in phases


def wait_gone(read: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.05)
    raise AssertionError(f"still there after {timeout:.0f}s")


@pytest.fixture
def core(api_client: client.ApiClient, node_agent: RunningAgent) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


def test_gpu_pod_lands_on_a_gpu_node_and_succeeds(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent
) -> None:
    started = time.monotonic()
    core.create_namespaced_pod(
        namespace, pod_manifest("one-gpu", 'echo "gpus=$NVIDIA_VISIBLE_DEVICES"; sleep 1', gpus=1)
    )
    running = wait_pod(core, namespace, "one-gpu", phase_is("Running", "Succeeded"))
    to_running = time.monotonic() - started
    pod = wait_pod(core, namespace, "one-gpu", phase_is("Succeeded", "Failed"))
    assert pod.status.phase == "Succeeded", node_agent.tail()
    assert to_running < 5, f"create -> Running took {to_running:.2f}s"
    assert pod.spec.node_name in node_agent.node_names
    assert running.status.pod_ip and pod.status.host_ip
    (status,) = pod.status.container_statuses
    assert status.state.terminated.exit_code == 0
    assert status.state.terminated.reason == "Completed"
    assert status.container_id.startswith("trainsmart://")
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions == {"PodScheduled": "True", "Initialized": "True", "Ready": "False", "ContainersReady": "False"}
    assert re.fullmatch(r"gpus=[0-3]\n", node_agent.container_log(pod, "main"))
    events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=one-gpu").items
    started = [e for e in events if e.reason == "Started"]
    assert started and started[0].source.host == pod.spec.node_name


def test_exit_code_3_fails_the_pod(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_manifest("three", "exit 3"))
    pod = wait_pod(core, namespace, "three", phase_is("Succeeded", "Failed"))
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")


@pytest.mark.skipif(os.geteuid() != 0, reason="volumes at their mount paths need the root sandbox")
def test_on_failure_restarts_until_success(core: client.CoreV1Api, namespace: str) -> None:
    script = "test -e /scratch/tried && exit 0; touch /scratch/tried; exit 1"
    manifest = pod_manifest(
        "flaky",
        script,
        policy="OnFailure",
        volumes=[{"name": "scratch", "emptyDir": {}}],
        mounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    core.create_namespaced_pod(namespace, manifest)
    pod = wait_pod(core, namespace, "flaky", phase_is("Succeeded", "Failed"))
    assert pod.status.phase == "Succeeded"
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1


def test_pods_sharing_a_node_get_distinct_gpus(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent
) -> None:
    node = node_agent.node_names[-1]
    script = 'echo "$CUDA_VISIBLE_DEVICES $TRAINSMART_SIMULATED_GPUS"; sleep 2'
    for name in ("left", "right"):
        core.create_namespaced_pod(namespace, pod_manifest(name, script, gpus=2, node=node))
    pods = [wait_pod(core, namespace, n, phase_is("Succeeded", "Failed")) for n in ("left", "right")]
    assert [p.status.phase for p in pods] == ["Succeeded", "Succeeded"]
    seen = [node_agent.container_log(p, "main").split() for p in pods]
    assert [marker for _, marker in seen] == ["1", "1"]
    left, right = ({int(i) for i in devices.split(",")} for devices, _ in seen)
    assert len(left) == len(right) == 2
    assert left.isdisjoint(right)
    assert left | right <= set(range(node_agent.gpus_per_node))


def test_too_many_gpus_stays_pending_with_failed_scheduling(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, pod_manifest("greedy", "true", gpus=64))
    deadline = time.monotonic() + 30
    messages: list[str] = []
    while time.monotonic() < deadline:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=greedy").items
        messages = [e.message for e in events if e.reason == "FailedScheduling"]
        if messages:
            break
        time.sleep(0.1)
    assert any("Insufficient nvidia.com/gpu" in m for m in messages), messages
    pod = core.read_namespaced_pod("greedy", namespace)
    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name


def owner_ref(kind: str, obj: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "name": obj.metadata.name, "uid": obj.metadata.uid}


def test_deleted_pod_takes_its_configmap_along(core: client.CoreV1Api, namespace: str) -> None:
    pod = core.create_namespaced_pod(namespace, pod_manifest("owner", "exec sleep 300"))
    wait_pod(core, namespace, "owner", phase_is("Running"))
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "owned", "ownerReferences": [owner_ref("Pod", pod)]}, "data": {"k": "v"}}
    )
    core.delete_namespaced_pod("owner", namespace)
    wait_gone(lambda: core.read_namespaced_pod("owner", namespace))
    wait_gone(lambda: core.read_namespaced_config_map("owned", namespace))


def test_deleted_configmap_takes_its_pod_along(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"k": "v"}})
    core.create_namespaced_pod(namespace, pod_manifest("owned", "exec sleep 300", owner=owner_ref("ConfigMap", owner)))
    wait_pod(core, namespace, "owned", phase_is("Running"))
    core.delete_namespaced_config_map("owner", namespace)
    wait_gone(lambda: core.read_namespaced_pod("owned", namespace))


def test_graceful_deletion_sends_sigterm_first(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent
) -> None:
    script = "trap 'echo got-sigterm; exit 0' TERM; echo ready; sleep 300 & wait"
    core.create_namespaced_pod(namespace, pod_manifest("graceful", script, grace=20))
    pod = wait_pod(core, namespace, "graceful", phase_is("Running"))
    deadline = time.monotonic() + 10
    while "ready" not in node_agent.container_log(pod, "main") and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    core.delete_namespaced_pod("graceful", namespace)
    wait_gone(lambda: core.read_namespaced_pod("graceful", namespace))
    assert time.monotonic() - started < 10, "the process handled SIGTERM at once; no need to wait the grace out"
    assert node_agent.container_log(pod, "main") == "ready\ngot-sigterm\n"


def _pid(pod: client.V1Pod) -> int:
    return int(pod.status.container_statuses[0].container_id.removeprefix("trainsmart://"))


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_agent_restart_does_not_duplicate_processes(
    start_node_agent: AgentStarter, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    prefix = f"restart-{uuid.uuid4().hex[:6]}"
    agent = start_node_agent(tmp_path / "agent", nodes=1, gpus_per_node=1, prefix=prefix)
    node = agent.node_names[0]
    try:
        core.create_namespaced_pod(
            namespace, pod_manifest("survivor", "exec sleep 300", gpus=1, policy="Always", node=node)
        )
        first = wait_pod(core, namespace, "survivor", phase_is("Running"))
        old_pid = _pid(first)
        assert _alive(old_pid)
        agent.process.send_signal(signal.SIGKILL)  # a crash: nothing gets cleaned up
        agent.process.wait()
        assert _alive(old_pid)
        agent = start_node_agent(tmp_path / "agent", nodes=1, gpus_per_node=1, prefix=prefix)
        pod = wait_pod(
            core,
            namespace,
            "survivor",
            lambda p: p.status.container_statuses[0].restart_count == 1 and p.status.phase == "Running",
        )
        assert not _alive(old_pid)
        assert _pid(pod) != old_pid and _alive(_pid(pod))
        time.sleep(1)  # and it stays at one restart: one process, not two
        again = core.read_namespaced_pod("survivor", namespace)
        assert again.status.container_statuses[0].restart_count == 1
        assert _pid(again) == _pid(pod)
    finally:
        assert agent.stop() == 0, agent.tail()
        core.delete_namespaced_pod("survivor", namespace, grace_period_seconds=0)
        core.delete_node(node)


def test_cpu_node_runs_pods_without_gpu_toleration(
    start_node_agent: AgentStarter, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    prefix = f"cpu-{uuid.uuid4().hex[:6]}"
    agent = start_node_agent(tmp_path / "agent", nodes=0, prefix=prefix, cpu_nodes=1)
    (node,) = agent.node_names
    try:
        manifest = pod_manifest("plain", 'echo "[$CUDA_VISIBLE_DEVICES] $NVIDIA_VISIBLE_DEVICES"', node=node)
        del manifest["spec"]["tolerations"]
        core.create_namespaced_pod(namespace, manifest)
        pod = wait_pod(core, namespace, "plain", phase_is("Succeeded", "Failed"))
        assert pod.status.phase == "Succeeded"
        assert agent.container_log(pod, "main") == "[] void\n"
        assert "nvidia.com/gpu" not in (core.read_node(node).status.capacity or {})
    finally:
        assert agent.stop() == 0, agent.tail()
        core.delete_node(node)


def test_force_deleted_gpu_pods_hand_their_gpus_to_the_next_ones(
    start_node_agent: AgentStarter, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    """The bench's waves, made deterministic: one node with 2 GPUs, two pods that take a second to die on
    SIGTERM, force-deleted and replaced at once by two pods needing the same GPUs, three times over."""
    prefix = f"wave-{uuid.uuid4().hex[:6]}"
    agent = start_node_agent(tmp_path / "agent", nodes=1, gpus_per_node=2, prefix=prefix)
    (node,) = agent.node_names
    slow_to_die = "trap 'sleep 1; exit 0' TERM; echo up; sleep 300 & wait"
    try:
        previous: list[str] = []
        for wave in range(3):
            names = [f"w{wave}-{i}" for i in range(2)]
            for name in previous:
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            for name in names:
                core.create_namespaced_pod(namespace, pod_manifest(name, slow_to_die, gpus=1, node=node))
            for name in names:
                pod = wait_pod(core, namespace, name, phase_is("Running", "Failed", "Succeeded"), timeout=30)
                assert pod.status.phase == "Running", f"{name}: {pod.status.reason}: {pod.status.message}"
                # Running is reported at launch; wait for the trap, so the next delete finds it installed.
                wait_pod(core, namespace, name, lambda p: agent.container_log(p, "main") == "up\n", timeout=30)
            previous = names
    finally:
        assert agent.stop() == 0, agent.tail()
        for name in previous:
            with contextlib.suppress(ApiException):
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        core.delete_node(node)
