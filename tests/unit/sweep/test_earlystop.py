"""Early stopping decisions (median rule and ASHA) on synthetic learning curves.

Pins:
- rule none decides nothing; no trial is judged before minEpochs or at its last epoch;
- median: a running trial whose best-so-far at its latest epoch is worse than the median of the running
  averages of the running or finished others that reached that epoch is stopped (paused trials are not
  others; ties are not worse; a noisy dip after a good epoch is not held against it; fewer than two others
  decide nothing), for maximize and minimize; what a stopped trial leaving the others would stop next is
  stopped at once;
- each trial is judged by its own epochs: ASHA's rungs continue past the template's epochs for a longer
  trial, and a shorter one is not paused at its last epoch;
- ASHA: rungs at minEpochs * eta**k below maxEpochs; a trial at a rung goes on only in the top floor(n/eta)
  (so the first arrivals wait), a paused trial is promoted once arrivals put it in the top, ties go to the
  lower trial number; draining keeps at least one trial per rung going;
- decisions are pure: the same curves in any order give the same decision; a paused trial is never stopped
  again; applying a decision and asking again gives nothing new (a fixed point).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.models import make_sweep
from trainsmart.api.sweep_spec import EarlyStoppingRule, Goal, SweepEarlyStopping
from trainsmart.sweep import EarlyStopDecision, TrialCurve, asha_rungs, early_stopping_decisions
from trainsmart.sweep.trial_stopping import trial_epochs

MEDIAN = SweepEarlyStopping(rule=EarlyStoppingRule.MEDIAN, min_epochs=2)
ASHA = SweepEarlyStopping(rule=EarlyStoppingRule.ASHA, min_epochs=1, reduction_factor=3)


def curve(number: int, values: list[float], state: Any = "running") -> TrialCurve:
    return TrialCurve(name=f"t{number}", number=number, values=values, state=state)


def decide(
    settings_: SweepEarlyStopping, curves: list[TrialCurve], goal: Goal = Goal.MAXIMIZE, **kw: Any
) -> EarlyStopDecision:
    return early_stopping_decisions(settings_, goal, 9, curves, **kw)


def test_rule_none_decides_nothing() -> None:
    curves = [curve(0, [0.9, 0.9]), curve(1, [0.8, 0.8]), curve(2, [0.1, 0.1])]
    assert decide(SweepEarlyStopping(), curves) == EarlyStopDecision({}, {})


def test_median_stops_a_trial_below_the_median_of_the_others_at_its_epoch() -> None:
    curves = [
        curve(0, [0.5, 0.7, 0.8, 0.85], "finished"),
        curve(1, [0.5, 0.6, 0.7], "paused"),
        curve(2, [0.5, 0.75, 0.8]),
        curve(3, [0.4, 0.5]),  # at epoch 2 the others (t1 paused) average 0.6 and 0.625: median 0.6125
        curve(4, [0.3]),  # before minEpochs 2
    ]
    decision = decide(MEDIAN, curves, metric="val_accuracy")
    assert decision.stop == {
        "t3": "median rule: best val_accuracy 0.5 by epoch 2 is worse than the median 0.6125 of the running "
        "averages of 2 other running or finished trials at that epoch"
    }
    assert decision.promote == {}


@pytest.mark.parametrize(
    ("mine", "others", "goal", "stopped"),
    [
        ([0.5, 0.6], [[0.5, 0.7], [0.5, 0.8]], Goal.MAXIMIZE, True),
        ([0.5, 0.75], [[0.5, 0.7], [0.5, 0.8]], Goal.MAXIMIZE, False),  # exactly the median: not worse
        ([0.9, 0.1], [[0.5, 0.7], [0.5, 0.8]], Goal.MAXIMIZE, False),  # best so far 0.9 despite the dip
        ([0.5, 0.6], [[0.5, 0.7]], Goal.MAXIMIZE, False),  # one other trial is no median
        ([0.5, 0.6], [[0.5], [0.5]], Goal.MAXIMIZE, False),  # the others have not reached epoch 2
        ([1.0, 0.9], [[1.0, 0.5], [1.0, 0.6], [1.0, 0.7]], Goal.MINIMIZE, True),  # val_loss 0.9 > median 0.6
        ([1.0, 0.5], [[1.0, 0.5], [1.0, 0.6], [1.0, 0.7]], Goal.MINIMIZE, False),
        ([float("nan"), float("nan")], [[0.5, 0.7], [0.5, 0.8]], Goal.MAXIMIZE, True),  # NaN is worst
    ],
)
def test_median_rule_cases(mine: list[float], others: list[list[float]], goal: Goal, stopped: bool) -> None:
    curves = [curve(index + 1, values, "finished") for index, values in enumerate(others)] + [curve(0, mine)]
    assert ("t0" in decide(MEDIAN, curves, goal).stop) is stopped


def test_median_leaves_paused_trials_out_of_the_others() -> None:
    # Counting the three paused trials, the median at epoch 2 would be 0.35 and t0 (0.5) would go on.
    good = [curve(1, [0.8, 0.8], "finished"), curve(2, [0.9, 0.9], "finished")]
    bad = [curve(number, [0.2, 0.3], "paused") for number in (3, 4, 5)]
    decision = decide(MEDIAN, [*good, *bad, curve(0, [0.4, 0.5])])
    assert decision.stop.keys() == {"t0"}
    assert "median 0.85 of the running averages of 2 other" in decision.stop["t0"]


def test_median_compares_with_the_others_running_averages_not_their_best() -> None:
    # The others' best by epoch 2 is 0.8 and 0.9 (median 0.85): t0's 0.75 beats their running averages.
    others = [curve(1, [0.5, 0.8], "finished"), curve(2, [0.5, 0.9])]
    assert decide(MEDIAN, [*others, curve(0, [0.5, 0.75])]).stop == {}
    assert decide(MEDIAN, [*others, curve(0, [0.5, 0.6])]).stop.keys() == {"t0"}


def test_median_stops_at_once_what_a_stopped_trial_leaving_the_others_would_stop_next() -> None:
    # t1 is below the median at epoch 2; without it, the epoch-1 median rises past t0.
    curves = [curve(0, [0.0]), curve(1, [0.0, 0.0]), curve(2, [0.0, 0.0, 0.0]), curve(3, [1.0, 0.0])]
    assert decide(SweepEarlyStopping(rule=EarlyStoppingRule.MEDIAN), curves).stop.keys() == {"t0", "t1"}


def test_asha_places_rungs_by_each_trials_own_epochs() -> None:
    # The template runs 9 epochs (rungs 1, 3); t0 runs 27 (a parameter sets its epochs), so it meets rung 9.
    at_rung_9 = [curve(1, [0.9] * 9, "finished"), curve(2, [0.8] * 9, "finished")]
    long = TrialCurve("t0", 0, [0.5] * 10, "running", max_epochs=27)
    decision = decide(ASHA, [*at_rung_9, long])
    assert decision.stop.keys() == {"t0"} and "by epoch 9 is not among the top 1 of 3" in decision.stop["t0"]
    # A trial set to 3 epochs is at its last epoch at 3: pausing it there saves nothing.
    short = TrialCurve("t0", 0, [0.1, 0.1, 0.1], "running", max_epochs=3)
    leaders = [curve(1, [0.9] * 3), curve(2, [0.8] * 3, "finished")]
    assert "t0" not in decide(ASHA, [*leaders, short]).stop
    assert "t0" in decide(ASHA, [*leaders, curve(0, [0.1, 0.1, 0.1])]).stop


def test_no_trial_is_judged_at_its_last_epoch_or_while_not_running() -> None:
    others = [curve(1, [0.9] * 9, "finished"), curve(2, [0.9] * 9, "finished")]
    at_the_end = decide(MEDIAN, [*others, curve(0, [0.1] * 9)])
    paused = decide(MEDIAN, [*others, curve(0, [0.1] * 3, "paused")])
    finished = decide(MEDIAN, [*others, curve(0, [0.1] * 3, "finished")])
    assert at_the_end.stop == paused.stop == finished.stop == {}


@pytest.mark.parametrize(
    ("min_epochs", "eta", "max_epochs", "rungs"),
    [(1, 3, 27, [1, 3, 9]), (1, 3, 28, [1, 3, 9, 27]), (2, 2, 10, [2, 4, 8]), (5, 3, 5, []), (1, 2, 1, [])],
)
def test_asha_rungs(min_epochs: int, eta: int, max_epochs: int, rungs: list[int]) -> None:
    assert asha_rungs(min_epochs, eta, max_epochs) == rungs


def test_asha_pauses_the_first_arrivals_at_a_rung_until_enough_trials_compare() -> None:
    first = decide(ASHA, [curve(0, [0.5])])
    assert first.stop.keys() == {"t0"} and "1 of the 3 trials needed" in first.stop["t0"]
    second = decide(ASHA, [curve(0, [0.5], "paused"), curve(1, [0.6])])
    assert second == EarlyStopDecision(stop={"t1": second.stop["t1"]}, promote={})


def test_asha_lets_the_best_of_three_go_on_and_promotes_a_paused_one_that_is_best() -> None:
    best_arrives = decide(ASHA, [curve(0, [0.5], "paused"), curve(1, [0.6], "paused"), curve(2, [0.7])])
    assert best_arrives == EarlyStopDecision({}, {})
    worse_arrives = decide(ASHA, [curve(0, [0.5], "paused"), curve(1, [0.6], "paused"), curve(2, [0.4])])
    assert worse_arrives.stop.keys() == {"t2"} and worse_arrives.promote.keys() == {"t1"}
    assert "top 1 of 3 trials at the 1-epoch rung" in worse_arrives.promote["t1"]
    assert "not among the top 1 of 3" in worse_arrives.stop["t2"]


def test_asha_judges_a_trial_past_a_rung_against_that_rung_until_it_reaches_the_next() -> None:
    # t3 went on at rung 1 (then the best of 3) and is at epoch 2; three better trials have since reached
    # rung 1, so it is no longer in the top 2 of 6 there and pauses, keeping its two epochs.
    curves = [
        curve(0, [0.1], "paused"),
        curve(1, [0.2], "paused"),
        curve(2, [0.3], "paused"),
        curve(3, [0.5, 0.55]),
        curve(4, [0.8, 0.8, 0.8]),  # at rung 3: 1 of 3 needed there
        curve(5, [0.7, 0.7]),
        curve(6, [0.6]),
    ]
    decision = decide(ASHA, curves)
    assert set(decision.stop) == {"t3", "t4", "t6"}
    assert decision.promote == {}


def test_asha_ties_go_to_the_lower_trial_number() -> None:
    decision = decide(ASHA, [curve(2, [0.5]), curve(0, [0.5], "paused"), curve(1, [0.5], "paused")])
    assert decision.stop.keys() == {"t2"} and decision.promote.keys() == {"t0"}


def test_asha_for_minimize_keeps_the_lowest() -> None:
    decision = decide(ASHA, [curve(0, [0.2]), curve(1, [0.1]), curve(2, [0.3])], Goal.MINIMIZE)
    assert decision.stop.keys() == {"t0", "t2"}


def test_asha_respects_min_epochs() -> None:
    late = SweepEarlyStopping(rule=EarlyStoppingRule.ASHA, min_epochs=2, reduction_factor=2)
    curves = [curve(0, [0.9, 0.9], "finished"), curve(1, [0.9, 0.9], "finished"), curve(2, [0.1])]
    assert decide(late, curves) == EarlyStopDecision({}, {})
    assert decide(late, [*curves[:2], curve(2, [0.1, 0.1])]).stop.keys() == {"t2"}


def test_draining_keeps_the_best_trial_of_each_rung_going() -> None:
    curves = [curve(0, [0.5, 0.6, 0.7], "paused"), curve(1, [0.4, 0.5, 0.6], "paused"), curve(2, [0.3])]
    assert decide(ASHA, curves).promote == {}
    drained = decide(ASHA, curves, draining=True)
    assert drained.promote.keys() == {"t0"} and drained.stop.keys() == {"t2"}


def apply(decision: EarlyStopDecision, curves: list[TrialCurve]) -> list[TrialCurve]:
    """What the controller does: suspend the stopped trials, resume the promoted ones."""
    state = {name: "paused" for name in decision.stop} | {name: "running" for name in decision.promote}
    return [TrialCurve(c.name, c.number, c.values, state.get(c.name, c.state)) for c in curves]  # type: ignore[arg-type]


values = st.floats(0, 1, allow_nan=False)
curve_sets = st.lists(
    st.tuples(st.lists(values, min_size=0, max_size=9), st.sampled_from(["running", "paused", "finished"])),
    min_size=0,
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(
    raw=curve_sets,
    rule=st.sampled_from([EarlyStoppingRule.MEDIAN, EarlyStoppingRule.ASHA]),
    goal=st.sampled_from(list(Goal)),
    min_epochs=st.integers(1, 3),
    eta=st.integers(2, 4),
    draining=st.booleans(),
    shuffle=st.randoms(use_true_random=False),
)
def test_decisions_are_pure_stable_and_reach_a_fixed_point(
    raw: list[tuple[list[float], str]],
    rule: EarlyStoppingRule,
    goal: Goal,
    min_epochs: int,
    eta: int,
    draining: bool,
    shuffle: Any,
) -> None:
    settings_ = SweepEarlyStopping(rule=rule, min_epochs=min_epochs, reduction_factor=eta)
    curves = [curve(number, list(vals), state) for number, (vals, state) in enumerate(raw)]

    def run(these: list[TrialCurve]) -> EarlyStopDecision:
        return early_stopping_decisions(settings_, goal, 9, these, draining=draining)

    decision = run(curves)
    shuffled = list(curves)
    shuffle.shuffle(shuffled)
    assert run(shuffled) == decision
    by_name = {c.name: c for c in curves}
    for name in decision.stop:
        assert by_name[name].state == "running" and min_epochs <= len(by_name[name].values) < 9
    for name in decision.promote:
        assert by_name[name].state == "paused" and rule == EarlyStoppingRule.ASHA
    assert run(apply(decision, curves)) == EarlyStopDecision({}, {})


def test_a_trials_own_epochs_come_from_a_parameter_that_sets_them() -> None:
    sweep = make_sweep(
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "algorithm": {"name": "random"},
            "parameters": [
                {"name": "epochs", "path": "trainer.config.epochs", "type": "choice", "values": [3, 27]},
                {"name": "lr", "path": "trainer.config.learningRate", "type": "uniform", "min": 0.001, "max": 0.1},
            ],
            "trialTemplate": {"trainer": {"config": {"epochs": 9}}},
            "earlyStopping": {"rule": "asha"},
            "maxTrials": 4,
        }
    )
    assert trial_epochs(sweep, {"epochs": 27, "lr": 0.01}) == 27
    assert trial_epochs(sweep, {"epochs": 3, "lr": 0.01}) == 3
    assert trial_epochs(sweep, {"lr": 0.01}) == 9  # a row without the value: the template's
