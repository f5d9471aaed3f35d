"""The estimated cost of a TrainingJob's GPU time, and the strings `kubectl get` prints for a job.

Pins:
- each pod's GPU time is priced at its node's price: the `byLabelValue` price of the node's label value,
  else (other value, no label, node unknown, unscheduled) the default price;
- the cost accumulates in the same increments as gpuSeconds: a first derivation of a process adds nothing
  (an operator restart bills nothing twice) and the stored total carries on; sub-cent increments are kept
  (stored to a billionth), only the headline rounds to cents;
- without a price there is no cost (no estimatedCost, no currency, no headline); a job first priced
  after it used GPU time starts from that time at the default price; a new currency prices it afresh;
- money reads `$1,234.57`, `€0.05`, `12.30 CHF`; progress reads `3/10 (30%)` (rounded down) or
  `3 epochs`; the metric headline keeps 4 significant digits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support import models
from trainsmart.api import TrainingJob, TrainingJobPhase, TrainingJobStatus
from trainsmart.api.trainingjob_status import Progress
from trainsmart.settings import GpuPricing
from trainsmart.status import derive_trainingjob_status
from trainsmart.status.cost import NodePrices, format_money
from trainsmart.status.headlines import metric_headline, progress_headline

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
H100, A100 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"
PRICING = GpuPricing(price_per_gpu_hour=2.0, by_label_value={H100: 6.0, A100: 3.0})


def job(gpus: int = 2, replicas: int = 2) -> TrainingJob:
    return models.make_job({"replicas": replicas, "gpusPerReplica": gpus})


def pods_on(job: TrainingJob, *nodes: str, now: datetime) -> list[dict[str, Any]]:
    pods = []
    for index, node in enumerate(nodes):
        pod = models.replica_pod(job, index, "running" if node else "pending", started=T0, now=now)
        if node:
            pod["spec"]["nodeName"] = node
        pods.append(pod)
    return pods


def running(**status: Any) -> TrainingJobStatus:
    return TrainingJobStatus(phase=TrainingJobPhase.RUNNING, **status)


def test_each_pod_is_priced_at_its_nodes_price_and_unknown_nodes_at_the_default() -> None:
    tj = job(gpus=2, replicas=5)
    now = T0 + timedelta(hours=1)
    pods = pods_on(tj, "h100-node", "a100-node", "t4-node", "unlabelled-node", "", now=now)
    labels = {"h100-node": H100, "a100-node": A100, "t4-node": "Tesla-T4", "unlabelled-node": None}
    prices = NodePrices(PRICING, labels)
    status = derive_trainingjob_status(tj, pods, running(), [], now, gpu_accounted_until=T0, prices=prices)
    # 2 GPUs x 1 h each: H100 6, A100 3, T4 (no price of its own) 2, no label 2; the pending pod ran nothing.
    assert status.gpu_seconds == 4 * 2 * 3600
    assert status.estimated_cost == pytest.approx(2 * (6 + 3 + 2 + 2))
    assert (status.cost_currency, status.cost_headline) == ("USD", "$26.00")


def test_the_cost_accumulates_with_gpu_seconds_and_survives_an_operator_restart() -> None:
    tj = job(gpus=1, replicas=1)
    prices = NodePrices(PRICING, {"n": H100})
    first_now = T0 + timedelta(minutes=30)
    first = derive_trainingjob_status(
        tj, pods_on(tj, "n", now=first_now), running(), [], first_now, gpu_accounted_until=T0, prices=prices
    )
    assert first.estimated_cost == pytest.approx(3.0)
    # A new operator process: nothing accounted yet in it, so this derivation adds nothing ...
    restart = T0 + timedelta(minutes=40)
    after_restart = derive_trainingjob_status(
        tj, pods_on(tj, "n", now=restart), first, [], restart, gpu_accounted_until=None, prices=prices
    )
    assert (after_restart.gpu_seconds, after_restart.estimated_cost) == (first.gpu_seconds, first.estimated_cost)
    # ... and the next one carries the stored total on from there.
    later = restart + timedelta(minutes=10)
    carried = derive_trainingjob_status(
        tj, pods_on(tj, "n", now=later), after_restart, [], later, gpu_accounted_until=restart, prices=prices
    )
    assert carried.estimated_cost == pytest.approx(4.0)


def test_sub_cent_increments_are_kept_and_only_the_headline_rounds() -> None:
    tj = job(gpus=1, replicas=1)
    prices = NodePrices(GpuPricing(price_per_gpu_hour=2.0))
    status, moment = running(), T0
    for _ in range(90):  # a reconcile every second: each adds 0.056 cents
        now = moment + timedelta(seconds=1)
        status = derive_trainingjob_status(
            tj, pods_on(tj, "n", now=now), status, [], now, gpu_accounted_until=moment, prices=prices
        )
        moment = now
    assert status.estimated_cost == pytest.approx(90 * 2.0 / 3600, abs=1e-6)
    assert status.cost_headline == "$0.05"


def test_without_a_price_no_cost_is_shown() -> None:
    tj = job()
    now = T0 + timedelta(hours=1)
    status = derive_trainingjob_status(tj, pods_on(tj, "n", "n", now=now), running(), [], now, gpu_accounted_until=T0)
    assert status.gpu_seconds == 2 * 2 * 3600
    assert (status.estimated_cost, status.cost_currency, status.cost_headline) == (None, None, None)


def test_gpu_time_from_before_a_price_existed_is_priced_at_the_default_once() -> None:
    tj = job(gpus=1, replicas=1)
    now = T0 + timedelta(hours=3)
    unpriced = running(gpu_seconds=7200.0)
    status = derive_trainingjob_status(
        tj, pods_on(tj, "n", now=now), unpriced, [], now, gpu_accounted_until=now, prices=NodePrices(PRICING)
    )
    assert status.estimated_cost == pytest.approx(4.0)
    again = derive_trainingjob_status(
        tj, pods_on(tj, "n", now=now), status, [], now, gpu_accounted_until=now, prices=NodePrices(PRICING)
    )
    assert again.estimated_cost == status.estimated_cost


def test_a_new_currency_prices_the_gpu_time_so_far_afresh() -> None:
    tj = job(gpus=1, replicas=1)
    now = T0 + timedelta(hours=1)
    in_dollars = running(gpu_seconds=3600.0, estimated_cost=2.0, cost_currency="USD")
    euros = NodePrices(GpuPricing(price_per_gpu_hour=1.5, currency="EUR"))
    status = derive_trainingjob_status(
        tj, pods_on(tj, "n", now=now), in_dollars, [], now, gpu_accounted_until=now, prices=euros
    )
    assert (status.estimated_cost, status.cost_currency, status.cost_headline) == (1.5, "EUR", "€1.50")


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(1234.5678, "USD", "$1,234.57"), (0.049, "EUR", "€0.05"), (0.004, "USD", "$0.00"), (12.3, "CHF", "12.30 CHF")],
)
def test_money_reads_in_cents_with_the_currency(amount: float, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown


@pytest.mark.parametrize(
    ("progress", "shown"),
    [
        (Progress(epoch=3, total_epochs=10, percent=30.0), "3/10 (30%)"),
        (Progress(epoch=199, total_epochs=200, percent=99.5), "199/200 (99%)"),
        (Progress(epoch=1, total_epochs=3, percent=33.33), "1/3 (33%)"),
        (Progress(epoch=3), "3 epochs"),
        (Progress(epoch=1), "1 epoch"),
    ],
)
def test_progress_reads_as_epochs_done_of_the_total(progress: Progress, shown: str) -> None:
    assert progress_headline(progress) == shown


def test_the_metric_headline_keeps_four_significant_digits() -> None:
    assert metric_headline("val_accuracy", 0.9791666666666666) == "val_accuracy=0.9792"
    assert metric_headline("val_loss", 1234567.0) == "val_loss=1.235e+06"


def test_the_derived_status_carries_the_progress_headline() -> None:
    tj = job()
    now = T0 + timedelta(minutes=5)
    previous = running(progress=Progress(epoch=3, total_epochs=10, percent=30.0))
    status = derive_trainingjob_status(tj, pods_on(tj, "n", "n", now=now), previous, [], now)
    assert status.progress is not None and status.progress.headline == "3/10 (30%)"
