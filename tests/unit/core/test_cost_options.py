"""The GPU price as the operator is given it: `--price-*` flags, or the same as TRAINSMART_OPERATOR_* variables.

Pins:
- no `--price-per-gpu-hour`: no pricing (no cost anywhere);
- flags and variables give equal pricing: default price, currency, node label, per-label-value prices
  (label values with dashes and dots);
- per-label prices without a default price, malformed VALUE=PRICE items, a negative price, a lower-case
  currency and a non-number in a variable are refused with the flag's or variable's name.
"""

from __future__ import annotations

import pytest

from trainsmart.operator_config import OperatorConfigError, operator_options, operator_parser, options_from_environment
from trainsmart.settings import GpuPricing


def options(*flags: str) -> GpuPricing | None:
    return operator_options(operator_parser({}).parse_args(list(flags))).settings.pricing


def test_without_a_price_nothing_is_priced() -> None:
    assert options() is None


def test_flags_and_variables_give_the_same_pricing() -> None:
    expected = GpuPricing(
        price_per_gpu_hour=2.5,
        currency="EUR",
        node_label="example.com/gpu",
        by_label_value={"NVIDIA-H100-80GB-HBM3": 6.0, "a100.v2": 3.25},
    )
    by_flags = options(
        "--price-per-gpu-hour=2.5",
        "--price-currency=EUR",
        "--price-node-label=example.com/gpu",
        "--price-by-label-value=NVIDIA-H100-80GB-HBM3=6, a100.v2=3.25",
    )
    by_environment = options_from_environment(
        {
            "TRAINSMART_OPERATOR_PRICE_PER_GPU_HOUR": "2.5",
            "TRAINSMART_OPERATOR_PRICE_CURRENCY": "EUR",
            "TRAINSMART_OPERATOR_PRICE_NODE_LABEL": "example.com/gpu",
            "TRAINSMART_OPERATOR_PRICE_BY_LABEL_VALUE": "NVIDIA-H100-80GB-HBM3=6,a100.v2=3.25",
        }
    ).settings.pricing
    assert by_flags == by_environment == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--price-by-label-value=A100=3"], "needs --price-per-gpu-hour"),
        (["--price-per-gpu-hour=2", "--price-by-label-value=A100"], "write VALUE=PRICE"),
        (["--price-per-gpu-hour=2", "--price-by-label-value=A100=cheap"], "write VALUE=PRICE"),
        (["--price-per-gpu-hour=2", "--price-by-label-value==3"], "write VALUE=PRICE"),
        (["--price-per-gpu-hour=-1"], "greater than or equal to 0"),
        (["--price-per-gpu-hour=2", "--price-currency=usd"], "currency"),
    ],
)
def test_prices_that_make_no_pricing_are_refused(flags: list[str], message: str) -> None:
    with pytest.raises(OperatorConfigError, match=message):
        options(*flags)


def test_a_price_variable_that_is_no_number_is_refused_by_name() -> None:
    with pytest.raises(OperatorConfigError, match="TRAINSMART_OPERATOR_PRICE_PER_GPU_HOUR"):
        options_from_environment({"TRAINSMART_OPERATOR_PRICE_PER_GPU_HOUR": "two"})
