"""Cluster-tier fixtures: the operator against the session's real apiserver, with no node agent.

Pods stay Pending unless a test writes their status the way a kubelet would, and nothing sends reports
except the test itself, so the operator's report endpoint listens on loopback. One operator per test
module: a module's tests share its startup (Kopf's discovery and first LISTs take seconds) while modules
stay independent of each other's leftovers. The CRDs come from the session-wide `trainsmart_crds`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from trainsmart.devcluster.operator_process import OperatorProcess


@pytest.fixture(scope="module")
def cluster_operator(
    start_operator: Callable[..., OperatorProcess], trainsmart_crds: dict[str, Any]
) -> Iterator[OperatorProcess]:
    """`trainsmart operator` on loopback for this module; stopped with it, the tail of its log printed
    at teardown."""
    operator = start_operator()
    try:
        yield operator
    finally:
        operator.stop()
        print(operator.tail())
