"""An experiment's git worktree: put it at a commit, see what an agent changed, commit it.

Git processes are the harness's main cost per experiment, so this module keeps
them off the path from one experiment to the next where it can:

* **what changed.** When the agent only edited files the best tracks and left git
  alone (the worktree's index file and HEAD are as :meth:`Worktree.checkout` left
  them), the harness's own picture of the files names the change without git
  (overnight.git.picture), keeping the files' bytes as read then. When names were added or removed, ``git add -A --verbose`` stages
  the change and names the changed files in one process. When the agent staged,
  committed or switched branches itself, the change is taken as the whole worktree
  against the parent (``git diff --cached``), whatever the agent did.
* **committing** (the commit on the parent we chose, the experiment's ref, the line
  counts) runs on a thread while the experiment runs (overnight.git.commits): the files
  it measures are already what will be committed.
* **resetting** for the next experiment runs on a thread while the controller does
  its bookkeeping: when the worktree's index and HEAD never left the commit and no
  name was added or removed, the files that differ are written back from git's objects
  through a long-lived ``cat-file``; otherwise ``git clean`` (when new files appeared)
  and ``git checkout``.

A worktree's HEAD is always detached, so nothing done in it moves a branch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from overnight.errors import GitError
from overnight.git import BlobReader, DiffStream, GitStream, git, git_ok, picture
from overnight.git.commits import Background, Committed
from overnight.git.picture import Change, Picture, Tree

log = logging.getLogger(__name__)


class Worktree:
    """A detached worktree for experiments, under the run's state folder. One thread uses it."""

    def __init__(self, root: Path, path: Path) -> None:
        self.root = root
        self.path = path
        self._exact: str | None = None  # the commit the worktree is known to match exactly
        self._mark: tuple[tuple[int, int, int], str] | None = None  # index stat and HEAD after checkout
        self._reset: Background | None = None
        self._committing: Committed | None = None
        self._link: str | None = None  # the `.git` file's text, to restore if a run changes it
        # Long-lived git processes that write commits and refs without a new process each time.
        self.objects = GitStream("hash-object", "-w", "-t", "commit", "--stdin-paths", cwd=path)
        self.refs = GitStream("update-ref", "--stdin", cwd=path)
        self.blobs = BlobReader(path)
        self.diffs = DiffStream(path)
        # The files as they were when the worktree was last exactly at a commit whose index and
        # HEAD it still has (None: unknown, or git's index was changed since: ask git).
        self._picture: Picture | None = None
        self._trees: dict[str, Tree] = {}  # commit → its tree, for the latest few commits
        self._plain = False  # the repository stores files as they are (set at create)
        self._objects: Path | None = None  # the repository's object store

    # -- life cycle -------------------------------------------------------------------------

    def create(self, commit: str) -> None:
        """Make the worktree at ``commit``; a stale one at the same path is reused."""
        self._plain = picture.plain_repository(self.root)
        objects = Path(git("rev-parse", "--git-path", "objects", cwd=self.root).strip())
        self._objects = objects if objects.is_absolute() else self.root / objects
        if self.path.exists():
            if not (self.path / ".git").is_file():
                raise GitError(f"{self.path} exists and is not an overnight worktree; move it away and resume")
            self._exact = None
        else:
            git("worktree", "prune", cwd=self.root)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            git("worktree", "add", "--detach", "-q", str(self.path), commit, cwd=self.root)
            self._exact = commit
            self._picture = picture.take(self.path, commit) if self._plain else None
        self.checkout(commit)

    def remove(self) -> None:
        """Close the git streams and remove the worktree, even when background work failed (that error is raised)."""
        try:
            self._join()
        finally:
            self.objects.close()
            self.refs.close()
            self.blobs.close()
            self.diffs.close()
            if self.path.exists():
                git("worktree", "remove", "--force", str(self.path), cwd=self.root, check=False)
            git("worktree", "prune", cwd=self.root, check=False)

    # -- putting it at a commit ---------------------------------------------------------------

    def _repair(self) -> None:
        """Undo a run's damage to the worktree's link to the repository (its `.git` file)."""
        link = self.path / ".git"
        if self._link is None:
            self._link = link.read_text(encoding="utf-8") if link.is_file() else None
            self.objects.env = self.refs.env = self.blobs.env = self.diffs.env = self.git_env()
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
            self._picture = None

    def ran(self) -> None:
        """A command ran here and may have left files or changes: the next checkout resets, even to the same commit."""
        self._exact = None

    def checkout(self, commit: str) -> None:
        """Put the worktree exactly at ``commit``: detached, no local changes, no untracked files."""
        self._join()
        self._repair()
        if self._exact != commit:
            self._ready(commit)
        self._mark = (self._index_stat(), self._head())

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
        self._reset = Background(lambda: self._ready(next_commit))

    def _ready(self, commit: str) -> None:
        """Put the worktree exactly at ``commit``: without git when the picture allows, else with it.

        Without git when the worktree's index and HEAD never left ``commit`` since its picture
        was taken and no name was added or removed: then the files that differ are tracked
        ones (written back from git's objects) or ignored ones (left, as git leaves them).
        """
        self._repair()
        before = self._picture
        now = picture.take(self.path, commit) if before is not None else None
        same_names = before is not None and now is not None and before.same_names(now)
        if before is not None and now is not None and same_names and self._may_tidy(before, commit):
            tree = self._tree(commit)
            dirty = [p for p, st in now.files.items() if st != before.files[p] and p in tree.entries]
            picture.restore(self.path, dirty, tree, self.blobs)
            self._picture = picture.take(self.path, commit)
            self._exact = commit
            return
        self._reset_to(commit, clean=not same_names)

    def _may_tidy(self, before: Picture, commit: str) -> bool:
        return (
            self._plain
            and before.commit == commit
            and self._mark == (self._index_stat(), commit)
            and self._tree(commit).plain
        )

    def _reset_to(self, commit: str, clean: bool) -> None:
        self._exact = None
        # Untracked files first (with the old index), then the checkout undoes staged and committed files.
        # `git clean` is needed only when names appeared since the picture; comparing names is cheaper than git.
        if clean:
            git("clean", "-q", "-f", "-d", cwd=self.path)
        git("checkout", "-q", "-f", "--detach", commit, cwd=self.path)
        self._exact = commit
        self._picture = picture.take(self.path, commit) if self._plain else None
        if self._picture is not None:
            self._tree(commit)  # read now, in the background, for the next experiment's change

    def objects_dir(self) -> Path:
        """Where the repository keeps its objects (for commits written by hand)."""
        assert self._objects is not None, "create() first"
        return self._objects

    def tree_of(self, commit: str) -> Tree:
        """A commit's tree as read by overnight.git.picture (kept for the latest few commits)."""
        return self._tree(commit)

    def _tree(self, commit: str) -> Tree:
        if commit not in self._trees:
            if len(self._trees) >= 4:
                self._trees.pop(next(iter(self._trees)))
            self._trees[commit] = Tree.of(self.root, commit)
        return self._trees[commit]

    def _join(self) -> None:
        """Wait for background work on this worktree (a commit being written, a reset)."""
        if self._committing is not None:
            committing, self._committing = self._committing, None
            committing.wait()
        if self._reset is not None:
            reset, self._reset = self._reset, None
            reset.join()

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
        """Name the files that differ from ``parent``, and stage them (now, or when committed)."""
        self._repair()  # an agent that rewrote `.git` must not send our git commands elsewhere
        self._exact = None  # the agent may have changed anything
        untouched = self._mark == (self._index_stat(), parent)  # the agent left git's index and HEAD alone
        before = self._picture
        if untouched and before is not None and before.commit == parent:
            now = picture.take(self.path, parent)
            blobs = None if now is None else picture.changed(self.path, before, now, self._tree(parent))
            if blobs is not None:
                if not blobs:
                    self._exact = parent
                    self._picture = now  # the same content; the stats are the ones to compare with next
                return Change(parent, tuple(blobs), blobs=blobs)
        self._picture = None  # git's index is changed from here on
        fast = untouched
        paths_found: list[str] | None = None
        if fast:
            # With the index as checkout left it, `add --verbose` names exactly the changed files.
            out = git("-c", "core.quotePath=false", "add", "-A", "--verbose", cwd=self.path)
            paths_found = _verbose_paths(out)
        else:
            git("add", "-A", cwd=self.path)
        if paths_found is None:
            out = git("diff", "--cached", "--name-only", "--no-renames", "-z", parent, cwd=self.path)
            paths_found = [p for p in out.split("\0") if p]
        if not paths_found and self._head() == parent:
            self._exact = parent
        return Change(parent, tuple(paths_found))

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
        self._picture = None  # cherry-pick works in git's index
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

    def holding(self, change: Change, values: tuple[str, ...]) -> str:
        """The first changed file that holds one of ``values`` (credentials), or "" (symlinks are not followed)."""
        if not values:
            return ""
        needles = [v.encode("utf-8", errors="surrogateescape") for v in values]
        for path in change.paths:
            target = self.path / path
            try:
                if target.is_symlink() or not target.is_file():
                    continue
                data = target.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                return path
        return ""

    def diff(self, change: Change, limit: int = 1 << 20) -> str:
        """The change as a patch (kept for changes that are rejected), cut at ``limit`` bytes."""
        if change.blobs is None:
            text = git("diff", "--cached", "--no-color", change.parent, cwd=self.path)
        else:  # edits of tracked files only: the worktree against the parent's tree
            text = git("diff", "--no-color", change.parent, "--", *change.paths, cwd=self.path)
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
