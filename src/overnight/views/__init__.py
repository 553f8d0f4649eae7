"""Looking at a run: status, log (table, tsv, json) and one experiment.

Everything here reads the ledger and git only, never the task's current
overnight.toml, so a finished run can be inspected after the task has moved on.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from overnight import git
from overnight.errors import ConfigError, GitError, RunStateError
from overnight.judge import seeds
from overnight.records import DISTURBED, ON_BRANCH, Experiment, Goal, Measured, Note, Status, Usage
from overnight.run.ledger import Ledger
from overnight.run.paths import RunLock, RunPaths, check_tag, latest_tag, paths_for

TAIL_LINES = 200  # lines of a log that tail() keeps by default
TAIL_BYTES = 1 << 20  # tail() reads at most this much of the end of a log to find them
META_KEYS = ("tag", "task", "run_id", "created_at", "start_commit", "config", "agents", "ended")


@dataclass(frozen=True)
class RunView:
    """A read-only snapshot of one run."""

    tag: str
    root: Path
    paths: RunPaths
    meta: dict[str, str]
    experiments: list[Experiment]
    running: bool
    measurements: dict[int, list[Measured]]
    notes: tuple[Note, ...] = ()  # the lab notebook, oldest first

    def _config(self) -> dict[str, Any]:
        """The run's settings as recorded; empty while a run that is just starting has not written them yet."""
        try:
            config = json.loads(self.meta.get("config") or "{}")
        except json.JSONDecodeError:
            return {}
        return config if isinstance(config, dict) else {}

    @property
    def metric(self) -> str:
        return str(self._config().get("metric", {}).get("name", "metric"))

    @property
    def goal(self) -> Goal:
        return Goal(self._config().get("metric", {}).get("goal", "min"))

    @functools.cached_property
    def unvaried(self) -> int:
        """The repeated measurements of the run (each experiment's after its first) when every one gave the
        same value as its experiment's first and the metric is not declared exact (``[judge] exact``), else 0:
        the seed does not reach the script (overnight.judge.seeds)."""
        if self._config().get("judge", {}).get("exact"):
            return 0
        groups: dict[tuple[int, int], set[float]] = {}
        counts: Counter[tuple[int, int]] = Counter()
        for measured in self.measurements.values():
            for m in measured:
                if m.value is not None and m.kind != DISTURBED:
                    groups.setdefault((m.experiment, m.round), set()).add(m.value)
                    counts[(m.experiment, m.round)] += 1
        repeated = [key for key, n in counts.items() if n > 1]
        if not repeated or any(len(groups[key]) > 1 for key in repeated):
            return 0
        return sum(counts[key] - 1 for key in repeated)

    def unvaried_text(self) -> str:
        """The warning every view shows while :attr:`unvaried` holds, or ""."""
        return seeds.unvaried_note(self.unvaried) if self.unvaried else ""

    @property
    def baseline(self) -> Experiment | None:
        return next((e for e in self.experiments if e.status is Status.BASELINE), None)

    @property
    def best(self) -> Experiment | None:
        return next((e for e in reversed(self.experiments) if e.status in ON_BRANCH), None)

    def get(self, experiment_id: int) -> Experiment:
        for exp in self.experiments:
            if exp.id == experiment_id:
                return exp
        raise ConfigError(f"run {self.tag} has no experiment {experiment_id}; see `overnight log --tag {self.tag}`")

    @property
    def usage(self) -> Usage:
        """What the agents spent over the whole run; ``cost_usd`` is None unless some experiment's cost is known."""
        return sum((Usage(e.tokens_in or 0, e.tokens_out or 0, e.cost_usd) for e in self.experiments), Usage())

    @property
    def counts(self) -> Counter[str]:
        """Experiments by status value, in the order each status first occurred."""
        return Counter(e.status.value for e in self.experiments)

    # cached_property writes the instance's __dict__ directly, so it works on this frozen
    # dataclass (it has no __slots__); the snapshot never changes, so neither does the map.
    @functools.cached_property
    def _branch_metrics(self) -> dict[str, float | None]:
        """commit → metric of every point of the run branch (baseline and keeps), the first one per commit."""
        found: dict[str, float | None] = {}
        for e in self.experiments:
            if e.status in ON_BRANCH and e.commit and e.commit not in found:
                found[e.commit] = e.metric
        return found

    def parent_metric(self, exp: Experiment) -> float | None:
        """The metric of the best that ``exp`` was proposed on (None when that is not a point of the branch)."""
        return self._branch_metrics.get(exp.parent) if exp.parent else None

    def reference(self, exp: Experiment) -> tuple[float | None, str]:
        """What ``exp`` is compared with, and which that is, in words.

        A discard: the best's estimate it was judged against, as it was then (the best may have
        been measured again since). Anything else: the current estimate of the best it was
        proposed on, the one its recorded gain is over.
        """
        judged = exp.bookkeeping.judged_against
        if exp.status is Status.DISCARD and judged is not None and judged.estimate is not None:
            return float(judged.estimate), f"experiment {judged.id} as judged against ({figure_runs(judged.runs)})"
        value = self.parent_metric(exp)
        found = next((e for e in self.experiments if e.commit == exp.parent and e.status in ON_BRANCH), None)
        return value, "" if found is None else f"experiment {found.id}, the best it was proposed on"

    @functools.cached_property
    def _agents(self) -> list[tuple[int, dict[str, Any]]]:
        """The meta key "agents" as (first experiment id, effective [agent] settings), one per start or resume."""
        try:
            entries = json.loads(self.meta.get("agents") or "[]")
        except ValueError:
            return []
        if not isinstance(entries, list):
            return []
        return [
            (e["from"], e["settings"])
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("from"), int) and isinstance(e.get("settings"), dict)
        ]

    def agent_settings(self, experiment_id: int) -> dict[str, Any] | None:
        """The [agent] settings (command-line overrides applied) that ``experiment_id`` was proposed with.

        The last start or resume that began at or before the experiment; None for a run that
        predates the record (no "agents" meta key) or an experiment before its first entry.
        """
        found = None
        for first, settings in self._agents:
            if first <= experiment_id:
                found = settings
        return found


def locate(directory: Path) -> tuple[Path, str]:
    """(repo root, task folder relative to it) for a task folder, without reading its config."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such folder")
    root = git.repo_root(directory)
    return root, directory.relative_to(root).as_posix()


def load_view(directory: Path, tag: str | None) -> RunView:
    """The run ``tag`` (the most recent run when None) of the task in ``directory``."""
    root, rel = locate(directory)
    return view_of(root, rel, tag)


def view_of(root: Path, rel: str, tag: str | None) -> RunView:
    """:func:`load_view` for a task already located (no git call): a long-lived reader locates once."""
    tag = check_tag(tag) if tag else latest_tag(root, rel)
    paths = paths_for(root, tag)
    if not paths.ledger.exists():
        raise RunStateError(f"no run with tag {tag!r} in {root}; see the tags under {root / git.STATE_DIR}")
    with Ledger(paths.ledger) as ledger:
        meta = {k: ledger.get_meta(k) or "" for k in META_KEYS}
        experiments = ledger.experiments()
        measurements: dict[int, list[Measured]] = {}
        for m in ledger.measurements():
            measurements.setdefault(m.experiment, []).append(m)
        notes = tuple(ledger.notes())
    return RunView(tag, root, paths, meta, experiments, RunLock(paths.lock).held_by_other(), measurements, notes)


# -- pieces of text and data that every way of looking at a run shares ----------------------------


def plural(count: int, word: str) -> str:
    """``count`` with ``word``, in the plural unless it is one: "1 run", "3 runs"."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def short(text: str, limit: int, one_line: bool = False) -> str:
    """``text`` cut to ``limit`` characters, ending in … when cut; ``one_line`` folds its whitespace first."""
    text = " ".join(text.split()) if one_line else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def figure_runs(runs: int) -> str:
    """What an estimate is: "1 run", "mean of 5 runs"."""
    return "1 run" if runs == 1 else f"mean of {runs} runs" if runs else "no run"


def figure(value: float | None, runs: int) -> str:
    """An estimate with what it is: "3.0461 (mean of 6 runs)"."""
    return "-" if value is None else f"{value:.6g} ({figure_runs(runs)})"


def change(value: float | None, reference: float | None) -> tuple[float, float | None] | None:
    """(value - reference, that as % of |reference|; None when the reference is 0), or None without both."""
    if value is None or reference is None:
        return None
    diff = value - reference
    return diff, (100 * diff / abs(reference) if reference else None)


def delta(value: float | None, reference: float | None) -> str:
    """The change from ``reference`` to ``value``, signed as the metric moves, with % of the reference."""
    moved = change(value, reference)
    if moved is None:
        return ""
    diff, pct = moved
    return f"{diff:+.6g}" + ("" if pct is None else f", {percent(pct)}")


def percent(pct: float) -> str:
    """A relative change for people: "+5.77%", or a factor when the value exploded ("×3.2e+97")."""
    if abs(pct) < 1000:
        return f"{pct:+.2f}%"
    return f"×{1 + pct / 100:.3g}"


def tally(view: RunView) -> tuple[int, int]:
    """(experiments after the baseline, kept): the two numbers every view of a run counts, in these words.

    "Experiments" are the ids after the baseline, whatever became of them (rejected ones and
    the ones running included); "kept" the keeps, an undone keep no longer among them.
    """
    after = sum(1 for e in view.experiments if e.status is not Status.BASELINE and e.id > 0)
    return after, sum(1 for e in view.experiments if e.status is Status.KEEP)


def ended(view: RunView) -> dict[str, str]:
    """How the run's last invocation ended, as recorded: {"at", "why"}; empty when it did not say (killed, older runs)."""
    try:
        found = json.loads(view.meta.get("ended") or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def run_state(view: RunView) -> str:
    """running (a process holds it), finished (it reached a limit it was given) or stopped (anything else)."""
    if view.running:
        return "running"
    return "finished" if ended(view).get("why", "").startswith("reached ") else "stopped"


def counts_text(counts: Counter[str]) -> str:
    """The counts as "3 keep, 1 baseline, ...": the most frequent status first."""
    return ", ".join(f"{n} {s}" for s, n in counts.most_common())


def usage_text(usage: Usage) -> str:
    """The spend as "N tokens[, $C]", or "" when the agents reported nothing."""
    tokens = usage.tokens_in + usage.tokens_out
    if not tokens and usage.cost_usd is None:
        return ""
    return f"{tokens} tokens" + ("" if usage.cost_usd is None else f", ${usage.cost_usd:.4f}")


class LogTail(TypedDict):
    """The end of a log, as tail() reads it (and the dashboard's API sends it)."""

    path: str
    exists: bool
    size: int  # of the whole file, in bytes
    lines: int  # in ``text``
    truncated: bool  # the file holds more than ``text``
    text: str


def tail(path: Path, lines: int = TAIL_LINES, max_bytes: int = TAIL_BYTES) -> LogTail:
    """The last ``lines`` lines of a log, read from its end: a log of gigabytes costs ``max_bytes``."""
    if path.is_symlink() or not path.is_file():  # a link an experiment made is not followed
        return LogTail(path=str(path), exists=False, size=0, lines=0, truncated=False, text="")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0 and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        fd = -1
    if fd < 0:
        return LogTail(path=str(path), exists=False, size=0, lines=0, truncated=False, text="")
    with open(fd, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        start = max(0, size - max_bytes)
        fh.seek(start)
        data = fh.read(max_bytes)
    text = data.decode("utf-8", errors="replace").splitlines()
    if start > 0 and text:
        text = text[1:]  # the first line was cut
    kept = text[-lines:] if lines > 0 else []
    truncated = start > 0 or len(text) > len(kept)
    return LogTail(path=str(path), exists=True, size=size, lines=len(kept), truncated=truncated, text="\n".join(kept))


@dataclass(frozen=True)
class ExperimentDiff:
    """An experiment's change, and where it came from."""

    text: str
    source: str  # "commit": git diff of parent..commit; "saved": the run's logs/<id>.diff; "": none
    error: str = ""  # why the commit's diff could not be had (a commit that is gone), when it could not


@functools.lru_cache(maxsize=128)
def commit_diff(root: Path, parent: str, commit: str) -> str:
    """``git diff parent commit``, kept: two commit ids always have the same diff (a dashboard asks again and again)."""
    return git.diff_text(root, parent, commit)


def experiment_diff(view: RunView, exp: Experiment) -> ExperimentDiff:
    """The change of ``exp`` against its parent; the saved diff when it was never committed or its commit is gone."""
    error = ""
    if exp.commit and exp.parent and exp.commit != exp.parent:
        try:
            return ExperimentDiff(commit_diff(view.root, exp.parent, exp.commit), "commit")
        except GitError as err:  # the commit is gone (its refs deleted, the repository pruned)
            error = str(err)
    saved = view.paths.diff(exp.id)
    if saved.is_file():
        return ExperimentDiff(saved.read_text(encoding="utf-8", errors="replace"), "saved", error)
    return ExperimentDiff("", "", error)


# -- the commands' text ----------------------------------------------------------------------------


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def status_text(view: RunView) -> str:
    counts = view.counts
    after, kept = tally(view)
    why = ended(view).get("why", "")
    state = run_state(view) + (f": {short(why, 100)}" if why and not view.running else "")
    lines = [
        f"run {view.tag}  ({state})",
        f"task:        {view.meta['task']}   branch: {git.BRANCH_PREFIX}{view.tag}",
        f"metric:      {view.metric} ({view.goal.value})",
        f"experiments: {after} after the baseline, {kept} kept; " + counts_text(counts),
    ]
    base, best = view.baseline, view.best
    if base is not None:
        lines.append(f"baseline:    {figure(base.metric, base.runs)}  (experiment {base.id})")
    if base is not None and base.holdout is not None:
        lines.append(f"  held out:  {_num(base.holdout)}")
    if best is not None and base is not None and best is not base:
        lines.append(
            f"best:        {figure(best.metric, best.runs)}  (experiment {best.id}; "
            f"{delta(best.metric, base.metric)} vs baseline)  {best.hypothesis}"
        )
        if best.holdout is not None:
            lines.append(f"  held out:  {_num(best.holdout)}  ({delta(best.holdout, base.holdout)} vs baseline)")
    elif base is not None:
        lines.append("best:        the baseline (nothing kept yet)")
    spent = usage_text(view.usage)
    if spent:
        lines.append(f"agents used: {spent}")
    if view.experiments:
        last = view.experiments[-1]
        lines.append(f"last:        #{last.id} {last.status.value} {_num(last.metric)}  {last.hypothesis}")
    if view.unvaried:
        lines.append(f"warning:     {view.unvaried_text()}")
    if not view.running:
        folder = view.root / view.meta["task"] if view.meta.get("task") not in (None, "", ".") else view.root
        lines.append(f"resume:      overnight run {shlex.quote(str(folder))} --tag {view.tag}")
    return "\n".join(lines)


def judged(view: RunView, exp: Experiment) -> str:
    """A word for how the judge saw a measured experiment: "better" (kept), "within noise" (a discard that
    measured better than the best it was judged against, but not enough to be shown better; "below bar"
    for an exact metric, where only ``min_delta`` held it back), "worse" (a discard that did not even look
    better), "guard" (it broke a guard); "" for the rest."""
    if exp.status is Status.KEEP:
        return "better"
    if exp.status is not Status.DISCARD:
        return ""
    if exp.bookkeeping.broken_guards:
        return "guard"
    gain = exp.improvement
    if gain is None and exp.metric is not None:
        ref, _ = view.reference(exp)
        gain = None if ref is None else view.goal.improvement(exp.metric, ref)
    if gain is None:
        return ""
    if gain <= 0:
        return "worse"
    return "below bar" if view._config().get("judge", {}).get("exact") else "within noise"


def log_table(view: RunView, width: int = 60) -> str:
    """The table of `overnight log`: one row per experiment, then a line saying what the two deltas are against.

    ``vs_best``: the change from the best the experiment was judged against (for a discard, that
    best's estimate as it was then; otherwise the best it was proposed on, as measured now);
    ``vs_base``: the change from the baseline's estimate; ``judged``: :func:`judged`; the
    judge's reason (cut) after the hypothesis.
    """
    header = (
        f"{'id':>4}  {'status':<11} {view.metric:>12} {'vs_best':>10} {'vs_base':>10} {'judged':<12} "
        f"{'runs':>4} {'time_s':>8} {'mem_mb':>8}  hypothesis  [reason]"
    )
    rows = [header]
    base = view.baseline
    base_metric = base.metric if base is not None else None
    for e in view.experiments:
        vs_best = vs_base = ""
        if e.metric is not None and e.status is not Status.BASELINE:
            ref, _ = view.reference(e)
            vs_best = f"{e.metric - ref:+.4g}" if ref is not None else ""
            vs_base = f"{e.metric - base_metric:+.4g}" if base_metric is not None else ""
        hyp = short(e.hypothesis, width)
        broken = e.bookkeeping.broken_guards
        if broken:  # a discard that broke a guard says which, with the numbers (the rest of its reason is the judge's)
            hyp = f"{hyp}  [{broken[0]}{' (and more)' if len(broken) > 1 else ''}]"
        elif e.reason and e.status is not Status.BASELINE:
            hyp = f"{hyp}  [{short(e.reason, 90, one_line=True)}]"
        rows.append(
            f"{e.id:>4}  {e.status.value:<11} {_num(e.metric):>12} {vs_best:>10} {vs_base:>10} {judged(view, e):<12} "
            f"{e.runs or '':>4} {_num(e.duration_s):>8} {_num(e.peak_memory_mb):>8}  {hyp}"
        )
    if base is not None:
        rows.append(
            f"vs_best: the change from the best each experiment was judged against (a discard: that best's estimate "
            f"then; a keep: the best it replaced, as measured now); vs_base: from the baseline, "
            f"{figure(base.metric, base.runs)}. within noise (below bar, for an exact metric): measured better, not enough to keep"
        )
    return "\n".join(rows)


def log_tsv(view: RunView) -> str:
    """autoresearch's results.tsv: commit, metric, memory_gb, status, description."""
    rows = [f"commit\t{view.metric}\tmemory_gb\tstatus\tdescription"]
    for e in view.experiments:
        metric = "" if e.metric is None else f"{e.metric:.6f}"
        memory = "" if e.peak_memory_mb is None else f"{e.peak_memory_mb / 1024:.1f}"
        description = " ".join(e.hypothesis.replace("\t", " ").split())
        rows.append(f"{e.commit[:7]}\t{metric}\t{memory}\t{e.status.value}\t{description}")
    return "\n".join(rows)


def log_json(view: RunView) -> str:
    return json.dumps([e.to_json() for e in view.experiments], indent=1)


def show_text(view: RunView, experiment_id: int, tail_lines: int = 30) -> str:
    e = view.get(experiment_id)
    lines = [
        f"experiment {e.id}: {e.status.value}",
        f"hypothesis:  {e.hypothesis}",
        f"agent:       {e.agent or '-'}   worker: {e.worker}",
        f"commit:      {e.commit or '-'}  (parent {e.parent[:10] or '-'})",
    ]
    if e.reason:
        lines.append(f"reason:      {e.reason}")
    lines.append(f"{view.metric + ':':<12} {figure(e.metric, e.runs)}")
    ref, which = view.reference(e)
    if ref is not None and e.status is not Status.BASELINE and e.metric is not None:
        lines.append(f"compared:    with {_num(ref)}, {which}: {delta(e.metric, ref)}")
    if e.improvement is not None:
        interval = f" [{e.ci_low:.4g}, {e.ci_high:.4g}]" if e.ci_low is not None and e.ci_high is not None else ""
        lines.append(f"gain:        {e.improvement:.6g}{interval} over the best it replaced, in the goal's direction")
    for aside in e.bookkeeping.set_aside:
        lines.append(f"set aside:   seed {aside.seed}: {_num(aside.value)} ({aside.why})")
    if e.holdout is not None:
        lines.append(f"held out:    {_num(e.holdout)}")
    for flag in e.bookkeeping.flags:  # for a reviewer: e.g. the metric printed more than once
        lines.append(f"flag:        {flag}")
    others = {k: v for k, v in e.metrics.items() if k != view.metric}
    if others:
        lines.append("metrics:     " + ", ".join(f"{k}={v:g}" for k, v in others.items()))
    lines.append(
        f"run:         {_num(e.duration_s)} s, peak memory {_num(e.peak_memory_mb)} MB, exit code "
        f"{'-' if e.exit_code is None else e.exit_code}"
    )
    lines.append(f"time:        {e.started_at} → {e.ended_at or '(running)'}")
    if e.tokens_in is not None or e.cost_usd is not None:
        cost = "" if e.cost_usd is None else f", ${e.cost_usd:.4f}"
        lines.append(f"agent used:  {e.tokens_in or 0} tokens in, {e.tokens_out or 0} out{cost}")
    if view.measurements.get(e.id):
        lines.append("measurements: " + ", ".join(
            f"seed {m.seed}: {_num(m.value)} ({m.kind}"
            + (f", others used {100 * m.contention:.0f}% of the machine" if m.contention else "") + ")"
            for m in view.measurements[e.id]
        ))  # fmt: skip
    if view.unvaried:
        lines.append(f"noise:       {view.unvaried_text()}")
    for note in (n for n in view.notes if n.experiment == e.id):
        lines.append(f"note:        {note.text}")
    lines += _diff_lines(experiment_diff(view, e))
    for path in (view.paths.log(e.id, "agent"), view.paths.log(e.id)):
        end = tail(path, tail_lines)
        if end["exists"]:
            lines += ["", f"--- {path} (last {end['lines']} lines) " + "-" * 10, *end["text"].splitlines()]
    return "\n".join(lines)


def _diff_lines(diff: ExperimentDiff) -> list[str]:
    """The diff section of `overnight show`: what was found, and why the commit's diff was not, if it was not."""
    lines = []
    if diff.error:
        lines += ["", f"--- no diff of the commit: {diff.error}"]
    if diff.text:
        saved = " (saved)" if diff.source == "saved" else ""
        lines += ["", f"--- diff{saved} " + "-" * 40, diff.text.rstrip()]
    return lines
