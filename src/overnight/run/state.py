"""A run's state, with one owner: the ledger on disk and what the workers read in memory.

:class:`RunState` sits in front of the run's :class:`~overnight.run.ledger.Ledger` as a
write-through cache (the shape of optuna's cached storage): every event of a run is
one call, which writes the ledger in one transaction and then memory, under one lock.
While the run goes on nothing else writes experiments or measurements (opening a run,
overnight.run.start, mends the ledger before; `overnight verify` records its own measurements
after, each under the run's lock), so the two cannot disagree; readers
get immutable values (experiments are frozen, collections are copied).

The events, in the order an experiment meets them::

    begin     an id is taken and the experiment recorded as running
    propose   its hypothesis (and agent, usage) is known: other workers see it in flight
    update    anything else known while it runs (its commit, a held-out score)
    run       a measurement for it starts (of it, or of the best it is compared with); nothing is written
    measure   one measurement; an experiment in flight also takes the run's facts (metrics, time)
    rebase    moved onto a newer best, to be measured there anew (a new round)
    estimate  a finished experiment (the best) measured again: its estimate is the mean of all
    aside     a measurement set aside as disturbed (a burst of load): kept in the ledger, left out of estimates
    finish    it ended with any status but keep
    keep      it ended kept: recorded, then the run branch moves to it (compare-and-swap)
    undo      the best, measured again, is no longer better than the best it replaced: the run
              branch moves back to that one, and the keep is recorded as a discard
    note      its agent left notes in the run's lab notebook (any time after propose)

The run's state is handed to the controller, its workers and their measurers once, at
construction. Thread-safety: every method may be called from any worker thread.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace

from overnight.bookkeeping import SetAside, Undone
from overnight.errors import OvernightError, RunStateError
from overnight.git import Branch
from overnight.judge.noise import Gain, Noise, mean
from overnight.records import DISTURBED, MEASURED, ON_BRANCH, Experiment, Measured, Note, Status, Usage, chain, now_iso
from overnight.run import faults
from overnight.run.ledger import Ledger


class Event(enum.StrEnum):
    """What a :class:`RunState` call recorded (see the module docstring)."""

    BEGIN = "begin"
    PROPOSE = "propose"
    UPDATE = "update"
    RUN = "run"
    MEASURE = "measure"
    REBASE = "rebase"
    ESTIMATE = "estimate"
    ASIDE = "aside"
    FINISH = "finish"
    KEEP = "keep"
    UNDO = "undo"
    NOTE = "note"


Watcher = Callable[[Event, Experiment], None]


class BestMoved(Exception):
    """A keep was refused: another worker kept a change since this one was proposed.

    ``best`` is the newer best; the change must be rebased onto it and measured there.
    """

    def __init__(self, best: Experiment) -> None:
        super().__init__(f"the best moved to experiment {best.id}")
        self.best = best


class RunState:
    """The one owner of a run's state; see the module docstring."""

    def __init__(self, ledger: Ledger, branch: Branch) -> None:
        self._ledger = ledger
        self._branch = branch
        self._lock = threading.RLock()
        self._watchers: list[Watcher] = []
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
        self._branch_seen: tuple[object, ...] | None = None  # the branch's stamp when last found in place
        self._notes: list[Note] = []  # the lab notebook, oldest first
        self._load()
        self._ledger.written_elsewhere()  # from here on, only this run writes its ledger

    def _load(self) -> None:
        self._notes = self._ledger.notes()
        for m in self._ledger.measurements():
            key = (m.experiment, m.round)
            self._measured.setdefault(key, []).append(m)
            if m.value is not None and m.kind != DISTURBED:
                self._samples.setdefault(key, []).append(m.value)
            if m.contention is not None:
                self._contention.append(m.contention)
            # failed measurements used their seeds too: a resumed run must not measure on them again
            self._seeds[key] = max(self._seeds.get(key, 0), m.seed + 1)
        for exp in self._ledger.experiments():
            if exp.status in MEASURED and exp.metric is not None and not self._values(exp.id, exp.round):
                self._samples[(exp.id, exp.round)] = [exp.metric]  # recorded before measurements were kept one by one
            self._experiments[exp.id] = exp
            if exp.status is not Status.RUNNING:
                self._finished.append(exp.id)
                self._note_tried(exp)
        points = chain(self._experiments.values())
        if points:
            self._baseline, self._best = points[0].id, points[-1].id

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher(event, experiment)`` after every event.

        Watchers are called in the order of the events, under the state's lock, from the
        thread that caused the event: memory and ledger agree while they look, and nothing
        changes meanwhile. A watcher should be quick, and may read the state.
        """
        self._watchers.append(watcher)

    # -- reading -----------------------------------------------------------------------------------

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

    # -- events ------------------------------------------------------------------------------------

    def begin(self, make: Callable[[int], Experiment]) -> Experiment:
        """Record ``make(id)`` as running under the next free id (ids never repeat or skip)."""
        with self._lock:
            exp = self._ledger.begin(make)
            self._experiments[exp.id] = exp
            self._tell(Event.BEGIN, exp)
        return exp

    def propose(self, exp: Experiment) -> Experiment:
        """The running ``exp`` has its hypothesis: recorded, and visible to the other workers."""
        return self._revise(Event.PROPOSE, exp)

    def update(self, exp: Experiment) -> Experiment:
        """Record what became known of the running ``exp``."""
        return self._revise(Event.UPDATE, exp)

    def rebase(self, exp: Experiment) -> Experiment:
        """The running ``exp`` was moved onto a newer best (its commit, parent and ``bookkeeping.rebased``)."""
        return self._revise(Event.REBASE, exp)

    def _revise(self, event: Event, exp: Experiment) -> Experiment:
        if exp.status is not Status.RUNNING:
            raise ValueError(f"experiment {exp.id} is {exp.status.value}: only a running one can be revised")
        with self._lock:
            self._check_running(exp.id)
            with self._ledger.transaction() as db:
                Ledger.write_experiment(db, exp)
            self._experiments[exp.id] = exp
            self._tell(event, exp)
        return exp

    def measuring(self, experiment_id: int) -> None:
        """A measurement for the running experiment starts (a notice for watchers: nothing is written)."""
        with self._lock:
            exp = self._experiments[experiment_id]
            if exp.status is Status.RUNNING:
                self._tell(Event.RUN, exp)

    def measure(self, measured: Measured, facts: Callable[[Experiment], Experiment] | None = None) -> Experiment:
        """Record one measurement of ``measured.experiment``; returns the experiment as it now stands.

        An experiment in flight takes its estimate (the mean of its round's values, and how
        many) and, through ``facts``, what the run reported (metrics, time, memory);
        a finished one (the best, measured again) is left to :meth:`estimate`.
        """
        with self._lock:
            exp = self._experiments[measured.experiment]
            key = (measured.experiment, measured.round)
            values = self._samples.get(key, []) + ([measured.value] if measured.value is not None else [])
            running = exp.status is Status.RUNNING
            if running:
                if measured.value is not None:
                    exp = replace(exp, metric=mean(values), runs=len(values))
                exp = facts(exp) if facts else exp
            with self._ledger.transaction() as db:
                Ledger.write_measurement(db, measured)
                if running:
                    Ledger.write_experiment(db, exp)
            if values:
                self._samples[key] = values
            # as the ledger's INSERT OR REPLACE does: one measurement per seed
            self._measured[key] = [m for m in self._measured.get(key, []) if m.seed != measured.seed] + [measured]
            if measured.contention is not None:
                self._contention.append(measured.contention)
            self._seeds[key] = max(self._seeds.get(key, 0), measured.seed + 1)
            self._experiments[exp.id] = exp
            self._tell(Event.MEASURE, exp)
        return exp

    def estimate(self, experiment_id: int, gain: Gain | None = None) -> Experiment:
        """Record a finished experiment's estimate as the mean of all its latest round's measurements,
        and, for a keep, ``gain``: its gain over the best it replaced, from the same runs."""
        with self._lock:
            exp = self._experiments[experiment_id]
            values = self._values(exp.id, exp.round)
            if not values:
                return exp
            exp = replace(exp, metric=mean(values), runs=len(values))
            if gain is not None:
                exp = replace(exp, improvement=gain.gain, ci_low=gain.low, ci_high=gain.high)
            with self._ledger.transaction() as db:
                Ledger.write_experiment(db, exp)
            self._experiments[exp.id] = exp
            self._tell(Event.ESTIMATE, exp)
        return exp

    def set_aside(self, experiment_id: int, round: int, seed: int, reason: str) -> None:
        """Leave a disturbed measurement out of every estimate and of the pooled noise. The ledger keeps it:
        its kind becomes "disturbed", and the experiment's ``bookkeeping.set_aside`` says which and why."""
        with self._lock:
            found = [m for m in self.measurements(experiment_id, round) if m.seed == seed]
            if not found or found[0].kind == DISTURBED or found[0].value is None:
                return
            measured = found[0]
            assert measured.value is not None
            aside = replace(measured, kind=DISTURBED)
            exp = self._experiments[experiment_id]
            values = list(self._samples.get((experiment_id, round), []))
            values.remove(measured.value)
            noted = (*exp.bookkeeping.set_aside, SetAside(round, seed, measured.value, reason))
            exp = replace(exp, bookkeeping=replace(exp.bookkeeping, set_aside=noted))
            if values:
                exp = replace(exp, metric=mean(values), runs=len(values))
            elif exp.status is Status.RUNNING:
                exp = replace(exp, metric=None, runs=0)
            with self._ledger.transaction() as db:
                Ledger.write_measurement(db, aside)
                Ledger.write_experiment(db, exp)
            key = (experiment_id, round)
            self._measured[key] = [aside if m.seed == seed else m for m in self._measured.get(key, [])]
            if values:
                self._samples[(experiment_id, round)] = values
            else:
                self._samples.pop((experiment_id, round), None)
            self._experiments[exp.id] = exp
            self._tell(Event.ASIDE, exp)

    def notes(self) -> tuple[Note, ...]:
        """The lab notebook, oldest first."""
        with self._lock:
            return tuple(self._notes)

    def note(self, experiment_id: int, texts: Iterable[str]) -> tuple[Note, ...]:
        """Add what the agent of ``experiment_id`` wrote to the notebook, one note per text (empty ones skipped)."""
        with self._lock:
            exp = self._experiments[experiment_id]
            at = now_iso()
            top = self._notes[-1].id if self._notes else 0
            added = [
                Note(experiment=exp.id, text=text, worker=exp.worker, agent=exp.agent, at=at, id=top + i + 1)
                for i, text in enumerate(t for t in texts if t)
            ]
            if not added:
                return ()
            with self._ledger.transaction() as db:
                Ledger.write_notes(db, added)
            self._notes += added
            self._tell(Event.NOTE, exp)
        return tuple(added)

    def finish(self, exp: Experiment) -> Experiment:
        """``exp`` ended with its (final) status, any but keep: recorded, and it joins the history.

        A baseline becomes the baseline and the best.
        """
        if exp.status in (Status.RUNNING, Status.KEEP):
            raise ValueError(f"finish() takes a final status other than keep, not {exp.status.value}")
        with self._lock:
            self._end(exp)
            self._tell(Event.FINISH, exp)
        return exp

    def check_untouched(self) -> None:
        """Raise RunStateError when anything but this run wrote its ledger or moved its branch.

        Called before each experiment: an experiment or a person that changed either is
        noticed at once, before the run builds on it, not at the next keep (which would fail
        and be lost) or never. Cheap while nothing changed (a pragma and three stats).
        """
        with self._lock:
            where = f"run {self._branch.name.removeprefix('overnight/')}"
            if self._ledger.written_elsewhere():
                raise RunStateError(
                    f"{where}: its ledger ({self._ledger.path}) was changed by another program while the run "
                    "was going; the run stopped so that its record stays its own. Look at what changed, "
                    "then resume with the same --tag (the ledger is read again) or start a new tag"
                )
            best = self.best
            stamp = self._branch.stamp()
            if best is None or stamp == self._branch_seen:
                return
            tip = self._branch.tip()
            if tip != best.commit:
                found = "was deleted" if tip is None else f"points at {tip[:10]}"
                raise RunStateError(
                    f"{where}: branch {self._branch.name} {found}, which this run did not do (its best is "
                    f"experiment {best.id}, {best.commit[:10]}); the run stopped. Put it back with "
                    f"`git branch -f {self._branch.name} {best.commit[:10]}` and resume, or use another --tag"
                )
            self._branch_seen = stamp

    def keep(self, exp: Experiment) -> Experiment:
        """``exp`` ended kept: record it, then move the run branch to its commit.

        Raises :class:`BestMoved` (recording nothing) when ``exp`` was not proposed on the
        current best. The keep is recorded before the branch moves, so a controller killed
        in between is mended on resume (see overnight.run.start). When the branch was moved by
        something else, the keep is recorded as a discard instead and RunStateError is raised.
        """
        if exp.status is not Status.KEEP:
            raise ValueError(f"keep() takes a kept experiment, not {exp.status.value}")
        with self._lock:
            best = self.best
            assert best is not None, "the baseline comes first"
            if best.commit != exp.parent:
                raise BestMoved(best)
            self._end(exp)
            faults.point("kept")
            try:
                self._branch.move(exp.commit, exp.parent)
            except OvernightError as err:
                reason = f"the run branch moved outside overnight: {err}"
                self._rewrite(replace(exp, status=Status.DISCARD, reason=reason))
                raise RunStateError(
                    f"branch {self._branch.name} was moved by something other than this run; "
                    "the run stopped to avoid overwriting it"
                ) from err
            self._tell(Event.KEEP, exp)
        return exp

    def undo(self, experiment_id: int, reason: str) -> Experiment | None:
        """Undo the keep of the current best ``experiment_id``: the run branch moves back to the best it
        replaced (compare-and-swap) and the keep is recorded as a discard saying why. Nothing happens
        (None) when it is no longer the best: another worker kept on top of it meanwhile."""
        with self._lock:
            best = self.best
            if best is None or best.id != experiment_id or best.status is not Status.KEEP:
                return None
            parent = self.parent_of(best)
            if parent is None:
                return None
            undone = replace(
                best,
                status=Status.DISCARD,
                reason=f"kept, then undone: {reason}",
                bookkeeping=replace(best.bookkeeping, undone=Undone(reason, best.runs)),
            )
            self._branch.move(parent.commit, best.commit)
            self._rewrite(undone)
            self._tell(Event.UNDO, undone)
            return undone

    def _end(self, exp: Experiment) -> None:
        """Write a finished experiment through, and place it (baseline, best). Under the lock."""
        self._check_running(exp.id)
        with self._ledger.transaction() as db:
            Ledger.write_experiment(db, exp)
        self._experiments[exp.id] = exp
        self._finished.append(exp.id)
        self._note_tried(exp)
        self._place(exp)

    def _rewrite(self, exp: Experiment) -> None:
        """Replace a finished experiment's record (a keep undone); the best goes back to the last keep."""
        with self._ledger.transaction() as db:
            Ledger.write_experiment(db, exp)
        self._experiments[exp.id] = exp
        on_branch = [i for i in self._finished if self._experiments[i].status in ON_BRANCH]
        self._best = on_branch[-1] if on_branch else None
        self._tell(Event.FINISH, exp)

    def _note_tried(self, exp: Experiment) -> None:
        # An interrupted experiment says nothing of its change: it may be proposed and measured again.
        if exp.change_key and exp.status is not Status.INTERRUPTED:
            self._tried[(exp.parent, exp.change_key)] = exp.id

    def _place(self, exp: Experiment) -> None:
        if exp.status is Status.BASELINE:
            self._baseline = self._best = exp.id
        elif exp.status is Status.KEEP:
            self._best = exp.id

    def _check_running(self, experiment_id: int) -> None:
        known = self._experiments.get(experiment_id)
        if known is None or known.status is not Status.RUNNING:
            state = "unknown" if known is None else known.status.value
            raise ValueError(f"experiment {experiment_id} is {state}, not running")

    def _tell(self, event: Event, exp: Experiment) -> None:
        for watcher in self._watchers:
            watcher(event, exp)
