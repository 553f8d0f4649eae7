"""The keep rule on fixed samples: screen, confirm, test, re-measure, give up."""

from __future__ import annotations

import pytest

from overnight.config import JudgeSection
from overnight.judge import Action, Noise, decide, t_cdf, t_quantile
from overnight.records import Goal

RULE = JudgeSection()  # confirm, 95%, up to 5 runs
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


def test_a_clear_loser_costs_one_run() -> None:
    assert decide([1.2], [1.0], Noise(), Goal.MIN, RULE).action is Action.DISCARD
    decision = decide([1.0], [1.0], QUIET, Goal.MIN, RULE)
    assert decision.action is Action.DISCARD and "not better" in decision.reason


def test_without_known_noise_a_promising_candidate_is_confirmed() -> None:
    assert decide([0.9], [1.0], Noise(), Goal.MIN, RULE).action is Action.MEASURE_CANDIDATE
    greedy = JudgeSection(confirm=False)
    assert decide([0.9], [1.0], Noise(), Goal.MIN, greedy).action is Action.KEEP


def test_the_best_is_measured_as_often_as_the_candidate() -> None:
    assert decide([0.9, 0.91], [1.0], Noise(), Goal.MIN, RULE).action is Action.MEASURE_BEST


def test_a_clear_winner_is_kept_with_an_interval() -> None:
    decision = decide([0.95], [1.0, 1.0, 1.01, 0.99, 1.0], QUIET, Goal.MIN, RULE)
    assert decision.action is Action.KEEP
    assert decision.improvement == pytest.approx(0.05)
    assert decision.ci_low is not None and 0 < decision.ci_low < 0.05 < decision.ci_high


def test_an_uncertain_candidate_is_measured_again_then_given_up() -> None:
    noisy = Noise.pooled([[1.0, 1.2, 0.8]] * 5)  # sd 0.2
    assert decide([0.9], [1.0], noisy, Goal.MIN, RULE).action is Action.MEASURE_CANDIDATE
    five = [0.9, 0.95, 0.85, 0.9, 0.92]
    decision = decide(five, [1.0] * 5, noisy, Goal.MIN, RULE)
    assert decision.action is Action.DISCARD and "within 5 runs" in decision.reason


def test_a_candidate_that_stops_looking_better_is_discarded() -> None:
    assert decide([0.9, 1.1], [1.0, 1.0], QUIET, Goal.MIN, RULE).action is Action.DISCARD


def test_thresholds_and_directions() -> None:
    assert decide([1.04], [1.0, 1.0], QUIET, Goal.MAX, RULE).action is Action.KEEP
    assert decide([1.04], [1.0, 1.0], QUIET, Goal.MAX, JudgeSection(min_delta=0.05)).action is Action.DISCARD
    relative = JudgeSection(rel_delta=0.1)  # 10% of the best: 0.1
    assert decide([0.95], [1.0, 1.0], QUIET, Goal.MIN, relative).action is Action.DISCARD
    assert decide([0.8], [1.0, 1.0], QUIET, Goal.MIN, relative).action is Action.KEEP


def test_repeats_come_before_any_decision() -> None:
    assert decide([2.0], [1.0], QUIET, Goal.MIN, JudgeSection(repeats=3)).action is Action.MEASURE_CANDIDATE


def test_a_deterministic_metric_needs_no_statistics() -> None:
    decision = decide([0.9, 0.9], [1.0, 1.0], Noise.pooled([[1.0, 1.0]]), Goal.MIN, RULE)
    assert decision.action is Action.KEEP
