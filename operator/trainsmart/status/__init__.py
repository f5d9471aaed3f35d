"""Pure TrainingJob status layer: the job + its pods + the last status + trainer reports -> status and a plan.

No API calls and no clock reads (`now` is an argument): the I/O side observes, calls these, patches the
status if it changed, then carries out the plan.
"""

from trainsmart.status.derive import derive_trainingjob_status, invalid_spec_status
from trainsmart.status.exitcodes import ExitClass, ExitVerdict, classify_exit
from trainsmart.status.job_events import diagnostic_events, status_events
from trainsmart.status.plan import Plan, plan_trainingjob
from trainsmart.status.report_fold import fold_report, fold_reports

__all__ = [
    "ExitClass",
    "ExitVerdict",
    "Plan",
    "classify_exit",
    "derive_trainingjob_status",
    "diagnostic_events",
    "fold_report",
    "fold_reports",
    "invalid_spec_status",
    "plan_trainingjob",
    "status_events",
]
