"""`overnight demo`: copy an example task into a fresh git repository, ready to run.

The examples live in examples/ and ship in the package as ``overnight.examples``.
Commands in the copied overnight.toml that start with ``python3`` (or ``python``)
are pointed at the interpreter running overnight, so the demo runs with the
packages overnight was installed with (numpy comes with it).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from overnight.choices import EXAMPLES
from overnight.errors import ConfigError

_COMMAND = re.compile(r'^(run|setup|gate|command)(\s*=\s*")python3? ', re.MULTILINE)
_BUDGET = re.compile(r"^budget_s\s*=\s*[\d.]+", re.MULTILINE)


def _copy(source: Traversable, target: Path) -> None:
    for item in source.iterdir():
        if item.name.startswith(("__", ".")) or item.name.endswith((".pyc", ".egg-info")):
            continue
        if item.is_dir():
            (target / item.name).mkdir()
            _copy(item, target / item.name)
        else:
            (target / item.name).write_bytes(item.read_bytes())


def prepare(name: str, target: Path, budget_s: float | None = None) -> Path:
    """Copy example ``name`` into ``target`` (new or empty), make it a git repo, commit. Returns ``target``."""
    if name not in EXAMPLES:
        raise ConfigError(f"unknown example {name!r}; examples are: {', '.join(EXAMPLES)}")
    target = target.expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not empty; give a new folder for the demo")
    target.mkdir(parents=True, exist_ok=True)
    _copy(resources.files("overnight.examples") / name, target)
    config = target / "overnight.toml"
    text = _COMMAND.sub(lambda m: f"{m.group(1)}{m.group(2)}{shlex.quote(sys.executable)} ", config.read_text())
    if budget_s is not None:
        text = _BUDGET.sub(f"budget_s = {budget_s:g}", text)
    config.write_text(text)

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=target, check=True, capture_output=True)

    git("init", "-q")
    # The user's identity when git knows one (their finalize commits are theirs); a stand-in only when it does not.
    for key, stand_in in (("user.name", "overnight demo"), ("user.email", "demo@localhost")):
        known = subprocess.run(["git", "config", "--get", key], cwd=target, capture_output=True, text=True)
        if known.returncode != 0 or not known.stdout.strip():
            git("config", key, stand_in)
    git("add", "-A")
    git("commit", "-q", "-m", f"the {name} example task")
    return target
