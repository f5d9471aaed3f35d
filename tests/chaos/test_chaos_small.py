"""The chaos suite's small version (issue 13), for `make test`: one lifecycle of each kind (a plain job,
one that fails retryably once, one suspended and resumed, one with a TTL, a median sweep and an ASHA sweep
with checkpointed promotions) while the operator is SIGKILLed at random moments (seeded) and restarted at
once, then 20 s of quiet and the counts of `support.chaos`: duplicate pods and trials, stuck objects,
epochs lost beyond the checkpoint interval, unexpected outcomes, operator tracebacks, all 0.
`bench/chaos.py` is the full version (>= 100 lifecycles, 2 minutes of quiet).
"""

from __future__ import annotations

import pytest
from kubernetes import client

from support.chaos import Chaos, ChaosConfig
from support.node_agent import RunningAgent
from trainsmart.devcluster.operator_process import OperatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]


def test_operator_sigkilled_at_random_across_every_kind_of_lifecycle(
    chaos_operator: OperatorProcess, chaos_agent: RunningAgent, api_client: client.ApiClient, namespace: str
) -> None:
    config = ChaosConfig(
        lifecycles=6,
        seed=1,
        concurrency=6,
        kill_min=3,
        kill_max=15,
        max_kills=4,
        quiet=20,
        lifecycle_timeout=360,
        nodes=chaos_agent.node_names,
    )
    figures = Chaos(api_client, namespace, chaos_operator, chaos_agent.state_dir, config).run()
    print(figures.table())
    assert figures.kills >= 3, figures.table()
    assert not figures.failures(), figures.table()
