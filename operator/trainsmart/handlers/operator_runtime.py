"""What the operator process holds while it runs: API client, controllers, work queues, report and
metrics servers, and the active-pod label of a replica among several.

The report endpoint runs on a thread and event loop of its own (`report_endpoint.ReportServer`) with an API
client and threads of its own for its Secret reads, so a burst of reconciles can neither block the loop
that answers trainers nor queue a token read behind its own API calls (issue 13). It hands an accepted
report to the controller through the locked `ReportInbox` and triggers the reconcile in the controller's
loop. Both loops' lag is measured (`trainsmart_event_loop_lag_seconds{loop=...}`).

Built once at Kopf startup from `OperatorOptions` (`main.register_operator` hands them over) and torn
down at cleanup. The watch-event entry points live here so that the Kopf handlers in `main.py` stay one
line each.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import kopf
from aiohttp import web

from trainsmart.api import GROUP, SWEEP_KIND, SWEEP_PLURAL, TRAININGJOB_KIND, TRAININGJOB_PLURAL, VERSION
from trainsmart.handlers.controller_core import object_key
from trainsmart.handlers.discovery import CrdsNotServedError, wait_until_served
from trainsmart.handlers.queue import WorkQueue
from trainsmart.handlers.standby import ActivePodLabeller
from trainsmart.handlers.sweep_controller import SweepController
from trainsmart.handlers.trainingjob_controller import TrainingJobController
from trainsmart.kube import Kube, new_api_client
from trainsmart.malloc_arenas import PeriodicTrim
from trainsmart.names import SWEEP_NAME_LABEL
from trainsmart.observability import OperatorMetrics, start_metrics_server
from trainsmart.observability.loop_lag import LoopLagMonitor
from trainsmart.options import OperatorOptions
from trainsmart.pki import ServingCertificates, ensure_serving_certificates
from trainsmart.report_endpoint import (
    JobKey,
    ReportInbox,
    ReportServer,
    TokenVerifier,
    build_report_app,
    server_ssl_context,
)
from trainsmart.tracking.mlflow_sync import TrackedKind, TrackingSync

log = logging.getLogger(__name__)

REPORT_CA_NAME: Final = "trainsmart-report-ca"
"""Common name of the CA the operator issues for its report endpoint when no certificate is mounted."""
FINISHED_PHASES: Final = frozenset({"Succeeded", "Failed"})
REPORT_API_CONCURRENCY: Final = 4
"""The report endpoint's own API threads (Secret reads of jobs not yet in its token cache): a burst of new
jobs' first reports is read a few at a time, never behind the controller's calls."""


def kopf_connection(runtime: OperatorRuntime) -> kopf.ConnectionInfo:
    """Kopf's credentials, taken from the controller's own client: Kopf then watches with exactly the
    identity the controller writes with, whatever login method the kubeconfig (or the pod) uses."""
    cfg = runtime.api.configuration
    bearer = cfg.auth_settings().get("BearerToken", {}).get("value") or ""
    scheme, _, token = str(bearer).partition(" ")
    return kopf.ConnectionInfo(
        server=str(cfg.host),
        ca_path=cfg.ssl_ca_cert or None,
        insecure=not cfg.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=cfg.cert_file or None,
        private_key_path=cfg.key_file or None,
        username=cfg.username or None,
        password=cfg.password or None,
    )


def report_certificates(options: OperatorOptions) -> ServingCertificates | None:
    """The report endpoint's certificate, CA included, when it serves HTTPS (issued by our own CA unless a
    mounted Secret provides one); None for plain HTTP or no endpoint. Runs when the runtime is built, at
    Kopf startup, so an unwritable directory fails the start visibly."""
    tls = options.report_tls
    if tls is None or options.report_port is None or not options.controllers:
        return None
    return ensure_serving_certificates(tls.cert_dir, tls.hosts, REPORT_CA_NAME)


class OperatorRuntime:
    """The running operator's state; one per process."""

    def __init__(self, options: OperatorOptions) -> None:
        self.options = options
        self.api = new_api_client(options.kubeconfig)
        self.kube = Kube(self.api)
        self.inbox = ReportInbox()
        self.metrics = OperatorMetrics()
        # The endpoint's own client and threads, used only from its thread (see the module's docstring).
        self.report_api = new_api_client(options.kubeconfig)
        self.report_kube = Kube(self.report_api, concurrency=REPORT_API_CONCURRENCY)
        self.tokens = TokenVerifier(self._read_report_token)
        self.report_certs = report_certificates(options)
        settings = options.settings
        if self.report_certs is not None and (settings.report_url or "").startswith("https://"):
            settings = settings.model_copy(update={"report_ca_bundle": self.report_certs.ca_file.read_text()})
        # MLflow runs, synced off the reconcile path; a changed health reconciles the object (TrackingReady).
        self.tracking = TrackingSync(
            self.kube.read_secret_data,
            self._on_tracking_health,
            options.mlflow_tracking_uri,
            on_dropped=self.metrics.tracking_dropped,
        )
        self.controller = TrainingJobController(self.kube, settings, self.inbox, self.tokens, tracking=self.tracking)
        self.queue: WorkQueue[JobKey] = WorkQueue(
            self.metrics.timed_reconcile(TRAININGJOB_KIND, self.controller.reconcile),
            min_interval=options.min_reconcile_interval,
        )
        self.reports: ReportServer | None = None
        # Sweeps get their own controller and queue (keys are namespace/name of the sweep): a sweep and a
        # TrainingJob may share a name, and one must not delay the other's reconcile.
        self.sweeps = SweepController(self.kube, pricing=settings.pricing, tracking=self.tracking)
        self.sweep_queue: WorkQueue[JobKey] = WorkQueue(
            self.metrics.timed_reconcile(SWEEP_KIND, self.sweeps.reconcile),
            min_interval=options.min_reconcile_interval,
        )
        self.metrics_server: web.AppRunner | None = None
        self.loop_lag = LoopLagMonitor(self.metrics.loop_lag.labels("controller").observe)
        self.trim = PeriodicTrim()
        self.labeller = ActivePodLabeller(self.kube, options.active_label) if options.active_label else None

    def _on_tracking_health(self, kind: TrackedKind, key: JobKey) -> None:
        (self.queue if kind == TrackedKind.JOB else self.sweep_queue).trigger(key)

    async def _read_report_token(self, namespace: str, name: str) -> str | None:
        started = time.perf_counter()
        try:
            return await self.report_kube.read_report_token(namespace, name)
        finally:
            self.metrics.token_read_seconds.observe(time.perf_counter() - started)

    def _trigger_from_reports(self, loop: asyncio.AbstractEventLoop) -> Callable[[JobKey], None]:
        """The work queue's trigger, callable from the endpoint's thread: it runs in the controller's loop."""

        def trigger(key: JobKey) -> None:
            try:
                loop.call_soon_threadsafe(self.queue.trigger, key)
            except RuntimeError:  # that loop has closed (shutdown): the next operator reconciles anyway
                log.debug("report for %s after the controller stopped", key)

        return trigger

    async def start(self) -> None:
        self.loop_lag.start()
        self.trim.start()
        if self.labeller is not None:
            self.labeller.start()
        if not self.options.controllers:
            return
        await self.tracking.start()
        try:
            await wait_until_served(
                functools.partial(self.kube.served_resources, GROUP, VERSION),
                (TRAININGJOB_PLURAL, SWEEP_PLURAL),
                what=f"{GROUP}/{VERSION}",
                limit=self.options.crd_wait_timeout,
            )
        except CrdsNotServedError as error:
            raise kopf.PermanentError(str(error)) from error
        if self.options.report_port is not None:
            app = build_report_app(
                self.tokens,
                self.inbox,
                self._trigger_from_reports(asyncio.get_running_loop()),
                on_response=self.metrics.report_response,
                on_handled=self.metrics.report_handled,
            )
            context = None
            if self.report_certs is not None:
                context = server_ssl_context(self.report_certs.cert_file, self.report_certs.key_file)
            reports_lag = LoopLagMonitor(self.metrics.loop_lag.labels("reports").observe)
            self.reports = ReportServer(
                app, self.options.report_host, self.options.report_port, context, in_loop=[reports_lag.start]
            )
            self.reports.start()
        if self.options.metrics_port is not None:
            self.metrics_server = await start_metrics_server(
                self.metrics, self.options.metrics_host, self.options.metrics_port
            )

    async def stop(self) -> None:
        await self.loop_lag.stop()
        await self.trim.stop()
        if self.labeller is not None:
            await self.labeller.stop()
        if self.reports is not None:
            await self.reports.stop()
        if self.metrics_server is not None:
            await self.metrics_server.cleanup()
        await self.queue.close()
        await self.sweep_queue.close()
        await self.tracking.stop()
        self.kube.close()
        self.api.close()
        self.report_kube.close()
        self.report_api.close()

    def on_trainingjob_event(self, event: Mapping[str, Any]) -> None:
        """Any change of a job (or the initial listing at startup) -> reconcile it, except our own echo."""
        body = event.get("object") or {}
        key = object_key(body)
        self._trigger_sweep_of(body)
        # Every event, our own status echoes included: they carry the newest status the metrics show.
        self.metrics.observe_trainingjob(event)
        if event.get("type") == "DELETED":
            self.controller.forget(key)
        else:
            self._prefetch_token(key, body)
            if self.controller.is_own_echo(key, body):
                return
            self.controller.offer(key, body)
        self.queue.trigger(key)

    def _prefetch_token(self, key: JobKey, body: Mapping[str, Any]) -> None:
        """Read the report token of a job the controller has set up (it has status: its Secret exists)
        and not finished, in the endpoint's thread, before its trainer's first report needs it: a burst of
        new jobs then costs their first reports no Secret read (issue 13). Also after a restart, when
        the initial listing shows every job again."""
        status = body.get("status") or {}
        if self.reports is None or not status or status.get("phase") in FINISHED_PHASES:
            return
        if not self.tokens.cached(key):
            self.reports.submit(functools.partial(self.tokens.prefetch, key))

    def on_pod_event(self, event: Mapping[str, Any]) -> None:
        """A replica pod changed -> update the pod cache, reconcile the job named by its label."""
        key = self.controller.pods.observe(event.get("type"), event.get("object") or {})
        if key is not None:
            self.queue.trigger(key)

    def on_sweep_event(self, event: Mapping[str, Any]) -> None:
        """Any change of a sweep (or the initial listing) -> reconcile it, except our own status echo."""
        body = event.get("object") or {}
        key = object_key(body)
        self.metrics.observe_sweep(event)  # every event, status echoes included (see on_trainingjob_event)
        if event.get("type") == "DELETED":
            self.sweeps.forget(key)
        elif self.sweeps.is_own_echo(key, body):
            return
        self.sweep_queue.trigger(key)

    def _trigger_sweep_of(self, body: Mapping[str, Any]) -> None:
        """A trial changed (its status patches included: that is its progress) -> reconcile its sweep."""
        meta = body.get("metadata") or {}
        sweep = (meta.get("labels") or {}).get(SWEEP_NAME_LABEL)
        if isinstance(sweep, str) and sweep:
            self.sweep_queue.trigger(JobKey(str(meta.get("namespace", "")), sweep))
