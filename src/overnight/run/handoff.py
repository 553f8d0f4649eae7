"""What a worker hands its agent for step 3 (ask), and what it takes back beside the change.

Before the agent proposes, :meth:`Handoff.context` gathers what it is told: the task, the
best, the brief's facts (:func:`overnight.agents.brief.gather`, from the run's state as it
is then; finished experiments shown without their held-out scores) and a notes file of its
own, in a folder made for this proposal under a name nobody can guess (the folders of the
other proposals are not listed). After it proposed, or failed to, :meth:`Handoff.take_notes`
puts what it left into the lab notebook: the notes in its reply and the lines appended to
that file (read as untrusted, then removed; its folder too, when left empty), cleaned, at
most ``brief.NOTES_PER_EXPERIMENT``; and the hypothesis of a proposal that failed, when the
agent still said what it tried.

One per worker, used from its thread only: the brief's entries made for earlier proposals
are kept for the next (``brief.gather``'s ``known``), and the last notes folder is removed
in the background (an rmdir can take ms), waited for before the next one and at close.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from overnight import threads, untrusted
from overnight.agents import Context, brief
from overnight.agents.known import Known
from overnight.git.worktree import Worktree
from overnight.process.sandbox import Sandbox
from overnight.records import Experiment
from overnight.run.start import Run


class Handoff:
    """What one worker hands its agent and takes back; see the module docstring."""

    def __init__(self, run: Run, worktree: Worktree, sandbox: Sandbox | None, stop: threading.Event) -> None:
        self.run = run
        self.state = run.state
        self.worktree = worktree
        self.sandbox = sandbox  # the measurements' (overnight.judge.measure): the agent's is built from it
        self.stop = stop
        self._sweep: threads.Task | None = None  # removing the last notes folder (an rmdir can take ms)
        self._known: Known[brief.Entry] = Known()  # the brief's entries made for earlier proposals (brief.gather)
        self._shown: dict[int, tuple[Experiment, Experiment]] = {}  # id → (the record, it without its holdout)

    def close(self) -> None:
        """Wait until the last notes folder is removed."""
        if self._sweep is not None:
            self._sweep.wait()

    def context(self, exp: Experiment, progress: Callable[[int], brief.Progress] | None) -> Context:
        """What the agent of ``exp`` is told; ``progress``: the night's progress as the controller sees it."""
        task = self.run.task
        baseline, best, history, running = self.state.snapshot()
        shown = tuple(e if e.holdout is None else self._hidden(e) for e in history)
        notes_path = self.run.paths.notes(exp.id, os.urandom(8).hex())  # its own folder, not guessed
        notes_path.parent.mkdir(parents=True, exist_ok=True)
        notes_path.parent.parent.chmod(0o711)  # the folders of the others are not listed (but as root)
        facts = brief.gather(
            config=task.config,
            history=shown,
            running=[e for e in running if e.id != exp.id],
            samples=self.state.samples(),
            notes=self.state.notes(),
            logs=self.run.paths.logs,
            root=task.root,
            best=best,
            progress=progress(exp.id) if progress else None,
            notes_path=notes_path,
            known=self._known,
        )
        return Context(
            experiment_id=exp.id,
            program=task.program,
            config=task.config,
            worktree=self.worktree.path,
            task_dir=task.in_worktree(self.worktree.path),
            editable=task.files_at(exp.parent)[0],
            baseline=baseline.metric if baseline else None,
            best=best.metric if best else None,
            best_commit=exp.parent,
            history=shown,
            running=running,
            log_path=self.run.paths.log(exp.id, "agent"),
            brief_path=self.run.paths.brief(exp.id),
            stop=self.stop,
            token=f"{self.run.id}:{exp.id}:agent",
            sandbox=replace(self.sandbox, network=True, writable=(*self.sandbox.writable, notes_path.parent))
            if self.sandbox
            else None,
            facts=facts,
            notes_path=notes_path,
        )

    def _hidden(self, exp: Experiment) -> Experiment:
        """``exp`` without its held-out score, which agents must not see: the same object while ``exp`` is,
        so the brief's entry and encoding made from it are kept too (overnight.agents.known, jsonbrief)."""
        kept = self._shown.get(exp.id)
        if kept is None or kept[0] is not exp:
            kept = self._shown[exp.id] = (exp, replace(exp, holdout=None))
        return kept[1]

    def take_notes(self, exp: Experiment, notes: Sequence[str], path: Path | None, hypothesis: str = "") -> None:
        """Record the notes an agent left (in its reply, or appended to its notes file) in the notebook;
        and the hypothesis of a proposal that failed, when the agent still said what it tried."""
        texts = list(notes)
        if path is not None:  # never through a link, only a regular file, to a bound (overnight.untrusted)
            texts += untrusted.notes_file(path, folder=False)
            if self._sweep is not None:
                self._sweep.wait()
            folder = path.parent
            self._sweep = threads.spawn(lambda: _remove_empty(folder))
        cleaned = [brief.clean_note(t) for t in texts]
        self.state.note(exp.id, [t for t in cleaned if t][: brief.NOTES_PER_EXPERIMENT])
        said = brief.clean_note(hypothesis)
        if said and not self.state.get(exp.id).hypothesis:
            self.state.propose(replace(self.state.get(exp.id), hypothesis=said))


def _remove_empty(folder: Path) -> None:
    """Remove an agent's notes folder when it left nothing else there."""
    with contextlib.suppress(OSError):
        folder.rmdir()
