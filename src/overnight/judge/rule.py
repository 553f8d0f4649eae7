"""The keep rule, as pure functions of measurements.

Experiments are noisy, so a candidate is kept only when, on its measurements against
those of the current best, it beats the best by more than the threshold (``min_delta``,
or ``rel_delta`` × |best|) with the configured confidence, after at least two runs of
its own (with ``confirm``, the default: a single run never keeps a change).

The test is a one-sided two-sample Student t-test whose variance is **pooled over every
experiment of the run that was measured more than once** (noise runs of the baseline,
re-measured bests, re-measured candidates). The noise of a task is mostly a property of
the task, not of one change, so pooling lets a candidate measured twice be judged with a
variance estimated from dozens of runs; Welch's test on two runs each would have one
degree of freedom (t₀.₉₅ = 6.3) and almost no power. The noise model (pooling, clipping of
disturbed runs, noise relative to the level) is overnight.judge.noise; the t distribution,
overnight.judge.tdist.

The procedure is sequential, in looks (one look per run of the candidate):

1. **Screen.** The first run is compared with the best: unless it looks better than the
   threshold by ``SCREEN`` (one) standard error, the candidate is discarded at once, so
   clear losers and five no-ops in six cost one run. (Where the noise is still unknown, it only has to
   look better than the threshold.) A first run far worse than anything the noise
   explains is not trusted to discard alone: see :func:`suspicious`.
2. **Confirm.** Otherwise the candidate is measured again, and the best with it so that
   the best has as many runs (candidate and best alternate in time, so drift and bursts
   of a busy machine fall on both). After each run the test is made; it keeps the
   candidate when it passes at level α / (``max_repeats`` − 1), α = 1 − ``confidence``:
   the false-keep risk of the whole sequence of looks is bounded by α (Bonferroni over
   the looks that can keep), not α per look. It discards when the gain falls under a
   futility bound rising ``FUTILITY_STEP`` standard errors per look, or at ``max_repeats``.
   By default ``max_repeats`` is 2: one confirming run, tested at α. A night is paid in
   runs, and in ``benchmarks/judge.py`` at equal runs a strict screen with one confirmation
   made more true gain than up to 8 looks at α / 8 each, at no more than 2% of no-ops kept.
   While the noise itself rests on under ``DISTURBED_DF`` degrees of freedom (the first
   candidates of a run), a candidate ``UNSETTLED_Z`` standard errors past the threshold
   that the wide t quantile of so few runs leaves undecided gets up to ``UNSETTLED`` more
   runs, with the best, instead of being discarded.
3. **Follow up.** A kept change is measured ``FOLLOW_UP_RUNS`` more time(s) before it
   becomes the best: the runs that got it kept were the lucky ones (the winner's curse),
   and the best's estimate is the mean of all its runs.

Two rules keep a lucky best from stalling a run. The best is measured again when the
candidates screened out against it keep landing far below it (:func:`recheck`: a lucky-low
estimate discards every later win at the screen). And a best whose later measurements
show it no better than the best it replaced is undone (:func:`undone`): the run branch
moves back, so no view shows the best getting worse.

``benchmarks/judge.py`` measures the result (false keeps, power, runs, the final true
gain) by simulation, against the greedy rule and labloop's.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from overnight.config import JudgeSection
from overnight.judge.noise import REPEATED, Noise, mean, n_runs, unvaried
from overnight.judge.tdist import t_quantile
from overnight.records import Goal

SCREEN = 1.0  # standard errors of gain the first run must show to be measured again
FUTILITY = 0.3  # from the second look: discard when the gain is under this many standard errors...
FUTILITY_STEP = 0.3  # ...and this much more at each further look
FOLLOW_UP_RUNS = 1  # runs of a kept change before it becomes the best (skipped when the noise is exactly zero)
RECHECK_OF = 3  # the best is measured again when the last RECHECK_OF screened-out candidates...
RECHECK_Z = -0.6  # ...averaged below this many standard errors against it
RECHECK_UNKNOWN = 2  # or after this many screened out in a row while the noise is unknown
SUSPICIOUS = 4.0  # a first run this many standard deviations worse than the best is checked before discarding
# the noise must rest on this many degrees of freedom before a run is called disturbed by its value: two runs of
# the baseline that happen to agree would make every later run look far off
DISTURBED_DF = 4
# runs past max_repeats a candidate that looks better may get while the noise rests on under DISTURBED_DF degrees
# of freedom (the first candidates of a run): their looks are tested at the same level as the others
UNSETTLED = 2
UNSETTLED_Z = 2.0  # ...when its gain is this many standard errors beyond the threshold


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
    z: float | None = None  # standard errors of gain beyond the threshold, when the noise is known


def threshold(rule: JudgeSection, best: float) -> float:
    return rule.rel_delta * abs(best) if rule.rel_delta else rule.min_delta


def look_level(rule: JudgeSection) -> float:
    """The one-sided level of each look that can keep: α over those looks, so the whole sequence stays within α."""
    looks = rule.max_repeats - (1 if rule.confirm else 0)
    return (1 - rule.confidence) / max(1, looks)


def decide(
    candidate: Sequence[float], best: Sequence[float], others: Noise, goal: Goal, rule: JudgeSection
) -> Decision:
    """What to do next with a candidate, given every measurement so far (see the module docstring).

    ``others`` is the pooled noise of the run's other experiments; the candidate's and
    the best's own measurements are pooled in here.
    """
    looks = len(candidate)
    if looks < rule.repeats:
        return Decision(Action.MEASURE_CANDIDATE, f"measurement {looks + 1} of {rule.repeats} before judging")
    gain = goal.improvement(mean(candidate), mean(best))
    bar = threshold(rule, mean(best))
    runs = f"{n_runs(looks)} vs {len(best)}"
    noise = (others + Noise.pooled([candidate, best])).at(mean(best))
    sd = noise.sd
    # Nothing measured twice yet, or every repeat gave the same value without the metric being declared exact
    # (a script that fixes its seed): the noise is unknown, and the threshold alone screens.
    if sd is None or unvaried(noise, rule):
        unknown = REPEATED if sd is not None else "noise unknown"
        if gain <= bar:
            return Decision(Action.DISCARD, _short(gain, f"threshold {bar:.6g}", unknown), gain)
        if looks == 1 and rule.confirm:
            return Decision(Action.MEASURE_CANDIDATE, "looks better; confirming with another measurement", gain)
        if len(best) < looks:
            return Decision(Action.MEASURE_BEST, "the best is measured as often as the candidate", gain)
        return Decision(
            Action.KEEP, f"better than the best by {gain:.6g} ({runs}; threshold {bar:.6g}; {unknown})", gain
        )
    if looks > 1 and len(best) < looks:
        return Decision(Action.MEASURE_BEST, "the best is measured as often as the candidate", gain)
    se = sd * math.sqrt(1 / looks + 1 / len(best))
    if se == 0:  # a metric declared exact ([judge] exact), and no run has varied: no statistics needed
        if gain > bar and (looks > 1 or not rule.confirm):
            return Decision(
                Action.KEEP, f"better than the best by {gain:.6g} ({runs}; an exact metric)", gain, gain, gain
            )
        if gain > bar:
            return Decision(Action.MEASURE_CANDIDATE, "looks better; confirming with another measurement", gain)
        return Decision(Action.DISCARD, _short(gain, f"threshold {bar:.6g}", "an exact metric"), gain)
    z = (gain - bar) / se
    shown = t_quantile(rule.confidence, noise.df) * se  # the interval shown: at the configured confidence
    low, high = gain - shown, gain + shown
    if looks == 1 and rule.confirm:
        if z < SCREEN:  # the bar it was held to: the threshold and SCREEN standard errors of the gain
            held = f"bar {bar + SCREEN * se:.3g}: threshold {bar:.6g} + {SCREEN:g} standard error {se:.3g}"
            return Decision(Action.DISCARD, _short(gain, held, "first run"), gain, z=z)
        if len(best) < 2:
            return Decision(Action.MEASURE_BEST, "looks better; measuring the best again first", gain, z=z)
        return Decision(Action.MEASURE_CANDIDATE, "looks better; confirming with another measurement", gain, z=z)
    keep_z = t_quantile(1 - look_level(rule), noise.df)  # the standard errors of gain past the threshold that keep
    if z >= keep_z:
        reason = f"better than the best by {gain:.6g} ± {shown:.3g} ({runs}), over the bar {bar + keep_z * se:.3g}"
        return Decision(Action.KEEP, reason, gain, low, high, z)
    if (
        looks >= rule.max_repeats
        and noise.df < DISTURBED_DF
        and z >= UNSETTLED_Z
        and looks < rule.max_repeats + UNSETTLED
    ):
        # Early in a run the noise rests on a handful of runs, and one disturbed run of the baseline can hide a gain
        # many times the threshold behind a wide t quantile. More runs of both settle the noise itself.
        reason = (
            f"uncertain: gain {gain:.6g}, lower bound {low:.3g}, with the noise from only {noise.df} degrees of freedom"
        )
        return Decision(Action.MEASURE_CANDIDATE, reason, gain, low, high, z)
    if looks >= rule.max_repeats:
        reason = (
            f"not shown better than the best within {looks} runs (gain {gain:.6g}, lower bound {low:.3g}; "
            f"bar {bar + keep_z * se:.3g}: threshold {bar:.6g} + {keep_z:.3g} standard errors {se:.3g})"
        )
        return Decision(Action.DISCARD, reason, gain, low, high, z)
    futile = FUTILITY + FUTILITY_STEP * (looks - 2)
    if z < futile:
        go_on = f"bar to go on {bar + futile * se:.3g}"
        reason = f"gain {gain:.6g} is within the noise ({runs}; lower bound {low:.3g}; {go_on}): not worth more runs"
        return Decision(Action.DISCARD, reason, gain, low, high, z)
    return Decision(Action.MEASURE_CANDIDATE, f"uncertain: gain {gain:.6g}, lower bound {low:.3g}", gain, low, high, z)


def suspicious(first: float, best: Sequence[float], others: Noise, goal: Goal) -> bool:
    """Whether a candidate's first run is so much worse than the best that the run, not the change, is in doubt.

    On a shared machine a burst of load can make one run 40–70% slower; discarding a real
    speed-up on that run alone would throw it away. Such a run is checked: the best is
    measured right after it (see overnight.judge.measure), and if that run is disturbed too,
    both are set aside and the candidate is measured again.
    """
    noise = others + Noise.pooled([best])
    if noise.df < DISTURBED_DF:
        return False
    sd = noise.at(mean(best)).spread
    return bool(sd) and goal.improvement(first, mean(best)) < -SUSPICIOUS * sd  # type: ignore[operator]


def disturbed_runs(values: Sequence[float], others: Noise, goal: Goal) -> list[int]:
    """Indices of the runs worse than the experiment's best run by more than the noise can explain.

    A difference of two runs has √2 times the run-to-run deviation; beyond SUSPICIOUS times
    that, a run is taken as disturbed (load on a shared machine only ever makes things
    worse, so the best run is the reference). Needs the run's noise (``others``).
    """
    if len(values) < 2 or others.df < DISTURBED_DF:
        return []
    best = max(values, key=lambda v: goal.improvement(v, 0.0))
    sd = others.at(best).spread
    if not sd:
        return []
    limit = SUSPICIOUS * sd * math.sqrt(2)
    return [i for i, v in enumerate(values) if goal.improvement(v, best) < -limit]


def recheck(screened: Sequence[float | None]) -> bool:
    """Whether the best should be measured again, given the screen z of the candidates screened out
    against its current estimate, oldest first (None where the noise was unknown).

    A best whose estimate came out lucky makes every candidate look worse than it; left
    alone, it discards the night's real wins at the screen (a stalled run).
    """
    if len(screened) >= RECHECK_UNKNOWN and all(z is None for z in screened[-RECHECK_UNKNOWN:]):
        return True
    known = [z for z in screened if z is not None][-RECHECK_OF:]
    return len(known) == RECHECK_OF and mean(known) < RECHECK_Z


def undone(best: Sequence[float], parent: Sequence[float], others: Noise, goal: Goal, rule: JudgeSection) -> str:
    """Why a kept best must be undone now, or "": when, measured again, it is no longer estimated better
    than the best it replaced (by the threshold), with at least two runs on each side."""
    if len(best) < 2 or len(parent) < 2:
        return ""
    gain = goal.improvement(mean(best), mean(parent))
    bar = threshold(rule, mean(parent))
    if gain > bar:
        return ""
    noise = (others + Noise.pooled([best, parent])).at(mean(parent))
    return (
        f"measured again ({n_runs(len(best))}), it is no longer better than the best it replaced "
        f"(gain {gain:.6g} vs threshold {bar:.6g}" + (f", noise sd {noise.sd:.3g})" if noise.sd else ")")
    )


def _short(gain: float, bar: str, why: str) -> str:
    """Why a candidate was discarded at once, with the bar it was held to in numbers: "worse than the best
    by 0.07 (first run; bar ...)", or "better than the best by 0.03 (first run), under the bar 0.06: ..."
    (not "not enough better by 0.03", which reads as if it were better by more than it had to be)."""
    if gain < 0:
        return f"worse than the best by {-gain:.6g} ({why}; {bar})"
    if gain == 0:
        return f"no better than the best ({why}; {bar})"
    return f"better than the best by {gain:.6g} ({why}), under the {bar}"
