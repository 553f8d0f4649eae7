"""A task: a folder with overnight.toml and program.md inside a git repository."""

from __future__ import annotations

import functools
import logging
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from overnight import git
from overnight.config import CONFIG_FILE, Config, load_config, load_program
from overnight.errors import ConfigError
from overnight.git import task_relative
from overnight.globs import Rules, matches
from overnight.judge import seeds
from overnight.process import sandbox

log = logging.getLogger(__name__)

# Words a shell accepts first that are not programs to look up.
_SHELL_WORDS = {
    "cd",
    "export",
    "source",
    ".",
    "exec",
    "env",
    "set",
    "unset",
    "time",
    "nice",
    "timeout",
    "if",
    "for",
    "(",
}


@dataclass(frozen=True)
class Task:
    """A loaded, validated task. Paths are absolute; ``rel`` is the task folder within the repo."""

    dir: Path
    root: Path
    rel: str
    config: Config
    program: str

    @classmethod
    def load(cls, directory: Path) -> Task:
        directory = directory.resolve()
        if not directory.is_dir():
            raise ConfigError(f"{directory}: no such folder; give the folder that holds {CONFIG_FILE}")
        config = load_config(directory / CONFIG_FILE)
        program = load_program(directory)
        root = git.repo_root(directory)
        rel = directory.relative_to(root).as_posix()
        return cls(directory, root, rel, config, program)

    @property
    def rules(self) -> Rules:
        return Rules(self.config.task.editable, self.config.task.protected)

    def in_worktree(self, worktree: Path) -> Path:
        """The task folder inside a worktree of the repository."""
        return worktree if self.rel == "." else worktree / self.rel

    def editable_files(self, tracked: list[str]) -> list[str]:
        """Repo-relative tracked files the agent may change."""
        return [p for p in tracked if self.rules.allows(task_relative(p, self.rel))]

    def files_at(self, commit: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(editable, protected) tracked files of the task folder at ``commit``, relative to the task folder."""
        return _files_at(self.root, self.rel, self.config.task.editable, self.config.task.protected, commit)

    def check_files(self) -> None:
        """Every editable glob must name a committed file; warn about protected globs matching nothing."""
        tracked = git.tracked_files(self.root)
        in_task = [t for t in (task_relative(p, self.rel) for p in tracked) if t is not None]
        untracked = [t for t in (task_relative(p, self.rel) for p in git.untracked_files(self.root)) if t]
        where = self.dir / CONFIG_FILE
        for pattern in self.config.task.editable:
            if any(matches(t, [pattern]) for t in in_task):
                continue
            loose = [t for t in untracked if matches(t, [pattern])]
            hint = f"; it matches uncommitted {', '.join(loose[:3])}: commit it" if loose else ""
            raise ConfigError(f"{where} [task] editable: {pattern!r} matches no committed file in {self.dir}{hint}")
        if not self.editable_files(tracked):
            raise ConfigError(f"{where} [task]: every editable file is also protected; nothing is left to change")
        for pattern in self.config.task.protected:
            if not any(matches(t, [pattern]) for t in in_task + untracked):
                log.warning("%s [task] protected: %r matches no file", where, pattern)

    def check_ready(self) -> None:
        """What every command that measures needs, checked before it creates anything.

        Editable files exist, configured programs exist, bubblewrap is there when the task
        asks for the sandbox, and the user's checkout has no uncommitted task changes.
        """
        self.check_files()
        self.check_commands()
        seed = self.config.judge.seed
        if seed and not seeds.assigned(self.dir, self.config.task.editable, seed):
            raise ConfigError(f"{self.dir / CONFIG_FILE} {seeds.missing(seed)}")
        if self.config.task.sandbox:
            sandbox.require()
        git.ensure_clean(self.root, git.modified_files(self.root))

    def check_commands(self) -> None:
        """Fail early, with a clear message, when a configured command's program does not exist."""
        named = {
            "[task] run": self.config.task.run,
            "[task] setup": self.config.task.setup,
            "[task] gate": self.config.task.gate,
            "[metric] command": self.config.metric.command,
            "[metric] holdout": self.config.metric.holdout,
        }
        for key, command in named.items():
            check_command(command, self.dir, f"{self.dir / CONFIG_FILE} {key}")


def check_command(command: str, cwd: Path, label: str) -> None:
    """Raise ConfigError when the first word of ``command`` names no program, builtin or file."""
    if not command.strip():
        return
    try:
        words = shlex.split(command)
    except ValueError:
        return  # let the shell report its own syntax error when it runs
    if not words:
        return
    first = words[0]
    if "=" in first or first in _SHELL_WORDS or any(c in first for c in "$`;|&<>(){}*?"):
        return  # an assignment, a builtin or shell syntax: only the shell can tell
    proc = subprocess.run(["sh", "-c", 'command -v -- "$1"', "sh", first], cwd=cwd, capture_output=True)
    if proc.returncode != 0:
        raise ConfigError(
            f"{label}: {first!r} is not a command here (not on PATH, not a file in {cwd}); fix the command"
        )


@functools.lru_cache(maxsize=256)
def _files_at(
    root: Path, rel: str, editable: tuple[str, ...], protected: tuple[str, ...], commit: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Task.files_at, kept: a commit's files never change."""
    out = git.git("ls-tree", "-r", "-z", "--name-only", commit, cwd=root)
    rules = Rules(editable, protected)
    inside = [t for t in (task_relative(p, rel) for p in out.split("\0") if p) if t is not None]
    return tuple(t for t in inside if rules.allows(t)), tuple(t for t in inside if not rules.allows(t))
