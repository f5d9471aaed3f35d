"""The report endpoint's HTTP contract (`reports.build_report_app`), served by aiohttp's test server.

Pins:
- the job's own token is accepted (202): the report is queued for that job and a reconcile triggered, on
  both routes (job in the path; job named by the body);
- refusals, each with nothing queued and nothing triggered: no or non-bearer credentials, a wrong token,
  another job's token and a job without a report token (unknown job) 401; a path that is not a
  namespace/name 404; a body that is not JSON or not a valid report 400; a body naming another job than
  the path 403; a body route report without its job 400; a body over the size limit 413;
- no credentials, a wrong token and an unknown job get the very same answer (status, body, challenge), so
  a caller without a token cannot tell which jobs exist (issue 13);
- the token is checked before the body is parsed: a wrong token with a malformed body is 401, not 400;
- a client guessing tokens does not turn every request into a Secret read (re-read at most once per
  interval per job);
- every answer to a report request is counted by status (`on_response`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from trainsmart.report_endpoint import (
    MAX_BODY_BYTES,
    REPORT_PATH,
    JobKey,
    ReportInbox,
    TokenVerifier,
    build_report_app,
)

pytestmark = pytest.mark.asyncio

JOB = JobKey("ml", "digits")
OTHER = JobKey("ml", "other")
TOKENS = {JOB: "token-of-digits", OTHER: "token-of-other"}


def report_body(job: JobKey | None = JOB, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "epoch",
        "time": "2025-01-01T12:00:00+00:00",
        "epoch": 1,
        "totalEpochs": 3,
        "device": {"type": "cpu"},
        "job": {"namespace": job.namespace, "name": job.name} if job is not None else {},
    }
    return body | extra


@dataclass
class Endpoint:
    client: TestClient[web.Request, web.Application]
    inbox: ReportInbox
    triggered: list[JobKey] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    reads: list[JobKey] = field(default_factory=list)

    async def post(self, path: str, token: str | None, **kwargs: Any) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        headers |= kwargs.pop("headers", {})
        async with self.client.post(path, headers=headers, **kwargs) as response:
            await response.read()
            return response.status

    def nothing_written(self) -> bool:
        return not self.triggered and all(self.inbox.pending(key) == 0 for key in TOKENS)


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    inbox = ReportInbox()
    holder: list[Endpoint] = []

    async def read_token(namespace: str, name: str) -> str | None:
        key = JobKey(namespace, name)
        holder[0].reads.append(key)
        return TOKENS.get(key)

    verifier = TokenVerifier(read_token)
    triggered: list[JobKey] = []
    statuses: list[int] = []
    app = build_report_app(verifier, inbox, triggered.append, on_response=statuses.append)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
    await client.start_server()
    try:
        holder.append(Endpoint(client, inbox, triggered, statuses))
        yield holder[0]
    finally:
        await client.close()


def path_of(key: JobKey) -> str:
    return f"{REPORT_PATH}/{key.namespace}/{key.name}"


async def test_the_jobs_own_token_is_accepted_queued_and_triggers_a_reconcile(endpoint: Endpoint) -> None:
    assert await endpoint.post(path_of(JOB), TOKENS[JOB], json=report_body()) == 202
    assert endpoint.inbox.pending(JOB) == 1
    assert endpoint.triggered == [JOB]


async def test_the_body_route_takes_the_job_from_the_report(endpoint: Endpoint) -> None:
    assert await endpoint.post(REPORT_PATH, TOKENS[JOB], json=report_body()) == 202
    assert endpoint.inbox.pending(JOB) == 1
    assert endpoint.triggered == [JOB]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, 401), ({"Authorization": "Basic dXNlcjpwYXNz"}, 401), ({"Authorization": "Bearer   "}, 401)],
    ids=["no credentials", "basic auth", "empty bearer"],
)
async def test_missing_or_odd_credentials_are_401(endpoint: Endpoint, headers: dict[str, str], expected: int) -> None:
    assert await endpoint.post(path_of(JOB), None, json=report_body(), headers=headers) == expected
    assert endpoint.nothing_written()


@pytest.mark.parametrize("token", ["wrong", TOKENS[OTHER]], ids=["wrong token", "another job's token"])
async def test_a_token_that_is_not_the_jobs_is_401(endpoint: Endpoint, token: str) -> None:
    assert await endpoint.post(path_of(JOB), token, json=report_body()) == 401
    assert endpoint.nothing_written()


async def test_a_job_without_a_report_token_is_401(endpoint: Endpoint) -> None:
    unknown = JobKey("ml", "nosuchjob")
    assert await endpoint.post(path_of(unknown), "anything", json=report_body(unknown)) == 401
    assert endpoint.nothing_written()


async def answer(endpoint: Endpoint, path: str, token: str | None, job: JobKey) -> tuple[int, bytes, str | None]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with endpoint.client.post(path, headers=headers, json=report_body(job)) as response:
        return response.status, await response.read(), response.headers.get("WWW-Authenticate")


async def test_no_token_a_wrong_token_and_an_unknown_job_get_the_same_answer(endpoint: Endpoint) -> None:
    unknown = JobKey("ml", "nosuchjob")
    answers = {
        "no token": await answer(endpoint, path_of(JOB), None, JOB),
        "wrong token": await answer(endpoint, path_of(JOB), "wrong", JOB),
        "another job's token": await answer(endpoint, path_of(JOB), TOKENS[OTHER], JOB),
        "unknown job": await answer(endpoint, path_of(unknown), "anything", unknown),
        "unknown job, no token": await answer(endpoint, path_of(unknown), None, unknown),
        "unknown job, body route": await answer(endpoint, REPORT_PATH, TOKENS[JOB], unknown),
    }
    assert len(set(answers.values())) == 1, answers
    status, body, challenge = answers["unknown job"]
    assert status == 401 and challenge is not None and challenge.startswith("Bearer ")
    assert b"nosuchjob" not in body
    assert endpoint.nothing_written()


async def test_a_path_that_is_not_a_namespace_and_name_is_404(endpoint: Endpoint) -> None:
    assert await endpoint.post(f"{REPORT_PATH}/ML/Bad_Name", TOKENS[JOB], json=report_body()) == 404
    assert endpoint.nothing_written()
    assert endpoint.reads == []  # refused before any Secret is read


@pytest.mark.parametrize(
    "data",
    [
        b"not json at all",
        b'{"kind": "epoch"',
        b"[1, 2, 3]",
        b'{"job": {"namespace": "ml", "name": "digits"}, "kind": "epoch"}',
        b'{"job": {"namespace": "ml", "name": "digits"}, "kind": "nonsense", "time": "2025-01-01T12:00:00Z",'
        b' "totalEpochs": 1, "device": {"type": "cpu"}}',
    ],
    ids=["not json", "truncated json", "not an object", "missing fields", "invalid kind"],
)
async def test_a_malformed_body_with_the_right_token_is_400(endpoint: Endpoint, data: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    assert await endpoint.post(path_of(JOB), TOKENS[JOB], data=data, headers=headers) == 400
    assert endpoint.nothing_written()


async def test_the_token_is_checked_before_the_body_is_parsed(endpoint: Endpoint) -> None:
    assert await endpoint.post(path_of(JOB), "wrong", data=b"not json") == 401
    assert endpoint.nothing_written()


async def test_a_body_naming_another_job_than_the_path_is_403(endpoint: Endpoint) -> None:
    assert await endpoint.post(path_of(JOB), TOKENS[JOB], json=report_body(OTHER)) == 403
    assert endpoint.nothing_written()


async def test_a_body_route_report_without_its_job_is_400(endpoint: Endpoint) -> None:
    assert await endpoint.post(REPORT_PATH, TOKENS[JOB], json=report_body(None)) == 400
    assert endpoint.nothing_written()


async def test_the_body_route_checks_the_token_of_the_job_the_body_names(endpoint: Endpoint) -> None:
    assert await endpoint.post(REPORT_PATH, TOKENS[JOB], json=report_body(OTHER)) == 401
    assert endpoint.nothing_written()


async def test_a_body_over_the_limit_is_413(endpoint: Endpoint) -> None:
    padding = "x" * (MAX_BODY_BYTES + 1)
    data = b'{"pad": "' + padding.encode() + b'"}'
    assert await endpoint.post(path_of(JOB), TOKENS[JOB], data=data) == 413
    assert endpoint.nothing_written()


async def test_guessed_tokens_do_not_reread_the_secret_every_time(endpoint: Endpoint) -> None:
    for attempt in range(20):
        assert await endpoint.post(path_of(JOB), f"guess-{attempt}", json=report_body()) == 401
    # one read to fill the cache, one re-read on the first mismatch; then throttled for REREAD_INTERVAL_S
    assert len(endpoint.reads) <= 2
    assert endpoint.nothing_written()


async def test_every_answer_to_a_report_request_is_counted_by_status(endpoint: Endpoint) -> None:
    await endpoint.post(path_of(JOB), TOKENS[JOB], json=report_body())
    await endpoint.post(path_of(JOB), None, json=report_body())
    await endpoint.post(path_of(JOB), TOKENS[JOB], json=report_body(OTHER))
    async with endpoint.client.get("/healthz") as response:
        assert response.status == 200
    assert endpoint.statuses == [202, 401, 403]
