"""`overnight demo`: copy a demo task into a fresh git repository, ready to run."""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

from overnight.errors import ConfigError

DEMOS = ("quickstart",)


def prepare(name: str, target: Path) -> Path:
    """Copy demo ``name`` into ``target`` (new or empty), make it a git repo, commit. Returns ``target``."""
    if name not in DEMOS:
        raise ConfigError(f"unknown demo {name!r}; demos are: {', '.join(DEMOS)}")
    target = target.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not empty; give a new folder for the demo")
    target.mkdir(parents=True, exist_ok=True)
    python = shlex.quote(sys.executable)
    source = resources.files("overnight.examples") / name
    for item in source.iterdir():
        if item.name.startswith(("__", ".")) or not item.is_file():
            continue
        text = item.read_text(encoding="utf-8")
        if item.name == "overnight.toml":
            text = text.replace("{python}", python)  # the interpreter overnight runs with
        (target / item.name).write_text(text, encoding="utf-8")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=target, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.name", "overnight demo")
    git("config", "user.email", "demo@localhost")
    git("add", "-A")
    git("commit", "-q", "-m", f"the {name} demo task")
    return target
