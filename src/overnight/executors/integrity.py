"""The harness must be the same after a run as before it.

Before every run the worker fingerprints the task's protected files (every tracked file
of the task folder that is not editable, the files ``[task] protected`` names, and the
worktree's link to the repository); after the run and the evaluator, failed ones too, it
fingerprints them again. A run that changed any of them, to fake its metric or by
accident, is rejected and its metric discarded. Protected files no commit holds (data
``[task] setup`` made) are also compared with how the worktree's first setup left them,
which catches an agent, or an earlier run, that changed them between runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

BIG = 64 << 20  # larger files are compared by size and modification time, not content


def fingerprint(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """A digest per path (relative to ``root``); "missing" for paths that do not exist."""
    prints = {}
    for rel in paths:
        path = root / rel
        try:
            if path.is_symlink():
                prints[rel] = "link:" + os.readlink(path)
                continue
            stat = path.stat()
            if stat.st_size > BIG:
                prints[rel] = f"size:{stat.st_size}:mtime:{stat.st_mtime_ns}"
                continue
            prints[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            prints[rel] = "missing"
        except OSError as exc:  # unreadable now: that is a change too
            prints[rel] = f"unreadable:{exc.errno}"
    return prints


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before if after.get(p) != before[p])
