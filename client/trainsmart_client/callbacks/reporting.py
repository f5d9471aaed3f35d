"""What both framework callbacks share: the session they report through and how a framework's numbers
become metrics.

A callback reports through the session it was given (a test, or a process that runs several trainers and
wants separate curves) or else through the process's own, via the module functions: those also install
the SIGTERM flag, which is what makes `stop_requested()` work at all.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Collection, Mapping

import trainsmart_client
from trainsmart_client.session import Session
from trainsmart_client.wire import EXIT_TERMINATED

log = logging.getLogger("trainsmart_client")

FINISH_TIMEOUT_S = 10.0
"""How long a stopping callback waits for its last reports before the process exits: well inside the
pod's grace period (120 s by default), and a dead endpoint gives up at once anyway."""


class Reporter:
    """The session a callback speaks to; None means the process's own."""

    def __init__(self, session: Session | None = None) -> None:
        self._session = session

    def report(self, metrics: Mapping[str, float], epoch: int | None = None, step: int | None = None) -> None:
        if self._session is not None:
            self._session.report(metrics, epoch=epoch, step=step)
        else:
            trainsmart_client.report(metrics, epoch=epoch, step=step)

    def progress(
        self, epoch: int, total_epochs: int | None = None, step: int | None = None, total_steps: int | None = None
    ) -> None:
        if self._session is not None:
            self._session.progress(epoch, total_epochs=total_epochs, step=step, total_steps=total_steps)
        else:
            trainsmart_client.progress(epoch, total_epochs=total_epochs, step=step, total_steps=total_steps)

    def stop_requested(self) -> bool:
        if self._session is not None:
            return self._session.stop_flag.is_set()
        return trainsmart_client.stop_requested()

    def finish(self, timeout_s: float = FINISH_TIMEOUT_S) -> bool:
        if self._session is not None:
            return self._session.finish(timeout_s)
        return trainsmart_client.finish(timeout_s)


def as_number(value: Any) -> float | None:
    """`value` as one float: a Python number, a NumPy scalar or a one-element tensor; None for anything
    else (booleans, strings, vectors). NaN and inf are kept: the session turns a non-finite loss into a
    diagnostic instead of dropping it silently."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    numel = getattr(value, "numel", None)
    size = numel() if callable(numel) else getattr(value, "size", None)
    if size != 1:
        return None
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        return None


def numeric_metrics(values: Mapping[str, Any], skip: Collection[str] = ()) -> dict[str, float]:
    """Every entry of `values` that is one number, by its name, except the names in `skip`."""
    out: dict[str, float] = {}
    for name, value in values.items():
        number = as_number(value)
        if number is not None and name not in skip:
            out[str(name)] = number
    return out


def is_whole(epoch: float) -> bool:
    """Whether a framework's fractional epoch counter sits exactly at an epoch boundary."""
    return math.isclose(epoch, round(epoch), abs_tol=1e-6)


def exit_terminated() -> SystemExit:
    """The exception that ends a process stopped by SIGTERM after its checkpoint: exit code 13, the
    contract's TERMINATED. Returning normally would end with 0, which the operator reads as success, so a
    suspended job or a sweep's paused trial would count as finished instead of resuming later."""
    log.info("stopped on request after saving a checkpoint: exiting with %d (resume later)", EXIT_TERMINATED)
    return SystemExit(EXIT_TERMINATED)
