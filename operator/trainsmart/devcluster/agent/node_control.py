"""Taking a simulated node down the way a real machine fails, and bringing it back as a rebooted one.

The request travels through the agent's state directory, so `trainsmart dev node down NODE`, a test and
the agent need nothing but a path in common: `<state>/nodes-down/<node>` exists while NODE is down. The
agent looks at that directory every `POLL_SECONDS` (`NodeAgent`) and, for a node that goes down, does what
a power cut does: its heartbeats stop (no Lease renewal, no NodeStatus), its pods' processes are SIGKILLed
and nothing more is written for them. The control plane finds out the real way: the node-lifecycle
controller marks the node NotReady (Unknown) after `node-monitor-grace-period`, taints it
`node.kubernetes.io/unreachable`, and the taint manager deletes its pods once their toleration runs out;
those pods stay Terminating, since no kubelet is left to finish their deletion.

A node that comes back up is a rebooted machine: it registers again (Ready since now), and its pods are
handled as a kubelet handles them after a restart: the ones being deleted are finished (deleted), the
others' containers are found dead (exit 137) and the restart policy decides (`podstatus.adopt_record`).
"""

from __future__ import annotations

from pathlib import Path

DOWN_DIR = "nodes-down"
POLL_SECONDS = 0.2


def down_dir(state_dir: Path) -> Path:
    return state_dir / DOWN_DIR


def set_node_down(state_dir: Path, node: str, down: bool = True) -> None:
    """Ask the agent using `state_dir` to take `node` down (or, with `down=False`, bring it up)."""
    if not node or "/" in node or node.startswith("."):
        raise ValueError(f"not a node name: {node!r}")
    marker = down_dir(state_dir) / node
    if down:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    else:
        marker.unlink(missing_ok=True)


def read_down_nodes(state_dir: Path) -> frozenset[str]:
    """The nodes asked to be down (whatever the agent has made of it so far)."""
    try:
        return frozenset(p.name for p in down_dir(state_dir).iterdir() if not p.name.startswith("."))
    except FileNotFoundError:
        return frozenset()


def changes(current: frozenset[str], wanted: frozenset[str], known: frozenset[str]) -> tuple[list[str], list[str]]:
    """(nodes to take down, nodes to bring up), sorted; names the agent does not run are ignored."""
    wanted = wanted & known
    return sorted(wanted - current), sorted(current - wanted)
