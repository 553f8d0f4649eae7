"""A run: one campaign on a task, named by a tag, opened for writing.

A run owns the branch ``overnight/<tag>`` and the folder ``.overnight/<tag>/`` at the
repository root (ledger, lock, logs, briefs, worktrees: see overnight.run.paths).
:meth:`Run.start` creates a new run or resumes an existing one; either way it holds
the run's lock until :meth:`Run.close`, so one controller at a time writes the ledger
and the branch. What the run has recorded is its :attr:`Run.state`, the one owner of
the ledger's experiments and measurements (overnight.run.state).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import replace
from typing import Any

from overnight import git
from overnight.errors import RunStateError
from overnight.git import BRANCH_PREFIX, Branch
from overnight.process.tree import kill_token_holders
from overnight.records import Status, chain, now_iso
from overnight.run.ledger import Ledger
from overnight.run.paths import RunLock, RunPaths, check_tag, created, new_tag, paths_for
from overnight.run.state import RunState
from overnight.task import Task

log = logging.getLogger(__name__)


class Run:
    """An open run, locked for writing. Use :meth:`start`; close with :meth:`close`."""

    def __init__(self, task: Task, tag: str, paths: RunPaths, ledger: Ledger, lock: RunLock) -> None:
        self.task = task
        self.tag = tag
        self.paths = paths
        self.lock = lock
        self._ledger = ledger  # its meta only: experiments and measurements belong to ``state``
        self.id = ledger.get_meta("run_id") or ""
        self.start_commit = ledger.get_meta("start_commit") or ""
        self.branch = Branch(task.root, BRANCH_PREFIX + tag)
        self.resumed = False
        self._state: RunState | None = None

    @property
    def state(self) -> RunState:
        """What the run has recorded, loaded once (after a resume has mended what a dead controller left)."""
        if self._state is None:
            self._state = RunState(self._ledger, self.branch)
        return self._state

    @classmethod
    def start(cls, task: Task, tag: str | None = None, *, force: bool = False) -> Run:
        """Create the run ``tag`` (a new tag when None) or resume it when it exists."""
        tag = check_tag(tag) if tag else new_tag(task.root)
        git.check_branch_name(task.root, BRANCH_PREFIX + tag)
        paths = paths_for(task.root, tag)
        if paths.ledger.exists() and not created(paths):
            # A controller died while creating this run: nothing was recorded and no branch made yet.
            for leftover in paths.dir.glob("ledger.db*"):
                leftover.unlink()
        if paths.ledger.exists():
            return cls._resume(task, tag, paths, force)
        return cls._create(task, tag, paths)

    @classmethod
    def _create(cls, task: Task, tag: str, paths: RunPaths) -> Run:
        root = task.root
        branch = Branch(root, BRANCH_PREFIX + tag)
        if branch.tip():
            raise RunStateError(
                f"branch {branch.name} exists but has no run state in {paths.dir}; choose another --tag"
            )
        start_commit = git.head_commit(root)
        git.exclude_state_dir(root)
        created_dir = not paths.dir.exists()
        paths.dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock(paths.lock)
        lock.acquire()
        try:
            ledger = Ledger(paths.ledger, create=True)
            ledger.set_meta(
                tag=tag,
                task=task.rel,
                run_id=uuid.uuid4().hex[:12],
                created_at=now_iso(),
                created_ns=str(time.time_ns()),  # orders runs created within the same second
                start_commit=start_commit,
                fingerprint=task.config.fingerprint(),
                config=json.dumps(task.config.to_dict()),
            )
            branch.move(start_commit, None)
        except BaseException:
            lock.release()
            if created_dir:
                shutil.rmtree(paths.dir, ignore_errors=True)
            raise
        log.info("created run %s on %s at %s", tag, branch.name, start_commit[:10])
        return cls(task, tag, paths, ledger, lock)

    @classmethod
    def _resume(cls, task: Task, tag: str, paths: RunPaths, force: bool) -> Run:
        lock = RunLock(paths.lock)
        lock.acquire()
        try:
            ledger = Ledger(paths.ledger)
            try:
                run = cls(task, tag, paths, ledger, lock)
                run._check_same_task(force)
                run._recover()
            except BaseException:
                ledger.close()
                raise
        except BaseException:
            lock.release()
            raise
        run.resumed = True
        return run

    def _check_same_task(self, force: bool) -> None:
        meta = self._ledger.get_meta
        if meta("task") != self.task.rel:
            raise RunStateError(
                f"run {self.tag} belongs to the task in {meta('task')!r}, not {self.task.rel!r}; use another --tag"
            )
        old = json.loads(meta("config") or "{}")
        new = json.loads(json.dumps(self.task.config.to_dict()))  # as recorded: lists, not tuples, compare equal
        if meta("fingerprint") == self.task.config.fingerprint():
            return
        changed = [
            f"[{section}] {key}: {old.get(section, {}).get(key)!r} → {value!r}"
            for section, values in new.items()
            if section != "agent"
            for key, value in values.items()
            if old.get(section, {}).get(key) != value
        ]
        if not force:
            raise RunStateError(
                f"run {self.tag} was started with a different overnight.toml:\n  "
                + "\n  ".join(changed)
                + "\nresults would not be comparable; use a new --tag, or --force to continue with the new settings"
            )
        log.warning("continuing run %s with changed settings: %s", self.tag, "; ".join(changed))
        self._ledger.set_meta(fingerprint=self.task.config.fingerprint(), config=json.dumps(new))

    def _recover(self) -> None:
        """After a stop or a crash: end what was running, kill its leftovers, mend the branch.

        Runs before :attr:`state` is loaded, so it writes the ledger directly: there is no
        memory yet to disagree with.
        """
        killed = kill_token_holders(f"{self.id}:")
        if killed:
            log.warning("killed %d process(es) left running by the previous controller", killed)
        for exp in self._ledger.experiments(Status.RUNNING):
            # The commit is written while the experiment runs; its ref tells whether it got that far.
            commit = exp.commit or git.resolve(self.task.root, git.experiment_ref(self.tag, exp.id)) or ""
            reason = "the controller stopped during this experiment"
            self._ledger.record(
                replace(exp, status=Status.INTERRUPTED, reason=reason, commit=commit, ended_at=now_iso())
            )
        self._mend_branch()

    def _mend_branch(self) -> None:
        points = chain(self._ledger.experiments())
        expected = points[-1].commit if points else self.start_commit
        tip = self.branch.tip()
        if tip == expected:
            return
        if tip is None:
            log.warning("branch %s was deleted; recreating it at %s", self.branch.name, expected[:10])
            self.branch.move(expected, None)
            return
        if len(points) > 1 and tip == points[-1].parent:
            # The controller died between recording a keep and moving the branch: finish the move.
            self.branch.move(expected, tip)
            return
        raise RunStateError(
            f"branch {self.branch.name} points at {tip[:10]}, which overnight did not put there "
            f"(expected {expected[:10]}); move it back with `git branch -f {self.branch.name} {expected[:10]}` "
            "or use another --tag"
        )

    def note_agent(self, settings: dict[str, Any]) -> None:
        """Record the ``[agent]`` settings this invocation runs with (command-line overrides included).

        Kept in the meta key ``agents``: a list of ``{"from": <first experiment id>, "settings": ...}``,
        one entry per start or resume, so each experiment's settings can be told later.
        """
        sessions = json.loads(self._ledger.get_meta("agents") or "[]")
        sessions.append({"from": self._ledger.next_id(), "settings": settings})
        self._ledger.set_meta(agents=json.dumps(sessions))

    def budget_read(self, said: bool | None) -> bool | None:
        """Whether the run command reads OVERNIGHT_BUDGET_S, as the invocation that started the run said it
        (``said``: ``overnight demo``'s fixed amount of work says False; kept in the meta key ``budget_read``,
        so a resume shows its runs the same way); None where nobody said (a look at its script decides)."""
        if said is not None:
            self._ledger.set_meta(budget_read=json.dumps(said))
            return said
        stored = self._ledger.get_meta("budget_read")
        return None if stored is None else bool(json.loads(stored))

    def note_end(self, why: str) -> None:
        """Record how this invocation ended (meta key ``ended``: {"at", "why"}), for `overnight runs` and status."""
        self._ledger.set_meta(ended=json.dumps({"at": now_iso(), "why": why or "ended"}))

    def close(self) -> None:
        self._ledger.close()
        self.lock.release()

    def discard(self) -> None:
        """Remove what this run made: its experiment refs, its branch, its folder (after :meth:`close`).

        For a run created by this invocation whose baseline failed: nothing was kept, and
        bad input must leave the repository as it was.
        """
        root = self.task.root
        refs = git.git("for-each-ref", "--format=%(refname)", f"{git.REF_PREFIX}{self.tag}/", cwd=root).split()
        for ref in refs:
            git.git("update-ref", "-d", ref, cwd=root)
        tip = self.branch.tip()
        if tip is not None:
            git.git("update-ref", "-d", self.branch.ref, tip, cwd=root)
        shutil.rmtree(self.paths.dir, ignore_errors=True)
        git.git("worktree", "prune", cwd=root, check=False)
