"""A small client of MLflow's REST API (`/api/2.0/mlflow/...`), on the aiohttp the operator already runs.

Why not the `mlflow` package: it would bring a few hundred MB (pandas, pyarrow, SQLAlchemy...) into the
operator image for eight HTTP calls, and its client is synchronous. The calls used are stable since
MLflow 1.x: experiments get-by-name/create, runs create/get/search/update/log-batch/set-tag/delete-tag.

Failures come in two kinds, because they are retried differently: `MlflowUnreachableError` (no answer, a
timeout, 5xx, 429: the server is down or busy) and `MlflowRefusedError` (any other 4xx: wrong credentials, a
value MLflow will not take). Messages never carry credentials: they are sent as a header only, and a
tracking URI with `user:password@` is refused at admission.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from trainsmart.api.tracking_spec import PASSWORD_KEY, TOKEN_KEY, USERNAME_KEY
from trainsmart.tracking.mlflow_plan import UID_TAG, LogBatch, RunStatus

API_PREFIX: Final = "/api/2.0/mlflow"
ERROR_MAX_CHARS: Final = 300
SEARCH_PAGE: Final = 1000


class MlflowError(Exception):
    """A call to the tracking server did not succeed; the message is safe to show (no credentials)."""


class MlflowUnreachableError(MlflowError):
    """No usable answer: connection refused, DNS, TLS, a timeout, 5xx or 429."""


class MlflowRefusedError(MlflowError):
    """The server answered with a client error (401, 403, 400...)."""

    def __init__(self, message: str, status: int, error_code: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


@dataclass(frozen=True)
class Credentials:
    """From the credentialsSecret; `repr` shows none of it, so a logged object leaks nothing."""

    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_secret(cls, data: Mapping[str, str]) -> Credentials | None:
        """The credentials in a Secret's (decoded) data; None when it has neither a token nor a user."""
        token, user = data.get(TOKEN_KEY), data.get(USERNAME_KEY)
        if token:
            return cls(token=token)
        if user:
            return cls(username=user, password=data.get(PASSWORD_KEY, ""))
        return None

    def header(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return {}


def _bounded(text: str) -> str:
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 3] + "..."


class MlflowRest:
    """One tracking server, with one credential; `session` is shared (the caller owns it)."""

    def __init__(
        self, session: aiohttp.ClientSession, uri: str, credentials: Credentials | None = None, timeout: float = 10.0
    ) -> None:
        self.session = session
        self.uri = uri.rstrip("/")
        self._headers = credentials.header() if credentials is not None else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(
        self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        url = f"{self.uri}{API_PREFIX}/{path}"
        try:
            async with self.session.request(
                method, url, params=query, json=body, headers=self._headers, timeout=self._timeout
            ) as response:
                text = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            detail = str(error) or type(error).__name__
            raise MlflowUnreachableError(_bounded(f"{type(error).__name__}: {detail}")) from None
        if status >= 500 or status == 429:
            raise MlflowUnreachableError(_bounded(f"HTTP {status} from {path}"))
        try:
            payload = _json(text)
        except ValueError:
            payload = {}
        if status >= 400:
            code = str(payload.get("error_code") or status)
            message = str(payload.get("message") or text or "")
            raise MlflowRefusedError(_bounded(f"HTTP {status} {code} from {path}: {message}"), status, code)
        return payload

    # ---- experiments ----------------------------------------------------------------------------------------

    async def experiment_id(self, name: str) -> str:
        """The id of experiment `name`, created when missing (a concurrent create is fine)."""
        for _ in range(2):
            try:
                found = await self._call("GET", "experiments/get-by-name", query={"experiment_name": name})
                return str(found["experiment"]["experiment_id"])
            except MlflowRefusedError as error:
                if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
            try:
                created = await self._call("POST", "experiments/create", body={"name": name})
                return str(created["experiment_id"])
            except MlflowRefusedError as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        raise MlflowRefusedError(f"experiment {name!r} could not be found or created", 409, "RESOURCE_ALREADY_EXISTS")

    # ---- runs -----------------------------------------------------------------------------------------------

    async def search_runs(self, experiment_id: str, filter_string: str) -> list[dict[str, Any]]:
        """Every run of the experiment matching `filter_string` (all pages)."""
        runs: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            body: dict[str, Any] = {
                "experiment_ids": [experiment_id],
                "filter": filter_string,
                "max_results": SEARCH_PAGE,
                "run_view_type": "ACTIVE_ONLY",
            }
            if token:
                body["page_token"] = token
            page = await self._call("POST", "runs/search", body=body)
            runs += list(page.get("runs") or [])
            token = page.get("next_page_token")
            if not token:
                return runs

    async def find_run(self, experiment_id: str, uid: str) -> dict[str, Any] | None:
        """The run tagged with the object's uid (the oldest, should two ever exist)."""
        runs = await self.search_runs(experiment_id, tag_filter(UID_TAG, uid))
        runs.sort(key=lambda run: int((run.get("info") or {}).get("start_time") or 0))
        return runs[0] if runs else None

    async def create_run(
        self, experiment_id: str, run_name: str, start_time_ms: int, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        body = {
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time_ms,
            "tags": [{"key": key, "value": value} for key, value in tags.items()],
        }
        return dict((await self._call("POST", "runs/create", body=body))["run"])

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return dict((await self._call("GET", "runs/get", query={"run_id": run_id}))["run"])

    async def log_batch(self, run_id: str, batch: LogBatch) -> None:
        await self._call("POST", "runs/log-batch", body=batch.body(run_id))

    async def set_tag(self, run_id: str, key: str, value: str) -> None:
        await self._call("POST", "runs/set-tag", body={"run_id": run_id, "key": key, "value": value})

    async def delete_tag(self, run_id: str, key: str) -> None:
        try:
            await self._call("POST", "runs/delete-tag", body={"run_id": run_id, "key": key})
        except MlflowRefusedError as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise

    async def update_run(self, run_id: str, status: RunStatus, end_time_ms: int | None) -> None:
        body: dict[str, Any] = {"run_id": run_id, "status": status.value}
        if end_time_ms is not None:
            body["end_time"] = end_time_ms
        await self._call("POST", "runs/update", body=body)


def tag_filter(key: str, value: str) -> str:
    """An MLflow search filter for one tag's value (backquoted key: ours contain dots and slashes)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"tags.`{key}` = '{escaped}'"


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text) if text.strip() else {}
    return value if isinstance(value, dict) else {}
