"""What every worker needs to know of a run: its baseline, its best, its history and its measurements."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from overnight.judge import Noise
from overnight.ledger import Ledger
from overnight.records import Experiment, Status

MEASURED = (Status.BASELINE, Status.KEEP, Status.DISCARD)


@dataclass
class Standing:
    """The run as the controller knows it. Owned by the controller; workers read it."""

    baseline: Experiment | None = None
    best: Experiment | None = None
    history: list[Experiment] = field(default_factory=list)
    samples: dict[int, list[float]] = field(default_factory=dict)  # experiment id → its measured values

    @classmethod
    def load(cls, ledger: Ledger) -> Standing:
        standing = cls()
        for m in ledger.measurements():
            if m.value is not None:
                standing.samples.setdefault(m.experiment, []).append(m.value)
        for exp in ledger.experiments():
            if exp.status in MEASURED and exp.metric is not None and exp.id not in standing.samples:
                standing.samples[exp.id] = [exp.metric]  # recorded before measurements were kept one by one
            standing.add(exp)
        return standing

    def add(self, exp: Experiment) -> None:
        """A finished experiment joins the history; a baseline or a keep becomes the best."""
        self.history.append(exp)
        if exp.status is Status.BASELINE:
            self.baseline = self.best = exp
        elif exp.status is Status.KEEP:
            self.best = exp

    def update(self, exp: Experiment) -> None:
        """A recorded experiment changed (the best, re-measured): replace it everywhere."""
        self.history = [exp if e.id == exp.id else e for e in self.history]
        if self.best is not None and self.best.id == exp.id:
            self.best = exp
        if self.baseline is not None and self.baseline.id == exp.id:
            self.baseline = exp

    def values(self, experiment_id: int) -> list[float]:
        return self.samples.get(experiment_id, [])

    def add_value(self, experiment_id: int, value: float) -> None:
        self.samples.setdefault(experiment_id, []).append(value)

    def noise(self, exclude: Iterable[int] = ()) -> Noise:
        """The noise pooled over every experiment measured more than once (but ``exclude``)."""
        skip = set(exclude)
        return Noise.pooled(v for k, v in self.samples.items() if k not in skip)
