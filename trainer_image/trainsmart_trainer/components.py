"""The pieces a TrainingRun is assembled from and what it hands back, apart from the run itself.

`Components` is the seam between the loop and the data/model/metric code of `data`, `models` and `metrics`:
tests and benches pass their own (a deliberately deep sigmoid net to provoke vanishing gradients) without
patching modules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from torch import Tensor, nn

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import Diagnostic, ExitCode, FinalResult

if TYPE_CHECKING:
    from trainsmart_trainer.data import DataBundle


@dataclass(frozen=True)
class Components:
    """The data/model/metric functions the loop calls; tests swap in their own (e.g. a deep sigmoid net)."""

    load_data: Callable[[TrainerConfig], DataBundle]
    build_model: Callable[[TrainerConfig, DataBundle], nn.Module]
    loss_fn: Callable[[TrainerConfig, DataBundle], nn.Module]
    classification_metrics: Callable[[Tensor, Tensor, int], dict[str, float]]
    regression_metrics: Callable[[Tensor, Tensor], dict[str, float]]
    ranking_metrics: Callable[[nn.Module, DataBundle, str], dict[str, float]]


def default_components() -> Components:
    from trainsmart_trainer import data, metrics, models

    return Components(
        load_data=data.load_data,
        build_model=models.build_model,
        loss_fn=metrics.loss_fn,
        classification_metrics=metrics.classification_metrics,
        regression_metrics=metrics.regression_metrics,
        ranking_metrics=metrics.ranking_metrics,
    )


class StopSignal:
    """Set from a signal handler; read by the loop at step boundaries."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


@dataclass
class RunOutcome:
    """What a run ended with (also what the final report, result file and termination message say)."""

    exit_code: ExitCode
    final: FinalResult
    diagnostics: list[Diagnostic] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


class PermanentError(Exception):
    """Raised for failures a restart cannot fix (bad data, incompatible checkpoint)."""
