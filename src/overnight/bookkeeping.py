"""What the harness records of an experiment, typed and kept apart from what its agent reports.

:class:`Bookkeeping` holds the harness's facts (how its processes were held, runs set aside,
rebases, the guards it broke, what it was judged against, its screen, an undo); the agent's own
report stays a plain dict (``Experiment.info``, ``Proposal.info``). In the ledger and in `overnight
log --format json` both are one ``info`` object, as before the split: :meth:`Bookkeeping.split`
takes the facts back out of it on read, and a value under a fact's name that does not have the
fact's shape stays with the agent's keys (an agent could write any key under the old merge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any, ClassVar


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entry(value: object, keys: tuple[str, ...]) -> dict[str, Any]:
    """``value`` as one JSON object with exactly ``keys``; ValueError when it is not."""
    if not isinstance(value, dict) or set(value) != set(keys):
        raise ValueError(f"not an object with {', '.join(keys)}: {value!r}")
    return value


def _texts(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not a list of strings: {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Rebase:
    """One rebase of an experiment's change onto a newer best: ``{"from": commit, "onto": id}`` in ``info``."""

    commit: str  # the commit it was on before ("from")
    onto: int  # the experiment it was moved on top of

    def to_json(self) -> dict[str, Any]:
        return {"from": self.commit, "onto": self.onto}

    @classmethod
    def from_json(cls, value: object) -> Rebase:
        found = _entry(value, ("from", "onto"))
        if not isinstance(found["from"], str) or not _is_int(found["onto"]):
            raise ValueError(f"not a rebase: {value!r}")
        return cls(found["from"], found["onto"])


@dataclass(frozen=True)
class SetAside:
    """One measurement left out of every estimate because the machine disturbed it (kind DISTURBED)."""

    round: int
    seed: int
    value: float
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"round": self.round, "seed": self.seed, "value": self.value, "why": self.why}

    @classmethod
    def from_json(cls, value: object) -> SetAside:
        found = _entry(value, ("round", "seed", "value", "why"))
        if not (_is_int(found["round"]) and _is_int(found["seed"]) and _is_number(found["value"])):
            raise ValueError(f"not a measurement set aside: {value!r}")
        if not isinstance(found["why"], str):
            raise ValueError(f"not a measurement set aside: {value!r}")
        return cls(found["round"], found["seed"], found["value"], found["why"])


@dataclass(frozen=True)
class Undone:
    """Why a keep was undone (recorded a discard), and on how many runs it had been kept."""

    reason: str
    at_runs: int

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "at_runs": self.at_runs}

    @classmethod
    def from_json(cls, value: object) -> Undone:
        found = _entry(value, ("reason", "at_runs"))
        if not isinstance(found["reason"], str) or not _is_int(found["at_runs"]):
            raise ValueError(f"not an undone keep: {value!r}")
        return cls(found["reason"], found["at_runs"])


@dataclass(frozen=True)
class Judged:
    """The best a discard was judged against, as it was then: its id, runs and estimate (None without runs)."""

    id: int
    runs: int
    estimate: float | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "runs": self.runs, "estimate": self.estimate}

    @classmethod
    def from_json(cls, value: object) -> Judged:
        found = _entry(value, ("id", "runs", "estimate"))
        estimate = found["estimate"]
        if not (_is_int(found["id"]) and _is_int(found["runs"]) and (estimate is None or _is_number(estimate))):
            raise ValueError(f"not a best judged against: {value!r}")
        return cls(found["id"], found["runs"], estimate)


@dataclass(frozen=True)
class Screen:
    """A candidate judged on its first run (the screen): ``z``, the standard errors of its gain beyond the
    threshold, None when the noise was not known yet. ``info["screen_z"]`` holds ``z`` (null when None)."""

    z: float | None

    @classmethod
    def from_json(cls, value: object) -> Screen:
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return cls(value)
        raise ValueError(f"not a z: {value!r}")


@dataclass(frozen=True)
class Bookkeeping:
    """What the harness records of an experiment, one typed fact per field; the agent's part is
    ``Experiment.info``. Only the harness writes these (the measurer, the state, the loop).

    The ledger and `log --format json` hold both in one ``info`` object, as before this type:
    each fact that is set under its key (:meth:`to_json`; ``screen`` as ``screen_z``), an unset
    one (empty, None) absent. Read back, :meth:`split` takes these keys out again; every other key
    is the agent's. An agent cannot set a fact: its keys named like one are left out of its
    ``info`` (see ``Proposal.info``).
    """

    # how its processes were held, as of its last run: "cgroup" (see overnight.process.cgroup) or "tree"
    containment: str | None = None
    flags: tuple[str, ...] = ()  # for a reviewer, of its last run that had any: e.g. the metric printed twice
    set_aside: tuple[SetAside, ...] = ()  # its measurements the machine disturbed, left out of its estimate
    rebased: tuple[Rebase, ...] = ()  # each time its change was moved onto a newer best (``Experiment.round``)
    broken_guards: tuple[str, ...] = ()  # why it broke each guard it broke: better on the metric, discarded
    judged_against: Judged | None = None  # the best a discard was judged against, as it was then
    screen: Screen | None = None  # it was judged on its first run: how far from the threshold
    undone: Undone | None = None  # a keep undone later (now a discard): why

    # Each fact's key in the stored ``info`` object, by field: its name, but for ``screen``.
    KEYS: ClassVar[Mapping[str, str]] = MappingProxyType(
        {n: n for n in ("containment", "flags", "set_aside", "rebased", "broken_guards", "judged_against", "undone")}
        | {"screen": "screen_z"}
    )

    def to_json(self) -> dict[str, Any]:
        """The facts that are set, under their keys, JSON-ready (the harness's part of the stored ``info``)."""
        found: dict[str, Any] = {}
        if self.containment is not None:
            found["containment"] = self.containment
        if self.flags:
            found["flags"] = list(self.flags)
        if self.set_aside:
            found["set_aside"] = [a.to_json() for a in self.set_aside]
        if self.rebased:
            found["rebased"] = [r.to_json() for r in self.rebased]
        if self.broken_guards:
            found["broken_guards"] = list(self.broken_guards)
        if self.judged_against is not None:
            found["judged_against"] = self.judged_against.to_json()
        if self.screen is not None:
            found["screen_z"] = self.screen.z
        if self.undone is not None:
            found["undone"] = self.undone.to_json()
        return found

    @classmethod
    def split(cls, stored: dict[str, Any]) -> tuple[Bookkeeping, dict[str, Any]]:
        """A stored ``info`` object taken apart: the harness's facts, and the rest (the agent's keys, in order).

        A value under a fact's key that is not of the fact's shape was not written by the harness (an
        agent could set these keys before they were kept apart): it stays the agent's, as it was.
        """
        facts: dict[str, Any] = {}
        for name, key in cls.KEYS.items():
            if key in stored:
                try:
                    facts[name] = _parsed(name, stored[key])
                except ValueError:
                    continue
        taken = {cls.KEYS[name] for name in facts}
        return cls(**facts), {k: v for k, v in stored.items() if k not in taken}

    @classmethod
    def apart(cls, reported: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """What an agent reported (``Proposal.info``) as the experiment's ``info``: its keys less those named
        like a fact, which are left out (a stored ``info`` holds one value per key: the harness's); and those."""
        names = set(cls.KEYS.values())
        return {k: v for k, v in reported.items() if k not in names}, tuple(k for k in reported if k in names)

    def merge(self, newer: Bookkeeping) -> Bookkeeping:
        """These facts with every fact ``newer`` sets (not empty, not None) replacing its own."""
        changes = {f.name: getattr(newer, f.name) for f in fields(newer)}
        return replace(self, **{name: value for name, value in changes.items() if value not in ((), None)})


def _parsed(name: str, value: object) -> object:
    """The stored ``value`` of the fact ``name`` as its field holds it; ValueError when not of its shape."""
    if name == "containment":
        if not isinstance(value, str):
            raise ValueError(f"not a containment: {value!r}")
        return value
    if name in ("flags", "broken_guards"):
        return _texts(value)
    if name in ("set_aside", "rebased"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"not a list of {name}: {value!r}")
        entry = SetAside if name == "set_aside" else Rebase
        return tuple(entry.from_json(v) for v in value)
    if name == "judged_against":
        return Judged.from_json(value)
    if name == "screen":
        return Screen.from_json(value)
    assert name == "undone", name
    return Undone.from_json(value)
