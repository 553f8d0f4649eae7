"""Git: the user's repository, the run branch, experiment worktrees and refs.

Rules this module keeps, so the user's work is never at risk:

* the user's checkout, index and branches are only ever read;
* the run branch and experiment refs are written with compare-and-swap updates;
* worktrees always have a detached HEAD, so nothing done in them moves a branch;
* commits are built with plumbing from the worktree's index, on the parent we chose,
  so an agent that commits or switches branches by itself cannot change what is measured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from overnight.errors import DirtyTreeError, GitError

log = logging.getLogger(__name__)

STATE_DIR = ".overnight"  # run state at the repository root, excluded through .git/info/exclude
BRANCH_PREFIX = "overnight/"
REF_PREFIX = "refs/overnight/"


def _start(
    args: tuple[str, ...], cwd: Path, input: str | None, env: dict[str, str] | None, keep_stdin: bool = False
) -> subprocess.Popen[str]:
    try:
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            stdin=subprocess.PIPE if input is not None or keep_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env} if env else None,
            start_new_session=True,  # a Ctrl-C meant for the controller must not kill git mid-write
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH; install git and try again") from None
    if input is not None and proc.stdin is not None:
        # Hand over the input now so the command can work while we do something else.
        proc.stdin.write(input)
        proc.stdin.close()
        proc.stdin = None  # communicate() must not touch it again
    return proc


def _finish(proc: subprocess.Popen[str], args: tuple[str, ...], cwd: Path, check: bool) -> str:
    out, err = proc.communicate()
    if check and proc.returncode != 0:
        detail = (err or out).strip()
        raise GitError(f"git {' '.join(args[:3])} failed in {cwd}: {detail}")
    return out


def git(*args: str, cwd: Path, input: str | None = None, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run one git command and return its stdout; a failure raises GitError with git's words."""
    return _finish(_start(args, cwd, input, env), args, cwd, check)


def git_bytes(*args: str, cwd: Path, input: str | None = None) -> bytes:
    """Run one git command and return its stdout as bytes (archives, blobs, packs); ``input`` goes to its stdin."""
    data = None if input is None else input.encode()
    proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, start_new_session=True)
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args[:3])} failed in {cwd}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def git_ok(*args: str, cwd: Path) -> bool:
    """Run one git command; True when it succeeded (for commands whose failure is an answer)."""
    proc = _start(args, cwd, None, None)
    proc.communicate()
    return proc.returncode == 0


class GitStream:
    """A long-lived git command that takes requests on stdin and answers in lines.

    Used for ``hash-object --stdin-paths`` and ``update-ref --stdin``, so that an
    experiment's commit and ref cost no new process. One thread at a time may use it.
    If git dies (it exits on the first failing request), the error is raised and the
    next request starts a fresh process.
    """

    def __init__(self, *args: str, cwd: Path) -> None:
        self._args, self._cwd = args, cwd
        self.env: dict[str, str] | None = None  # extra environment for the processes started from now on
        self._proc: subprocess.Popen[str] | None = None
        self._error = ""

    def ask(self, request: str, lines: int) -> list[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = _start(self._args, self._cwd, None, self.env, keep_stdin=True)
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(request)
            proc.stdin.flush()
            answer = [proc.stdout.readline() for _ in range(lines)]
        except BrokenPipeError:
            answer = [""]
        if not all(answer):
            self.close()
            raise GitError(f"git {' '.join(self._args[:2])} failed in {self._cwd}: {self._error}")
        return [line.rstrip("\n") for line in answer]

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.stdin = None  # communicate() must not touch it again
        _, err = proc.communicate()
        self._error = err.strip() or f"exit code {proc.returncode}"


class DiffStream:
    """A long-lived ``git diff-tree --stdin``: a commit's change against its parent, without a process each.

    The answer is what ``git diff-tree -r -p --numstat --no-renames PARENT COMMIT`` prints. Each request
    is followed by a line that is not an object name, which git echoes as it is once the diff is out:
    the end of the answer (no line of a diff or a quoted path starts with it). One thread at a time may
    use it; a failure raises GitError and the next request starts a fresh process.
    """

    ARGS = ("diff-tree", "--stdin", "-r", "-p", "--numstat", "--no-renames", "--no-commit-id")

    def __init__(self, cwd: Path) -> None:
        self._cwd = cwd
        self.env: dict[str, str] | None = None  # extra environment for the processes started from now on
        self._proc: subprocess.Popen[bytes] | None = None

    def diff(self, parent: str, commit: str) -> str:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["git", *self.ARGS],
                cwd=self._cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
                start_new_session=True,
            )
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        end = f"overnight-end-of-diff {os.urandom(8).hex()}\n".encode()
        lines = []
        try:
            proc.stdin.write(f"{commit} {parent}\n".encode() + end)
            proc.stdin.flush()
            while (line := proc.stdout.readline()) != end:
                if not line:
                    raise GitError(f"git diff-tree stopped in {self._cwd} (comparing {commit} with {parent})")
                lines.append(line)
        except (OSError, GitError) as err:
            self.close()
            raise GitError(f"git diff-tree failed in {self._cwd}: {err}") from None
        return b"".join(lines).decode("utf-8", errors="replace")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        _end(proc)


class BlobReader:
    """A long-lived ``git cat-file --batch``: object contents by id, without a process each.

    One thread at a time may use it. A failure (git died, an unknown object) raises GitError;
    the next request starts a fresh process.
    """

    def __init__(self, cwd: Path) -> None:
        self._cwd = cwd
        self.env: dict[str, str] | None = None  # extra environment for the processes started from now on
        self._proc: subprocess.Popen[bytes] | None = None

    def read(self, oid: str) -> bytes:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                cwd=self._cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
                start_new_session=True,
            )
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(oid.encode() + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) != 3:
                raise GitError(f"git cat-file has no object {oid} in {self._cwd}")
            size = int(header[2])
            data = proc.stdout.read(size + 1)[:size]
        except (BrokenPipeError, ValueError) as err:
            self.close()
            raise GitError(f"git cat-file failed in {self._cwd}: {err}") from None
        if len(data) != size:
            self.close()
            raise GitError(f"git cat-file stopped while reading {oid} in {self._cwd}")
        return data

    def close(self) -> None:
        proc, self._proc = self._proc, None
        _end(proc)


def _end(proc: subprocess.Popen[bytes] | None) -> None:
    """End a long-lived git process: close its input (it exits at end of input), reap it, close its output."""
    if proc is None:
        return
    with contextlib.suppress(BrokenPipeError):
        assert proc.stdin is not None
        proc.stdin.close()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def repo_root(path: Path) -> Path:
    """The top of the git repository holding ``path``."""
    if not path.is_dir():
        raise GitError(f"{path}: not a folder")
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True, text=True)
    if proc.returncode != 0:
        bare = subprocess.run(["git", "rev-parse", "--is-bare-repository"], cwd=path, capture_output=True, text=True)
        if bare.stdout.strip() == "true":
            raise GitError(
                f"{path} is a bare git repository (no working tree); run overnight in a clone with a checkout"
            )
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


@dataclass(frozen=True)
class Branch:
    """A branch that is only ever moved by compare-and-swap (the run branch)."""

    root: Path
    name: str  # e.g. overnight/<tag>

    @property
    def ref(self) -> str:
        return "refs/heads/" + self.name

    def tip(self) -> str | None:
        """The commit the branch points at; None when it does not exist."""
        return resolve(self.root, self.ref)

    def move(self, new: str, old: str | None) -> None:
        """Move the branch from ``old`` to ``new`` (``old=None``: create it); GitError if it is not at ``old``."""
        update_ref(self.root, self.ref, new, old)

    def stamp(self) -> tuple[object, ...]:
        """A cheap fingerprint of where git keeps this branch (its loose ref, packed-refs, a reftable):
        while it is unchanged the branch has not moved, and :meth:`tip` need not run git."""
        common = self.root / ".git"
        stamps: list[object] = []
        for path in (common / self.ref, common / "packed-refs", common / "reftable" / "tables.list"):
            try:
                st = path.stat()
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append(None)
        return tuple(stamps)


def experiment_ref(tag: str, experiment_id: int) -> str:
    return f"{REF_PREFIX}{tag}/{experiment_id}"


def diff_text(root: Path, parent: str, commit: str) -> str:
    return git("diff", "--no-color", parent, commit, cwd=root)


def task_relative(repo_path: str, task_rel: str) -> str | None:
    """Map a repo-relative path to a task-relative one (None when outside the task folder)."""
    if task_rel in ("", "."):
        return repo_path
    path, base = PurePosixPath(repo_path), PurePosixPath(task_rel)
    try:
        return str(path.relative_to(base))
    except ValueError:
        return None


def replay(root: Path, onto: str, old: str, new: str) -> str | None:
    """The tree of ``onto`` with the change from ``old`` to ``new`` applied; None when it conflicts.

    A revert of commit K is ``replay(root, tip, K, K^)``; a cherry-pick of K, ``replay(root, tip, K^, K)``.
    It works in a temporary index (three-way where the patch's context moved), so no worktree,
    checkout or ref is touched.
    """
    with tempfile.TemporaryDirectory(prefix="overnight-index-") as folder:
        env = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
        git("read-tree", onto, cwd=root, env=env)
        patch = git("diff", "--binary", "--full-index", "--no-color", "--no-ext-diff", old, new, cwd=root)
        if not patch.strip():
            return git("rev-parse", f"{onto}^{{tree}}", cwd=root).strip()
        proc = _start(("apply", "--cached", "--3way", "-"), root, patch, env)
        proc.communicate()
        if proc.returncode != 0:
            return None
        return git("write-tree", cwd=root, env=env).strip()
