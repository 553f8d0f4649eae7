"""`overnight init`: write overnight.toml and program.md for a task. Never overwrites."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path

from overnight import globs
from overnight.agents.constants import Constant, find_constants, format_value
from overnight.agents.space import search_space
from overnight.config import CONFIG_FILE, PROGRAM_FILE, TuneSection, default_timeout, parse_config
from overnight.judge import seeds
from overnight.script import Script, read_script

_CONFIG = """\
# overnight task file: what may change, how an experiment runs, what is measured.
# Every key is described in overnight's README, section "The task files".

[task]
run = {run}
editable = {editable}
protected = []                 # extra globs; every tracked file that is not editable is protected anyway
setup = ""                     # run once per worktree before its first experiment
gate = ""                      # correctness check before each experiment; non-zero exit → gate_failed
budget_s = {budget} # {budget_note}
# timeout_s = {timeout} # hard kill (default: 2 × budget_s, at least budget_s + 60)

[metric]
name = {metric}
goal = {goal}                  # "min" or "max"
# By default the value is the last `{name}: <number>` line the run prints.
# pattern = ""                 # or: a regex with one group, matched against the output
# file = ""                    # or: a JSON file the run writes (the key is the metric name)
# command = ""                 # or: a protected evaluator run after the experiment

[judge]
min_delta = 0.0 # 0: any gain the judge can tell from the noise is kept; set the smallest gain worth keeping
{seed}
[agent]
kind = "tune"                  # tune (offline, no LLM), command, openai, anthropic, claude, codex, gemini, opencode, aider
# model = ""                   # for LLM and coding-CLI agents
# command = "python propose.py" # for kind = "command": edits the files, prints `Hypothesis: ...`
{tune}"""

_NO_CONSTANTS = """\
# [agent.tune]                 # what the tune agent changes: the UPPER_CASE = <number or bool> constants
# include = ["LEARNING_RATE"]  # of the editable .py files (init found none); see README, "tune"
# ranges = { LEARNING_RATE = [0.0001, 0.01] }
"""

_PROGRAM = """\
# Research program

You improve `{metric}` ({direction} is better) by changing {files}.

## The loop
Each experiment changes one idea. The harness runs `{run}`{budget},
reads `{metric}`, and keeps the change only if it beats the best so far.

## What to explore
- (write the directions worth trying here)

## What to respect
- Do not change how `{metric}` is measured.
{respect}- Each change is measured on several runs with different seeds; a new seed, another order of random
  draws or one more draw is a re-roll, not an improvement: do not propose one.
"""


# Constants that set how much an experiment computes (a budget): tuning them buys a better metric with more
# compute, so init leaves them out of the tune agent's search (include) unless the user names them.
BUDGET_NAME = re.compile(
    r"^(?:(?:NUM|N|MAX|TOTAL|TRAIN|TRAINING)_)?"
    r"(?:EPOCHS?|STEPS?|ITERS?|ITERATIONS?|TIME|TIME_S|TIME_BUDGET|BUDGET|BUDGET_S|SECONDS|DURATION)$"
)
BUDGET_WHY = "sets the budget: a fixed budget keeps experiments comparable; add it to include to tune it anyway"
_ALIGN = 32  # the column of the comments in the settings init writes
_SETTING = re.compile(
    r'^(?P<key>(?:# )?[A-Za-z_][A-Za-z0-9_.]* = (?:"(?:[^"\\]|\\.)*"|[^"#\s][^#]*?))\s+# (?P<note>.*)$'
)


def aligned(text: str) -> str:
    """``text`` with the comment after each ``key = value`` line starting in one column."""
    out = []
    for line in text.splitlines(keepends=True):
        found = _SETTING.match(line.rstrip("\n"))
        if found:
            line = f"{found['key']:<{_ALIGN - 1}} # {found['note']}" + ("\n" if line.endswith("\n") else "")
        out.append(line)
    return "".join(out)


def tune_stub(constants: Sequence[Constant]) -> str:
    """The ``[agent.tune]`` part of a new overnight.toml: the constants found, and the space the
    tune agent would search by default, written out for the user to narrow.

    ``include`` lists the constants it would tune (a constant added to the code later is then
    left alone until named there: safe by default); each default range is a comment, and each
    constant it leaves alone is named with the reason, a 0 with a range to fill in.
    """
    if not constants:
        return _NO_CONSTANTS
    space = search_space(list(constants), TuneSection())
    budgets = [d.name for d in space.dimensions if BUDGET_NAME.match(d.name)]
    names = [d.name for d in space.dimensions if d.name not in budgets]
    lines = [
        "",
        "[agent.tune]",
        "# The constants init found in the editable files. The tune agent changes only those in include:",
        "# delete what must stay as it is.",
        f"include = {json.dumps(names)}",
    ]
    lines += [f"# left alone: {n} ({why.split(';')[0]})" for n, why in space.left_alone.items()]
    lines += [f"# left alone: {n} ({BUDGET_WHY})" for n in budgets]
    lines += [
        "",
        "[agent.tune.ranges]",
        "# Each range below is what the tune agent searches by default; uncomment one to change it.",
    ]
    for dim in space.dimensions:
        if dim.scale != "bool":
            low, high = (int(dim.low), int(dim.high)) if dim.scale.startswith("int") else (dim.low, dim.high)
            lines.append(f"# {dim.name} = [{format_value(low)}, {format_value(high)}]  # {dim.scale} scale")
    by_name = {c.name: c for c in constants}
    for name, why in space.left_alone.items():
        if why.startswith("is 0") and not by_name[name].is_bool:
            lines.append(f"# {name} = [0.0, 1.0]  # is 0: give it a range (and add it to include) to tune it")
    return "\n".join(lines) + "\n"


def seed_setting(directory: Path, editable: Sequence[str]) -> tuple[str, list[str]]:
    """The ``[judge] seed`` line of a new overnight.toml (or a comment), and what init says about seeds.

    A script that reads OVERNIGHT_SEED needs nothing. A seed-like constant of an editable file
    (``SEED = 42``) is named, so that the harness sets it per run; otherwise the lines say what
    to change (see overnight.judge.seeds).
    """
    found = seeds.survey(directory, [*editable, "*.py"])
    if found.seeded:
        return "", [f"seed: {', '.join(found.reads_env)} read OVERNIGHT_SEED: each run of a commit is its own draw"]
    editable_constants = [(f, n) for f, n in found.constants if globs.matches(f, editable)]
    if editable_constants:
        file, name = next(((f, n) for f, n in editable_constants if n == "SEED"), editable_constants[0])
        line = f"{f'seed = {json.dumps(name)}':<30} # set to each run's seed in the measured copy (README: seeds)\n"
        return line, [
            f'seed: {file} fixes its seed in {name}; wrote [judge] seed = "{name}", so the harness sets {name} to '
            "each run's seed and repeated runs are different draws (the commit keeps its value)"
        ]
    named = '# seed = "SEED"'
    comment = f"{named:<30} # the constant your script seeds itself with (README: seeds)\n"
    advice = found.advice() or [
        "seed: init found no seed in the task's scripts. If they fix one (e.g. torch.manual_seed(0)), every run of a "
        'commit gives the same value: read os.environ["OVERNIGHT_SEED"], or put the seed in a constant and name it '
        "in [judge] seed; if the metric has no randomness at all, set [judge] exact = true"
    ]
    return comment, [line if line.startswith("seed:") else f"seed: {line}" for line in advice]


def found_constants(directory: Path, editable: Sequence[str]) -> list[Constant]:
    """The constants of the editable .py files already in ``directory`` (unparsable ones skipped)."""
    found: list[Constant] = []
    files = sorted({p for glob in editable for p in directory.glob(glob) if p.suffix == ".py" and p.is_file()})
    for path in files:
        try:
            found += find_constants(path.read_text(encoding="utf-8"), path.relative_to(directory).as_posix())
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue  # init writes what it can; the tune agent says what it cannot parse when it runs
    return found


def render_config(
    run: str,
    editable: list[str],
    metric: str,
    goal: str,
    budget_s: float = 300,
    constants: Sequence[Constant] = (),
    seed: str = "",
    reads_budget: bool = True,
) -> str:
    """The text of a new overnight.toml (``seed``: its [judge] seed line, see :func:`seed_setting`;
    ``reads_budget``: whether the script reads OVERNIGHT_BUDGET_S); validated before it is returned."""
    budget_note = (
        "the experiment's time budget, handed to it as OVERNIGHT_BUDGET_S"
        if reads_budget
        else "handed to it as OVERNIGHT_BUDGET_S, which the script does not read yet: it runs to its end"
    )
    settings = aligned(
        _CONFIG.split("{tune}")[0].format(
            seed=seed,
            run=json.dumps(run),
            editable=json.dumps(editable),
            budget=f"{budget_s:g}",
            budget_note=budget_note,
            timeout=f"{default_timeout(budget_s):g}",
            metric=json.dumps(metric),
            name=metric,
            goal=json.dumps(goal),
        )
    )
    text = settings + tune_stub(constants)
    parse_config(tomllib.loads(text), CONFIG_FILE)
    return text


def render_program(run: str, editable: list[str], metric: str, goal: str, reads_budget: bool = True) -> str:
    if reads_budget:
        budget = " with a fixed time budget (it reads OVERNIGHT_BUDGET_S)"
        respect = "- Keep the code runnable within the time budget.\n"
    else:
        budget = " as it is (the script sets how much it\ntrains; it reads no time budget)"
        respect = (
            "- Keep the amount of training as it is (epochs, steps, iterations): experiments are compared at the\n"
            "  same budget, and a change that only trains longer is not an improvement.\n"
        )
    return _PROGRAM.format(
        metric=metric,
        direction="lower" if goal == "min" else "higher",
        files=", ".join(f"`{e}`" for e in editable),
        run=run,
        budget=budget,
        respect=respect,
    )


def write_task(
    directory: Path, run: str, editable: list[str], metric: str, goal: str
) -> tuple[list[Path], list[Path], list[str]]:
    """Write the missing task files. Returns (written, left as they were, what init found and assumed)."""
    seed, said = seed_setting(directory, editable) if directory.is_dir() else ("", [])
    script = read_script(directory, run, editable) if directory.is_dir() else Script((), False)
    constants = found_constants(directory, editable)
    said = [*script.lines(300), *said]
    budgets = [c.name for c in constants if BUDGET_NAME.match(c.name)]
    if budgets:
        said.append(
            f"tune: left out of the search: {', '.join(budgets)} (a budget: a fixed budget keeps experiments "
            "comparable; name it in [agent.tune] include to tune it anyway)"
        )
    said.append(
        "judge: min_delta = 0.0 keeps any gain the judge can tell from the noise; `overnight noise` measures the "
        "noise and suggests a value"
    )
    files = {
        directory / CONFIG_FILE: render_config(
            run, editable, metric, goal, constants=constants, seed=seed, reads_budget=script.reads_budget
        ),
        directory / PROGRAM_FILE: render_program(run, editable, metric, goal, reads_budget=script.reads_budget),
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
    return written, kept, said
