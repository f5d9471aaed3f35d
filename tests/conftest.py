"""Session-wide fixtures: one real control plane per test session, a fresh namespace per test, the CRDs,
and the one way tests start an operator.

Starting etcd + kube-apiserver + scheduler + controller-manager costs a few seconds, so every test that
needs a cluster shares one; isolation comes from namespaces (and cluster-scoped objects named per test).
Every operator a test runs is started through `start_operator` (or, for another command line, through
`OperatorProcess` itself), so each one dies with the test process and is stopped by the end of the session.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config

from support.crds import install_crds
from trainsmart.devcluster.controlplane import ControlPlane
from trainsmart.devcluster.operator_process import OperatorProcess, trainsmart_operator

OperatorStarter = Callable[..., OperatorProcess]


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


@pytest.fixture(scope="session")
def trainsmart_crds(api_client: client.ApiClient) -> dict[str, dict[str, Any]]:
    """The generated CRDs, installed and served; returns them by name as loaded from crds/."""
    return install_crds(api_client)


@pytest.fixture(scope="session")
def start_operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorStarter]:
    """Start `trainsmart operator` against the session's control plane and return it once /healthz answers.

    Keyword options are `trainsmart_operator`'s (`report_host`, `metrics`, `extra_args`) and `timeout`.
    /metrics is off unless asked for: the CLI's fixed default port would collide between parallel runs.
    The caller stops what it started (a module's operator with the module); whatever still runs at the
    end of the session is stopped then."""
    started: list[OperatorProcess] = []

    def start(*, timeout: float = 30.0, metrics: tuple[str, int] = ("127.0.0.1", 0), **options: Any) -> OperatorProcess:
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        operator = trainsmart_operator(control_plane.admin_kubeconfig, log, metrics=metrics, **options)
        started.append(operator)
        operator.start(timeout)
        return operator

    try:
        yield start
    finally:
        for operator in started:
            operator.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`tests/scale` runs before `tests/e2e`: the e2e suite's operator (watching every namespace) and node
    agent are session fixtures, so after it a second operator would reconcile the scale tests' jobs and
    the agent would run their pods, and the scale figures would not be one operator's (4x slower there)."""
    scale = [item for item in items if item.path.parent.name == "scale"]
    first_e2e = next((i for i, item in enumerate(items) if item.path.parent.name == "e2e"), None)
    if not scale or first_e2e is None or items.index(scale[0]) < first_e2e:
        return
    rest = [item for item in items if item not in scale]
    at = rest.index(items[first_e2e])
    items[:] = [*rest[:at], *scale, *rest[at:]]
