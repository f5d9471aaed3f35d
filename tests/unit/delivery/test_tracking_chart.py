"""The chart's `tracking:` values next to its `cost:` values: what the operator is started with.

Pins:
- by default the operator gets neither an MLflow tracking URI nor a price; with both values set, the command
  line the chart writes gives the operator exactly that URI and that pricing (parsed by the operator's own
  option parser, so a flag the operator does not know fails here);
- the values schema refuses a tracking URI that is not http(s), has no host, or carries credentials, and
  takes http and https ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.delivery_helm import helm_template, operator_options_of, render
from trainsmart.settings import GpuPricing

TRACKED = {"tracking": {"mlflow": {"trackingUri": "http://mlflow.mlops:5000"}}}
PRICED = {"cost": {"pricePerGpuHour": 3, "currency": "USD"}}


def test_by_default_neither_tracking_nor_cost_reaches_the_operator(tmp_path: Path) -> None:
    options = operator_options_of(render({}, tmp_path))
    assert options.mlflow_tracking_uri is None
    assert options.settings.pricing is None


def test_tracking_and_cost_values_become_the_operators_flags(tmp_path: Path) -> None:
    options = operator_options_of(render({**TRACKED, **PRICED}, tmp_path))
    assert options.mlflow_tracking_uri == "http://mlflow.mlops:5000"
    assert options.settings.pricing == GpuPricing(price_per_gpu_hour=3.0, currency="USD")


@pytest.mark.parametrize(
    "uri", ["ftp://mlflow.mlops", "mlflow.mlops:5000", "https://user:secret@mlflow.example.com", "http://"]
)
def test_the_schema_refuses_a_tracking_uri_that_is_not_plain_http(uri: str, tmp_path: Path) -> None:
    result = helm_template({"tracking": {"mlflow": {"trackingUri": uri}}}, tmp_path)
    assert result.returncode != 0 and "trackingUri" in result.stderr


@pytest.mark.parametrize("uri", ["https://mlflow.example.com/prefix", "http://10.0.0.5:5000"])
def test_the_schema_takes_http_and_https_uris(uri: str, tmp_path: Path) -> None:
    options = operator_options_of(render({"tracking": {"mlflow": {"trackingUri": uri}}}, tmp_path))
    assert options.mlflow_tracking_uri == uri
