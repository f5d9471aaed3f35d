"""A pod's volumes as directories under the agent's state dir, and each container's `Mount` list.

Layout (under `<state>/volumes/`), and why:

* `pods/<pod uid>/<kind>/<volume>`: emptyDir, configMap, secret, downwardAPI and projected volumes.
  They belong to one pod and are removed with it (`remove_pod_volumes`).
* `claims/<namespace>/<claim>/<claim uid>`: persistentVolumeClaim volumes. Keyed by the claim's UID so a
  deleted and re-created claim of the same name starts empty, as real storage would; the directory
  outlives every pod (checkpoints depend on it) and goes only when the claim does (`provisioner.py`
  removes it with the claim's PV; `prune_claims` sweeps by a list of live claims).
* hostPath volumes are the host path itself.

Ownership and modes follow the kubelet: emptyDir and claim directories are created 0777 (any
`runAsUser` can write, as with emptyDir and local-path provisioners); with a pod `fsGroup` writable
volumes get that group, group rw and setgid directories (re-applied recursively only when the root's
group differs, like `fsGroupChangePolicy: OnRootMismatch`), and configMap/secret files get the group
and at least 0440. The sandbox adds `fsGroup` and `supplementalGroups` to the container's groups.

Limits: configMap, secret and token contents are written once when the pod starts (no live updates,
no token refresh); emptyDir `medium: Memory` and `sizeLimit` are not enforced (a plain directory).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trainsmart.devcluster.agent.pod_runtime_contract import Mount
from trainsmart.devcluster.agent.podenv import (
    ConfigMapData,
    EnvResolutionError,
    ObjectSource,
    as_api_dict,
    expand,
    field_ref_value,
    resource_field_value,
)

READ_ONLY_KINDS = frozenset({"configMap", "secret", "downwardAPI", "projected"})
DEFAULT_TOKEN_SECONDS = 3600


class VolumeError(Exception):
    """A volume cannot be set up; the pod stays `ContainerCreating` (the kubelet's FailedMount)."""

    reason = "ContainerCreating"


class VolumeObjectSource(ObjectSource, Protocol):
    """What volumes need from the API besides ConfigMaps and Secrets (see `podenv.ApiObjectSource`)."""

    def claim_uid(self, namespace: str, name: str) -> str | None: ...

    def service_account_token(
        self, namespace: str, service_account: str, audience: str | None, expiration_seconds: int
    ) -> str: ...


@dataclass(frozen=True)
class PodVolumes:
    """Host paths of a pod's volumes, by volume name."""

    paths: Mapping[str, Path]
    read_only: frozenset[str] = frozenset()
    fs_group: int | None = None


@dataclass(frozen=True)
class ProjectedFile:
    path: str
    data: bytes
    mode: int


@dataclass
class _Projection:
    files: list[ProjectedFile] = field(default_factory=list)


def pod_volumes_dir(state_dir: Path, pod_uid: str) -> Path:
    return state_dir / "volumes" / "pods" / pod_uid


def claim_dir(state_dir: Path, namespace: str, claim: str, claim_uid: str) -> Path:
    """The one place that names a claim's directory: the sandbox mounts it and the provisioner's PV for the
    claim points at it, so the two cannot drift apart."""
    return state_dir / "volumes" / "claims" / namespace / claim / claim_uid


# ---- pure: what goes into configMap / secret / downwardAPI / projected volumes --------------------------


def _check_relative(path: str) -> str:
    norm = posixpath.normpath(path)
    if path.startswith("/") or norm == ".." or norm.startswith("../") or norm == ".":
        raise VolumeError(f"invalid path {path!r}: must be relative and stay inside the volume")
    return norm


def project_keys(
    what: str,
    name: str,
    data: Mapping[str, bytes] | None,
    items: list[Mapping[str, Any]] | None,
    default_mode: int,
    optional: bool,
) -> list[ProjectedFile]:
    """Files for a configMap/secret source: every key, or just `items` (key -> path, optional mode)."""
    if data is None:
        if optional:
            return []
        raise VolumeError(f'{what} "{name}" not found')
    if not items:
        return [ProjectedFile(_check_relative(k), v, default_mode) for k, v in sorted(data.items())]
    files = []
    for item in items:
        if item["key"] not in data:
            if optional:
                continue
            raise VolumeError(f"couldn't find key {item['key']} in {what} {name}")
        mode = item.get("mode")
        files.append(
            ProjectedFile(_check_relative(item["path"]), data[item["key"]], default_mode if mode is None else mode)
        )
    return files


def config_map_bytes(cm: ConfigMapData | None) -> dict[str, bytes] | None:
    if cm is None:
        return None
    return {**{k: v.encode() for k, v in cm.data.items()}, **dict(cm.binary)}


def project_downward(pod: Mapping[str, Any], items: list[Mapping[str, Any]], default_mode: int) -> list[ProjectedFile]:
    """downwardAPI items: fieldRef (metadata only, as in volumes) and resourceFieldRef (by container name)."""
    files = []
    containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
    for item in items:
        mode = item.get("mode")
        if item.get("fieldRef"):
            try:
                value = field_ref_value(pod, item["fieldRef"]["fieldPath"], pod_ip="", host_ip="")
            except EnvResolutionError as exc:
                raise VolumeError(str(exc)) from exc
        elif item.get("resourceFieldRef"):
            ref = item["resourceFieldRef"]
            container = containers.get(ref.get("containerName"))
            if container is None:
                raise VolumeError(f"downwardAPI: no container {ref.get('containerName')!r}")
            div = ref.get("divisor")
            value = resource_field_value(container, ref["resource"], str(div) if div else None)
        else:
            continue
        path = _check_relative(item["path"])
        files.append(ProjectedFile(path, value.encode(), default_mode if mode is None else mode))
    return files


# ---- I/O: materialising --------------------------------------------------------------------------------


def _chown_group(path: Path, gid: int | None) -> None:
    if gid is not None:
        with contextlib.suppress(PermissionError):
            os.chown(path, -1, gid, follow_symlinks=False)


def _write_files(base: Path, files: list[ProjectedFile], fs_group: int | None) -> None:
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755 | (0o2050 if fs_group is not None else 0))
    _chown_group(base, fs_group)
    for f in files:
        target = base / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.data)
        target.chmod(f.mode | (0o440 if fs_group is not None else 0))
        _chown_group(target, fs_group)


def _writable_dir(path: Path, fs_group: int | None) -> None:
    """Create (0777, as the kubelet makes emptyDirs) and apply fsGroup on root mismatch."""
    if not path.exists():
        # exist_ok: the replicas of one job set up their shared claim's directory at the same moment
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # what the kubelet gives an emptyDir: any runAsUser can write
    if fs_group is None or path.stat().st_gid == fs_group:
        return
    for root, dirs, files in os.walk(path):
        for d in [root, *(os.path.join(root, x) for x in dirs)]:
            _chown_group(Path(d), fs_group)
            with contextlib.suppress(PermissionError):
                os.chmod(d, os.stat(d).st_mode & 0o7777 | 0o2070)  # noqa: S103 - fsGroup rw
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                _chown_group(Path(p), fs_group)
                with contextlib.suppress(PermissionError):
                    os.chmod(p, os.stat(p).st_mode & 0o7777 | 0o060)


def _host_path(spec: Mapping[str, Any]) -> Path:
    path, kind = Path(spec["path"]), spec.get("type") or ""
    if kind == "DirectoryOrCreate" and not path.exists():
        path.mkdir(parents=True, mode=0o755)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644)
    checks = {"Directory": path.is_dir, "File": path.is_file, "Socket": path.is_socket}
    checks |= {"CharDevice": path.is_char_device, "BlockDevice": path.is_block_device}
    if kind in checks and not checks[kind]():
        raise VolumeError(f"hostPath {path} is not a {kind}")
    return path


def materialise_volumes(pod_obj: Any, state_dir: Path, source: VolumeObjectSource) -> PodVolumes:
    """Create every volume of the pod on disk and return where each one is. Idempotent per pod."""
    pod = as_api_dict(pod_obj)
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    ns, uid = meta.get("namespace", "default"), meta["uid"]
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")
    base = pod_volumes_dir(state_dir, uid)
    paths: dict[str, Path] = {}
    read_only: set[str] = set()
    for vol in spec.get("volumes") or []:
        name = vol["name"]
        if "emptyDir" in vol:
            paths[name] = base / "empty-dir" / name
            _writable_dir(paths[name], fs_group)
        elif "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"]["claimName"]
            claim_uid = source.claim_uid(ns, claim)
            if claim_uid is None:
                raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
            paths[name] = claim_dir(state_dir, ns, claim, claim_uid)
            _writable_dir(paths[name], fs_group)
            if vol["persistentVolumeClaim"].get("readOnly"):
                read_only.add(name)
        elif "hostPath" in vol:
            paths[name] = _host_path(vol["hostPath"])
        else:
            kind = next((k for k in READ_ONLY_KINDS if k in vol), None)
            if kind is None:
                raise VolumeError(f"volume {name!r}: unsupported volume type {sorted(set(vol) - {'name'})}")
            files = _project(kind, vol[kind], pod, source)
            duplicates = sorted({f.path for f in files if [g.path for g in files].count(f.path) > 1})
            if duplicates:
                raise VolumeError(f"volume {name!r}: conflicting duplicate paths {duplicates}")
            paths[name] = base / kind / name
            if paths[name].exists():
                shutil.rmtree(paths[name])
            _write_files(paths[name], files, fs_group)
            read_only.add(name)
    return PodVolumes(paths=paths, read_only=frozenset(read_only), fs_group=fs_group)


def _project(
    kind: str, vsrc: Mapping[str, Any], pod: Mapping[str, Any], source: VolumeObjectSource
) -> list[ProjectedFile]:
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    mode = vsrc.get("defaultMode", 0o644)
    if kind == "configMap":
        data = config_map_bytes(source.config_map(ns, vsrc["name"]))
        return project_keys("configmap", vsrc["name"], data, vsrc.get("items"), mode, bool(vsrc.get("optional")))
    if kind == "secret":
        name = vsrc["secretName"]
        secret = source.secret(ns, name)
        return project_keys("secret", name, secret, vsrc.get("items"), mode, bool(vsrc.get("optional")))
    if kind == "downwardAPI":
        return project_downward(pod, vsrc.get("items") or [], mode)
    files: list[ProjectedFile] = []
    for src in vsrc.get("sources") or []:
        if src.get("configMap"):
            cm = src["configMap"]
            data = config_map_bytes(source.config_map(ns, cm["name"]))
            files += project_keys("configmap", cm["name"], data, cm.get("items"), mode, bool(cm.get("optional")))
        elif src.get("secret"):
            sec = src["secret"]
            files += project_keys(
                "secret", sec["name"], source.secret(ns, sec["name"]), sec.get("items"), mode, bool(sec.get("optional"))
            )
        elif src.get("downwardAPI"):
            files += project_downward(pod, src["downwardAPI"].get("items") or [], mode)
        elif src.get("serviceAccountToken"):
            tok = src["serviceAccountToken"]
            sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
            seconds = int(tok.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)
            token = source.service_account_token(ns, sa, tok.get("audience"), seconds)
            files.append(ProjectedFile(_check_relative(tok["path"]), token.encode(), mode))
    return files


def remove_pod_volumes(state_dir: Path, pod_uid: str) -> None:
    """Remove the pod's own volumes (never claim directories). Call after its processes are gone."""
    shutil.rmtree(pod_volumes_dir(state_dir, pod_uid), ignore_errors=True)


def prune_claims(state_dir: Path, live: set[tuple[str, str, str]]) -> list[Path]:
    """Remove claim directories whose (namespace, claim, uid) is no longer live; returns what went."""
    removed = []
    root = state_dir / "volumes" / "claims"
    for d in sorted(root.glob("*/*/*")) if root.exists() else []:
        key = (d.parent.parent.name, d.parent.name, d.name)
        if key not in live:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


# ---- per container ----------------------------------------------------------------------------------------


def container_mounts(
    container: Mapping[str, Any], volumes: PodVolumes, env: Mapping[str, str] | None = None
) -> list[Mount]:
    """The container's `Mount`s from its volumeMounts (subPath/subPathExpr, readOnly).

    A missing subPath directory is created inside a writable volume (the kubelet does the same); a
    subPath may not leave its volume, also through symlinks.
    """
    mounts = []
    for vm in container.get("volumeMounts") or []:
        name = vm["name"]
        if name not in volumes.paths:
            raise VolumeError(f"volumeMount {name!r} refers to no volume of the pod")
        base = volumes.paths[name]
        sub = vm.get("subPath") or ""
        if vm.get("subPathExpr"):
            sub = expand(vm["subPathExpr"], (env or {}).get)
        host = base
        if sub:
            host = base / _check_relative(sub)
            if not os.path.realpath(host).startswith(os.path.realpath(base).rstrip("/") + "/"):
                raise VolumeError(f"subPath {sub!r} leaves volume {name!r}")
            if not host.exists():
                if name in volumes.read_only:
                    raise VolumeError(f"subPath {sub!r} does not exist in read-only volume {name!r}")
                host.mkdir(parents=True, mode=0o755)
                _chown_group(host, volumes.fs_group)
        read_only = bool(vm.get("readOnly")) or name in volumes.read_only
        mounts.append(Mount(host_path=host, container_path=vm["mountPath"], read_only=read_only))
    return mounts
