"""`--set NAME=VALUE`: what `overnight verify` changes to measure at a larger scale.

The rule, stated once: a NAME that some editable file of the task assigns at module level
(a line ``NAME = ...`` at the start of a line, NAME in UPPER_CASE) is a **constant**: that
line's value is rewritten to VALUE (a Python expression) in every arm's files. Any other
NAME is an **environment variable** of the experiment's commands. The output says which
each one was, so a misspelt constant shows up as an environment variable nobody reads.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overnight import pysource
from overnight.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONSTANT = re.compile(r"^[A-Z_][A-Z0-9_]*$")

CONSTANT = "constant"
ENVIRONMENT = "environment"


@dataclass(frozen=True)
class Override:
    """One --set: the name, the value as given, and whether it is a constant or an environment variable."""

    name: str
    value: str
    kind: str = ENVIRONMENT
    files: tuple[str, ...] = ()  # for a constant: the editable files (task-relative) that assign it

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "kind": self.kind, "files": list(self.files)}


def parse(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` → (NAME, VALUE); a clear error for anything else."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name):
        raise ConfigError(
            f"--set {text!r}: expected NAME=VALUE with NAME a constant of an editable file or an environment "
            "variable, e.g. --set DEPTH=24"
        )
    return name, value


def assigns(text: str, name: str) -> bool:
    """Whether ``text`` (a file's content) assigns ``name`` at module level (found by parsing, so a docstring
    or a comment that mentions it does not count)."""
    if not _CONSTANT.match(name):
        return False
    try:
        return bool(pysource.value_spans(text, name))
    except (SyntaxError, ValueError):
        return False


def resolve(pairs: list[tuple[str, str]], editable: dict[str, str]) -> list[Override]:
    """Each (NAME, VALUE) as a constant or an environment variable, given the editable files' texts.

    A constant's VALUE must be a Python expression (a string needs its quotes: --set 'NAME="x"').
    """
    found: list[Override] = []
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen:
            raise ConfigError(f"--set {name}: given twice")
        if name.upper().startswith("OVERNIGHT_"):
            raise ConfigError(
                f"--set {name}: the harness sets the OVERNIGHT_ variables itself for every run (the seed, the budget, "
                "the experiment), and would override it; use --budget for the budget, and set the script's own names"
            )
        seen.add(name)
        files = tuple(sorted(path for path, text in editable.items() if assigns(text, name)))
        if not files:
            found.append(Override(name, value, ENVIRONMENT))
            continue
        try:
            ast.parse(value.strip(), mode="eval")
        except SyntaxError:
            raise ConfigError(
                f"--set {name}={value}: {name} is a constant of {', '.join(files)}, and {value!r} is not a Python "
                f"expression; a string needs its quotes, e.g. --set '{name}=\"text\"'"
            ) from None
        found.append(Override(name, value.strip(), CONSTANT, files))
    return found


def rewrite(text: str, override: Override) -> str:
    """``text`` with every module-level assignment of the constant set to its value (all of a value written
    over several lines); ``text`` unchanged when it assigns none."""
    changed = pysource.assign(text, override.name, override.value)
    return text if changed is None else changed


def apply(task_dir: Path, overrides: list[Override]) -> list[str]:
    """Rewrite the constants in the files under ``task_dir``; the files changed (task-relative).

    A file is rewritten only as the regular file it is: a symbolic link (which a kept change may have made
    to point anywhere, the user's checkout included) is refused, never written through, and so is a file
    that no longer parses after the rewrite.
    """
    changed = []
    for o in overrides:
        if o.kind != CONSTANT:
            continue
        for rel in o.files:
            path = task_dir / rel
            if path.is_symlink():
                raise ConfigError(
                    f"--set {o.name}: {rel} is a symbolic link in this commit; verify rewrites only regular files "
                    "inside its own worktrees"
                )
            if not path.is_file():  # this arm's commit lacks the file (a keep added it)
                continue
            before = path.read_text(encoding="utf-8")
            after = rewrite(before, o)
            if after == before:
                continue
            try:
                ast.parse(after)
            except SyntaxError as err:
                raise ConfigError(
                    f"--set {o.name}={o.value}: {rel} would not parse after the rewrite ({err.msg}, line {err.lineno})"
                ) from None
            # Replace the file rather than write into it: a link swapped in meanwhile is not followed either.
            temporary = path.with_name(f".{path.name}.overnight-set")
            temporary.write_text(after, encoding="utf-8")
            temporary.chmod(path.stat().st_mode)
            temporary.replace(path)
            changed.append(rel)
    return changed


def environment(overrides: list[Override]) -> dict[str, str]:
    """The environment variables among the overrides."""
    return {o.name: o.value for o in overrides if o.kind == ENVIRONMENT}
