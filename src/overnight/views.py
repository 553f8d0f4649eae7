"""Looking at a run: status, log (table, tsv, json) and one experiment.

Everything here reads the ledger and git only, never the task's current
overnight.toml, so a finished run can be inspected after the task has moved on.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from overnight import workspace
from overnight.errors import ConfigError, RunStateError
from overnight.ledger import Ledger
from overnight.records import MEASURED, ON_BRANCH, Experiment, Goal, Measured, Status
from overnight.run import RunLock, RunPaths, check_tag, latest_tag, paths_for


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

    @property
    def metric(self) -> str:
        return str(json.loads(self.meta.get("config", "{}")).get("metric", {}).get("name", "metric"))

    @property
    def goal(self) -> Goal:
        return Goal(json.loads(self.meta.get("config", "{}")).get("metric", {}).get("goal", "min"))

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
        raise RunStateError(f"run {self.tag} has no experiment {experiment_id}; see `overnight log --tag {self.tag}`")

    def parent_metric(self, exp: Experiment) -> float | None:
        """The metric of the best that ``exp`` was proposed on."""
        for other in self.experiments:
            if other.commit == exp.parent and other.status in ON_BRANCH:
                return other.metric
        return None


def locate(directory: Path) -> tuple[Path, str]:
    """(repo root, task folder relative to it) for a task folder, without reading its config."""
    directory = directory.resolve()
    if not directory.is_dir():
        raise ConfigError(f"{directory}: no such folder")
    root = workspace.repo_root(directory)
    return root, directory.relative_to(root).as_posix()


def load_view(directory: Path, tag: str | None) -> RunView:
    root, rel = locate(directory)
    tag = check_tag(tag) if tag else latest_tag(root, rel)
    paths = paths_for(root, tag)
    if not paths.ledger.exists():
        raise RunStateError(f"no run with tag {tag!r} in {root}; see the tags under {root / workspace.STATE_DIR}")
    with Ledger(paths.ledger) as ledger:
        keys = ("tag", "task", "run_id", "created_at", "start_commit", "config")
        meta = {k: ledger.get_meta(k) or "" for k in keys}
        experiments = ledger.experiments()
        measurements: dict[int, list[Measured]] = {}
        for m in ledger.measurements():
            measurements.setdefault(m.experiment, []).append(m)
    return RunView(tag, root, paths, meta, experiments, RunLock(paths.lock).held_by_other(), measurements)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _delta(view: RunView, value: float | None, reference: float | None) -> str:
    """The change from ``reference`` to ``value``, signed as the metric moves, with % of the reference."""
    if value is None or reference is None:
        return ""
    change = value - reference
    pct = f", {100 * change / abs(reference):+.2f}%" if reference else ""
    return f"{change:+.6g}{pct}"


def status_text(view: RunView) -> str:
    counts = Counter(e.status.value for e in view.experiments)
    after = sum(1 for e in view.experiments if e.status is not Status.BASELINE and e.id > 0)
    state = "running" if view.running else "not running"
    lines = [
        f"run {view.tag}  ({state})",
        f"task:        {view.meta['task']}   branch: {workspace.BRANCH_PREFIX}{view.tag}",
        f"metric:      {view.metric} ({view.goal.value})",
        f"experiments: {after} after the baseline; "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1])),
    ]
    base, best = view.baseline, view.best
    if base is not None:
        lines.append(f"baseline:    {_num(base.metric)}  (experiment {base.id})")
    if base is not None and base.holdout is not None:
        lines.append(f"  held out:  {_num(base.holdout)}")
    if best is not None and base is not None and best is not base:
        lines.append(
            f"best:        {_num(best.metric)}  (experiment {best.id}, {best.runs} runs; "
            f"{_delta(view, best.metric, base.metric)} vs baseline)  {best.hypothesis}"
        )
        if best.holdout is not None:
            lines.append(f"  held out:  {_num(best.holdout)}  ({_delta(view, best.holdout, base.holdout)} vs baseline)")
    elif base is not None:
        lines.append("best:        the baseline (nothing kept yet)")
    tokens = sum((e.tokens_in or 0) + (e.tokens_out or 0) for e in view.experiments)
    costs = [e.cost_usd for e in view.experiments if e.cost_usd is not None]
    if tokens or costs:
        lines.append(f"agents used: {tokens} tokens" + (f", ${sum(costs):.4f}" if costs else ""))
    if view.experiments:
        last = view.experiments[-1]
        lines.append(f"last:        #{last.id} {last.status.value} {_num(last.metric)}  {last.hypothesis}")
    if not view.running:
        lines.append(f"resume:      overnight run --tag {view.tag}")
    return "\n".join(lines)


def log_table(view: RunView, width: int = 60) -> str:
    header = (
        f"{'id':>4}  {'status':<11} {view.metric:>12} {'delta':>12} {'runs':>4} {'time_s':>8} {'mem_mb':>8}  hypothesis"
    )
    rows = [header]
    for e in view.experiments:
        delta = ""
        if e.metric is not None and e.status is not Status.BASELINE:
            ref = view.parent_metric(e)
            delta = f"{e.metric - ref:+.4g}" if ref is not None else ""
        hyp = e.hypothesis if len(e.hypothesis) <= width else e.hypothesis[: width - 1] + "…"
        if e.reason and e.status not in MEASURED:
            hyp = f"{hyp}  [{e.reason[:60]}]"
        rows.append(
            f"{e.id:>4}  {e.status.value:<11} {_num(e.metric):>12} {delta:>12} {e.runs or '':>4} "
            f"{_num(e.duration_s):>8} {_num(e.peak_memory_mb):>8}  {hyp}"
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
    ref = view.parent_metric(e)
    before = f"  (best before: {_num(ref)}, {_delta(view, e.metric, ref)})" if ref is not None and e.id else ""
    lines.append(f"{view.metric + ':':<12} {_num(e.metric)}{before}")
    if e.runs > 1:
        lines.append(f"{'':<12} the mean of {e.runs} measurements (see below)")
    if e.improvement is not None:
        interval = f" [{e.ci_low:.4g}, {e.ci_high:.4g}]" if e.ci_low is not None and e.ci_high is not None else ""
        lines.append(f"gain:        {e.improvement:.6g}{interval} over its parent, in the goal's direction")
    if e.holdout is not None:
        lines.append(f"held out:    {_num(e.holdout)}")
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
            f"seed {m.seed}: {_num(m.value)} ({m.kind})" for m in view.measurements[e.id]
        ))  # fmt: skip
    diff = ""
    if e.commit and e.parent and e.commit != e.parent:
        diff = workspace.diff_text(view.root, e.parent, e.commit)
    elif view.paths.diff(e.id).exists():
        diff = view.paths.diff(e.id).read_text(encoding="utf-8", errors="replace")
    if diff:
        lines += ["", "--- diff " + "-" * 40, diff.rstrip()]
    for path in (view.paths.log(e.id, "agent"), view.paths.log(e.id)):
        if path.exists():
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            lines += ["", f"--- {path} (last {min(tail_lines, len(text))} lines) " + "-" * 10, *text[-tail_lines:]]
    return "\n".join(lines)
