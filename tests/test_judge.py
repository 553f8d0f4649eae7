"""The keep rule on fixed samples: screen, confirm, test at a corrected level, follow up, recheck, undo."""

from __future__ import annotations

import pytest

from overnight.config import JudgeSection
from overnight.judge.noise import Noise, compare
from overnight.judge.rule import (
    UNSETTLED,
    Action,
    decide,
    disturbed_runs,
    look_level,
    recheck,
    suspicious,
    undone,
)
from overnight.judge.tdist import t_cdf, t_quantile
from overnight.records import Goal

RULE = JudgeSection()  # confirm, 95%, the default max_repeats
LONG = JudgeSection(max_repeats=9)  # up to 9 runs: the futility bound and the later looks in play
QUIET = Noise.pooled([[1.0, 1.01, 0.99, 1.0]] * 10)  # sd ≈ 0.008 from 30 degrees of freedom


def test_student_t() -> None:
    assert t_quantile(0.975, 10) == pytest.approx(2.228, abs=1e-3)
    assert t_quantile(0.95, 1) == pytest.approx(6.314, abs=1e-3)
    assert t_quantile(0.95, 1000) == pytest.approx(1.646, abs=1e-3)
    assert t_cdf(0.0, 7) == pytest.approx(0.5)


def test_pooled_noise() -> None:
    noise = Noise.pooled([[1.0, 3.0], [5.0], [2.0, 2.0, 5.0]])
    assert noise.df == 3 and noise.ss == pytest.approx(2.0 + 6.0)
    assert Noise().sd is None
    assert (noise + Noise(1.0, 1)).df == 4


def test_a_clear_loser_costs_one_run() -> None:
    assert decide([1.2], [1.0], Noise(), Goal.MIN, RULE).action is Action.DISCARD
    decision = decide([1.0], [1.0, 1.0], QUIET, Goal.MIN, RULE)
    assert decision.action is Action.DISCARD and "first run" in decision.reason and decision.z == pytest.approx(0)


def test_one_run_never_keeps_a_change() -> None:
    assert decide([0.5], [1.0, 1.0, 1.0], QUIET, Goal.MIN, RULE).action is Action.MEASURE_CANDIDATE
    assert decide([0.9], [1.0], Noise(), Goal.MIN, RULE).action is Action.MEASURE_CANDIDATE
    greedy = JudgeSection(confirm=False)  # asked for: a single run may keep
    assert decide([0.9], [1.0], Noise(), Goal.MIN, greedy).action is Action.KEEP


def test_the_best_is_measured_as_often_as_the_candidate() -> None:
    assert decide([0.9, 0.91], [1.0], Noise(), Goal.MIN, RULE).action is Action.MEASURE_BEST
    assert decide([0.9], [1.0], QUIET, Goal.MIN, RULE).action is Action.MEASURE_BEST  # before its second look
    assert decide([0.95, 0.96, 0.95], [1.0, 1.0], QUIET, Goal.MIN, RULE).action is Action.MEASURE_BEST


def test_a_clear_winner_is_kept_on_two_runs_with_an_interval() -> None:
    decision = decide([0.95, 0.95], [1.0, 1.0, 1.01, 0.99, 1.0], QUIET, Goal.MIN, RULE)
    assert decision.action is Action.KEEP
    assert decision.improvement == pytest.approx(0.05)
    assert decision.ci_low is not None and decision.ci_high is not None
    assert 0 < decision.ci_low < 0.05 < decision.ci_high


def test_each_look_is_tested_at_a_corrected_level() -> None:
    looks = RULE.max_repeats - 1  # the looks that can keep: every run of the candidate but its first
    assert look_level(RULE) == pytest.approx(0.05 / looks)  # Bonferroni over them
    assert look_level(LONG) == pytest.approx(0.05 / 8)
    assert look_level(JudgeSection(confirm=False, max_repeats=5)) == pytest.approx(0.01)
    # z ≈ 2.0: would pass a one-look 5% test, not the test at 5% / 8
    sd = QUIET.sd
    assert sd is not None
    gain = 2.0 * sd * (1 / 2 + 1 / 8) ** 0.5
    candidate, best = [1.0 - gain, 1.0 - gain], [1.0] * 8
    assert decide(candidate, best, QUIET, Goal.MIN, LONG).action is Action.MEASURE_CANDIDATE
    assert decide(candidate, best, QUIET, Goal.MIN, JudgeSection(max_repeats=2)).action is Action.KEEP


def test_an_uncertain_candidate_is_measured_again_then_given_up() -> None:
    noisy = Noise.pooled([[1.0, 1.2, 0.8]] * 5)  # sd 0.2
    assert decide([0.9, 0.9], [1.0, 1.0], noisy, Goal.MIN, LONG).action is Action.MEASURE_CANDIDATE
    nine = [0.9, 0.95, 0.85, 0.9, 0.92, 0.9, 0.93, 0.88, 0.9]
    decision = decide(nine, [1.0] * 9, Noise.pooled([[1.0, 1.4, 0.6]] * 5), Goal.MIN, LONG)
    assert decision.action is Action.DISCARD and "within 9 runs" in decision.reason
    # by default, no more runs than max_repeats either
    most = [0.9] * RULE.max_repeats
    decision = decide(most, [1.0] * RULE.max_repeats, noisy, Goal.MIN, RULE)
    assert decision.action is Action.DISCARD and f"within {RULE.max_repeats} runs" in decision.reason


def test_a_candidate_that_stops_looking_better_is_discarded() -> None:
    decision = decide([0.998, 1.002], [1.0, 1.0], QUIET, Goal.MIN, LONG)  # first looked better, then not
    assert decision.action is Action.DISCARD and "within the noise" in decision.reason


def test_thresholds_and_directions() -> None:
    assert decide([1.04, 1.04], [1.0, 1.0], QUIET, Goal.MAX, RULE).action is Action.KEEP
    assert decide([1.04, 1.04], [1.0, 1.0], QUIET, Goal.MAX, JudgeSection(min_delta=0.05)).action is Action.DISCARD
    relative = JudgeSection(rel_delta=0.1)  # 10% of the best: 0.1
    assert decide([0.95], [1.0, 1.0], QUIET, Goal.MIN, relative).action is Action.DISCARD
    assert decide([0.8, 0.8], [1.0, 1.0], QUIET, Goal.MIN, relative).action is Action.KEEP


def test_repeats_come_before_any_decision() -> None:
    assert decide([2.0], [1.0], QUIET, Goal.MIN, JudgeSection(repeats=3)).action is Action.MEASURE_CANDIDATE


def test_a_metric_declared_exact_needs_no_statistics() -> None:
    exact, declared = Noise.pooled([[1.0, 1.0]]), JudgeSection(exact=True)
    assert decide([0.9], [1.0, 1.0], exact, Goal.MIN, declared).action is Action.MEASURE_CANDIDATE  # still confirmed
    decision = decide([0.9, 0.9], [1.0, 1.0], exact, Goal.MIN, declared)
    assert decision.action is Action.KEEP and decision.ci_low == decision.ci_high == pytest.approx(0.1)
    assert "an exact metric" in decision.reason
    assert compare([0.9, 0.9], [1.0, 1.0], exact, Goal.MIN, declared).low == pytest.approx(0.1)


def test_runs_that_repeat_exactly_are_not_taken_as_exact_unless_declared() -> None:
    """A script that fixes its own seed gives the same value on every run: that is no evidence of an exact
    metric, so no zero-width interval, and the reason says why."""
    repeated = Noise.pooled([[1.0, 1.0], [0.95, 0.95, 0.95]])
    decision = decide([0.9, 0.9], [1.0, 1.0], repeated, Goal.MIN, RULE)
    assert decision.action is Action.KEEP and decision.ci_low is None and decision.ci_high is None
    assert "every run repeated its value exactly" in decision.reason and "seed" in decision.reason
    gain = compare([0.9, 0.9], [1.0, 1.0], repeated, Goal.MIN, RULE)
    assert gain.low is None and gain.repeated and "seed does not reach the script" in gain.text()
    small = decide([0.99], [1.0, 1.0], repeated, Goal.MIN, JudgeSection(min_delta=0.02))
    assert small.action is Action.DISCARD and "threshold 0.02" in small.reason


def test_one_estimate_of_a_gain() -> None:
    gain = compare([0.9, 0.92], [1.0, 1.0, 0.98], QUIET, Goal.MIN, RULE)
    assert gain.gain == pytest.approx(1.0 - 0.91 - 0.02 / 3)
    assert gain.low is not None and gain.low < gain.gain < gain.high  # type: ignore[operator]
    assert gain.text().startswith(f"gain {gain.gain:.6g} [") and "mean of 2 runs vs 3" in gain.text()
    assert "noise unknown" in compare([0.9], [1.0], Noise(), Goal.MIN, RULE).text()


def test_a_burst_is_told_from_a_bad_change() -> None:
    quiet_best = [100.0, 101.0, 99.0, 100.0]
    noise = Noise.pooled([[100.0, 102.0, 98.0]] * 5)  # sd 2 (2%)
    assert suspicious(160.0, quiet_best, noise, Goal.MIN)  # 60% slower on one run: checked before a discard
    assert not suspicious(104.0, quiet_best, noise, Goal.MIN)  # a plain worse run
    assert disturbed_runs([100.0, 155.0, 101.0, 99.0], noise, Goal.MIN) == [1]  # a burst: 55% slower
    assert disturbed_runs([100.0, 104.0, 101.0], noise, Goal.MIN) == []  # within the noise
    assert disturbed_runs([100.0, 45.0], noise, Goal.MAX) == [1]  # for a maximized metric, lower is worse
    assert disturbed_runs([100.0, 155.0], Noise(), Goal.MIN) == []  # the noise unknown: nothing to judge by


def test_one_disturbed_run_does_not_inflate_the_noise() -> None:
    quiet = [[100.0, 102.0, 98.0]] * 10
    clean = Noise.pooled(quiet)
    with_burst = Noise.pooled([*quiet, [100.0, 160.0]])
    assert clean.sd is not None and with_burst.sd is not None
    assert with_burst.sd < 2.5 * clean.sd  # clipped at CLIP robust sd: unclipped, the one burst makes it 4.7 times


def test_a_best_that_screens_everything_out_is_measured_again() -> None:
    assert recheck([-1.5, -1.2, -0.9])  # three candidates in a row far below it: it looks lucky
    assert recheck([-0.8, -0.5, -0.7])  # no-ops averaging more than 0.6 standard errors below it, too
    assert not recheck([-1.5, 0.9, -0.9])
    assert not recheck([-2.0, -2.0])
    assert recheck([None, None])  # the noise unknown, and two screened out in a row


def test_a_best_no_longer_better_than_the_one_it_replaced_is_undone() -> None:
    parent = [1.0, 1.01, 0.99]
    assert undone([1.0, 1.0, 1.01], parent, QUIET, Goal.MIN, RULE)
    assert not undone([0.95, 0.95, 0.96], parent, QUIET, Goal.MIN, RULE)
    assert not undone([1.0], parent, QUIET, Goal.MIN, RULE)  # one run is too few to say


def test_noise_that_scales_with_the_level_is_judged_at_the_candidates_level() -> None:
    # A benchmark that got 2.5 times faster varies 2.5 times less in milliseconds (12% of its time).
    shape = [-1.5, -0.5, 0.0, 0.5, 1.5, -1.0, 1.0, 0.0]
    slow = [[1500.0 * (1 + 0.12 * d) for d in shape]] * 3
    fast = [[600.0 * (1 + 0.12 * d) for d in shape]] * 3
    noise = Noise.pooled([*slow, *fast])
    assert noise.relative
    at_fast = noise.at(600.0).sd
    assert at_fast is not None and noise.sd is not None
    assert abs(at_fast - Noise.pooled(fast).sd) < 1e-6 < noise.sd - at_fast  # type: ignore[operator]
    # so a real 25% speed-up of the fast code is kept, where the slow code's noise hid it
    candidate = [450.0 * (1 + 0.12 * d) for d in shape[:4]]
    best = [600.0 * (1 + 0.12 * d) for d in shape[4:]]
    assert decide(candidate, best, noise, Goal.MIN, LONG).action is Action.KEEP
    absolute = Noise(noise.ss, noise.df, noise.robust, positive=False)  # the same runs pooled in milliseconds
    assert decide(candidate, best, absolute, Goal.MIN, LONG).action is not Action.KEEP


def test_noise_of_one_size_at_every_level_stays_absolute() -> None:
    shape = [-1.5, -0.5, 0.0, 0.5, 1.5, -1.0, 1.0, 0.0]
    noise = Noise.pooled([[level + d for d in shape] for level in (100.0, 90.0, 80.0)])
    assert not noise.relative
    assert noise.at(80.0) == noise
    assert not Noise.pooled([[-1.0 + d for d in shape], [2.0 + d for d in shape]]).relative  # a mean ≤ 0
    same = Noise.pooled([[100.0 + d for d in shape]] * 3)  # one level: the two models are one
    assert not same.relative and same.at(100.0).sd == same.sd


def test_two_runs_that_happen_to_agree_do_not_make_every_later_run_disturbed() -> None:
    """A noise resting on one degree of freedom (the baseline's two runs, nearly equal) calls nothing disturbed:
    on a seeded task it set aside a real improvement's valid runs as 'far worse than its other runs'."""
    lucky = Noise.pooled([[0.230838, 0.23109]])
    assert disturbed_runs([0.1716, 0.188, 0.185, 0.1759], lucky, Goal.MIN) == []
    assert not suspicious(0.2329, [0.230838, 0.23109], Noise(), Goal.MIN)
    settled = Noise.pooled([[0.23, 0.231, 0.229]] * 4)  # 8 degrees of freedom
    assert disturbed_runs([0.1716, 0.3, 0.1759], settled, Goal.MIN) == [1]


def test_a_clear_gain_is_not_given_up_while_the_noise_rests_on_a_few_runs() -> None:
    # early in a run: the baseline's two runs, one of them disturbed, are all the noise there is (2 degrees of
    # freedom, t₀.₉₅ = 2.9), and a gain ten times the threshold is not shown within max_repeats
    rule = JudgeSection(min_delta=1500.0)
    candidate, best = [9600.0, 9624.0], [20000.0, 32061.0]
    decision = decide(candidate, best, Noise(), Goal.MIN, rule)
    assert decision.action is Action.MEASURE_CANDIDATE and "2 degrees of freedom" in decision.reason
    # the best is measured as often, then the test is made on the noise of both
    assert decide([*candidate, 9610.0], best, Noise(), Goal.MIN, rule).action is Action.MEASURE_BEST
    assert decide([*candidate, 9610.0], [*best, 21000.0], Noise(), Goal.MIN, rule).action is Action.KEEP
    # bounded: the extra runs end, and a gain the noise explains is still discarded at max_repeats
    longest = [9600.0] * (rule.max_repeats + UNSETTLED)
    decision = decide(longest, [20000.0, 32061.0, 5000.0, 45000.0], Noise(), Goal.MIN, rule)
    assert decision.action is Action.DISCARD and f"within {len(longest)} runs" in decision.reason
    assert decide([1000.0, 1200.0], [2000.0, 1000.0], Noise(), Goal.MIN, rule).action is Action.DISCARD
    # once the noise is known, max_repeats is the end as before
    known = Noise.pooled([[15000.0, 40000.0, 26000.0]] * 3)
    decision = decide(candidate, best, known, Goal.MIN, rule)
    assert decision.action is Action.DISCARD and "within 2 runs" in decision.reason
