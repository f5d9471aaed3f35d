"""The report endpoint: rank 0 of each job POSTs `TrainerReport` JSON here; accepted reports are queued
per job and folded into status by the TrainingJob handler (which rate-limits its patches).

Routes:
* `POST /v1/reports/<namespace>/<job>`: the job named by the path; a body naming another job is refused.
* `POST /v1/reports`: the job named by the report's own `job` identity (both fields required). This is
  the form the trainer uses when `TRAINSMART_REPORT_URL` is one URL shared by every job.

Authentication: `Authorization: Bearer <token>`, compared in constant time (`hmac.compare_digest`) with
the token in the job's Secret. Tokens are cached per job; a mismatch re-reads the Secret (a job deleted
and re-created under the same name has a new token), at most once per `REREAD_INTERVAL_S` per job so a
client guessing tokens cannot turn every request into an API call. The token is checked before the body
is parsed, so unauthenticated clients cannot make the operator parse anything. Nothing is queued unless
every check passed: 401 no/odd credentials, a wrong token or an unknown job, 403 a body naming another job
than the one the token is for, 400 a body that is not a valid report, 413 too large.

No credentials, a wrong token and a job that does not exist get one and the same answer (status, body and
`WWW-Authenticate` header; issue 13): told apart, they would let a caller without any token list which
jobs exist. The log keeps the real reason. 403 is only ever answered to a caller holding a valid token.

Transport: HTTPS with the operator's serving certificate (`start_report_server` with an SSL context) by
default, since every request carries a bearer token; plain HTTP only where the operator was explicitly
told to serve it (see `operator_config`).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import pydantic
from aiohttp import web

from trainsmart.api.common import format_validation_error
from trainsmart_trainer.contract import ReportKind, TrainerReport

log = logging.getLogger(__name__)

REPORT_PATH: Final = "/v1/reports"
MAX_BODY_BYTES: Final = 256 * 1024
REREAD_INTERVAL_S: Final = 5.0
INBOX_CAPACITY: Final = 256
"""Reports queued per job between two reconciles; beyond it the oldest non-final ones are dropped."""
UNAUTHENTICATED: Final = "the token is missing, or is not the report token of the job named"
"""The one answer (401) to no token, a wrong token and an unknown job alike: nothing about the job leaks."""
CHALLENGE: Final = 'Bearer realm="trainsmart-reports"'
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class JobKey(NamedTuple):
    """A TrainingJob by namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ReportInbox:
    """Accepted reports waiting to be folded into their job's status, per job, bounded."""

    def __init__(self, capacity: int = INBOX_CAPACITY) -> None:
        self._capacity = capacity
        self._reports: dict[JobKey, list[TrainerReport]] = {}

    def put(self, key: JobKey, report: TrainerReport) -> None:
        queued = self._reports.setdefault(key, [])
        queued.append(report)
        while len(queued) > self._capacity:
            # Folding keeps the newest values, so the oldest non-final report is the cheapest loss.
            drop = next((i for i, item in enumerate(queued) if item.kind != ReportKind.FINAL), 0)
            del queued[drop]

    def take(self, key: JobKey) -> list[TrainerReport]:
        return self._reports.pop(key, [])

    def put_back(self, key: JobKey, reports: list[TrainerReport]) -> None:
        """Return reports whose status patch failed, ahead of any that arrived since: folding is idempotent,
        but the newest report's progress and latest metrics win, so arrival order must be kept (appended
        after newer ones, an old epoch's progress would overwrite a later one's)."""
        arrived_since = self._reports.pop(key, [])
        for report in [*reports, *arrived_since]:
            self.put(key, report)

    def forget(self, key: JobKey) -> None:
        self._reports.pop(key, None)

    def pending(self, key: JobKey) -> int:
        return len(self._reports.get(key, ()))


TokenReader = Callable[[str, str], Awaitable[str | None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Check(NamedTuple):
    ok: bool
    status: int
    reason: str


@dataclass
class _Cached:
    token: str | None
    read_at: float


class TokenVerifier:
    """Checks bearer tokens against each job's Secret, with a per-job cache."""

    def __init__(self, read_token: TokenReader, clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read_token
        self._clock = clock
        self._cache: dict[JobKey, _Cached] = {}

    def forget(self, key: JobKey) -> None:
        self._cache.pop(key, None)

    async def _token(self, key: JobKey, *, reread: bool) -> str | None:
        cached = self._cache.get(key)
        if cached is not None and not (reread and self._clock() - cached.read_at >= REREAD_INTERVAL_S):
            return cached.token
        token = await self._read(key.namespace, key.name)
        self._cache[key] = _Cached(token, self._clock())
        return token

    async def check(self, key: JobKey, presented: str) -> Check:
        expected = await self._token(key, reread=False)
        if expected is None or not hmac.compare_digest(expected.encode(), presented.encode()):
            expected = await self._token(key, reread=True)
        if expected is None:
            return Check(False, 401, f"no TrainingJob {key} with a report token")
        if not hmac.compare_digest(expected.encode(), presented.encode()):
            return Check(False, 401, f"the token is not {key}'s")
        return Check(True, 202, "accepted")


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _refuse(status: int, reason: str, key: JobKey | None) -> web.Response:
    log.info("report for %s refused (%d): %s", key or "?", status, reason)
    if status == 401:
        # The reason is logged only: answered, it would tell a job without a token from a wrong token.
        return web.json_response({"error": UNAUTHENTICATED}, status=401, headers={"WWW-Authenticate": CHALLENGE})
    return web.json_response({"error": reason}, status=status)


def _parse(raw: bytes) -> TrainerReport | str:
    try:
        return TrainerReport.model_validate_json(raw)
    except pydantic.ValidationError as error:
        return "; ".join(format_validation_error(error, prefix=""))[:1024]
    except (ValueError, UnicodeDecodeError) as error:
        return f"not JSON: {error}"[:1024]


def _claimed_job(raw: bytes) -> JobKey | None:
    """The job a body names, read before validation (the token must be checked before a full parse)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    identity = data.get("job") if isinstance(data, dict) else None
    if not isinstance(identity, dict):
        return None
    namespace, name = identity.get("namespace"), identity.get("name")
    if isinstance(namespace, str) and isinstance(name, str) and _NAME.match(namespace) and _NAME.match(name):
        return JobKey(namespace, name)
    return None


def build_report_app(
    verifier: TokenVerifier,
    inbox: ReportInbox,
    on_report: Callable[[JobKey], None],
    *,
    on_response: Callable[[int], None] | None = None,
) -> web.Application:
    """The aiohttp application; `on_report` is called after a report was queued (to trigger a reconcile),
    `on_response` with the HTTP status of every answer to a report request (the operator's metrics)."""

    async def receive(request: web.Request, key: JobKey | None) -> web.Response:
        token = _bearer(request)
        if token is None:
            return _refuse(401, "no Authorization: Bearer <token> header", key)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, f"reports are limited to {MAX_BODY_BYTES} bytes", key)
        if key is None:
            key = _claimed_job(raw)
            if key is None:
                return _refuse(400, "the report must name its job (job.namespace and job.name)", None)
        check = await verifier.check(key, token)
        if not check.ok:
            return _refuse(check.status, check.reason, key)
        report = _parse(raw)
        if isinstance(report, str):
            return _refuse(400, report, key)
        identity = report.job
        if identity.namespace not in ("", key.namespace) or identity.name not in ("", key.name):
            return _refuse(403, f"the report names job {identity.namespace}/{identity.name}, not {key}", key)
        inbox.put(key, report)
        on_report(key)
        return web.json_response({"accepted": True}, status=202)

    async def by_path(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        if not (_NAME.match(namespace) and _NAME.match(name)):
            return _refuse(404, "not a namespace/name", None)
        return await receive(request, JobKey(namespace, name))

    async def by_body(request: web.Request) -> web.Response:
        return await receive(request, None)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    @web.middleware
    async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if on_response is not None and request.path.startswith(REPORT_PATH):
            on_response(response.status)
        return response

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observed] if on_response else [])
    app.router.add_post(REPORT_PATH, by_body)
    app.router.add_post(REPORT_PATH + "/{namespace}/{name}", by_path)
    app.router.add_get("/healthz", healthz)
    return app


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS for the report endpoint: the serving certificate and its key (TLS 1.2 or later)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def start_report_server(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Serve `app` on host:port in the running loop (the operator's), over TLS with `ssl_context` (None:
    plain HTTP); stop it with `runner.cleanup()`."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context is not None else "http"
    log.info("report endpoint listening on %s://%s:%d%s", scheme, host, port, REPORT_PATH)
    if ssl_context is None:
        log.warning("the report endpoint serves plain HTTP: report tokens cross the network unencrypted")
    return runner
