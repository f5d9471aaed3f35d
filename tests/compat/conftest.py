"""Fixtures for the compatibility tier: the Kubernetes 1.36 CRD server (apiextensions-apiserver 0.36.4, see
trainsmart.devcluster.apiext_server) and kubectl 1.33 against it.

One server per session: starting it costs a few seconds; tests isolate by CRD group and object names (the
server has no Namespace API, and any namespace name works since NamespaceLifecycle admission is off).

- `crd_server`: the running `CrdServer` (`server`, `admin_kubeconfig`, `version`, `log_path("apiext")`).
- `crd_api`: a `kubernetes.client.ApiClient` for it, as the admin (a `system:masters` client certificate).
- `kubectl_136`: the argv prefix of kubectl against it, with a session-private discovery cache
  (`[*kubectl_136, "get", "widgets", "-n", "default"]`).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from trainsmart.devcluster.apiext_server import CrdServer, find_apiext_binaries
from trainsmart.devcluster.binaries import cache_root

REPO = Path(__file__).resolve().parents[2]
KUBECTL_SCRIPT = REPO / "scripts" / "install-kubectl.sh"


@pytest.fixture(scope="session")
def crd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrdServer]:
    """The CRD server for the whole session; its logs stay in the session's temp dir (apiext-*/logs).

    The binaries must exist already: building them takes longer than a test may (pytest-timeout), so a
    missing build fails at once with what to run (`make test` runs it first)."""
    binaries = find_apiext_binaries()
    if binaries is None:
        pytest.fail("the Kubernetes 1.36 CRD server is not built: run `make apiext` (as root, ~5 min once)")
    server = CrdServer(workdir=tmp_path_factory.mktemp("apiext"), binaries=binaries, log=print)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def crd_api(crd_server: CrdServer) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(crd_server.admin_kubeconfig))
    try:
        yield api
    finally:
        api.close()


def kubectl_binary() -> Path:
    """$TRAINSMART_KUBECTL, else the user cache that scripts/install-kubectl.sh fills (running the script,
    which is idempotent, when the cache is empty: `make test` has run it already)."""
    if os.environ.get("TRAINSMART_KUBECTL"):
        return Path(os.environ["TRAINSMART_KUBECTL"])
    cached = cache_root() / "kubectl-v1.33" / "kubectl"
    if cached.is_file():
        return cached
    done = subprocess.run(["bash", str(KUBECTL_SCRIPT)], capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"kubectl is not installed and {KUBECTL_SCRIPT} failed (run `make kubectl`):\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def kubectl_136(crd_server: CrdServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """kubectl's argv prefix for the CRD server. Its discovery cache lives in a session temp dir: the
    default (~/.kube/cache) outlives the server and is keyed by host:port, which a later server may reuse."""
    cache_dir = tmp_path_factory.mktemp("kubectl-cache")
    return (
        str(kubectl_binary()),
        f"--kubeconfig={crd_server.admin_kubeconfig}",
        f"--cache-dir={cache_dir}",
    )
