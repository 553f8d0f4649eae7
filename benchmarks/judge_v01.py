"""overnight 0.1's keep rule, kept for benchmarks/judge.py to compare with (not used by overnight).

Before issue 13: a candidate was kept as soon as a one-sided pooled t-test at the full
``confidence`` passed, on any look, the first included once the noise was known; a new
best was measured twice more.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from overnight.judge.noise import Noise
from overnight.judge.tdist import t_quantile

SCREEN = 0.25
SCREEN_STEP = 0.25
NEW_BEST_RUNS = 2


@dataclass(frozen=True)
class JudgeSection:
    min_delta: float = 0.0
    repeats: int = 1
    confirm: bool = True
    confidence: float = 0.95
    max_repeats: int = 5


class Action(enum.Enum):
    KEEP = "keep"
    DISCARD = "discard"
    MEASURE_CANDIDATE = "measure_candidate"
    MEASURE_BEST = "measure_best"


def decide(candidate: Sequence[float], best: Sequence[float], others: Noise, rule: JudgeSection) -> Action:
    """0.1's decide(), goal = min."""
    if len(candidate) < rule.repeats:
        return Action.MEASURE_CANDIDATE
    gain = sum(best) / len(best) - sum(candidate) / len(candidate)
    bar = rule.min_delta
    if gain <= bar:
        return Action.DISCARD
    if len(best) < len(candidate):
        return Action.MEASURE_BEST
    noise = others + Noise.pooled([candidate, best])
    if noise.df == 0:
        return Action.MEASURE_CANDIDATE if rule.confirm else Action.KEEP
    sd = noise.sd
    assert sd is not None
    se = sd * math.sqrt(1 / len(candidate) + 1 / len(best))
    low = gain - t_quantile(rule.confidence, noise.df) * se
    if se == 0 or low > bar:
        return Action.KEEP
    if len(candidate) >= rule.max_repeats:
        return Action.DISCARD
    if gain - bar < (SCREEN + SCREEN_STEP * (len(candidate) - 1)) * se:
        return Action.DISCARD
    return Action.MEASURE_CANDIDATE
