"""One worker's loop. Each experiment, in order:

1. record the experiment as running (its id is taken now, so ids never skip)
2. put the worktree at the current best
3. ask the agent for a proposal (it edits the worktree)
4. inspect the change: nothing → no_change; outside the editable files → rejected
5. commit it as ``exp <id>: <hypothesis>`` under ``refs/overnight/<tag>/<id>``
6. measure it: setup (first time) → gate → run → metric
7. judge it against the best, measuring it (and the best) again while the judge is unsure
8. keep: record, then move the run branch to it (compare-and-swap)
9. record the outcome and tell the agent

An experiment that ends early (steps 3, 4 or 6) raises :class:`Ended`, carrying its
status and reason, straight to step 9.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from overnight import faults, git, judge, secrets
from overnight.agents import Agent, Context
from overnight.errors import AgentError, AgentUnavailable, GitError, OvernightError, RunStateError
from overnight.executors import Executor
from overnight.git import task_relative
from overnight.judge import Action
from overnight.measure import Measurement
from overnight.measuring import Failed, Measurer
from overnight.records import MEASURED, Experiment, Status, Usage
from overnight.run import Run, now_iso
from overnight.slots import Slots
from overnight.standing import Standing
from overnight.worktree import Change, Committed, Worktree

log = logging.getLogger(__name__)

Report = Callable[[Experiment], None]


class Ended(Exception):
    """An experiment ended before it could be judged."""

    def __init__(
        self,
        status: Status,
        reason: str,
        measurement: Measurement | None = None,
        experiment: Experiment | None = None,  # the experiment as known when it ended, when updated
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.measurement = measurement
        self.experiment = experiment


class Worker:
    """Runs experiments one after another in its own worktree."""

    def __init__(
        self,
        run: Run,
        agent: Agent | None,
        executor: Executor,
        *,
        index: int = 0,
        stop: threading.Event | None = None,
        host: dict[str, str] | None = None,
        report: Report | None = None,
        slots: Slots | None = None,
        keeping: threading.Lock | None = None,
    ) -> None:
        self.run = run
        self.agent = agent
        self.executor = executor
        self.index = index
        self.stop = stop or threading.Event()
        self.host = host or {}
        self.report = report or (lambda exp: None)
        self.worktree = Worktree(run.task.root, run.paths.worktrees / f"w{index}")
        self.measurer = Measurer(run, executor, self.worktree, self.stop, slots)
        self.keeping = keeping or threading.Lock()  # shared by a run's workers: one keep at a time
        self._fatal: AgentUnavailable | None = None  # raised once its experiment is recorded

    def open(self, commit: str) -> None:
        self.worktree.create(commit)

    def close(self) -> None:
        self.worktree.remove()

    # -- the experiments -----------------------------------------------------------------

    def baseline(self, commit: str, standing: Standing, runs: int | None = None) -> Experiment:
        """Measure the unchanged code at ``commit``: ``runs`` times, else [judge] noise_runs times, at least once."""
        exp = self._begin(parent=commit)
        exp = replace(exp, commit=commit, hypothesis="baseline", agent="")
        self.report(exp)
        try:
            self.worktree.checkout(commit)
            first = measurement = self.measurer.measure(exp, standing, "baseline")
            for _ in range(1, runs or self.run.task.config.judge.noise_runs):
                if measurement.status is not None:
                    break
                measurement = self.measurer.measure(exp, standing, "noise")
            if measurement.status is not None:
                raise Ended(measurement.status, measurement.reason, measurement)
            values = standing.values(exp.id)
            exp = replace(exp, runs=len(values), holdout=self.measurer.holdout(exp))
            return self._finish(exp, Status.BASELINE, "", first, standing, judge.mean(values))
        except Ended as end:
            return self._finish(exp, end.status, end.reason, end.measurement, standing)
        except BaseException as exc:
            self._abort(exp, exc, standing)
            raise
        finally:
            self.worktree.release(next_commit=commit)

    def step(self, standing: Standing) -> Experiment:
        """Run one experiment on the current best; return it as recorded (``standing`` knows it too)."""
        _, best, _, _ = standing.snapshot()
        assert best is not None and best.metric is not None, "the baseline comes first"
        exp = self._begin(parent=best.commit)  # 1
        try:
            self.worktree.checkout(best.commit)  # 2
            exp = self._ask(exp, standing)  # 3
            faults.point("proposed")
            exp, change = self._inspect(exp, standing)  # 4
            committing = self._commit(exp, change)  # 5, written while the experiment runs...
            if self.executor.ships_commits:  # ...unless the experiment runs elsewhere and needs it
                exp = self._committed(exp, committing)
            faults.point("committed")
            first = self.measurer.measure(exp, standing, "candidate")  # 6
            faults.point("measured")
            exp = self._committed(exp, committing)
            if first.status is not None:
                raise Ended(first.status, first.reason, first)
            exp = self._judge_and_keep(exp, best, standing, first)  # 7, 8, 9
        except Ended as end:
            exp = self._finish(end.experiment or exp, end.status, end.reason, end.measurement, standing)  # 9
        except BaseException as exc:
            self._abort(exp, exc, standing)
            raise
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal
        _, now_best, _, _ = standing.snapshot()
        assert now_best is not None
        self.worktree.release(now_best.commit, touched=exp.status is not Status.NO_CHANGE)
        if self.agent is not None:
            self.agent.observe(exp)
        return exp

    def _judge_and_keep(self, exp: Experiment, best: Experiment, standing: Standing, first: Measurement) -> Experiment:
        """Judge ``exp`` against ``best``; keep it if it wins and ``best`` is still the best.

        When another worker kept something meanwhile, the candidate is rebased onto the new
        best (cherry-pick), measured anew and judged again; a conflicting rebase is `stale`.
        """
        round_no = 0
        while True:
            exp, status, reason, last = self._judge(exp, best, standing, first, round_no)  # 7
            mean = judge.mean(standing.values(exp.id, round_no))
            if status is not Status.KEEP:
                return self._finish(exp, status, reason, last, standing, mean)  # 9
            with self.keeping:  # one keep at a time: the best cannot move between the check and the move
                _, current, _, _ = standing.snapshot()
                assert current is not None
                if current.id == best.id:
                    exp = self._finish(exp, status, reason, last, standing, mean)  # 9, recorded before the branch moves
                    faults.point("kept")
                    return self._advance(exp)  # 8
            round_no += 1
            exp, first = self._rebase(exp, current, standing, round_no)
            best = current

    def _rebase(
        self, exp: Experiment, onto: Experiment, standing: Standing, round_no: int
    ) -> tuple[Experiment, Measurement]:
        """Put ``exp``'s change on top of ``onto`` and measure it once there."""
        ref = git.experiment_ref(self.run.tag, exp.id) + f".r{round_no}"
        message = f"exp {exp.id}: {exp.hypothesis} (rebased onto exp {onto.id})\n"
        committed = self.worktree.cherry_pick(exp.commit, onto.commit, message, ref)
        if isinstance(committed, str):
            raise Ended(
                Status.STALE, f"beat its parent, but {committed} experiment {onto.id}, kept meanwhile", experiment=exp
            )
        info = {**exp.info, "rebased": [*exp.info.get("rebased", []), {"from": exp.commit, "onto": onto.id}]}
        exp = replace(exp, parent=onto.commit, commit=committed.commit, info=info)
        self.run.ledger.record(exp)
        first = self.measurer.measure(exp, standing, "candidate", round_no=round_no)
        if first.status is not None:
            raise Ended(first.status, f"after a rebase onto experiment {onto.id}: {first.reason}", first, exp)
        return exp, first

    def _judge(
        self, exp: Experiment, best: Experiment, standing: Standing, first: Measurement, round_no: int
    ) -> tuple[Experiment, Status, str, Measurement]:
        """Measure again as the judge asks; a keep records its estimated gain and its held-out metric."""
        try:
            decision, last = self.measurer.judge(exp, best, standing, first, round_no)
        except Failed as failed:
            # with ``exp``: after a rebase it is not the experiment ``step`` began with
            raise Ended(failed.status, failed.reason, failed.measurement, exp) from None
        exp = replace(exp, runs=len(standing.values(exp.id, round_no)))
        if decision.action is Action.KEEP:
            self.measurer.debias(exp, standing, round_no)
            exp = replace(exp, runs=len(standing.values(exp.id, round_no)), holdout=self.measurer.holdout(exp))
            exp = replace(exp, improvement=decision.improvement, ci_low=decision.ci_low, ci_high=decision.ci_high)
        status = Status.KEEP if decision.action is Action.KEEP else Status.DISCARD
        return exp, status, decision.reason, last

    # -- the steps ------------------------------------------------------------------------

    def _begin(self, parent: str) -> Experiment:
        return self.run.ledger.begin(
            lambda experiment_id: Experiment(
                id=experiment_id,
                status=Status.RUNNING,
                parent=parent,
                agent=self.agent.name if self.agent else "",
                started_at=now_iso(),
                worker=self.index,
                host=self.host,
            )
        )

    def _ask(self, exp: Experiment, standing: Standing) -> Experiment:
        assert self.agent is not None
        task = self.run.task
        baseline, best, history, running = standing.snapshot()
        context = Context(
            experiment_id=exp.id,
            program=task.program,
            config=task.config,
            worktree=self.worktree.path,
            task_dir=task.in_worktree(self.worktree.path),
            editable=self._editable_files(exp.parent),
            baseline=baseline.metric if baseline else None,
            best=best.metric if best else None,
            best_commit=exp.parent,
            history=tuple(replace(e, holdout=None) for e in history),  # held-out scores stay hidden
            running=running,
            log_path=self.run.paths.log(exp.id, "agent"),
            brief_path=self.run.paths.brief(exp.id),
            stop=self.stop,
            token=f"{self.run.id}:{exp.id}:agent",
            sandbox=replace(self.measurer.sandbox, network=True) if self.measurer.sandbox else None,
        )
        try:
            proposal = self.agent.propose(context)
        except AgentError as err:
            status = Status.INTERRUPTED if self.stop.is_set() else Status.REJECTED
            spent = _with_usage(exp, err.usage if isinstance(err.usage, Usage) else None)
            raise Ended(status, str(err), experiment=spent) from None
        except AgentUnavailable as err:  # recorded like any failed proposal, then the run stops
            self._fatal = err
            spent = _with_usage(exp, err.usage if isinstance(err.usage, Usage) else None)
            raise Ended(Status.REJECTED, str(err), experiment=spent) from None
        except (OvernightError, KeyboardInterrupt):
            raise  # the harness itself failed, or the user insists: the run stops
        except Exception as err:  # a bug in an agent (or its SDK) fails this proposal, not the night
            log.warning("agent %s raised", self.agent.name, exc_info=True)
            raise Ended(Status.REJECTED, f"the agent failed: {type(err).__name__}: {err}") from None
        if self.stop.is_set():
            raise Ended(Status.INTERRUPTED, "stopped while the agent was proposing")
        # One printable line without credentials: it becomes a commit message, a TSV field and a table cell.
        hypothesis = "".join(c for c in " ".join(proposal.hypothesis.split()) if c.isprintable())
        hypothesis = secrets.current().redact(hypothesis)
        hypothesis = hypothesis or "(no hypothesis given)"
        exp = replace(exp, hypothesis=hypothesis, agent=proposal.agent or exp.agent, info={**exp.info, **proposal.info})
        exp = _with_usage(exp, proposal.usage)
        self.run.ledger.record(exp)
        standing.start(exp)
        self.report(exp)
        return exp

    def _inspect(self, exp: Experiment, standing: Standing) -> tuple[Experiment, Change]:
        try:
            change = self.worktree.stage(exp.parent)
        except GitError as err:  # e.g. the agent left a merge conflict or a broken index behind
            raise Ended(Status.REJECTED, f"the change could not be staged: {err}") from None
        if change.empty:
            raise Ended(Status.NO_CHANGE, "the proposal changed no file")
        task = self.run.task
        exp = replace(exp, files_changed=len(change.paths), change_key=self.worktree.change_key(change))
        weight = self.worktree.weight(change)
        if weight > task.config.task.max_diff_mb * (1 << 20):
            reason = f"the change is too large: {weight / (1 << 20):.1f} MB of changed files > max_diff_mb"
            raise Ended(Status.REJECTED, reason, experiment=exp)
        for earlier in reversed(standing.snapshot()[2]):
            if earlier.parent == exp.parent and earlier.change_key == exp.change_key:
                reason = f"the same change as experiment {earlier.id} ({earlier.status.value}) on the same parent"
                raise Ended(Status.DUPLICATE, reason, experiment=exp)
        forbidden = task.rules.violations({p: task_relative(p, task.rel) for p in change.paths})
        if forbidden:
            diff_path = self.run.paths.diff(exp.id)
            diff_path.parent.mkdir(parents=True, exist_ok=True)
            diff_path.write_text(self.worktree.diff(change), encoding="utf-8")
            shown = ", ".join(forbidden[:5]) + (" ..." if len(forbidden) > 5 else "")
            raise Ended(Status.REJECTED, f"changed files that are not editable: {shown}", experiment=exp)
        return exp, change

    def _commit(self, exp: Experiment, change: Change) -> Committed:
        message = f"exp {exp.id}: {exp.hypothesis}\n"
        return self.worktree.commit(change, message, git.experiment_ref(self.run.tag, exp.id))

    def _committed(self, exp: Experiment, committing: Committed) -> Experiment:
        try:
            done = committing.wait()
        except GitError as err:
            raise Ended(Status.REJECTED, f"the change could not be committed: {err}") from None
        return replace(exp, commit=done.commit, insertions=done.insertions, deletions=done.deletions)

    def _advance(self, exp: Experiment) -> Experiment:
        try:
            git.update_ref(self.run.task.root, self.run.branch_ref, exp.commit, exp.parent)
        except OvernightError as err:
            exp = replace(exp, status=Status.DISCARD, reason=f"the run branch moved outside overnight: {err}")
            self.run.ledger.record(exp)
            raise RunStateError(
                f"branch {self.run.branch} was moved by something other than this run; "
                "the run stopped to avoid overwriting it"
            ) from err
        return exp

    def _finish(
        self,
        exp: Experiment,
        status: Status,
        reason: str,
        measurement: Measurement | None,
        standing: Standing,
        metric: float | None = None,
    ) -> Experiment:
        """Record how ``exp`` ended, and tell ``standing``.

        ``metric`` (the mean of its measurements) defaults to ``measurement``'s.
        """
        result = measurement.result if measurement else None
        if metric is None and measurement is not None and status in MEASURED:
            metric = measurement.value
        if measurement is not None and measurement.flags:
            exp = replace(exp, info={**exp.info, "flags": list(measurement.flags)})
        exp = replace(
            exp,
            status=status,
            reason=secrets.current().redact(reason),
            metric=metric,
            metrics=measurement.metrics if measurement else {},
            duration_s=round(result.duration_s, 3) if result else None,
            peak_memory_mb=result.peak_memory_mb if result else None,
            exit_code=result.exit_code if result else None,
            ended_at=now_iso(),
        )
        self.run.ledger.record(exp)
        standing.add(exp)
        self.report(exp)
        return exp

    def _abort(self, exp: Experiment, exc: BaseException, standing: Standing) -> None:
        """The harness itself failed (or a second Ctrl-C): record the experiment as interrupted."""
        reason = "stopped by the user" if isinstance(exc, KeyboardInterrupt) else f"harness error: {exc}"
        try:
            self._finish(exp, Status.INTERRUPTED, reason, None, standing)
        except Exception:  # the ledger may be what failed; the original error matters more
            log.exception("could not record experiment %d as interrupted", exp.id)

    def _editable_files(self, commit: str) -> tuple[str, ...]:
        return self.measurer.files(commit)[0]


def _with_usage(exp: Experiment, usage: Usage | None) -> Experiment:
    if usage is None:
        return exp
    return replace(exp, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost_usd=usage.cost_usd)
