"""The tune agent's search space: which constants it changes, and over what range and scale.

Safe by default, because the constants of a real training script are not all
hyperparameters (autoresearch's ``train.py`` has ``H100_BF16_PEAK_FLOPS`` beside ``MATRIX_LR``):

* a name in ``[agent.tune] ranges`` is searched over that range (a logit scale inside
  (0, 1), a log scale when it spans a factor of 10 or more above 0, else linear);
* a bool is searched as one of two values;
* a float inside (0, 1) stays inside (0, 1): it is searched on a logit scale, between
  about v/10 and 1 - (1 - v)/10;
* a positive float spans [v/10, 10v] on a log scale; a positive integer [v/4, 4v]
  (log scale, integers stay integers, never below 1); a negative value a linear range
  of the same span;
* left alone, each with its reason (kept in the record and printed at the start): a 0
  (no scale to search around: give it a range), a name that looks like a hardware fact
  or a seed (``*FLOPS*``, ``*PEAK*`` but ``PEAK_LR``, ``*BANDWIDTH*``, ``SEED``; naming it in ``include``
  or ``ranges`` tunes it anyway), one outside ``include`` or inside ``exclude``, and a
  name defined in two editable files.

A :class:`Dimension` maps a value to a point of Optuna's distribution and back
(``encode``/``decode``), and to the unit interval of its scale (``to_unit``/``from_unit``),
where the agent takes its steps near the best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from overnight.agents.constants import Constant, Value, format_value
from overnight.config import TuneSection

#: name parts that mark a constant as a fact about the machine or a seed, not a hyperparameter
_LEFT_ALONE = (
    (("FLOPS", "TFLOPS", "PFLOPS", "GFLOPS"), "looks like a hardware fact"),
    (("BANDWIDTH",), "looks like a hardware fact"),
    (("SEED",), "looks like a seed"),
)

_TEN = math.log(10.0)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _written(value: float) -> float:
    """``value`` as it will be written into the file (4 significant digits)."""
    return float(format_value(value))


@dataclass(frozen=True)
class Dimension:
    """One constant's search range: ``scale`` is "log", "logit" or "linear" (floats),
    "int" or "int-log" (integers), or "bool"; ``low`` and ``high`` are values of the constant."""

    name: str
    scale: str
    low: float
    high: float
    origin: str = "default"  # "default" (around its value) or "ranges" (the user's)

    def distribution(self, optuna: Any) -> Any:
        """The Optuna distribution of the encoded values."""
        dist = optuna.distributions
        if self.scale == "bool":
            return dist.CategoricalDistribution((False, True))
        if self.scale in ("int", "int-log"):
            return dist.IntDistribution(int(self.low), int(self.high), log=self.scale == "int-log")
        if self.scale == "logit":
            return dist.FloatDistribution(_logit(self.low), _logit(self.high))
        return dist.FloatDistribution(self.low, self.high, log=self.scale == "log")

    def encode(self, value: Value) -> Any:
        """A value of the constant as a point of :meth:`distribution` (clamped into it)."""
        if self.scale == "bool":
            return bool(value)
        inside = min(max(value, self.low), self.high)
        if self.scale in ("int", "int-log"):
            return round(float(inside))
        return _logit(inside) if self.scale == "logit" else float(inside)

    def decode(self, point: Any) -> Value:
        """A point of :meth:`distribution` as the value written into the file."""
        if self.scale == "bool":
            return bool(point)
        if self.scale in ("int", "int-log"):
            return int(point)
        value = _sigmoid(point) if self.scale == "logit" else float(point)
        return _written(min(max(value, self.low), self.high))

    def to_unit(self, value: Value) -> float:
        """Where ``value`` lies in the range, from 0 to 1, on the dimension's scale."""
        if self.scale == "bool":
            return float(bool(value))
        inside = min(max(float(value), self.low), self.high)
        if self.scale in ("log", "int-log"):
            return math.log(inside / self.low) / math.log(self.high / self.low)
        if self.scale == "logit":
            low = _logit(self.low)
            return (_logit(inside) - low) / (_logit(self.high) - low)
        return (inside - self.low) / (self.high - self.low)

    def from_unit(self, unit: float) -> Value:
        """The value at ``unit`` (clamped into [0, 1]) of the range, as written into the file."""
        u = min(max(unit, 0.0), 1.0)
        if self.scale == "bool":
            return u >= 0.5
        if self.scale in ("log", "int-log"):
            value = self.low * (self.high / self.low) ** u
        elif self.scale == "logit":
            value = _sigmoid(_logit(self.low) + u * (_logit(self.high) - _logit(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        if self.scale in ("int", "int-log"):
            return int(min(max(round(value), self.low), self.high))
        return _written(min(max(value, self.low), self.high))

    def describe(self) -> str:
        """One line: ``NAME scale [low, high]`` and where the range came from."""
        if self.scale == "bool":
            return f"{self.name} bool [False, True]"
        low, high = (int(self.low), int(self.high)) if self.scale.startswith("int") else (self.low, self.high)
        where = " (from [agent.tune] ranges)" if self.origin == "ranges" else ""
        return f"{self.name} {self.scale} [{format_value(low)}, {format_value(high)}]{where}"

    def record(self) -> dict[str, Any]:
        """What is kept in the ledger with the first proposal (see :func:`from_record`)."""
        return {"scale": self.scale, "low": self.low, "high": self.high, "origin": self.origin}


def from_record(name: str, data: Any) -> Dimension | None:
    """The dimension :meth:`Dimension.record` wrote, or None when ``data`` is not one."""
    try:
        dim = Dimension(name, str(data["scale"]), float(data["low"]), float(data["high"]), str(data["origin"]))
    except (KeyError, TypeError, ValueError):
        return None
    return dim if dim.scale in ("log", "logit", "linear", "int", "int-log", "bool") and dim.low < dim.high else None


@dataclass(frozen=True)
class Space:
    """The dimensions searched, and the constants left alone with the reason for each."""

    dimensions: tuple[Dimension, ...]
    left_alone: dict[str, str] = field(default_factory=dict)  # name → why
    warnings: tuple[str, ...] = ()  # what the user should hear about: zeros without a range, names not found

    def lines(self) -> list[str]:
        """The search space as printed at the start of a run."""
        out = [f"tune: searching {len(self.dimensions)} constants:"]
        out += [f"  {d.describe()}" for d in self.dimensions]
        if self.left_alone:
            out.append("tune: left alone: " + "; ".join(f"{n} ({why})" for n, why in self.left_alone.items()))
        return out


def _default(c: Constant) -> Dimension | str:
    """The dimension around a constant's value, or why it is left alone."""
    v = c.value
    if c.is_bool:
        return Dimension(c.name, "bool", 0.0, 1.0)
    if v == 0:
        return "is 0, with no scale to search around; give it [agent.tune] ranges to tune it"
    if c.is_int:
        n = int(v)
        if n >= 1:
            return Dimension(c.name, "int-log", max(1, n // 4), max(4, n * 4))
        return Dimension(c.name, "int", n * 4, min(-1, n // 4 + 1))
    x = float(v)
    if 0 < x < 1:
        center = _logit(x)
        return Dimension(c.name, "logit", _sigmoid(center - _TEN), _sigmoid(center + _TEN))
    if x > 0:
        return Dimension(c.name, "log", x / 10, x * 10)
    return Dimension(c.name, "linear", x * 10, x / 10)


def _ranged(c: Constant, low: float, high: float) -> Dimension | str:
    if c.is_bool:
        return Dimension(c.name, "bool", 0.0, 1.0)  # a range says nothing more about a flag
    if c.is_int:
        lo, hi = math.ceil(low), math.floor(high)
        if not lo < hi:
            return f"its [agent.tune] range [{low:g}, {high:g}] holds fewer than two integers"
        return Dimension(c.name, "int-log" if lo >= 1 and hi / lo >= 10 else "int", lo, hi, "ranges")
    if low > 0 and high < 1:  # a fraction's range: a fraction's scale
        return Dimension(c.name, "logit", low, high, "ranges")
    return Dimension(c.name, "log" if low > 0 and high / low >= 10 else "linear", low, high, "ranges")


def _looks_fixed(name: str) -> str:
    """Why ``name`` looks like a fact rather than a hyperparameter ("" when it does not)."""
    parts = name.split("_")
    if "PEAK" in name and "LR" not in parts:  # PEAK_LR is the schedule's top learning rate, no fact
        return "looks like a hardware fact"
    for marks, why in _LEFT_ALONE:
        if any(p in marks for p in parts):
            return why
    return ""


def search_space(constants: list[Constant], settings: TuneSection) -> Space:
    """The space the tune agent searches over ``constants`` (from every editable file)."""
    names = [c.name for c in constants]
    named = set(settings.include) | set(settings.ranges)
    dims: list[Dimension] = []
    left: dict[str, str] = {}
    warnings: list[str] = []
    for c in constants:
        if names.count(c.name) > 1:
            left[c.name] = "defined in more than one editable file"
            continue
        if c.name in settings.exclude:
            left[c.name] = "in [agent.tune] exclude"
            continue
        if settings.include and c.name not in settings.include:
            left[c.name] = "not in [agent.tune] include"
            continue
        fixed = _looks_fixed(c.name)
        if fixed and c.name not in named:
            left[c.name] = f"{fixed}; name it in [agent.tune] include to tune it"
            continue
        dim = _ranged(c, *settings.ranges[c.name]) if c.name in settings.ranges else _default(c)
        if isinstance(dim, str):
            left[c.name] = dim
            warnings.append(f"tune: {c.name} ({c.file}) {dim}")
        else:
            dims.append(dim)
    for name in sorted(named - set(names)):
        warnings.append(f"tune: {name} is named in [agent.tune] but no editable file defines it")
    return Space(tuple(dims), left, tuple(warnings))
