"""What the run command's script reads, by a static look: does it read ``OVERNIGHT_BUDGET_S``?

A script that never reads the budget runs as long as it does (a fixed number of epochs, say):
then "20/300 s" in the live view, or "at budget 300 s" in verify, would be false. ``overnight
init`` says so when it writes the config, the start of a run says it again, and the live view and
verify show the time taken instead of a budget nobody reads. (Whether the seed reaches the script is
the same kind of look, in overnight.judge.seeds.)
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Script:
    """What the run command's script(s) read: the time budget overnight hands them, or not?"""

    files: tuple[str, ...]  # the run command's files init found and read, relative to the task folder
    reads_budget: bool  # one of them, or an editable .py file, reads OVERNIGHT_BUDGET_S

    @property
    def named(self) -> str:
        return ", ".join(self.files) or "the run command's script"

    def budget_text(self, budget_s: float) -> str:
        """The budget as the views say it: "budget 300 s", or that the script does not read it."""
        if self.reads_budget or not self.files:
            return f"budget {budget_s:g} s"
        return f"budget {budget_s:g} s, not read by {self.named}: it runs to its end"

    def lines(self, budget_s: float) -> list[str]:
        """What init (and the start of a run that it does not read) says about it, on screen."""
        named = self.named
        if not self.files:
            return [f"budget: init found no script file in the run command to read; {_BUDGET_HOW.format(budget_s)}"]
        if self.reads_budget:
            return [f"budget: {named} reads OVERNIGHT_BUDGET_S: every experiment gets budget_s = {budget_s:g} seconds"]
        return [
            f"budget: {named} does not read OVERNIGHT_BUDGET_S: each experiment runs as long as the script does "
            f"(timeout_s still kills it); {_BUDGET_HOW.format(budget_s)}"
        ]


_BUDGET_HOW = (
    "for experiments of equal time, stop training once time.monotonic() - start > "
    'float(os.environ.get("OVERNIGHT_BUDGET_S", {0:g})); or keep a fixed amount of work (epochs, steps) '
    "that no experiment changes"
)


def read_script(directory: Path, run: str, editable: Sequence[str]) -> Script:
    """Find the files the run command names (``python train.py`` → train.py) and read them."""
    try:
        words = shlex.split(run)
    except ValueError:
        words = run.split()
    files = [w for w in words if not w.startswith("-") and _script(directory, w)]
    texts = [_text(directory / f) for f in files]
    texts += [_text(p) for glob in editable for p in directory.glob(glob) if p.suffix == ".py" and p.is_file()]
    return Script(tuple(files), any("OVERNIGHT_BUDGET_S" in t for t in texts))


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _script(directory: Path, word: str) -> bool:
    """Whether ``word`` names a script of the task: a text file in its folder (not the interpreter that runs it,
    which may be an absolute path, or a link in a venv inside the task)."""
    path = directory / word
    if Path(word).is_absolute() or path.is_symlink() or not path.is_file():
        return False
    try:
        path.resolve().relative_to(directory.resolve())
        with path.open("rb") as f:
            return b"\0" not in f.read(1024)
    except (OSError, ValueError):
        return False
