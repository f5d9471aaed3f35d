"""Where a run stands: the position, the best-so-far and everything else a checkpoint carries over.

One object owns it so that the loop advances it and `resume.py` writes and rebuilds it without either
knowing the other: the loop never sees the checkpoint format, the checkpoint code never sees the loop.
The model, optimizer, scheduler and AMP scaler are not here; their state lives in the `Trainee` they belong
to, and `resume.py` saves and loads it there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trainsmart_trainer.contract import BestCheckpointInfo, CheckpointInfo
from trainsmart_trainer.diagnostics import DiagnosticsTracker
from trainsmart_trainer.objective import BestTracker


@dataclass
class RunState:
    """A run's progress; the fields marked "not checkpointed" start empty again after a restart."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches done in the epoch after `epoch` (resume after SIGTERM)
    global_step: int = 0
    best: BestTracker = field(default_factory=BestTracker)
    early_stopped: bool = False
    diagnostics: DiagnosticsTracker = field(default_factory=DiagnosticsTracker)
    last_metrics: dict[str, float] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    # (epoch, step_in_epoch) of the newest checkpoint; a fresh run has nothing worth saving yet.
    saved_at: tuple[int, int] = (0, 0)
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch metrics; not checkpointed
    last_checkpoint: CheckpointInfo | None = None  # written by this process; not checkpointed
    best_checkpoint: BestCheckpointInfo | None = None  # read back from the best checkpoint file itself

    @property
    def position(self) -> tuple[int, int]:
        """(epochs completed, batches into the next epoch): what a checkpoint file is named after."""
        return (self.epoch, self.step_in_epoch)

    @property
    def saved_now(self) -> bool:
        """Whether the newest checkpoint is of exactly this position (saving again would add nothing)."""
        return self.saved_at == self.position
