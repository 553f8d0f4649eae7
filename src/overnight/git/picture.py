"""The harness's own picture of a worktree's files: what changed since a checkout, and putting it back.

Git answers "what changed?" and "put it back" with a process each, and processes are the
main cost of an experiment on a fast task. So, on the path from one experiment to the
next, the harness answers for itself where it safely can. Right after a worktree is put
exactly at a commit, :func:`take` records every file's stat (mode, size, mtime, inode).
Later, a file whose stat differs is hashed the way git hashes a blob and compared with
the commit's tree (:class:`Tree`, read once per commit); :func:`changed` names the tracked
files whose content or mode differs. :func:`restore` writes a commit's blobs back.

This covers the usual change, edits to files the commit tracks. It answers None, and
the caller asks git, when names were added or removed (new files need git's ignore
rules; deleted ones its index), when the worktree is too big to walk cheaply, or when the
repository transforms content on its way in or out (attributes, autocrlf, gitlinks,
core.fileMode off): there a file's bytes are not its blob.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from overnight.git import BlobReader, git

Stat = tuple[int, int, int, int]  # mode, size, mtime_ns, inode
_QUOTED = re.compile(r'[\x00-\x1f"\\\x7f]')  # characters that make git quote a path
WALK_LIMIT = 5000  # entries; a bigger worktree is left to git, which keeps its own cache of stats


@dataclass(frozen=True)
class Picture:
    """Every file under a worktree (but .git) and its stat, with the commit the worktree was exactly at."""

    commit: str
    files: dict[str, Stat]  # repo-relative posix path → stat (symlinks: their own stat)
    dirs: frozenset[str]

    def same_names(self, other: Picture) -> bool:
        return self.dirs == other.dirs and self.files.keys() == other.files.keys()


@dataclass(frozen=True)
class Tree:
    """A commit's tree, read once: its tracked files, and each folder's entries (to build a new tree on it)."""

    entries: dict[str, tuple[str, str]]  # file path → (git mode, object id)
    folders: dict[str, dict[str, tuple[str, str]]]  # folder path ("" for the top) → name → (git mode, object id)
    plain: bool  # no gitlinks and no .gitattributes: a tracked file's bytes are its blob

    @classmethod
    def of(cls, root: Path, commit: str) -> Tree:
        out = git("ls-tree", "-r", "-t", "-z", "--full-tree", commit, cwd=root)
        entries: dict[str, tuple[str, str]] = {}
        folders: dict[str, dict[str, tuple[str, str]]] = {"": {}}
        plain = True
        for record in out.split("\0"):
            if not record:
                continue
            head, path = record.split("\t", 1)
            mode, kind, oid = head.split(" ")
            folder, _, name = path.rpartition("/")
            folders.setdefault(folder, {})[name] = (mode, oid)
            if kind == "tree":
                folders.setdefault(path, {})
            else:
                entries[path] = (mode, oid)
            if mode == "160000" or name == ".gitattributes":
                plain = False
        return cls(entries, folders, plain)


def take(worktree: Path, commit: str) -> Picture | None:
    """The worktree's files now; None when it has more than WALK_LIMIT entries."""
    files: dict[str, Stat] = {}
    dirs: set[str] = set()
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(worktree / rel if rel else worktree))
        except OSError:
            return None
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if name == ".git":
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                return None
            if stat.S_ISDIR(st.st_mode):
                dirs.add(name)
                stack.append(name)
            else:
                files[name] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
        if len(files) + len(dirs) > WALK_LIMIT:
            return None
    return Picture(commit, files, frozenset(dirs))


@dataclass(frozen=True)
class Blob:
    """A changed file as it was read: what its commit will hold."""

    mode: str  # git's: 100644 or 100755
    oid: str
    data: bytes


def changed(worktree: Path, before: Picture, now: Picture, tree: Tree) -> dict[str, Blob] | None:
    """Tracked files whose content or mode differs from ``tree``, among those whose stat changed, as read now.

    None when the picture cannot tell (names added or removed, a symbolic link changed, a
    name git would quote, a tree it cannot judge): ask git instead. Untracked files (ignored
    ones that were there at the checkout) are not git's business and are left out.
    """
    if not tree.plain or not before.same_names(now):
        return None
    found: dict[str, Blob] = {}
    for path, now_stat in now.files.items():
        entry = tree.entries.get(path)
        if now_stat == before.files[path] or entry is None:
            continue
        if stat.S_ISLNK(now_stat[0]) or entry[0] == "120000" or _QUOTED.search(path):
            return None
        try:
            data = (worktree / path).read_bytes()
        except OSError:
            return None
        blob = Blob(_mode(now_stat[0]), blob_id(data, len(entry[1])), data)
        if (blob.mode, blob.oid) != entry:
            found[path] = blob
    return dict(sorted(found.items()))


def blob_id(data: bytes, hex_length: int = 40) -> str:
    """The object id git gives ``data`` as a blob (SHA-1, or SHA-256 for 64-digit ids)."""
    digest = hashlib.sha1(usedforsecurity=False) if hex_length == 40 else hashlib.sha256()
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def restore(worktree: Path, paths: Iterable[str], tree: Tree, blobs: BlobReader) -> None:
    """Write the tree's content and mode back to ``paths`` (tracked files)."""
    for path in paths:
        mode, oid = tree.entries[path]
        data = blobs.read(oid)
        target = worktree / path
        with contextlib.suppress(FileNotFoundError):
            if target.is_dir() and not target.is_symlink():
                raise IsADirectoryError(path)  # a directory where a file was: the names differ, never here
            target.unlink()
        if mode == "120000":
            os.symlink(data.decode(), target)
            continue
        target.write_bytes(data)
        os.chmod(target, 0o755 if mode == "100755" else 0o644)


def _mode(st_mode: int) -> str:
    if stat.S_ISLNK(st_mode):
        return "120000"
    return "100755" if st_mode & stat.S_IXUSR else "100644"


def plain_repository(root: Path) -> bool:
    """Whether the repository stores files as they are: no autocrlf, fileMode on, case-sensitive, no info/attributes."""
    settings = git("config", "--get-regexp", r"^core\.(autocrlf|filemode|ignorecase)$", cwd=root, check=False)
    for line in settings.lower().splitlines():
        key, _, value = line.partition(" ")
        if key == "core.filemode" and value == "false":
            return False
        if key == "core.ignorecase" and value == "true":
            return False
        if key == "core.autocrlf" and value != "false":
            return False
    common = Path(git("rev-parse", "--git-common-dir", cwd=root).strip())
    common = common if common.is_absolute() else root / common
    return not (common / "info" / "attributes").exists()


@dataclass(frozen=True)
class Change:
    """What an agent changed in a worktree, against the parent commit."""

    parent: str
    paths: tuple[str, ...] = ()  # repo-relative
    # Named from the picture (edits of tracked files only): the files as read then, which the
    # commit holds. None: staged in the worktree's index by git.
    blobs: dict[str, Blob] | None = None

    @property
    def empty(self) -> bool:
        return not self.paths
