"""The trainer's own Prometheus `/metrics`, for a PodMonitor to scrape.

A private CollectorRegistry (not prometheus-client's global one) so that several trainers in one test
process do not collide, and so that only training series are exported, not the Python process collector's.
No job/namespace labels: the PodMonitor attaches pod, namespace and the pod's labels itself.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Gauge, start_http_server

log = logging.getLogger(__name__)

_SPLITS = ("train", "val", "test")


class TrainerMetrics:
    """Gauges updated by the training loop; `serve(port)` exposes them over HTTP."""

    def __init__(self, objective_metric: str, *, cuda: bool = False) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.objective_metric = objective_metric
        self.loss = Gauge("trainsmart_trainer_loss", "Mean loss of the last epoch.", ["split"], registry=registry)
        self.accuracy = Gauge(
            "trainsmart_trainer_accuracy", "Accuracy of the last epoch (classification).", ["split"], registry=registry
        )
        self.objective = Gauge(
            "trainsmart_trainer_objective",
            "The objective metric (early stopping / sweep) after the last epoch.",
            ["metric"],
            registry=registry,
        )
        self.samples_per_second = Gauge(
            "trainsmart_trainer_samples_per_second", "Training throughput over all ranks.", registry=registry
        )
        self.epoch = Gauge("trainsmart_trainer_epoch", "Epochs completed.", registry=registry)
        self.total_epochs = Gauge("trainsmart_trainer_total_epochs", "Epochs the run will do.", registry=registry)
        self.step = Gauge("trainsmart_trainer_step", "Optimizer steps done.", registry=registry)
        self.epoch_seconds = Gauge(
            "trainsmart_trainer_epoch_seconds", "Wall time of the last epoch's training pass.", registry=registry
        )
        self.grad_norm = Gauge(
            "trainsmart_trainer_grad_norm", "Mean gradient norm of the last epoch.", registry=registry
        )
        self.gpu_memory: Gauge | None = None
        if cuda:
            self.gpu_memory = Gauge(
                "trainsmart_trainer_gpu_memory_bytes",
                "GPU memory held by tensors of this process (allocated) and its peak (max_allocated).",
                ["kind"],
                registry=registry,
            )
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int, addr: str = "0.0.0.0") -> int | None:  # noqa: S104 - scraped from other pods
        """Start the HTTP server; returns the bound port (useful with 0), or None if it could not bind."""
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as error:
            log.warning("metrics: cannot serve on port %d (%s); continuing without /metrics", port, error)
            return None
        bound = int(self._server.server_port)
        log.info("metrics: serving /metrics on port %d", bound)
        return bound

    def set_epoch(self, epoch: int, total: int, step: int) -> None:
        self.epoch.set(epoch)
        self.total_epochs.set(total)
        self.step.set(step)

    def set_metrics(self, metrics: Mapping[str, float]) -> None:
        """Map `<split>_loss`, `<split>_accuracy`, the objective and run-wide values onto the gauges."""
        for split in _SPLITS:
            if (value := metrics.get(f"{split}_loss")) is not None and math.isfinite(value):
                self.loss.labels(split).set(value)
            if (value := metrics.get(f"{split}_accuracy")) is not None:
                self.accuracy.labels(split).set(value)
        if (value := metrics.get(self.objective_metric)) is not None and math.isfinite(value):
            self.objective.labels(self.objective_metric).set(value)
        for key, gauge in (
            ("samples_per_second", self.samples_per_second),
            ("epoch_time_seconds", self.epoch_seconds),
            ("grad_norm", self.grad_norm),
        ):
            if (value := metrics.get(key)) is not None and math.isfinite(value):
                gauge.set(value)

    def set_gpu_memory(self, allocated: int, max_allocated: int) -> None:
        if self.gpu_memory is not None:
            self.gpu_memory.labels("allocated").set(allocated)
            self.gpu_memory.labels("max_allocated").set(max_allocated)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
