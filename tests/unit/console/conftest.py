"""Fixtures of the console tests: a real sweep as the API returned it (`tests/fixtures/console/`).

`sweep_digits_lr.json` was recorded from the e2e cluster: a random search over the learning rate and
the batch size on digits, 6 trials of 6 epochs, 2 at a time, median early stopping (trials 2 and 5 were
stopped after 3 epochs), maximizing val_accuracy; with every trial's TrainingJob and the namespace's
Events. managedFields were dropped.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

RECORDED = Path(__file__).parents[2] / "fixtures" / "console" / "sweep_digits_lr.json"


@pytest.fixture(scope="session")
def _recorded() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECORDED.read_text())
    return data


@pytest.fixture
def recorded(_recorded: dict[str, Any]) -> dict[str, Any]:
    """{"sweep": ..., "trials": [...], "events": [...]}: a fresh copy each test may change."""
    return copy.deepcopy(_recorded)
