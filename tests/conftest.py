"""Session-wide fixtures: one real control plane per test session, a fresh namespace per test.

Starting etcd + kube-apiserver + scheduler + controller-manager costs a few seconds, so every test that
needs a cluster shares one; isolation comes from namespaces (and cluster-scoped objects named per test).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from trainsmart.devcluster.controlplane import ControlPlane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    cp = ControlPlane(log=print)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: client.ApiClient) -> Iterator[str]:
    """A namespace named after the test, deleted afterwards (without waiting for finalization)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)
