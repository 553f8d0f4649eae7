"""An experiment's git worktree: put it at a commit, see what an agent changed, commit it.

Git processes are the harness's main cost per experiment, so this module keeps
them off the path from one experiment to the next where it can:

* **what changed.** When the agent left git alone (the worktree's index file and
  HEAD are as :meth:`Worktree.checkout` left them), ``git add -A --verbose`` stages
  the change and names the changed files in one process. When the agent staged,
  committed or switched branches itself, the change is taken as the whole worktree
  against the parent (``git diff --cached``), whatever the agent did.
* **committing** (``write-tree``, ``commit-tree`` on the parent we chose, the
  experiment's ref, the line counts) runs on a thread while the experiment runs:
  the files it measures are already what will be committed.
* **resetting** for the next experiment (``git clean`` when new files appeared,
  ``git checkout``) runs on a thread while the controller does its bookkeeping.

A worktree's HEAD is always detached, so nothing done in it moves a branch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from overnight.errors import GitError
from overnight.git import GitStream, Pending, git, git_ok

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """What an agent changed in a worktree, against the parent commit."""

    parent: str
    paths: tuple[str, ...] = ()  # repo-relative

    @property
    def empty(self) -> bool:
        return not self.paths


class _Background:
    """A function run on a thread; :meth:`join` waits and re-raises what it raised."""

    def __init__(self, target: Callable[[], None]) -> None:
        self._target = target
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as exc:  # handed to the joining thread
            self._error = exc

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class Committed:
    """An experiment's commit, written in the background while the experiment runs.

    Nothing the run needs waits for it: the worktree's files are already what will
    be committed. :meth:`wait` gives the commit, with its ref created and its lines counted.
    """

    def __init__(self, worktree: Worktree, change: Change, message: str, ref: str) -> None:
        self.commit = ""
        self.insertions = 0
        self.deletions = 0
        self._tree, self._change, self._message, self._ref = worktree, change, message, ref
        self._work = _Background(self._write)

    def _write(self) -> None:
        wt, parent = self._tree, self._change.parent
        # The experiment is running meanwhile and may damage the worktree's `.git` file: name
        # the repository explicitly, never through that file.
        env = wt.git_env()
        # The line counts compare the index (what is committed) with the parent: counted alongside write-tree.
        stats = Pending("diff-index", "--cached", "--numstat", "--no-renames", "-z", parent, cwd=wt.path, env=env)
        tree = git("write-tree", cwd=wt.path, env=env).strip()
        # A commit object is a short text: write it with the long-lived hash-object, no new process.
        stamp = f"overnight <overnight@localhost> {int(time.time())} +0000"
        text = f"tree {tree}\nparent {parent}\nauthor {stamp}\ncommitter {stamp}\n\n{self._message}"
        scratch = wt.gitdir() / "overnight-commit"
        scratch.write_text(text, encoding="utf-8")
        commit = wt.objects.ask(f"{scratch}\n", 1)[0]
        wt.refs.ask(f"start\ncreate {self._ref} {commit}\noption no-deref\nupdate HEAD {commit}\ncommit\n", 2)
        for entry in stats.wait().split("\0"):
            fields = entry.split("\t")
            if len(fields) >= 2:
                self.insertions += int(fields[0]) if fields[0].isdigit() else 0
                self.deletions += int(fields[1]) if fields[1].isdigit() else 0
        self.commit = commit

    def wait(self) -> Committed:
        self._work.join()
        return self


class Worktree:
    """A detached worktree for experiments, under the run's state folder. One thread uses it."""

    def __init__(self, root: Path, path: Path) -> None:
        self.root = root
        self.path = path
        self._exact: str | None = None  # the commit the worktree is known to match exactly
        self._mark: tuple[tuple[int, int, int], str] | None = None  # index stat and HEAD after checkout
        self._reset: _Background | None = None
        self._committing: Committed | None = None
        self._link: str | None = None  # the `.git` file's text, to restore if a run changes it
        # Long-lived git processes that write commits and refs without a new process each time.
        self.objects = GitStream("hash-object", "-w", "-t", "commit", "--stdin-paths", cwd=path)
        self.refs = GitStream("update-ref", "--stdin", cwd=path)
        self._names: frozenset[str] | None = None  # every path in the worktree when it was last known clean

    # -- life cycle -------------------------------------------------------------------------

    def create(self, commit: str) -> None:
        """Make the worktree at ``commit``; a stale one at the same path is reused."""
        if self.path.exists():
            if not (self.path / ".git").is_file():
                raise GitError(f"{self.path} exists and is not an overnight worktree; move it away and resume")
            self._exact = None
        else:
            git("worktree", "prune", cwd=self.root)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            git("worktree", "add", "--detach", "-q", str(self.path), commit, cwd=self.root)
            self._exact = commit
        self.checkout(commit)

    def remove(self) -> None:
        """Close the git streams and remove the worktree, even when background work failed (that error is raised)."""
        try:
            self._join()
        finally:
            self.objects.close()
            self.refs.close()
            if self.path.exists():
                git("worktree", "remove", "--force", str(self.path), cwd=self.root, check=False)
            git("worktree", "prune", cwd=self.root, check=False)

    # -- putting it at a commit ---------------------------------------------------------------

    def _repair(self) -> None:
        """Undo a run's damage to the worktree's link to the repository (its `.git` file)."""
        link = self.path / ".git"
        if self._link is None:
            self._link = link.read_text(encoding="utf-8") if link.is_file() else None
            self.objects.env = self.refs.env = self.git_env()
            return
        try:
            intact = link.is_file() and not link.is_symlink() and link.read_text(encoding="utf-8") == self._link
        except OSError:
            intact = False
        if not intact:
            log.warning("%s: the worktree's .git was changed by a command; restored", self.path)
            if link.is_dir() and not link.is_symlink():
                shutil.rmtree(link)
            else:
                link.unlink(missing_ok=True)
            link.write_text(self._link, encoding="utf-8")
            self._exact = None

    def ran(self) -> None:
        """A command ran here and may have left files or changes: the next checkout resets, even to the same commit."""
        self._exact = None

    def checkout(self, commit: str) -> None:
        """Put the worktree exactly at ``commit``: detached, no local changes, no untracked files."""
        self._join()
        self._repair()
        if self._exact != commit:
            self._reset_to(commit, clean=True)
        self._mark = (self._index_stat(), self._head())
        self._names = self._walk()

    def release(self, next_commit: str, touched: bool = True) -> None:
        """An experiment is done with the worktree; get it ready for ``next_commit`` in the background.

        ``touched=False`` says nothing changed it since it was checked out (a proposal
        that changed nothing). :meth:`checkout` waits for the background work.
        """
        self._join()
        if touched:
            self._exact = None
        if self._exact == next_commit:
            return
        # `git clean` is needed only when new untracked files appeared since the last
        # staging; comparing the names in the worktree is much cheaper than asking git.
        clean = self._names is None or self._walk() != self._names
        self._reset = _Background(lambda: self._reset_to(next_commit, clean))

    def _reset_to(self, commit: str, clean: bool) -> None:
        self._repair()
        self._exact = None
        # Untracked files first (with the old index), then the checkout undoes staged and committed files.
        if clean:
            git("clean", "-q", "-f", "-d", cwd=self.path)
        git("checkout", "-q", "-f", "--detach", commit, cwd=self.path)
        self._exact = commit

    def _join(self) -> None:
        """Wait for background work on this worktree (a commit being written, a reset)."""
        if self._committing is not None:
            committing, self._committing = self._committing, None
            committing.wait()
        if self._reset is not None:
            reset, self._reset = self._reset, None
            reset.join()

    def _walk(self, limit: int = 5000) -> frozenset[str] | None:
        """Every path under the worktree (but .git); None for big trees, where git is faster to ask."""
        names: set[str] = set()
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                entries = list(os.scandir(self.path / rel if rel else self.path))
            except OSError:
                return None
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if name == ".git":
                    continue
                names.add(name)
                if entry.is_dir(follow_symlinks=False):
                    stack.append(name)
            if len(names) > limit:
                return None
        return frozenset(names)

    # -- what the agent changed -----------------------------------------------------------

    def _index_stat(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.gitdir() / "index")
        except OSError:
            return (0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def gitdir(self) -> Path:
        """The worktree's folder inside the repository, from its `.git` file as git wrote it."""
        text = self._link if self._link is not None else (self.path / ".git").read_text(encoding="utf-8")
        return self.path / text.split(":", 1)[1].strip()

    def git_env(self) -> dict[str, str]:
        """Environment that points git at this worktree without reading its `.git` file."""
        return {"GIT_DIR": str(self.gitdir()), "GIT_WORK_TREE": str(self.path)}

    def _head(self) -> str:
        """The worktree's HEAD commit when detached, read from its file (no git process)."""
        try:
            return (self.gitdir() / "HEAD").read_text(encoding="utf-8").strip()
        except (OSError, IndexError):
            return ""

    def stage(self, parent: str) -> Change:
        """Stage everything and name the files that differ from ``parent``."""
        self._repair()  # an agent that rewrote `.git` must not send our git commands elsewhere
        self._exact = None  # the agent may have changed anything
        fast = self._mark == (self._index_stat(), parent)
        paths: list[str] | None = None
        if fast:
            # With the index as checkout left it, `add --verbose` names exactly the changed files.
            out = git("-c", "core.quotePath=false", "add", "-A", "--verbose", cwd=self.path)
            paths = _verbose_paths(out)
        else:
            git("add", "-A", cwd=self.path)
        if paths is None:
            out = git("diff", "--cached", "--name-only", "--no-renames", "-z", parent, cwd=self.path)
            paths = [p for p in out.split("\0") if p]
        if not paths and self._head() == parent:
            self._exact = parent
        self._names = self._walk()  # everything not ignored is staged now
        return Change(parent, tuple(paths))

    def change_key(self, change: Change) -> str:
        """A digest of the changed files' new state: on one parent, equal keys mean equal diffs."""
        digest = hashlib.sha256()
        for path in sorted(change.paths):
            full = self.path / path
            digest.update(path.encode() + b"\0")
            if full.is_symlink():
                digest.update(b"link:" + os.readlink(full).encode())
            elif full.is_file():
                digest.update(b"x" if os.access(full, os.X_OK) else b"f")
                digest.update(hashlib.sha256(full.read_bytes()).digest())
            else:
                digest.update(b"deleted")
        return digest.hexdigest()

    def cherry_pick(self, commit: str, onto: str, message: str, ref: str) -> Committed | str:
        """Commit ``commit``'s change again on top of ``onto``; or say why it cannot be.

        Used when the best moved while a candidate was measured: the candidate's change is
        replayed on the new best, to be measured there before it can be kept.
        """
        self.checkout(onto)
        self._exact = None
        if not git_ok("cherry-pick", "--no-commit", commit, cwd=self.path):
            git_ok("cherry-pick", "--abort", cwd=self.path)
            return "its change conflicts with"
        change = self.stage(onto)
        if change.empty:
            return "its change is already in"
        return self.commit(change, message, ref).wait()

    def weight(self, change: Change) -> int:
        """Bytes of the changed files as they are now (deleted ones weigh nothing)."""
        total = 0
        for path in change.paths:
            with contextlib.suppress(OSError):
                total += (self.path / path).lstat().st_size
        return total

    def diff(self, change: Change, limit: int = 1 << 20) -> str:
        """The staged change as a patch (kept for changes that are rejected), cut at ``limit`` bytes."""
        text = git("diff", "--cached", "--no-color", change.parent, cwd=self.path)
        return (
            text if len(text) <= limit else text[:limit] + f"\n[... {len(text) - limit} more bytes of diff not kept]\n"
        )

    def commit(self, change: Change, message: str, ref: str) -> Committed:
        """Start committing the staged change on its parent, with ``ref`` pointing at it.

        The commit is made from the index with plumbing, so it sits on ``change.parent``
        whatever the agent did to HEAD. Call ``wait()`` on the result before relying on it.
        """
        self._committing = Committed(self, change, message, ref)
        return self._committing


_VERBOSE_LINE = re.compile(r"^(?:add|remove) '(.*)'$")


def _verbose_paths(out: str) -> list[str] | None:
    """Paths from `git add --verbose`; None when a name defeats line parsing (a newline in it)."""
    paths = []
    for line in out.splitlines():
        match = _VERBOSE_LINE.match(line)
        if match is None:
            return None
        paths.append(match.group(1))
    return paths
