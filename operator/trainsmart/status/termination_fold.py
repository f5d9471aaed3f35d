"""The trainer's termination message as a second way for its final result to reach the TrainingJob status.

Rank 0 pushes its final report to the operator's endpoint, but that push can be lost: the operator may be
restarting, the endpoint unreachable, or the trainer starved of CPU until it gave up (it waits about ten
seconds at exit). The trainer also writes the same result, as compact JSON, to its container's
`terminationMessagePath`; the kubelet copies it into the pod status (`state.terminated.message`), which
the operator reads anyway. Folding it here means a finished job never keeps a stale metric and a sweep
trial whose reports were lost still has its objective.

The message is written by user-controlled code, so it is treated as untrusted input: only the current
attempt's rank-0 trainer counts, at most 4096 bytes (the kubelet's limit), parsed with the contract's
`FinalResult` schema (unknown keys, NaN and out-of-range values rejected), and anything else is ignored
with a log line, never an error. A plain-text message (a failure's log tail) is simply not a result.
Folding is idempotent and never regresses newer data (see `fold_final_result`), so deriving status again
from the same pods changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Final

from pydantic import ValidationError

from trainsmart.api import TrainingJobStatus
from trainsmart.api.common import TRAINER_CONTAINER_NAME
from trainsmart.status.podview import PodView
from trainsmart.status.report_fold import Goal, fold_final_result
from trainsmart_trainer.contract import TERMINATION_MESSAGE_MAX_BYTES, FinalResult

log = logging.getLogger(__name__)

MASTER_INDEX: Final = 0


def parse_final_result(message: str) -> FinalResult | None:
    """The trainer's final result in a termination message, or None (not JSON, too long, invalid)."""
    text = message.strip()
    if not text.startswith("{"):
        return None
    if len(text.encode("utf-8", errors="replace")) > TERMINATION_MESSAGE_MAX_BYTES:
        log.info("ignoring a termination message longer than %d bytes", TERMINATION_MESSAGE_MAX_BYTES)
        return None
    try:
        return FinalResult.model_validate_json(text)
    except ValidationError as error:
        details = error.errors(include_input=False)
        where = ".".join(str(part) for part in details[0]["loc"]) if details else ""
        what = details[0]["msg"][:200] if details else ""
        log.info(
            "ignoring a termination message that is not a trainer result (%d errors, first at %s: %s)",
            len(details),
            where or "message",
            what,
        )
        return None


def master_result(views: Sequence[PodView], attempt: int) -> FinalResult | None:
    """The final result of the current attempt's rank-0 trainer, once it terminated with one."""
    for view in views:
        if (
            view.index == MASTER_INDEX
            and view.attempt == attempt
            and view.container == TRAINER_CONTAINER_NAME
            and view.termination_message
        ):
            return parse_final_result(view.termination_message)
    return None


def fold_termination_message(
    status: TrainingJobStatus,
    views: Sequence[PodView],
    attempt: int,
    *,
    total_epochs: int | None = None,
    goals: Mapping[str, Goal] | None = None,
    objective: str | None = None,
) -> TrainingJobStatus:
    """`status` with the termination result of attempt `attempt`'s rank-0 trainer folded in, when it left
    one; otherwise `status` unchanged. Pods of an earlier attempt (still terminating after a restart was
    counted) never count: their result is older than what the current attempt may report."""
    result = master_result(views, attempt)
    if result is None:
        return status
    return fold_final_result(status, result, total_epochs=total_epochs, goals=goals, objective=objective)
