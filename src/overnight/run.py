"""A run: one campaign on a task, named by a tag.

A run owns the branch ``overnight/<tag>`` and the folder ``.overnight/<tag>/`` at the
repository root (ledger, lock, logs, briefs, worktrees). :meth:`Run.start` creates a
new run or resumes an existing one; either way it holds the run's lock until
:meth:`Run.close`, so one controller at a time writes the ledger and the branch.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from overnight import git
from overnight.errors import RunStateError
from overnight.git import BRANCH_PREFIX, STATE_DIR
from overnight.ledger import Ledger
from overnight.process import kill_token_holders
from overnight.records import ON_BRANCH, Status
from overnight.task import Task

log = logging.getLogger(__name__)

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its state."""

    dir: Path

    @property
    def ledger(self) -> Path:
        return self.dir / "ledger.db"

    @property
    def lock(self) -> Path:
        return self.dir / "lock"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def worktrees(self) -> Path:
        return self.dir / "worktrees"

    def log(self, experiment_id: int, kind: str = "") -> Path:
        return self.logs / f"{experiment_id}{'.' + kind if kind else ''}.log"

    def diff(self, experiment_id: int) -> Path:
        return self.logs / f"{experiment_id}.diff"

    def brief(self, experiment_id: int) -> Path:
        return self.dir / "briefs" / f"{experiment_id}.json"


def paths_for(root: Path, tag: str) -> RunPaths:
    return RunPaths(root / STATE_DIR / tag)


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise RunStateError(
            f"invalid tag {tag!r}: use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return tag


def runs_of(root: Path, rel: str) -> list[tuple[str, str]]:
    """(created_at, tag) of every run of the task at ``rel`` in the repo at ``root``, oldest first."""
    found = []
    for ledger_path in (root / STATE_DIR).glob("*/ledger.db"):
        try:
            with Ledger(ledger_path) as ledger:
                if ledger.get_meta("task") == rel:
                    found.append((ledger.get_meta("created_at", "") or "", ledger_path.parent.name))
        except Exception as exc:  # a damaged ledger must not hide the others
            log.warning("%s: unreadable (%s)", ledger_path, exc)
    return sorted(found)


def latest_tag(root: Path, rel: str) -> str:
    runs = runs_of(root, rel)
    if not runs:
        raise RunStateError(f"no runs of the task in {root / rel} yet; start one with `overnight run`")
    return runs[-1][1]


def new_tag(task: Task) -> str:
    base = time.strftime("%Y%m%d-%H%M%S")
    tag, n = base, 1
    while (task.root / STATE_DIR / tag).exists() or git.resolve(task.root, BRANCH_PREFIX + tag):
        n += 1
        tag = f"{base}-{n}"
    return tag


class RunLock:
    """An exclusive advisory lock on the run; the OS releases it when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self, patience_s: float = 0.5) -> None:
        """Take the lock, or raise RunStateError naming the holder.

        A reader asking :meth:`held_by_other` (``overnight status``, the dashboard every two
        seconds) holds the lock for an instant: that is waited out for up to ``patience_s``.
        """
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        deadline = time.monotonic() + patience_s
        while not _locked(fh):
            if time.monotonic() >= deadline:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise RunStateError(f"this run is already running (pid {holder}); stop it first or use another --tag")
            time.sleep(0.02)
        fh.truncate(0)
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def held_by_other(self) -> bool:
        """True while another process holds the lock (the run is in progress)."""
        if not self.path.exists():
            return False
        with open(self.path, encoding="utf-8") as fh:
            if not _locked(fh):
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
            return False


def _locked(fh: IO[str]) -> bool:
    """Take the exclusive lock of ``fh`` if it is free; False when another holder has it."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class Run:
    """An open run, locked for writing. Use :meth:`start`; close with :meth:`close`."""

    def __init__(self, task: Task, tag: str, paths: RunPaths, ledger: Ledger, lock: RunLock) -> None:
        self.task = task
        self.tag = tag
        self.paths = paths
        self.ledger = ledger
        self.lock = lock
        self.id = ledger.get_meta("run_id") or ""
        self.start_commit = ledger.get_meta("start_commit") or ""
        self.resumed = False

    @property
    def branch(self) -> str:
        return BRANCH_PREFIX + self.tag

    @property
    def branch_ref(self) -> str:
        return "refs/heads/" + self.branch

    @classmethod
    def start(cls, task: Task, tag: str | None = None, *, force: bool = False) -> Run:
        """Create the run ``tag`` (a new tag when None) or resume it when it exists."""
        tag = check_tag(tag) if tag else new_tag(task)
        git.check_branch_name(task.root, BRANCH_PREFIX + tag)
        paths = paths_for(task.root, tag)
        if paths.ledger.exists() and not _created(paths):
            # A controller died while creating this run: nothing was recorded and no branch made yet.
            for leftover in paths.dir.glob("ledger.db*"):
                leftover.unlink()
        if paths.ledger.exists():
            return cls._resume(task, tag, paths, force)
        return cls._create(task, tag, paths)

    @classmethod
    def _create(cls, task: Task, tag: str, paths: RunPaths) -> Run:
        root = task.root
        branch_ref = "refs/heads/" + BRANCH_PREFIX + tag
        if git.resolve(root, branch_ref):
            raise RunStateError(
                f"branch {BRANCH_PREFIX}{tag} exists but has no run state in {paths.dir}; choose another --tag"
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
                start_commit=start_commit,
                fingerprint=task.config.fingerprint(),
                config=json.dumps(task.config.to_dict()),
            )
            git.update_ref(root, branch_ref, start_commit, None)
        except BaseException:
            lock.release()
            if created_dir:
                shutil.rmtree(paths.dir, ignore_errors=True)
            raise
        log.info("created run %s on %s at %s", tag, BRANCH_PREFIX + tag, start_commit[:10])
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
        if self.ledger.get_meta("task") != self.task.rel:
            raise RunStateError(
                f"run {self.tag} belongs to the task in {self.ledger.get_meta('task')!r}, not {self.task.rel!r}; "
                "use another --tag"
            )
        old = json.loads(self.ledger.get_meta("config") or "{}")
        new = self.task.config.to_dict()
        if self.ledger.get_meta("fingerprint") == self.task.config.fingerprint():
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
        self.ledger.set_meta(fingerprint=self.task.config.fingerprint(), config=json.dumps(new))

    def _recover(self) -> None:
        """After a stop or a crash: end what was running, kill its leftovers, mend the branch."""
        killed = kill_token_holders(f"{self.id}:")
        if killed:
            log.warning("killed %d process(es) left running by the previous controller", killed)
        for exp in self.ledger.experiments(Status.RUNNING):
            # The commit is written while the experiment runs; its ref tells whether it got that far.
            commit = exp.commit or git.resolve(self.task.root, git.experiment_ref(self.tag, exp.id)) or ""
            reason = "the controller stopped during this experiment"
            self.ledger.record(
                replace(exp, status=Status.INTERRUPTED, reason=reason, commit=commit, ended_at=now_iso())
            )
        self._mend_branch()

    def _mend_branch(self) -> None:
        keeps = [e for e in self.ledger.experiments() if e.status in ON_BRANCH]
        expected = keeps[-1].commit if keeps else self.start_commit
        tip = git.resolve(self.task.root, self.branch_ref)
        if tip == expected:
            return
        if tip is None:
            log.warning("branch %s was deleted; recreating it at %s", self.branch, expected[:10])
            git.update_ref(self.task.root, self.branch_ref, expected, None)
            return
        if keeps and tip == keeps[-1].parent:
            # The controller died between recording a keep and moving the branch: finish the move.
            git.update_ref(self.task.root, self.branch_ref, expected, tip)
            return
        raise RunStateError(
            f"branch {self.branch} points at {tip[:10]}, which overnight did not put there (expected {expected[:10]}); "
            f"move it back with `git branch -f {self.branch} {expected[:10]}` or use another --tag"
        )

    def note_agent(self, settings: dict[str, Any]) -> None:
        """Record the ``[agent]`` settings this invocation runs with (command-line overrides included).

        Kept in the meta key ``agents``: a list of ``{"from": <first experiment id>, "settings": ...}``,
        one entry per start or resume, so each experiment's settings can be told later.
        """
        sessions = json.loads(self.ledger.get_meta("agents") or "[]")
        sessions.append({"from": self.ledger.next_id(), "settings": settings})
        self.ledger.set_meta(agents=json.dumps(sessions))

    def close(self) -> None:
        self.ledger.close()
        self.lock.release()


def _created(paths: RunPaths) -> bool:
    """Did the run's creation finish (its facts recorded)? Checked under the run's lock."""
    lock = RunLock(paths.lock)
    if lock.held_by_other():
        return True  # someone is creating or running it: leave it to them
    with Ledger(paths.ledger) as ledger:
        return ledger.get_meta("run_id") is not None
