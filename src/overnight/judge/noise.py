"""The noise model: how much runs of the same code vary, pooled over a whole run.

The noise of a task is mostly a property of the task, not of one change: :class:`Noise`
pools the within-experiment variance of every experiment measured more than once (noise
runs of the baseline, re-measured bests, re-measured candidates), so a candidate measured
twice is judged with a variance estimated from dozens of runs. Two refinements:

* **clipping**: a deviation beyond ``CLIP`` robust standard deviations counts as ``CLIP``
  of them, so one run disturbed by a burst of load does not inflate the noise every later
  decision is made with (:meth:`Noise.pooled`); the robust estimate itself (from the median
  absolute deviation) is what tells a disturbed run (see overnight.judge.rule.disturbed_runs);
* **the relative model**: where the noise scales with the level (a benchmark twice as fast
  varies half as much in milliseconds) and the likelihood says so, :meth:`Noise.at` scales
  the pooled relative noise to the level judged at.

:func:`compare` turns two experiments' runs and the rest of the run's noise into the one
estimated :class:`Gain` (with its interval) every view shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from overnight.config import JudgeSection
from overnight.judge.tdist import t_quantile
from overnight.records import Goal

CLIP = 4.0  # deviations beyond this many robust standard deviations count as that many in the pooled noise
RELATIVE_EVIDENCE = 2.0  # −2 log-likelihood the relative noise model must gain to be used (see Noise.relative)
#: what a reason says when every repeated run gave the same value and the metric is not declared exact
REPEATED = "noise unknown: every run repeated its value exactly, so the seed does not reach the script"


@dataclass(frozen=True)
class Noise:
    """The pooled within-experiment variance: sum of squared deviations and degrees of freedom.

    ``robust`` is a second estimate of the run-to-run standard deviation, from the median
    absolute deviation, which disturbed runs barely move: it decides what counts as
    disturbed (overnight.judge.rule's ``suspicious`` and ``disturbed_runs``), while the t-test uses ``sd``.

    The same deviations are also pooled relative to their experiment's mean (``rel_ss``,
    ``rel_robust``; ``log_level`` is Σ (n − 1)·log mean), because some noise scales with the
    level: a benchmark that got twice as fast varies half as much in milliseconds. Pooling
    a run's slow start with its fast end in absolute units would judge every later
    speed-up with the noise of the slow code. :meth:`at` gives the noise at one level,
    from whichever of the two models explains the runs better.
    """

    ss: float = 0.0
    df: int = 0
    robust: float | None = None
    rel_ss: float = 0.0
    rel_robust: float | None = None
    log_level: float = 0.0
    positive: bool = True  # every experiment's mean > 0: the relative model applies

    @classmethod
    def pooled(cls, samples: Iterable[Sequence[float]]) -> Noise:
        """The pooled variance of ``samples`` (each the runs of one experiment).

        Deviations beyond CLIP robust standard deviations (the median absolute deviation
        of them all, scaled) count as CLIP: one disturbed run among dozens must not
        inflate the noise every decision is made with.
        """
        deviations: list[float] = []
        relative: list[float] = []
        df, log_level, positive = 0, 0.0, True
        for values in samples:
            if len(values) > 1:
                mean = sum(values) / len(values)
                # runs that repeat a value exactly deviate by nothing (not by the rounding of their mean)
                same = max(values) == min(values)
                deviations += [0.0 if same else v - mean for v in values]
                df += len(values) - 1
                positive = positive and mean > 0
                if positive:
                    relative += [0.0 if same else (v - mean) / mean for v in values]
                    log_level += (len(values) - 1) * math.log(mean)
        if not df:
            return cls()
        ss, robust = _clipped(deviations, df)
        if not positive:
            return cls(ss, df, robust, positive=False)
        rel_ss, rel_robust = _clipped(relative, df)
        return cls(ss, df, robust, rel_ss, rel_robust, log_level)

    def __add__(self, other: Noise) -> Noise:
        positive = self.positive and other.positive
        return Noise(
            self.ss + other.ss,
            self.df + other.df,
            _merged(self.robust, self.df, other.robust, other.df),
            self.rel_ss + other.rel_ss if positive else 0.0,
            _merged(self.rel_robust, self.df, other.rel_robust, other.df) if positive else None,
            self.log_level + other.log_level if positive else 0.0,
            positive,
        )

    @property
    def relative(self) -> bool:
        """Whether the noise scales with the level: the relative model's likelihood beats the absolute
        one's by RELATIVE_EVIDENCE (both have one parameter). Where all runs share one level the two
        models are the same, and the absolute one is used."""
        if not (self.positive and self.df and self.ss > 0 and self.rel_ss > 0):
            return False
        absolute = self.df * math.log(self.ss / self.df)
        scaled = self.df * math.log(self.rel_ss / self.df) + 2 * self.log_level
        return scaled < absolute - RELATIVE_EVIDENCE

    def at(self, level: float) -> Noise:
        """The noise of runs around ``level``: scaled to it when the noise is relative, else as pooled."""
        if not self.relative or level <= 0:
            return self
        robust = self.rel_robust * level if self.rel_robust is not None else None
        return Noise(self.rel_ss * level * level, self.df, robust)

    @property
    def spread(self) -> float | None:
        """The run-to-run deviation that tells a disturbed run: the robust estimate, else ``sd``."""
        return self.robust if self.robust else self.sd

    @property
    def sd(self) -> float | None:
        """The run-to-run standard deviation, in the metric's units, pooled as measured (see :meth:`at`)."""
        return math.sqrt(self.ss / self.df) if self.df else None


def _clipped(deviations: Sequence[float], df: int) -> tuple[float, float]:
    """The sum of squares of ``deviations`` clipped at CLIP robust sd, and that robust sd."""
    spread = sorted(abs(d) for d in deviations)
    # deviations from a sample's mean shrink by √((n−1)/n): scaled back, for the run-to-run deviation
    robust = 1.4826 * spread[len(spread) // 2] * math.sqrt(len(deviations) / df)
    cap = (CLIP * robust) ** 2 if robust > 0 else math.inf
    return sum(min(d * d, cap) for d in deviations), robust


def _merged(a: float | None, a_df: int, b: float | None, b_df: int) -> float | None:
    """Two robust standard deviations merged, weighted by their degrees of freedom."""
    parts = [(r, df) for r, df in ((a, a_df), (b, b_df)) if r is not None and df]
    weight = sum(df for _, df in parts)
    return math.sqrt(sum(r * r * df for r, df in parts) / weight) if weight else None


@dataclass(frozen=True)
class Gain:
    """One change's estimated gain over its reference (positive = better), with its interval at the configured confidence."""

    gain: float
    low: float | None  # None while the noise is unknown
    high: float | None
    runs: int  # the change's measurements behind the estimate
    reference_runs: int  # and its reference's
    repeated: bool = False  # no interval because every run repeated its value exactly (a seed that does not vary)

    def text(self) -> str:
        runs = f"mean of {n_runs(self.runs)} vs {self.reference_runs}"
        if self.low is None or self.high is None:
            return f"gain {self.gain:.6g} ({runs}; {REPEATED if self.repeated else 'noise unknown'})"
        return f"gain {self.gain:.6g} [{self.low:.3g}, {self.high:.3g}] ({runs})"


def compare(
    candidate: Sequence[float], reference: Sequence[float], others: Noise, goal: Goal, rule: JudgeSection
) -> Gain:
    """The estimated gain of ``candidate`` over ``reference``: the one estimate every view shows."""
    gain = goal.improvement(mean(candidate), mean(reference))
    noise = (others + Noise.pooled([candidate, reference])).at(mean(reference))
    if noise.sd is None or unvaried(noise, rule):
        return Gain(gain, None, None, len(candidate), len(reference), repeated=unvaried(noise, rule))
    half = t_quantile(rule.confidence, noise.df) * noise.sd * math.sqrt(1 / len(candidate) + 1 / len(reference))
    return Gain(gain, gain - half, gain + half, len(candidate), len(reference))


def unvaried(noise: Noise, rule: JudgeSection) -> bool:
    """Whether every run measured more than once repeated its value exactly, and the task has not declared the
    metric exact (``[judge] exact``): then the repeats say nothing about the noise. A script that fixes its
    own seed does this; it is not evidence that the metric is exact (see overnight.judge.seeds)."""
    return bool(noise.df) and noise.ss == 0 and not rule.exact


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def n_runs(n: int) -> str:
    """How many runs an estimate rests on, for a reason: "1 run", "2 runs"."""
    return f"{n} run" if n == 1 else f"{n} runs"
