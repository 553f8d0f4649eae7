"""What judging paired differences would save where the noise follows the seed, and what it costs on re-rolls.

A simulated seeded task: run n of every commit uses seed n, and a measurement is the commit's
true value + a seed effect + the rest: ``truth + A[stream][seed] + e``, with ``Var A = rho`` and
``Var e = 1 - rho`` (σ = 1 in all). A change keeps its parent's random stream with probability
``preserve`` (a learning rate, a schedule); otherwise it draws a new one (a layer of another width,
one more draw, another seed: a re-roll of the stream), and its seed effects are new.

Two ways to judge, both the real `overnight.judge.measure.Measurer` with default `[judge]`:

* `unpaired` (overnight's rule): the noise pooled over every experiment's runs. Candidate and best
  are measured on the same seeds, so with as many runs each the gain already is the mean of the
  paired differences; only the variance it is tested with is the total one.
* `paired`: at the confirming look, the candidate's paired differences with the best (same seeds)
  are tested with a variance pooled from every earlier candidate's paired differences, as a
  paired-difference judge must (one pair has no spread of its own).

The catch this measures: the pooled paired variance is what stream-keeping changes show, but a
re-roll's differences carry the whole seed effect; judged with the small variance, lucky re-rolls
pass. Reported at equal runs (150), per case and setting: final true gain, no-ops kept, 2σ wins kept.

    python benchmarks/pairing.py  # --runs 100 --seed 0
"""

from __future__ import annotations

import logging
import math
import random
import statistics
from collections import Counter
from collections.abc import Iterator
from typing import Any

import judge as bench
import judge_rules as rules
from _repo import arguments
from overnight.executors import Measurement
from overnight.judge import rule as judge
from overnight.judge.noise import mean
from overnight.judge.rule import Action, Decision
from overnight.judge.tdist import t_quantile
from overnight.records import Experiment, Measured, now_iso

SETTINGS = [(0.8, 1.0), (0.8, 0.5), (0.8, 0.0), (0.5, 0.5)]  # (rho, preserve)


class Seeded:
    """A seeded task's measurements: ``value(commit, parent, true, seed)``."""

    def __init__(self, rng: random.Random, rho: float, preserve: float) -> None:
        self.rng, self.rho, self.preserve = rng, rho, preserve
        self.stream_of: dict[str, str] = {}
        self.effects: dict[str, dict[int, float]] = {}

    def value(self, commit: str, parent: str | None, true: float, seed: int) -> float:
        if commit not in self.stream_of:
            kept = parent is not None and parent in self.stream_of and self.rng.random() < self.preserve
            self.stream_of[commit] = self.stream_of[parent] if kept and parent else commit
        table = self.effects.setdefault(self.stream_of[commit], {})
        if seed not in table:
            table[seed] = self.rng.gauss(0.0, math.sqrt(self.rho))
        return true + table[seed] + self.rng.gauss(0.0, math.sqrt(1.0 - self.rho))


class Pairs:
    """The paired-difference deviations of the candidates judged so far (for the `paired` judge)."""

    def __init__(self) -> None:
        self.ss, self.df = 0.0, 0

    def add(self, candidate: list[float], best: list[float]) -> None:
        k = min(len(candidate), len(best))
        if k >= 2:
            diffs = [candidate[i] - best[i] for i in range(k)]
            center = statistics.mean(diffs)
            self.ss += sum((d - center) ** 2 for d in diffs)
            self.df += k - 1


PAIRS = Pairs()
PAIRED = [False]
_decide = judge.decide


def decide(candidate: Any, best: Any, others: Any, goal: Any, rule: Any) -> Decision:
    """overnight's decision, or (``PAIRED``) the same test on the paired differences at a confirming look."""
    decision = _decide(candidate, best, others, goal, rule)
    confirming = len(candidate) >= 2 and len(best) >= len(candidate)
    if not PAIRED[0] or not confirming or PAIRS.df < 10 or decision.action is Action.MEASURE_BEST:
        return decision
    diffs = [goal.improvement(candidate[i], best[i]) for i in range(len(candidate))]
    gain = statistics.mean(diffs)
    se = math.sqrt(PAIRS.ss / PAIRS.df / len(diffs))
    z = (gain - judge.threshold(rule, mean(best))) / se
    if z >= t_quantile(1 - judge.look_level(rule), PAIRS.df):
        return Decision(Action.KEEP, "paired", gain, z=z)
    if len(candidate) >= rule.max_repeats or z < judge.FUTILITY + judge.FUTILITY_STEP * (len(candidate) - 2):
        return Decision(Action.DISCARD, "paired", gain, z=z)
    return Decision(Action.MEASURE_CANDIDATE, "paired", gain, z=z)


class _Metered(rules.Metered):
    """Counts the runs against the budget; the values come from ``task``, by commit and seed."""

    def __init__(self, task: Seeded, budget: int) -> None:
        super().__init__(lambda true: true, budget)
        self.task = task


class _SeededMeasurer(rules._SimulatedMeasurer):
    """The simulated Measurer, measuring by commit and seed."""

    def _once(self, exp: Experiment, kind: str, *, log_id: int | None = None, written: Any = None):  # type: ignore[no-untyped-def]
        seed = self.state.next_seed(exp.id, exp.round)
        self.simulate(0.0)  # counts the run (raises Spent past the budget)
        task = self.simulate.task  # type: ignore[attr-defined]
        value = task.value(exp.commit, exp.parent if exp.id else None, self.truth[exp.commit], seed)
        self.state.measure(Measured(exp.id, seed, value, kind, at=now_iso(), round=exp.round))
        return Measurement(None, value=value), seed

    def until_judged(self, exp: Experiment, best: Experiment) -> Decision:
        decision = super().until_judged(exp, best)
        PAIRS.add(self.state.values(exp.id), self.state.values(best.id))
        return decision


def night(case: str, run: int, seed: int, rho: float, preserve: float, budget: int) -> tuple[float, rules.Tally]:
    """One simulated night at ``budget`` runs: its final true gain (σ) and its tally."""
    stream: Iterator[str] = bench.CASES[case][0](random.Random(f"{seed}:{case}:{run}"))
    task = Seeded(random.Random(f"{seed}:{case}:{run}:task"), rho, preserve)
    tally, drawn = rules.Tally(), []
    PAIRS.ss, PAIRS.df = 0.0, 0
    end = rules.overnight(bench._drawn(stream, drawn), _Metered(task, budget), tally, 0.0)
    tally.proposed.update(drawn)
    return -end, tally


def main() -> None:
    logging.disable(logging.WARNING)
    args = arguments(__doc__, runs=100, seed=0, budget=150)
    judge.decide = decide  # the Measurer calls judge.decide: both judges share everything else
    rules._SimulatedMeasurer = _SeededMeasurer  # type: ignore[misc]  # overnight() measures with it
    print(f"{args.runs} simulated nights per line, {args.budget} runs each (seed {args.seed})")
    print("| case | rho | preserve | judge | final true gain (σ) | no-ops kept | 2σ wins kept |")
    print("|---|---|---|---|---|---|---|")
    for case in ("every 4th", "typical"):
        for rho, preserve in SETTINGS:
            for paired in (False, True):
                PAIRED[0] = paired
                finals, kept, proposed = [], Counter[str](), Counter[str]()
                for run in range(args.runs):
                    final, tally = night(case, run, args.seed, rho, preserve, args.budget)
                    finals.append(final)
                    kept.update(tally.kept)
                    proposed.update(tally.proposed)
                share = {k: f"{kept[k] / proposed[k]:.1%}" if proposed[k] else "–" for k in ("noop", "2σ")}
                name = "paired" if paired else "unpaired"
                print(f"| {case} | {rho} | {preserve} | {name} | {statistics.mean(finals):.2f} | {share['noop']} "
                      f"| {share['2σ']} |")  # fmt: skip


if __name__ == "__main__":
    main()
