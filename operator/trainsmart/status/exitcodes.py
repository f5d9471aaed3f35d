"""Classifying how a container ended: success, "restart all ranks" (retryable) or "fail the job" (permanent).

Precedence, first match wins:
1. 0, and the trainer's EARLY_STOPPED: success (early stopping is a final result, not a failure);
2. `spec.runPolicy.permanentExitCodes`, then `retryableExitCodes`: the user knows their own trainer best;
3. the contract's documented codes (PERMANENT_EXIT_CODES, RETRYABLE_EXIT_CODES);
4. conventions for everything else:
   * 1 (an uncaught Python exception) is retryable, as the contract documents;
   * 2 (usage error), 126 (not executable) and 127 (command not found) are permanent: the same command
     will fail the same way, and so is a container the runtime could not start (reason StartError or
     ContainerCannotRun);
   * 128+N, killed by signal N (137 = SIGKILL, OOMKilled included; 143 = SIGTERM) is retryable: the
     process was stopped from outside;
   * any other code is retryable: a restart costs one unit of `backoffLimit`, failing a run for good on
     an unknown code that a restart would have fixed costs the whole run. List a custom trainer's
     permanent codes in `permanentExitCodes`.

A container run under the metrics wrapper (`spec.trainer.metrics`) starts `python3` first, so "command not
found" there most likely means the image has no python3: `explain_wrapped_exit` says so instead of the
bare convention, since the user never wrote `python3` themselves and would not think of it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from trainsmart.api import RunPolicy
from trainsmart_trainer.contract import PERMANENT_EXIT_CODES, RETRYABLE_EXIT_CODES, ExitCode

SIGNAL_BASE: Final = 128
MAX_SIGNAL: Final = 64
SHELL_PERMANENT_CODES: Final = {
    2: "command-line usage error",
    126: "command not executable",
    127: "command not found",
}
START_FAILURE_REASONS: Final = frozenset({"StartError", "ContainerCannotRun"})
COMMAND_NOT_FOUND: Final = 127
SIGKILL_EXIT_CODE: Final = SIGNAL_BASE + signal.SIGKILL
SIGKILL_WHY: Final = "killed by SIGKILL: out of memory (the OOM killer) or killed from outside"
"""What a bare 137 most often means; a kubelet that saw the OOM kill says OOMKilled instead."""
WRAPPER_NEEDS_PYTHON: Final = (
    "the metrics wrapper needs python3 >= 3.8 on PATH in the image (spec.trainer.metrics runs your command "
    "under `python3 trainsmart-client.pyz wrap`): add python3 to the image, or remove spec.trainer.metrics "
    "and report with the trainsmart_client library; if the image has python3, your command itself "
    "(trainer.command[0]) was not found"
)


class ExitClass(StrEnum):
    """What an exit means for the job."""

    SUCCESS = "Success"
    RETRYABLE = "Retryable"
    PERMANENT = "Permanent"


@dataclass(frozen=True)
class ExitVerdict:
    """The class of one exit and, in words, why (for condition messages and Events)."""

    exit_class: ExitClass
    why: str


def describe_exit_code(code: int) -> str:
    """`137 (SIGKILL)`, `11 (PERMANENT_FAILURE)`, `3`: the code with its conventional name when it has one."""
    if code in {member.value for member in ExitCode}:
        return f"{code} ({ExitCode(code).name})"
    if SIGNAL_BASE < code <= SIGNAL_BASE + MAX_SIGNAL:
        try:
            return f"{code} ({signal.Signals(code - SIGNAL_BASE).name})"
        except ValueError:
            return f"{code} (signal {code - SIGNAL_BASE})"
    return str(code)


def classify_exit(code: int, run_policy: RunPolicy, reason: str = "") -> ExitVerdict:
    """The verdict for a container that exited with `code` (and the kubelet's terminated `reason`)."""
    if code in (ExitCode.SUCCESS, ExitCode.EARLY_STOPPED):
        return ExitVerdict(ExitClass.SUCCESS, "training finished" if code == 0 else "stopped early by its config")
    if code in run_policy.permanent_exit_codes:
        return ExitVerdict(ExitClass.PERMANENT, "listed in runPolicy.permanentExitCodes")
    if code in run_policy.retryable_exit_codes:
        return ExitVerdict(ExitClass.RETRYABLE, "listed in runPolicy.retryableExitCodes")
    if code in PERMANENT_EXIT_CODES:
        return ExitVerdict(ExitClass.PERMANENT, "the trainer reported a failure a restart cannot fix")
    if code in RETRYABLE_EXIT_CODES:
        return ExitVerdict(ExitClass.RETRYABLE, "the trainer reported a failure a restart may fix")
    if reason in START_FAILURE_REASONS:
        return ExitVerdict(ExitClass.PERMANENT, f"the container could not start ({reason})")
    if code in SHELL_PERMANENT_CODES:
        return ExitVerdict(ExitClass.PERMANENT, SHELL_PERMANENT_CODES[code])
    if code == SIGKILL_EXIT_CODE and reason in ("", "Error"):
        return ExitVerdict(ExitClass.RETRYABLE, SIGKILL_WHY)
    if SIGNAL_BASE < code <= SIGNAL_BASE + MAX_SIGNAL:
        killed = f"killed by a signal ({reason})" if reason and reason != "Error" else "killed by a signal"
        return ExitVerdict(ExitClass.RETRYABLE, killed)
    if code == 1:
        return ExitVerdict(ExitClass.RETRYABLE, "an uncaught error")
    return ExitVerdict(ExitClass.RETRYABLE, "an exit code with no known meaning (counted against backoffLimit)")


def explain_wrapped_exit(code: int, reason: str = "", message: str = "") -> str | None:
    """Why a container run under the metrics wrapper failed to start, when the likely cause is a missing
    python3: exit 127 (command not found, as shells and the local node agent report it), or a runtime start
    failure that names python3 (containerd's `exec: "python3": executable file not found`). None otherwise."""
    if code == COMMAND_NOT_FOUND or (reason in START_FAILURE_REASONS and "python3" in message):
        return WRAPPER_NEEDS_PYTHON
    return None
