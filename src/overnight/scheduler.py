"""The controller of a run: baseline first, then experiments until a stop condition.

Stop conditions are checked between experiments: ``max_experiments`` (counted in
this invocation, the baseline excluded), ``max_time_s`` (the experiment running
when time is up finishes, so a run overruns by at most one experiment), the agents'
spending (``max_cost_usd``, ``max_tokens``, over the whole run), ``give_up_after``
experiments in a row without a measurement (something systematic is broken: better
to stop than to spin all night), and the ``stop`` event (Ctrl-C: the running
experiment is interrupted and recorded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from overnight import host, workspace
from overnight.agents import Agent
from overnight.errors import TaskBrokenError
from overnight.executors import Executor
from overnight.loop import Report, Worker
from overnight.records import Experiment, Status
from overnight.run import Run
from overnight.standing import Standing

log = logging.getLogger(__name__)

_MEASURED = (Status.BASELINE, Status.KEEP, Status.DISCARD)


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


class Scheduler:
    def __init__(
        self,
        run: Run,
        agent: Agent | None,
        executor: Executor,
        limits: Limits = Limits(),
        *,
        stop: threading.Event | None = None,
        report: Report | None = None,
    ) -> None:
        self.run = run
        self.agent = agent
        self.executor = executor
        self.limits = limits
        self.stop = stop or threading.Event()
        self.worker = Worker(run, agent, executor, stop=self.stop, host=host.describe(), report=report)

    def _stop_reason(self, ran: int, started: float, standing: Standing) -> str:
        if self.stop.is_set():
            return "stopped by the user"
        streak = self.limits.give_up_after
        recent = standing.history[-streak:] if streak else []
        if streak and len(recent) == streak and not any(e.status in _MEASURED for e in recent):
            last = recent[-1]
            return (
                f"gave up: the last {streak} experiments produced no measurement (the last: {last.status.value}: "
                f"{last.reason[:200]}); fix the task or the agent, then resume (or pass --give-up-after 0)"
            )
        if self.limits.max_experiments is not None and ran >= self.limits.max_experiments:
            return f"reached --max-experiments {self.limits.max_experiments}"
        if self.limits.max_time_s is not None and time.monotonic() - started >= self.limits.max_time_s:
            return f"reached --max-time ({self.limits.max_time_s:g}s)"
        if self.limits.max_cost_usd is not None or self.limits.max_tokens is not None:
            tokens, cost = self.run.ledger.spent()
            if self.limits.max_cost_usd is not None and cost >= self.limits.max_cost_usd:
                return f"reached --max-cost-usd {self.limits.max_cost_usd:g} (spent ${cost:.4f})"
            if self.limits.max_tokens is not None and tokens >= self.limits.max_tokens:
                return f"reached --max-tokens {self.limits.max_tokens} (spent {tokens} tokens)"
        return ""

    def _baseline(self, standing: Standing, tip: str, runs: int | None = None) -> str:
        """Measure the baseline when the run has none; returns a stop reason, or ""."""
        if standing.baseline is not None:
            return ""
        baseline = self.worker.baseline(tip, standing, runs)
        standing.add(baseline)
        if baseline.status is Status.INTERRUPTED:
            return "stopped by the user"
        if baseline.status is not Status.BASELINE:
            raise TaskBrokenError(self._broken_message(baseline))
        return ""

    def run_loop(self) -> Summary:
        """Run until a stop condition; the worktree is removed and the agent closed at the end."""
        started = time.monotonic()
        standing = Standing.load(self.run.ledger)
        had_baseline, count = standing.baseline is not None, 0  # count: experiments after the baseline
        tip = workspace.resolve(self.run.task.root, self.run.branch_ref) or self.run.start_commit
        self.worker.open(tip)
        try:
            stopped = self._baseline(standing, tip)
            while not stopped:
                stopped = self._stop_reason(count, started, standing)
                if not stopped:
                    standing.add(self.worker.step(standing))
                    count += 1
        finally:
            self._close()
        counts = Counter(e.status.value for e in self.run.ledger.experiments())
        ran = count + (not had_baseline)
        return Summary(self.run.tag, self.run.branch, standing.baseline, standing.best, ran, dict(counts), stopped)

    def noise(self, runs: int) -> tuple[Experiment, list[float]]:
        """Measure the unchanged best ``runs`` more times (the baseline of a new run: ``runs`` times).

        Returns the best, re-estimated, and the values measured now; all are recorded in
        the ledger, where they inform the judge.
        """
        standing = Standing.load(self.run.ledger)
        tip = workspace.resolve(self.run.task.root, self.run.branch_ref) or self.run.start_commit
        self.worker.open(tip)
        try:
            if standing.baseline is None:
                self._baseline(standing, tip, runs)
                assert standing.best is not None
                return standing.best, list(standing.values(standing.best.id))
            best = standing.best
            assert best is not None
            before = len(standing.values(best.id))
            self.worker.worktree.checkout(best.commit)
            for _ in range(runs):
                measured = self.worker.measurer.measure(best.id, standing, "noise")
                if measured.status is not None:
                    raise TaskBrokenError(
                        f"the best (experiment {best.id}) failed when measured again: {measured.reason}"
                    )
                if self.stop.is_set():
                    break
            best = self.worker.measurer.reestimate(best, standing)
            return best, list(standing.values(best.id))[before:]
        finally:
            self._close()

    def _close(self) -> None:
        self.worker.close()
        if self.agent is not None:
            self.agent.close()
        self.executor.close()

    def _broken_message(self, baseline: Experiment) -> str:
        log_path = self.run.paths.log(baseline.id)
        tail = ""
        if log_path.exists():
            lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            tail = "\n    " + "\n    ".join(lines)
        untracked = [
            p for p in workspace.untracked_files(self.run.task.root) if workspace.task_relative(p, self.run.task.rel)
        ]
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
