"""The chart's `cost:` values: what the operator is started with, and the RBAC it gets for node prices.

Pins:
- by default no price flag is written (no cost); with `cost.pricePerGpuHour` the command line the chart
  writes gives the operator exactly the pricing of the values (currency, node label, per-label prices);
- `get` on nodes is granted when per-label prices need node labels, even with lost-node handling off, and
  not otherwise;
- the values schema refuses a negative price and a currency that is no ISO 4217 code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.delivery_helm import helm_template, operator_options_of, render
from trainsmart.settings import GpuPricing

PRICES = {
    "cost": {
        "pricePerGpuHour": 2.5,
        "currency": "EUR",
        "byLabelValue": {"NVIDIA-H100-80GB-HBM3": 6, "NVIDIA-A100-SXM4-80GB": 3.25},
    }
}


def pricing(objects: list[dict[str, Any]]) -> GpuPricing | None:
    return operator_options_of(objects).settings.pricing


def node_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    roles = [o for o in objects if o["kind"] == "ClusterRole"]
    return [rule for role in roles for rule in role["rules"] if "nodes" in rule["resources"]]


def test_the_operator_gets_the_pricing_of_the_values(tmp_path: Path) -> None:
    assert pricing(render({}, tmp_path)) is None
    assert pricing(render(PRICES, tmp_path)) == GpuPricing(
        price_per_gpu_hour=2.5,
        currency="EUR",
        by_label_value={"NVIDIA-H100-80GB-HBM3": 6.0, "NVIDIA-A100-SXM4-80GB": 3.25},
    )


def test_nodes_are_readable_when_per_label_prices_need_their_labels(tmp_path: Path) -> None:
    lost_node_off = {"operator": {"lostNodeForceDeleteAfterSeconds": -1}}
    get_nodes = [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    assert node_rules(render({**lost_node_off, **PRICES}, tmp_path)) == get_nodes
    one_price = {**lost_node_off, "cost": {"pricePerGpuHour": 2}}
    assert node_rules(render(one_price, tmp_path)) == []


@pytest.mark.parametrize(
    ("cost", "message"),
    [({"pricePerGpuHour": -1}, "pricePerGpuHour"), ({"pricePerGpuHour": 1, "currency": "dollars"}, "currency")],
)
def test_the_schema_refuses_prices_that_make_no_sense(cost: dict[str, Any], message: str, tmp_path: Path) -> None:
    result = helm_template({"cost": cost}, tmp_path)
    assert result.returncode != 0 and message in result.stderr
