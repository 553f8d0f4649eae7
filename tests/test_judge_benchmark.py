"""benchmarks/judge.py drives the real Measurer and RunState: a change to either must not leave it broken."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_simulator_runs_overnights_rule_at_equal_proposals_and_runs(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import judge as simulator
    import judge_rules

    try:
        rules = {"overnight": judge_rules.overnight}
        for budget in (None, 40):
            tally = simulator.simulate("typical", 3, 0, budget, rules)["overnight"]
            assert len(tally.final) == 3 and tally.runs > 0
            if budget is not None:
                assert tally.runs <= 3 * budget
        # a discard is recorded with the notes judging it made, as the worker records them
        bursts = simulator.simulate("bursts", 2, 0, None, rules)["overnight"]
        assert sum(bursts.proposed.values()) == 2 * 16
    finally:
        for name in ("judge", "judge_rules", "judge_v01"):
            sys.modules.pop(name, None)


def test_the_ceiling_holds_the_no_op_rate_and_grows_with_what_is_known_of_the_best(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import judge_bound

    try:
        three = judge_bound.ceiling("every 4th", 150, 0.02, 3, 20_000, 0)
        paid = judge_bound.ceiling("every 4th", 150, 0.02, 3, 20_000, 0, paid=True)
        known = judge_bound.ceiling("every 4th", 150, 0.02, 1e9, 20_000, 0)
        assert three["no-ops kept"] <= 0.02 and known["no-ops kept"] <= 0.02
        assert 0 < paid["gain"] < three["gain"] < known["gain"]  # runs of the best cost what they cost
        assert three["2σ kept"] < known["2σ kept"]
        looser = judge_bound.ceiling("every 4th", 150, 0.10, 3, 20_000, 0)
        assert looser["gain"] > three["gain"]  # more no-ops allowed buys more wins
    finally:
        sys.modules.pop("judge_bound", None)


def test_the_winners_curse_correction_shrinks_a_gain_near_its_bar_and_leaves_a_clear_one(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import judge_variants

    try:
        near = judge_variants._conditional_gain(2.1, 1.0, 2.0, 0.0)
        clear = judge_variants._conditional_gain(6.0, 1.0, 2.0, 0.0)
        assert 0.0 <= near < 1.5
        assert 5.7 < clear <= 6.0
    finally:
        for name in ("judge_variants", "judge", "judge_rules", "judge_v01"):
            sys.modules.pop(name, None)
