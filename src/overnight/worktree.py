"""An experiment's git worktree: put it at a commit, see what an agent changed, commit it.

Git processes are the harness's main cost per experiment, so this module spends
as few as it can on the path from one experiment to the next:

* **fast path.** When the agent left git alone (the worktree's index file and HEAD
  are as :meth:`Worktree.checkout` left them), ``git add -A --verbose`` names the
  changed files and ``git commit`` records them: two processes.
* **safe path.** When the agent staged, committed or switched branches itself,
  the change is taken as the whole worktree against the parent, and committed on
  the parent with plumbing (``write-tree``, ``commit-tree``), whatever the agent did.
* **background work.** Writing the experiment's ref and counting its diff lines
  run while the experiment runs; cleaning the worktree and checking out the next
  parent run while the controller does its bookkeeping.

A worktree's HEAD is always detached, so nothing done in it moves a branch.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from overnight.errors import GitError
from overnight.workspace import COMMIT_ENV, Pending, git

# What `git commit` must not pick up from the user's configuration in an experiment worktree.
_COMMIT_CONFIG = (
    "-c", "core.hooksPath=/nonexistent/overnight-runs-no-hooks",
    "-c", "commit.gpgSign=false",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
)  # fmt: skip


@dataclass(frozen=True)
class Change:
    """What an agent changed in a worktree, against the parent commit."""

    parent: str
    paths: tuple[str, ...] = ()  # repo-relative
    fast: bool = False  # the agent left git alone: the index holds the change on top of the parent

    @property
    def empty(self) -> bool:
        return not self.paths


class Committed:
    """An experiment's commit, with the work still running in the background."""

    def __init__(self, commit: str, ref: Pending, stats: Pending) -> None:
        self.commit = commit
        self._ref = ref
        self._stats = stats

    def wait(self) -> tuple[int, int]:
        """Wait for the ref; return (insertions, deletions)."""
        self._ref.wait()
        insertions = deletions = 0
        for entry in self._stats.wait().split("\0"):
            fields = entry.split("\t")
            if len(fields) >= 2:
                insertions += int(fields[0]) if fields[0].isdigit() else 0
                deletions += int(fields[1]) if fields[1].isdigit() else 0
        return insertions, deletions


class Worktree:
    """A detached worktree for experiments, under the run's state folder. One thread uses it."""

    def __init__(self, root: Path, path: Path) -> None:
        self.root = root
        self.path = path
        self._exact: str | None = None  # the commit the worktree is known to match exactly
        self._mark: tuple[tuple[int, int, int], str] | None = None  # index stat and HEAD after checkout
        self._reset: threading.Thread | None = None
        self._reset_error: BaseException | None = None
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
        self._join()
        if self.path.exists():
            git("worktree", "remove", "--force", str(self.path), cwd=self.root, check=False)
        git("worktree", "prune", cwd=self.root, check=False)

    # -- putting it at a commit ---------------------------------------------------------------

    def checkout(self, commit: str) -> None:
        """Put the worktree exactly at ``commit``: detached, no local changes, no untracked files."""
        self._join()
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
        self._reset = threading.Thread(target=self._reset_in_background, args=(next_commit, clean), daemon=True)
        self._reset.start()

    def _reset_to(self, commit: str, clean: bool) -> None:
        self._exact = None
        # Untracked files first (with the old index), then the checkout undoes staged and committed files.
        if clean:
            git("clean", "-q", "-f", "-d", cwd=self.path)
        git("checkout", "-q", "-f", "--detach", commit, cwd=self.path)
        self._exact = commit

    def _reset_in_background(self, commit: str, clean: bool) -> None:
        try:
            self._reset_to(commit, clean)
        except BaseException as exc:  # handed to the worker thread by _join
            self._reset_error = exc

    def _join(self) -> None:
        if self._reset is not None:
            self._reset.join()
            self._reset = None
        if self._reset_error is not None:
            error, self._reset_error = self._reset_error, None
            raise error

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
            st = os.stat(self._gitdir() / "index")
        except OSError:
            return (0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _gitdir(self) -> Path:
        text = (self.path / ".git").read_text(encoding="utf-8")
        return self.path / text.split(":", 1)[1].strip()

    def _head(self) -> str:
        """The worktree's HEAD commit when detached, read from its file (no git process)."""
        try:
            return (self._gitdir() / "HEAD").read_text(encoding="utf-8").strip()
        except (OSError, IndexError):
            return ""

    def stage(self, parent: str) -> Change:
        """Stage everything and name the files that differ from ``parent``."""
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
        return Change(parent, tuple(paths), fast and self._head() == parent)

    def diff(self, change: Change) -> str:
        """The staged change as a patch (kept for changes that are rejected)."""
        return git("diff", "--cached", "--no-color", change.parent, cwd=self.path)

    def commit(self, change: Change, message: str, ref: str) -> Committed:
        """Commit the staged change on its parent; create ``ref`` there and count lines in the background."""
        if change.fast:
            git(*_COMMIT_CONFIG, "commit", "-q", "--no-verify", "--cleanup=verbatim", "-F", "-",
                cwd=self.path, input=message, env=COMMIT_ENV)  # fmt: skip
            commit = self._head()
            script = f"create {ref} {commit}\n"
        else:
            tree = git("write-tree", cwd=self.path).strip()
            commit = git("commit-tree", tree, "-p", change.parent, "-F", "-",
                         cwd=self.path, input=message, env=COMMIT_ENV).strip()  # fmt: skip
            script = f"create {ref} {commit}\noption no-deref\nupdate HEAD {commit}\n"
        if len(commit) < 40:
            raise GitError(f"could not read the new commit in {self.path}")
        return Committed(
            commit,
            Pending("update-ref", "--stdin", cwd=self.path, input=script),
            Pending("diff-tree", "-r", "--numstat", "--no-renames", "-z", change.parent, commit, cwd=self.path),
        )


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
