"""The estimated cost of GPU time: each pod's GPU-seconds times the price of the node it ran on.

Pure. The I/O side resolves which price applies on which node (a node's `nodeLabel` value, read through
a small cache, see `handlers/node_prices.py`) and hands the result in as `NodePrices`; this module only
does the arithmetic, so a reconcile's cost is a function of its inputs like the rest of the status.

Semantics (docs/metrics.md, "Cost"):
* An estimate, never a bill: the GPU time the operator accounts (`gpuSeconds`, which errs low) times a
  price the cluster's owner configured; nothing is read from a cloud provider.
* Accumulated in the same increments as `gpuSeconds` (between the previous derivation and `now`), so it
  survives operator restarts the same way: the stored status is the running total.
* Stored to COST_DECIMALS places, not to cents: a reconcile every few seconds adds fractions of a cent,
  and rounding every increment to cents would lose most of them (a 1-GPU job at $2/h adds 0.06 cents a
  second); at 9 places a reconcile every second for a month errs by a tenth of a cent at most. People read
  the cents: the display strings round.
* A node whose label value has no price of its own, or whose labels could not be read, is priced at the
  default price. A job's GPU time from before a price was configured is priced at the default price once,
  when the job is first priced (the nodes it ran on then are not known any more).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from trainsmart.settings import GpuPricing
from trainsmart.status.podview import PodView, pod_gpu_seconds_between

COST_DECIMALS: Final = 9
"""Places the running total is stored with (a billionth of the currency unit)."""
SECONDS_PER_HOUR: Final = 3600.0
CURRENCY_SYMBOLS: Final = {"USD": "$", "EUR": "€", "GBP": "£"}
"""Currencies shown with a symbol ($1.23); any other code is shown after the amount (1.23 CHF)."""


@dataclass(frozen=True)
class NodePrices:
    """The configured pricing, and the `nodeLabel` value of each node that the pods at hand ran on."""

    pricing: GpuPricing
    node_labels: Mapping[str, str | None] = field(default_factory=dict)
    """Node name -> its `pricing.node_label` value (None: the node has no such label, or is unknown)."""

    @property
    def currency(self) -> str:
        return self.pricing.currency

    def per_gpu_hour(self, node: str) -> float:
        """The price of one GPU-hour on `node` ("" while unscheduled: the default price)."""
        return self.pricing.price_for(self.node_labels.get(node))


def cost_between(views: Iterable[PodView], since: datetime, now: datetime, prices: NodePrices) -> float:
    """What the GPU time of `views` inside (since, now] cost, each pod at its node's price."""
    total = 0.0
    for view in views:
        seconds = pod_gpu_seconds_between(view, since, now)
        if seconds:
            total += seconds / SECONDS_PER_HOUR * prices.per_gpu_hour(view.node)
    return total


def accumulate_cost(
    previous: float | None,
    gpu_seconds_before: float,
    views: Iterable[PodView],
    since: datetime | None,
    now: datetime,
    prices: NodePrices,
) -> float:
    """The running total after this derivation: `previous` plus the cost of the GPU time since `since`.

    A job never priced before (`previous` None) starts from its GPU time so far at the default price.
    `since` None (the first derivation of this process) adds nothing, exactly as for `gpuSeconds`."""
    total = previous
    if total is None:
        total = gpu_seconds_before / SECONDS_PER_HOUR * prices.pricing.price_per_gpu_hour
    if since is not None and since < now:
        total += cost_between(views, since, now, prices)
    return round(total, COST_DECIMALS)


def format_money(amount: float, currency: str) -> str:
    """`$1,234.57`, `€0.05`, `12.30 CHF`: rounded to cents, as a person reads it."""
    text = f"{amount:,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol is not None else f"{text} {currency}"
