"""The Helm chart installed for real: `helm install` into a local cluster whose node agent runs the operator's
pod with the chart's ServiceAccount token (TokenRequest) and in-cluster config, and the operator trains.

Pins:
- default values: the operator issues its webhook certificate and registers the ValidatingWebhookConfiguration
  itself (with the chart's RBAC); its webhook, called over TLS verified for the Service's name with the
  registered CA bundle, refuses an invalid TrainingJob;
- namespaced mode: `helm install --wait` brings the operator up (its liveness and readiness endpoints
  answer on the pod's address, the report endpoint over HTTPS only, with the chart's certificate for the
  report Service's name); a TrainingJob in the watched namespace succeeds with the trainer's final
  metrics in status (reports reached the operator through the chart's Service name, authenticated);
  a job in an unwatched namespace is never touched; the operator logs no permission errors;
- the ServiceAccount's real token cannot list or watch Secrets, cannot read Secrets or create pods in an
  unwatched namespace or kube-system, cannot write RBAC or read webhook configurations (impersonating nothing:
  requests are made with the token the pod gets);
- `helm upgrade` to cluster-wide mode with 2 replicas: one stands by (Kopf peering) and the report Service
  selects only the other; the job that was ignored is now run to success, and so is a 2-trial sweep
  (trials are TrainingJobs the operator creates);
  still no listing of Secrets anywhere; `helm uninstall` removes the cluster-scoped RBAC again.

Why a control plane of its own (not the session's): the session may run a cluster-wide operator with
admin rights, which would also reconcile the chart's jobs, so success would prove nothing about the
chart's RBAC; the chart also installs cluster-scoped objects (CRDs, ClusterRoles, peering) that other
tests must not see. The webhook is called by the test, not the apiserver: the apiserver calls webhook
Services by ClusterIP, which the local cluster does not route (tests/cluster/test_webhook.py covers the
apiserver's side with the operator outside the cluster); later installs turn it off.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from support.manifests import ONE_THREAD_ENV, random_lr_sweep_spec, sweep_body, trainingjob_body
from support.node_agent import start_agent
from support.paths import REPO
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.agent.agent import agent_log_path
from trainsmart.devcluster.controlplane import ControlPlane

pytestmark = pytest.mark.e2e

CHART = REPO / "charts" / "trainsmart"
HELM_VERSION = "v3.18.0"
RELEASE, RELEASE_NS, SA = "ts", "trainsmart-system", "ts-trainsmart"
WATCHED, UNWATCHED = "team-a", "team-b"
BASE_VALUES = {"webhook.enabled": "false"}
JOB_SPEC = {
    "trainer": {
        "env": ONE_THREAD_ENV,
        "config": {
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "hiddenSizes": [16]},
            "batchSize": 32,
            "epochs": 1,
            "seed": 3,
        },
    }
}


def find_helm() -> str | None:
    """$TRAINSMART_HELM, then the user cache that scripts/install-helm.sh fills, then PATH."""
    if os.environ.get("TRAINSMART_HELM"):
        return os.environ["TRAINSMART_HELM"]
    cached = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / f"trainsmart/helm-{HELM_VERSION}/helm"
    return str(cached) if os.access(cached, os.X_OK) else shutil.which("helm")


@dataclass
class HelmCluster:
    """A control plane and node agent of this module's own, and helm pointed at it."""

    control_plane: ControlPlane
    api: client.ApiClient
    agent_dir: Path
    helm_home: Path

    def helm(self, *args: str, values: dict[str, str] | None = None) -> str:
        binary = find_helm()
        assert binary is not None
        sets = [arg for key, value in (values or {}).items() for arg in ("--set", f"{key}={value}")]
        env = {**os.environ, **{f"HELM_{d}_HOME": str(self.helm_home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}
        argv = [binary, *args, "--timeout", "90s", "--kubeconfig", str(self.control_plane.admin_kubeconfig), *sets]
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=150, check=False)
        assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}\n{self.operator_log()}"
        return result.stdout

    def operator_pods(self) -> list[client.V1Pod]:
        pods = client.CoreV1Api(self.api).list_namespaced_pod(RELEASE_NS).items
        return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]

    def operator_logs(self) -> dict[str, str]:
        """Each running operator pod's log, by pod name."""
        logs = {}
        for pod in self.operator_pods():
            path = agent_log_path(self.agent_dir, RELEASE_NS, pod.metadata.name, pod.metadata.uid, "operator")
            logs[pod.metadata.name] = path.read_text(errors="replace") if path.exists() else ""
        return logs

    def operator_log(self) -> str:
        """The tails of all operator logs, for failure messages."""
        return "\n".join(f"--- {name}\n{log[-5000:]}" for name, log in self.operator_logs().items())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HelmCluster]:
    if find_helm() is None:
        pytest.skip("helm is not installed: run `make helm` (scripts/install-helm.sh); `make test` does")
    control_plane = ControlPlane(log=print)
    control_plane.start()
    api = config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))
    core = client.CoreV1Api(api)
    agent_dir = tmp_path_factory.mktemp("helm-agent")
    agent = None
    try:
        # As `trainsmart dev` runs it: one GPU node and one CPU node (the operator's).
        agent = start_agent(
            control_plane.admin_kubeconfig, agent_dir, core, nodes=1, gpus_per_node=1, prefix="helm-gpu", cpu_nodes=1
        )
        for name in (WATCHED, UNWATCHED):
            core.create_namespace({"metadata": {"name": name}})
        yield HelmCluster(control_plane, api, agent_dir, tmp_path_factory.mktemp("helm-home"))
    finally:
        if agent is not None:
            agent.stop(30)
        api.close()
        control_plane.stop()


def create_job(api: client.ApiClient, namespace: str, name: str) -> None:
    body = trainingjob_body(name, JOB_SPEC)
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, body)


def job_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api)
    job = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, name)
    return dict(job.get("status") or {})


def wait_succeeded(cluster: HelmCluster, namespace: str, name: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status = job_status(cluster.api, namespace, name)
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status: dict[str, Any] = wait_for(finished, 120, f"{namespace}/{name} to finish", cluster.operator_log)
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)
    return status


def create_sweep(api: client.ApiClient, namespace: str, name: str) -> None:
    """Two 1-epoch trials at once, learning rates drawn at random."""
    body = sweep_body(name, random_lr_sweep_spec(JOB_SPEC))
    client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, body)


def sweep_finished(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    body = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, name)
    status = dict(body.get("status") or {})
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def service_account_client(cluster: HelmCluster) -> client.ApiClient:
    """A client that authenticates with a bound token of the chart's ServiceAccount (what the pod gets)."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    token = client.CoreV1Api(cluster.api).create_namespaced_service_account_token(SA, RELEASE_NS, request)
    configuration = client.Configuration()
    configuration.host = cluster.control_plane.server
    configuration.ssl_ca_cert = str(cluster.control_plane.ca_file)
    configuration.api_key = {"authorization": f"Bearer {token.status.token}"}
    return client.ApiClient(configuration)


def denied(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ApiException as exc:
        return bool(exc.status == 403)
    return False


def stands_by(log: str) -> bool:
    """Whether a replica is paused by Kopf peering: it never resumed (replicas start paused), or the last
    word was a pause (it ran alone until a higher-priority replica appeared)."""
    lines = [line for line in log.splitlines() if line.startswith(("Pausing operations", "Resuming operations"))]
    return not lines or lines[-1].startswith("Pausing operations")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a pod address we chose
            return bool(response.status == 200)
    except OSError:
        return False


def https_ok(pod_ip: str, port: int, ca: str, server_name: str) -> bool:
    """GET /healthz on the pod's address over TLS, verifying the certificate for `server_name` with `ca`."""
    context = ssl.create_default_context(cadata=ca)
    connection = http.client.HTTPSConnection(server_name, port, context=context, timeout=10)
    connection.sock = context.wrap_socket(
        socket.create_connection((pod_ip, port), timeout=10), server_hostname=server_name
    )
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    finally:
        connection.close()


def admission_review(namespace: str, name: str, spec: dict[str, Any]) -> bytes:
    job = trainingjob_body(name, spec)
    request = {
        "uid": "e2e-1",
        "kind": {"group": GROUP, "version": VERSION, "kind": "TrainingJob"},
        "resource": {"group": GROUP, "version": VERSION, "resource": TRAININGJOB_PLURAL},
        "operation": "CREATE",
        "namespace": namespace,
        "name": name,
        "object": job,
        "userInfo": {"username": "e2e"},
    }
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}).encode()


def call_webhook(pod_ip: str, ca_bundle: str, server_name: str, path: str, body: bytes) -> dict[str, Any]:
    """POST to the webhook on the pod's address, verifying its certificate for the Service's DNS name, as the
    apiserver does (the local cluster cannot route the apiserver to a Service, so the test calls the pod)."""
    context = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
    connection = http.client.HTTPSConnection(server_name, 8443, context=context, timeout=10)
    connection.sock = context.wrap_socket(
        socket.create_connection((pod_ip, 8443), timeout=10), server_hostname=server_name
    )
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        answer: dict[str, Any] = json.loads(response.read())
    finally:
        connection.close()
    return answer


def test_default_install_issues_its_webhook_certificate_and_registers_the_webhook(cluster: HelmCluster) -> None:
    cluster.helm("install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", "--wait")
    webhooks = client.AdmissionregistrationV1Api(cluster.api)

    def registered() -> Any:
        try:
            config = webhooks.read_validating_webhook_configuration("trainsmart.dev")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return config if config.webhooks and config.webhooks[0].client_config.ca_bundle else None

    try:
        config = wait_for(registered, 60, "the operator to register its webhook", cluster.operator_log)
        service = config.webhooks[0].client_config.service
        assert (service.namespace, service.name, service.port) == (RELEASE_NS, SA, 443)
        (pod,) = cluster.operator_pods()
        bad = {**JOB_SPEC, "trainer": {**JOB_SPEC["trainer"], "env": [{"name": "RANK", "value": "3"}]}}
        review = call_webhook(
            pod.status.pod_ip,
            config.webhooks[0].client_config.ca_bundle,
            f"{SA}.{RELEASE_NS}.svc",
            f"{service.path}",
            admission_review(WATCHED, "bad", bad),
        )
        assert review["response"]["allowed"] is False and "spec.trainer.env" in review["response"]["status"]["message"]
        log = cluster.operator_log()
        assert "Forbidden" not in log and "Not enough permissions" not in log, log
    finally:
        cluster.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait")
        # The configuration outlives the release (docs/helm.md); Kopf emptied it when the operator stopped.
        with contextlib.suppress(ApiException):
            webhooks.delete_validating_webhook_configuration("trainsmart.dev")
        with contextlib.suppress(ApiException):
            webhooks.delete_mutating_webhook_configuration("trainsmart.dev")


def test_namespaced_install_runs_a_job_and_nothing_else(cluster: HelmCluster) -> None:
    values = {**BASE_VALUES, "watch.mode": "namespaces", "watch.namespaces": f"{{{WATCHED}}}"}
    cluster.helm("install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", "--wait", values=values)
    (pod,) = wait_for(cluster.operator_pods, 30, "the operator pod")
    ip = pod.status.pod_ip
    wait_for(lambda: http_ok(f"http://{ip}:8081/healthz"), 60, "the liveness endpoint", cluster.operator_log)
    # The report endpoint speaks HTTPS only, with the chart's certificate for the report Service's name.
    secret = client.CoreV1Api(cluster.api).read_namespaced_secret(f"{SA}-report-tls", RELEASE_NS)
    ca = base64.b64decode(secret.data["ca.crt"]).decode()
    assert https_ok(ip, 8080, ca, f"{SA}-report.{RELEASE_NS}.svc")
    assert not http_ok(f"http://{ip}:8080/healthz")

    create_job(cluster.api, UNWATCHED, "ignored")
    create_job(cluster.api, WATCHED, "digits")
    status = wait_succeeded(cluster, WATCHED, "digits")
    assert "test_accuracy" in status["metrics"]["latest"], status  # the final report came through the Service
    assert job_status(cluster.api, UNWATCHED, "ignored") == {}
    log = cluster.operator_log()
    assert "Forbidden" not in log and "Not enough permissions" not in log, log


def test_the_service_account_cannot_do_more_than_its_job(cluster: HelmCluster) -> None:
    with service_account_client(cluster) as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        webhooks = client.AdmissionregistrationV1Api(api)
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        # What it needs works (dry run: nothing is created)...
        core.create_namespaced_pod(WATCHED, pod, dry_run="All")
        assert not denied(lambda: core.read_namespaced_secret("absent-report-token", WATCHED))  # 404, not 403
        # ...and nothing beyond it.
        assert denied(lambda: core.list_namespaced_secret(WATCHED))
        assert denied(lambda: core.list_secret_for_all_namespaces())
        assert denied(lambda: core.read_namespaced_secret("anything", UNWATCHED))
        assert denied(lambda: core.read_namespaced_secret("anything", "kube-system"))
        assert denied(lambda: core.delete_namespaced_secret("anything", WATCHED))
        assert denied(lambda: core.create_namespaced_pod(UNWATCHED, pod, dry_run="All"))
        assert denied(lambda: core.list_namespaced_pod(UNWATCHED))
        assert denied(lambda: rbac.create_cluster_role({"metadata": {"name": "x"}, "rules": []}, dry_run="All"))
        assert denied(lambda: webhooks.list_validating_webhook_configuration())


def test_cluster_wide_upgrade_with_two_replicas_runs_jobs_and_a_sweep_and_uninstall_cleans_up(
    cluster: HelmCluster,
) -> None:
    values = {**BASE_VALUES, "replicaCount": "2"}
    cluster.helm("upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--wait", values=values)
    create_sweep(cluster.api, UNWATCHED, "lr")
    wait_succeeded(cluster, UNWATCHED, "ignored")
    sweep = wait_for(
        lambda: sweep_finished(cluster.api, UNWATCHED, "lr"), 180, "the sweep to finish", cluster.operator_log
    )
    assert sweep["phase"] == "Succeeded" and len(sweep["trials"]) == 2, json.dumps(sweep, indent=1)
    assert all(row["phase"] == "Succeeded" for row in sweep["trials"]) and sweep["bestTrial"]["name"]

    # Both replicas announce themselves with distinct priorities; the lower one stands by.
    peering = client.CustomObjectsApi(cluster.api).get_cluster_custom_object(
        "kopf.dev", "v1", "clusterkopfpeerings", SA
    )
    priorities = [peer["priority"] for peer in (peering.get("status") or {}).values()]
    assert len(priorities) == 2 and len(set(priorities)) == 2, peering
    logs = cluster.operator_logs()
    assert len(logs) == 2 and sorted(map(stands_by, logs.values())) == [False, True], cluster.operator_log()
    (acting,) = [name for name, log in logs.items() if not stands_by(log)]

    def report_endpoints() -> list[str]:
        endpoints = client.CoreV1Api(cluster.api).read_namespaced_endpoints(f"{SA}-report", RELEASE_NS)
        addresses = [a for subset in endpoints.subsets or [] for a in subset.addresses or []]
        return [a.target_ref.name for a in addresses]

    # Reports reach the acting replica only (it labels its own pod; the report Service selects the label).
    wait_for(lambda: report_endpoints() == [acting], 30, "the report Service to select the acting replica")
    for log in cluster.operator_logs().values():
        assert "Forbidden" not in log and "Not enough permissions" not in log, log[-5000:]
    with service_account_client(cluster) as api:
        core = client.CoreV1Api(api)
        assert not denied(lambda: core.read_namespaced_secret("absent-report-token", UNWATCHED))
        assert denied(lambda: core.list_secret_for_all_namespaces())
        assert denied(lambda: core.list_namespaced_secret(UNWATCHED))

    cluster.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait")
    names = {role.metadata.name for role in client.RbacAuthorizationV1Api(cluster.api).list_cluster_role().items}
    assert not {f"{SA}-cluster", f"{SA}-jobs"} & names
