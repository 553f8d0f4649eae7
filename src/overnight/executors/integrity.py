"""The harness must be the same after a run as before it.

Before every run the worker fingerprints the task's protected files (every tracked file
of the task folder that is not editable, the files ``[task] protected`` names, and the
worktree's link to the repository); after the run and the evaluator, failed ones too, it
fingerprints them again. A run that changed any of them, to fake its metric or by
accident, is rejected and its metric discarded. Protected files no commit holds (data
``[task] setup`` made) are also compared with how the worktree's first setup left them,
which catches an agent, or an earlier run, that changed them between runs.

The content of a file is read again only when its inode changed since it was last read (see
:func:`_digest`): a run's protected files are fingerprinted twice per measurement, and they are
the task's data and harness, often large, rarely changed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path

BIG = 64 << 20  # larger files are compared by size and modification time, not content
SETTLED_NS = 2_000_000_000  # a file whose inode changed less than this ago is read again (see _digest)
_KEPT = 100_000  # digests kept, at most
_digests: dict[tuple[int, int], tuple[tuple[int, int, int, int], str]] = {}  # (dev, inode) → (its stat, digest)


def fingerprint(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """A digest per path (relative to ``root``); "missing" for paths that do not exist."""
    prints = {}
    for rel in paths:
        path = root / rel
        try:
            found = os.lstat(path)
            if stat.S_ISLNK(found.st_mode):
                prints[rel] = "link:" + os.readlink(path)
                continue
            prints[rel] = _digest(path)
        except FileNotFoundError:
            prints[rel] = "missing"
        except OSError as exc:  # unreadable now: that is a change too
            prints[rel] = f"unreadable:{exc.errno}"
    return prints


def _digest(path: Path) -> str:
    """The SHA-256 of the file at ``path`` (its size and mtime past BIG); kept for its inode while the inode is
    unchanged.

    Any change of a file's content or mode sets its inode's change time (ctime) to the kernel's clock,
    and nothing but that clock can set it: not utime(2) (which sets ctime too), not a root of a user
    namespace. So a file whose ctime, size, mtime and mode are what they were when it was read holds
    what it held then, provided the read came after its last change: when its ctime was under
    SETTLED_NS old at the read (a write in the same tick of a coarse clock could leave ctime as it
    was), the digest is not kept, as git re-reads its "racily clean" files. A file read is read through
    the descriptor it was checked on, so what is kept is that inode's.
    """
    found = os.stat(path)
    if stat.S_ISREG(found.st_mode) and found.st_size > BIG:
        return f"size:{found.st_size}:mtime:{found.st_mtime_ns}"
    known = _digests.get((found.st_dev, found.st_ino))
    if known is not None and known[0] == (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_mode):
        return known[1]
    # Not blocking on a FIFO an agent put in a file's place, nor following a link put there since the lstat.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        found = os.fstat(fd)
        if stat.S_ISDIR(found.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(found.st_mode):
            return f"not a file:{stat.S_IFMT(found.st_mode):o}"
        if found.st_size > BIG:  # replaced since the stat above
            return f"size:{found.st_size}:mtime:{found.st_mtime_ns}"
        with open(fd, "rb", closefd=False) as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    finally:
        os.close(fd)
    if time.time_ns() - found.st_ctime_ns > SETTLED_NS:
        if len(_digests) >= _KEPT:
            _digests.clear()
        key = (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_mode)
        _digests[(found.st_dev, found.st_ino)] = (key, digest)
    return digest


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before if after.get(p) != before[p])
