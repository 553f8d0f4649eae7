"""The runs of a task, one line each: `overnight runs`, and the note other commands add about them.

A task collects runs (a tag each): a try with a bad key beside the ten-hour night. The
commands that look at a run take the most recent one unless ``--tag`` says which; this
module lets them say which one that was and which others there are. Read side only: the
ledgers and the run locks, never git.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from overnight import views
from overnight.run.paths import runs_of
from overnight.views.text import delta, figure


@dataclass(frozen=True)
class RunLine:
    """One run of a task as `overnight runs` lists it."""

    tag: str
    started: str  # the run's created_at, as recorded (UTC, ISO 8601)
    experiments: int  # after the baseline (views.tally)
    kept: int
    best: str  # "3.04 (mean of 3 runs), -0.42 (-12.1%) vs baseline", or what stands instead
    state: str  # running, stopped or finished (views.run_state)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def lines(root: Path, rel: str) -> list[RunLine]:
    """Every run of the task at ``rel`` in the repository at ``root``, oldest first."""
    found = []
    for started, tag in runs_of(root, rel):
        view = views.view_of(root, rel, tag)
        experiments, kept = views.tally(view)
        found.append(RunLine(tag, started, experiments, kept, _best(view), views.run_state(view)))
    return found


def _best(view: views.RunView) -> str:
    base, best = view.baseline, view.best
    if base is None or base.metric is None:
        return "no baseline"
    if best is None or best is base or best.metric is None:
        return f"the baseline, {figure(base.metric, base.runs)}"
    return f"{figure(best.metric, best.runs)}, {delta(best.metric, base.metric)} vs baseline"


def text(found: list[RunLine], latest_note: bool = True) -> str:
    """The table of `overnight runs`: the most recent run last, marked as the one commands take by default."""
    if not found:
        return "no runs of this task yet; start one with `overnight run`"
    width = max(len("tag"), *(len(r.tag) for r in found))
    rows = [f"{'tag':<{width}}  {'started (UTC)':<19}  {'state':<8}  {'experiments':>11}  {'kept':>4}  best"]
    for r in found:
        started = r.started[:19].replace("T", " ")
        rows.append(f"{r.tag:<{width}}  {started:<19}  {r.state:<8}  {r.experiments:>11}  {r.kept:>4}  {r.best}")
    if latest_note:
        rows.append(
            f"status, log, show, verify, finalize, report and the dashboard take the most recent run ({found[-1].tag}) "
            "unless --tag names another"
        )
    return "\n".join(rows)


def as_json(found: list[RunLine]) -> str:
    return json.dumps([r.to_json() for r in found], indent=1)


def others(root: Path, rel: str, tag: str) -> list[str]:
    """The tags of the task's runs other than ``tag``, oldest first."""
    return [t for _, t in runs_of(root, rel) if t != tag]


def choice_note(root: Path, rel: str, tag: str, defaulted: bool) -> str:
    """A line saying which run was shown and which others exist, or "" when it is the task's only run."""
    rest = others(root, rel, tag)
    if not rest:
        return ""
    shown = ", ".join(rest[-5:]) + (f" and {len(rest) - 5} more" if len(rest) > 5 else "")
    which = f"run {tag} is the most recent run of the task" if defaulted else f"this is run {tag}"
    return f"{which}; other runs: {shown} (`overnight runs` lists them; pick one with --tag TAG)"


__all__ = ["RunLine", "as_json", "choice_note", "lines", "others", "text"]
