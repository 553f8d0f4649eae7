"""The controller of a run: the baseline first, then N workers until a stop condition.

Workers are threads of the controller, each with its own worktree and its own
agent, all proposing on the one shared best. While the controller holds the run's lock,
the run's state (:class:`~overnight.run.state.RunState`) is the one writer of the ledger and
of the run branch (a keep is a compare-and-swap on the best, see overnight.run.state); before
it, opening the run (overnight.run.start) recovers and mends them, and after it `overnight
verify` (overnight.verify.arms) records its measurements, each in its own phase under the same
lock. Experiments run in
:class:`~overnight.run.slots.Slots`; agents think outside them, so with more workers
than slots proposals are ready the moment a slot frees.

Stop conditions are checked before each experiment starts: ``max_experiments``
(counted in this invocation, the baseline excluded), ``max_time_s`` (experiments
running when time is up finish, so a run overruns by at most one experiment per
worker), the agents' spending (``max_cost_usd``, ``max_tokens``, over the whole run),
``give_up_after`` experiments in a row without a measurement (something systematic
is broken: better to stop than to spin all night), and the ``stop`` event (Ctrl-C:
running experiments are interrupted and recorded).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from overnight import git
from overnight.agents import Agent, brief
from overnight.errors import TaskBrokenError
from overnight.executors import Executor
from overnight.judge import guards
from overnight.records import MEASURED, Experiment, Status
from overnight.run import host
from overnight.run.loop import Worker
from overnight.run.slots import Slots
from overnight.run.start import Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    max_experiments: int | None = None
    max_time_s: float | None = None
    max_cost_usd: float | None = None  # what the run's agents may spend, all invocations together
    max_tokens: int | None = None
    give_up_after: int = 10  # stop after this many experiments in a row without a measurement (0: never)


@dataclass(frozen=True)
class Summary:
    """How a run invocation ended."""

    tag: str
    branch: str
    baseline: Experiment | None
    best: Experiment | None
    ran: int  # experiments run by this invocation (the baseline included when it ran)
    counts: dict[str, int] = field(default_factory=dict)  # every experiment of the run, by status
    stopped: str = ""  # why this invocation ended


class Controller:
    """Runs a run's workers. ``agents`` holds one agent per worker (or None to only measure)."""

    def __init__(
        self,
        run: Run,
        agents: Agent | Sequence[Agent] | None,
        executor: Executor,
        limits: Limits = Limits(),
        *,
        stop: threading.Event | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.run = run
        self.state = run.state  # shared by the workers (and the live view)
        self.agents: list[Agent] = [] if agents is None else [agents] if isinstance(agents, Agent) else list(agents)
        self.executor = executor
        self.limits = limits
        self.stop = stop or threading.Event()
        self.slots = slots or Slots.for_task(run.task.config.task.exclusive, len(self.agents))
        self.workers = [
            Worker(run, agent, executor, index=index, stop=self.stop, host=host.describe(), slots=self.slots)
            for index, agent in enumerate(self.agents or [None])
        ]
        self.worker = self.workers[0]  # measures the baseline and noise runs
        self._lock = threading.Lock()
        self._started = 0  # experiments started by this invocation
        self._stopped = ""
        self._errors: list[BaseException] = []

    def _stop_reason(self, started: float) -> str:
        if self.stop.is_set():
            return "stopped by the user"
        streak = self.limits.give_up_after
        history = self.state.history()
        recent = history[-streak:] if streak else ()
        if streak and len(recent) == streak and not any(e.status in MEASURED for e in recent):
            last = recent[-1]
            return (
                f"gave up: the last {streak} experiments produced no measurement (the last: {last.status.value}: "
                f"{last.reason[:200]}); fix the task or the agent, then resume (or pass --give-up-after 0)"
            )
        if self.limits.max_experiments is not None and self._started >= self.limits.max_experiments:
            return f"reached --max-experiments {self.limits.max_experiments}"
        if self.limits.max_time_s is not None and time.monotonic() - started >= self.limits.max_time_s:
            return f"reached --max-time ({self.limits.max_time_s:g}s)"
        if self.limits.max_cost_usd is not None or self.limits.max_tokens is not None:
            spent = self.state.spent()
            tokens, cost = spent.tokens_in + spent.tokens_out, spent.cost_usd or 0.0
            if self.limits.max_cost_usd is not None and cost >= self.limits.max_cost_usd:
                return f"reached --max-cost-usd {self.limits.max_cost_usd:g} (spent ${cost:.4f})"
            if self.limits.max_tokens is not None and tokens >= self.limits.max_tokens:
                return f"reached --max-tokens {self.limits.max_tokens} (spent {tokens} tokens)"
        return ""

    def _may_start(self, started: float) -> bool:
        """Reserve the next experiment, unless a stop condition holds (checked by one worker at a time)."""
        with self._lock:
            if not self._stopped:
                self._stopped = self._stop_reason(started)
            if self._stopped:
                return False
            self._started += 1
            return True

    def _work(self, worker: Worker, started: float) -> None:
        try:
            while self._may_start(started):
                worker.step()
        except BaseException as exc:  # one worker's failure stops them all; the first error is reported
            with self._lock:
                self._errors.append(exc)
                self._stopped = self._stopped or f"stopped: {exc}"
            self.stop.set()

    def _progress(self, experiment_id: int, started: float) -> brief.Progress:
        """How far the night has come, for the brief of ``experiment_id``."""
        return brief.Progress(
            experiment=experiment_id,
            kept=sum(1 for e in self.state.history() if e.status is Status.KEEP),
            started=self._started,
            max_experiments=self.limits.max_experiments,
            elapsed_s=time.monotonic() - started,
            max_time_s=self.limits.max_time_s,
        )

    def _baseline(self, tip: str, runs: int | None = None) -> str:
        """Measure the baseline when the run has none; returns a stop reason, or ""."""
        if self.state.baseline is not None:
            return ""
        baseline = self.worker.baseline(tip, runs)
        if baseline.status is Status.INTERRUPTED:
            return "stopped by the user"
        if baseline.status is not Status.BASELINE:
            raise TaskBrokenError(self._broken_message(baseline))
        return ""

    def _check_guards(self) -> None:
        """Refuse to run while the best does not report a metric a guard names: no change could be kept.

        A guard the best itself breaks (an absolute one) is only warned about: changes must meet it.
        """
        best = self.state.best
        rules = guards.parse_all(self.run.task.config.metric.guards)
        if best is None or not rules:
            return
        found = self.worker.measurer.secondary(best, rules)
        missing = sorted({g.name for g in rules} - set(found))
        if missing:
            printed = sorted({*best.metrics, *guards.HARNESS_METRICS})
            raise TaskBrokenError(
                f"[metric] guards name {', '.join(missing)}, which the best (experiment {best.id}) did not report; "
                f"its runs reported: {', '.join(printed)}. Fix the name in [metric] guards, "
                f"or make the run print a '{missing[0]}: <number>' line"
            )
        for reason in guards.broken([g for g in rules if not g.relative], found, found):
            log.warning("the best (experiment %d) already %s: a change is kept only when it meets it", best.id, reason)

    def run_workers(self) -> Summary:
        """Run until a stop condition; worktrees are removed and agents closed at the end.

        What happens meanwhile is told to the run state's watchers (``run.state.watch``).
        """
        started = time.monotonic()
        if self.limits.max_time_s is not None:  # a measurement that can only wait (for a node) gives up then
            self.executor.deadline = started + self.limits.max_time_s
        had_baseline = self.state.baseline is not None
        for worker in self.workers:
            worker.progress = lambda experiment_id: self._progress(experiment_id, started)
        tip = self.run.branch.tip() or self.run.start_commit
        for worker in self.workers:
            worker.open(tip)
        try:
            self._stopped = self._baseline(tip)
            self._check_guards()
            threads = [
                threading.Thread(target=self._work, args=(w, started), name=f"worker-{w.index}", daemon=True)
                for w in self.workers
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():  # short joins keep the main thread responsive to signals
                    thread.join(0.2)
        finally:
            self._close()
        if self._errors:
            raise self._errors[0]
        counts = Counter(e.status.value for e in self.state.experiments())
        baseline, best = self.state.baseline, self.state.best
        ran = self._started + (not had_baseline)
        stopped = "stopped by the user" if self.stop.is_set() and not self._errors else self._stopped
        return Summary(self.run.tag, self.run.branch.name, baseline, best, ran, dict(counts), stopped)

    def noise(self, runs: int) -> tuple[Experiment, list[float]] | None:
        """Measure the unchanged best ``runs`` more times (the baseline of a new run: ``runs`` times).

        Returns the best, re-estimated, and the values measured now; all are recorded in
        the ledger, where they inform the judge. Stopped (Ctrl-C) it returns what was measured
        so far, or None when it stopped before a baseline existed.
        """
        tip = self.run.branch.tip() or self.run.start_commit
        self.worker.open(tip)
        try:
            if self.state.baseline is None:
                if self._baseline(tip, runs):
                    return None  # stopped by the user before the baseline was measured
                best = self.state.best
                assert best is not None
                return best, self.state.values(best.id)
            best = self.state.best
            assert best is not None
            before = len(self.state.values(best.id))
            self.worker.worktree.checkout(best.commit)
            for _ in range(runs):
                measured = self.worker.measurer.once(best, "noise")
                if measured.status is Status.INTERRUPTED or self.stop.is_set():
                    break  # what was measured before the stop still counts
                if measured.status is not None:
                    raise TaskBrokenError(
                        f"the best (experiment {best.id}) failed when measured again: {measured.reason}"
                    )
            best = self.state.estimate(best.id)
            return best, self.state.values(best.id)[before:]
        finally:
            self._close()

    def _close(self) -> None:
        """Close every worker, agent and the executor, even when some fail; then their error is raised (others chained)."""
        with contextlib.ExitStack() as closing:  # runs every callback, in reverse order of pushing
            closing.callback(self.executor.close)
            for agent in self.agents:
                closing.callback(agent.close)
            for worker in self.workers:
                closing.callback(worker.close)

    def _broken_message(self, baseline: Experiment) -> str:
        log_path = self.run.paths.log(baseline.id)
        tail = ""
        if log_path.exists():
            lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            tail = "\n    " + "\n    ".join(lines)
        untracked = [p for p in git.untracked_files(self.run.task.root) if git.task_relative(p, self.run.task.rel)]
        hint = ""
        if untracked:
            hint = "\nnote: experiments run on committed files only; these task files are not committed: " + ", ".join(
                untracked[:5]
            )
        name = self.run.task.config.metric.name
        return (
            f"the baseline (experiment {baseline.id}, the unchanged code) did not produce the metric {name!r}: "
            f"{baseline.status.value}: {baseline.reason}\nits log, {log_path}, ends with:{tail or ' (empty)'}{hint}\n"
            "fix the task so the unchanged code prints the metric, commit, and start a new run"
        )
