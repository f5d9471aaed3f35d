"""A Pod manifest, as the operator created it, turned into one `podman run`: the test plays the kubelet.

`podman_run(pod, ...)` is pure: it reads the manifest (camelCase, as the apiserver returns it) and returns
the argv plus the host directories and files the run needs (`PodmanRun.prepare()` creates them). Every
field of the manifest is either honoured, accepted for a stated reason, or refused with `UnsupportedPodError`:
a field nobody looked at must not pass silently, or the test would run something other than the pod.

Honoured: the one container's image (through `images`, manifest image -> local tag; `--pull never`),
command and args (Kubernetes' `$(VAR)` expansion), env (literal values with `$(VAR)` expansion, fieldRef on
the pod's own metadata, secretKeyRef and configMapKeyRef from the objects passed in), workingDir; the pod's
and the container's securityContext (runAsUser/runAsGroup -> `--user`, runAsNonRoot checked, fsGroup and
supplementalGroups -> `--group-add` plus group ownership of the volumes as the kubelet gives it,
readOnlyRootFilesystem -> `--read-only` with podman's own writable tmpfs mounts turned off,
allowPrivilegeEscalation false -> no-new-privileges, capabilities drop/add, seccomp RuntimeDefault or
Unconfined); volumes: emptyDir -> a fresh host directory (0777, as the kubelet makes them), emptyDir with
medium Memory -> a tmpfs of its sizeLimit, persistentVolumeClaim -> the host directory given for the claim
in `claims`, configMap and downwardAPI -> files written from the ConfigMap's data/binaryData or the pod's
metadata, mounted read-only; terminationMessagePath -> a host file bind-mounted there;
terminationGracePeriodSeconds -> `--stop-timeout`; resource limits cpu/memory -> `--cpus`/`--memory`;
hostname -> `--hostname`, and with a subdomain the pod's own DNS names resolve to loopback.

Accepted on purpose: placement fields (schedulerName, nodeSelector, tolerations, affinity, priority...)
because the test is the scheduler, placing the pod on this host; resource requests (inputs to placement);
ports, because the container shares the host's network (`--network host`: the report endpoint on the
host's addresses is reachable, as a Service would make it in a cluster); imagePullPolicy and
imagePullSecrets (the image is local); `restartPolicy: Never` (podman never restarts; a test that plays a
restart runs the same plan again); `enableServiceLinks: false` and `automountServiceAccountToken: false`
(nothing to inject); dnsPolicy ClusterFirst (no cluster DNS here: only the pod's own names resolve).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final


class UnsupportedPodError(ValueError):
    """The manifest asks for something this runner cannot honour; the message names the field."""


PLACEMENT_FIELDS: Final = frozenset(
    {
        "schedulerName", "nodeSelector", "tolerations", "affinity", "priorityClassName", "priority",
        "preemptionPolicy", "nodeName", "topologySpreadConstraints",
    }
)  # fmt: skip
"""Pod spec fields the scheduler consumes before any container runtime sees the pod."""
POD_FIELDS: Final = PLACEMENT_FIELDS | {
    "containers", "initContainers", "volumes", "restartPolicy", "terminationGracePeriodSeconds",
    "securityContext", "hostname", "subdomain", "enableServiceLinks", "automountServiceAccountToken",
    "serviceAccountName", "serviceAccount", "dnsPolicy", "imagePullSecrets", "hostNetwork",
}  # fmt: skip
CONTAINER_FIELDS: Final = frozenset(
    {
        "name", "image", "command", "args", "env", "workingDir", "ports", "resources", "volumeMounts",
        "securityContext", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
    }
)  # fmt: skip
POD_SECURITY_FIELDS: Final = frozenset(
    {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "fsGroupChangePolicy", "supplementalGroups",
     "seccompProfile"}
)  # fmt: skip
CONTAINER_SECURITY_FIELDS: Final = frozenset(
    {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem", "allowPrivilegeEscalation",
     "capabilities", "privileged", "seccompProfile", "procMount"}
)  # fmt: skip
MOUNT_FIELDS: Final = frozenset({"name", "mountPath", "readOnly", "subPath"})
GPU_RESOURCES: Final = ("nvidia.com/gpu", "amd.com/gpu")
_REFERENCE: Final = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_QUANTITY: Final = re.compile(r"^([0-9.]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_FACTORS: Final = {
    None: Decimal(1), "m": Decimal("0.001"), "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18), "Ki": Decimal(2**10), "Mi": Decimal(2**20),
    "Gi": Decimal(2**30), "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
}  # fmt: skip
_METADATA_FIELD: Final = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")


@dataclass(frozen=True)
class PodmanRun:
    """What running the pod takes: `prepare()` (host side, once per plan), then `argv` (`podman run`, detached)."""

    argv: tuple[str, ...]
    termination_log: Path
    """The host file bind-mounted at the container's terminationMessagePath."""
    termination_message_policy: str
    directories: tuple[Path, ...] = ()
    """Host directories to create for emptyDirs, world-writable as the kubelet makes them."""
    files: Mapping[Path, tuple[bytes, int]] = field(default_factory=dict)
    """Host files to write (ConfigMap and downwardAPI volumes): path -> (content, mode)."""
    group_owned: tuple[Path, ...] = ()
    """Volumes the kubelet hands to `fs_group` (emptyDirs, claims): group-owned, group-writable, setgid."""
    fs_group: int | None = None

    def prepare(self) -> None:
        """Create the directories and files, and give the volumes to fsGroup (idempotent: a rerun of the
        same plan, as a restart, keeps what the claims hold)."""
        for directory in self.directories:
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o777)
        for path, (content, mode) in self.files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            path.chmod(mode)
        self.termination_log.parent.mkdir(parents=True, exist_ok=True)
        self.termination_log.write_bytes(b"")
        self.termination_log.chmod(0o666)
        if self.fs_group is not None:
            for root in self.group_owned:
                for path in (root, *root.rglob("*")):
                    os.chown(path, -1, self.fs_group)
                    mode = path.stat().st_mode
                    path.chmod(mode | 0o060 | (0o2010 if path.is_dir() else 0))


def podman_run(
    pod: Mapping[str, Any],
    *,
    name: str,
    images: Mapping[str, str],
    host_dir: Path,
    claims: Mapping[str, Path] | None = None,
    secrets: Mapping[str, Mapping[str, Any]] | None = None,
    config_maps: Mapping[str, Mapping[str, Any]] | None = None,
) -> PodmanRun:
    """The `podman run --detach --name <name>` of `pod`'s one container. `images` maps the manifest's image
    to a local tag; `host_dir` holds the emptyDirs, ConfigMap files and the termination log; `claims` maps
    a PVC name to the host directory standing in for its volume; `secrets` and `config_maps` are the
    objects (API manifests, Secret data base64 as the API returns it) env and volumes may refer to.
    Raises `UnsupportedPodError` for anything it cannot honour."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    _only(spec, POD_FIELDS, "spec")
    if spec.get("initContainers"):
        raise UnsupportedPodError("spec.initContainers: init containers are not run")
    containers = spec.get("containers") or []
    if len(containers) != 1:
        raise UnsupportedPodError(f"spec.containers: exactly one container is supported, got {len(containers)}")
    container = containers[0]
    _only(container, CONTAINER_FIELDS, "spec.containers[0]")
    if spec.get("restartPolicy", "Never") != "Never":
        raise UnsupportedPodError(f"spec.restartPolicy: {spec['restartPolicy']!r} (podman restarts nothing)")
    if spec.get("enableServiceLinks") is not False:
        raise UnsupportedPodError("spec.enableServiceLinks: service environment variables are not injected")
    if spec.get("automountServiceAccountToken") is not False:
        raise UnsupportedPodError("spec.automountServiceAccountToken: no service account token is mounted")
    if spec.get("dnsPolicy", "ClusterFirst") != "ClusterFirst":
        raise UnsupportedPodError(f"spec.dnsPolicy: {spec['dnsPolicy']!r}")
    image = container.get("image")
    if image not in images:
        raise UnsupportedPodError(f"spec.containers[0].image: no local image for {image!r}")

    secrets, config_maps, claims = secrets or {}, config_maps or {}, claims or {}
    argv: list[str] = ["podman", "run", "--detach", "--name", name, "--pull", "never", "--network", "host"]
    argv += ["--runtime", "runc", "--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:1024"]
    argv += _security_flags(spec.get("securityContext") or {}, container.get("securityContext") or {})
    fs_group = (spec.get("securityContext") or {}).get("fsGroup")

    env = _environment(container.get("env") or [], metadata, spec, secrets, config_maps)
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]
    argv += _resource_flags(container.get("resources") or {})
    if "terminationGracePeriodSeconds" in spec:
        argv += ["--stop-timeout", str(spec["terminationGracePeriodSeconds"])]
    if spec.get("hostname"):
        argv += ["--hostname", spec["hostname"]]
        if spec.get("subdomain"):
            own = f"{spec['hostname']}.{spec['subdomain']}.{metadata['namespace']}.svc"
            argv += ["--add-host", f"{own}:127.0.0.1", "--add-host", f"{own}.cluster.local:127.0.0.1"]

    volumes = _volumes(spec.get("volumes") or [], host_dir, claims, config_maps, metadata)
    directories = tuple(v.source for v in volumes.values() if v.kind == "emptyDir" and v.source is not None)
    files = {path: content for v in volumes.values() for path, content in v.files.items()}
    for index, mount in enumerate(container.get("volumeMounts") or []):
        argv += _mount_flags(mount, volumes, f"spec.containers[0].volumeMounts[{index}]")

    termination_log = host_dir / "termination-log"
    argv += ["--volume", f"{termination_log}:{container.get('terminationMessagePath', '/dev/termination-log')}:rw"]

    command = [_expand(part, env) for part in container.get("command") or []]
    args = [_expand(part, env) for part in container.get("args") or []]
    if command:
        argv += ["--entrypoint", json.dumps(command)]
    argv += [images[image], *args]
    group_owned = tuple(
        v.source for v in volumes.values() if v.kind in ("emptyDir", "persistentVolumeClaim") and v.source is not None
    )
    return PodmanRun(
        argv=tuple(argv),
        termination_log=termination_log,
        termination_message_policy=container.get("terminationMessagePolicy", "File"),
        directories=directories,
        files=files,
        group_owned=group_owned,
        fs_group=fs_group,
    )


def _only(obj: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(key for key, value in obj.items() if key not in allowed and value not in (None, [], {}))
    if unknown:
        raise UnsupportedPodError(f"{where}: {', '.join(unknown)} not supported")


def _security_flags(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    _only(pod, POD_SECURITY_FIELDS, "spec.securityContext")
    _only(container, CONTAINER_SECURITY_FIELDS, "spec.containers[0].securityContext")
    merged = {**pod, **container}  # the container's settings win, as in Kubernetes
    user, group = merged.get("runAsUser"), merged.get("runAsGroup")
    if user is None:
        raise UnsupportedPodError("securityContext.runAsUser: unset (the image's user would apply; give it explicitly)")
    if merged.get("runAsNonRoot") and user == 0:
        raise UnsupportedPodError("securityContext.runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
    flags = ["--user", f"{user}:{group}" if group is not None else str(user), "--passwd=false"]
    for extra in [*(pod.get("supplementalGroups") or []), pod.get("fsGroup")]:
        if extra is not None:
            flags += ["--group-add", str(extra)]
    if container.get("privileged"):
        raise UnsupportedPodError("spec.containers[0].securityContext.privileged")
    if container.get("procMount", "Default") != "Default":
        raise UnsupportedPodError(f"spec.containers[0].securityContext.procMount: {container['procMount']!r}")
    if container.get("readOnlyRootFilesystem"):
        # podman would otherwise mount writable tmpfs at /tmp, /var/tmp and /run; the kubelet mounts nothing.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if container.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    capabilities = container.get("capabilities") or {}
    _only(capabilities, {"drop", "add"}, "spec.containers[0].securityContext.capabilities")
    flags += [f for cap in capabilities.get("drop") or [] for f in ("--cap-drop", cap.lower())]
    flags += [f for cap in capabilities.get("add") or [] for f in ("--cap-add", cap.lower())]
    seccomp = merged.get("seccompProfile") or {"type": "Unconfined"}  # the kubelet's default without one
    if seccomp.get("type") == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif seccomp.get("type") != "RuntimeDefault":  # podman's default profile is the runtime's default
        raise UnsupportedPodError(f"securityContext.seccompProfile: {seccomp!r}")
    return flags


def _environment(
    env: Iterable[Mapping[str, Any]],
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    secrets: Mapping[str, Mapping[str, Any]],
    config_maps: Mapping[str, Mapping[str, Any]],
) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for index, var in enumerate(env):
        where = f"spec.containers[0].env[{index}] ({var.get('name')})"
        _only(var, {"name", "value", "valueFrom"}, where)
        source = var.get("valueFrom")
        if source is None:
            resolved[var["name"]] = _expand(var.get("value") or "", resolved)
            continue
        _only(source, {"fieldRef", "secretKeyRef", "configMapKeyRef"}, where)
        if "fieldRef" in source:
            resolved[var["name"]] = _field(source["fieldRef"]["fieldPath"], metadata, spec, where)
        elif "secretKeyRef" in source:
            value = _key(secrets, source["secretKeyRef"], "data", where, base64.b64decode)
            if value is not None:
                resolved[var["name"]] = value
        else:
            value = _key(config_maps, source["configMapKeyRef"], "data", where, str.encode)
            if value is not None:
                resolved[var["name"]] = value
    return resolved


def _key(
    objects: Mapping[str, Mapping[str, Any]],
    ref: Mapping[str, Any],
    section: str,
    where: str,
    decode: Callable[[str], bytes],
) -> str | None:
    data = (objects.get(ref["name"]) or {}).get(section) or {}
    if ref["key"] not in data:
        if ref.get("optional"):
            return None
        raise UnsupportedPodError(f"{where}: {ref['name']}/{ref['key']} was not given")
    return decode(data[ref["key"]]).decode()


def _field(path: str, metadata: Mapping[str, Any], spec: Mapping[str, Any], where: str) -> str:
    simple = {"metadata.name": metadata.get("name"), "metadata.namespace": metadata.get("namespace")}
    simple["metadata.uid"] = metadata.get("uid")
    simple["spec.serviceAccountName"] = spec.get("serviceAccountName")
    if path in simple and simple[path] is not None:
        return str(simple[path])
    match = _METADATA_FIELD.match(path)
    if match and match.group(2) in (metadata.get(match.group(1)) or {}):
        return str(metadata[match.group(1)][match.group(2)])
    raise UnsupportedPodError(f"{where}: fieldRef {path!r} cannot be resolved here")


def _expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined names replaced, `$$` an escaped `$`, anything else kept."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def quantity(text: str | int | float) -> Decimal:
    """A Kubernetes quantity (`500m`, `2`, `1Gi`, `1e3` not included) as a number."""
    match = _QUANTITY.match(str(text))
    if match is None:
        raise UnsupportedPodError(f"quantity {text!r}")
    return Decimal(match.group(1)) * _FACTORS[match.group(2)]


def _resource_flags(resources: Mapping[str, Any]) -> list[str]:
    _only(resources, {"requests", "limits"}, "spec.containers[0].resources")
    flags: list[str] = []
    for section in ("requests", "limits"):
        for gpu in GPU_RESOURCES:
            if gpu in (resources.get(section) or {}):
                raise UnsupportedPodError(f"spec.containers[0].resources.{section}: {gpu} (podman gets no GPUs)")
    limits = dict(resources.get("limits") or {})
    if "cpu" in limits:
        flags += ["--cpus", str(quantity(limits.pop("cpu")))]
    if "memory" in limits:
        flags += ["--memory", str(int(quantity(limits.pop("memory"))))]
    if limits:
        raise UnsupportedPodError(f"spec.containers[0].resources.limits: {', '.join(sorted(limits))}")
    return flags


@dataclass(frozen=True)
class _Volume:
    kind: str
    source: Path | None = None
    """Host path (emptyDir, claim, ConfigMap/downwardAPI file tree); None for a tmpfs."""
    tmpfs_size: int | None = None
    read_only: bool = False
    files: Mapping[Path, tuple[bytes, int]] = field(default_factory=dict)


def _volumes(
    volumes: Iterable[Mapping[str, Any]],
    host_dir: Path,
    claims: Mapping[str, Path],
    config_maps: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Any],
) -> dict[str, _Volume]:
    out: dict[str, _Volume] = {}
    for index, volume in enumerate(volumes):
        name = volume["name"]
        where = f"spec.volumes[{index}] ({name})"
        kinds = [key for key in volume if key != "name"]
        if len(kinds) != 1:
            raise UnsupportedPodError(f"{where}: one volume source expected, got {kinds}")
        kind, source = kinds[0], volume[kinds[0]] or {}
        root = host_dir / "volumes" / name
        if kind == "emptyDir":
            _only(source, {"medium", "sizeLimit"}, where)
            if source.get("medium") == "Memory":
                size = int(quantity(source["sizeLimit"])) if source.get("sizeLimit") else None
                out[name] = _Volume(kind, tmpfs_size=size)
            elif source.get("medium") or source.get("sizeLimit"):
                raise UnsupportedPodError(f"{where}: emptyDir {source!r}")
            else:
                out[name] = _Volume(kind, root)
        elif kind == "persistentVolumeClaim":
            _only(source, {"claimName", "readOnly"}, where)
            if source["claimName"] not in claims:
                raise UnsupportedPodError(f"{where}: no host directory for claim {source['claimName']!r}")
            out[name] = _Volume(kind, claims[source["claimName"]], read_only=bool(source.get("readOnly")))
        elif kind == "configMap":
            _only(source, {"name", "items", "defaultMode", "optional"}, where)
            config_map = config_maps.get(source["name"])
            if config_map is None:
                raise UnsupportedPodError(f"{where}: ConfigMap {source['name']!r} was not given")
            out[name] = _Volume(kind, root, read_only=True, files=_config_map_files(config_map, source, root, where))
        elif kind == "downwardAPI":
            _only(source, {"items", "defaultMode"}, where)
            files: dict[Path, tuple[bytes, int]] = {}
            for item in source.get("items") or []:
                _only(item, {"path", "fieldRef", "mode"}, where)
                text = _field(item["fieldRef"]["fieldPath"], metadata, {}, where)
                files[root / item["path"]] = (text.encode(), item.get("mode", source.get("defaultMode", 0o644)))
            out[name] = _Volume(kind, root, read_only=True, files=files)
        else:
            raise UnsupportedPodError(f"{where}: {kind} volumes are not supported")
    return out


def _config_map_files(
    config_map: Mapping[str, Any], source: Mapping[str, Any], root: Path, where: str
) -> dict[Path, tuple[bytes, int]]:
    content = {key: value.encode() for key, value in (config_map.get("data") or {}).items()}
    content |= {key: base64.b64decode(value) for key, value in (config_map.get("binaryData") or {}).items()}
    mode = source.get("defaultMode", 0o644)
    items = source.get("items") or [{"key": key, "path": key} for key in sorted(content)]
    files: dict[Path, tuple[bytes, int]] = {}
    for item in items:
        if item["key"] not in content:
            raise UnsupportedPodError(f"{where}: ConfigMap key {item['key']!r} is missing")
        files[root / item["path"]] = (content[item["key"]], item.get("mode", mode))
    return files


def _mount_flags(mount: Mapping[str, Any], volumes: Mapping[str, _Volume], where: str) -> list[str]:
    _only(mount, MOUNT_FIELDS, where)
    volume = volumes.get(mount["name"])
    if volume is None:
        raise UnsupportedPodError(f"{where}: no volume named {mount['name']!r}")
    target = mount["mountPath"]
    if volume.source is None:
        if mount.get("subPath"):
            raise UnsupportedPodError(f"{where}: subPath of a tmpfs")
        size = f",tmpfs-size={volume.tmpfs_size}" if volume.tmpfs_size is not None else ""
        return ["--mount", f"type=tmpfs,destination={target},tmpfs-mode=1777{size}"]
    source = volume.source / mount["subPath"] if mount.get("subPath") else volume.source
    read_only = volume.read_only or bool(mount.get("readOnly"))
    return ["--volume", f"{source}:{target}:{'ro' if read_only else 'rw'}"]
