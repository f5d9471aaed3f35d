"""The functions behind `trainsmart get | describe | report`, returning data instead of printing it: the
small client API for notebooks and scripts.

    from trainsmart import console
    cluster = console.connect(namespace="ml")
    console.get_rows(cluster)                       # what `trainsmart get` lists, as dicts
    report = console.report_data(cluster, "lr-sweep")
    [(t.name, t.value) for t in report.trials]
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from trainsmart.console.access import Cluster, Kind
from trainsmart.console.report_data import JobReport, SweepReport, job_report, sweep_report
from trainsmart.console.views import describe_job, describe_sweep, job_row, now_utc, sweep_row


def get_rows(
    cluster: Cluster, kinds: tuple[Kind, ...] = ("TrainingJob", "HyperparamSweep"), all_namespaces: bool = False
) -> dict[Kind, list[dict[str, str]]]:
    """Every job and sweep of the namespace (or of all): kind -> rows, the columns `get -o wide` shows."""
    now = now_utc()
    namespace = None if all_namespaces else cluster.namespace
    rows: dict[Kind, list[dict[str, str]]] = {}
    for kind in kinds:
        objects = sorted(cluster.list_objects(kind, namespace), key=_sort_key)
        rows[kind] = [job_row(o, now) if kind == "TrainingJob" else sweep_row(o, now) for o in objects]
    return rows


def _sort_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def describe_lines(cluster: Cluster, name: str, kind: Kind | None = None, now: datetime | None = None) -> list[str]:
    """`trainsmart describe`: the object, its pods or trials, and recent Events, as lines."""
    obj = cluster.find(name, cluster.namespace, kind)
    now = now or now_utc()
    namespace = cluster.namespace
    if obj.get("kind") == "HyperparamSweep":
        trials = cluster.trials(namespace, name)
        names = {name, *(t["metadata"]["name"] for t in trials)}
        return describe_sweep(obj, trials, cluster.events(namespace, names), now)
    pods = cluster.pods(namespace, name)
    names = {name, *(p["metadata"]["name"] for p in pods)}
    return describe_job(obj, pods, cluster.events(namespace, names), now)


def report_data(cluster: Cluster, name: str, kind: Kind | None = None) -> SweepReport | JobReport:
    """The data `trainsmart report` plots, for a sweep (with its trials' curves) or a job."""
    obj = cluster.find(name, cluster.namespace, kind)
    if obj.get("kind") == "HyperparamSweep":
        return sweep_report(obj, cluster.trials(cluster.namespace, name))
    return job_report(obj, now_utc())


def write_report(report: SweepReport | JobReport, path: Path) -> Path:
    """Write `report` as HTML (`.html`), PNG (`.png`) or its data as JSON (`.json`), by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        import dataclasses
        import json

        path.write_text(json.dumps(dataclasses.asdict(report), indent=1, default=str) + "\n")
    elif suffix == ".png":
        from trainsmart.console.report_png import write_job_png, write_sweep_png

        if isinstance(report, SweepReport):
            write_sweep_png(report, path)
        else:
            write_job_png(report, path)
    elif suffix in (".html", ".htm"):
        from trainsmart.console.report_html import job_html, sweep_html

        path.write_text(sweep_html(report) if isinstance(report, SweepReport) else job_html(report), encoding="utf-8")
    else:
        raise ValueError(f"cannot write a report as {path.name}: use .html, .png or .json")
    return path
