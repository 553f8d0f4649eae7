"""What the benchmark scripts share: a task repository with one commit, and their command line."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path


def git_repo(path: Path, files: dict[str, str]) -> Path:
    """A new git repository at `path` (branch main, a committer set) with `files` committed."""
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "bench@example.com"],
        ["config", "user.name", "bench"],
        ["add", "-A"],
        ["commit", "-q", "-m", "task"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


def arguments(doc: str | None, **defaults: int | float | str) -> argparse.Namespace:
    """The command line: the module docstring as help, and one `--name` option per default (its type)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return parser.parse_args()
