"""Cluster DNS for the local agent, as per-pod hosts files.

There is no CoreDNS in the local cluster; instead each pod's `/etc/hosts` (a file of the agent's,
bind-mounted into the pod) lists the names the cluster's DNS would answer, and is rewritten whenever
pods or Services change. The names, relative to the pod's own namespace `<ns>`:

* the pod itself: `<hostname>` and, when it has a subdomain, `<hostname>.<subdomain>.<ns>.svc.<domain>`
  and its shorter forms (what the kubelet writes into a real pod's hosts file);
* other pods: `<hostname>.<subdomain>.<pns>.svc.<domain>` (+ `.svc`, `.<pns>` forms, and the bare
  `<hostname>.<subdomain>` when `pns == ns`) when a headless Service named `<subdomain>` in `pns`
  selects the pod and the pod is Ready or the Service publishes not-ready addresses, which is when real
  cluster DNS has a record for it;
* Services: `<svc>.<sns>.svc.<domain>` (+ short forms, and the bare `<svc>` when `sns == ns`) -> the IPs
  of the pods it selects under the same readiness rule. With no kube-proxy, ClusterIP Services also
  resolve to their pods directly (documented limit: the Service's port must equal the target port).

Why in place: a bind mount pins the file's inode, so a replaced file would never be seen by the pod.
The new text is written over the old and the file then truncated, so a reader sees either version or,
for a moment, the new lines followed by a tail of the old ones; never an empty file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainsmart.devcluster.agent.podenv import as_api_dict

DEFAULT_DOMAIN = "cluster.local"

_HEADER = (
    "# Kubernetes-managed hosts file (trainsmart node agent): rewritten in place, edits are lost.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


@dataclass(frozen=True)
class PodRecord:
    """What DNS needs to know about a pod."""

    uid: str
    namespace: str
    name: str
    ip: str | None
    hostname: str
    subdomain: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    ready: bool = False
    terminating: bool = False


@dataclass(frozen=True)
class ServiceRecord:
    """What DNS needs to know about a Service."""

    namespace: str
    name: str
    selector: Mapping[str, str] | None
    headless: bool = True
    publish_not_ready: bool = False


def pod_record(obj: Any) -> PodRecord | None:
    """A `PodRecord` from an API pod (dict or client model); None for finished pods, which hold no IP."""
    pod = as_api_dict(obj)
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return None
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return PodRecord(
        uid=meta.get("uid", ""),
        namespace=meta.get("namespace", "default"),
        name=meta["name"],
        ip=status.get("podIP") or None,
        hostname=spec.get("hostname") or meta["name"],
        subdomain=spec.get("subdomain") or None,
        labels=dict(meta.get("labels") or {}),
        ready=ready,
        terminating=bool(meta.get("deletionTimestamp")),
    )


def service_record(obj: Any) -> ServiceRecord:
    svc = as_api_dict(obj)
    meta, spec = svc.get("metadata", {}), svc.get("spec", {})
    return ServiceRecord(
        namespace=meta.get("namespace", "default"),
        name=meta["name"],
        selector=dict(spec["selector"]) if spec.get("selector") else None,
        headless=spec.get("clusterIP") == "None",
        publish_not_ready=bool(spec.get("publishNotReadyAddresses")),
    )


def _selects(svc: ServiceRecord, pod: PodRecord) -> bool:
    if not svc.selector or svc.namespace != pod.namespace or pod.ip is None:
        return False
    if not all(pod.labels.get(k) == v for k, v in svc.selector.items()):
        return False
    return svc.publish_not_ready or (pod.ready and not pod.terminating)


def named_pods(pods: Iterable[PodRecord], services: Iterable[ServiceRecord]) -> list[PodRecord]:
    """The pods any hosts file names (an address and a Service selecting them), sorted as
    `build_hosts_text` sorts them: filter once per refresh, not once per file, and a burst of bare pods
    costs nothing per file (what `build_hosts_text(owner, pods, ...)` makes of them is unchanged)."""
    by_namespace: dict[str, list[ServiceRecord]] = {}
    for svc in services:
        if svc.selector:
            by_namespace.setdefault(svc.namespace, []).append(svc)
    named = [p for p in pods if p.ip is not None and any(_selects(s, p) for s in by_namespace.get(p.namespace, ()))]
    return sorted(named, key=lambda p: (p.namespace, p.name, p.ip or ""))


def _names(first: str, second: str, namespace: str, own_namespace: str, domain: str) -> list[str]:
    """`first.second.<ns>.svc.<domain>` and the shorter forms a pod in `own_namespace` may use."""
    base = f"{first}.{second}" if first else second
    names = [f"{base}.{namespace}.svc.{domain}", f"{base}.{namespace}.svc", f"{base}.{namespace}"]
    if namespace == own_namespace:
        names.append(base)
    return names


def build_hosts_text(
    owner: PodRecord,
    pods: Iterable[PodRecord],
    services: Iterable[ServiceRecord],
    domain: str = DEFAULT_DOMAIN,
    extra: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """The whole hosts file for `owner` (which must have an IP). Deterministic: same input, same text.

    `extra` maps addresses to names the agent serves itself (the `kubernetes` Service, see `apiproxy`).
    """
    lines = [_HEADER]
    own = [owner.hostname]
    if owner.subdomain:
        own = [*_names(owner.hostname, owner.subdomain, owner.namespace, owner.namespace, domain), *own]
    lines.append(f"{owner.ip}\t{' '.join(own)}\n")

    services = sorted(services, key=lambda s: (s.namespace, s.name))
    pods = sorted(pods, key=lambda p: (p.namespace, p.name, p.ip or ""))
    # Indexed by namespace (a Service only selects pods of its own), so a file costs pods + services, not
    # pods x services: every pod's file is rebuilt on each change.
    headless: dict[tuple[str, str], list[ServiceRecord]] = {}
    for svc in services:
        if svc.headless:
            headless.setdefault((svc.namespace, svc.name), []).append(svc)
    addressed: dict[str, list[PodRecord]] = {}
    for pod in pods:
        if pod.ip is not None:
            addressed.setdefault(pod.namespace, []).append(pod)
    pod_lines: list[str] = []
    for pod in pods:
        if pod.uid == owner.uid or not pod.subdomain or pod.ip is None:
            continue
        if any(_selects(s, pod) for s in headless.get((pod.namespace, pod.subdomain), ())):
            names = _names(pod.hostname, pod.subdomain, pod.namespace, owner.namespace, domain)
            pod_lines.append(f"{pod.ip}\t{' '.join(names)}\n")
    svc_lines: list[str] = []
    for svc in services:
        ips = sorted({p.ip for p in addressed.get(svc.namespace, ()) if p.ip is not None and _selects(svc, p)})
        if ips:
            svc_names = " ".join(_names("", svc.name, svc.namespace, owner.namespace, domain))
            svc_lines += [f"{ip}\t{svc_names}\n" for ip in ips]
    if pod_lines:
        lines += ["# pods\n", *pod_lines]
    if svc_lines:
        lines += ["# services\n", *svc_lines]
    if extra:
        lines += ["# forwarded by the node agent\n", *(f"{ip}\t{' '.join(extra[ip])}\n" for ip in sorted(extra))]
    return "".join(lines)


class HostsFile:
    """One pod's hosts file, always updated in place (see the module docstring for why)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: str | None = None

    def create(self, text: str) -> None:
        """Create (or reset) the file; only before anything bind-mounts it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(text)
        self.path.chmod(0o644)
        self._last = text

    def write(self, text: str) -> bool:
        """Rewrite the content in place if it changed; returns whether it did."""
        if text == self._last:
            return False
        data = text.encode()
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        self._last = text
        return True
