"""The local control plane is real and leaves nothing behind.

Pins:
- the admin token is cluster admin and the `default` namespace exists once `start()` returns;
- restricted users are denied by the real RBAC authorizer until a RoleBinding grants them access;
- the scheduler and controller-manager run beside the apiserver;
- `stop()` ends every process it started (and their children) and removes the temp dir it made.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from trainsmart.devcluster.controlplane import ControlPlane

pytestmark = pytest.mark.cluster


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == pid:
            found.add(int(entry.name))
            found |= _descendants(int(entry.name))
    return found


def test_admin_sees_the_default_namespace_as_soon_as_start_returns(api_client: client.ApiClient) -> None:
    ns = client.CoreV1Api(api_client).read_namespace("default")
    assert ns.status.phase == "Active"


def test_restricted_user_is_forbidden_until_a_rolebinding_grants_access(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str
) -> None:
    alice_api = config.new_client_from_config(config_file=str(control_plane.kubeconfig("alice")))
    try:
        alice = client.CoreV1Api(alice_api)
        with pytest.raises(ApiException) as denied:
            alice.list_namespaced_pod(namespace)
        assert denied.value.status == 403

        client.RbacAuthorizationV1Api(api_client).create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="alice-view"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="view"),
                subjects=[client.RbacV1Subject(kind="User", name="alice", api_group="rbac.authorization.k8s.io")],
            ),
        )
        # The authorizer sees new bindings through an informer: allow it a moment, bounded.
        deadline = time.monotonic() + 15
        while True:
            try:
                assert alice.list_namespaced_pod(namespace).items == []
                break
            except ApiException as exc:
                if exc.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with pytest.raises(ApiException) as still_denied:
            alice.list_namespaced_pod("default")
        assert still_denied.value.status == 403
    finally:
        alice_api.close()


def test_scheduler_and_controller_manager_run_beside_the_apiserver(control_plane: ControlPlane) -> None:
    names = set(control_plane.describe()["pids"])  # type: ignore[arg-type]
    assert names == {"etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"}
    assert all(_alive(pid) for pid in control_plane.pids())


def test_stop_ends_every_process_and_removes_its_temp_dir() -> None:
    cp = ControlPlane()
    cp.start()
    workdir = cp.workdir
    assert workdir is not None and workdir.is_dir()
    started = set(cp.pids())
    assert len(started) == 4
    everything = started | {d for pid in started for d in _descendants(pid)}

    cp.stop()

    assert not [pid for pid in everything if _alive(pid)]
    assert not workdir.exists()
    assert not _descendants(os.getpid()) & everything
