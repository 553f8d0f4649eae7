"""A run's folder, ``.overnight/<tag>/``: where its state lives, its tag, and its lock.

A leaf of the package: the read side (status, log, the dashboard) finds runs and
their files here without loading anything that runs experiments.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from overnight import git
from overnight.errors import ConfigError, RunStateError
from overnight.git import BRANCH_PREFIX, STATE_DIR
from overnight.run.ledger import Ledger

log = logging.getLogger(__name__)

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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

    def notes(self, experiment_id: int, token: str = "") -> Path:
        """Where the agent of an experiment may append notes for the notebook (outside the worktree).

        A folder each, named with a random ``token`` by the run: a sandboxed agent may write its own
        folder only, and another cannot guess it, so an agent cannot write notes that would be recorded
        in another experiment's (another worker's) name."""
        return self.dir / "notes" / (f"{experiment_id}-{token}" if token else str(experiment_id)) / "notes.md"


def paths_for(root: Path, tag: str) -> RunPaths:
    return RunPaths(root / STATE_DIR / tag)


def check_tag(tag: str) -> str:
    if not _TAG.match(tag):
        raise ConfigError(
            f"invalid tag {tag!r}: use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return tag


def runs_of(root: Path, rel: str) -> list[tuple[str, str]]:
    """(created_at, tag) of every run of the task at ``rel`` in the repo at ``root``, oldest first.

    Runs created within the same second are ordered by the nanoseconds recorded beside (runs
    made before that record by their tags).
    """
    found = []
    for ledger_path in (root / STATE_DIR).glob("*/ledger.db"):
        try:
            with Ledger(ledger_path) as ledger:
                if ledger.get_meta("task") == rel:
                    created = ledger.get_meta("created_at", "") or ""
                    ns = int(ledger.get_meta("created_ns", "0") or 0)
                    found.append((created, ns, ledger_path.parent.name))
        except Exception as exc:  # a damaged ledger must not hide the others
            log.warning("%s: unreadable (%s)", ledger_path, exc)
    return [(created, tag) for created, _, tag in sorted(found)]


def latest_tag(root: Path, rel: str) -> str:
    runs = runs_of(root, rel)
    if not runs:
        raise RunStateError(f"no runs of the task in {root / rel} yet; start one with `overnight run`")
    return runs[-1][1]


def new_tag(root: Path) -> str:
    base = time.strftime("%Y%m%d-%H%M%S")
    tag, n = base, 1
    while (root / STATE_DIR / tag).exists() or git.resolve(root, BRANCH_PREFIX + tag):
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


def created(paths: RunPaths) -> bool:
    """Did the run's creation finish (its facts recorded)? Checked under the run's lock."""
    lock = RunLock(paths.lock)
    if lock.held_by_other():
        return True  # someone is creating or running it: leave it to them
    with Ledger(paths.ledger) as ledger:
        return ledger.get_meta("run_id") is not None
