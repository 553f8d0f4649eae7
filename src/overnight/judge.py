"""The keep rule, as pure functions of measurements.

Experiments are noisy, so a candidate is kept only when, on all its measurements
against all the measurements of the current best, it beats the best by more than
the threshold (``min_delta``, or ``rel_delta`` × |best|) with the configured
confidence. The test is a one-sided two-sample Student t-test whose variance is
**pooled over every experiment of the run that was measured more than once**
(noise runs of the baseline, re-measured bests, re-measured candidates). The noise
of a task is mostly a property of the task, not of one change, so pooling lets a
candidate measured twice be judged with a variance estimated from dozens of runs;
Welch's test on two runs each would have one degree of freedom (t₀.₉₅ = 6.3) and
almost no power.

The procedure is sequential, screen-then-confirm. A candidate that does not look
better than the threshold is discarded at once, so clear losers cost one run. One
that looks better is measured again (and the best with it, so the best has at least
as many measurements) until the test keeps it, until it stops looking promising, or
until ``max_repeats``. "Promising" rises with each look: the estimated gain must stay
above ``SCREEN + SCREEN_STEP × (runs − 1)`` standard errors, which stops no-ops that
wander early instead of testing them again and again. Looking repeatedly at a test
inflates its error rate; this rising screen is what holds it down, and
``benchmarks/judge.py`` measures the result (false keeps, power, runs) by simulation.
Where the noise is unknown (nothing measured twice yet), the threshold alone decides
the screen, and ``confirm`` sends a promising candidate to a second measurement.

A kept candidate's measurements are the lucky ones that got it kept (the winner's
curse), so the new best is measured ``NEW_BEST_RUNS`` more times before it is used as
the bar for later candidates (see overnight.measuring).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from overnight.config import JudgeSection
from overnight.records import Goal

SCREEN = 0.25  # standard errors of gain a candidate must show to be measured again...
SCREEN_STEP = 0.25  # ...and this much more at each further look
NEW_BEST_RUNS = 2  # extra measurements of a new best (skipped when the noise is exactly zero)


class Action(enum.Enum):
    KEEP = "keep"
    DISCARD = "discard"
    MEASURE_CANDIDATE = "measure_candidate"
    MEASURE_BEST = "measure_best"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    improvement: float = 0.0  # estimated, in the goal's direction (positive = better)
    ci_low: float | None = None  # confidence interval of the improvement, when the noise is known
    ci_high: float | None = None


@dataclass(frozen=True)
class Noise:
    """The pooled within-experiment variance: sum of squared deviations and degrees of freedom."""

    ss: float = 0.0
    df: int = 0

    @classmethod
    def pooled(cls, samples: Iterable[Sequence[float]]) -> Noise:
        ss, df = 0.0, 0
        for values in samples:
            if len(values) > 1:
                mean = sum(values) / len(values)
                ss += sum((v - mean) ** 2 for v in values)
                df += len(values) - 1
        return cls(ss, df)

    @property
    def sd(self) -> float | None:
        return math.sqrt(self.ss / self.df) if self.df else None


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def threshold(rule: JudgeSection, best: float) -> float:
    return rule.rel_delta * abs(best) if rule.rel_delta else rule.min_delta


def decide(
    candidate: Sequence[float], best: Sequence[float], others: Noise, goal: Goal, rule: JudgeSection
) -> Decision:
    """What to do next with a candidate, given every measurement so far.

    ``others`` is the pooled noise of the run's other experiments; the candidate's and
    the best's own measurements are pooled in here.
    """
    if len(candidate) < rule.repeats:
        return Decision(Action.MEASURE_CANDIDATE, f"measurement {len(candidate) + 1} of {rule.repeats} before judging")
    gain = goal.improvement(mean(candidate), mean(best))
    bar = threshold(rule, mean(best))
    if gain <= bar:
        word = "worse than" if gain < 0 else "not better than" if gain == 0 else "not enough better than"
        return Decision(Action.DISCARD, f"{word} the best by {abs(gain):.6g} (threshold {bar:.6g})", gain)
    if len(best) < len(candidate):
        return Decision(Action.MEASURE_BEST, "the best is measured as often as the candidate", gain)
    own = Noise.pooled([candidate, best])
    noise = Noise(others.ss + own.ss, others.df + own.df)
    if noise.df == 0:
        if not rule.confirm:
            return Decision(
                Action.KEEP, f"better than the best by {gain:.6g} (threshold {bar:.6g}; noise unknown)", gain
            )
        return Decision(Action.MEASURE_CANDIDATE, "looks better; confirming with another measurement", gain)
    sd = noise.sd
    assert sd is not None
    se = sd * math.sqrt(1 / len(candidate) + 1 / len(best))
    critical = t_quantile(rule.confidence, noise.df)
    low, high = gain - critical * se, gain + critical * se
    runs = f"{len(candidate)} run{'s' if len(candidate) != 1 else ''} vs {len(best)}"
    if se == 0 or low > bar:
        return Decision(
            Action.KEEP, f"better than the best by {gain:.6g} ± {critical * se:.3g} ({runs})", gain, low, high
        )
    if len(candidate) >= rule.max_repeats:
        reason = (
            f"not shown better than the best within {rule.max_repeats} runs (gain {gain:.6g}, lower bound {low:.3g})"
        )
        return Decision(Action.DISCARD, reason, gain, low, high)
    promise = SCREEN + SCREEN_STEP * (len(candidate) - 1)
    if gain - bar < promise * se:
        reason = f"gain {gain:.6g} is within the noise ({runs}; lower bound {low:.3g}): not worth more runs"
        return Decision(Action.DISCARD, reason, gain, low, high)
    return Decision(Action.MEASURE_CANDIDATE, f"uncertain: gain {gain:.6g}, lower bound {low:.3g}", gain, low, high)


# -- Student's t distribution (no scipy) ---------------------------------------------------


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side; use the symmetry otherwise
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            numerator = 1.0
        elif i % 2 == 0:
            numerator = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            numerator = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + numerator * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + numerator / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(1.0 - c * d) < 1e-12:
            break
    return front * (f - 1.0)


def t_cdf(t: float, df: float) -> float:
    """P(T ≤ t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _incomplete_beta(df / 2, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T ≤ t) = p (bisection on the CDF: plenty fast for a decision per experiment)."""
    low, high = -1e6, 1e6
    for _ in range(200):
        middle = (low + high) / 2
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-10:
            break
    return (low + high) / 2
