"""What every worker needs to know of a run: its baseline, its best, its history and its measurements.

One Standing is shared by the run's workers (threads of the controller); every
method takes its lock, and readers get copies, so a worker never sees half an update.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from overnight.judge import Noise
from overnight.ledger import Ledger
from overnight.records import MEASURED, Experiment, Status


@dataclass
class Standing:
    """The run as the controller knows it."""

    baseline: Experiment | None = None
    best: Experiment | None = None
    history: list[Experiment] = field(default_factory=list)  # finished experiments, in id order of finishing
    samples: dict[tuple[int, int], list[float]] = field(default_factory=dict)  # (experiment, round) → values
    running: dict[int, Experiment] = field(default_factory=dict)  # in flight, once their hypothesis is known
    seeds: dict[tuple[int, int], int] = field(default_factory=dict)  # (experiment, round) → next free seed
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @classmethod
    def load(cls, ledger: Ledger) -> Standing:
        standing = cls()
        for m in ledger.measurements():
            key = (m.experiment, m.round)
            if m.value is not None:
                standing.samples.setdefault(key, []).append(m.value)
            # failed measurements used their seeds too: a resumed run must not measure on them again
            standing.seeds[key] = max(standing.seeds.get(key, 0), m.seed + 1)
        for exp in ledger.experiments():
            if exp.status in MEASURED and exp.metric is not None and not standing.values(exp.id):
                standing.samples[(exp.id, 0)] = [exp.metric]  # recorded before measurements were kept one by one
            standing.add(exp)
        return standing

    def add(self, exp: Experiment) -> None:
        """A finished experiment joins the history; a baseline or a keep becomes the best."""
        with self.lock:
            self.running.pop(exp.id, None)
            self.history.append(exp)
            if exp.status is Status.BASELINE:
                self.baseline = self.best = exp
            elif exp.status is Status.KEEP:
                self.best = exp

    def update(self, exp: Experiment) -> None:
        """A recorded experiment changed (the best, re-measured): replace it everywhere."""
        with self.lock:
            self.history = [exp if e.id == exp.id else e for e in self.history]
            if self.best is not None and self.best.id == exp.id:
                self.best = exp
            if self.baseline is not None and self.baseline.id == exp.id:
                self.baseline = exp

    def latest(self, exp: Experiment) -> Experiment:
        """The standing's current copy of ``exp`` (re-estimates update it), else ``exp`` itself."""
        with self.lock:
            for known in (self.best, self.baseline, *reversed(self.history)):
                if known is not None and known.id == exp.id:
                    return known
            return exp

    def start(self, exp: Experiment) -> None:
        """An experiment is in flight (other workers' agents see its hypothesis)."""
        with self.lock:
            self.running[exp.id] = exp

    def snapshot(self) -> tuple[Experiment | None, Experiment | None, tuple[Experiment, ...], tuple[Experiment, ...]]:
        """(baseline, best, finished history, experiments in flight), consistent with each other."""
        with self.lock:
            return self.baseline, self.best, tuple(self.history), tuple(self.running.values())

    def round_of(self, experiment_id: int) -> int:
        with self.lock:
            return max((r for (e, r) in self.samples if e == experiment_id), default=0)

    def values(self, experiment_id: int, round: int | None = None) -> list[float]:
        """The measured values of an experiment's latest round (or of ``round``)."""
        with self.lock:
            which = self.round_of(experiment_id) if round is None else round
            return list(self.samples.get((experiment_id, which), []))

    def next_seed(self, experiment_id: int, round: int) -> int:
        """Reserve the next seed of an experiment's round (two workers never measure on the same seed)."""
        with self.lock:
            key = (experiment_id, round)
            seed = max(self.seeds.get(key, 0), len(self.samples.get(key, [])))
            self.seeds[key] = seed + 1
            return seed

    def add_value(self, experiment_id: int, value: float, round: int = 0) -> None:
        with self.lock:
            self.samples.setdefault((experiment_id, round), []).append(value)

    def noise(self, exclude: Iterable[int] = ()) -> Noise:
        """The noise pooled over every experiment measured more than once (but ``exclude``)."""
        skip = set(exclude)
        with self.lock:
            return Noise.pooled([v for (e, _), v in self.samples.items() if e not in skip])
