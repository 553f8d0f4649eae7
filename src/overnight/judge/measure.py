"""Measuring an experiment until the judge decides.

A worker's :class:`Measurer` measures a candidate once (step 6 of the loop); while
:func:`overnight.judge.rule.decide` is unsure, it measures it again, and the best too when
the best has fewer measurements, in the worker's worktree (checked out at each commit
in turn) (step 7). The n-th measurement of a commit runs with ``OVERNIGHT_SEED=n``, so
candidate and best see the same seeds in the same order and seeded noise cancels.
Every measurement is recorded through the run's state; an experiment's estimate is the
mean of its measurements, so the best is re-estimated each time it is measured again.

A measurement that fails ends its experiment: :class:`~overnight.records.Ended` says
with which status and why.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from overnight import secrets
from overnight.bookkeeping import Bookkeeping, Judged, Screen
from overnight.executors import Executor, Job, Measurement
from overnight.executors.perform import holdout
from overnight.git.worktree import Worktree
from overnight.judge import guards
from overnight.judge import rule as judge
from overnight.judge.noise import compare, mean
from overnight.judge.rule import Action, Decision
from overnight.process import sandbox
from overnight.process.load import others_share
from overnight.records import DISTURBED, Ended, Experiment, Measured, Status, now_iso
from overnight.run.slots import Slots
from overnight.run.start import Run

log = logging.getLogger(__name__)

MAX_ASIDE = 5  # runs of one experiment set aside as disturbed, at most: a change may make the metric bimodal


class Measurer:
    """Runs one worker's measurements, in its worktree, and records them in the run's state."""

    def __init__(
        self, run: Run, executor: Executor, worktree: Worktree, stop: threading.Event, slots: Slots | None = None
    ) -> None:
        self.run = run
        self.state = run.state
        self.executor = executor
        self.worktree = worktree
        self.stop = stop
        self.slots = slots or Slots()
        self.needs_setup = True
        self._measured: int | None = None  # the experiment measured last in the worktree
        self._expected: dict[str, str] = {}  # untracked protected files, as the first setup here left them
        self._notes: dict[int, Bookkeeping] = {}  # experiment → what judging it noted, for its record
        self.goal = run.task.config.metric.goal_enum
        task = run.task.config.task
        self.sandbox = sandbox.for_task(worktree.path, run.task.root, task.network) if task.sandbox == "bwrap" else None

    # -- the loop's steps 6 and 7 --------------------------------------------------------------------

    def first(self, exp: Experiment, written: Callable[[], str]) -> Measurement:
        """Measure a new candidate once; ``written`` waits for its commit, still being written meanwhile."""
        return self.once(exp, "candidate", written=written)

    def until_judged(self, exp: Experiment, best: Experiment) -> Decision:
        """Measure ``exp`` (measured once) and ``best`` as the judge asks, until it keeps or discards.

        A first run far worse than the noise explains is checked against a run of the best
        taken right after it; when that run is disturbed too (a burst of load), both are set
        aside and the candidate is measured again. A keep is followed up
        (:data:`~overnight.judge.rule.FOLLOW_UP_RUNS`), and its held-out metric and estimated
        gain are recorded. Raises Ended when a measurement of the candidate fails or the run is stopped.
        """
        rule, goal = self.run.task.config.judge, self.run.task.config.metric.goal_enum
        checked = False
        self.set_aside_disturbed(exp)  # its first run too: taken in a burst of load, it is taken again
        while True:
            mine = self.state.values(exp.id)
            if not mine:  # its only run was set aside as disturbed
                self._candidate(exp)
                continue
            theirs, others = self.state.values(best.id), self.state.noise(exclude=(exp.id, best.id))
            decision = judge.decide(mine, theirs, others, goal, rule)
            if decision.action is Action.DISCARD and len(mine) == 1 and not checked:
                checked = True
                if judge.suspicious(mine[0], theirs, others, goal):
                    self._retaken(exp, best)
                    continue  # judged again on the runs it has now, whichever of them were set aside
            if decision.action in (Action.KEEP, Action.DISCARD):
                break
            if self.stop.is_set():
                raise Ended(Status.INTERRUPTED, "stopped while measuring again")
            if decision.action is Action.MEASURE_BEST:
                failed = self._best(exp, best)
                if failed:
                    return Decision(Action.DISCARD, failed, decision.improvement)
                best = self.state.get(best.id)
            else:
                self._candidate(exp)
        if decision.action is Action.KEEP:
            broken = self.broken_guards(exp, best)
            if broken:  # better on the metric, but what else it made worse is not allowed: no follow-up runs
                self._note(exp.id, Bookkeeping(broken_guards=tuple(broken)))
                return Decision(
                    Action.DISCARD, f"{'; '.join(broken)} (on the metric: {decision.reason})", decision.improvement
                )
            return self._kept(exp, best, decision)
        self._screened(exp, best, decision)
        return decision

    def broken_guards(self, exp: Experiment, best: Experiment) -> list[str]:
        """Why ``exp`` breaks each guard of ``[metric] guards`` it breaks (see overnight.judge.guards): its mean over
        the runs the judge used against the best's mean over its runs. Empty when every guard holds."""
        rules = guards.parse_all(self.run.task.config.metric.guards)
        if not rules:
            return []
        return guards.broken(rules, self.secondary(exp, rules), self.secondary(best, rules))

    def secondary(self, exp: Experiment, rules: tuple[guards.Guard, ...]) -> dict[str, float]:
        """The guarded metrics of ``exp``: means over the runs of its latest round that count."""
        exp = self.state.get(exp.id)
        names = {g.name for g in rules}
        measured = self.state.measurements(exp.id, exp.round)
        return guards.means(measured, names) if measured else guards.last_reported(exp, names)

    def _candidate(self, exp: Experiment) -> None:
        """Measure the candidate once more; a run far worse than its others is set aside."""
        number = len(self.state.values(exp.id)) + 1
        last = self.once(exp, "candidate")
        if last.status is not None:
            raise Ended(last.status, f"measurement {number} failed: {last.reason}")
        self.set_aside_disturbed(exp)

    def set_aside_disturbed(self, exp: Experiment) -> None:
        """Set aside the runs of ``exp`` the machine disturbed: taken while other programs used much more of it
        than usual (``[judge] disturbed_load``), or worse than its best run by more than the run's noise
        explains (judge.disturbed_runs). At most MAX_ASIDE per experiment: a change may make the metric bimodal."""
        exp = self.state.get(exp.id)
        if len(exp.bookkeeping.set_aside) >= MAX_ASIDE:
            return
        runs = [m for m in self.state.measurements(exp.id, exp.round) if m.value is not None and m.kind != DISTURBED]
        jump, usual = self.run.task.config.judge.disturbed_load, self.state.usual_contention()
        last = runs[-1].contention if runs else None
        if jump and usual is not None and last is not None and last - usual > jump:
            why = (
                f"taken while other programs used {100 * (last - usual):.0f}% more of the machine than usual: disturbed"
            )
            self.state.set_aside(exp.id, exp.round, runs[-1].seed, why)
            return
        others = self.state.noise(exclude=(exp.id,))
        for index in judge.disturbed_runs([m.value for m in runs if m.value is not None], others, self.goal):
            self.state.set_aside(exp.id, exp.round, runs[index].seed, "far worse than its other runs: disturbed")

    def _best(self, exp: Experiment, best: Experiment) -> str:
        """Measure the best once more, for ``exp`` (its log gets the output); "" or why it failed.

        Its estimate is then the mean of all its runs; a best no longer better than the best it
        replaced is undone (see overnight.judge.rule.undone).
        """
        self.worktree.checkout(best.commit)
        again = self.once(best, "best", log_id=exp.id)
        self.worktree.checkout(exp.commit)
        if again.status is not None:
            return f"the best (experiment {best.id}) failed when measured again: {again.reason}"
        self.set_aside_disturbed(best)
        parent = self.state.parent_of(best)
        if best.status is not Status.KEEP or parent is None:
            self.state.estimate(best.id)
            return ""
        # A keep's gain over the best it replaced is estimated again from the same runs as its value.
        config = self.run.task.config
        mine, theirs = self.state.values(best.id), self.state.values(parent.id)
        others = self.state.noise(exclude=(best.id, parent.id))
        self.state.estimate(best.id, compare(mine, theirs, others, self.goal, config.judge))
        reason = judge.undone(mine, theirs, others, self.goal, config.judge)
        if reason:
            self.state.undo(best.id, reason)
        return ""

    def _retaken(self, exp: Experiment, best: Experiment) -> bool:
        """Measure a candidate whose first run is suspiciously bad once more, before it is discarded on that run.

        When the new run is not suspicious, the first was disturbed (a burst of load): it is
        set aside and the candidate is judged on the new one (True). Otherwise the change
        really is that bad (False), and both runs stay. Either way the caller judges it again
        on the runs it has now (measuring the new run may itself set the first aside).
        """
        self._candidate(exp)
        values, seeds = self.state.values(exp.id), self.state.measurements(exp.id, exp.round)
        others = self.state.noise(exclude=(exp.id, best.id))
        if len(values) < 2 or judge.suspicious(values[-1], self.state.values(best.id), others, self.goal):
            return False
        first = next(m for m in seeds if m.kind != DISTURBED and m.value == values[0])
        self.state.set_aside(exp.id, exp.round, first.seed, "its first run, far worse than the next: disturbed")
        log.warning("experiment %d: its first run was disturbed; judged on the next", exp.id)
        return True

    def _kept(self, exp: Experiment, best: Experiment, decision: Decision) -> Decision:
        """Follow a keep up, then record its estimated gain (on every run, follow-up included) and held-out metric."""
        noise = self.state.noise()
        followed = 0
        if not (noise.df and noise.ss == 0):  # runs that repeat exactly gain nothing from another
            for _ in range(judge.FOLLOW_UP_RUNS):
                if self.stop.is_set() or self.once(exp, "follow-up").status is not None:
                    break
                followed += 1
        config = self.run.task.config
        mine, theirs = self.state.values(exp.id), self.state.values(best.id)
        others = self.state.noise(exclude=(exp.id, best.id))
        gain = compare(mine, theirs, others, self.goal, config.judge)
        doubt = judge.undone(mine, theirs, others, self.goal, config.judge)
        if doubt:  # its follow-up undid it before it was ever recorded kept
            return Decision(Action.DISCARD, f"looked better, but with its follow-up run {doubt}", gain.gain)
        self.state.update(
            replace(
                self.state.get(exp.id),
                holdout=self.holdout(exp),
                improvement=gain.gain,
                ci_low=gain.low,
                ci_high=gain.high,
            )
        )
        if not followed:  # nothing was added: the estimate is the one the keep was made on
            return decision
        return replace(decision, reason=f"{decision.reason}; with its follow-up: {gain.text()}")

    def _screened(self, exp: Experiment, best: Experiment, decision: Decision) -> None:
        """Note what a discard was judged against (recorded when it ends: see :meth:`notes_for`); after a
        first-run discard, maybe measure the best again.

        A best measured lucky makes every candidate look worse at the screen; when the
        candidates screened out against its current estimate say so (judge.recheck), it is
        measured once more. Not for a metric without noise: its estimate is exact.
        """
        theirs = self.state.values(best.id)
        self._note(exp.id, Bookkeeping(judged_against=Judged(best.id, len(theirs), mean(theirs) if theirs else None)))
        if len(self.state.values(exp.id)) != 1:
            return
        self._note(exp.id, Bookkeeping(screen=Screen(decision.z)))
        noise = self.state.noise()
        if noise.df and noise.ss == 0:
            return
        screened = self.state.screened(best.id, len(theirs), decision.z)
        if judge.recheck(screened) and not self.stop.is_set():
            self._best(exp, best)

    def _note(self, experiment_id: int, noted: Bookkeeping) -> None:
        self._notes[experiment_id] = self._notes.get(experiment_id, Bookkeeping()).merge(noted)

    def notes_for(self, experiment_id: int) -> Bookkeeping:
        """What the judging of an experiment noted for its record (``broken_guards``, ``judged_against``,
        ``screen``), to merge into its bookkeeping; once."""
        return self._notes.pop(experiment_id, Bookkeeping())

    # -- one measurement ---------------------------------------------------------------------------

    def once(
        self,
        exp: Experiment,
        kind: str,
        *,
        log_id: int | None = None,
        written: Callable[[], str] | None = None,
    ) -> Measurement:
        """Measure ``exp``'s commit (checked out in the worktree) once more, in a slot; record it.

        Seeds count from 0 in each round of ``exp`` (a rebase starts a new round). ``log_id``
        names the experiment whose log gets the output (a best measured for a candidate).
        """
        return self._once(exp, kind, log_id=log_id, written=written)[0]

    def _once(
        self,
        exp: Experiment,
        kind: str,
        *,
        log_id: int | None = None,
        written: Callable[[], str] | None = None,
    ) -> tuple[Measurement, int]:
        """:meth:`once`, and the seed it measured with."""
        if self._measured == exp.id and exp.commit:
            # Measured just before: start again from its commit, not from what that run left
            # behind (outputs, edited files), so repeated measurements stay independent.
            self.worktree.checkout(exp.commit)
        seed = self.state.next_seed(exp.id, exp.round)
        job = self._job(exp, exp.id if log_id is None else log_id, seed, gate=seed == 0, written=written)
        with self.slots.hold() as slot_env:
            self._wait_for_quiet()
            self.state.measuring(job.experiment_id if log_id is None else log_id)
            load_start = os.getloadavg()[0]
            try:
                measurement = self.executor.measure(replace(job, env={**job.env, **slot_env}), self.stop)
            finally:
                self.worktree.ran()
                self._measured = exp.id
            load = (load_start, os.getloadavg()[0])
        if measurement.setup_done:
            self.needs_setup = False
            if job.setup and not self._expected:  # setup just made them: every later run must find them so
                self._expected = measurement.untracked
        if measurement.harness_changed:
            self.needs_setup = True  # setup may make them again; if it does not, every run is refused
        result = measurement.result
        measured = Measured(
            experiment=exp.id,
            seed=seed,
            value=measurement.value if measurement.status is None else None,
            kind=kind,
            metrics=measurement.metrics,
            duration_s=round(result.duration_s, 3) if result else None,
            peak_memory_mb=result.peak_memory_mb if result else None,
            at=now_iso(),
            round=exp.round,
            load=load,
            contention=result.contention if result else None,
        )
        self.state.measure(measured, lambda e: _facts(e, measurement))
        return measurement, seed

    def _wait_for_quiet(self) -> None:
        """Before a run, wait (``[judge] wait_for_quiet_s`` at most) while other programs use much more of the
        machine than usual: a run taken in a burst of load would only be set aside and taken again."""
        rule = self.run.task.config.judge
        usual, last = self.state.usual_contention(), self.state.last_contention()
        if not rule.wait_for_quiet_s or not rule.disturbed_load or usual is None or last is None:
            return
        if last - usual <= rule.disturbed_load:
            return  # the last run was quiet: no reason to look (and no second to spend looking)
        deadline = time.monotonic() + rule.wait_for_quiet_s
        while not self.stop.is_set() and time.monotonic() < deadline:
            now = others_share(1.0)
            if now is None or now - usual <= rule.disturbed_load:
                return

    def holdout(self, exp: Experiment) -> float | None:
        """The held-out metric of the commit in the worktree, when ``[metric] holdout`` is set."""
        if not self.run.task.config.metric.holdout:
            return None
        value, reason = holdout(self._job(exp, exp.id, 0, gate=False), self.stop)
        if value is None:
            log.warning("experiment %d: no held-out metric: holdout: %s", exp.id, reason)
        return value

    def _protected(self, parent: str) -> tuple[str, ...]:
        """What a run must not change, as far as commits tell: the parent's protected files (a change
        may add only editable ones) and the worktree's link to git. The untracked files ``[task]
        protected`` names (data made by setup) are found by :func:`~overnight.executors.perform.perform`."""
        task = self.run.task
        link = os.path.relpath(self.worktree.path / ".git", task.in_worktree(self.worktree.path))
        return tuple(sorted({*task.files_at(parent)[1], link}))

    def _job(
        self, exp: Experiment, log_id: int, seed: int, gate: bool, written: Callable[[], str] | None = None
    ) -> Job:
        task = self.run.task
        return Job(
            experiment_id=exp.id,
            task_dir=task.in_worktree(self.worktree.path),
            config=task.config,
            log_path=self.run.paths.log(log_id),
            env=secrets.environment(keep=task.config.task.pass_env),
            setup=self.needs_setup,
            tag=self.run.tag,
            token=f"{self.run.id}:{log_id}",
            gate=gate,
            seed=seed,
            commit=exp.commit,
            root=task.root,
            task_rel=task.rel,
            protected=self._protected(exp.parent or exp.commit),
            protected_globs=task.config.task.protected,
            sandbox=self.sandbox,
            expected=self._expected,
            written=written,
        )


def _facts(exp: Experiment, measurement: Measurement) -> Experiment:
    """``exp`` with what its last run reported: metrics, time, memory, exit code, flags for a reviewer."""
    result = measurement.result
    facts = replace(exp.bookkeeping, flags=tuple(measurement.flags)) if measurement.flags else exp.bookkeeping
    if result is not None:  # how its processes were held (see overnight.process.cgroup)
        facts = replace(facts, containment=result.containment)
    return replace(
        exp,
        metrics=measurement.metrics,
        duration_s=round(result.duration_s, 3) if result else None,
        peak_memory_mb=result.peak_memory_mb if result else None,
        exit_code=result.exit_code if result else None,
        bookkeeping=facts,
    )
