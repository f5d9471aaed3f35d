"""The fuzz suite's cluster: one namespace, one `trainsmart operator` with controllers *and* its admission
webhook, and a webhook configuration (ours) that sends only that namespace's objects to it.

The operator is the one users run (`trainsmart operator --webhook-port ...`), watching only the fuzz
namespace (`-n`), so a thousand fuzzed objects never reach another module's operator and other modules'
objects never reach this one. Kopf does not manage the configuration (`--webhook-configuration ""`):
Kopf's managed one cannot be scoped by namespace and the control plane is shared by the whole session.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.admission_webhook import SCOPE_LABEL, wait_enforced
from support.waiting import wait_for
from trainsmart.admission.webhook import build_webhook_configuration
from trainsmart.api import GROUP
from trainsmart.devcluster.controlplane import free_port
from trainsmart.devcluster.operator_process import OperatorProcess, listening


@dataclass
class FuzzCluster:
    namespace: str
    operator: OperatorProcess
    webhook_port: int


@pytest.fixture(scope="module")
def fuzz_namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = f"fuzz-{secrets.token_hex(3)}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def fuzz_cluster(
    api_client: client.ApiClient,
    trainsmart_crds: dict[str, Any],
    start_operator: Callable[..., OperatorProcess],
    fuzz_namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FuzzCluster]:
    """The operator (controllers and webhook) for the fuzz namespace, the webhook proven in the path."""
    cert_dir: Path = tmp_path_factory.mktemp("fuzz-webhook")
    port = free_port()
    webhook_flags = ["--webhook-host", "127.0.0.1", "--webhook-port", str(port)]
    webhook_flags += ["--webhook-cert-dir", str(cert_dir), "--webhook-configuration", ""]
    operator = start_operator(extra_args=[*webhook_flags, "-n", fuzz_namespace], timeout=60.0)
    admission = client.AdmissionregistrationV1Api(api_client)
    token = secrets.token_hex(4)
    name = f"fuzz-{token}.{GROUP}"
    try:
        wait_for(lambda: listening("127.0.0.1", port)() and (cert_dir / "ca.crt").exists(), 30, "the webhook port")
        ca_bundle = base64.b64encode((cert_dir / "ca.crt").read_bytes()).decode()
        base = {"url": f"https://127.0.0.1:{port}", "caBundle": ca_bundle}
        config = build_webhook_configuration(name, base, namespace_selector={"matchLabels": {SCOPE_LABEL: token}})
        admission.create_validating_webhook_configuration(config)
        try:
            client.CoreV1Api(api_client).patch_namespace(fuzz_namespace, {"metadata": {"labels": {SCOPE_LABEL: token}}})
            wait_enforced(api_client, fuzz_namespace)
            yield FuzzCluster(fuzz_namespace, operator, port)
        finally:
            with contextlib.suppress(ApiException):
                admission.delete_validating_webhook_configuration(name)
    finally:
        operator.stop()
        print(operator.tail(20))
