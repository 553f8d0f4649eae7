"""One worker's loop. Each experiment, in order:

1. begin: record the experiment as running (its id is taken now, so ids never skip)
2. check out: put the worktree at the current best (the agent's brief is gathered just before,
   while the worktree's reset from the last experiment finishes)
3. ask: the agent edits the worktree and gives a one-line hypothesis (what it is handed, and
   the notes it leaves for the lab notebook: overnight.run.handoff)
4. inspect the change: nothing changed → no_change; too large, or outside the editable
   files → rejected; the same change as one already tried on the same best → duplicate
5. commit it as ``exp <id>: <hypothesis>`` under ``refs/overnight/<tag>/<id>`` (the commit
   is written while step 6 runs: the worktree already holds its files)
6. measure it once: setup (the worktree's first time) → gate → run → metric
7. judge it: measure it (and the best) again while the judge is unsure, until it keeps or discards
8. record the outcome. A keep moves the run branch to it (compare-and-swap); when another
   worker kept a change meanwhile, this one is first rebased onto that newer best, then
   measured and judged there (steps 5 to 7 again)
9. tell the agent the outcome, and get the worktree ready for the next experiment

Any step from 3 to 8 can end the experiment early, by raising
:class:`~overnight.records.Ended` with a status and a reason, which step 8 records:

* 3: the agent failed, replied nothing usable or ran past its timeout → ``rejected``
  (``interrupted`` when the run was being stopped); an agent that cannot work at all
  (credentials, a missing program) → ``rejected``, and the run stops after step 8
* 4: ``no_change``, ``rejected`` (not editable, too large, could not be staged), ``duplicate``
* 5: the commit could not be written → ``rejected``
* 6: ``crash``, ``timeout``, ``no_metric``, ``gate_failed``, ``rejected`` (the run changed
  protected files), ``interrupted``
* 7: a later measurement of the candidate failed → its status; the run was stopped → ``interrupted``
* 8: the rebase conflicts with the newer best, or the change is already in it → ``stale``;
  the rebased measurement failed → its status; the run branch was moved by something
  other than this run → ``discard``, and the run stops

A failure of the harness itself (or a second Ctrl-C) records the experiment as
``interrupted`` and stops the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from overnight import git, secrets, untrusted
from overnight.agents import Agent, Context, brief
from overnight.bookkeeping import Bookkeeping, Rebase
from overnight.errors import AgentError, AgentUnavailable, GitError, OvernightError
from overnight.executors import Executor
from overnight.git.commits import Committed
from overnight.git.picture import Change
from overnight.git.worktree import Worktree
from overnight.judge.measure import Measurer
from overnight.judge.rule import Action, Decision
from overnight.records import MEASURED, Ended, Experiment, Status, Usage, now_iso
from overnight.run import faults
from overnight.run.handoff import Handoff
from overnight.run.slots import Slots
from overnight.run.start import Run
from overnight.run.state import BestMoved

log = logging.getLogger(__name__)


class Worker:
    """Runs experiments one after another in its own worktree, on the run's one state."""

    def __init__(
        self,
        run: Run,
        agent: Agent | None,
        executor: Executor,
        *,
        index: int = 0,
        stop: threading.Event | None = None,
        host: dict[str, str] | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.run = run
        self.state = run.state
        self.agent = agent
        self.index = index
        self.stop = stop or threading.Event()
        self.host = host or {}
        self.worktree = Worktree(run.task.root, run.paths.worktrees / f"w{index}")
        self.measurer = Measurer(run, executor, self.worktree, self.stop, slots)
        self._fatal: AgentUnavailable | None = None  # raised once its experiment is recorded
        self.handoff = Handoff(run, self.worktree, self.measurer.sandbox, self.stop)  # the agent's context, its notes
        # the night's progress as the controller sees it (its limits), for the brief; None: not known
        self.progress: Callable[[int], brief.Progress] | None = None

    def open(self, commit: str) -> None:
        self.worktree.create(commit)

    def close(self) -> None:
        self.handoff.close()
        self.worktree.remove()

    # -- the experiments ---------------------------------------------------------------------------

    def step(self) -> Experiment:
        """Run one experiment on the current best: the nine steps, in order. Returns it as recorded."""
        self.state.check_untouched()  # nothing but this run wrote its ledger or moved its branch
        best = self.state.best
        assert best is not None, "the baseline comes first"
        exp = self._begin(best.commit)  # 1
        try:
            # The brief is gathered first: the worktree's reset to the best (started when the last
            # experiment ended) finishes meanwhile, and step 2 waits less for it.
            context = self.handoff.context(exp, self.progress)
            self._check_out(best)  # 2
            exp = self._ask(exp, context)  # 3
            exp, change = self._inspect(exp)  # 4
            committing = self._commit(exp, change)  # 5
            exp = self._measure(exp, committing)  # 6
            decision = self._judge(exp, best)  # 7
            exp = self._record(exp, decision)  # 8
        except Ended as end:
            exp = self._record_end(exp.id, end)  # 8, for an experiment that ended early
        except BaseException as exc:
            self._abort(exp.id, exc)
            raise
        self._tell(exp)  # 9
        return exp

    def baseline(self, commit: str, runs: int | None = None) -> Experiment:
        """Measure the unchanged code at ``commit``: steps 1, 2, 6 and 8, with no agent.

        It is measured ``runs`` times, else ``[judge] noise_runs`` times, at least once.
        """
        exp = self._begin(commit)
        try:
            exp = self.state.propose(replace(exp, commit=commit, hypothesis="baseline", agent=""))
            self.worktree.checkout(commit)
            for kind in ["baseline"] + ["noise"] * (max(1, runs or self.run.task.config.judge.noise_runs) - 1):
                measurement = self.measurer.once(exp, kind)
                if measurement.status is not None:
                    raise Ended(measurement.status, measurement.reason)
            self.measurer.set_aside_disturbed(exp)
            self.state.update(replace(self.state.get(exp.id), holdout=self.measurer.holdout(exp)))
            exp = self.state.finish(self._ended(exp.id, Status.BASELINE, ""))
        except Ended as end:
            exp = self._record_end(exp.id, end)
        except BaseException as exc:
            self._abort(exp.id, exc)
            raise
        finally:
            self.worktree.release(next_commit=commit)
        return exp

    # -- the steps ---------------------------------------------------------------------------------

    def _begin(self, parent: str) -> Experiment:
        """1. Take the next id: the experiment is recorded as running on ``parent``."""
        return self.state.begin(
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

    def _check_out(self, best: Experiment) -> None:
        """2. Put the worktree exactly at the best: no local changes, no untracked files."""
        self.worktree.checkout(best.commit)

    def _ask(self, exp: Experiment, context: Context) -> Experiment:
        """3. The agent proposes (told ``context``): it edits the worktree and says what it tried; recorded, and in
        flight."""
        assert self.agent is not None
        try:
            proposal = self.agent.propose(context)
        except AgentError as err:
            self._spent(exp.id, err.usage)
            self.handoff.take_notes(exp, err.notes, context.notes_path, err.hypothesis)
            raise Ended(Status.INTERRUPTED if self.stop.is_set() else Status.REJECTED, str(err)) from None
        except AgentUnavailable as err:  # recorded like any failed proposal, then the run stops
            self._fatal = err
            self._spent(exp.id, err.usage)
            raise Ended(Status.REJECTED, str(err)) from None
        except (OvernightError, KeyboardInterrupt):
            raise  # the harness itself failed, or the user insists: the run stops
        except Exception as err:  # a bug in an agent (or its SDK) fails this proposal, not the night
            log.warning("agent %s raised", self.agent.name, exc_info=True)
            raise Ended(Status.REJECTED, f"the agent failed: {type(err).__name__}: {err}") from None
        self.handoff.take_notes(exp, proposal.notes, context.notes_path)
        if self.stop.is_set():
            raise Ended(Status.INTERRUPTED, "stopped while the agent was proposing")
        # One printable line without credentials: it becomes a commit message, a TSV field and a table cell.
        hypothesis = "".join(c for c in " ".join(proposal.hypothesis.split()) if c.isprintable())
        hypothesis = secrets.current().redact(hypothesis) or "(no hypothesis given)"
        reported, left_out = Bookkeeping.apart(proposal.info)
        if left_out:  # the harness's facts are its own: an agent's key of the same name is not recorded
            log.warning(
                "agent %s reported %s, named like the harness's facts: left out",
                proposal.agent or exp.agent,
                ", ".join(left_out),
            )
        exp = replace(exp, hypothesis=hypothesis, agent=proposal.agent or exp.agent, info={**exp.info, **reported})
        exp = self.state.propose(_with_usage(exp, proposal.usage))
        faults.point("proposed")
        return exp

    def _inspect(self, exp: Experiment) -> tuple[Experiment, Change]:
        """4. See what the agent changed, and refuse what breaks the rules or was tried before."""
        try:
            change = self.worktree.stage(exp.parent)
        except GitError as err:  # e.g. the agent left a merge conflict or a broken index behind
            raise Ended(Status.REJECTED, f"the change could not be staged: {err}") from None
        if change.empty:
            raise Ended(Status.NO_CHANGE, "the proposal changed no file")
        task = self.run.task
        exp = self.state.update(
            replace(exp, files_changed=len(change.paths), change_key=self.worktree.change_key(change))
        )
        weight = self.worktree.weight(change)
        if weight > task.config.task.max_diff_mb * (1 << 20):
            reason = f"the change is too large: {weight / (1 << 20):.1f} MB of changed files > max_diff_mb"
            raise Ended(Status.REJECTED, reason)
        leaked = self.worktree.holding(change, secrets.current().values)
        if leaked:  # never committed, never shown: the commit, the diff and the ledger would all keep it
            reason = f"the change writes the value of a credential of this environment into {leaked}; remove it"
            raise Ended(Status.REJECTED, reason)
        earlier = self.state.tried(exp.parent, exp.change_key)
        if earlier is not None:
            reason = f"the same change as experiment {earlier.id} ({earlier.status.value}) on the same parent"
            raise Ended(Status.DUPLICATE, reason)
        forbidden = task.rules.violations({p: git.task_relative(p, task.rel) for p in change.paths})
        if forbidden:
            diff_path = self.run.paths.diff(exp.id)
            diff_path.parent.mkdir(parents=True, exist_ok=True)
            untrusted.write_text(diff_path, secrets.current().redact(self.worktree.diff(change)))
            shown = ", ".join(forbidden[:5]) + (" ..." if len(forbidden) > 5 else "")
            raise Ended(Status.REJECTED, f"changed files that are not editable: {shown}")
        return exp, change

    def _commit(self, exp: Experiment, change: Change) -> Committed:
        """5. Start committing the change on its parent; it is written while step 6 runs."""
        committing = self.worktree.commit(change, f"exp {exp.id}: {exp.hypothesis}\n", self._ref(exp.id))
        faults.point("committed")
        return committing

    def _measure(self, exp: Experiment, committing: Committed) -> Experiment:
        """6. Measure the change once; the experiment is recorded with its commit whatever the measurement gave."""
        measurement = self.measurer.first(exp, written=lambda: committing.wait().commit)
        exp = self._committed(exp.id, committing)
        faults.point("measured")
        if measurement.status is not None:
            raise Ended(measurement.status, measurement.reason)
        return exp

    def _judge(self, exp: Experiment, best: Experiment) -> Decision:
        """7. Measure the candidate (and the best) again until the judge keeps or discards it."""
        return self.measurer.until_judged(exp, best)

    def _record(self, exp: Experiment, decision: Decision) -> Experiment:
        """8. Record the judged experiment; a keep moves the run branch to it.

        When another worker kept a change meanwhile, this one is rebased onto that newer
        best and measured (steps 5 and 6 there), then judged again (step 7), until it is
        recorded as kept or discarded.
        """
        while decision.action is Action.KEEP:
            try:
                return self.state.keep(self._ended(exp.id, Status.KEEP, decision.reason))
            except BestMoved as moved:
                exp = self._rebase(exp, moved.best)
                decision = self._judge(exp, moved.best)
        return self.state.finish(self._ended(exp.id, Status.DISCARD, decision.reason))

    def _record_end(self, experiment_id: int, end: Ended) -> Experiment:
        """8, for an experiment that ended early: recorded with the status and reason it ended with."""
        return self.state.finish(self._ended(experiment_id, end.status, end.reason))

    def _tell(self, exp: Experiment) -> None:
        """9. Tell the agent the outcome; get the worktree ready for the next experiment on the best.

        An agent that cannot work at all stops the run here, once its experiment is recorded.
        """
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal
        best = self.state.best
        assert best is not None
        self.worktree.release(best.commit, touched=exp.status is not Status.NO_CHANGE)
        if self.agent is not None:
            self.agent.observe(exp)

    # -- what the steps share ----------------------------------------------------------------------

    def _ref(self, experiment_id: int, round: int = 0) -> str:
        """The ref that keeps an experiment's commit reachable (one per round: a rebase makes a new commit)."""
        return git.experiment_ref(self.run.tag, experiment_id) + (f".r{round}" if round else "")

    def _committed(self, experiment_id: int, committing: Committed) -> Experiment:
        try:
            done = committing.wait()
        except GitError as err:
            raise Ended(Status.REJECTED, f"the change could not be committed: {err}") from None
        exp = self.state.get(experiment_id)
        brief.remember_diff(exp.parent, done.commit, done.diff)
        return self.state.update(replace(exp, commit=done.commit, insertions=done.insertions, deletions=done.deletions))

    def _rebase(self, exp: Experiment, onto: Experiment) -> Experiment:
        """Put ``exp``'s change on top of ``onto`` (a newer best) and measure it there once (a new round)."""
        message = f"exp {exp.id}: {exp.hypothesis} (rebased onto exp {onto.id})\n"
        committed = self.worktree.cherry_pick(exp.commit, onto.commit, message, self._ref(exp.id, exp.round + 1))
        if isinstance(committed, str):
            raise Ended(Status.STALE, f"beat its parent, but {committed} experiment {onto.id}, kept meanwhile")
        rebased = (*exp.bookkeeping.rebased, Rebase(exp.commit, onto.id))
        # What was estimated on the old parent does not hold on the new one.
        exp = self.state.rebase(
            replace(
                self.state.get(exp.id),
                parent=onto.commit,
                commit=committed.commit,
                info=exp.info,
                bookkeeping=replace(exp.bookkeeping, rebased=rebased),
                metric=None,
                runs=0,
                improvement=None,
                ci_low=None,
                ci_high=None,
                holdout=None,
            )
        )
        measurement = self.measurer.once(exp, "candidate")
        if measurement.status is not None:
            raise Ended(measurement.status, f"after a rebase onto experiment {onto.id}: {measurement.reason}")
        return self.state.get(exp.id)

    def _ended(self, experiment_id: int, status: Status, reason: str) -> Experiment:
        """The experiment as it ends: its latest record with its final status (a metric only if measured)."""
        exp = self.state.get(experiment_id)
        notes = self.measurer.notes_for(experiment_id)
        return replace(
            exp,
            bookkeeping=exp.bookkeeping.merge(notes),
            status=status,
            reason=secrets.current().redact(reason),
            metric=exp.metric if status in MEASURED else None,
            ended_at=now_iso(),
        )

    def _spent(self, experiment_id: int, usage: object) -> None:
        """Record what a failed proposal still cost."""
        if isinstance(usage, Usage):
            self.state.update(_with_usage(self.state.get(experiment_id), usage))

    def _abort(self, experiment_id: int, exc: BaseException) -> None:
        """The harness itself failed (or a second Ctrl-C): record the experiment as interrupted, if it still runs."""
        reason = "stopped by the user" if isinstance(exc, KeyboardInterrupt) else f"harness error: {exc}"
        try:
            if self.state.get(experiment_id).status is Status.RUNNING:
                self.state.finish(self._ended(experiment_id, Status.INTERRUPTED, reason))
        except Exception:  # the ledger may be what failed; the original error matters more
            log.exception("could not record experiment %d as interrupted", experiment_id)


def _with_usage(exp: Experiment, usage: Usage | None) -> Experiment:
    if usage is None:
        return exp
    return replace(exp, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost_usd=usage.cost_usd)
