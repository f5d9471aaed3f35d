"""Pure status layer: TrainingJob + its pods + the last status + trainer reports -> status and a plan.

No API calls and no clock reads (`now` is an argument): the I/O side observes, calls these, patches the
status if it changed, then carries out the plan.
"""

from trainsmart.status.conditions import find_condition, is_condition_true, merge_conditions, set_condition
from trainsmart.status.events import StatusEvent, status_events
from trainsmart.status.exitcodes import ExitClass, ExitVerdict, classify_exit
from trainsmart.status.plan import Plan, plan_trainingjob
from trainsmart.status.reports import fold_report, fold_reports
from trainsmart.status.trainingjob import derive_trainingjob_status, invalid_spec_status

__all__ = [
    "ExitClass",
    "ExitVerdict",
    "Plan",
    "StatusEvent",
    "classify_exit",
    "derive_trainingjob_status",
    "find_condition",
    "fold_report",
    "fold_reports",
    "invalid_spec_status",
    "is_condition_true",
    "merge_conditions",
    "plan_trainingjob",
    "set_condition",
    "status_events",
]
