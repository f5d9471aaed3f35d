"""Per-kind controllers (I/O side): read -> parse -> derive -> plan -> patch status -> act.

`main.py` wires Kopf to `OperatorRuntime`, which owns the controllers, the per-job work queue and the
report endpoint; `controller_core` is what the two controllers share.
"""

from trainsmart.handlers.operator_runtime import OperatorRuntime
from trainsmart.handlers.queue import WorkQueue
from trainsmart.handlers.trainingjob_controller import TrainingJobController

__all__ = ["OperatorRuntime", "TrainingJobController", "WorkQueue"]
