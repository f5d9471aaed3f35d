"""Helpers of the client tests (tests/unit/client): the variables a rank-0 pod of one job gets, a recording
post function for the client's sender, and the operator's real report endpoint app served on loopback."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from trainsmart.report_endpoint import REPORT_PATH, JobKey, ReportInbox, TokenVerifier, build_report_app
from trainsmart_client.sender import RejectedError

JOB = JobKey("ml", "digits")
TOKEN = "token-of-digits"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def job_environ(url: str, token: str = TOKEN, **extra: str) -> dict[str, str]:
    """The variables the operator gives a rank-0 pod of JOB (plus `extra`)."""
    return {
        "TRAINSMART_REPORT_URL": url,
        "TRAINSMART_REPORT_TOKEN": token,
        "TRAINSMART_JOB_NAME": JOB.name,
        "TRAINSMART_NAMESPACE": JOB.namespace,
        "RANK": "0",
        "WORLD_SIZE": "1",
        **extra,
    }


def unreachable_url() -> str:
    """A report URL on a closed loopback port: nothing is ever delivered there."""
    return f"http://127.0.0.1:{free_port()}{REPORT_PATH}"


@dataclass
class PostRecorder:
    """A post function for the client's ReportSender that keeps every body; `refuse` answers like a 401,
    `fail` like an endpoint that is down."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    refuse: bool = False
    fail: bool = False
    calls: int = 0

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        self.calls += 1
        if self.fail:
            raise ConnectionRefusedError("nobody listens")
        self.bodies.append(json.loads(body))
        self.headers.append(headers)
        if self.refuse:
            raise RejectedError("HTTP 401 Unauthorized")

    def kinds(self) -> list[str]:
        return [body["kind"] for body in self.bodies]


@dataclass
class Endpoint:
    """The operator's report endpoint app on a loopback port; it knows JOB's token."""

    url: str
    inbox: ReportInbox
    triggered: list[JobKey]

    def environ(self, token: str = TOKEN, **extra: str) -> dict[str, str]:
        """JOB's rank-0 variables pointing at this endpoint."""
        return job_environ(self.url, token, **extra)


@asynccontextmanager
async def serve_report_endpoint() -> AsyncIterator[Endpoint]:
    """`build_report_app` served on 127.0.0.1 in the running loop, with a TokenVerifier that reads JOB's token."""

    async def read_token(namespace: str, name: str) -> str | None:
        return TOKEN if JobKey(namespace, name) == JOB else None

    inbox = ReportInbox()
    triggered: list[JobKey] = []
    runner = web.AppRunner(build_report_app(TokenVerifier(read_token), inbox, triggered.append), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Endpoint(f"http://127.0.0.1:{port}{REPORT_PATH}", inbox, triggered)
    finally:
        await runner.cleanup()
