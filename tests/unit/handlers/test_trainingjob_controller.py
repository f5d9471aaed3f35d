"""When the TrainingJob reconcile may carry out its plan before patching the status.

Pins the invariant of `handlers/trainingjob_controller.py`: a restart is counted in status before any pod is
deleted. So the plan goes first only when it deletes nothing (no pod, not the job) and creates pods of
the attempt the stored status already records; a new job (no stored status) creates attempt 0 first.
"""

from __future__ import annotations

import pytest

from trainsmart.api import TrainingJobStatus
from trainsmart.handlers.trainingjob_controller import may_act_before_writing_status
from trainsmart.status import Plan


@pytest.mark.parametrize(
    ("stored", "derived", "plan", "first"),
    [
        (None, 0, Plan(create=(0, 1), attempt=0), True),
        (0, 0, Plan(create=(1,), attempt=0), True),
        (2, 2, Plan(create=(0,), attempt=2), True),
        (0, 0, Plan(), True),
        (0, 1, Plan(delete=("job-0", "job-1"), attempt=1, restart_all=True), False),
        (1, 1, Plan(delete=("job-2",), attempt=1), False),
        (0, 1, Plan(create=(0, 1), attempt=1), False),
        (None, 1, Plan(create=(0,), attempt=1), False),
        (0, 0, Plan(terminal=True, delete_job=True, ensure_children=False), False),
    ],
    ids=[
        "new job creates attempt 0",
        "recreate a missing replica",
        "resume at the stored attempt",
        "nothing to do",
        "restart deletes every replica",
        "stale replica deleted",
        "attempt not stored yet",
        "unreadable stored status, attempt 1",
        "ttl deletes the job",
    ],
)
def test_the_plan_goes_first_only_when_it_deletes_nothing_and_the_attempt_is_stored(
    stored: int | None, derived: int, plan: Plan, first: bool
) -> None:
    previous = TrainingJobStatus(restarts=stored) if stored is not None else None
    assert may_act_before_writing_status(previous, TrainingJobStatus(restarts=derived), plan) is first
