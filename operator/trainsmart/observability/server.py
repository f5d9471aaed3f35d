"""`/metrics` over HTTP on its own port, in the operator's event loop.

Its own port rather than a route on the report endpoint: the report endpoint is authenticated and meant
for trainer pods, `/metrics` is unauthenticated and meant for Prometheus, so a NetworkPolicy (or a
ServiceMonitor) can tell the two apart by port, and turning reports off does not turn metrics off.
Served by aiohttp in the operator's loop (no extra HTTP server thread), with the formatting itself in a
worker thread: 1,000 jobs are some 16,000 samples, a few hundred milliseconds of string formatting that
must not stall reconciles. That is safe without a lock because the object collector takes its copy of the
map in one step and the snapshots are immutable (see `objects.py`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from trainsmart.observability.memory_debug import (
    DEBUG_MEMORY_PATH,
    memory_debug_enabled,
    memory_report,
    start_tracing,
)
from trainsmart.observability.operator_metrics import OperatorMetrics

log = logging.getLogger(__name__)

METRICS_PATH: Final = "/metrics"


def build_metrics_app(metrics: OperatorMetrics) -> web.Application:
    """GET /metrics in the classic text format (0.0.4), which every Prometheus 2.x parses."""

    async def scrape(request: web.Request) -> web.Response:
        # `name[]` restricts the answer to those series, as prometheus_client's own handler does.
        body = await asyncio.to_thread(metrics.exposition, request.query.getall("name[]", []))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    app = web.Application()
    app.router.add_get(METRICS_PATH, scrape)
    if memory_debug_enabled():
        start_tracing()

        async def memory(request: web.Request) -> web.Response:
            trim = request.query.get("trim", "") not in ("", "0")
            # In the loop on purpose: a consistent picture, and nothing else allocates meanwhile.
            return web.json_response(memory_report(trim=trim))

        app.router.add_get(DEBUG_MEMORY_PATH, memory)
    return app


async def start_metrics_server(metrics: OperatorMetrics, host: str, port: int) -> web.AppRunner | None:
    """Serve `/metrics` on host:port; None when the port cannot be bound. Metrics are for watching the
    operator, not part of its control loop: a taken port is logged as an error and the operator goes on
    reconciling (as the trainer's own exporter does), instead of crash-looping over an observability port."""
    runner = web.AppRunner(build_metrics_app(metrics), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as error:
        await runner.cleanup()
        log.error("metrics: cannot listen on %s:%d (%s); running without /metrics", host, port, error)
        return None
    log.info("metrics: serving http://%s:%d%s", host, port, METRICS_PATH)
    return runner
