"""Guards: conditions on secondary metrics that a change must meet to be kept.

The run optimizes one metric; a guard is a constraint beside it, never a second
objective. ``[metric] guards`` lists them, one string each::

    guards = ["peak_memory_mb <= 1.05 * best", "num_params_M <= 10"]

The grammar is small on purpose (no expressions, no eval)::

    guard := NAME OP BOUND
    OP    := <=  |  <  |  >=  |  >
    BOUND := NUMBER              an absolute limit:      num_params_M <= 10
           | best                the best's value:       duration_s <= best
           | NUMBER * best       a multiple of it:       peak_memory_mb <= 1.05 * best
           | best + NUMBER       the best's value plus:  peak_memory_mb <= best + 50
           | best - NUMBER       or minus:               accuracy >= best - 0.01

NAME is a secondary metric: a ``name: number`` line of the run's output (or a key of
the metric file, or a line of the evaluator's output). ``peak_memory_mb`` and
``duration_s`` are also measured by the harness itself for every run: when the output
does not print a name of :data:`HARNESS_METRICS`, the harness's measurement is used.
``==`` is left out: secondary metrics are measured numbers, and equality of two of
them is luck.

Which values: a change's value is the mean over the runs the judge decided on (its
latest round, runs set aside as disturbed left out); ``best`` is the mean over the
best's runs the same way. A change the judge would keep but that breaks a guard is
discarded, the guard named in its reason. Guards cost no runs of their own.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from overnight.errors import ConfigError
from overnight.records import DISTURBED, Experiment, Measured

# Measured by the harness for every run (records.Measured has a field of each name).
HARNESS_METRICS = ("peak_memory_mb", "duration_s")

# The forms a guard may take, for error messages and the docs.
FORMS = (
    "NAME OP NUMBER",
    "NAME OP best",
    "NAME OP K * best",
    "NAME OP best + K",
    "NAME OP best - K",
)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_BREAKS = {"<=": ">", "<": ">=", ">=": "<", ">": "<="}  # what a value that breaks the guard is to its bound
_WORDS = {"<=": "at most", "<": "below", ">=": "at least", ">": "above"}

_NAME = r"[A-Za-z_][\w.\-/]*"  # as a summary line's name (overnight.executors.metrics)
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_GUARD = re.compile(rf"\s*({_NAME})\s*(<=|>=|<|>)\s*(.*?)\s*")
_ABSOLUTE = re.compile(rf"({_NUMBER})")
_BEST = re.compile(r"best")
_TIMES = re.compile(rf"(?:({_NUMBER})\s*\*\s*best|best\s*\*\s*({_NUMBER}))")
_PLUS = re.compile(rf"best\s*([+-])\s*({_NUMBER})")


@dataclass(frozen=True)
class Guard:
    """One parsed guard: ``name op bound``, where bound is ``scale * best + offset`` when relative,
    else ``offset``."""

    name: str
    op: str
    relative: bool
    scale: float = 1.0
    offset: float = 0.0

    @property
    def text(self) -> str:
        """The guard in its one written form (``peak_memory_mb <= 1.05 * best``)."""
        return f"{self.name} {self.op} {self._bound_text()}"

    def _bound_text(self) -> str:
        if not self.relative:
            return _num(self.offset)
        bound = "best" if self.scale == 1 else f"{_num(self.scale)} * best"
        if self.offset:
            bound += f" {'+' if self.offset > 0 else '-'} {_num(abs(self.offset))}"
        return bound

    def bound(self, best: float | None) -> float | None:
        """The limit, given the best's value (None when relative and the best's value is unknown)."""
        if not self.relative:
            return self.offset
        return None if best is None else self.scale * best + self.offset

    def holds(self, value: float, best: float | None) -> bool:
        bound = self.bound(best)
        return bound is not None and _OPS[self.op](value, bound)

    def bound_shown(self, best: float) -> str:
        """The limit with how it came about: ``1.05 × 760 = 798``."""
        bound = self.bound(best)
        assert bound is not None
        if not self.relative:
            return _num(bound)
        parts = _num(best) if self.scale == 1 else f"{_num(self.scale)} × {_num(best)}"
        if self.offset:
            parts += f" {'+' if self.offset > 0 else '-'} {_num(abs(self.offset))}"
        return parts if parts == _num(bound) else f"{parts} = {_num(bound)}"

    def describe(self, best: float | None = None) -> str:
        """One line for an agent's brief: what a change must keep, with today's limit when known."""
        word = _WORDS[self.op]
        if not self.relative:
            return f"{self.name} must stay {word} {_num(self.offset)}"
        bound = f"the best's {self.name}" if self.scale == 1 else f"{_num(self.scale)} × the best's {self.name}"
        if self.offset:
            bound += f" {'+' if self.offset > 0 else '-'} {_num(abs(self.offset))}"
        if best is None:
            return f"{self.name} must stay {word} {bound}"
        limit = self.bound(best)
        assert limit is not None
        return f"{self.name} must stay {word} {bound} (the best's is {_num(best)}: {word} {_num(limit)})"


def _num(value: float) -> str:
    return f"{value:.6g}"


def parse(text: str, where: str = "[metric] guards") -> Guard:
    """Parse one guard; a malformed one raises ConfigError naming it and the accepted forms."""

    def bad(why: str) -> ConfigError:
        forms = "; ".join(FORMS)
        return ConfigError(
            f"{where}: {text!r}: {why}; a guard is one of: {forms} (OP is <=, <, >= or >), "
            'e.g. "peak_memory_mb <= 1.05 * best"'
        )

    if "==" in text:
        raise bad("== is not a comparison a guard makes (two measured numbers are equal by luck); use <= or >=")
    found = _GUARD.fullmatch(text)
    if not found:
        raise bad("expected a metric name, a comparison and a bound")
    name, op, bound = found.groups()
    if not bound:
        raise bad(f"nothing after {op}")
    if _ABSOLUTE.fullmatch(bound):
        guard = Guard(name, op, relative=False, scale=0.0, offset=float(bound))
    elif _BEST.fullmatch(bound):
        guard = Guard(name, op, relative=True)
    elif times := _TIMES.fullmatch(bound):
        scale = float(times.group(1) or times.group(2))
        if not scale > 0:
            raise bad(f"the factor of best must be positive, got {_num(scale)}")
        guard = Guard(name, op, relative=True, scale=scale)
    elif plus := _PLUS.fullmatch(bound):
        offset = float(plus.group(2))
        guard = Guard(name, op, relative=True, offset=-offset if plus.group(1) == "-" else offset)
    else:
        raise bad(f"cannot read the bound {bound!r}")
    if not all(math.isfinite(v) for v in (guard.scale, guard.offset)):
        raise bad("its numbers must be finite")
    return guard


def parse_all(texts: Iterable[str], where: str = "[metric] guards") -> tuple[Guard, ...]:
    """Parse every guard of ``[metric] guards``."""
    return tuple(parse(text, where) for text in texts)


def describe(texts: Iterable[str], best: Mapping[str, float] | Experiment | None = None) -> list[str]:
    """One line per guard of ``texts`` (a validated ``[metric] guards``) for an agent's brief (empty without guards).

    ``best`` is the best experiment (its last run's numbers are shown) or its secondary metrics
    (see :func:`means`), to show each relative guard's current limit; without it the lines say
    the rule alone.
    """
    rules = parse_all(texts)
    if isinstance(best, Experiment):
        best = last_reported(best, {g.name for g in rules})
    return [g.describe(None if best is None else best.get(g.name)) for g in rules]


def means(measurements: Iterable[Measured], names: Iterable[str]) -> dict[str, float]:
    """The mean of each of ``names`` over the runs that count: measured (a metric value), not set aside.

    A name a run printed comes from its output; ``peak_memory_mb`` and ``duration_s`` otherwise
    come from what the harness measured of that run. A name no run reported is left out.
    """
    wanted = set(names)
    seen: dict[str, list[float]] = {}
    for m in measurements:
        if m.value is None or m.kind == DISTURBED:
            continue
        for name in wanted:
            value = m.metrics.get(name)
            if value is None and name in HARNESS_METRICS:
                value = getattr(m, name)
            if value is not None:
                seen.setdefault(name, []).append(value)
    return {name: math.fsum(values) / len(values) for name, values in seen.items()}


def last_reported(exp: Experiment, names: Iterable[str]) -> dict[str, float]:
    """What ``exp``'s last run reported of ``names``: for experiments recorded before measurements were."""
    found = {}
    for name in names:
        value = exp.metrics.get(name)
        if value is None and name in HARNESS_METRICS:
            value = getattr(exp, name)
        if value is not None:
            found[name] = value
    return found


def broken(guards: Sequence[Guard], mine: Mapping[str, float], best: Mapping[str, float]) -> list[str]:
    """Why each guard that ``mine`` breaks is broken (empty when all hold).

    ``mine`` and ``best`` are secondary metrics (see :func:`means`). A guard whose metric the
    change did not report is broken: it cannot be shown to hold; so is a relative guard the
    best's value is unknown for.
    """
    reasons = []
    for guard in guards:
        value = mine.get(guard.name)
        reference = best.get(guard.name)
        if value is None:
            reasons.append(f"breaks guard {guard.text}: its runs reported no {guard.name}")
        elif guard.relative and reference is None:
            reasons.append(f"breaks guard {guard.text}: the best reported no {guard.name} to compare with")
        elif not guard.holds(value, reference):
            assert reference is not None or not guard.relative
            shown = guard.bound_shown(reference if reference is not None else 0.0)
            reasons.append(f"breaks guard {guard.text}: {_num(value)} {_BREAKS[guard.op]} {shown}")
    return reasons
