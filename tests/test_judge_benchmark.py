"""benchmarks/judge.py drives the real Measurer and RunState: a change to either must not leave it broken."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_simulator_runs_overnights_rule_at_equal_proposals_and_runs(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import judge as simulator

    try:
        rules = {"overnight": simulator.overnight}
        for budget in (None, 40):
            tally = simulator.simulate("typical", 3, 0, budget, rules)["overnight"]
            assert len(tally.final) == 3 and tally.runs > 0
            if budget is not None:
                assert tally.runs <= 3 * budget
        # a discard is recorded with the notes judging it made, as the worker records them
        bursts = simulator.simulate("bursts", 2, 0, None, rules)["overnight"]
        assert sum(bursts.proposed.values()) == 2 * 16
    finally:
        sys.modules.pop("judge", None)
        sys.modules.pop("judge_v01", None)
