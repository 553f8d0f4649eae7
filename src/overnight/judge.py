"""The keep rule, as pure functions of measurements.

A candidate is kept only when it beats the best by more than ``min_delta`` in the
direction of the goal. A tie is not an improvement: keeping neutral changes would
let noise pile up on the run branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from overnight.records import Goal


@dataclass(frozen=True)
class Verdict:
    keep: bool
    improvement: float  # positive means better than the best, in the goal's direction
    reason: str


def decide(value: float, best: float, goal: Goal, min_delta: float = 0.0) -> Verdict:
    """Keep ``value`` over ``best``?"""
    gain = goal.improvement(value, best)
    if gain > min_delta:
        return Verdict(True, gain, f"better than the best {best:.6g} by {gain:.6g}")
    if gain > 0:
        return Verdict(False, gain, f"better by {gain:.6g}, not more than min_delta {min_delta:.6g}")
    if gain == 0:
        return Verdict(False, gain, f"equal to the best {best:.6g}")
    return Verdict(False, gain, f"worse than the best {best:.6g} by {-gain:.6g}")
