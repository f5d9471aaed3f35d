"""What `kubectl get tj` and `kubectl get hps` print (issue 14): strings made for people, never raw floats.

Pins:
- no printer column of either kind is a number: every value a person reads with a fraction is a string
  the status carries for it (progress, metric, best trial, cost); (that each column points at a field of
  that type is `test_crdgen.test_printer_columns_point_at_fields_that_exist`);
- both kinds show the estimated cost in the default view, and the sweep's Best is the best trial's headline.
"""

from __future__ import annotations

from trainsmart.api.crdgen import SWEEP_COLUMNS, TRAININGJOB_COLUMNS


def test_no_printer_column_is_a_raw_number() -> None:
    for column in [*TRAININGJOB_COLUMNS, *SWEEP_COLUMNS]:
        assert column["type"] != "number", column


def test_both_kinds_show_progress_best_and_cost_as_strings() -> None:
    job = {column["name"]: column for column in TRAININGJOB_COLUMNS}
    sweep = {column["name"]: column for column in SWEEP_COLUMNS}
    assert job["Progress"]["jsonPath"] == ".status.progress.headline"
    assert sweep["Best"]["jsonPath"] == ".status.bestTrial.headline"
    for columns in (job, sweep):
        assert columns["Cost"]["jsonPath"] == ".status.costHeadline"
        # in the wide view only: with no price configured it would read <none> on every row
        assert columns["Cost"]["type"] == "string" and columns["Cost"]["priority"] == 1
