"""The node agent as the local cluster's volume provisioner, against the real PV controller and scheduler.

Pins:
- the agent registers `trainsmart-local` as the default StorageClass;
- a claim naming no class gets it from the apiserver's DefaultStorageClass admission plugin, and it and a
  claim naming `trainsmart-local` are Bound within seconds to PVs of ours (`pvc-<claim uid>`, pre-bound
  by UID, the claim's size and access modes, reclaim Delete, hostPath at the agent's claim directory);
- a pod created together with its claim is scheduled once the claim binds; it writes a file, a second pod
  reads it;
- deleting the claim removes the PV and the directory;
- a second agent against the same cluster does not fight the first: one PV per claim, no errors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.waiting import wait_for
from trainsmart.devcluster.agent.provisioner import PROVISIONER, STORAGE_CLASS
from trainsmart.devcluster.agent.volumes import claim_dir

if TYPE_CHECKING:
    from tests.e2e.conftest import AgentStarter, RunningAgent

pytestmark = pytest.mark.e2e

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gone(read: Callable[[], object]) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    return probe


def make_claim(core: client.CoreV1Api, ns: str, name: str, size: str, modes: list[str], cls: str | None) -> None:
    spec: dict[str, Any] = {"accessModes": modes, "resources": {"requests": {"storage": size}}}
    if cls is not None:
        spec["storageClassName"] = cls
    core.create_namespaced_persistent_volume_claim(ns, {"metadata": {"name": name}, "spec": spec})


def bound(core: client.CoreV1Api, ns: str, name: str, timeout: float = 10.0) -> client.V1PersistentVolumeClaim:
    def probe() -> client.V1PersistentVolumeClaim | None:
        pvc = core.read_namespaced_persistent_volume_claim(name, ns)
        return pvc if pvc.status.phase == "Bound" else None

    found: client.V1PersistentVolumeClaim = wait_for(probe, timeout, f"claim {ns}/{name} to bind")
    return found


def python_pod(name: str, code: str, claim: str) -> dict[str, Any]:
    container = {
        "name": "main",
        "image": "python:3.11-slim",
        "command": ["python", "-c", code],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    spec = {
        "restartPolicy": "Never",
        "tolerations": [GPU_TOLERATION],
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def finished(core: client.CoreV1Api, ns: str, name: str, timeout: float = 60.0) -> client.V1Pod:
    def probe() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    found: client.V1Pod = wait_for(probe, timeout, f"pod {ns}/{name} to finish")
    return found


@pytest.fixture
def core(api_client: client.ApiClient, node_agent: RunningAgent) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


def test_claims_with_and_without_a_class_bind_to_our_volumes(
    core: client.CoreV1Api, api_client: client.ApiClient, namespace: str, node_agent: RunningAgent
) -> None:
    storage_class = client.StorageV1Api(api_client).read_storage_class(STORAGE_CLASS)
    assert storage_class.provisioner == PROVISIONER
    assert storage_class.metadata.annotations["storageclass.kubernetes.io/is-default-class"] == "true"
    assert (storage_class.volume_binding_mode, storage_class.reclaim_policy) == ("Immediate", "Delete")

    started = time.monotonic()
    make_claim(core, namespace, "plain", "1Gi", ["ReadWriteOnce"], None)
    make_claim(core, namespace, "shared", "3Gi", ["ReadWriteMany"], STORAGE_CLASS)
    plain, shared = bound(core, namespace, "plain"), bound(core, namespace, "shared")
    assert time.monotonic() - started < 10
    assert plain.spec.storage_class_name == STORAGE_CLASS  # filled in by the DefaultStorageClass plugin
    for pvc, size, modes in ((plain, "1Gi", ["ReadWriteOnce"]), (shared, "3Gi", ["ReadWriteMany"])):
        uid = pvc.metadata.uid
        assert pvc.spec.volume_name == f"pvc-{uid}"
        pv = core.read_persistent_volume(pvc.spec.volume_name)
        assert pv.metadata.annotations["pv.kubernetes.io/provisioned-by"] == PROVISIONER
        assert (pv.spec.claim_ref.name, pv.spec.claim_ref.uid) == (pvc.metadata.name, uid)
        assert pv.spec.capacity == {"storage": size} and pv.spec.access_modes == modes
        assert pv.spec.persistent_volume_reclaim_policy == "Delete"
        assert pv.spec.storage_class_name == STORAGE_CLASS
        assert pv.spec.host_path.path == str(claim_dir(node_agent.state_dir, namespace, pvc.metadata.name, uid))


def test_pods_share_a_provisioned_claim_and_deleting_it_cleans_up(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent
) -> None:
    # The pod goes in with its claim: the scheduler holds it until the claim is bound.
    make_claim(core, namespace, "ckpt", "2Gi", ["ReadWriteOnce"], None)
    writer = "open('/data/epoch-1.pt', 'w').write('weights-1')"
    core.create_namespaced_pod(namespace, python_pod("writer", writer, "ckpt"))
    pod = finished(core, namespace, "writer")
    assert pod.status.phase == "Succeeded", node_agent.container_log(pod, "main")
    pvc = core.read_namespaced_persistent_volume_claim("ckpt", namespace)
    directory = claim_dir(node_agent.state_dir, namespace, "ckpt", pvc.metadata.uid)
    assert (directory / "epoch-1.pt").read_text() == "weights-1"

    reader = "print(open('/data/epoch-1.pt').read(), flush=True)"
    core.create_namespaced_pod(namespace, python_pod("reader", reader, "ckpt"))
    pod = finished(core, namespace, "reader")
    assert pod.status.phase == "Succeeded"
    assert "weights-1" in node_agent.container_log(pod, "main")

    for name in ("writer", "reader"):  # pvc-protection keeps the claim while pods use it
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    core.delete_namespaced_persistent_volume_claim("ckpt", namespace)
    wait_for(gone(lambda: core.read_persistent_volume(pvc.spec.volume_name)), 30.0, "the volume to be deleted")
    wait_for(lambda: not directory.exists(), 30.0, "the claim directory to go")


def test_a_second_agent_does_not_fight_the_first(
    start_node_agent: AgentStarter, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    agent = start_node_agent(tmp_path / "agent", nodes=1, gpus_per_node=1, prefix=f"prov-{uuid.uuid4().hex[:6]}")
    try:
        names = [f"c{i}" for i in range(4)]
        for name in names:
            make_claim(core, namespace, name, "1Gi", ["ReadWriteOnce"], STORAGE_CLASS)
        claims = [bound(core, namespace, name) for name in names]
        uids = {pvc.metadata.uid for pvc in claims}
        ours = [pv for pv in core.list_persistent_volume().items if pv.spec.claim_ref and pv.spec.claim_ref.uid in uids]
        assert sorted(pv.metadata.name for pv in ours) == sorted(f"pvc-{uid}" for uid in uids)
        for name in names:
            core.delete_namespaced_persistent_volume_claim(name, namespace)
        for pv in ours:
            wait_for(
                gone(lambda pv=pv: core.read_persistent_volume(pv.metadata.name)),
                30.0,
                f"{pv.metadata.name} to be deleted",
            )
        assert "Traceback" not in agent.tail(200)
    finally:
        assert agent.stop() == 0, agent.tail()
        for node in agent.node_names:
            core.delete_node(node)
