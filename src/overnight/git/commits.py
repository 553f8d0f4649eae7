"""An experiment's commit, written in the background while the experiment runs.

Nothing the run needs waits for it: the worktree's files are already what will be
committed. Two ways to write it:

* **from the picture** (the usual change, edits to tracked files, named by
  overnight.git.picture with their bytes as read then): the blobs, the trees on the path
  from each changed file to the top, and the commit are written by the harness itself as
  git's loose objects, on the parent's tree. No git process, no index: the worktree's own
  index and HEAD stay at the parent, so putting it back after a discard needs no git either.
* **from the index** (anything else, staged by ``git add``): ``write-tree`` and a commit
  object through the long-lived ``hash-object``; the worktree's HEAD follows.

Either way the ref ``refs/overnight/<tag>/<id>`` is created through the long-lived
``update-ref``, and the line counts and the patch come from the long-lived ``git diff-tree --stdin``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from overnight import threads
from overnight.git import DiffStream, GitStream, git
from overnight.git.picture import Blob, Change, Tree

AUTHOR = "overnight <overnight@localhost>"


class Background:
    """A function run on a thread (a kept one: overnight.threads); :meth:`join` waits and re-raises what it raised."""

    def __init__(self, target: Callable[[], None]) -> None:
        self._task = threads.spawn(target)

    def join(self) -> None:
        self._task.wait()


class Repository(Protocol):
    """What writing a commit needs of a worktree (:class:`overnight.git.worktree.Worktree` is one)."""

    path: Path
    objects: GitStream  # a long-lived `git hash-object --stdin-paths`
    refs: GitStream  # a long-lived `git update-ref --stdin`
    diffs: DiffStream  # a long-lived `git diff-tree --stdin`

    def git_env(self) -> dict[str, str]: ...
    def objects_dir(self) -> Path: ...
    def tree_of(self, commit: str) -> Tree: ...
    def gitdir(self) -> Path: ...


class Committed:
    """An experiment's commit being written; :meth:`wait` gives it, its ref created and its lines counted."""

    def __init__(self, worktree: Repository, change: Change, message: str, ref: str) -> None:
        self.commit = ""
        self.insertions = 0
        self.deletions = 0
        self.diff = ""  # the change as a patch (git diff-tree -p), once written
        self._worktree, self._change, self._message, self._ref = worktree, change, message, ref
        self._work = Background(self._write)

    def wait(self) -> Committed:
        self._work.join()
        return self

    def _write(self) -> None:
        wt, change = self._worktree, self._change
        # The experiment is running meanwhile and may damage the worktree's `.git` file: name
        # the repository explicitly, never through that file.
        env = wt.git_env()
        stamp = f"{AUTHOR} {int(time.time())} +0000"
        if change.blobs is not None:
            objects = wt.objects_dir()
            tree = _tree_with(objects, wt.tree_of(change.parent), change.blobs)
            body = f"tree {tree}\nparent {change.parent}\nauthor {stamp}\ncommitter {stamp}\n\n{self._message}"
            commit = write_object(objects, "commit", body.encode(), len(tree))
            moves = f"start\ncreate {self._ref} {commit}\ncommit\n"
        else:
            tree = git("write-tree", cwd=wt.path, env=env).strip()
            # A commit object is a short text: written with the long-lived hash-object, no new process.
            scratch = wt.gitdir() / "overnight-commit"
            scratch.write_text(f"tree {tree}\nparent {change.parent}\nauthor {stamp}\ncommitter {stamp}\n\n"
                               f"{self._message}", encoding="utf-8")  # fmt: skip
            commit = wt.objects.ask(f"{scratch}\n", 1)[0]
            # the worktree's own index holds the change: its HEAD follows
            moves = f"start\ncreate {self._ref} {commit}\noption no-deref\nupdate HEAD {commit}\ncommit\n"
        wt.refs.ask(moves, 2)
        # The line counts and the patch (the agents' brief shows it) from the long-lived diff-tree: the counts
        # come first, one line per file, then a blank line and the patch. Paths are quoted without -z; only
        # the counts before them are read.
        counts, _, self.diff = wt.diffs.diff(change.parent, commit).partition("\n\n")
        for entry in counts.splitlines():
            fields = entry.split("\t")
            if len(fields) >= 3:
                self.insertions += int(fields[0]) if fields[0].isdigit() else 0
                self.deletions += int(fields[1]) if fields[1].isdigit() else 0
        self.commit = commit


# -- git's objects, written by hand ------------------------------------------------------------


def write_object(objects: Path, kind: str, data: bytes, hex_length: int = 40) -> str:
    """Write ``data`` as a loose object of ``kind`` (blob, tree, commit) unless it exists; its id.

    The object is compressed to a temporary file beside its place and renamed there, so a
    reader sees it whole or not at all, as git writes them.
    """
    header = f"{kind} {len(data)}\0".encode()
    digest = hashlib.sha1(usedforsecurity=False) if hex_length == 40 else hashlib.sha256()
    digest.update(header)
    digest.update(data)
    oid = digest.hexdigest()
    path = objects / oid[:2] / oid[2:]
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        scratch = path.parent / f"tmp_obj_overnight_{os.getpid()}_{threading.get_ident()}"
        scratch.write_bytes(zlib.compress(header + data, 1))
        os.chmod(scratch, 0o444)
        os.replace(scratch, path)
    return oid


def _tree_with(objects: Path, base: Tree, blobs: dict[str, Blob]) -> str:
    """Write the trees of ``base`` with ``blobs`` replacing its files; the top tree's id."""
    hex_length = len(next(iter(blobs.values())).oid)
    for blob in blobs.values():
        write_object(objects, "blob", blob.data, hex_length)
    folders = {""}
    for path in blobs:
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    made: dict[str, str] = {}
    for folder in sorted(folders, key=lambda f: -1 if not f else f.count("/"), reverse=True):  # deepest first
        entries = dict(base.folders.get(folder, {}))
        for path, blob in blobs.items():
            if path.rpartition("/")[0] == folder:
                entries[path.rpartition("/")[2]] = (blob.mode, blob.oid)
        for sub, oid in made.items():
            if sub and sub.rpartition("/")[0] == folder:
                entries[sub.rpartition("/")[2]] = ("040000", oid)
        made[folder] = write_object(objects, "tree", _tree_bytes(entries), hex_length)
    return made[""]


def _tree_bytes(entries: dict[str, tuple[str, str]]) -> bytes:
    """A tree object's content: entries in git's order (a folder sorts as if its name ended in '/')."""

    def order(name: str) -> bytes:
        return name.encode() + (b"/" if entries[name][0] == "040000" else b"")

    return b"".join(
        f"{entries[name][0].lstrip('0')} {name}\0".encode() + bytes.fromhex(entries[name][1])
        for name in sorted(entries, key=order)
    )
