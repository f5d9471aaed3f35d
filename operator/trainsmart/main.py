"""Kopf wiring only, and all of it: every Kopf handler of trainsmart is registered here -> the typed
functions in `trainsmart.handlers` and `trainsmart.admission.webhook`.

Two ways to run the same operator: `trainsmart operator [flags]` registers into a registry of its own
with the options of its flags, and `kopf run -m trainsmart.main` imports this module, which registers into
Kopf's default registry with the options of the environment (`TRAINSMART_OPERATOR_*`, one variable per
flag; see `operator_config.py`). Either way `register_operator` decides what is registered from the
options alone, so the two behave the same.

The TrainingJob and pod handlers are watch-event handlers, not Kopf's create/update/resume handlers: the
reconcile is level-based (it reads the job and its pods afresh each time), so it needs no diff, no
progress bookkeeping and no finalizer; it only needs to know *which* job to look at, and when.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from trainsmart.admission.webhook import (
    OPERATIONS,
    SWEEP_WEBHOOK_ID,
    TRAININGJOB_WEBHOOK_ID,
    admit_sweep,
    admit_trainingjob,
    configure_webhook_server,
)
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.handlers import OperatorRuntime
from trainsmart.handlers.operator_runtime import kopf_connection
from trainsmart.names import JOB_NAME_LABEL
from trainsmart.operator_config import options_from_environment
from trainsmart.options import OperatorOptions, WebhookOptions


def configure_kopf(settings: kopf.OperatorSettings, options: OperatorOptions) -> None:
    """Kopf's settings, each with the reason it differs from (or pins) the default."""
    # One operator process reconciles everything (its work queue lives in memory). Peering, Kopf's way to
    # pause a standby replica, is opt-in (--peering NAME, the peering CRD installed); left to auto-detect,
    # Kopf would warn at every start of a cluster that has no peering CRD.
    # Peering already made mandatory (`kopf run --peering NAME`) is left as Kopf's command line set it.
    if options.peering is not None:
        settings.peering.name = options.peering
        settings.peering.mandatory = True
    if not settings.peering.mandatory:
        settings.peering.standalone = True
    # Kopf turns handler log lines into Events at INFO by default; the controller posts its own Events
    # for status transitions, so only Kopf's warnings and errors (e.g. a crashed handler) become Events.
    settings.posting.level = logging.WARNING
    # Every watch event of every job and pod calls a handler, and Kopf logs each success at INFO: two
    # lines per event, thousands a minute with many jobs, CPU spent on the event path and a log nobody
    # reads. Their failures are WARNING/ERROR and still show; `--verbose` (DEBUG) keeps everything.
    objects_log = logging.getLogger("kopf.objects")
    if objects_log.getEffectiveLevel() == logging.INFO:
        objects_log.setLevel(logging.WARNING)
    # Kopf keeps one worker per object alive this long after its last event, and an idle worker still
    # holds that event's whole body. The handlers only hand a key to the work queue, so nothing is lost
    # by ending sooner; with a thousand jobs and their pods it keeps a burst's bodies out of memory.
    settings.queueing.idle_timeout = 0.5
    # Should any Kopf state ever be stored (the watch handlers store none), keep it under our own API
    # group, not kopf.zalando.org, so it is obviously ours and removed with the operator's names.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # No handler needs a finalizer (children are owned and garbage-collected; requeues are the work
    # queue's, not Kopf timers'), so none is added; name it ours anyway for the day one is.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Ask the apiserver to end each watch after a few minutes and reconnect: a connection that died
    # silently (NAT, load balancer) then costs minutes at most, never a stale operator.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    # Kopf's Events carry our component name, so `kubectl get events` shows one actor for the operator.
    settings.posting.reporting_component = "trainsmart-operator"


def register_operator(registry: kopf.OperatorRegistry, options: OperatorOptions) -> None:
    """Register everything one operator process with `options` runs: its runtime's start and stop, the
    watches that feed the controllers (unless `options.controllers` is off), and the admission webhook
    (when `options.webhook` is set)."""

    @kopf.on.startup(id="trainsmart-runtime", registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings, options)
        runtime = OperatorRuntime(options)
        await runtime.start()
        memo["runtime"] = runtime

    @kopf.on.login(id="trainsmart-login", registry=registry)
    def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
        return kopf_connection(memo["runtime"])

    @kopf.on.cleanup(id="trainsmart-runtime", registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        runtime = memo.get("runtime")
        if isinstance(runtime, OperatorRuntime):
            await runtime.stop()

    if options.controllers:
        register_watches(registry)
    if options.webhook is not None:
        register_admission(registry, options.webhook)


def register_watches(registry: kopf.OperatorRegistry) -> None:
    """The watch events that trigger reconciles: jobs, their replica pods, sweeps."""

    @kopf.on.event(GROUP, VERSION, TRAININGJOB_PLURAL, id="trainingjob-event", registry=registry)
    async def trainingjob_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo["runtime"].on_trainingjob_event(event)

    @kopf.on.event("v1", "pods", labels={JOB_NAME_LABEL: kopf.PRESENT}, id="pod-event", registry=registry)
    async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo["runtime"].on_pod_event(event)

    @kopf.on.event(GROUP, VERSION, SWEEP_PLURAL, id="sweep-event", registry=registry)
    async def sweep_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo["runtime"].on_sweep_event(event)


def register_admission(registry: kopf.OperatorRegistry, webhook: WebhookOptions) -> None:
    """The validating handlers for both kinds, and a startup step that serves them over TLS."""
    kopf.on.validate(
        GROUP, VERSION, TRAININGJOB_PLURAL, id=TRAININGJOB_WEBHOOK_ID, operations=OPERATIONS, registry=registry
    )(admit_trainingjob)
    kopf.on.validate(GROUP, VERSION, SWEEP_PLURAL, id=SWEEP_WEBHOOK_ID, operations=OPERATIONS, registry=registry)(
        admit_sweep
    )

    @kopf.on.startup(id="trainsmart-admission", registry=registry)
    def configure_webhook(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_webhook_server(settings, webhook)


# `kopf run -m trainsmart.main`: the operator configured by the environment, in Kopf's default registry.
register_operator(kopf.get_default_registry(), options_from_environment())
