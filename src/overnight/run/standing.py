"""A run's standing in memory: what the workers read of the run, kept by its state.

:class:`Standing` is the memory half of :class:`~overnight.run.state.RunState`: the
experiments as they last stand, the history in the order it finished, the baseline and
the best, every measurement by (experiment, round) with the values that count (set-aside
ones left out), the seeds reserved, other programs' share of the machine, the changes tried
on each parent and the lab notebook. It is read from the ledger once, at construction; after that
only the events of :class:`~overnight.run.state.RunState` write it (the ledger first, then
here), so what is read here is what the ledger holds.

Readers get immutable values (experiments are frozen, collections are copied). Two calls
write memory alone, nothing in the ledger: :meth:`Standing.next_seed` reserves a seed (a
resumed run finds the next free one from the measurements) and :meth:`Standing.screened`
notes a candidate screened out (a resumed run starts these anew).
Thread-safety: every public method takes the state's one lock (reentrant, shared with the events).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from overnight.judge.noise import Noise
from overnight.records import DISTURBED, MEASURED, ON_BRANCH, Experiment, Measured, Note, Status, Usage, chain
from overnight.run.ledger import Ledger


class Standing:
    """A run's standing in memory, read from ``ledger``; see the module docstring."""

    def __init__(self, ledger: Ledger) -> None:
        self._lock = threading.RLock()
        self._experiments: dict[int, Experiment] = {}  # every experiment of the run, the latest version
        self._finished: list[int] = []  # finished experiments, in the order they finished
        self._baseline: int | None = None
        self._best: int | None = None
        self._samples: dict[tuple[int, int], list[float]] = {}  # (experiment, round) → measured values
        self._measured: dict[tuple[int, int], list[Measured]] = {}  # (experiment, round) → its measurements
        self._seeds: dict[tuple[int, int], int] = {}  # (experiment, round) → the next free seed
        self._tried: dict[tuple[str, str], int] = {}  # (parent, change key) → the last finished experiment with it
        self._contention: list[float] = []  # other programs' share of the machine, per measurement, latest last
        # (best, its runs) → the screen z of each candidate screened out against that estimate (not recorded:
        # a resumed run starts these anew)
        self._screened: dict[tuple[int, int], list[float | None]] = {}
        self._notes: list[Note] = []  # the lab notebook, oldest first
        self._load(ledger)

    def _load(self, ledger: Ledger) -> None:
        self._notes = ledger.notes()
        for m in ledger.measurements():
            key = (m.experiment, m.round)
            self._measured.setdefault(key, []).append(m)
            if m.value is not None and m.kind != DISTURBED:
                self._samples.setdefault(key, []).append(m.value)
            if m.contention is not None:
                self._contention.append(m.contention)
            # failed measurements used their seeds too: a resumed run must not measure on them again
            self._seeds[key] = max(self._seeds.get(key, 0), m.seed + 1)
        for exp in ledger.experiments():
            if exp.status in MEASURED and exp.metric is not None and not self._values(exp.id, exp.round):
                self._samples[(exp.id, exp.round)] = [exp.metric]  # recorded before measurements were kept one by one
            self._experiments[exp.id] = exp
            if exp.status is not Status.RUNNING:
                self._finished.append(exp.id)
                self._note_tried(exp)
        points = chain(self._experiments.values())
        if points:
            self._baseline, self._best = points[0].id, points[-1].id

    @property
    def baseline(self) -> Experiment | None:
        with self._lock:
            return None if self._baseline is None else self._experiments[self._baseline]

    @property
    def best(self) -> Experiment | None:
        """The current best: the last keep, else the baseline (the tip of the run branch)."""
        with self._lock:
            return None if self._best is None else self._experiments[self._best]

    def get(self, experiment_id: int) -> Experiment:
        """The latest version of an experiment."""
        with self._lock:
            return self._experiments[experiment_id]

    def history(self) -> tuple[Experiment, ...]:
        """Finished experiments, in the order they finished."""
        with self._lock:
            return tuple(self._experiments[i] for i in self._finished)

    def running(self) -> tuple[Experiment, ...]:
        """Experiments in flight whose hypothesis is known (what other workers are trying)."""
        with self._lock:
            return tuple(e for e in self._experiments.values() if e.status is Status.RUNNING and e.hypothesis)

    def experiments(self) -> tuple[Experiment, ...]:
        """Every experiment, in id order (as the ledger lists them)."""
        with self._lock:
            return tuple(self._experiments[i] for i in sorted(self._experiments))

    def snapshot(self) -> tuple[Experiment | None, Experiment | None, tuple[Experiment, ...], tuple[Experiment, ...]]:
        """(baseline, best, finished history, experiments in flight), consistent with each other."""
        with self._lock:
            return self.baseline, self.best, self.history(), self.running()

    def values(self, experiment_id: int, round: int | None = None) -> list[float]:
        """The measured values of an experiment's latest round (or of ``round``)."""
        with self._lock:
            return self._values(experiment_id, self._experiments[experiment_id].round if round is None else round)

    def _values(self, experiment_id: int, round: int) -> list[float]:
        return list(self._samples.get((experiment_id, round), []))

    def samples(self) -> dict[tuple[int, int], list[float]]:
        """Every measured value, by (experiment, round)."""
        with self._lock:
            return {key: list(values) for key, values in self._samples.items()}

    def noise(self, exclude: Iterable[int] = ()) -> Noise:
        """The noise pooled over every experiment measured more than once (but ``exclude``)."""
        skip = set(exclude)
        with self._lock:
            return Noise.pooled([v for (e, _), v in self._samples.items() if e not in skip])

    def parent_of(self, exp: Experiment) -> Experiment | None:
        """The point of the run branch ``exp`` was proposed on (the best it was judged against), if any."""
        with self._lock:
            for known in self._experiments.values():
                if known.commit == exp.parent and known.status in ON_BRANCH and known.id != exp.id:
                    return known
            return None

    def measurements(self, experiment_id: int, round: int) -> list[Measured]:
        """An experiment's measurements of one round, as recorded (set-aside ones included), by seed."""
        with self._lock:
            return sorted(self._measured.get((experiment_id, round), []), key=lambda m: m.seed)

    def usual_contention(self) -> float | None:
        """The share of the machine other programs use when it is quiet: the lowest tenth over the run's last 50
        measurements (bursts of load are the exception, not the usual; where another job holds a core for tens
        of seconds at a time, a quarter of a short night's runs may fall in its bursts)."""
        with self._lock:
            recent = sorted(self._contention[-50:])
            return recent[len(recent) // 10] if len(recent) >= 3 else None

    def screened(self, best_id: int, best_runs: int, z: float | None) -> list[float | None]:
        """Note a candidate screened out at ``z`` against the best's estimate from ``best_runs`` runs; all so noted."""
        with self._lock:
            found = self._screened.setdefault((best_id, best_runs), [])
            found.append(z)
            return list(found)

    def last_contention(self) -> float | None:
        """The share of the machine other programs used during the run's last measurement, when known."""
        with self._lock:
            return self._contention[-1] if self._contention else None

    def tried(self, parent: str, change_key: str) -> Experiment | None:
        """The last finished experiment that made the change ``change_key`` on ``parent``, if any (interrupted ones aside)."""
        with self._lock:
            found = self._tried.get((parent, change_key))
            return None if found is None else self._experiments[found]

    def spent(self) -> Usage:
        """What the run's agents have spent so far, every invocation together."""
        with self._lock:
            return sum(
                (Usage(e.tokens_in or 0, e.tokens_out or 0, e.cost_usd) for e in self._experiments.values()), Usage()
            )

    def next_seed(self, experiment_id: int, round: int) -> int:
        """Reserve the next seed of an experiment's round (two workers never measure on the same seed)."""
        with self._lock:
            key = (experiment_id, round)
            seed = max(self._seeds.get(key, 0), len(self._samples.get(key, [])))
            self._seeds[key] = seed + 1
            return seed

    def notes(self) -> tuple[Note, ...]:
        """The lab notebook, oldest first."""
        with self._lock:
            return tuple(self._notes)

    def _note_tried(self, exp: Experiment) -> None:
        # An interrupted experiment says nothing of its change: it may be proposed and measured again.
        if exp.change_key and exp.status is not Status.INTERRUPTED:
            self._tried[(exp.parent, exp.change_key)] = exp.id
