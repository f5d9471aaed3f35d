"""The shared admission cases (tests/support/admission_cases.py), judged by the webhook's rules.

Pins, for the objects the 1.20 webhook tier and the 1.36 CEL tier also judge:
- the bases are valid, so each case is refused for its one change only;
- every cross-field case is refused at the path the CEL rule of the same model reports on 1.36;
- every misspelt field is refused at its own path, as unknown, with the name it was probably meant to be.
"""

from __future__ import annotations

import pytest

from support.admission_cases import CROSS_FIELD, JOB_BASE, SWEEP_BASE, TYPOS, Case
from support.manifests import sweep_body, trainingjob_body
from trainsmart.admission.rules import Problem, validate_sweep, validate_trainingjob


def problems_of(case: Case) -> list[Problem]:
    validate = validate_trainingjob if case.body["kind"] == "TrainingJob" else validate_sweep
    return validate(case.body)


def test_the_bases_are_valid() -> None:
    assert validate_trainingjob(trainingjob_body("base", JOB_BASE)) == []
    assert validate_sweep(sweep_body("base", SWEEP_BASE)) == []


@pytest.mark.parametrize("case", CROSS_FIELD, ids=lambda case: case.id)
def test_each_cross_field_case_is_refused_at_its_path(case: Case) -> None:
    problems = problems_of(case)
    assert [problem.path for problem in problems] == [case.path], problems


@pytest.mark.parametrize("case", TYPOS, ids=lambda case: case.id)
def test_each_typo_is_refused_as_unknown_with_a_suggestion(case: Case) -> None:
    (problem,) = problems_of(case)
    assert problem.path == case.path
    assert problem.reason.startswith("unknown field; did you mean "), problem
