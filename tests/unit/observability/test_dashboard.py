"""The chart's Grafana dashboard against the metrics the code exports.

Pins:
- every metric name in the dashboard's PromQL (panels and variable queries) is exported by the operator's
  registry or by the trainer's own exporter (the PodMonitor-scraped series);
- the dashboard covers what the chart promises: job progress, objective curves, GPUs in use, sweep best so
  far; the estimated cost summed by namespace, in a row of its own below the others;
- it is loadable as provisioned by the Grafana sidecar: unique panel ids, one datasource variable every
  query uses, every `$variable` defined, panels inside the 24-column grid;
- the name extraction itself skips functions, label names, grouping clauses, strings and ranges.

That the expressions also parse and run is checked against a real Prometheus in
tests/e2e/test_prometheus_scrape.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from support.paths import REPO
from trainsmart.observability import OperatorMetrics
from trainsmart_trainer.promexport import TrainerMetrics

DASHBOARD = REPO / "charts" / "trainsmart" / "dashboards" / "trainsmart.json"
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NAME = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana's label_values(selector, label) form included)."""
    if match := _LABEL_VALUES.match(expr):
        expr = match.group(1)
    for pattern in (_STRING, _MATCHERS, _RANGE, _CLAUSE):
        expr = pattern.sub(" ", expr)
    return {name for name in _NAME.findall(expr) if name.lower() not in _KEYWORDS}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        yield item
        yield from panels(item.get("panels", []))


def expressions(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(board["panels"]) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry's families can produce, samples present or not."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum")}
    names = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def all_exported() -> set[str]:
    operator = OperatorMetrics()
    trainer = TrainerMetrics("val_loss", cuda=True)
    return exported_names(operator.registry) | exported_names(trainer.registry)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, kind) (rate(a_bucket{kind="x", job=~"$job"}[$__rate_interval]))', {"a_bucket"}),
        ("histogram_quantile(0.95, sum(rate(b_bucket[5m])) by (le))", {"b_bucket"}),
        ("max by (instance) (c and on (instance) d_count)", {"c", "d_count"}),
        ('label_values(e{namespace=~"$namespace"}, job)', {"e"}),
        ('f{metric="not_a_metric"} > bool 1e3 offset 5m', {"f"}),
        ("sum without (pod) (g:recorded:rate5m)", {"g:recorded:rate5m"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_dashboard_metric_is_exported_by_the_code() -> None:
    exported = all_exported()
    used = {name for expr in expressions(dashboard()) for name in metric_names(expr)}
    assert used, "no metric names found in the dashboard"
    assert used - exported == set(), f"the dashboard queries metrics no code exports: {sorted(used - exported)}"


def test_dashboard_covers_progress_objective_gpus_and_sweep_best() -> None:
    used = {name for expr in expressions(dashboard()) for name in metric_names(expr)}
    for name in (
        "trainsmart_job_progress_ratio",
        "trainsmart_job_objective",
        "trainsmart_job_gpus_running",
        "trainsmart_sweep_best_objective",
        "trainsmart_trainer_loss",
    ):
        assert name in used, name


def test_dashboard_sums_the_estimated_cost_by_namespace_below_the_existing_panels() -> None:
    board = dashboard()
    [panel] = [p for p in panels(board["panels"]) if p.get("title") == "Estimated cost by namespace"]
    [target] = panel["targets"]
    assert metric_names(target["expr"]) == {"trainsmart_job_estimated_cost"}
    assert target["expr"].startswith("sum by (namespace, currency) (")  # one operator prices in one currency
    others = [p for p in panels(board["panels"]) if p is not panel and p.get("title") != "Cost"]
    assert panel["gridPos"]["y"] > max(p["gridPos"]["y"] for p in others)  # appended, no panel moved


def test_dashboard_is_loadable_by_the_grafana_sidecar() -> None:
    board = dashboard()
    all_panels = list(panels(board["panels"]))
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "job", "sweep"} <= variables
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            for name in re.findall(r"\$\{?(\w+)", target["expr"]):
                assert name.startswith("__") or name in variables, (panel["title"], name)
