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
than the one the token is for, 400 a body that is not a valid report, 413 too large, 503 (with
Retry-After) the Secret read took longer than `READ_WAIT_S`.

No credentials, a wrong token and a job that does not exist get one and the same answer (status, body and
`WWW-Authenticate` header; issue 13): told apart, they would let a caller without any token list which
jobs exist. The log keeps the real reason. 403 is only ever answered to a caller holding a valid token.

Transport: HTTPS with the operator's serving certificate (`start_report_server` with an SSL context) by
default, since every request carries a bearer token; plain HTTP only where the operator was explicitly
told to serve it (see `operator_config`).

Where it runs: `ReportServer`, a thread of its own with its own event loop, and (in the operator) its own
API client and threads for the Secret reads. Issue 13: with many jobs starting at once, reports answered
in the controller's loop waited for it (reconciles, Kopf's watch events: loop lag up to 2.5 s) and a
job's first report waited for its Secret read behind the reconciles' API calls in the shared API thread
pool (p50 2.5 s), until trainers gave up after 5 s ("report endpoint unreachable ... timed out"). Served
apart, a report waits for neither; what crosses between the threads is the `ReportInbox` (locked), the
token cache (locked) and the reconcile trigger (handed to the controller's loop, `call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
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
STOP_TIMEOUT_S: Final = 10.0
READ_WAIT_S: Final = 2.0
"""How long a report waits for its job's Secret read before it is answered 503: well within the client's
5 s timeout, so a slow apiserver shows as a prompt "retry" and never as an unreachable endpoint."""
RETRY_AFTER_S: Final = 1
CHALLENGE: Final = 'Bearer realm="trainsmart-reports"'
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class JobKey(NamedTuple):
    """A TrainingJob by namespace and name."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class ReportInbox:
    """Accepted reports waiting to be folded into their job's status, per job, bounded.

    Thread-safe: the endpoint's thread puts, the controller's takes and puts back; every method holds the
    lock for a few list operations only, never across I/O."""

    def __init__(self, capacity: int = INBOX_CAPACITY) -> None:
        self._capacity = capacity
        self._reports: dict[JobKey, list[TrainerReport]] = {}
        self._lock = threading.Lock()

    def put(self, key: JobKey, report: TrainerReport) -> None:
        with self._lock:
            self._put(key, report)

    def _put(self, key: JobKey, report: TrainerReport) -> None:
        queued = self._reports.setdefault(key, [])
        queued.append(report)
        while len(queued) > self._capacity:
            # Folding keeps the newest values, so the oldest non-final report is the cheapest loss.
            drop = next((i for i, item in enumerate(queued) if item.kind != ReportKind.FINAL), 0)
            del queued[drop]

    def take(self, key: JobKey) -> list[TrainerReport]:
        with self._lock:
            return self._reports.pop(key, [])

    def put_back(self, key: JobKey, reports: list[TrainerReport]) -> None:
        """Return reports whose status patch failed, ahead of any that arrived since: folding is idempotent,
        but the newest report's progress and latest metrics win, so arrival order must be kept (appended
        after newer ones, an old epoch's progress would overwrite a later one's)."""
        with self._lock:
            arrived_since = self._reports.pop(key, [])
            for report in [*reports, *arrived_since]:
                self._put(key, report)

    def forget(self, key: JobKey) -> None:
        with self._lock:
            self._reports.pop(key, None)

    def pending(self, key: JobKey) -> int:
        with self._lock:
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
    """Checks bearer tokens against each job's Secret, with a per-job cache.

    `check` and `prefetch` run in the endpoint's loop, `forget` is called from the controller's thread (a
    deleted job): the cache is locked for single lookups and stores, never across the Secret read. A read
    that was in flight when a job was forgotten does not store what it read (it may be the deleted job's
    token; the next report reads again). Reads of one job are shared: the reports and the prefetch that
    wait for it make one API call. A report waits at most `READ_WAIT_S` for a read and is then answered
    503 with `Retry-After` (the client retries), while the read goes on and fills the cache for the retry:
    an apiserver slowed down by a burst of new jobs must not turn into client timeouts."""

    def __init__(
        self, read_token: TokenReader, clock: Callable[[], float] = time.monotonic, *, read_wait: float = READ_WAIT_S
    ) -> None:
        self._read = read_token
        self._clock = clock
        self._read_wait = read_wait
        self._cache: dict[JobKey, _Cached] = {}
        self._reading: dict[JobKey, asyncio.Future[str | None]] = {}
        self._forgets = 0
        self._lock = threading.Lock()

    def forget(self, key: JobKey) -> None:
        with self._lock:
            self._cache.pop(key, None)
            self._forgets += 1

    def cached(self, key: JobKey) -> bool:
        with self._lock:
            return key in self._cache

    async def prefetch(self, key: JobKey) -> None:
        """Read the job's token ahead of its first report (a job the controller has set up); a job without
        one yet is not remembered as tokenless, so its first report reads again."""
        if self.cached(key):
            return
        with contextlib.suppress(Exception):  # only a prefetch: the report's own read reports failures
            await self._fetch(key, keep_missing=False)

    def _fetch(self, key: JobKey, *, keep_missing: bool = True) -> asyncio.Future[str | None]:
        """The read in flight for `key`, or a new one."""
        reading = self._reading.get(key)
        if reading is None:
            reading = self._reading[key] = asyncio.ensure_future(self._read_and_store(key, keep_missing))
            reading.add_done_callback(lambda _: self._reading.pop(key, None))
        return reading

    async def _read_and_store(self, key: JobKey, keep_missing: bool) -> str | None:
        with self._lock:
            forgets = self._forgets
        token = await self._read(key.namespace, key.name)
        with self._lock:
            if self._forgets == forgets and (token is not None or keep_missing):
                self._cache[key] = _Cached(token, self._clock())
        return token

    async def _token(self, key: JobKey, *, reread: bool) -> str | None:
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and not (reread and self._clock() - cached.read_at >= REREAD_INTERVAL_S):
            return cached.token
        return await asyncio.wait_for(asyncio.shield(self._fetch(key)), self._read_wait)

    async def check(self, key: JobKey, presented: str) -> Check:
        try:
            expected = await self._token(key, reread=False)
            if expected is None or not hmac.compare_digest(expected.encode(), presented.encode()):
                expected = await self._token(key, reread=True)
        except TimeoutError:
            return Check(False, 503, f"reading {key}'s report token takes longer than {self._read_wait:g} s")
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
    if status == 503:
        return web.json_response({"error": reason}, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})
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
    on_handled: Callable[[float], None] | None = None,
) -> web.Application:
    """The aiohttp application; `on_report` is called after a report was queued (to trigger a reconcile),
    `on_response` with the HTTP status of every answer to a report request and `on_handled` with the
    seconds it took to answer it (the operator's metrics)."""

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
        started = time.perf_counter()
        response = await handler(request)
        if request.path.startswith(REPORT_PATH):
            if on_response is not None:
                on_response(response.status)
            if on_handled is not None:
                on_handled(time.perf_counter() - started)
        return response

    observing = on_response is not None or on_handled is not None
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[observed] if observing else [])
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
    """Serve `app` on host:port in the running loop (`ReportServer`'s, in the operator), over TLS with
    `ssl_context` (None: plain HTTP); stop it with `runner.cleanup()`."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context is not None else "http"
    log.info("report endpoint listening on %s://%s:%d%s", scheme, host, port, REPORT_PATH)
    if ssl_context is None:
        log.warning("the report endpoint serves plain HTTP: report tokens cross the network unencrypted")
    return runner


class ReportServer:
    """The report endpoint on a thread of its own, with its own event loop: nothing the controller's loop
    does (reconciles, watch events, synchronous work between two awaits) delays an answer to a trainer.

    `start` returns once the endpoint listens (or raises what kept it from listening); `stop` closes it
    and ends the thread. `in_loop` callables run in the endpoint's loop right after it listens (e.g. a
    lag monitor); tasks they start are cancelled when the loop ends. The app and everything its handlers
    call must be safe to use from this thread: `ReportInbox` and `TokenVerifier` are, and the token reader
    should use an API client and threads of its own (a shared pool would queue the reads behind the
    controller's calls again)."""

    def __init__(
        self,
        app: web.Application,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        *,
        in_loop: Sequence[Callable[[], None]] = (),
    ) -> None:
        self._app = app
        self._address = (host, port)
        self._ssl = ssl_context
        self._in_loop = tuple(in_loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="report-endpoint", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the report endpoint did not start within {timeout:.0f} s")
        if self._error is not None:
            raise self._error

    async def stop(self) -> None:
        """Close the endpoint and wait (at most `STOP_TIMEOUT_S`) for its thread to end."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                loop.call_soon_threadsafe(stopping.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, STOP_TIMEOUT_S)

    def submit(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` in the endpoint's loop (from any thread); dropped when the endpoint does not run."""
        loop = self._loop
        if loop is None or not self._started.is_set():
            return

        async def run() -> None:
            await work()

        with contextlib.suppress(RuntimeError):  # its loop has ended
            asyncio.run_coroutine_threadsafe(run(), loop)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported by `start`; after it, logged
            if not self._started.is_set():
                self._error = error
                self._started.set()
            else:
                log.exception("the report endpoint stopped")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        runner = await start_report_server(self._app, *self._address, ssl_context=self._ssl)
        try:
            for call in self._in_loop:
                call()
            self._started.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
