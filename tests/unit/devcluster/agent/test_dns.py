"""Per-pod hosts files: what names resolve to what, and that updates happen in place.

Pins: the pod's own line (hostname, and FQDN + short forms with a subdomain); other pods' names only
through a governing headless Service, only when Ready unless it publishes not-ready addresses; bare
short names only within the owner's namespace; Service names -> every selected pod; finished and
terminating pods drop out; the text is deterministic; the file keeps its inode and shrinks correctly;
filtering the view once with `named_pods` (what a refresh of every file does) changes no file's text.
"""

from __future__ import annotations

from pathlib import Path

from trainsmart.devcluster.agent.dns import (
    HostsFile,
    PodRecord,
    ServiceRecord,
    build_hosts_text,
    named_pods,
    pod_record,
    service_record,
)


def rec(name: str, ip: str | None, *, ns: str = "ns", ready: bool = True, **kw: object) -> PodRecord:
    labels = kw.pop("labels", {"job": "j"})
    return PodRecord(
        uid=f"uid-{ns}-{name}",
        namespace=ns,
        name=name,
        ip=ip,
        hostname=str(kw.pop("hostname", name)),
        subdomain=kw.pop("subdomain", "j"),  # type: ignore[arg-type]
        labels=labels,  # type: ignore[arg-type]
        ready=ready,
        **kw,  # type: ignore[arg-type]
    )


HEADLESS = ServiceRecord(namespace="ns", name="j", selector={"job": "j"}, headless=True)


def lines_for(text: str, ip: str) -> list[list[str]]:
    return [line.split()[1:] for line in text.splitlines() if line.split() and line.split()[0] == ip]


def test_own_line_has_fqdn_and_short_forms() -> None:
    owner = rec("j-0", "10.0.0.2")
    text = build_hosts_text(owner, [owner], [])
    assert lines_for(text, "10.0.0.2") == [["j-0.j.ns.svc.cluster.local", "j-0.j.ns.svc", "j-0.j.ns", "j-0.j", "j-0"]]
    assert "127.0.0.1\tlocalhost" in text


def test_own_line_without_subdomain_is_just_the_hostname() -> None:
    owner = rec("solo", "10.0.0.9", subdomain=None, hostname="box")
    assert lines_for(build_hosts_text(owner, [], []), "10.0.0.9") == [["box"]]


def test_peers_resolve_through_their_headless_service_when_ready() -> None:
    owner, peer, unready = rec("j-0", "10.0.0.2"), rec("j-1", "10.0.0.3"), rec("j-2", "10.0.0.4", ready=False)
    text = build_hosts_text(owner, [owner, peer, unready], [HEADLESS])
    assert ["j-1.j.ns.svc.cluster.local", "j-1.j.ns.svc", "j-1.j.ns", "j-1.j"] in lines_for(text, "10.0.0.3")
    assert lines_for(text, "10.0.0.4") == []
    svc = ["j.ns.svc.cluster.local", "j.ns.svc", "j.ns", "j"]
    assert svc in lines_for(text, "10.0.0.2") and svc in lines_for(text, "10.0.0.3")


def test_publish_not_ready_addresses_includes_unready_pods() -> None:
    owner, unready = rec("j-0", "10.0.0.2"), rec("j-2", "10.0.0.4", ready=False)
    svc = ServiceRecord("ns", "j", {"job": "j"}, headless=True, publish_not_ready=True)
    assert lines_for(build_hosts_text(owner, [owner, unready], [svc]), "10.0.0.4")


def test_no_governing_service_no_pod_record() -> None:
    owner, peer = rec("j-0", "10.0.0.2"), rec("j-1", "10.0.0.3")
    other = ServiceRecord("ns", "other", {"job": "j"}, headless=True)
    text = build_hosts_text(owner, [owner, peer], [other])
    assert ["other.ns.svc.cluster.local", "other.ns.svc", "other.ns", "other"] in lines_for(text, "10.0.0.3")
    assert not any("j-1.j" in " ".join(n) for n in lines_for(text, "10.0.0.3"))


def test_other_namespaces_get_no_bare_short_names() -> None:
    owner = rec("a", "10.0.0.2", ns="mine")
    peer = rec("j-1", "10.0.0.3", ns="theirs")
    svc = ServiceRecord("theirs", "j", {"job": "j"}, headless=True)
    text = build_hosts_text(owner, [owner, peer], [svc])
    names = [n for line in lines_for(text, "10.0.0.3") for n in line]
    assert "j-1.j.theirs.svc.cluster.local" in names and "j-1.j.theirs" in names
    assert "j-1.j" not in names and "j" not in names


def test_clusterip_services_resolve_to_their_pods() -> None:
    owner, peer = rec("j-0", "10.0.0.2"), rec("web", "10.0.0.7", labels={"app": "web"}, subdomain=None)
    svc = ServiceRecord("ns", "web", {"app": "web"}, headless=False)
    assert ["web.ns.svc.cluster.local", "web.ns.svc", "web.ns", "web"] in lines_for(
        build_hosts_text(owner, [owner, peer], [svc]), "10.0.0.7"
    )


def test_terminating_and_addressless_pods_drop_out() -> None:
    owner = rec("j-0", "10.0.0.2")
    gone = rec("j-1", "10.0.0.3", terminating=True)
    pending = rec("j-2", None)
    text = build_hosts_text(owner, [owner, gone, pending], [HEADLESS])
    assert lines_for(text, "10.0.0.3") == []
    assert "j-2" not in text


def test_text_is_deterministic() -> None:
    owner, a, b = rec("j-0", "10.0.0.2"), rec("j-1", "10.0.0.3"), rec("j-2", "10.0.0.4")
    assert build_hosts_text(owner, [owner, a, b], [HEADLESS]) == build_hosts_text(owner, [b, a, owner], [HEADLESS])


def test_named_pods_changes_no_file() -> None:
    other_ns = ServiceRecord(namespace="other", name="web", selector={"app": "web"}, headless=False)
    plain = ServiceRecord(namespace="ns", name="api", selector={"job": "j"}, headless=False, publish_not_ready=True)
    no_selector = ServiceRecord(namespace="ns", name="ext", selector=None)
    pods = [
        rec("j-0", "10.0.0.2"),
        rec("j-1", "10.0.0.3", ready=False),
        rec("j-2", None),
        rec("bare", "10.0.0.5", subdomain=None, labels={}),
        rec("w-0", "10.0.1.2", ns="other", labels={"app": "web"}, subdomain=None),
        rec("w-1", "10.0.1.3", ns="other", labels={"app": "web"}, subdomain="web"),
    ]
    services = [HEADLESS, other_ns, plain, no_selector]
    named = named_pods(pods, services)
    assert "bare" not in {p.name for p in named} and "j-2" not in {p.name for p in named}
    for owner in pods:
        if owner.ip is not None:
            assert build_hosts_text(owner, named, services) == build_hosts_text(owner, pods, services)


def test_records_from_api_dicts() -> None:
    pod = {
        "metadata": {"name": "j-0", "namespace": "ns", "uid": "u", "labels": {"job": "j"}},
        "spec": {"subdomain": "j"},
        "status": {"podIP": "10.0.0.2", "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    record = pod_record(pod)
    assert record is not None
    assert (record.hostname, record.subdomain, record.ip, record.ready) == ("j-0", "j", "10.0.0.2", True)
    assert pod_record({**pod, "status": {"phase": "Succeeded", "podIP": "10.0.0.2"}}) is None
    svc = service_record(
        {"metadata": {"name": "j", "namespace": "ns"}, "spec": {"clusterIP": "None", "selector": {"job": "j"}}}
    )
    assert svc == ServiceRecord("ns", "j", {"job": "j"}, headless=True, publish_not_ready=False)


def test_hosts_file_is_rewritten_in_place(tmp_path: Path) -> None:
    hosts = HostsFile(tmp_path / "hosts")
    hosts.create("a" * 100 + "\n")
    inode = hosts.path.stat().st_ino
    assert hosts.write("short\n")
    assert hosts.path.read_text() == "short\n"
    assert hosts.path.stat().st_ino == inode
    assert not hosts.write("short\n")  # unchanged: no write at all
