"""A run's state, with one owner: the ledger on disk and what the workers read in memory.

:class:`RunState` sits in front of the run's :class:`~overnight.run.ledger.Ledger` as a
write-through cache (the shape of optuna's cached storage): every event of a run is
one call, which writes the ledger in one transaction and then memory, under one lock.
While the run goes on nothing else writes experiments or measurements (opening a run,
overnight.run.start, mends the ledger before; `overnight verify` records its own measurements
after, each under the run's lock), so the two cannot disagree. The memory, and the queries
that read it, are its base :class:`~overnight.run.standing.Standing` (overnight.run.standing):
readers get immutable values (experiments are frozen, collections are copied).

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
construction. Thread-safety: every method may be called from any worker thread; each takes
the one lock of the standing, and watchers are called under it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import replace

from overnight.bookkeeping import SetAside, Undone
from overnight.errors import OvernightError, RunStateError
from overnight.git import Branch
from overnight.judge.noise import Gain, mean
from overnight.records import DISTURBED, ON_BRANCH, Experiment, Measured, Note, Status, now_iso
from overnight.run import faults
from overnight.run.ledger import Ledger
from overnight.run.standing import Standing


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


class RunState(Standing):
    """The one owner of a run's state; see the module docstring."""

    def __init__(self, ledger: Ledger, branch: Branch) -> None:
        self._ledger = ledger
        self._branch = branch
        self._watchers: list[Watcher] = []
        self._branch_seen: tuple[object, ...] | None = None  # the branch's stamp when last found in place
        super().__init__(ledger)  # the standing, read from the ledger
        self._ledger.written_elsewhere()  # from here on, only this run writes its ledger

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher(event, experiment)`` after every event.

        Watchers are called in the order of the events, under the state's lock, from the
        thread that caused the event: memory and ledger agree while they look, and nothing
        changes meanwhile. A watcher should be quick, and may read the state.
        """
        self._watchers.append(watcher)

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
