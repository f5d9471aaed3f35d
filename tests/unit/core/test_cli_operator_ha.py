"""`trainsmart operator` flags for running it as a Deployment (the Helm chart's command line).

Pins: with peering, every replica gets its own priority unless one is given (Kopf pauses *all* replicas
whose priorities tie, so replicas from one pod template must not share one); without peering none is
set; the liveness port is off by default.
"""

from __future__ import annotations

import argparse

from trainsmart.cli import build_parser
from trainsmart.operator_config import peering_priority as _peering_priority


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["operator", *argv])


def test_peering_replicas_get_distinct_priorities_by_default() -> None:
    priorities = {_peering_priority(_args("--peering", "ts")) for _ in range(20)}
    assert len(priorities) == 20 and all(isinstance(p, int) and p > 0 for p in priorities)


def test_a_given_priority_is_kept_and_standalone_sets_none() -> None:
    assert _peering_priority(_args("--peering", "ts", "--peering-priority", "7")) == 7
    assert _peering_priority(_args()) is None


def test_liveness_endpoint_is_off_unless_a_port_is_given() -> None:
    assert _args().liveness_port == 0
    assert _args("--liveness-port", "8081").liveness_port == 8081
