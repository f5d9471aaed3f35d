"""The pure half of pod networking: names, IPAM, `ip` batch text, route-overlap detection.

Pins: names are deterministic per pod UID and fit Linux's 15-byte interface names; the IPAM hands out
round-robin after the last address, skips the gateway and taken addresses, wraps, and says when the
CIDR is full; the batch lines create the pod end inside the namespace; the bridge gets a fixed MAC (a
bridge without one takes its lowest port's, so the gateway's MAC moved when pods came and went); routes
that overlap the pod CIDR on other devices are reported (default routes and our own bridge are not).
"""

from __future__ import annotations

import ipaddress

import pytest

from trainsmart.devcluster.agent.sandbox import pod_network as sn


def test_names_are_deterministic_and_fit_ifnamsiz() -> None:
    a, b = sn.pod_net_names("ts9", "uid-a"), sn.pod_net_names("ts9", "uid-b")
    assert a == sn.pod_net_names("ts9", "uid-a")
    assert a.key != b.key and a.veth != b.veth
    assert len(a.veth) <= sn.IFNAMSIZ and a.veth.startswith("ts9v")


@pytest.mark.parametrize("prefix", ["", "toolong", "a-b", "é"])
def test_bad_prefixes_are_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        sn.validate_prefix(prefix)


def test_ipam_is_round_robin_and_skips_gateway_and_taken() -> None:
    net = sn.PodNetwork.parse("10.9.0.0/29")  # hosts .1-.6; .1 is the gateway
    assert str(net.gateway) == "10.9.0.1"
    assert str(sn.allocate_ip(net, [], None)) == "10.9.0.2"
    assert str(sn.allocate_ip(net, ["10.9.0.2"], "10.9.0.2")) == "10.9.0.3"
    # a released address is not reused at once: allocation continues after `last`
    assert str(sn.allocate_ip(net, [], "10.9.0.3")) == "10.9.0.4"
    # wraps around past the broadcast address, skipping the gateway
    assert str(sn.allocate_ip(net, ["10.9.0.2"], "10.9.0.6")) == "10.9.0.3"


def test_ipam_says_when_full() -> None:
    net = sn.PodNetwork.parse("10.9.0.0/29")
    with pytest.raises(sn.NetworkSetupError, match="no free address"):
        sn.allocate_ip(net, [f"10.9.0.{i}" for i in range(2, 7)], None)


def test_tiny_cidrs_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        sn.PodNetwork.parse("10.9.0.0/30")


def test_batch_lines() -> None:
    net = sn.PodNetwork.parse("10.244.0.0/16")
    names = sn.pod_net_names("ts", "u")
    from pathlib import Path

    host = sn.host_side_commands(names, "tsbr0", Path("/state/ns/k.net"))
    assert host == [
        f"link add {names.veth} type veth peer name eth0 netns /state/ns/k.net",
        f"link set {names.veth} master tsbr0 up",
    ]
    inside = sn.pod_side_commands(ipaddress.IPv4Address("10.244.0.7"), net)
    assert "addr add 10.244.0.7/16 dev eth0" in inside
    assert "route add default via 10.244.0.1" in inside
    assert inside[0] == "link set lo up"
    assert sn.bridge_up_commands("tsbr0", net, exists=True)[0].startswith("addr replace 10.244.0.1/16")


def test_the_bridge_gets_a_fixed_mac_so_the_gateway_never_moves_under_a_pod() -> None:
    net = sn.PodNetwork.parse("10.244.0.0/16")
    mac = sn.bridge_mac("tsbr0")
    assert mac == sn.bridge_mac("tsbr0") != sn.bridge_mac("tsbr1")
    first = int(mac.split(":")[0], 16)
    assert len(mac.split(":")) == 6 and first & 0x02 and not first & 0x01  # locally administered, unicast
    for exists in (False, True):  # created, and repaired after a crash
        assert f"link set tsbr0 address {mac}" in sn.bridge_up_commands("tsbr0", net, exists=exists)


ROUTES = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker0\t0000F40A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
tsbr0\t0000F50A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def test_overlapping_routes() -> None:
    assert sn.overlapping_routes(sn.PodNetwork.parse("10.244.0.0/16"), ROUTES, "tsbr0") == ["docker0 (10.244.0.0/16)"]
    assert sn.overlapping_routes(sn.PodNetwork.parse("10.245.0.0/16"), ROUTES, "tsbr0") == []
    assert sn.overlapping_routes(sn.PodNetwork.parse("192.0.2.0/28"), ROUTES, "tsbr0") == ["eth0 (192.0.2.0/24)"]
