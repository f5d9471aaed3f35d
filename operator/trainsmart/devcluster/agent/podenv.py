"""A container's environment and argv, resolved the way a kubelet resolves them.

The rules followed (Kubernetes 1.20 kubelet behaviour, so what works here works on a cluster):

* `envFrom` sources are applied first, in order; keys that are not valid variable names (after the
  prefix) are skipped. Then `env` entries, in order, override them.
* A literal `value` has `$(VAR)` references expanded against the variables defined *before* it (including
  `envFrom` ones) and the service variables; unknown references stay as written, `$$` is a literal `$`.
  Values from `valueFrom` and `envFrom` are never expanded.
* `optional` sources/keys that are missing leave the variable out; a missing required one is an
  `EnvResolutionError` (the pod's container waits with reason `CreateContainerConfigError`).
* Service variables (`KUBERNETES_SERVICE_HOST`, ...) fill in names the container did not set.
* `command` and `args` are expanded against the final environment.

Pure functions take an `ObjectSource` for ConfigMaps and Secrets; `ApiObjectSource` is the thin layer
that reads them from the API (cached per source object for one resolution, as the kubelet caches).
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol, TypeVar

_V = TypeVar("_V")

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class EnvResolutionError(Exception):
    """The container cannot be given its configuration; `reason` is the kubelet's waiting reason."""

    reason = "CreateContainerConfigError"


def as_api_dict(obj: Any) -> dict[str, Any]:
    """An API object as its camelCase JSON dict, whether given as a dict or a kubernetes-client model."""
    if isinstance(obj, Mapping):
        return dict(obj)
    from kubernetes.client import ApiClient

    result: dict[str, Any] = ApiClient().sanitize_for_serialization(obj)
    return result


@dataclass(frozen=True)
class ConfigMapData:
    data: Mapping[str, str] = field(default_factory=dict)
    binary: Mapping[str, bytes] = field(default_factory=dict)


class ObjectSource(Protocol):
    """Read access to the objects a pod's env and volumes refer to; None means "not found"."""

    def config_map(self, namespace: str, name: str) -> ConfigMapData | None: ...

    def secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None: ...


# ---- $(VAR) expansion ---------------------------------------------------------------------------------


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand `$(NAME)` in `text`: `$$` -> `$`; undefined names and unclosed `$(` are kept verbatim."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 == n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append("$(")
                i += 2
            else:
                name = text[i + 2 : close]
                value = lookup(name)
                out.append(value if value is not None else f"$({name})")
                i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# ---- quantities and downward API ------------------------------------------------------------------------

_SUFFIX = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


def parse_quantity(text: str) -> Fraction:
    """A Kubernetes resource quantity ("500m", "2", "1Gi", "1e3") as an exact number."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"invalid quantity {text!r}")
    number = Fraction(m.group(1))
    if m.group(2):
        return number * Fraction(10) ** int(m.group(2)[1:])
    return number * _SUFFIX[m.group(3) or ""]


def resource_field_value(
    container: Mapping[str, Any],
    resource: str,
    divisor: str | None,
    node_allocatable: Mapping[str, str] | None = None,
) -> str:
    """`resourceFieldRef`: ceil(quantity / divisor); unset cpu/memory limits default to node allocatable."""
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or not name:
        raise EnvResolutionError(f"unsupported container resource: {resource}")
    values = (container.get("resources") or {}).get(kind) or {}
    raw = values.get(name)
    if raw is None and kind == "limits":
        raw = (node_allocatable or {}).get(name)
    quantity = parse_quantity(raw) if raw is not None else Fraction(0)
    div = parse_quantity(divisor) if divisor else Fraction(1)
    if div <= 0:
        raise EnvResolutionError(f"invalid divisor {divisor!r} for {resource}")
    if name == "cpu":  # the kubelet works in (rounded-up) millicores here
        return str(math.ceil(Fraction(math.ceil(quantity * 1000)) / math.ceil(div * 1000)))
    return str(math.ceil(Fraction(math.ceil(quantity)) / math.ceil(div)))


def field_ref_value(pod: Mapping[str, Any], path: str, *, pod_ip: str, host_ip: str) -> str:
    """`fieldRef`: the pod fields the downward API exposes as env values."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
    }
    if path in simple:
        return str(simple[path])
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = sorted((meta.get(path.split(".")[1]) or {}).items())
        return "\n".join(f'{k}="{v}"' for k, v in items)
    raise EnvResolutionError(f"unsupported fieldPath: {path}")


# ---- the environment --------------------------------------------------------------------------------------


def _decode(value: bytes) -> str:
    return value.decode("utf-8", errors="surrogateescape")


class _Sources:
    """Per-resolution cache, so each ConfigMap/Secret is read once, as the kubelet does."""

    def __init__(self, source: ObjectSource, namespace: str) -> None:
        self._source, self._ns = source, namespace
        self._cms: dict[str, ConfigMapData | None] = {}
        self._secrets: dict[str, Mapping[str, bytes] | None] = {}

    def config_map(self, name: str) -> ConfigMapData | None:
        if name not in self._cms:
            self._cms[name] = self._source.config_map(self._ns, name)
        return self._cms[name]

    def secret(self, name: str) -> Mapping[str, bytes] | None:
        if name not in self._secrets:
            self._secrets[name] = self._source.secret(self._ns, name)
        return self._secrets[name]

    def env_from(self, ref: Mapping[str, Any]) -> dict[str, str]:
        """One `envFrom` entry's keys and values: empty for an optional source that is missing (the
        kubelet skips it) or an entry naming neither kind; a missing required one is an error."""
        if ref.get("configMapRef"):
            noun, source_ref = "configmap", ref["configMapRef"]
            cm = self.config_map(source_ref["name"])
            items = None if cm is None else dict(cm.data)
        elif ref.get("secretRef"):
            noun, source_ref = "secret", ref["secretRef"]
            secret = self.secret(source_ref["name"])
            items = None if secret is None else {k: _decode(v) for k, v in secret.items()}
        else:
            return {}
        if items is None:
            if source_ref.get("optional"):
                return {}
            raise EnvResolutionError(f'{noun} "{source_ref["name"]}" not found')
        return items


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    source: ObjectSource,
    pod_ip: str,
    host_ip: str,
    service_env: Mapping[str, str] | None = None,
    node_allocatable: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's environment, in declaration order (envFrom, env, then service variables)."""
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    sources = _Sources(source, ns)
    service_env = dict(service_env or {})
    env: dict[str, str] = {}

    for ref in container.get("envFrom") or []:
        prefix = ref.get("prefix") or ""
        items = sources.env_from(ref)
        for key in sorted(items):
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = items[key]

    def lookup(name: str) -> str | None:
        return env[name] if name in env else service_env.get(name)

    for var in container.get("env") or []:
        name = var["name"]
        value_from = var.get("valueFrom")
        value = ""
        if var.get("value"):
            value = expand(var["value"], lookup)
        elif value_from:
            resolved = _value_from(pod, container, value_from, sources, pod_ip, host_ip, node_allocatable)
            if resolved is None:
                continue  # optional and missing
            value = resolved
        service_env.pop(name, None)
        env.pop(name, None)  # re-declaring moves it to its latest position, like the kubelet's list
        env[name] = value
    for name, value in service_env.items():
        env.setdefault(name, value)
    return env


def _value_from(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    value_from: Mapping[str, Any],
    sources: _Sources,
    pod_ip: str,
    host_ip: str,
    node_allocatable: Mapping[str, str] | None,
) -> str | None:
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    if value_from.get("fieldRef"):
        return field_ref_value(pod, value_from["fieldRef"]["fieldPath"], pod_ip=pod_ip, host_ip=host_ip)
    if value_from.get("resourceFieldRef"):
        ref = value_from["resourceFieldRef"]
        target = container
        if ref.get("containerName") and ref["containerName"] != container.get("name"):
            spec_containers = (pod.get("spec") or {}).get("containers") or []
            target = next((c for c in spec_containers if c.get("name") == ref["containerName"]), container)
        divisor = ref.get("divisor")
        return resource_field_value(target, ref["resource"], str(divisor) if divisor else None, node_allocatable)
    if value_from.get("configMapKeyRef"):
        ref = value_from["configMapKeyRef"]
        cm = sources.config_map(ref["name"])
        return _key_ref(ref, ns, "configmap", "ConfigMap", None if cm is None else cm.data)
    if value_from.get("secretKeyRef"):
        ref = value_from["secretKeyRef"]
        value = _key_ref(ref, ns, "secret", "Secret", sources.secret(ref["name"]))
        return None if value is None else _decode(value)
    raise EnvResolutionError(f"unsupported valueFrom: {sorted(value_from)}")


def _key_ref(ref: Mapping[str, Any], ns: str, noun: str, kind: str, data: Mapping[str, _V] | None) -> _V | None:
    """One key of a ConfigMap or Secret, with the kubelet's `optional` rules and its error wording."""
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise EnvResolutionError(f'{noun} "{ref["name"]}" not found')
    if ref["key"] not in data:
        if optional:
            return None
        raise EnvResolutionError(f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
    return data[ref["key"]]


def container_argv(container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """command + args with `$(VAR)` expanded against the final env. Without images there is no
    entrypoint to fall back on, so a container with neither is an error."""
    command = [expand(c, env.get) for c in container.get("command") or []]
    args = [expand(a, env.get) for a in container.get("args") or []]
    argv = command + args
    if not command:
        raise EnvResolutionError(
            f"container {container.get('name')!r} has no command: the local agent has no image entrypoint"
        )
    return argv


# ---- the API layer ----------------------------------------------------------------------------------------


class ApiObjectSource:
    """`ObjectSource` (and the volume look-ups) over a `kubernetes.client.CoreV1Api`."""

    def __init__(self, core_api: Any) -> None:
        self._api = core_api

    def _read(self, fn: Callable[..., Any], name: str, namespace: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        cm = self._read(self._api.read_namespaced_config_map, name, namespace)
        if cm is None:
            return None
        binary = {k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()}
        return ConfigMapData(data=dict(cm.data or {}), binary=binary)

    def secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        secret = self._read(self._api.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    def claim_uid(self, namespace: str, name: str) -> str | None:
        claim = self._read(self._api.read_namespaced_persistent_volume_claim, name, namespace)
        return None if claim is None else str(claim.metadata.uid)

    def service_account_token(
        self, namespace: str, service_account: str, audience: str | None, expiration_seconds: int
    ) -> str:
        from kubernetes.client import AuthenticationV1TokenRequest, V1TokenRequestSpec

        spec = V1TokenRequestSpec(audiences=[audience] if audience else [], expiration_seconds=expiration_seconds)
        result = self._api.create_namespaced_service_account_token(
            service_account, namespace, AuthenticationV1TokenRequest(spec=spec)
        )
        return str(result.status.token)
