"""The report endpoint is never starved by the controller's work (issue 13: "report endpoint unreachable
... timed out" when many objects start at once).

Pins, with the operator's real runtime (`OperatorRuntime`: its report endpoint, inbox, token cache and
work queue), only the API calls faked:
- while the controller's event loop is blocked for 2 s (as a reconcile doing synchronous work blocks it),
  a trainer's report is still answered, 202, within 0.5 s, and queued for its job;
- a job's first report (its token not cached yet) is answered within 0.5 s while the controller's API
  threads are all busy with slow calls: the Secret read does not queue behind them;
- the reconcile it triggers runs in the controller's loop once that loop is free again;
- both loops' lag is measured, and the endpoint answers nothing after `stop`;
- a Secret read slower than the wait a report allows is answered 503 (the client retries) and goes on;
  reads of one job are shared, and the retry is answered from the cache;
- a prefetch keeps a token it read, never a missing one (the first report would then be refused).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from trainsmart.devcluster.controlplane import free_port
from trainsmart.handlers.operator_runtime import OperatorRuntime
from trainsmart.handlers.trainingjob_controller import TrainingJobController
from trainsmart.kube import Kube
from trainsmart.options import OperatorOptions
from trainsmart.report_endpoint import REPORT_PATH, JobKey, TokenVerifier

pytestmark = pytest.mark.asyncio

JOB = JobKey("ml", "digits")
OTHER_JOB = JobKey("ml", "other")
TOKEN = "token-of-digits"
BLOCKED_S = 2.0
ANSWER_WITHIN_S = 0.5


def report_body() -> bytes:
    return json.dumps(
        {
            "kind": "epoch",
            "time": "2025-01-01T12:00:00+00:00",
            "epoch": 1,
            "totalEpochs": 3,
            "device": {"type": "cpu"},
            "job": {"namespace": JOB.namespace, "name": JOB.name},
        }
    ).encode()


def kubeconfig(path: Path) -> str:
    """A kubeconfig for a server nobody listens on: every real API call would fail (all are faked)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


class Fakes:
    """What the faked API calls saw, and the controller's reconciles."""

    def __init__(self) -> None:
        self.reconciled: list[tuple[JobKey, float]] = []
        self.token_reads = 0


@pytest_asyncio.fixture
async def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[OperatorRuntime, Fakes]]:
    fakes = Fakes()

    async def served(_: Kube, group: str, version: str) -> set[str]:
        return {"trainingjobs", "hyperparamsweeps"}

    async def read_token(self: Kube, namespace: str, name: str) -> str | None:
        def read() -> str | None:
            fakes.token_reads += 1
            return TOKEN if JobKey(namespace, name) == JOB else None

        # In the API threads, as the real read is: it queues behind whatever else runs there.
        return await asyncio.get_running_loop().run_in_executor(self._executor, read)

    async def reconcile(_: TrainingJobController, key: JobKey) -> float | None:
        fakes.reconciled.append((key, time.monotonic()))
        return None

    monkeypatch.setattr(Kube, "served_resources", served)
    monkeypatch.setattr(Kube, "read_report_token", read_token)
    monkeypatch.setattr(TrainingJobController, "reconcile", reconcile)
    options = OperatorOptions(
        kubeconfig=kubeconfig(tmp_path / "kubeconfig"), report_host="127.0.0.1", report_port=free_port("127.0.0.1")
    )
    runtime = OperatorRuntime(options)
    await runtime.start()
    try:
        yield runtime, fakes
    finally:
        await runtime.stop()


def post_in_thread(url: str, token: str) -> Callable[[], tuple[int, float]]:
    """POST a report from another thread (as a trainer would); the returned call waits for (status, s)."""
    result: list[tuple[int, float]] = []

    def post() -> None:
        request = urllib.request.Request(  # noqa: S310 - a loopback URL the test built
            url, data=report_body(), headers={"Authorization": f"Bearer {token}"}, method="POST"
        )
        started = time.monotonic()
        try:
            # The client library's timeout: a trainer gives up ("unreachable ... timed out") after 5 s.
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                result.append((response.status, time.monotonic() - started))
        except OSError:
            result.append((0, time.monotonic() - started))

    thread = threading.Thread(target=post)
    thread.start()

    def wait() -> tuple[int, float]:
        thread.join(15)
        return result[0]

    return wait


def report_url(runtime: OperatorRuntime) -> str:
    return f"http://127.0.0.1:{runtime.options.report_port}{REPORT_PATH}/{JOB.namespace}/{JOB.name}"


async def test_a_report_is_answered_while_the_controller_loop_is_blocked(
    runtime: tuple[OperatorRuntime, Fakes],
) -> None:
    operator, fakes = runtime
    wait = post_in_thread(report_url(operator), TOKEN)
    blocked_at = time.monotonic()
    time.sleep(BLOCKED_S)  # noqa: ASYNC251 - on purpose: a reconcile blocking the controller's loop (synchronous work between awaits)
    status, seconds = await asyncio.to_thread(wait)
    assert seconds < ANSWER_WITHIN_S, f"answered after {seconds:.2f} s with the controller's loop blocked"
    assert status == 202
    assert operator.inbox.pending(JOB) == 1
    # The reconcile it triggered runs in the controller's loop, now free again.
    for _ in range(50):
        if fakes.reconciled:
            break
        await asyncio.sleep(0.02)
    assert [key for key, _ in fakes.reconciled] == [JOB]
    assert fakes.reconciled[0][1] >= blocked_at + BLOCKED_S


async def test_a_first_report_does_not_wait_for_the_controllers_api_calls(
    runtime: tuple[OperatorRuntime, Fakes],
) -> None:
    operator, fakes = runtime
    release = threading.Event()
    loop = asyncio.get_running_loop()
    # Every API thread of the controller busy with a slow call, as during a burst of reconciles.
    busy = [loop.run_in_executor(operator.kube._executor, release.wait, 8.0) for _ in range(64)]
    try:
        status, seconds = await asyncio.to_thread(post_in_thread(report_url(operator), TOKEN))
    finally:
        release.set()
        await asyncio.gather(*busy)
    assert seconds < ANSWER_WITHIN_S, f"the token read queued behind the controller's calls ({seconds:.2f} s)"
    assert status == 202
    assert fakes.token_reads == 1


async def test_both_loops_lag_is_measured_and_stop_closes_the_endpoint(
    runtime: tuple[OperatorRuntime, Fakes],
) -> None:
    operator, _ = runtime
    time.sleep(0.3)  # noqa: ASYNC251 - on purpose: the controller loop blocked
    await asyncio.sleep(0.3)
    exposition = operator.metrics.exposition().decode()
    assert 'trainsmart_event_loop_lag_seconds_count{loop="controller"}' in exposition
    assert 'trainsmart_event_loop_lag_seconds_count{loop="reports"}' in exposition
    lag: dict[str, Any] = {
        line.split('"')[1]: float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("trainsmart_event_loop_lag_seconds_sum")
    }
    assert lag["controller"] >= 0.2  # the 0.3 s block above
    assert lag["reports"] < 0.2
    await operator.stop()
    status, _ = await asyncio.to_thread(post_in_thread(report_url(operator), TOKEN))
    assert status == 0  # nothing listens any more


async def test_a_slow_secret_read_is_answered_503_and_the_retry_is_served_from_the_cache() -> None:
    reads: list[JobKey] = []

    async def slow_read(namespace: str, name: str) -> str | None:
        reads.append(JobKey(namespace, name))
        await asyncio.sleep(0.3)
        return TOKEN

    verifier = TokenVerifier(slow_read, read_wait=0.1)
    first, second = await asyncio.gather(verifier.check(JOB, TOKEN), verifier.check(JOB, TOKEN))
    assert (first.status, second.status) == (503, 503)
    await asyncio.sleep(0.4)  # the read went on after the answers
    assert (await verifier.check(JOB, TOKEN)).status == 202
    assert reads == [JOB]  # one read, shared by both reports and the retry


async def test_a_prefetch_keeps_a_token_but_never_a_missing_one() -> None:
    tokens: dict[JobKey, str] = {}

    async def read(namespace: str, name: str) -> str | None:
        return tokens.get(JobKey(namespace, name))

    verifier = TokenVerifier(read)
    await verifier.prefetch(JOB)
    assert not verifier.cached(JOB)  # its Secret not there yet: its first report must read again
    tokens[JOB] = TOKEN
    assert (await verifier.check(JOB, TOKEN)).status == 202
    await verifier.prefetch(OTHER_JOB)
    assert not verifier.cached(OTHER_JOB)
