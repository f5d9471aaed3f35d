"""The chart's `cost:` values: what the operator is started with, and the RBAC it gets for node prices.

Pins:
- by default no price flag is written (no cost); with `cost.pricePerGpuHour` the command line the chart
  writes gives the operator exactly the pricing of the values (currency, node label, per-label prices);
- `get` on nodes is granted when per-label prices need node labels, even with lost-node handling off, and
  not otherwise;
- the values schema refuses a negative price and a currency that is no ISO 4217 code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.paths import REPO
from trainsmart.cli import build_parser
from trainsmart.operator_config import operator_options
from trainsmart.settings import GpuPricing

CHART = REPO / "charts" / "trainsmart"
HELM = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainsmart/helm-v3.18.0/helm"
PRICES = {
    "cost": {
        "pricePerGpuHour": 2.5,
        "currency": "EUR",
        "byLabelValue": {"NVIDIA-H100-80GB-HBM3": 6, "NVIDIA-A100-SXM4-80GB": 3.25},
    }
}


def helm_template(values: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    binary = os.environ.get("TRAINSMART_HELM") or (str(HELM) if os.access(HELM, os.X_OK) else shutil.which("helm"))
    if binary is None:
        pytest.skip("helm is not installed: run `make helm` (scripts/install-helm.sh); `make test` does")
    given = tmp_path / "values.yaml"
    given.write_text(yaml.safe_dump(values))
    command = [binary, "template", "ts", str(CHART), "--namespace", "trainsmart-system", "-f", str(given)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def render(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    result = helm_template(values, tmp_path)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def pricing(objects: list[dict[str, Any]]) -> GpuPricing | None:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return operator_options(build_parser().parse_args(["operator", *args])).settings.pricing


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
