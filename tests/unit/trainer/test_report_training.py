"""Reports and /metrics from real (tiny) training runs.

Pins:
- a real local HTTP endpoint receives, with the job's bearer token: first a progress report naming the
  device (simulated GPUs said so), then one epoch report per epoch, then the final report, all valid;
- with the endpoint down, training completes normally and in about the same time as without reporting;
- /metrics is scraped over HTTP during training: loss, accuracy, objective, throughput and epoch.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainsmart_trainer.components import RunOutcome
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import ExitCode, ReportKind, TrainerReport
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.settings import RuntimeSettings

NO_CUDA = CudaProbe(available=False)
CONFIG = {"dataset": {"name": "synthetic", "numSamples": 300, "numFeatures": 8}, "model": {"hiddenSizes": [16]}}

Received = list[tuple[str, dict[str, Any]]]


class _Handler(BaseHTTPRequestHandler):
    received: Received

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers.get("Authorization", ""), json.loads(body)))
        self.send_response(202)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Received]]:
    received: Received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"received": received}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/reports", received
    finally:
        server.shutdown()
        server.server_close()


def test_endpoint_receives_device_epochs_and_final_with_the_token(endpoint: tuple[str, Received]) -> None:
    url, received = endpoint
    simulated = resolve_device(simulated=True, visible_devices="0,1", cuda=NO_CUDA)
    settings = RuntimeSettings(
        report_url=url, report_token="job-token", job_name="demo", job_namespace="team", attempt=2
    )
    training = TrainingRun(TrainerConfig.model_validate({**CONFIG, "epochs": 2}), settings, DistInfo(), simulated)
    outcome = training.execute()
    assert outcome.exit_code == ExitCode.SUCCESS
    assert {token for token, _ in received} == {"Bearer job-token"}
    reports = [TrainerReport.model_validate(body) for _, body in received]
    kinds = [r.kind for r in reports]
    assert kinds[0] == ReportKind.PROGRESS and kinds[-1] == ReportKind.FINAL
    assert kinds.count(ReportKind.EPOCH) == 2
    first = reports[0]
    assert first.device.type == "cpu" and first.device.simulated_gpus and first.device.gpus == 2
    assert (first.job.namespace, first.job.name) == ("team", "demo")
    assert {r.job.attempt for r in reports} == {2}
    epochs = [r for r in reports if r.kind == ReportKind.EPOCH]
    assert [r.epoch for r in epochs] == [1, 2] and epochs[0].total_epochs == 2
    assert {"train_loss", "val_accuracy", "val_macro_f1"} <= set(epochs[1].metrics)
    assert epochs[1].samples_per_second is not None and epochs[1].objective_metric == "val_loss"
    final = reports[-1].final
    assert final is not None and final.status.value == "succeeded" and "test_accuracy" in final.metrics


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(**settings: Any) -> tuple[RunOutcome, float]:
    started = time.monotonic()
    training = TrainingRun(TrainerConfig.model_validate({**CONFIG, "epochs": 2}), RuntimeSettings(**settings),
                           DistInfo(), resolve_device(simulated=False, visible_devices=None, cuda=NO_CUDA))  # fmt: skip
    outcome = training.execute()
    return outcome, time.monotonic() - started


def test_a_down_endpoint_neither_blocks_nor_breaks_training() -> None:
    baseline, base_seconds = timed()
    outcome, seconds = timed(report_url=f"http://127.0.0.1:{closed_port()}/reports", report_token="t")
    assert outcome.exit_code == ExitCode.SUCCESS
    assert outcome.final.metrics["test_loss"] == baseline.final.metrics["test_loss"]
    assert seconds < base_seconds + 2.0, (seconds, base_seconds)


def test_metrics_are_scraped_over_http_during_training() -> None:
    scraped: list[str] = []

    def scrape(training: TrainingRun) -> None:
        assert training.metrics_port is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{training.metrics_port}/metrics", timeout=5) as response:
            scraped.append(response.read().decode())

    training = TrainingRun(
        TrainerConfig.model_validate({**CONFIG, "epochs": 2}),
        RuntimeSettings(metrics_port=0),
        DistInfo(),
        resolve_device(simulated=False, visible_devices=None, cuda=NO_CUDA),
        on_epoch_end=scrape,
    )
    assert training.execute().exit_code == ExitCode.SUCCESS
    last = scraped[-1]
    for line in (
        'trainsmart_trainer_loss{split="train"}',
        'trainsmart_trainer_loss{split="val"}',
        'trainsmart_trainer_accuracy{split="val"}',
        'trainsmart_trainer_objective{metric="val_loss"}',
        "trainsmart_trainer_samples_per_second ",
        "trainsmart_trainer_epoch 2.0",
        "trainsmart_trainer_total_epochs 2.0",
    ):
        assert line in last, line
    assert "trainsmart_trainer_epoch 1.0" in scraped[0]
    assert "gpu_memory" not in last  # CPU run
