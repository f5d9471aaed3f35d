"""The real admission webhook in front of the session's apiserver, for the cluster tests that need it.

`admission_operator` runs `kopf run -m trainsmart.main` as an admission-only operator (the webhook a
`trainsmart operator` serves, nothing else); `scoped_webhook` registers our own configuration for it that
only applies to namespaces carrying a token label, so every other test keeps a webhook-free cluster, and
deletes that configuration whatever happens (it is cluster-scoped; the control plane is shared by the
whole session). Test modules wrap these in module-scoped fixtures: each module starts its own operator.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.manifests import trainingjob_body
from support.waiting import wait_for
from trainsmart.admission.webhook import WebhookCertificates, build_webhook_configuration
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.controlplane import ControlPlane, free_port
from trainsmart.devcluster.operator_process import OperatorProcess, listening

SCOPE_LABEL = "trainsmart.dev/webhook-test"
READY_TIMEOUT_S = 60.0


def job(name: str, **spec: Any) -> dict[str, Any]:
    """A small valid TrainingJob; `spec` replaces top-level spec fields."""
    base = {
        "replicas": 2,
        "trainer": {"config": {"model": {"name": "mlp"}, "dataset": {"name": "digits"}, "epochs": 2}},
    }
    return trainingjob_body(name, base | spec)


RESERVED_ENV_JOB = job("reserved-env", trainer={"env": [{"name": "WORLD_SIZE", "value": "64"}]})
"""Refused by the webhook only (the schema allows the name): proof that the webhook is in the path."""


@dataclass
class AdmissionOperator:
    port: int
    certs: WebhookCertificates
    process: OperatorProcess

    def log_tail(self) -> str:
        return self.process.tail()

    def ca_bundle(self) -> str:
        return base64.b64encode(self.certs.ca_file.read_bytes()).decode()


@contextlib.contextmanager
def admission_operator(control_plane: ControlPlane, workdir: Path, managed: str | None) -> Iterator[AdmissionOperator]:
    """`kopf run -m trainsmart.main` as an admission-only operator against the session's control plane,
    ready once its webhook port accepts connections (it serves nothing else)."""
    workdir.mkdir(parents=True, exist_ok=True)
    certs = WebhookCertificates(*(workdir / "certs" / name for name in ("tls.crt", "tls.key", "ca.crt")))
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.admin_kubeconfig),
        "TRAINSMART_OPERATOR_NO_CONTROLLERS": "true",
        "TRAINSMART_OPERATOR_WEBHOOK_HOST": "127.0.0.1",
        "TRAINSMART_OPERATOR_WEBHOOK_PORT": str(port),
        "TRAINSMART_OPERATOR_WEBHOOK_CERT_DIR": str(workdir / "certs"),
        "TRAINSMART_OPERATOR_WEBHOOK_CONFIGURATION": managed or "",
    }
    argv = [
        sys.executable,
        "-m",
        "kopf",
        "run",
        "--standalone",
        "--all-namespaces",
        "--verbose",
        "-m",
        "trainsmart.main",
    ]
    process = OperatorProcess(argv, workdir / "operator.log", listening("127.0.0.1", port), env=env, new_session=True)
    process.start(READY_TIMEOUT_S)
    try:
        yield AdmissionOperator(port, certs, process)
    finally:
        process.stop(15)


@dataclass
class ScopedWebhook:
    token: str
    operator: AdmissionOperator


@contextlib.contextmanager
def scoped_webhook(control_plane: ControlPlane, api_client: client.ApiClient, workdir: Path) -> Iterator[ScopedWebhook]:
    """The admission operator plus a webhook configuration (ours) that only applies to namespaces
    labelled with a fresh token (`scope_namespace`)."""
    token = secrets.token_hex(4)
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"webhook-test-{token}.{GROUP}"
    with admission_operator(control_plane, workdir, managed=None) as operator:
        base = {"url": f"https://127.0.0.1:{operator.port}", "caBundle": operator.ca_bundle()}
        selector = {"matchLabels": {SCOPE_LABEL: token}}
        admission.create_validating_webhook_configuration(
            build_webhook_configuration(name, base, namespace_selector=selector)
        )
        try:
            yield ScopedWebhook(token, operator)
        finally:
            with contextlib.suppress(ApiException):
                admission.delete_validating_webhook_configuration(name)


def scope_namespace(api_client: client.ApiClient, namespace: str, webhook: ScopedWebhook) -> str:
    """Label `namespace` into the webhook's scope and wait until the webhook is proven active there."""
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {SCOPE_LABEL: webhook.token}}})
    wait_enforced(api_client, namespace)
    return namespace


def create(api_client: client.ApiClient, namespace: str, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
    plural = TRAININGJOB_PLURAL if obj["kind"] == "TrainingJob" else SWEEP_PLURAL
    objects = client.CustomObjectsApi(api_client)
    kwargs = {"dry_run": "All"} if dry_run else {}
    created: dict[str, Any] = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj, **kwargs)
    return created


def refusal(call: Callable[[], object]) -> str:
    """The apiserver's message for a request the webhook refused (a 422 carrying our text)."""
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 422, info.value.body
    message: str = json.loads(info.value.body)["message"]
    assert "denied the request" in message, message
    return message


def wait_enforced(api_client: client.ApiClient, namespace: str) -> None:
    # The apiserver learns of new configurations and namespace labels through informers: wait until a
    # refusal proves the webhook is in the path (a dry run, so nothing is left behind).
    def refused() -> bool:
        try:
            create(api_client, namespace, RESERVED_ENV_JOB, dry_run=True)
        except ApiException as exc:
            if exc.status == 422 and "denied the request" in str(exc.body):
                return True
            raise
        return False

    wait_for(refused, 30, "the webhook to start refusing objects")
