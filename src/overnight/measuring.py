"""Measuring an experiment until the judge can decide.

A worker measures a candidate once; while :func:`overnight.judge.decide` is
uncertain it measures it again, and the best too when the best has fewer
measurements, in the worker's worktree (checked out at each commit in turn). The
n-th measurement of a commit runs with ``OVERNIGHT_SEED=n``, so candidate and best
see the same seeds in the same order and seeded noise cancels. Every measurement
is recorded in the ledger and in the run's standing; the best's estimate is the
mean of all its measurements, so it is re-estimated each time it is re-measured.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import replace

from overnight import judge, sandbox, secrets
from overnight.executors import Executor
from overnight.judge import Action, Decision
from overnight.measure import Job, Measurement, holdout
from overnight.records import Experiment, Measured, Status
from overnight.run import Run, now_iso
from overnight.slots import Slots
from overnight.standing import Standing
from overnight.worktree import Worktree

log = logging.getLogger(__name__)


class Failed(Exception):
    """A measurement after the first one failed; the experiment ends with this status."""

    def __init__(self, status: Status, reason: str, measurement: Measurement) -> None:
        super().__init__(reason)
        self.status, self.reason, self.measurement = status, reason, measurement


class Measurer:
    """Runs measurements for one worker, in its worktree, and records them."""

    def __init__(
        self, run: Run, executor: Executor, worktree: Worktree, stop: threading.Event, slots: Slots | None = None
    ) -> None:
        self.run = run
        self.executor = executor
        self.worktree = worktree
        self.stop = stop
        self.slots = slots or Slots()
        self.needs_setup = True
        self._measured: int | None = None  # the experiment measured last in the worktree
        self._expected: dict[str, str] = {}  # untracked protected files, as the first setup here left them
        self._files: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        task = run.task.config.task
        self.sandbox = sandbox.for_task(worktree.path, run.task.root, task.network) if task.sandbox == "bwrap" else None

    def files(self, commit: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(editable, protected) tracked files of the task at ``commit`` (cached: commits never change)."""
        if commit not in self._files:
            self._files[commit] = self.run.task.files_at(commit)
        return self._files[commit]

    def _protected(self, parent: str) -> tuple[str, ...]:
        """What a run must not change, as far as commits tell: the parent's protected files (a change
        may add only editable ones) and the worktree's link to git. The untracked files ``[task]
        protected`` names (data made by setup) are found by :func:`~overnight.measure.measure` itself."""
        link = os.path.relpath(self.worktree.path / ".git", self.run.task.in_worktree(self.worktree.path))
        return tuple(sorted({*self.files(parent)[1], link}))

    def _job(self, exp: Experiment, log_id: int, seed: int, gate: bool) -> Job:
        task = self.run.task
        env = {
            **secrets.environment(keep=task.config.task.pass_env),
            "OVERNIGHT_BUDGET_S": f"{task.config.task.budget_s:g}",
            "OVERNIGHT_EXPERIMENT_ID": str(exp.id),
            "OVERNIGHT_TAG": self.run.tag,
        }
        return Job(
            experiment_id=exp.id,
            task_dir=task.in_worktree(self.worktree.path),
            config=task.config,
            log_path=self.run.paths.log(log_id),
            env=env,
            setup=self.needs_setup,
            token=f"{self.run.id}:{log_id}",
            gate=gate,
            seed=seed,
            commit=exp.commit,
            root=task.root,
            task_rel=task.rel,
            protected=self._protected(exp.parent or exp.commit),
            sandbox=self.sandbox,
            protected_globs=task.config.task.protected,
            expected=self._expected,
        )

    def measure(
        self, exp: Experiment, standing: Standing, kind: str, *, log_id: int | None = None, round_no: int = 0
    ) -> Measurement:
        """Measure ``exp``'s commit (checked out in the worktree) once more, in a slot; record it.

        ``round_no`` counts the times ``exp`` was rebased onto a newer best: each round's
        measurements start again at seed 0.
        """
        if self._measured == exp.id and exp.commit:
            # Measured just before: start again from its commit, not from what that run left
            # behind (outputs, edited files), so repeated measurements stay independent.
            self.worktree.checkout(exp.commit)
        seed = standing.next_seed(exp.id, round_no)
        job = self._job(exp, exp.id if log_id is None else log_id, seed, gate=seed == 0)
        with self.slots.hold() as slot_env:
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
        self.run.ledger.add_measurement(
            Measured(
                experiment=exp.id,
                seed=seed,
                value=measurement.value,
                kind=kind,
                metrics=measurement.metrics,
                duration_s=round(result.duration_s, 3) if result else None,
                peak_memory_mb=result.peak_memory_mb if result else None,
                at=now_iso(),
                round=round_no,
                load=load,
            )
        )
        if measurement.value is not None and measurement.status is None:
            standing.add_value(exp.id, measurement.value, round_no)
        return measurement

    def judge(
        self, exp: Experiment, best: Experiment, standing: Standing, first: Measurement, round_no: int = 0
    ) -> tuple[Decision, Measurement]:
        """Measure ``exp`` (measured once) and ``best`` as the judge asks, until it decides."""
        config = self.run.task.config
        last = first
        while True:
            decision = judge.decide(
                standing.values(exp.id, round_no),
                standing.values(best.id),
                standing.noise(exclude=(exp.id, best.id)),
                config.metric.goal_enum,
                config.judge,
            )
            if decision.action in (Action.KEEP, Action.DISCARD):
                return decision, last
            if self.stop.is_set():
                raise Failed(Status.INTERRUPTED, "stopped while measuring again", last)
            if decision.action is Action.MEASURE_BEST:
                self.worktree.checkout(best.commit)
                again = self.measure(best, standing, "best", log_id=exp.id, round_no=standing.round_of(best.id))
                self.worktree.checkout(exp.commit)
                if again.status is not None:
                    reason = f"the best (experiment {best.id}) failed when measured again: {again.reason}"
                    return Decision(Action.DISCARD, reason, decision.improvement), last
                best = self.reestimate(best, standing)
            else:
                number = len(standing.values(exp.id, round_no)) + 1
                last = self.measure(exp, standing, "candidate", round_no=round_no)
                if last.status is not None:
                    raise Failed(last.status, f"measurement {number} failed: {last.reason}", last)

    def debias(self, exp: Experiment, standing: Standing, round_no: int = 0) -> None:
        """Measure a newly kept candidate ``NEW_BEST_RUNS`` more times: the runs that got it kept were lucky ones.

        Skipped when the noise is exactly zero (a deterministic metric gains nothing from repeats).
        """
        noise = standing.noise()
        if noise.df and noise.ss == 0:
            return
        for _ in range(judge.NEW_BEST_RUNS):
            if self.stop.is_set() or self.measure(exp, standing, "best", round_no=round_no).status is not None:
                return

    def reestimate(self, exp: Experiment, standing: Standing) -> Experiment:
        """Record ``exp``'s estimate as the mean of all its latest round's measurements.

        Under the standing's lock, from its latest copy of ``exp``: two workers re-measuring
        the same best record their estimates one after the other, the later one with every value.
        """
        with standing.lock:
            values = standing.values(exp.id)
            updated = replace(standing.latest(exp), metric=judge.mean(values), runs=len(values))
            self.run.ledger.record(updated)
            standing.update(updated)
        return updated

    def holdout(self, exp: Experiment) -> float | None:
        """The held-out metric of the commit in the worktree, when ``[metric] holdout`` is set."""
        if not self.run.task.config.metric.holdout:
            return None
        value, reason = holdout(self._job(exp, exp.id, 0, gate=False), self.stop)
        if value is None:
            log.warning("experiment %d: no held-out metric: holdout: %s", exp.id, reason)
        return value
