"""`SandboxRuntime`: the sandbox side of the agent as the lifecycle sees it (`pod_runtime_contract.PodRuntime`).

It ties the pieces together: `SandboxManager` (network identity, processes), `volumes` (directories
and mounts), `podenv` (env and argv, read through the API) and DNS (`cluster_changed`, called by the
agent with every bound pod and every Service whenever they change, rewrites the pods' hosts files).

What the kubelet would get wrong here is mapped to the lifecycle's vocabulary: a Secret key that is not
there yet is a `ContainerConfigError` with `CreateContainerConfigError`; a missing claim, ConfigMap volume
or a network that cannot be set up is one with `ContainerCreating` (both retried with back-off).

Service environment variables: only the `kubernetes` Service's (`KUBERNETES_SERVICE_HOST/PORT`), and
only when the apiserver is reachable from pods: its address is the bridge's gateway, or given as
`apiserver`, or (isolated pods, apiserver on the host's loopback) through the agent's forwarder on the
gateway (`apiproxy`), named `kubernetes.default.svc` in the pods' hosts files. ClusterIPs of other
Services are not routable without kube-proxy, so no `<SVC>_SERVICE_*`.
"""

from __future__ import annotations

import logging
import os
import pwd
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client
from kubernetes.client.rest import ApiException

from trainsmart.devcluster.agent.apiproxy import (
    SERVICE_HOST_NAME,
    SERVICE_PORT,
    ApiserverProxy,
    kubernetes_service_names,
)
from trainsmart.devcluster.agent.pod_runtime_contract import ContainerConfigError, ContainerLaunch, PodSandbox
from trainsmart.devcluster.agent.podenv import (
    ApiObjectSource,
    EnvResolutionError,
    container_argv,
    resolve_env,
)
from trainsmart.devcluster.agent.sandbox.manager import BridgeBusyError, SandboxError, SandboxManager
from trainsmart.devcluster.agent.volumes import (
    PodVolumes,
    VolumeError,
    container_mounts,
    materialise_volumes,
    remove_pod_volumes,
)

log = logging.getLogger(__name__)

# (bridge, pod CIDR, name prefix) tried in order: the first free one is taken, so `trainsmart dev up`
# and a test session can run side by side.
NETWORK_SLOTS = [(f"tsbr{i}", f"10.{244 + i}.0.0/16", "ts" if i == 0 else f"ts{i}") for i in range(8)]


def kubernetes_service_env(host: str, port: int) -> dict[str, str]:
    """The variables a kubelet sets for the `kubernetes` Service (in-cluster config reads the first two)."""
    return {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
        "KUBERNETES_PORT": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
        f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
        f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
    }


def default_home(uid: int | None) -> str:
    """HOME as container runtimes set it: the user's home in the passwd file, else `/`. Programs that look
    up the home directory (`Path.home()`) fail without it when the uid has no passwd entry."""
    try:
        return pwd.getpwuid(os.getuid() if uid is None else int(uid)).pw_dir or "/"
    except KeyError:
        return "/"


def start_manager(state_dir: Path) -> SandboxManager:
    """A started manager on the first free network slot."""
    last: Exception | None = None
    for bridge, cidr, prefix in NETWORK_SLOTS:
        manager = SandboxManager(state_dir, pod_cidr=cidr, bridge=bridge, prefix=prefix)
        try:
            manager.start()
        except BridgeBusyError as exc:
            last = exc
            continue
        return manager
    raise SandboxError(f"no free pod network on this machine: {last}")


class SandboxRuntime:
    """`pod_runtime_contract.PodRuntime` over a `SandboxManager`; `start()` before use, `close()` at the end."""

    def __init__(
        self,
        state_dir: Path,
        api: client.ApiClient,
        manager: SandboxManager | None = None,
        *,
        apiserver: tuple[str, int] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._api = api
        self._manager = manager
        self._core = client.CoreV1Api(api)
        self._source = ApiObjectSource(self._core)
        self._volumes: dict[str, PodVolumes] = {}
        self._allocatable: dict[str, dict[str, str]] = {}
        self._apiserver = apiserver
        self._service_env: dict[str, str] = {}
        self._proxy: ApiserverProxy | None = None

    @property
    def manager(self) -> SandboxManager:
        if self._manager is None:
            raise SandboxError("SandboxRuntime.start() was not called")
        return self._manager

    def start(self) -> None:
        """Start the manager (on the first free network slot unless one was given). Idempotent."""
        if self._manager is None:
            self._manager = start_manager(self.state_dir)
        else:
            self._manager.start()
        apiserver = self._apiserver
        if apiserver is None:
            url = urlsplit(self._api.configuration.host)
            if url.hostname and url.hostname == self.manager.gateway_ip and self.manager.isolated:
                apiserver = (url.hostname, url.port or 443)
            elif url.hostname in ("127.0.0.1", "localhost") and self.manager.isolated:
                apiserver = self._forward_apiserver((url.hostname, url.port or 443))
        self._service_env = kubernetes_service_env(*apiserver) if apiserver else {}

    def _forward_apiserver(self, upstream: tuple[str, int]) -> tuple[str, int] | None:
        """Make a loopback apiserver reachable from pods as `kubernetes.default.svc:443` (see `apiproxy`)."""
        if self._proxy is None:
            proxy = ApiserverProxy((self.manager.gateway_ip, SERVICE_PORT), upstream)
            try:
                proxy.start()
            except OSError as exc:
                where = f"{self.manager.gateway_ip}:{SERVICE_PORT}"
                log.warning("pods get no KUBERNETES_SERVICE_HOST: cannot listen on %s: %s", where, exc)
                return None
            self._proxy = proxy
        self.manager.extra_hosts = {self.manager.gateway_ip: kubernetes_service_names(self.manager.domain)}
        return SERVICE_HOST_NAME, SERVICE_PORT

    @property
    def host_ip(self) -> str:
        """The nodes' address: where pods reach the host (the bridge's gateway)."""
        return self.manager.gateway_ip

    def cluster_changed(self, pods: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]]) -> None:
        """Every bound pod and every Service, as the agent last saw them: rewrite the hosts files."""
        self.manager.set_cluster_view(pods, services)

    # ---- PodRuntime ---------------------------------------------------------------------------------

    def open_sandbox(self, pod: Mapping[str, Any]) -> PodSandbox:
        uid = pod["metadata"]["uid"]
        try:
            sandbox = self.manager.create(pod)
        except SandboxError as exc:
            raise ContainerConfigError(f"failed to create pod sandbox: {exc}", "ContainerCreating") from exc
        try:
            self._volumes[uid] = materialise_volumes(pod, self.state_dir, self._source)
        except (VolumeError, ApiException, OSError) as exc:
            sandbox.close()
            raise ContainerConfigError(f"MountVolume.SetUp failed: {_message(exc)}", "ContainerCreating") from exc
        return sandbox

    def container_launch(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        sandbox: PodSandbox,
        *,
        defaults: Mapping[str, str],
        overrides: Mapping[str, str],
        log_path: Path,
    ) -> ContainerLaunch:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        host_ip = (pod.get("status") or {}).get("hostIP") or self.manager.gateway_ip
        try:
            env = resolve_env(
                pod,
                container,
                source=self._source,
                pod_ip=sandbox.ip,
                host_ip=host_ip,
                # Only the `kubernetes` Service's variables, which a kubelet sets even with
                # enableServiceLinks false (that flag is about the other Services' variables).
                service_env=self._service_env,
                node_allocatable=self._node_allocatable(spec.get("nodeName")),
            )
            argv = container_argv(container, env)
            volumes = self._volumes.get(meta["uid"])
            if volumes is None:
                volumes = self._volumes[meta["uid"]] = materialise_volumes(pod, self.state_dir, self._source)
            mounts = container_mounts(container, volumes, env)
        except EnvResolutionError as exc:
            raise ContainerConfigError(str(exc), exc.reason) from exc
        except VolumeError as exc:
            raise ContainerConfigError(str(exc), exc.reason) from exc
        except ApiException as exc:
            raise ContainerConfigError(_message(exc)) from exc
        security = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        defaults = {"HOME": default_home(security.get("runAsUser")), **defaults}
        return ContainerLaunch(
            pod_uid=meta["uid"],
            namespace=meta["namespace"],
            pod_name=meta["name"],
            container_name=container["name"],
            argv=argv,
            env={**defaults, **env, **overrides},
            log_path=log_path,
            working_dir=container.get("workingDir") or None,
            mounts=mounts,
            run_as_user=security.get("runAsUser"),
            run_as_group=security.get("runAsGroup"),
        )

    def release_pod(self, pod: Mapping[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        self._volumes.pop(uid, None)
        remove_pod_volumes(self.state_dir, uid)

    def close(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
            self._proxy = None
        if self._manager is not None:
            self._manager.cleanup_all()

    # ---- helpers ------------------------------------------------------------------------------------

    def _node_allocatable(self, node: str | None) -> dict[str, str]:
        """Defaults for `resourceFieldRef` limits the container does not set (read once per node)."""
        if not node:
            return {}
        if node not in self._allocatable:
            try:
                status = self._core.read_node(node).status
                self._allocatable[node] = dict(status.allocatable or {})
            except ApiException:
                return {}
        return self._allocatable[node]


def _message(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"API error {exc.status}: {exc.reason}"
    return str(exc)


def build_sandbox_runtime(state_dir: Path, api: client.ApiClient) -> SandboxRuntime:
    """The agent's default runtime (not started: `NodeAgent.start()` does that)."""
    return SandboxRuntime(Path(state_dir), api)
