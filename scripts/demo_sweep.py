"""The sweep part of `make demo`: apply `examples/sweep-digits.yaml`, follow it, show the best trial.

Kept apart from demo.py (which starts and stops the cluster and runs the TrainingJob part) so each file
reads in one sitting. One line is printed per change of the sweep's summary (phase, trials done/planned,
running, early-stopped, best value); at the end the `kubectl get hps` table, the trial table and the best
trial's parameters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SWEEP_EXAMPLE = ROOT / "examples" / "sweep-digits.yaml"
TERMINAL_PHASES = ("Succeeded", "Failed")


def summary(status: Mapping[str, Any]) -> str:
    counts = status.get("counts") or {}
    best = status.get("bestTrial") or {}
    parts = [
        f"{status.get('phase') or 'Pending':<10}",
        f"trials done {counts.get('finished', 0)}/{counts.get('planned', '?')}",
        f"running {counts.get('running', 0)}",
        f"early-stopped {counts.get('earlyStopped', 0)}",
    ]
    if best:
        parts.append(f"best {best.get('name')} = {float(best.get('metricValue', 0.0)):.4f}")
    return "  ".join(parts)


def trial_table(status: Mapping[str, Any]) -> str:
    rows = [["TRIAL", "PHASE", "METRIC", "EPOCHS", "PARAMETERS"]]
    for row in status.get("trials") or []:
        value = row.get("metricValue")
        params = " ".join(f"{k}={_short(v)}" for k, v in sorted((row.get("parameters") or {}).items()))
        gone = " (deleted)" if row.get("deleted") else ""
        rows.append(
            [row["name"] + gone, row["phase"], "-" if value is None else f"{value:.4f}", str(row.get("epochs")), params]
        )
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    return "\n".join("  " + "   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def watch_sweep(
    read: Callable[[], Mapping[str, Any] | None], timeout: float, stall: float, elapsed: Callable[[], float]
) -> Mapping[str, Any]:
    """Print a line whenever the sweep's summary changes; return its status once it has finished."""
    deadline = time.monotonic() + timeout
    last, changed = None, time.monotonic()
    while True:
        status = ((read() or {}).get("status")) or {}
        line = summary(status)
        now = time.monotonic()
        if line != last:
            print(f"  [{elapsed():6.1f}s] {line}", flush=True)
            last, changed = line, now
        if status.get("phase") in TERMINAL_PHASES:
            return status
        if now > deadline:
            raise TimeoutError(f"the sweep did not finish within {timeout:.0f} s (last: {last})")
        if now - changed > stall:
            raise TimeoutError(f"the sweep's status has not changed for {stall:.0f} s (last: {last})")
        time.sleep(0.5)


def run_sweep(
    objects: Any,
    apply: Callable[[Path, str], None],
    print_table: Callable[[str], None],
    say: Callable[[str], None],
    elapsed: Callable[[], float],
    timeout: float,
    stall: float,
) -> bool:
    """Apply the sweep example and follow it; True when it succeeded with a best trial."""
    from kubernetes import client

    from trainsmart.api import GROUP, SWEEP_PLURAL, VERSION

    manifest = yaml.safe_load(SWEEP_EXAMPLE.read_text())
    name, namespace = manifest["metadata"]["name"], manifest["metadata"].get("namespace", "default")
    say(
        f"applying {SWEEP_EXAMPLE.relative_to(ROOT)} (TPE, {manifest['spec']['parallelTrials']} trials at a time, ASHA)"
    )
    apply(SWEEP_EXAMPLE, namespace)

    def read() -> Mapping[str, Any] | None:
        try:
            body: Mapping[str, Any] = objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, SWEEP_PLURAL, name
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    say(f"searching; status of HyperparamSweep {namespace}/{name} as it changes:")
    status = watch_sweep(read, timeout, stall, elapsed)
    say("kubectl get hps")
    print_table(namespace)
    say("trials (status.trials)")
    print(trial_table(status), flush=True)
    best = status.get("bestTrial") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True":
            print(f"  condition {condition.get('type')}: {condition.get('reason')} - {condition.get('message', '')}")
    if not best:
        say("no best trial")
        return False
    params = ", ".join(f"{k}={_short(v)}" for k, v in sorted((best.get("parameters") or {}).items()))
    say(f"best trial {best['name']}: {manifest['spec']['objective']['metric']} = {best['metricValue']:.4f} ({params})")
    return status.get("phase") == "Succeeded"
