"""The resync signal the scale suite waits for, `trainsmart_objects_reconciled{kind}` (unit tier):

- it counts watched objects reconciled at least once by this process, each once however often reconciled;
- a reconcile that fails does not count;
- a reconcile that runs after the object's DELETED event does not add it back (no growth after deletion);
- DELETED drops it, so it never outgrows the watched objects;
- `?name[]=` restricts an exposition to the named series (the cheap poll of a resync wait).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable

import pytest

from trainsmart.api import SWEEP_KIND, TRAININGJOB_KIND
from trainsmart.observability import OperatorMetrics
from trainsmart.report_endpoint import JobKey

SERIES = "trainsmart_objects_reconciled"


def _event(kind: str, name: str) -> dict[str, object]:
    return {"type": kind, "object": {"metadata": {"namespace": "ns", "name": name}}}


def _reconciled(metrics: OperatorMetrics, kind: str = TRAININGJOB_KIND) -> float:
    text = metrics.exposition([SERIES]).decode()
    match = re.search(rf'^{SERIES}{{kind="{kind}"}} (\S+)$', text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


def _run(awaitable: Awaitable[float | None]) -> float | None:
    async def wait() -> float | None:
        return await awaitable

    return asyncio.run(wait())


async def _ok(_: JobKey) -> float | None:
    return None


async def _fail(_: JobKey) -> float | None:
    raise RuntimeError("boom")


def test_counts_each_watched_object_once_and_drops_it_on_delete() -> None:
    metrics = OperatorMetrics(process=False)
    reconcile = metrics.timed_reconcile(TRAININGJOB_KIND, _ok)
    for name in ("a", "b"):
        metrics.observe_trainingjob(_event("ADDED", name))
    _run(reconcile(JobKey("ns", "a")))
    _run(reconcile(JobKey("ns", "a")))
    assert _reconciled(metrics) == 1.0
    _run(reconcile(JobKey("ns", "b")))
    assert _reconciled(metrics) == 2.0
    metrics.observe_trainingjob(_event("DELETED", "a"))
    assert _reconciled(metrics) == 1.0
    _run(reconcile(JobKey("ns", "a")))  # the reconcile that finds it gone
    assert _reconciled(metrics) == 1.0
    assert metrics.store.reconciled[TRAININGJOB_KIND] == {("ns", "b")}


def test_a_failed_reconcile_does_not_count() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.observe_sweep(_event("ADDED", "s"))
    with pytest.raises(RuntimeError):
        _run(metrics.timed_reconcile(SWEEP_KIND, _fail)(JobKey("ns", "s")))
    assert _reconciled(metrics, SWEEP_KIND) == 0.0


def test_name_filter_returns_only_the_named_series() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.observe_trainingjob(_event("ADDED", "a"))
    text = metrics.exposition([SERIES]).decode()
    assert SERIES in text
    assert "trainsmart_job_phase" not in text
    assert "trainsmart_job_phase" in metrics.exposition().decode()
