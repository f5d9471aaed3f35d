"""`trainsmart watch JOB|SWEEP`: follow one object through a watch (not polling) and draw its progress until
it ends; the exit code says how it ended.

On a terminal the bars are rich's, redrawn in place (a job: epochs with percent, ETA and the metric; a
sweep: trials finished out of planned with the best so far, and one bar per running trial that still
exists). Elsewhere (a pipe, a CI log) a plain line is printed each time what it would show changes.
Either way the last line is `job X Succeeded in 1m12s: val_accuracy=0.97`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TextIO

from trainsmart.console.access import Cluster, ConsoleError, Kind
from trainsmart.console.views import (
    FINISHED_PHASES,
    final_line,
    format_duration,
    job_progress,
    now_utc,
    objective_name,
    phase,
)

EXIT_SUCCEEDED: Final = 0
EXIT_FAILED: Final = 1
EXIT_SUSPENDED: Final = 5
EXIT_DELETED: Final = 6
EXIT_TIMEOUT: Final = 7
WATCH_WINDOW_SECONDS: Final = 60


def exit_code(obj: Mapping[str, Any]) -> int | None:
    """The code an object's phase ends `watch` with; None while it goes on."""
    current = phase(obj)
    if current == "Succeeded":
        return EXIT_SUCCEEDED
    if current == "Failed":
        return EXIT_FAILED
    if current == "Suspended":
        return EXIT_SUSPENDED
    return None


def plain_line(kind: Kind, obj: Mapping[str, Any], trials: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """What a non-terminal shows: one line of the object's progress."""
    name = (obj.get("metadata") or {}).get("name")
    if kind == "TrainingJob":
        return f"{name}: {phase(obj)}  {job_progress(obj).line()}"
    status = obj.get("status") or {}
    counts = status.get("counts") or {}
    best = status.get("bestTrial")
    # The operator's own headline when it wrote one (an older operator did not): one format everywhere.
    headline = (best or {}).get("headline") or (best and f"{objective_name(obj)}={best['metricValue']:.4g}")
    best_text = f"  best {headline} ({best['name']})" if best else ""
    return (
        f"{name}: {phase(obj)}  trials {counts.get('finished', 0)}/{counts.get('planned') or '?'} finished, "
        f"{counts.get('running', 0)} running{best_text}"
    )


class _Bars:
    """rich's live progress bars for one object."""

    def __init__(self, kind: Kind, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

        self.kind = kind
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn() if kind == "HyperparamSweep" else TextColumn(""),
            console=Console(file=stream),
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Bars:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def _task(self, key: str, description: str) -> Any:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=100, detail="")
        return self.tasks[key]

    def update_job(self, key: str, obj: Mapping[str, Any]) -> None:
        progress = job_progress(obj)
        total = progress.total_epochs or 0
        task = self._task(key, str((obj.get("metadata") or {}).get("name")))
        detail = f"{phase(obj):<10} epoch {progress.epoch}/{total or '?'}"
        if progress.eta_seconds is not None:
            detail += f"  ETA {format_duration(progress.eta_seconds)}"
        if progress.metric:
            detail += f"  {progress.metric}"
        self.progress.update(task, completed=progress.percent, detail=detail)

    def update_sweep(self, obj: Mapping[str, Any], trials: Mapping[str, Mapping[str, Any]]) -> None:
        status = obj.get("status") or {}
        counts = status.get("counts") or {}
        planned = counts.get("planned") or 0
        task = self._task("", f"{(obj.get('metadata') or {}).get('name')} trials")
        self.progress.update(task, total=planned or None, completed=counts.get("finished", 0))
        self.progress.update(task, detail=plain_line("HyperparamSweep", obj).split(": ", 1)[1])
        for name, job in trials.items():
            if name in self.tasks or phase(job) not in FINISHED_PHASES:
                self.update_job(name, job)


def watch(
    cluster: Cluster,
    kind: Kind,
    name: str,
    namespace: str,
    *,
    stream: TextIO = sys.stdout,
    tty: bool | None = None,
    timeout: float | None = None,
    on_change: Callable[[Mapping[str, Any]], None] | None = None,
) -> int:
    """Follow `name` until it succeeds (0), fails (1), is suspended (5), is deleted (6) or `timeout`
    seconds pass (7); print its progress on the way and the final line at the end."""
    obj = cluster.get(kind, name, namespace)
    tty = stream.isatty() if tty is None else tty
    deadline = None if timeout is None else time.monotonic() + timeout
    bars = _Bars(kind, stream) if tty else None
    last_line = ""
    trials: dict[str, Mapping[str, Any]] = {}

    def show(current: Mapping[str, Any]) -> None:
        nonlocal last_line
        if kind == "HyperparamSweep":
            trials.update({(t.get("metadata") or {}).get("name", ""): t for t in cluster.trials(namespace, name)})
        if on_change is not None:
            on_change(current)
        if bars is not None:
            if kind == "TrainingJob":
                bars.update_job("", current)
            else:
                bars.update_sweep(current, trials)
            return
        line = plain_line(kind, current, trials)
        if line != last_line:
            print(line, file=stream, flush=True)
            last_line = line

    def finish(code: int, current: Mapping[str, Any]) -> int:
        if bars is not None:
            bars.__exit__()
        if code == EXIT_DELETED:
            print(f"{kind} {name} was deleted", file=stream, flush=True)
        elif code == EXIT_TIMEOUT:
            print(f"{plain_line(kind, current)} (still going after {timeout:g}s)", file=stream, flush=True)
        else:
            print(final_line(kind, current, now_utc()), file=stream, flush=True)
        return code

    if bars is not None:
        bars.__enter__()
    try:
        show(obj)
        if (code := exit_code(obj)) is not None:
            return finish(code, obj)
        while deadline is None or time.monotonic() < deadline:
            window = WATCH_WINDOW_SECONDS if deadline is None else max(1, min(60, int(deadline - time.monotonic())))
            for event_type, current in cluster.watch(kind, namespace, name, timeout_seconds=window):
                if event_type == "DELETED":
                    return finish(EXIT_DELETED, obj)
                if event_type == "ERROR":
                    break  # a stale resourceVersion: watch again from a fresh list
                obj = current
                show(obj)
                if (code := exit_code(obj)) is not None:
                    return finish(code, obj)
        return finish(EXIT_TIMEOUT, obj)
    except (ConsoleError, KeyboardInterrupt):
        if bars is not None:
            bars.__exit__()
        raise
