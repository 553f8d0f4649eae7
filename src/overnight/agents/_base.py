"""The agent contract: ask/tell.

The harness asks with :meth:`Agent.propose`: the agent edits the files of the
worktree it is given and returns a :class:`~overnight.records.Proposal` (a one-line
hypothesis). The harness then diffs, commits, runs, measures and judges; the agent
never does. Afterwards the harness tells the agent what happened with
:meth:`Agent.observe`.

Contract for implementations:

* ``propose`` may only change files inside ``context.task_dir``'s worktree; the
  harness checks the diff and rejects changes outside the editable files.
* ``propose`` raises :class:`~overnight.errors.AgentError` with a reason when it
  cannot propose (a failing command, a model reply that does not parse, ...); the
  experiment is then recorded as ``rejected`` and the run goes on.
* ``propose`` should return promptly once ``context.stop`` is set.
* One agent instance serves one worker: calls never overlap, so an agent needs no locks.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overnight import untrusted
from overnight.agents import jsonbrief
from overnight.agents.brief import Facts
from overnight.config import Config
from overnight.process.sandbox import Sandbox
from overnight.records import Experiment, Goal, Proposal


@dataclass(frozen=True)
class Context:
    """Everything an agent may know when it proposes one experiment."""

    experiment_id: int
    program: str  # program.md, verbatim
    config: Config
    worktree: Path  # root of the experiment's git worktree
    task_dir: Path  # the task folder inside the worktree; commands run here
    editable: tuple[str, ...]  # task-relative paths of the files the agent may change
    baseline: float | None
    best: float | None
    best_commit: str
    history: tuple[Experiment, ...]  # every finished experiment, oldest first
    log_path: Path  # where the agent may write what it did (outside the worktree)
    brief_path: Path  # a JSON copy of this context, outside the worktree
    stop: threading.Event = field(default_factory=threading.Event)
    token: str = ""  # give it to process.run_command so a resumed run can kill what a dead one left
    running: tuple[Experiment, ...] = ()  # what other workers are trying right now (their hypotheses)
    sandbox: Sandbox | None = None  # run agent commands in it (``[task] sandbox``)
    # What the harness knows beyond the files: the keep rule, every past experiment in detail, the
    # notebook, the night's progress (see overnight.agents.brief); None when built without a run (tests, tools).
    facts: Facts | None = None
    notes_path: Path | None = None  # lines appended to this file go into the lab notebook

    @property
    def metric(self) -> str:
        return self.config.metric.name

    @property
    def goal(self) -> Goal:
        return self.config.metric.goal_enum

    def brief(self) -> dict[str, Any]:
        """The context as command agents read it from OVERNIGHT_BRIEF, to be encoded by :func:`jsonbrief.text`:
        JSON-ready data whose long lists (history, experiments, notes) hold :class:`jsonbrief.Piece` s, each
        encoded once in the night."""
        data: dict[str, Any] = {
            "experiment_id": self.experiment_id,
            "program": self.program,
            "metric": {"name": self.metric, "goal": self.goal.value},
            "baseline": self.baseline,
            "best": self.best,
            "best_commit": self.best_commit,
            "task_dir": str(self.task_dir),
            "editable": list(self.editable),
            "budget_s": self.config.task.budget_s,
            "history": [jsonbrief.history_piece(e) for e in self.history],
            "running": [{"id": e.id, "hypothesis": e.hypothesis, "agent": e.agent} for e in self.running],
            "notes_path": str(self.notes_path) if self.notes_path else "",
        }
        if self.facts is not None:  # the same facts the text brief gives chat models and coding CLIs
            data.update(jsonbrief.facts(self.facts))
        return data

    def write_brief(self) -> Path:
        """Write the JSON brief, within its budget; only the latest briefs stay on disk (agents/jsonbrief.py)."""
        self.brief_path.parent.mkdir(parents=True, exist_ok=True)
        untrusted.write_text(self.brief_path, jsonbrief.text(self.brief()))  # never through a link
        jsonbrief.prune(self.brief_path.parent, self.experiment_id)
        return self.brief_path


class Agent(ABC):
    """Proposes changes; learns from outcomes. See the module docstring for the contract."""

    #: the registry name, recorded on every experiment the agent proposes
    name: str = ""

    @abstractmethod
    def propose(self, context: Context) -> Proposal:
        """Edit the worktree at ``context.task_dir`` and describe the change in one line."""

    def uncounted(self) -> str:
        """Why what this agent spends cannot be counted against ``--max-cost-usd`` ("" when it can).

        A budget that cannot be counted is refused at the start: it would silently never stop the run.
        """
        return f"the {self.name or 'command'} agent reports no cost"

    def probe(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Check, cheaply, that the agent can work at all, before any baseline is spent; raise
        :class:`~overnight.errors.AgentUnavailable` when it cannot (credentials refused, no server).
        The default checks nothing: what can be checked offline is checked when the agent is made."""

    def observe(self, experiment: Experiment) -> None:  # noqa: B027 - optional hook, empty by default
        """Learn from a finished experiment (kept or not). The default ignores it."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release what the agent holds (connections, processes) when the run ends."""
