"""Pod networking for the sandbox: names, a tiny IPAM and the `ip` commands, kept apart from processes.

Why a bridge and veth pairs: it is the smallest setup that gives every pod its own IP and port space
(two ranks can both bind 29500), lets pods reach each other at L2 without routing or NAT, and lets them
reach the host on the bridge's address (the gateway), where the operator's report endpoint listens.

Why the IPAM is round-robin rather than lowest-free: a just-released address is not handed out again
at once, so a stale hosts-file line or ARP entry from a deleted pod does not point at its successor.

The pure parts (naming, allocation, command text) are unit-tested without root; `run_ip_batch` is the
only place that runs `ip`. Each batch is one process, so a pod's network costs two short `ip` runs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

IFNAMSIZ = 15  # Linux interface names are at most 15 bytes.
POD_IFNAME = "eth0"


class NetworkSetupError(RuntimeError):
    """An `ip` command failed; the message carries its stderr."""


@dataclass(frozen=True)
class PodNetNames:
    """The host-visible names of one pod's network pieces, derived from the pod UID alone.

    Deterministic so that a restarted agent can find and remove what a crashed one left behind.
    """

    key: str
    veth: str


def pod_key(pod_uid: str) -> str:
    """A short, filesystem- and ifname-safe identifier for a pod (10 hex digits of a hash of its UID)."""
    return hashlib.sha256(pod_uid.encode()).hexdigest()[:10]


def pod_net_names(prefix: str, pod_uid: str) -> PodNetNames:
    """Names for a pod's host-side veth; the prefix keeps two agents (tests, `dev up`) apart."""
    key = pod_key(pod_uid)
    veth = f"{prefix}v{key}"[:IFNAMSIZ]
    return PodNetNames(key=key, veth=veth)


def validate_prefix(prefix: str) -> None:
    """Reject prefixes that would overflow interface names or need quoting anywhere."""
    if not (1 <= len(prefix) <= 4) or not prefix.isascii() or not prefix.isalnum():
        raise ValueError(f"name prefix must be 1-4 ASCII letters/digits, got {prefix!r}")


@dataclass(frozen=True)
class PodNetwork:
    """The shared pod network: a CIDR whose first host address is the bridge (gateway)."""

    cidr: ipaddress.IPv4Network

    @classmethod
    def parse(cls, cidr: str) -> PodNetwork:
        net = ipaddress.IPv4Network(cidr, strict=True)
        if net.num_addresses < 8:
            raise ValueError(f"pod CIDR {cidr} is too small")
        return cls(net)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.cidr.network_address + 1

    @property
    def prefixlen(self) -> int:
        return self.cidr.prefixlen


def allocate_ip(network: PodNetwork, allocated: Iterable[str], last: str | None) -> ipaddress.IPv4Address:
    """Pick the next free host address after `last` (wrapping), skipping the gateway.

    Raises `NetworkSetupError` when the CIDR is exhausted.
    """
    taken = {ipaddress.IPv4Address(a) for a in allocated}
    taken.add(network.gateway)
    first = int(network.gateway) + 1
    end = int(network.cidr.broadcast_address)  # exclusive
    size = end - first
    start = first
    if last is not None:
        last_int = int(ipaddress.IPv4Address(last))
        if first <= last_int < end:
            start = last_int + 1
    for i in range(size):
        candidate = ipaddress.IPv4Address(first + (start - first + i) % size)
        if candidate not in taken:
            return candidate
    raise NetworkSetupError(f"pod CIDR {network.cidr} has no free address left")


def bridge_mac(bridge: str) -> str:
    """A fixed, locally administered unicast MAC for `bridge` (derived from its name).

    Why: a Linux bridge without an address of its own takes the lowest MAC among its ports, so it changes
    whenever a pod's veth with a lower MAC comes or goes. Pods that resolved the gateway before such a
    change keep sending to the old MAC until their ARP entry expires: their reports to the operator time
    out for many seconds while other pods' get through. An address set explicitly never changes."""
    digest = hashlib.sha256(bridge.encode()).digest()
    return ":".join(f"{octet:02x}" for octet in (0x02, *digest[:5]))


def bridge_up_commands(bridge: str, network: PodNetwork, *, exists: bool) -> list[str]:
    """`ip -batch` lines that create (or repair, after a crash) the bridge with the gateway address and
    a MAC address that never changes (`bridge_mac`)."""
    create = [] if exists else [f"link add {bridge} type bridge"]
    return [
        *create,
        f"addr replace {network.gateway}/{network.prefixlen} dev {bridge}",
        f"link set {bridge} address {bridge_mac(bridge)}",
        f"link set {bridge} up",
    ]


def overlapping_routes(network: PodNetwork, proc_net_route: str, ignore_dev: str) -> list[str]:
    """Devices (other than ours) with an IPv4 route overlapping the pod CIDR, from /proc/net/route text.

    Default routes are ignored; anything else would make pod addresses ambiguous on this host.
    """
    found = []
    for line in proc_net_route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or fields[0] == ignore_dev:
            continue
        dest = ipaddress.IPv4Address(bytes.fromhex(fields[1])[::-1])
        mask = ipaddress.IPv4Address(bytes.fromhex(fields[7])[::-1])
        if int(mask) == 0:
            continue
        route = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if route.overlaps(network.cidr):
            found.append(f"{fields[0]} ({route})")
    return found


def host_side_commands(names: PodNetNames, bridge: str, netns_path: Path) -> list[str]:
    """Host-side lines: a veth pair whose pod end is created directly inside the pod's namespace."""
    return [
        f"link add {names.veth} type veth peer name {POD_IFNAME} netns {netns_path}",
        f"link set {names.veth} master {bridge} up",
    ]


def pod_side_commands(ip: ipaddress.IPv4Address, network: PodNetwork) -> list[str]:
    """Lines run inside the pod's namespace: loopback up, address, default route via the gateway."""
    return [
        "link set lo up",
        f"addr add {ip}/{network.prefixlen} dev {POD_IFNAME}",
        f"link set {POD_IFNAME} up",
        f"route add default via {network.gateway}",
    ]


def check_batch_safe(paths: Sequence[Path]) -> None:
    """`ip -batch` splits on whitespace: state paths with blanks cannot be used for namespace pins."""
    for p in paths:
        if any(ch.isspace() for ch in str(p)):
            raise ValueError(f"the agent's state directory must not contain whitespace: {p}")


def run_ip_batch(
    lines: Sequence[str],
    *,
    ip: str,
    nsenter_net: Path | None = None,
    nsenter: str = "nsenter",
    force: bool = False,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run `lines` with one `ip -batch -` (inside the namespace pinned at `nsenter_net` if given).

    `force` keeps going after a failing line (used for teardown, where parts may already be gone).
    """
    argv = [ip, "-batch", "-"]
    if force:
        argv.insert(1, "-force")
    if nsenter_net is not None:
        argv = [nsenter, f"--net={nsenter_net}", "--", *argv]
    proc = subprocess.run(
        argv,
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=False,
        env=dict(env) if env is not None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    if proc.returncode != 0 and not force:
        raise NetworkSetupError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")


def link_exists(name: str) -> bool:
    """Whether a network interface of that name exists in the agent's namespace (sysfs, no exec)."""
    return Path("/sys/class/net", name).exists()
