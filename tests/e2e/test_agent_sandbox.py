"""The sandbox through the whole path: apiserver -> scheduler -> node agent -> namespaced processes.

Pins:
- a pod's process sees its env as the kubelet resolves it (literal + `$(VAR)`, fieldRefs incl. its own
  IP, secretKeyRef, configMapKeyRef, envFrom with prefix, resourceFieldRef), its ConfigMap and Secret
  files, an emptyDir and a PersistentVolumeClaim at their mount paths, `$(VAR)` in its args; it writes
  what it saw into the claim, where the test reads it;
- a missing Secret key keeps the container waiting with CreateContainerConfigError;
- two pods both bind port 29500 and talk over TCP by `<hostname>.<subdomain>` through their headless
  Service;
- the pods' gateway (the bridge) keeps one MAC while pods come and go;
- a claim's directory outlives its pod: a second pod reads what the first one wrote.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.waiting import wait_for
from trainsmart.devcluster.agent.sandbox.pod_network import bridge_mac
from trainsmart.devcluster.agent.volumes import claim_dir

if TYPE_CHECKING:
    from tests.e2e.conftest import RunningAgent

pytestmark = pytest.mark.e2e
DEFAULT_BRIDGE = "tsbr0"  # the agent's default, which the session agent uses

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def python_pod(name: str, code: str, **extra: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "python:3.11-slim", "command": ["python", "-c", code]}
    container.update(extra.pop("container", {}))
    spec = {"restartPolicy": "Never", "tolerations": [GPU_TOLERATION], "containers": [container], **extra}
    labels = spec.pop("labels", {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec}


def finished(core: client.CoreV1Api, ns: str, name: str, timeout: float = 60.0) -> client.V1Pod:
    def probe() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, ns)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_for(probe, timeout, f"pod {ns}/{name} to finish")


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def claim(core: client.CoreV1Api, namespace: str) -> str:
    """A claim of the default class, bound to a PV the agent provisions for it: the scheduler only places
    pods whose claims are bound. The PV points at the agent's per-claim directory, which the pod mounts."""
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "ckpt"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
    )
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("ckpt", namespace).status.phase == "Bound",
        60.0,
        "the claim to bind",
    )
    return "ckpt"


def claim_path(agent: RunningAgent, core: client.CoreV1Api, namespace: str, name: str) -> Path:
    uid = core.read_namespaced_persistent_volume_claim(name, namespace).metadata.uid
    return claim_dir(agent.state_dir, namespace, name, uid)


PROBE = """
import json, os, sys
seen = {
    "env": {k: v for k, v in os.environ.items() if k.startswith(("T_", "HP_"))},
    "argv": sys.argv[1:],
    "config": open("/etc/trainsmart/train.yaml").read(),
    "secret": open("/var/run/secrets/trainsmart/token").read(),
    "scratch": os.access("/scratch", os.W_OK),
    "hosts": open("/etc/hosts").read(),
    "hostname": os.uname().nodename,
}
json.dump(seen, open("/checkpoints/seen.json", "w"))
print("probe done", flush=True)
"""


def test_the_process_sees_env_files_and_volumes(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent, claim: str
) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "hp"}, "data": {"lr": "0.01", "train.yaml": "epochs: 3\n"}}
    )
    secret = base64.b64encode(b"s3cr3t-token").decode()
    core.create_namespaced_secret(namespace, {"metadata": {"name": "report"}, "data": {"token": secret}})
    env = [
        {"name": "T_BASE", "value": "/checkpoints"},
        {"name": "T_DIR", "value": "$(T_BASE)/run-$(T_POD)"},  # T_POD is declared later: kept verbatim
        {"name": "T_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "T_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "T_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "T_TOKEN", "valueFrom": {"secretKeyRef": {"name": "report", "key": "token"}}},
        {"name": "T_LR", "valueFrom": {"configMapKeyRef": {"name": "hp", "key": "lr"}}},
        {"name": "T_CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
    ]
    container = {
        "args": ["--lr=$(T_LR)", "$$(T_LR)"],
        "env": env,
        "envFrom": [{"configMapRef": {"name": "hp"}, "prefix": "HP_"}],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
        "volumeMounts": [
            {"name": "ckpt", "mountPath": "/checkpoints"},
            {"name": "cfg", "mountPath": "/etc/trainsmart"},
            {"name": "sec", "mountPath": "/var/run/secrets/trainsmart", "readOnly": True},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    }
    volumes = [
        {"name": "ckpt", "persistentVolumeClaim": {"claimName": claim}},
        {"name": "cfg", "configMap": {"name": "hp", "items": [{"key": "train.yaml", "path": "train.yaml"}]}},
        {"name": "sec", "secret": {"secretName": "report"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    manifest = python_pod("probe", PROBE, container=container, volumes=volumes)
    manifest["spec"]["hostname"], manifest["spec"]["subdomain"] = "probe", "grp"
    core.create_namespaced_pod(namespace, manifest)
    pod = finished(core, namespace, "probe")
    log = node_agent.container_log(pod, "main")
    assert pod.status.phase == "Succeeded", log
    seen = json.loads((claim_path(node_agent, core, namespace, claim) / "seen.json").read_text())
    assert seen["env"] == {
        "T_BASE": "/checkpoints",
        "T_DIR": "/checkpoints/run-$(T_POD)",
        "T_POD": "probe",
        "T_IP": pod.status.pod_ip,
        "T_NODE": pod.spec.node_name,
        "T_TOKEN": "s3cr3t-token",
        "T_LR": "0.01",
        "T_CPU": "500",
        "HP_lr": "0.01",
        "HP_train.yaml": "epochs: 3\n",  # a valid name (dots are): passed through exactly, no shell between
    }
    assert seen["argv"] == ["--lr=0.01", "$(T_LR)"]
    assert seen["config"] == "epochs: 3\n"
    assert seen["secret"] == "s3cr3t-token"
    assert seen["scratch"] is True
    assert seen["hostname"] == "probe"
    assert f"{pod.status.pod_ip}\tprobe.grp.{namespace}.svc.cluster.local" in seen["hosts"]
    assert pod.status.pod_ip != pod.status.host_ip


def test_a_missing_secret_key_waits_with_config_error(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent
) -> None:
    env = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]
    core.create_namespaced_pod(namespace, python_pod("waits", "pass", container={"env": env}))

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod("waits", namespace).status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting.reason if waiting and waiting.reason == "CreateContainerConfigError" else None

    assert wait_for(waiting_reason, 60.0, "CreateContainerConfigError") == "CreateContainerConfigError"


SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 29500)); s.listen()
conn, peer = s.accept()
conn.sendall(b"hello from " + socket.gethostname().encode()); conn.close()
print("served", peer[0], flush=True)
"""
CLIENT = """
import socket, time
mine = socket.socket(); mine.bind(("0.0.0.0", 29500)); mine.listen()  # the same port, in this pod
deadline = time.monotonic() + 30
while True:
    try:
        conn = socket.create_connection(("rank-0.rdzv", 29500), timeout=2); break
    except OSError:
        if time.monotonic() > deadline: raise
        time.sleep(0.1)
print(conn.recv(64).decode(), "at", socket.gethostbyname("rank-0.rdzv"), flush=True)
"""


def test_two_pods_bind_the_same_port_and_talk_by_dns_name(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent
) -> None:
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "rdzv"},
            "spec": {
                "clusterIP": "None",
                "selector": {"job": "rdzv"},
                "publishNotReadyAddresses": True,
                "ports": [{"port": 29500}],
            },
        },
    )
    for rank, code in ((0, SERVER), (1, CLIENT)):
        manifest = python_pod(f"rank-{rank}", code, labels={"job": "rdzv"}, hostname=f"rank-{rank}", subdomain="rdzv")
        core.create_namespaced_pod(namespace, manifest)
    server, client_pod = finished(core, namespace, "rank-0"), finished(core, namespace, "rank-1")
    server_log, client_log = node_agent.container_log(server, "main"), node_agent.container_log(client_pod, "main")
    assert (server.status.phase, client_pod.status.phase) == ("Succeeded", "Succeeded"), server_log + client_log
    assert f"hello from rank-0 at {server.status.pod_ip}" in client_log
    assert f"served {client_pod.status.pod_ip}" in server_log


def test_the_gateway_keeps_one_mac_while_pods_come_and_go(
    core: client.CoreV1Api, namespace: str, node_agent: RunningAgent
) -> None:
    """A bridge without its own address takes its lowest port's MAC; pods that cached the old one lost
    the gateway (the operator's report endpoint) until their ARP entry expired."""
    for name in ("mac-a", "mac-b"):
        core.create_namespaced_pod(namespace, python_pod(name, "print('ok')"))
        assert finished(core, namespace, name).status.phase == "Succeeded"
    bridge = Path("/sys/class/net") / DEFAULT_BRIDGE
    assert (bridge / "address").read_text().strip() == bridge_mac(DEFAULT_BRIDGE)
    assert (bridge / "addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET: never follows a port


def test_a_claim_outlives_its_pod(core: client.CoreV1Api, namespace: str, node_agent: RunningAgent, claim: str) -> None:
    volumes = [{"name": "ckpt", "persistentVolumeClaim": {"claimName": claim}}]
    mounts = {"volumeMounts": [{"name": "ckpt", "mountPath": "/checkpoints"}]}
    writer = "open('/checkpoints/epoch-1.pt', 'w').write('weights-1')"
    core.create_namespaced_pod(namespace, python_pod("writer", writer, container=mounts, volumes=volumes))
    assert finished(core, namespace, "writer").status.phase == "Succeeded"
    core.delete_namespaced_pod("writer", namespace, grace_period_seconds=0)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("writer", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 60.0, "the writer pod to be gone")
    assert (claim_path(node_agent, core, namespace, claim) / "epoch-1.pt").read_text() == "weights-1"
    reader = "print(open('/checkpoints/epoch-1.pt').read(), flush=True)"
    core.create_namespaced_pod(namespace, python_pod("reader", reader, container=mounts, volumes=volumes))
    pod = finished(core, namespace, "reader")
    assert pod.status.phase == "Succeeded"
    assert "weights-1" in node_agent.container_log(pod, "main")
