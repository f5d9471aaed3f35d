"""`handlers.discovery.wait_until_served`: the operator's bounded startup wait for its CRDs.

Pins:
- returns at once when discovery already serves every wanted plural (no sleeping, no log line);
- keeps looking while some are missing or discovery fails (apiserver still starting), then returns;
- logs one clear line saying what it waits for (not one per poll);
- gives up after the limit with an error naming the missing plurals and what to do.
"""

from __future__ import annotations

import logging

import pytest

from trainsmart.handlers.discovery import CrdsNotServedError, wait_until_served

pytestmark = pytest.mark.asyncio

WANTED = ("trainingjobs", "hyperparamsweeps")


class Discovery:
    """Answers in turn (a set of plurals, or an exception to raise); a fake clock advanced by `sleep`."""

    def __init__(self, *answers: set[str] | Exception) -> None:
        self.answers = list(answers)
        self.now = 0.0
        self.looks = 0

    async def served(self) -> set[str]:
        self.looks += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def wait(discovery: Discovery, limit: float = 30.0) -> None:
    await wait_until_served(
        discovery.served,
        WANTED,
        what="trainsmart.dev/v1alpha1",
        limit=limit,
        interval=0.5,
        clock=discovery.clock,
        sleep=discovery.sleep,
    )


async def test_returns_at_once_when_everything_is_served(caplog: pytest.LogCaptureFixture) -> None:
    discovery = Discovery({"trainingjobs", "hyperparamsweeps", "trainingjobs/status"})
    with caplog.at_level(logging.INFO, logger="trainsmart.handlers.discovery"):
        await wait(discovery)
    assert discovery.looks == 1
    assert discovery.now == 0.0
    assert caplog.records == []


async def test_waits_through_missing_plurals_and_failing_discovery(caplog: pytest.LogCaptureFixture) -> None:
    discovery = Discovery(
        ConnectionRefusedError("apiserver starting"), set(), {"trainingjobs"}, {"trainingjobs", "hyperparamsweeps"}
    )
    with caplog.at_level(logging.INFO, logger="trainsmart.handlers.discovery"):
        await wait(discovery)
    assert discovery.looks == 4
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2  # one "waiting" line (not one per look), one "served" line
    assert "waiting for API discovery to serve trainsmart.dev/v1alpha1 hyperparamsweeps, trainingjobs" in messages[0]
    assert "apiserver starting" in messages[0]
    assert "serves trainsmart.dev/v1alpha1" in messages[1]


async def test_gives_up_after_the_limit_naming_what_is_missing() -> None:
    discovery = Discovery({"trainingjobs"})
    with pytest.raises(CrdsNotServedError) as raised:
        await wait(discovery, limit=5.0)
    message = str(raised.value)
    assert "hyperparamsweeps" in message
    assert "trainingjobs" not in message.split("serve")[1].split("within")[0]
    assert "kubectl apply -f crds/" in message
    assert 5.0 <= discovery.now < 6.0
