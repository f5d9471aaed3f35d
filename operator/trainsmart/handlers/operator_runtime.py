"""What the operator process holds while it runs: API client, controllers, work queues, report and
metrics servers, and the active-pod label of a replica among several.

Built once at Kopf startup from `OperatorOptions` (`main.register_operator` hands them over) and torn
down at cleanup. The watch-event entry points live here so that the Kopf handlers in `main.py` stay one
line each.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
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
from trainsmart.names import SWEEP_NAME_LABEL
from trainsmart.observability import OperatorMetrics, start_metrics_server
from trainsmart.options import OperatorOptions
from trainsmart.pki import ServingCertificates, ensure_serving_certificates
from trainsmart.report_endpoint import (
    JobKey,
    ReportInbox,
    TokenVerifier,
    build_report_app,
    server_ssl_context,
    start_report_server,
)

log = logging.getLogger(__name__)

REPORT_CA_NAME: Final = "trainsmart-report-ca"
"""Common name of the CA the operator issues for its report endpoint when no certificate is mounted."""


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
        self.tokens = TokenVerifier(self.kube.read_report_token)
        self.report_certs = report_certificates(options)
        settings = options.settings
        if self.report_certs is not None and (settings.report_url or "").startswith("https://"):
            settings = settings.model_copy(update={"report_ca_bundle": self.report_certs.ca_file.read_text()})
        self.controller = TrainingJobController(self.kube, settings, self.inbox, self.tokens)
        self.metrics = OperatorMetrics()
        self.queue: WorkQueue[JobKey] = WorkQueue(
            self.metrics.timed_reconcile(TRAININGJOB_KIND, self.controller.reconcile),
            min_interval=options.min_reconcile_interval,
        )
        self.reports: web.AppRunner | None = None
        # Sweeps get their own controller and queue (keys are namespace/name of the sweep): a sweep and a
        # TrainingJob may share a name, and one must not delay the other's reconcile.
        self.sweeps = SweepController(self.kube)
        self.sweep_queue: WorkQueue[JobKey] = WorkQueue(
            self.metrics.timed_reconcile(SWEEP_KIND, self.sweeps.reconcile),
            min_interval=options.min_reconcile_interval,
        )
        self.metrics_server: web.AppRunner | None = None
        self.labeller = ActivePodLabeller(self.kube, options.active_label) if options.active_label else None

    async def start(self) -> None:
        if self.labeller is not None:
            self.labeller.start()
        if not self.options.controllers:
            return
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
                self.tokens, self.inbox, self.queue.trigger, on_response=self.metrics.report_response
            )
            context = None
            if self.report_certs is not None:
                context = server_ssl_context(self.report_certs.cert_file, self.report_certs.key_file)
            self.reports = await start_report_server(
                app, self.options.report_host, self.options.report_port, ssl_context=context
            )
        if self.options.metrics_port is not None:
            self.metrics_server = await start_metrics_server(
                self.metrics, self.options.metrics_host, self.options.metrics_port
            )

    async def stop(self) -> None:
        if self.labeller is not None:
            await self.labeller.stop()
        if self.reports is not None:
            await self.reports.cleanup()
        if self.metrics_server is not None:
            await self.metrics_server.cleanup()
        await self.queue.close()
        await self.sweep_queue.close()
        self.kube.close()
        self.api.close()

    def on_trainingjob_event(self, event: Mapping[str, Any]) -> None:
        """Any change of a job (or the initial listing at startup) -> reconcile it, except our own echo."""
        body = event.get("object") or {}
        key = object_key(body)
        self._trigger_sweep_of(body)
        # Every event, our own status echoes included: they carry the newest status the metrics show.
        self.metrics.observe_trainingjob(event)
        if event.get("type") == "DELETED":
            self.controller.forget(key)
        elif self.controller.is_own_echo(key, body):
            return
        else:
            self.controller.offer(key, body)
        self.queue.trigger(key)

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
