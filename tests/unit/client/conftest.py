"""Fixtures of the client tests: a rank-0 pod's variables (`job_vars`, reports go nowhere), this process's
environment without the runner's trainsmart variables (`clean_env`, a laptop's), a recording post function
for the sender (`recorder`), and the operator's real report endpoint served on loopback (`report_endpoint`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from support.client_reports import Endpoint, PostRecorder, job_environ, serve_report_endpoint, unreachable_url
from trainsmart_client.job_env import JobEnvironment, read_job_environment


@pytest.fixture
def job_vars() -> dict[str, str]:
    return job_environ(unreachable_url())


@pytest.fixture
def job_env(job_vars: dict[str, str]) -> JobEnvironment:
    return read_job_environment(job_vars)


@pytest.fixture
def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(("TRAINSMART_", "RANK", "PET_"))}


@pytest.fixture
def recorder() -> PostRecorder:
    return PostRecorder()


@pytest_asyncio.fixture
async def report_endpoint() -> AsyncIterator[Endpoint]:
    async with serve_report_endpoint() as endpoint:
        yield endpoint
