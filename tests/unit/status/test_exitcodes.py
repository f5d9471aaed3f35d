"""Exit-code classification: success, retryable (restart all ranks) or permanent (fail the job).

Pins:
- 0 and the trainer's EARLY_STOPPED are success; the contract's codes keep their documented meaning;
- runPolicy lists win over the defaults (even over the contract's codes), never over success;
- 1 and signals (128+N) are retryable, shell "cannot run" codes and start failures permanent, unknown
  codes retryable (bounded by backoffLimit);
- descriptions name the trainer code or the signal.
"""

from __future__ import annotations

import pytest

from trainsmart.api import RunPolicy
from trainsmart.status.exitcodes import ExitClass, classify_exit, describe_exit_code
from trainsmart_trainer.contract import PERMANENT_EXIT_CODES, RETRYABLE_EXIT_CODES, ExitCode

DEFAULT = RunPolicy()
CUSTOM = RunPolicy(retryable_exit_codes=[11, 42], permanent_exit_codes=[10, 137, 3])


@pytest.mark.parametrize(
    ("code", "reason", "policy", "expected"),
    [
        (0, "Completed", DEFAULT, ExitClass.SUCCESS),
        (ExitCode.EARLY_STOPPED, "Error", DEFAULT, ExitClass.SUCCESS),
        (ExitCode.RETRYABLE_FAILURE, "Error", DEFAULT, ExitClass.RETRYABLE),
        (ExitCode.TERMINATED, "Error", DEFAULT, ExitClass.RETRYABLE),
        (ExitCode.PERMANENT_FAILURE, "Error", DEFAULT, ExitClass.PERMANENT),
        (1, "Error", DEFAULT, ExitClass.RETRYABLE),
        (2, "Error", DEFAULT, ExitClass.PERMANENT),
        (126, "Error", DEFAULT, ExitClass.PERMANENT),
        (127, "Error", DEFAULT, ExitClass.PERMANENT),
        (128, "StartError", DEFAULT, ExitClass.PERMANENT),
        (128, "ContainerCannotRun", DEFAULT, ExitClass.PERMANENT),
        (137, "OOMKilled", DEFAULT, ExitClass.RETRYABLE),
        (143, "Error", DEFAULT, ExitClass.RETRYABLE),
        (139, "Error", DEFAULT, ExitClass.RETRYABLE),
        (3, "Error", DEFAULT, ExitClass.RETRYABLE),
        (255, "Error", DEFAULT, ExitClass.RETRYABLE),
        (11, "Error", CUSTOM, ExitClass.RETRYABLE),
        (42, "Error", CUSTOM, ExitClass.RETRYABLE),
        (10, "Error", CUSTOM, ExitClass.PERMANENT),
        (137, "OOMKilled", CUSTOM, ExitClass.PERMANENT),
        (3, "Error", CUSTOM, ExitClass.PERMANENT),
        (0, "Completed", CUSTOM, ExitClass.SUCCESS),
    ],
)
def test_classify(code: int, reason: str, policy: RunPolicy, expected: ExitClass) -> None:
    verdict = classify_exit(code, policy, reason)
    assert verdict.exit_class == expected
    assert verdict.why


def test_contract_sets_are_honoured_by_default() -> None:
    for code in RETRYABLE_EXIT_CODES:
        assert classify_exit(code, DEFAULT).exit_class == ExitClass.RETRYABLE
    for code in PERMANENT_EXIT_CODES:
        assert classify_exit(code, DEFAULT).exit_class == ExitClass.PERMANENT


def test_oom_kill_is_named() -> None:
    assert "OOMKilled" in classify_exit(137, DEFAULT, "OOMKilled").why


@pytest.mark.parametrize(
    ("code", "text"),
    [(11, "11 (PERMANENT_FAILURE)"), (137, "137 (SIGKILL)"), (143, "143 (SIGTERM)"), (3, "3")],
)
def test_describe(code: int, text: str) -> None:
    assert describe_exit_code(code) == text
