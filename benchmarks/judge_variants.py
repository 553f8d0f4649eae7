"""Variants of overnight's keep rule tried against the lucky best (issue 23, part 2), in judge.py's simulator.

Each variant patches ``overnight.judge.rule`` or ``Measurer`` in this process only, then runs
``simulate`` of ``benchmarks/judge.py`` for overnight's rule. None was adopted; README.md's
judge section ("The lucky best, tried again") has their numbers. For example:

    python benchmarks/judge_variants.py --runs 200 --cases "every 4th,typical" --confidence 0.90 --follow-up-alone-z 0.5
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
from collections.abc import Sequence
from typing import Any

import judge as simulator
import judge_rules
from overnight.judge import measure, rule
from overnight.judge.noise import Noise, mean
from overnight.judge.rule import Action, Decision

ARGS = argparse.Namespace(best_runs=0, drop_selected=False, follow_up_z=None, follow_up_alone_z=None,
                          best_with_follow_up=0, retake_disturbed_follow_up=False, debias=False)  # fmt: skip
SELECTED: dict[int, int] = {}  # a kept experiment → the runs its keep was made on (--drop-selected)
DEBIASED: dict[int, tuple[int, float]] = {}  # a kept experiment → (its selected runs, the shift each gets) (--debias)
FOLLOWED: dict[str, int] = {"before": 0}  # the runs of the kept candidate before its follow-up
_decide, _undone, _kept, _until = rule.decide, rule.undone, measure.Measurer._kept, measure.Measurer.until_judged


def decide(candidate: Sequence[float], best: Sequence[float], others: Noise, goal: Any, judge: Any) -> Decision:
    """--best-runs K: a candidate past the screen is confirmed only once the best has K runs."""
    decision = _decide(candidate, best, others, goal, judge)
    if len(candidate) == 1 and decision.action is Action.MEASURE_CANDIDATE and len(best) < ARGS.best_runs:
        return Decision(Action.MEASURE_BEST, "the best has few runs", decision.improvement, z=decision.z)
    return decision


def _z(
    values: Sequence[float], best: Sequence[float], parent: Sequence[float], others: Noise, goal: Any, judge: Any
) -> float | None:
    """``values`` (some of ``best``'s runs) against ``parent``, with the noise of every run of both."""
    noise = (others + Noise.pooled([best, parent])).at(mean(parent))
    if not noise.sd:
        return None
    gain = goal.improvement(mean(values), mean(parent)) - rule.threshold(judge, mean(parent))
    return gain / (noise.sd * math.sqrt(1 / len(values) + 1 / len(parent)))


def undone(best: Sequence[float], parent: Sequence[float], others: Noise, goal: Any, judge: Any) -> str:
    """After the follow-up: --follow-up-alone-z (the follow-up runs alone) and --follow-up-z (every run)."""
    reason = _undone(best, parent, others, goal, judge)
    if reason:
        return reason
    new = len(best) - FOLLOWED["before"]
    if ARGS.follow_up_alone_z is not None and new > 0:
        z = _z(best[-new:], best, parent, others, goal, judge)
        if z is not None and z < ARGS.follow_up_alone_z:
            return f"its follow-up alone is {z:.2f} standard errors past the threshold"
    if ARGS.follow_up_z is not None:
        z = _z(best, best, parent, others, goal, judge)
        if z is not None and z < ARGS.follow_up_z:
            return f"with its follow-up it is {z:.2f} standard errors past the threshold"
    return ""


def _conditional_gain(gain: float, se: float, cut: float, low: float) -> float:
    """The gain's maximum likelihood estimate given that its estimate passed ``cut`` (a normal truncated at
    the keep's bar: the winner's curse taken out), searched on a grid from ``low`` up to ``gain``."""

    def log_likelihood(mu: float) -> float:
        passed = 0.5 * math.erfc(-(mu - cut) / se / math.sqrt(2))  # P(the estimate passes | true gain mu)
        return -((gain - mu) ** 2) / (2 * se * se) - math.log(max(passed, 1e-300))

    low = min(low, gain)
    grid = [low + (gain - low) * i / 400 for i in range(401)]
    return max(grid, key=log_likelihood)


def _debias(self: Any, exp: Any, best: Any) -> None:
    """--debias: the kept change's selected runs are shifted so their mean is the gain's conditional estimate."""
    values, parent = self.state.values(exp.id), self.state.values(best.id)
    others = self.state.noise(exclude=(exp.id, best.id))
    noise = (others + Noise.pooled([values, parent])).at(mean(parent))
    if not noise.sd:
        return
    judge, goal = self.run.task.config.judge, self.goal
    gain = goal.improvement(mean(values), mean(parent))
    se = noise.sd * math.sqrt(1 / len(values) + 1 / len(parent))
    cut = rule.threshold(judge, mean(parent)) + rule.t_quantile(1 - rule.look_level(judge), noise.df) * se
    estimate = _conditional_gain(gain, se, cut, 0.0)
    DEBIASED[exp.id] = (len(values), (gain - estimate) * goal.improvement(0.0, 1.0))


def kept(self: Any, exp: Any, best: Any, decision: Decision) -> Decision:
    SELECTED[exp.id] = len(self.state.values(exp.id)) if ARGS.drop_selected else 0
    if ARGS.debias:
        _debias(self, exp, best)
    for _ in range(ARGS.best_with_follow_up):  # --best-with-follow-up N: the best measured N more times
        if self._best(exp, best):
            break
        best = self.state.get(best.id)
    FOLLOWED["before"] = before = len(self.state.values(exp.id))
    if ARGS.retake_disturbed_follow_up:  # a follow-up run the machine disturbed is set aside and taken again, once
        once = self.once

        def once_checked(e: Any, kind: str, **kw: Any) -> Any:
            measured = once(e, kind, **kw)
            if kind == "follow-up":
                self.set_aside_disturbed(e)
                if len(self.state.values(e.id)) == before:
                    measured = once(e, kind, **kw)
                    self.set_aside_disturbed(e)
            return measured

        self.once = once_checked
    rule.undone = undone
    try:
        return _kept(self, exp, best, decision)  # type: ignore[no-any-return]
    finally:
        rule.undone = _undone
        if ARGS.retake_disturbed_follow_up:
            del self.once


def until_judged(self: Any, exp: Any, best: Any) -> Decision:
    """--drop-selected: a kept best is judged on its runs after its keep only (the follow-up and later).
    --debias: on its selected runs shifted by the winner's curse (see _debias)."""
    if not (ARGS.drop_selected or ARGS.debias):
        return _until(self, exp, best)  # type: ignore[no-any-return]
    state, values = self.state, type(self.state).values

    def unselected(experiment_id: int, *more: Any) -> list[float]:
        found = values(state, experiment_id, *more)
        if experiment_id == exp.id:
            return found  # type: ignore[no-any-return]
        if experiment_id in DEBIASED:
            selected, shift = DEBIASED[experiment_id]
            found = [v + shift if i < selected else v for i, v in enumerate(found)]
        skip = SELECTED.get(experiment_id, 0)
        return found[skip:] if len(found) > skip else found  # type: ignore[no-any-return]

    state.values = unselected
    try:
        return _until(self, exp, best)  # type: ignore[no-any-return]
    finally:
        del state.values


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", default="every 4th,typical,generous")
    parser.add_argument("--compare", choices=("both", "proposals", "runs"), default="both")
    parser.add_argument("--confidence", type=float, help="[judge] confidence")
    parser.add_argument("--follow-up-runs", type=int, help="rule.FOLLOW_UP_RUNS")
    parser.add_argument("--best-runs", type=int, default=0)
    parser.add_argument("--drop-selected", action="store_true")
    parser.add_argument("--follow-up-z", type=float)
    parser.add_argument("--follow-up-alone-z", type=float)
    parser.add_argument("--best-with-follow-up", type=int, default=0)
    parser.add_argument("--retake-disturbed-follow-up", action="store_true")
    parser.add_argument(
        "--debias", action="store_true", help="a kept best's selected runs corrected for the winner's curse"
    )
    parser.add_argument("--screen", type=float, help="rule.SCREEN")
    parser.parse_args(namespace=ARGS)
    if ARGS.confidence is not None:
        judge_rules.JUDGE["confidence"] = ARGS.confidence
    if ARGS.follow_up_runs is not None:
        rule.FOLLOW_UP_RUNS = ARGS.follow_up_runs
    if ARGS.screen is not None:
        rule.SCREEN = ARGS.screen
    rule.decide = decide
    measure.Measurer._kept = kept  # type: ignore[method-assign]
    measure.Measurer.until_judged = until_judged  # type: ignore[method-assign]
    for case in ARGS.cases.split(","):
        for budget in ([None] if ARGS.compare != "runs" else []) + ([0] if ARGS.compare != "proposals" else []):
            spend = None if budget is None else simulator.CASES[case][2]
            t = simulator.simulate(case, ARGS.runs, ARGS.seed, spend, {"overnight": judge_rules.overnight})["overnight"]
            regressions = [k for k in judge_rules.EFFECT if k.startswith("regression") and t.proposed[k]]
            wrong = sum(t.kept[k] for k in regressions) / max(1, sum(t.proposed[k] for k in regressions))
            wins = "2σ" if t.proposed["2σ"] else "25%"
            stalled = sum(1 for f, p in zip(t.final, t.possible, strict=True) if p > 0 and f < p / 3)
            print(
                f"{case}, at equal {'proposals' if budget is None else 'runs'}: final true gain "
                f"{statistics.mean(t.final):.2f}, no-ops kept {t.kept['noop'] / max(1, t.proposed['noop']):.1%}, "
                f"regressions kept {wrong:.2%}, {wins} kept {t.kept[wins] / max(1, t.proposed[wins]):.1%}, "
                f"runs per proposal {t.runs / sum(t.proposed.values()):.2f}, stalled {stalled} of {len(t.final)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
