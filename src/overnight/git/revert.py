"""Taking keeps out of the best: the reverts of `overnight verify --ablate`.

Contract:

* :func:`take_out` gives the tree of ``onto`` with the changes of some keeps reverted, the
  latest first, or a :class:`Conflict` saying which file could not be reverted and why.
  Each revert is tried first as git's three-way ``git apply --cached --3way`` of the
  reverse patch (:func:`overnight.git.replay`); when that conflicts, file by file:

  - a text file the keep modified (same mode, no NUL byte in any of the three versions)
    is reverted **line by line** (:func:`revert_lines`): the keep's change is cut into
    hunks without context, each hunk's lines in the keep's version are found in the
    current version through the lines both share (``difflib.SequenceMatcher``), and each
    hunk is undone where it now lies. A hunk undoes only when every line the keep wrote is
    still there, unchanged and contiguous; a hunk where the keep only deleted lines
    undoes only when its two neighbours are still next to each other (else where the
    lines go back is ambiguous). So keeps that edit different lines, adjacent ones
    included, come apart; a hunk whose lines a later keep rewrote is a true conflict.
    Positions come from the matching lines, never from the keep's line numbers, so a
    later keep that inserted or deleted lines elsewhere moves nothing.
  - any other path (binary, added, deleted, a mode change, a symlink, a submodule) goes
    through git alone, as the whole revert did before.

* :func:`commit` writes a commit of such a tree (plumbing: no ref, no worktree, no hook).
* :func:`ablations` decides what one arm per keep takes out of the best: the keep alone
  when its revert applies; else the keep **grouped** with the later keeps that changed
  the same lines (found in chain order: a later keep joins the group when the group's
  revert stops applying on the commit that keep made), reverted together, latest first.
  A keep whose group still cannot be taken out is *entangled*, with the reason.

Everything works in temporary index files and writes only objects (blobs, trees,
commits) into the repository: the user's checkout, index and refs are untouched.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from overnight import git
from overnight.errors import GitError

_IDENTITY = {
    "GIT_AUTHOR_NAME": "overnight",
    "GIT_AUTHOR_EMAIL": "overnight@localhost",
    "GIT_COMMITTER_NAME": "overnight",
    "GIT_COMMITTER_EMAIL": "overnight@localhost",
}
_REGULAR = ("100644", "100755")  # the modes of a plain file, the only ones reverted line by line
_DIFF = ("--no-color", "--no-ext-diff", "--no-textconv", "--no-renames")


@dataclass(frozen=True)
class Change:
    """One keep: its experiment id and its change, ``parent`` → ``commit``."""

    id: int
    parent: str
    commit: str


@dataclass(frozen=True)
class Conflict:
    """Why a revert did not apply: the keep, the file, and what stood in the way."""

    id: int
    path: str
    why: str

    def text(self) -> str:
        return f"keep #{self.id} in {self.path}: {self.why}"


@dataclass(frozen=True)
class Ablation:
    """What one arm takes out of the best: ``ids`` (the keep it stands for first, then the keeps
    grouped with it), and the commit of the best without them; or why it cannot (``entangled``)."""

    ids: tuple[int, ...]
    commit: str = ""  # "" when entangled
    entangled: str = ""


def _lines(data: bytes) -> list[bytes]:
    """``data`` cut after each ``\\n`` (the last line may lack one); only ``\\n`` ends a line."""
    parts = data.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _positions(old: list[bytes], new: list[bytes]) -> list[int | None]:
    """For each line of ``old``, where it is in ``new`` when unchanged there, else None."""
    where: list[int | None] = [None] * len(old)
    for a, b, size in difflib.SequenceMatcher(None, old, new, autojunk=False).get_matching_blocks():
        for k in range(size):
            where[a + k] = b + k
    return where


def revert_lines(parent: bytes, keep: bytes, current: bytes) -> bytes | str:
    """``current`` with the change ``parent`` → ``keep`` taken out, line by line; or why not (a str).

    ``current`` is the file as it is now (the best: the keep plus the changes of later keeps).
    """
    old, kept, now = _lines(parent), _lines(keep), _lines(current)
    where = _positions(kept, now)
    out: list[bytes] = []
    at = 0  # the lines of ``now`` before this are in ``out`` already
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, kept, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if j2 > j1:  # the keep wrote kept[j1:j2]: they must all be there still, one after the other
            first = where[j1]
            if first is None or any(where[j] != first + (j - j1) for j in range(j1, j2)):
                return f"a later keep changed the lines this keep wrote (line {j1 + 1} of its version)"
            start, end = first, first + (j2 - j1)
        else:  # the keep only deleted old[i1:i2]: they go back between the same two neighbours
            before = where[j1 - 1] if j1 > 0 else -1
            after = where[j1] if j1 < len(kept) else len(now)
            if before is None or after is None or after != before + 1:
                return f"a later keep changed the lines around the ones this keep deleted (line {i1 + 1} before it)"
            start = end = after
        out.extend(now[at:start])
        out.extend(old[i1:i2])
        at = end
    out.extend(now[at:])
    return b"".join(out)


def _hash(root: Path, data: bytes) -> str:
    proc = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], cwd=root, input=data, capture_output=True, start_new_session=True
    )
    if proc.returncode != 0:
        raise GitError(f"git hash-object failed in {root}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode().strip()


def _blob(root: Path, tree: str, path: str) -> tuple[str, str] | None:
    """(mode, blob id) of ``path`` in ``tree``, or None when it is not there."""
    out = git.git("ls-tree", "-z", tree, "--", path, cwd=root)
    for entry in out.split("\0"):
        info, _, name = entry.partition("\t")
        if name == path:
            mode, kind, oid = info.split()
            return (mode, oid) if kind == "blob" else None
    return None


def _by_git(root: Path, env: dict[str, str], change: Change, path: str) -> bool:
    """Revert ``change`` in ``path`` alone with git's three-way apply, in the index ``env`` names."""
    # Bytes throughout: a text file need not be UTF-8.
    patch = git.git_bytes(
        "diff", "--binary", "--full-index", *_DIFF, "--src-prefix=a/", "--dst-prefix=b/",
        change.commit, change.parent, "--", path, cwd=root,
    )  # fmt: skip
    if not patch.strip():
        return True
    proc = subprocess.run(
        ["git", "apply", "--cached", "--3way", "-"],
        cwd=root,
        input=patch,
        capture_output=True,
        env={**os.environ, **env},
        start_new_session=True,
    )
    return proc.returncode == 0


def _by_lines(root: Path, onto: str, change: Change) -> str | Conflict:
    """The tree of ``onto`` with ``change`` reverted file by file (text files line by line)."""
    raw = git.git("diff", "--raw", "-z", "--no-abbrev", *_DIFF, change.parent, change.commit, cwd=root)
    fields = raw.split("\0")
    with tempfile.TemporaryDirectory(prefix="overnight-index-") as folder:
        env = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
        git.git("read-tree", onto, cwd=root, env=env)
        for k in range(0, len(fields) - 1, 2):
            old_mode, new_mode, old_id, new_id, status = fields[k].lstrip(":").split()
            path = fields[k + 1]
            reverted = _text_revert(root, onto, path, (old_mode, new_mode, old_id, new_id, status))
            if isinstance(reverted, tuple):
                mode, data = reverted
                blob = _hash(root, data)
                git.git("update-index", "--cacheinfo", f"{mode},{blob},{path}", cwd=root, env=env)
            elif reverted:
                return Conflict(change.id, path, reverted)
            elif not _by_git(root, env, change, path):
                return Conflict(change.id, path, "git cannot revert it (not a text file's edit) on the best")
        return git.git("write-tree", cwd=root, env=env).strip()


def _text_revert(root: Path, onto: str, path: str, entry: tuple[str, str, str, str, str]) -> tuple[str, bytes] | str:
    """(mode, reverted content) of a text file the keep edited; why it conflicts; or "" for git to try."""
    old_mode, new_mode, old_id, new_id, status = entry
    if status != "M" or old_mode != new_mode or old_mode not in _REGULAR:
        return ""
    now = _blob(root, onto, path)
    if now is None:
        return "a later keep deleted or replaced the file"
    parent, keep = (
        git.git_bytes("cat-file", "blob", old_id, cwd=root),
        git.git_bytes("cat-file", "blob", new_id, cwd=root),
    )
    current = git.git_bytes("cat-file", "blob", now[1], cwd=root)
    if any(b"\0" in data for data in (parent, keep, current)):
        return ""
    reverted = revert_lines(parent, keep, current)
    return (now[0], reverted) if isinstance(reverted, bytes) else reverted


def take_out(root: Path, onto: str, changes: Sequence[Change]) -> str | Conflict:
    """The tree of ``onto`` (a commit or a tree) with ``changes`` reverted, the latest first; or the conflict.

    ``changes`` are given in chain order (the earliest first) and reverted in the reverse order.
    """
    tree = git.git("rev-parse", f"{onto}^{{tree}}", cwd=root).strip()
    for change in reversed(changes):
        done = git.replay(root, tree, change.commit, change.parent)
        if done is None:
            found = _by_lines(root, tree, change)
            if isinstance(found, Conflict):
                return found
            done = found
        tree = done
    return tree


def commit(root: Path, tree: str, parent: str, message: str) -> str:
    """A commit of ``tree`` on ``parent``, by overnight (no ref moved, no hook run)."""
    return git.git("commit-tree", tree, "-p", parent, "-F", "-", cwd=root, input=message, env=_IDENTITY).strip()


def _files(root: Path, change: Change) -> set[str]:
    out = git.git("diff", "--name-only", "-z", *_DIFF, change.parent, change.commit, cwd=root)
    return {p for p in out.split("\0") if p}


def _message(ids: Sequence[int]) -> str:
    if len(ids) == 1:
        return f"overnight verify: experiment {ids[0]} taken out\n"
    return f"overnight verify: experiments {', '.join(str(i) for i in ids)} taken out together\n"


def ablations(root: Path, keeps: Sequence[Change], best: str) -> list[Ablation]:
    """One ablation per keep of ``keeps`` (the chain's keeps in order; ``best`` is the last one's commit).

    A keep is taken out alone when its revert applies to the best. Otherwise its group is
    found walking the later keeps in order: keep j joins when the group's revert no longer
    applies to j's commit (j changed lines the group wrote; a keep that touches none of
    the group's files is skipped). The group is then reverted from the best, latest first.
    """
    files = [_files(root, k) for k in keeps]
    found: list[Ablation] = []
    for i, keep in enumerate(keeps):
        alone = take_out(root, best, [keep])
        if not isinstance(alone, Conflict):
            found.append(Ablation((keep.id,), commit(root, alone, best, _message([keep.id]))))
            continue
        group = [i]
        touched = set(files[i])
        for j in range(i + 1, len(keeps)):
            if not files[j] & touched:
                continue  # it edits other files only: it cannot stand in the group's way
            if isinstance(take_out(root, keeps[j].commit, [keeps[g] for g in group]), Conflict):
                group.append(j)
                touched |= files[j]
        ids = tuple(keeps[g].id for g in group)
        tree = take_out(root, best, [keeps[g] for g in group]) if len(group) > 1 else alone
        if isinstance(tree, Conflict):
            found.append(Ablation(ids, "", f"it cannot be taken out, even with the keeps after it ({tree.text()})"))
        else:
            found.append(Ablation(ids, commit(root, tree, best, _message(ids))))
    return found
