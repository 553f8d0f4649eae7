"""What the harness tells an agent beyond the files: the facts of the brief.

Every agent kind gets the same facts: chat models and coding CLIs read them as text
(``agents/prompt.py`` writes them into the prompt), command agents as
JSON (:meth:`Facts.data`, in the file ``OVERNIGHT_BRIEF`` names). They are gathered once
per proposal (:func:`gather`) from the run's state as it is then, or from the ledger by
``overnight brief``:

* the keep rule in one line: the threshold, the noise with the runs it was pooled from,
  and how many runs a candidate may take, so "worse" is not read into noise;
* every past experiment: its status, its estimate with its number of runs, its difference
  from the best it was judged against, why it ended, the secondary metrics that moved
  notably (a busy machine halves the steps a budget buys: the agent should not blame its
  change), the tail of the log of a crash, timeout or failed gate, the diff of recent ones;
* what the other workers are trying now, the lab notebook, the night's progress.

How the text fits a budget (the least useful parts go first) is ``agents/prompt.py``'s part.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overnight import secrets, views
from overnight.agents.keeprule import guard_lines, rule
from overnight.agents.known import Known
from overnight.config import Config
from overnight.errors import GitError
from overnight.judge.noise import Noise
from overnight.records import MEASURED, ON_BRANCH, Experiment, Goal, Note, Status

RECENT = 12  # the most recent experiments are shown in full
TAIL_LINES = 30  # lines of a failed experiment's log shown
DIFF_LINES = 40  # lines of one experiment's diff shown
DIFFS_OF_KEEPS = 3  # the diffs of the last keeps shown...
DIFFS_OF_RECENT = 4  # ...and of the last experiments
NOTABLE = 0.2  # a secondary metric that moved by this share of its value is named
MAX_CHANGED = 5  # secondary metrics named per experiment
FAILED = (Status.CRASH, Status.TIMEOUT, Status.GATE_FAILED, Status.NO_METRIC)  # their log tail is shown
MAX_NOTE_CHARS = 500  # one note, at most
NOTES_PER_EXPERIMENT = 10  # notes kept from one experiment, at most


@dataclass(frozen=True)
class Progress:
    """How far the night has come, for the agent of one experiment."""

    experiment: int  # the id of the experiment being proposed
    kept: int  # keeps so far in the run
    started: int = 0  # experiments this invocation has started
    max_experiments: int | None = None  # this invocation's --max-experiments
    elapsed_s: float = 0.0  # since this invocation started
    max_time_s: float | None = None  # this invocation's --max-time

    def data(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "kept": self.kept,
            "started": self.started,
            "max_experiments": self.max_experiments,
            "experiments_left": None if self.max_experiments is None else max(0, self.max_experiments - self.started),
            "elapsed_s": round(self.elapsed_s, 1),
            "max_time_s": self.max_time_s,
            "time_left_s": None if self.max_time_s is None else round(max(0.0, self.max_time_s - self.elapsed_s), 1),
        }


@dataclass(frozen=True)
class Entry:
    """One finished experiment as agents see it."""

    id: int
    status: str
    hypothesis: str
    agent: str
    worker: int
    metric: float | None  # its estimate: the mean of ``runs`` runs
    runs: int
    reference_id: int | None  # the best it was judged against (or proposed on)
    reference: float | None  # that best's estimate as it was judged against
    reference_runs: int
    delta: float | None  # metric − reference, in the metric's units
    verdict: str  # "better", "worse", "within the noise" or "" (not measured)
    gain_ci: tuple[float, float] | None  # the interval of the gain (goal's direction), when the judge made one
    reason: str
    changed: dict[str, tuple[float, float]]  # secondary metrics that moved notably: name → (reference's, its)
    tail: str = ""  # the redacted end of its log (crash, timeout, failed gate, no metric)
    diff: str = ""  # its change, cut to DIFF_LINES (recent experiments and keeps only)
    notes: tuple[str, ...] = ()  # what its agent wrote in the notebook

    @property
    def kept(self) -> bool:
        return self.status in (Status.KEEP.value, Status.BASELINE.value)

    def data(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "hypothesis": self.hypothesis,
            "agent": self.agent,
            "worker": self.worker,
            "metric": self.metric,
            "runs": self.runs,
            "judged_against": None
            if self.reference is None
            else {"id": self.reference_id, "estimate": self.reference, "runs": self.reference_runs},
            "delta": self.delta,
            "verdict": self.verdict,
            "gain_ci": list(self.gain_ci) if self.gain_ci else None,
            "reason": self.reason,
            "changed_metrics": {k: {"before": b, "after": a} for k, (b, a) in self.changed.items()},
            "log_tail": self.tail,
            "diff": self.diff,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Facts:
    """Everything the brief says beyond program.md and the files (see the module docstring)."""

    metric: str
    rule: str
    guards: tuple[str, ...]
    progress: Progress | None
    entries: tuple[Entry, ...]  # finished experiments, in the order they finished
    running: tuple[tuple[int, str, str, int], ...]  # (id, hypothesis, agent, worker) of experiments in flight
    notes: tuple[Note, ...]  # the whole notebook, oldest first
    notes_path: str = ""  # where this agent may append notes (one per line)
    noise: dict[str, Any] = field(default_factory=dict)  # the noise the rule was stated with

    def data(
        self, experiment: Callable[[Entry], Any] = Entry.data, note: Callable[[Note], Any] = Note.data
    ) -> dict[str, Any]:
        """The facts as JSON-ready data (command agents read them from OVERNIGHT_BRIEF); ``experiment`` and
        ``note`` give each entry's and note's element (overnight.agents.jsonbrief gives them encoded once)."""
        return {
            "rule": self.rule,
            "noise": self.noise,
            "guards": list(self.guards),
            "progress": None if self.progress is None else self.progress.data(),
            "experiments": [experiment(e) for e in self.entries],
            "running": [{"id": i, "hypothesis": h, "agent": a, "worker": w} for i, h, a, w in self.running],
            "notes": [note(n) for n in self.notes],
            "notes_path": self.notes_path,
        }


_DIFFS: OrderedDict[tuple[str, str], str] = OrderedDict()  # (parent, commit) → patch, as written with the commit
_DIFFS_KEPT = 256
_DIFFS_LOCK = threading.Lock()


def remember_diff(parent: str, commit: str, patch: str) -> None:
    """Keep the patch of a commit just written (commits.Committed.diff): the briefs that show it then
    need no `git diff` of their own, on the path from one experiment to the next."""
    with _DIFFS_LOCK:
        _DIFFS[(parent, commit)] = patch
        while len(_DIFFS) > _DIFFS_KEPT:
            _DIFFS.popitem(last=False)


def _diff(root: Path, parent: str, commit: str) -> str:
    with _DIFFS_LOCK:
        known = _DIFFS.get((parent, commit))
    return known if known is not None else views.commit_diff(root, parent, commit)


def clean_note(text: str) -> str:
    """One note as the notebook keeps it: one printable line without credentials, at most MAX_NOTE_CHARS.

    A leading ``Note:`` and list markers are dropped: agents write them as they please.
    """
    line = "".join(c for c in " ".join(text.split()) if c.isprintable())
    line = line.lstrip("-*• ").strip()
    if line[:5].lower() == "note:":
        line = line[5:].strip()
    line = secrets.current().redact(line)
    return line if len(line) <= MAX_NOTE_CHARS else line[: MAX_NOTE_CHARS - 1] + "…"


# -- gathering ---------------------------------------------------------------------------------------


def gather(
    *,
    config: Config,
    history: Sequence[Experiment],
    running: Sequence[Experiment] = (),
    samples: Mapping[tuple[int, int], Sequence[float]],
    notes: Sequence[Note] = (),
    logs: Path | None = None,
    root: Path | None = None,
    best: Experiment | None = None,
    progress: Progress | None = None,
    notes_path: Path | None = None,
    known: Known[Entry] | None = None,
) -> Facts:
    """The facts for the next proposal.

    ``history`` is the finished experiments in the order they finished; ``samples`` every measured value by
    (experiment, round); ``logs`` the run's log folder (for the tails of the failed ones among the RECENT
    latest) and ``root`` the repository (for the diffs of the latest keeps and experiments); either may be
    None to leave those out. Holdout values are never read: the agents must not see them. ``known`` holds
    the entries of the run's earlier calls: one made from the same inputs is not made again.
    """
    noise = Noise.pooled(samples.values())
    level = best.metric if best is not None and best.metric is not None else None
    if level is not None:
        noise = noise.at(level)
    pooled_runs = sum(len(v) for v in samples.values() if len(v) > 1)
    by_commit = {e.commit: e for e in history if e.status in ON_BRANCH and e.commit}
    by_id = {e.id: e for e in history}
    written: dict[int, list[str]] = {}
    for note in notes:
        written.setdefault(note.experiment, []).append(note.text)
    keeps = [e.id for e in history if e.status is Status.KEEP][-DIFFS_OF_KEEPS:]
    recent = [e.id for e in history if e.commit and e.commit != e.parent][-DIFFS_OF_RECENT:]
    latest = {e.id for e in history[-RECENT:]}  # only their log tails are read: older ones are not shown
    goal, metric, known = config.metric.goal_enum, config.metric.name, Known() if known is None else known
    still = functools.partial(_verdict_holds, goal)
    entries = []
    for exp in history:
        judged = exp.bookkeeping.judged_against
        inputs = (exp, by_commit.get(exp.parent), by_id.get(judged.id) if judged is not None else None, noise.sd,
                  tuple(written.get(exp.id, ())), exp.id in latest, exp.id in keeps or exp.id in recent)  # fmt: skip
        if (entry := known.get(inputs, still)) is None:
            entry = _entry(exp, by_commit, by_id, noise.sd, inputs[4], goal, metric,
                           logs=logs if inputs[5] else None, root=root if inputs[6] else None)  # fmt: skip
            known.put(inputs, entry)
        entries.append(entry)
    return Facts(
        metric=config.metric.name,
        rule=rule(config, noise, pooled_runs, level),
        guards=guard_lines(config, best),
        progress=progress,
        entries=tuple(entries),
        running=tuple((e.id, e.hypothesis, e.agent, e.worker) for e in running if e.hypothesis),
        notes=tuple(notes),
        notes_path=str(notes_path) if notes_path else "",
        noise={"sd": noise.sd, "runs": pooled_runs, "relative": noise.relative},
    )


def _entry(
    exp: Experiment,
    by_commit: Mapping[str, Experiment],
    by_id: Mapping[int, Experiment],
    sd: float | None,
    notes: Sequence[str],
    goal: Goal,
    metric: str,
    *,
    logs: Path | None,
    root: Path | None,
) -> Entry:
    measured = exp.status in MEASURED and exp.metric is not None
    reference, ref_id, ref_runs = None, None, 0
    judged = exp.bookkeeping.judged_against
    parent = by_commit.get(exp.parent)
    if exp.status is Status.DISCARD and judged is not None and judged.estimate is not None:
        reference, ref_id, ref_runs = float(judged.estimate), judged.id, judged.runs
    elif parent is not None and parent.id != exp.id:
        reference, ref_id, ref_runs = parent.metric, parent.id, parent.runs
    delta = exp.metric - reference if measured and reference is not None and exp.metric is not None else None
    ci = (exp.ci_low, exp.ci_high) if exp.ci_low is not None and exp.ci_high is not None else None
    verdict = ""
    if delta is not None and reference is not None and exp.metric is not None:
        verdict = _verdict(exp, goal.improvement(exp.metric, reference), ci, sd, ref_runs)
    changed = _changed(exp, by_id.get(ref_id) if ref_id is not None else parent, skip=metric)
    tail = ""
    if logs is not None and exp.status in FAILED:
        found = views.tail(logs / f"{exp.id}.log", TAIL_LINES)
        tail = secrets.current().redact(found["text"]) if found["exists"] else ""
    diff = ""
    if root is not None and exp.commit and exp.parent and exp.commit != exp.parent:
        with contextlib.suppress(GitError):  # no diff shown, rather than no brief
            diff = _cut_lines(_diff(root, exp.parent, exp.commit), DIFF_LINES)
    return Entry(
        id=exp.id,
        status=exp.status.value,
        hypothesis=exp.hypothesis,
        agent=exp.agent,
        worker=exp.worker,
        metric=exp.metric if measured else None,
        runs=exp.runs if measured else 0,
        reference_id=ref_id,
        reference=reference,
        reference_runs=ref_runs,
        delta=delta,
        verdict=verdict,
        gain_ci=ci,
        reason=exp.reason,
        changed=changed,
        tail=tail,
        diff=diff,
        notes=tuple(notes),
    )


def _verdict_holds(goal: Goal, entry: Entry, inputs: tuple[Any, ...]) -> bool:
    """Whether ``entry``'s verdict is the same under the noise of ``inputs`` (its experiment, ..., the sd)."""
    if entry.delta is None or entry.metric is None or entry.reference is None:
        return True  # not measured against a best: no verdict
    gain = goal.improvement(entry.metric, entry.reference)
    return _verdict(inputs[0], gain, entry.gain_ci, inputs[3], entry.reference_runs) == entry.verdict


def _verdict(exp: Experiment, gain: float, ci: tuple[float, float] | None, sd: float | None, ref_runs: int) -> str:
    """Better, worse or within the noise (``gain`` in the goal's direction): from the judge's interval when it
    made one, else from the pooled noise."""
    if exp.status is Status.KEEP:
        return "better"
    if ci is not None:
        return "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "within the noise"
    if sd is None:
        return ""
    if sd == 0:
        return "better, but by less than the threshold" if gain > 0 else "worse" if gain < 0 else "no difference"
    se = sd * math.sqrt(1 / max(1, exp.runs) + 1 / max(1, ref_runs))
    if abs(gain) <= 2 * se:
        return "within the noise"
    return "worse" if gain < 0 else "better, but not proven"


def _changed(exp: Experiment, reference: Experiment | None, skip: str) -> dict[str, tuple[float, float]]:
    """Secondary metrics (not ``skip``, the metric) that moved by NOTABLE of their value against the
    reference (at most MAX_CHANGED)."""
    if reference is None or not exp.metrics or not reference.metrics:
        return {}
    moved: list[tuple[float, str, float, float]] = []
    for name, after in exp.metrics.items():
        if name == skip:
            continue
        before = reference.metrics.get(name)
        if not isinstance(after, int | float) or not isinstance(before, int | float) or before == after:
            continue
        if not (math.isfinite(before) and math.isfinite(after)):
            continue
        scale = abs(before) if before else abs(after)
        share = abs(after - before) / scale if scale else 0.0
        if share >= NOTABLE:
            moved.append((share, name, float(before), float(after)))
    moved.sort(reverse=True)
    return {name: (before, after) for _, name, before, after in moved[:MAX_CHANGED]}


def _cut_lines(text: str, limit: int) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) <= limit:
        return "\n".join(lines)
    return "\n".join([*lines[:limit], f"[... {len(lines) - limit} more lines of the diff not shown ...]"])
