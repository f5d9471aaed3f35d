"""The short strings `kubectl get` prints: what a person reads, never a raw float.

Printer columns can only point at fields, and a number column prints every digit a float has
(`0.9791666666666666`), so the status carries these strings beside the numbers they are made from. One
module for all of them keeps jobs and sweeps alike: metric values with 4 significant digits, progress
as done/total with a whole percent, money in cents.
"""

from __future__ import annotations

import math
from typing import Final

from trainsmart.api.trainingjob_status import Progress

HEADLINE_MAX_CHARS: Final = 128
"""The length every headline field allows (the CRD's maxLength)."""


def metric_headline(name: str, value: float) -> str:
    """`val_accuracy=0.9792`: the metric's name and its value to 4 significant digits."""
    return f"{name}={value:.4g}"[:HEADLINE_MAX_CHARS]


def progress_headline(progress: Progress) -> str:
    """`3/10 (30%)` epochs done of the run's total; `3 epochs` while the total is not known. The percent is
    rounded down, so 100% means finished."""
    if progress.total_epochs is None:
        return f"{progress.epoch} epoch" + ("" if progress.epoch == 1 else "s")
    return f"{progress.epoch}/{progress.total_epochs} ({math.floor(progress.percent)}%)"
