"""Per-kind controllers (I/O side): read -> parse -> derive -> plan -> patch status -> act.

`main.py` wires Kopf to `OperatorRuntime`, which owns the controllers, the per-job work queue and the
report endpoint.
"""

from trainsmart.handlers.queue import WorkQueue
from trainsmart.handlers.runtime import OperatorOptions, OperatorRuntime
from trainsmart.handlers.trainingjob import TrainingJobController

__all__ = ["OperatorOptions", "OperatorRuntime", "TrainingJobController", "WorkQueue"]
