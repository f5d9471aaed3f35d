"""Condition reasons the TrainingJob status needs beyond `trainsmart.api.Reason`.

These belong next to the others in `trainsmart.api.conditions.Reason`; they live here until that module
(owned by the API) takes them, so that every reason is still spelled once.
"""

from __future__ import annotations

from typing import Final

PODS_DISRUPTED: Final = "PodDisrupted"
"""A replica was evicted, preempted or deleted from outside: all replicas restart, not counted."""
REPLICAS_RECREATED: Final = "ReplicasRecreated"
"""The replicas of a restart are all gone; fresh ones are being created."""
NO_RESTART: Final = "NoRestart"
NOT_FINISHED: Final = "NotFinished"
NO_FAILURE: Final = "NoFailure"
NOT_SUSPENDED: Final = "NotSuspended"
JOB_FAILED: Final = "JobFailed"
"""Succeeded=False once the job failed (the Failed condition has the details)."""
