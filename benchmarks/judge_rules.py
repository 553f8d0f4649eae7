"""The keep rules benchmarks/judge.py compares, and what each is handed: a Metered measurement and a Tally.

A rule is ``rule(kinds, measure, tally, base) -> float``: it judges the proposals ``kinds`` (names
of EFFECT, or "25%" in `bursts`) in turn, measuring through ``measure`` (which raises Spent once a
budget of runs is used up), counts what it keeps in ``tally``, and returns the true value of the
best it ends on. The rules themselves are described in judge.py's docstring; the cases, the noise
and the tables are there too. This module imports nothing of judge.py, so both it and the other
benchmarks (judge_variants.py, pairing.py) can import it.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import judge_v01
from overnight.bookkeeping import Rebase
from overnight.config import parse_config
from overnight.executors import Measurement
from overnight.git import Branch
from overnight.judge.measure import Measurer
from overnight.judge.rule import Action
from overnight.judge.tdist import t_quantile
from overnight.records import Experiment, Measured, Status, now_iso
from overnight.run.ledger import Ledger
from overnight.run.state import BestMoved, RunState

# what each kind of proposal does to the true value (goal = min, σ = 1); "25%" (`bursts`) is a share of it
EFFECT = {"noop": 0.0, "1σ": -1.0, "2σ": -2.0, "4σ": -4.0, "regression 1σ": 1.0, "regression 2σ": 2.0}


class Spent(Exception):
    """The rule's budget of runs is spent."""


class Metered:
    """A measurement that counts its runs and, given a budget, refuses the run after the last one it pays for."""

    def __init__(self, measure: Callable[[float], float], budget: int | None = None) -> None:
        self.measure, self.budget, self.runs = measure, budget, 0

    def __call__(self, true: float) -> float:
        if self.budget is not None and self.runs >= self.budget:
            raise Spent
        self.runs += 1
        return self.measure(true)

    @property
    def contention(self) -> float | None:  # what a bursty machine shows of itself
        return getattr(self.measure, "contention", None)


@dataclass
class Tally:
    proposed: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    runs: int = 0
    final: list[float] = field(default_factory=list)  # true improvement of the last best over the start
    possible: list[float] = field(default_factory=list)  # the best improvement the proposals allowed


Rule = Callable[[Iterable[str], Metered, Tally, float], float]


def effect(kind: str, base: float) -> float:
    """How much a change of ``kind`` moves the true value ``base`` of the code it is made to (negative: better)."""
    return -0.25 * base if kind == "25%" else EFFECT[kind]


def _climb(kinds: Iterable[str], measure: Metered, base: float) -> tuple[float, list[str]]:
    """Keep whatever beats the best's one run, until the proposals or the runs run out: (the true value
    reached, the kinds kept in order)."""
    best_true, keeps = base, []
    try:
        best_seen = measure(base)
        for kind in kinds:
            true = best_true + effect(kind, best_true)
            seen = measure(true)
            if seen < best_seen:
                best_true, best_seen = true, seen
                keeps.append(kind)
    except Spent:
        pass
    return best_true, keeps


def greedy(kinds: Iterable[str], measure: Metered, tally: Tally, base: float) -> float:
    best_true, keeps = _climb(kinds, measure, base)
    for kind in keeps:
        tally.kept[kind] += 1
    return best_true


def labloop(kinds: Iterable[str], measure: Metered, tally: Tally, base: float) -> float:
    min_delta = 1.0 if base == 0 else 0.015 * base  # σ, as `labloop noise` prints it
    best_true = base
    try:
        best_seen = measure(base)
        for kind in kinds:
            true = best_true + effect(kind, best_true)
            first = measure(true)
            if not first < best_seen - min_delta:
                continue
            second = measure(true)
            if second < best_seen - min_delta:
                # labloop 1.0.5 (loop.py, `pick = max if goal is MINIMIZE else min`): the best
                # advances to the weaker of the two runs, not the first.
                best_true, best_seen = true, max(first, second)
                tally.kept[kind] += 1
    except Spent:
        pass
    return best_true


def overnight_v01(kinds: Iterable[str], measure: Metered, tally: Tally, base: float) -> float:
    """overnight 0.1's judge, driven as its measuring module drove it (two new-best runs after a keep)."""
    rule = judge_v01.JudgeSection()
    done: list[list[float]] = []
    best_true = base
    try:
        best = [measure(base)]
        for kind in kinds:
            true = best_true + effect(kind, best_true)
            candidate = [measure(true)]
            while True:
                decision = judge_v01.decide(candidate, best, judge_v01.Noise.pooled(done), rule)
                if decision is judge_v01.Action.MEASURE_CANDIDATE:
                    candidate.append(measure(true))
                elif decision is judge_v01.Action.MEASURE_BEST:
                    best.append(measure(best_true))
                else:
                    break
            if decision is judge_v01.Action.KEEP:
                done.append(best)
                follow_up = [measure(true) for _ in range(judge_v01.NEW_BEST_RUNS)]
                best_true, best = true, candidate + follow_up
                tally.kept[kind] += 1
            else:
                done.append(candidate)
    except Spent:
        pass
    return best_true


class _Branch(Branch):
    """The run branch, without git: the simulation's commits are names."""

    def move(self, new: str, old: str | None) -> None:
        pass


class _Worktree:
    def checkout(self, commit: str) -> None:
        pass

    def ran(self) -> None:
        pass


class _SimulatedMeasurer(Measurer):
    """overnight's Measurer, every rule of it, with the measurement itself simulated."""

    def __init__(self, state: RunState, config: Any, truth: dict[str, float], measure: Metered):
        run = SimpleNamespace(state=state, task=SimpleNamespace(config=config))
        self.run, self.state, self.truth, self.simulate = run, state, truth, measure  # type: ignore[assignment]
        self.stop, self.worktree = threading.Event(), _Worktree()  # type: ignore[assignment]
        self.needs_setup, self._measured, self._expected, self._notes = False, None, {}, {}
        self.goal = config.metric.goal_enum

    def _once(self, exp: Experiment, kind: str, *, log_id: int | None = None, written: Any = None):  # type: ignore[override]
        seed = self.state.next_seed(exp.id, exp.round)
        value = self.simulate(self.truth[exp.commit])
        contention = getattr(self.simulate, "contention", None)  # what the bursty machine shows of itself
        self.state.measure(Measured(exp.id, seed, value, kind, at=now_iso(), round=exp.round, contention=contention))
        return Measurement(None, value=value), seed

    def holdout(self, exp: Experiment) -> float | None:
        return None


JUDGE: dict[str, Any] = {"noise_runs": 0}  # [judge] for the overnight rule (--noise-runs, --judge)


def overnight(kinds: Iterable[str], measure: Metered, tally: Tally, base: float) -> float:
    config = parse_config({"task": {"run": "x", "editable": ["x"]}, "metric": {"name": "m"}, "judge": JUDGE})
    with tempfile.TemporaryDirectory() as folder:
        state = RunState(Ledger(Path(folder) / "ledger.db", create=True), _Branch(Path(folder), "overnight/sim"))
        truth = {"c0": base}
        measurer = _SimulatedMeasurer(state, config, truth, measure)
        baseline = state.begin(lambda i: Experiment(id=i, status=Status.RUNNING, parent="c0"))
        baseline = state.update(replace(baseline, commit="c0"))
        try:
            for kind in ["baseline"] + ["noise"] * (max(1, config.judge.noise_runs) - 1):
                measurer.once(baseline, kind)
        finally:  # a budget spent on the baseline's runs leaves it the best
            state.finish(replace(state.get(baseline.id), status=Status.BASELINE))
        with contextlib.suppress(Spent):  # the proposal being measured when the budget runs out is not kept
            _propose(kinds, state, measurer, truth)
        tally.kept.update(e.hypothesis for e in state.experiments() if e.status is Status.KEEP)  # undone ones are not
        final = state.best
        assert final is not None
        return truth[final.commit]


def _propose(kinds: Iterable[str], state: RunState, measurer: _SimulatedMeasurer, truth: dict[str, float]) -> None:
    """Judge each proposal in turn, as a worker does, with the real Measurer."""
    for kind in kinds:
        best = state.best
        assert best is not None
        exp = state.begin(lambda i, parent=best.commit: Experiment(id=i, status=Status.RUNNING, parent=parent))
        exp = state.update(replace(exp, commit=f"c{exp.id}", hypothesis=kind))
        truth[exp.commit] = truth[best.commit] + effect(kind, truth[best.commit])
        measurer.once(exp, "candidate")
        while True:
            decision = measurer.until_judged(state.get(exp.id), best)
            if decision.action is not Action.KEEP:
                done = state.get(exp.id)  # its notes merged into its bookkeeping, as the worker records them
                noted = done.bookkeeping.merge(measurer.notes_for(exp.id))
                state.finish(replace(done, status=Status.DISCARD, bookkeeping=noted))
                break
            try:
                state.keep(replace(state.get(exp.id), status=Status.KEEP))
                break
            except BestMoved as moved:  # its best was undone meanwhile: the change, rebased, is measured there
                best = moved.best
                exp = state.get(exp.id)
                moved_on = replace(exp.bookkeeping, rebased=(*exp.bookkeeping.rebased, Rebase(exp.commit, best.id)))
                exp = state.rebase(replace(exp, parent=best.commit, commit=f"{exp.commit}r", bookkeeping=moved_on))
                truth[exp.commit] = truth[best.commit] + effect(kind, truth[best.commit])
                measurer.once(exp, "candidate")


NIGHT_SHARE = 0.5  # greedy + prune: the share of the runs spent at night; the rest verifies in the morning
MORNING_RUNS = 5  # ... with at most this many runs per arm (`overnight verify --ablate --runs 5`)


def greedy_pruned(kinds: Iterable[str], measure: Metered, tally: Tally, base: float) -> float:
    """Explore greedily at night, prune in the morning: `overnight verify --ablate` then `finalize
    --only-significant`. The night keeps what beats the best's one run; the morning measures the best and
    the best without each keep, R runs each (paired: the same noise-free truth, independent noise), and
    promotes only the keeps whose contribution's 95% interval lies above zero. At equal runs the night
    spends NIGHT_SHARE of the budget and the morning what is left (R from 2 to MORNING_RUNS; fewer than
    two runs an arm certify nothing)."""
    night = Metered(measure.measure, None if measure.budget is None else int(measure.budget * NIGHT_SHARE))
    best_true, keeps = _climb(kinds, night, base)
    measure.runs += night.runs
    arms = len(keeps) + 1  # the best, and the best without each keep
    left = MORNING_RUNS * arms if measure.budget is None else measure.budget - measure.runs
    runs = min(MORNING_RUNS, left // max(1, arms))
    promoted, true = [], base
    if runs >= 2:
        full = [measure(best_true) for _ in range(runs)]
        truth = base
        for kind in keeps:  # the chain's true values, to take each keep out of the best
            truth += effect(kind, truth)
        for index, kind in enumerate(keeps):
            without = best_true - effect(kind, best_true) if kind != "25%" else best_true / 0.75
            diffs = [measure(without) - f for f in full]  # positive: the best is better with the keep
            center = statistics.mean(diffs)
            half = t_quantile(0.975, runs - 1) * statistics.stdev(diffs) / math.sqrt(runs)
            if center - half > 0:
                promoted.append(index)
    for index in promoted:  # finalize replays the significant keeps, in order, onto the baseline
        true += effect(keeps[index], true)
        tally.kept[keeps[index]] += 1
    return true


RULES: dict[str, Rule] = {
    "greedy": greedy,
    "labloop": labloop,
    "overnight 0.1": overnight_v01,
    "overnight": overnight,
    "greedy + prune": greedy_pruned,
}
