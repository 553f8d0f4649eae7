"""Globs for editable and protected files, and the rule that sorts a change.

Patterns are relative to the task folder and use '/' as separator:
``*`` and ``?`` stay within one path segment, ``**`` spans any number of folders,
``[abc]`` is a class, and a pattern that names a folder covers everything below it.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip().strip("/")
    if pattern.startswith("./"):
        pattern = pattern[2:]
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    # A match may end at the pattern's end or at a folder boundary: `src` covers `src/a.py`.
    return re.compile("".join(out) + "(?:/.*)?", re.DOTALL)


def matches(path: str, patterns: Iterable[str]) -> bool:
    """True when the task-relative POSIX ``path`` matches any of ``patterns``."""
    return any(_compile(p).fullmatch(path) for p in patterns)


def files_under(folder: Path, patterns: Iterable[str]) -> set[str]:
    """The files below ``folder`` (relative POSIX paths) that ``patterns`` match, as :func:`matches` does.

    Each pattern is walked only from its leading folders without wildcards (``data/**``
    reads ``data/``, ``data`` reads ``data`` itself); ``.git`` is never entered.
    """
    found: set[str] = set()
    for pattern in patterns:
        parts = pattern.strip().strip("/").removeprefix("./").split("/")
        fixed = itertools.takewhile(lambda part: not any(c in part for c in "*?["), parts)
        start = folder.joinpath(*fixed)
        paths = [start] if start.is_file() else _walk(start)
        found.update(rel for rel in (p.relative_to(folder).as_posix() for p in paths) if matches(rel, (pattern,)))
    return found


def _walk(top: Path) -> list[Path]:
    """Every file below ``top`` (none when it is missing), outside ``.git`` folders."""
    paths: list[Path] = []
    for folder, dirs, names in os.walk(top):
        dirs[:] = [d for d in dirs if d != ".git"]
        paths.extend(Path(folder, name) for name in names)
    return paths


@dataclass(frozen=True)
class Rules:
    """Which files of the task an agent may change.

    ``editable`` globs open files for change; ``protected`` globs close them again
    (protected wins). Anything outside the task folder is never editable.
    """

    editable: tuple[str, ...]
    protected: tuple[str, ...] = ()

    def allows(self, task_path: str | None) -> bool:
        """``task_path`` is relative to the task folder, or None when outside it."""
        if task_path is None:
            return False
        return matches(task_path, self.editable) and not matches(task_path, self.protected)

    def violations(self, task_paths: dict[str, str | None]) -> list[str]:
        """Repo-relative paths (keys) whose change the rules forbid, sorted."""
        return sorted(repo for repo, task in task_paths.items() if not self.allows(task))
