"""Wording that every way of looking at a run shares: counts, estimates, changes, spend.

The contract: pure functions from numbers to short English text, the same words in
`overnight status`, the report, the dashboard's list of runs and the agents' prompt.
Nothing here reads a run (that is :mod:`overnight.views`) or imports anything of
overnight's, so the run view itself can use these words without an import cycle.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from overnight.records import Usage


def plural(count: int, word: str) -> str:
    """``count`` with ``word``, in the plural unless it is one: "1 run", "3 runs"."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def short(text: str, limit: int, one_line: bool = False) -> str:
    """``text`` cut to ``limit`` characters, ending in … when cut; ``one_line`` folds its whitespace first."""
    text = " ".join(text.split()) if one_line else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def figure_runs(runs: int) -> str:
    """What an estimate is: "1 run", "mean of 5 runs"."""
    return "1 run" if runs == 1 else f"mean of {runs} runs" if runs else "no run"


def figure(value: float | None, runs: int) -> str:
    """An estimate with what it is: "3.0461 (mean of 6 runs)"."""
    return "-" if value is None else f"{value:.6g} ({figure_runs(runs)})"


def change(value: float | None, reference: float | None) -> tuple[float, float | None] | None:
    """(value - reference, that as % of |reference|; None when the reference is 0), or None without both."""
    if value is None or reference is None:
        return None
    diff = value - reference
    return diff, (100 * diff / abs(reference) if reference else None)


def delta(value: float | None, reference: float | None) -> str:
    """The change from ``reference`` to ``value``, signed as the metric moves, with % of the reference."""
    moved = change(value, reference)
    if moved is None:
        return ""
    diff, pct = moved
    return f"{diff:+.6g}" + ("" if pct is None else f", {percent(pct)}")


def percent(pct: float) -> str:
    """A relative change for people: "+5.77%", or a factor when the value exploded ("×3.2e+97")."""
    if abs(pct) < 1000:
        return f"{pct:+.2f}%"
    return f"×{1 + pct / 100:.3g}"


def counts_text(counts: Counter[str]) -> str:
    """The counts as "3 keep, 1 baseline, ...": the most frequent status first."""
    return ", ".join(f"{n} {s}" for s, n in counts.most_common())


def usage_text(usage: Usage) -> str:
    """The spend as "N tokens[, $C]", or "" when the agents reported nothing."""
    tokens = usage.tokens_in + usage.tokens_out
    if not tokens and usage.cost_usd is None:
        return ""
    return f"{tokens} tokens" + ("" if usage.cost_usd is None else f", ${usage.cost_usd:.4f}")
