"""Git: the user's repository, the run branch, experiment worktrees and refs.

Rules this module keeps, so the user's work is never at risk:

* the user's checkout, index and branches are only ever read;
* the run branch and experiment refs are written with compare-and-swap updates;
* worktrees always have a detached HEAD, so nothing done in them moves a branch;
* commits are built with plumbing from the worktree's index, on the parent we chose,
  so an agent that commits or switches branches by itself cannot change what is measured.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from overnight.errors import DirtyTreeError, GitError

log = logging.getLogger(__name__)

STATE_DIR = ".overnight"  # run state at the repository root, excluded through .git/info/exclude
BRANCH_PREFIX = "overnight/"
REF_PREFIX = "refs/overnight/"

# Experiment commits are made by overnight, whatever the user's git configuration holds.
_COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "overnight",
    "GIT_AUTHOR_EMAIL": "overnight@localhost",
    "GIT_COMMITTER_NAME": "overnight",
    "GIT_COMMITTER_EMAIL": "overnight@localhost",
}


def git(*args: str, cwd: Path, input: str | None = None, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run one git command and return its stdout; a failure raises GitError with git's words."""
    full_env = None
    if env:
        full_env = {**os.environ, **env}
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            text=True,
            env=full_env,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; install git and try again") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise GitError(f"git {' '.join(args[:3])} failed in {cwd}: {detail}")
    return proc.stdout


def repo_root(path: Path) -> Path:
    """The top of the git repository holding ``path``."""
    if not path.is_dir():
        raise GitError(f"{path}: not a folder")
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GitError(f"{path} is not inside a git repository; run `git init` and commit your task first")
    return Path(proc.stdout.strip()).resolve()


def head_commit(root: Path) -> str:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd=root, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise GitError(f"{root}: the repository has no commits yet; commit your task files first")
    return proc.stdout.strip()


def resolve(root: Path, rev: str) -> str | None:
    """The commit ``rev`` names, or None when it names nothing."""
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], cwd=root, capture_output=True, text=True
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def tracked_files(root: Path) -> list[str]:
    return [p for p in git("ls-files", "-z", cwd=root).split("\0") if p]


def untracked_files(root: Path) -> list[str]:
    return [p for p in git("ls-files", "-z", "--others", "--exclude-standard", cwd=root).split("\0") if p]


def modified_files(root: Path) -> list[str]:
    """Tracked files with staged or unstaged changes in the user's checkout."""
    out = git("status", "--porcelain=v1", "-z", "--untracked-files=no", cwd=root, env={"GIT_OPTIONAL_LOCKS": "0"})
    paths, entries = [], out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        if len(entry) > 3:
            paths.append(entry[3:])
            if entry[0] in "RC":  # a rename is followed by its source path
                i += 1
        i += 1
    return paths


def ensure_clean(root: Path, paths: list[str]) -> None:
    """Refuse to start when any of ``paths`` (repo-relative) has uncommitted changes."""
    dirty = sorted(set(paths))
    if dirty:
        shown = "\n  ".join(dirty[:10]) + ("\n  ..." if len(dirty) > 10 else "")
        raise DirtyTreeError(
            "these files have uncommitted changes, and experiments start from the last commit:\n  "
            f"{shown}\ncommit or stash them, then start the run again"
        )


def exclude_state_dir(root: Path) -> None:
    """Git-ignore the run state folder through .git/info/exclude (never the user's .gitignore)."""
    common = Path(git("rev-parse", "--git-common-dir", cwd=root).strip())
    if not common.is_absolute():
        common = root / common
    exclude = common / "info" / "exclude"
    line = f"/{STATE_DIR}/"
    text = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
    if line not in text.splitlines():
        exclude.parent.mkdir(parents=True, exist_ok=True)
        with exclude.open("a", encoding="utf-8") as fh:
            fh.write(("" if text.endswith("\n") or not text else "\n") + line + "\n")


def check_branch_name(root: Path, branch: str) -> None:
    proc = subprocess.run(["git", "check-ref-format", "--branch", branch], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise GitError(
            f"{branch!r} is not a valid git branch name; choose a simpler tag (letters, digits, '-', '_', '.')"
        )


def update_ref(root: Path, ref: str, new: str, old: str | None) -> None:
    """Compare-and-swap ``ref`` from ``old`` to ``new``; ``old=None`` means it must not exist yet."""
    git("update-ref", ref, new, old if old is not None else "", cwd=root)


def experiment_ref(tag: str, experiment_id: int) -> str:
    return f"{REF_PREFIX}{tag}/{experiment_id}"


def diff_text(root: Path, parent: str, commit: str) -> str:
    return git("diff", "--no-color", parent, commit, cwd=root)


@dataclass(frozen=True)
class Change:
    """The staged change of a worktree against the parent commit."""

    paths: tuple[str, ...]  # repo-relative
    insertions: int
    deletions: int

    @property
    def empty(self) -> bool:
        return not self.paths


class Worktree:
    """A detached worktree for experiments, under the run's state folder."""

    def __init__(self, root: Path, path: Path) -> None:
        self.root = root
        self.path = path

    def create(self, commit: str) -> None:
        """Make the worktree at ``commit``; a stale one at the same path is replaced."""
        if self.path.exists():
            if (self.path / ".git").is_file():
                self.checkout(commit)
                return
            raise GitError(f"{self.path} exists and is not an overnight worktree; move it away and resume")
        git("worktree", "prune", cwd=self.root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        git("worktree", "add", "--detach", "-q", str(self.path), commit, cwd=self.root)

    def remove(self) -> None:
        if self.path.exists():
            git("worktree", "remove", "--force", str(self.path), cwd=self.root, check=False)
        git("worktree", "prune", cwd=self.root, check=False)

    def checkout(self, commit: str) -> None:
        """Put the worktree exactly at ``commit``: detached, no local changes, no untracked files."""
        git("checkout", "-q", "-f", "--detach", commit, cwd=self.path)
        git("clean", "-q", "-f", "-d", cwd=self.path)

    def stage(self, parent: str) -> Change:
        """Stage everything and describe the change against ``parent``."""
        git("add", "-A", cwd=self.path)
        out = git("diff", "--cached", "--numstat", "--no-renames", "-z", parent, cwd=self.path)
        paths, ins, dels = [], 0, 0
        for entry in out.split("\0"):
            if not entry:
                continue
            added, deleted, path = entry.split("\t", 2)
            paths.append(path)
            ins += int(added) if added.isdigit() else 0
            dels += int(deleted) if deleted.isdigit() else 0
        return Change(tuple(paths), ins, dels)

    def staged_diff(self, parent: str) -> str:
        return git("diff", "--cached", "--no-color", parent, cwd=self.path)

    def commit(self, parent: str, message: str, ref: str) -> str:
        """Commit the index on ``parent``, point ``ref`` (new) and the worktree's HEAD at it."""
        tree = git("write-tree", cwd=self.path).strip()
        commit = git(
            "commit-tree", tree, "-p", parent, "-F", "-", cwd=self.path, input=message, env=_COMMIT_ENV
        ).strip()
        git(
            "update-ref",
            "--stdin",
            cwd=self.path,
            input=f"create {ref} {commit}\noption no-deref\nupdate HEAD {commit}\n",
        )
        return commit


def task_relative(repo_path: str, task_rel: str) -> str | None:
    """Map a repo-relative path to a task-relative one (None when outside the task folder)."""
    if task_rel in ("", "."):
        return repo_path
    path, base = PurePosixPath(repo_path), PurePosixPath(task_rel)
    try:
        return str(path.relative_to(base))
    except ValueError:
        return None
