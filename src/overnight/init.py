"""`overnight init`: write overnight.toml and program.md for a task. Never overwrites."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from overnight.config import CONFIG_FILE, PROGRAM_FILE, default_timeout, parse_config

_CONFIG = """\
# overnight task file: what may change, how an experiment runs, what is measured.
# Every key is described in overnight's README, section "The task files".

[task]
run = {run}
editable = {editable}
protected = []                 # extra globs; every tracked file that is not editable is protected anyway
setup = ""                     # run once per worktree before its first experiment
gate = ""                      # correctness check before each experiment; non-zero exit → gate_failed
budget_s = {budget}            # the experiment's time budget, handed to it as OVERNIGHT_BUDGET_S
# timeout_s = {timeout}        # hard kill (default: 2 × budget_s, at least budget_s + 60)

[metric]
name = {metric}
goal = {goal}                  # "min" or "max"
# By default the value is the last `{name}: <number>` line the run prints.
# pattern = ""                 # or: a regex with one group, matched against the output
# file = ""                    # or: a JSON file the run writes (the key is the metric name)
# command = ""                 # or: a protected evaluator run after the experiment

[judge]
min_delta = 0.0                # keep a change only if it beats the best by more than this

[agent]
kind = "tune"                  # tune (offline, no LLM), command, openai, anthropic, claude, codex, gemini, opencode, aider
# model = ""                   # for LLM and coding-CLI agents
# command = "python propose.py" # for kind = "command": edits the files, prints `Hypothesis: ...`
"""

_PROGRAM = """\
# Research program

You improve `{metric}` ({direction} is better) by changing {files}.

## The loop
Each experiment changes one idea. The harness runs `{run}` with a fixed time budget,
reads `{metric}`, and keeps the change only if it beats the best so far.

## What to explore
- (write the directions worth trying here)

## What to respect
- Do not change how `{metric}` is measured.
- Keep the code runnable within the time budget.
"""


def render_config(run: str, editable: list[str], metric: str, goal: str, budget_s: float = 300) -> str:
    """The text of a new overnight.toml; validated before it is returned."""
    text = _CONFIG.format(
        run=json.dumps(run),
        editable=json.dumps(editable),
        budget=f"{budget_s:g}",
        timeout=f"{default_timeout(budget_s):g}",
        metric=json.dumps(metric),
        name=metric,
        goal=json.dumps(goal),
    )
    parse_config(tomllib.loads(text), CONFIG_FILE)
    return text


def render_program(run: str, editable: list[str], metric: str, goal: str) -> str:
    return _PROGRAM.format(
        metric=metric,
        direction="lower" if goal == "min" else "higher",
        files=", ".join(f"`{e}`" for e in editable),
        run=run,
    )


def write_task(directory: Path, run: str, editable: list[str], metric: str, goal: str) -> tuple[list[Path], list[Path]]:
    """Write the missing task files. Returns (written, left as they were)."""
    files = {
        directory / CONFIG_FILE: render_config(run, editable, metric, goal),
        directory / PROGRAM_FILE: render_program(run, editable, metric, goal),
    }
    written, kept = [], []
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        try:
            with open(path, "x", encoding="utf-8") as fh:  # "x": never overwrite, even in a race
                fh.write(text)
            written.append(path)
        except FileExistsError:
            kept.append(path)
    return written, kept
