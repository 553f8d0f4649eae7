"""What the read commands print: `overnight status`, `overnight log` (table, tsv, json) and `overnight show`.

The contract: each function takes a loaded :class:`overnight.views.RunView` and returns
the command's whole text (the command line prints it through overnight.untrusted). Like
every view, it reads the ledger and git only, never the task's current overnight.toml.
"""

from __future__ import annotations

import json
import shlex

from overnight import git
from overnight.records import Experiment, Status
from overnight.views import ExperimentDiff, RunView, ended, experiment_diff, run_state, tail, tally
from overnight.views.text import counts_text, delta, figure, short, usage_text


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
