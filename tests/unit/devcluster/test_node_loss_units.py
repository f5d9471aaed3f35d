"""The pure parts of node loss in the local cluster: the node-down requests in the agent's state dir and
the control-plane flags that make a lost node NotReady and evicted within ~30 s.

Pins:
- `set_node_down` / `read_down_nodes` round-trip through `<state>/nodes-down/`; bad names are refused;
- `changes` says which nodes to take down and bring up, ignoring nodes the agent does not run;
- the controller-manager gets the short monitor grace and period, no zone-disruption stall, and
  `--pod-eviction-timeout` only on versions that still have it; the apiserver the short tolerations;
- the agent's heartbeat fits inside the grace period several times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainsmart.devcluster.agent import node_control
from trainsmart.devcluster.agent.nodes import HEARTBEAT_INTERVAL
from trainsmart.devcluster.controlplane import (
    NODE_MONITOR_GRACE_S,
    NODE_TOLERATION_S,
    apiserver_eviction_flags,
    node_lifecycle_flags,
)


def test_down_requests_round_trip(tmp_path: Path) -> None:
    assert node_control.read_down_nodes(tmp_path) == frozenset()
    node_control.set_node_down(tmp_path, "gpu-1")
    node_control.set_node_down(tmp_path, "gpu-2")
    assert node_control.read_down_nodes(tmp_path) == {"gpu-1", "gpu-2"}
    node_control.set_node_down(tmp_path, "gpu-1", down=False)
    node_control.set_node_down(tmp_path, "gpu-1", down=False)  # idempotent
    assert node_control.read_down_nodes(tmp_path) == {"gpu-2"}


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden"])
def test_bad_node_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a node name"):
        node_control.set_node_down(tmp_path, name)


def test_changes() -> None:
    known = frozenset({"a", "b", "c"})
    assert node_control.changes(frozenset(), frozenset({"b", "zzz"}), known) == (["b"], [])
    assert node_control.changes(frozenset({"b"}), frozenset({"c"}), known) == (["c"], ["b"])
    assert node_control.changes(frozenset({"a"}), frozenset({"a"}), known) == ([], [])


def test_controller_manager_flags() -> None:
    flags = node_lifecycle_flags((1, 20))
    assert f"--node-monitor-grace-period={NODE_MONITOR_GRACE_S}s" in flags
    assert "--node-monitor-period=2s" in flags
    assert "--unhealthy-zone-threshold=1" in flags
    assert f"--pod-eviction-timeout={NODE_TOLERATION_S}s" in flags
    assert not any(f.startswith("--pod-eviction-timeout") for f in node_lifecycle_flags((1, 30)))


def test_apiserver_tolerations() -> None:
    assert apiserver_eviction_flags() == [
        f"--default-not-ready-toleration-seconds={NODE_TOLERATION_S}",
        f"--default-unreachable-toleration-seconds={NODE_TOLERATION_S}",
    ]


def test_heartbeat_fits_the_grace_period() -> None:
    assert HEARTBEAT_INTERVAL * 10 <= NODE_MONITOR_GRACE_S
    assert NODE_MONITOR_GRACE_S + NODE_TOLERATION_S <= 40
