"""`overnight report`: the progress plot and a Markdown report of a run.

The plot is autoresearch's picture of a night: every measured experiment a dot
(discarded grey, kept green), the running best as a step line, kept points labelled
with their short hypothesis, and experiments that produced no metric marked along
the bottom. The report sums the run up (baseline → best with confidence intervals
where known, experiments by status, time and cost) and lists the kept changes in order.
"""

from __future__ import annotations

import calendar
import json
import math
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from overnight import untrusted
from overnight.records import DISTURBED, MEASURED, ON_BRANCH, Experiment, Status, chain
from overnight.verify import findings as verification
from overnight.views import RunView, tally
from overnight.views.text import change, counts_text, percent, plural, short, usage_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LABEL_CHARS = 42  # a kept point's label on the plot
PARAMETERS_IMAGE = "parameters.png"  # a tune run: each constant against the metric
VERIFIED_IMAGE = "verification.png"  # the chart of each keep's contribution at scale (`overnight verify --ablate`)


def plot(view: RunView, path: Path) -> Path:
    """Draw ``progress.png`` for ``view`` at ``path``."""
    import matplotlib.pyplot as plt

    fig = figure(view)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def figure(view: RunView) -> Figure:
    """The progress plot of ``view``, drawn (close it with ``matplotlib.pyplot.close``)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    points = [(e, float(e.metric)) for e in view.experiments if e.status in MEASURED and e.metric is not None]
    failed = [e for e in view.experiments if e.status not in MEASURED and e.status is not Status.RUNNING]
    fig, ax = plt.subplots(figsize=(12, 6), dpi=120)
    from overnight.views.commands import judged  # "within noise": measured better than the best, not enough to keep

    close = {e.id: judged(view, e) for e, _ in points if judged(view, e) in ("within noise", "below bar")}
    discards = [(e.id, v) for e, v in points if e.status is Status.DISCARD and e.id not in close]
    keeps = [(e, v) for e, v in points if e.status in ON_BRANCH]
    bars = [(e.id, v, half) for e, v in points for half in [interval(view, e)] if half is not None]
    if bars:  # each estimate's interval: 95% of the mean of its measurements, where it was measured more than once
        ax.errorbar([i for i, _, _ in bars], [v for _, v, _ in bars], yerr=[h for _, _, h in bars], fmt="none",
                    ecolor="#7f8c8d", elinewidth=0.9, capsize=2.5, alpha=0.8, zorder=1,
                    label="95% interval of the mean")  # fmt: skip
    if discards or not close:
        ax.scatter([i for i, _ in discards], [v for _, v in discards], s=18, color="#b0b0b0", label="discarded",
                   zorder=2)  # fmt: skip
    if close:  # below the best line, yet discarded: say why on the plot, as `overnight log` does
        word = "below the bar (min_delta)" if "below bar" in close.values() else "within the noise"
        ax.scatter([e.id for e, _ in points if e.id in close], [v for e, v in points if e.id in close], s=22,
                   facecolors="none", edgecolors="#7f8c8d", linewidths=1.1, zorder=2,
                   label=f"discarded: measured better, {word}")  # fmt: skip
    ax.scatter([e.id for e, _ in keeps], [v for _, v in keeps], s=46, color="#2e9d4e", edgecolor="#145a2a",
               label="kept", zorder=4)  # fmt: skip
    on_branch = [e for e in chain(view.experiments) if e.metric is not None]  # in the branch's order
    if on_branch:
        # Each keep was better than the one before when it was kept, and a best that later was not
        # is undone (overnight.judge.rule.undone): along the branch the line only improves.
        last = max(e.id for e in view.experiments)
        xs = [e.id for e in on_branch] + [last]
        ys = [float(e.metric) for e in on_branch if e.metric is not None] + [float(on_branch[-1].metric or 0)]
        ax.step(xs, ys, where="post", color="#2e9d4e", linewidth=1.6, label="best so far", zorder=3)
        for e, v in keeps:
            label = "baseline" if e.status is Status.BASELINE else short(e.hypothesis, LABEL_CHARS)
            ax.annotate(label, (e.id, v), xytext=(4, 6), textcoords="offset points", fontsize=7, rotation=20,
                        color="#145a2a")  # fmt: skip
    if failed:
        # No metric to plot: mark them along the bottom edge, where they cannot be mistaken for a value.
        ax.scatter(
            [e.id for e in failed], [0.02] * len(failed), transform=ax.get_xaxis_transform(), marker="x", s=22,
            color="#c0392b", label=f"not measured ({len(failed)})", zorder=5,
        )  # fmt: skip
    after, kept = tally(view)
    ax.set_title(f"run {view.tag}: {view.metric} ({'lower' if view.goal.value == 'min' else 'higher'} is better), "
                 f"{plural(after, 'experiment')} after the baseline, {kept} kept")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # experiments are numbered: no tick at 2.5
    ax.set_xlabel("experiment")
    ax.set_ylabel(view.metric)
    ax.grid(True, alpha=0.25)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def interval(view: RunView, exp: Experiment, confidence: float = 0.95) -> float | None:
    """Half the width of the interval of ``exp``'s estimate (the mean of its measurements of its latest round),
    at ``confidence``; None where it was measured once (or every measurement gave the same value)."""
    from overnight.judge.tdist import t_quantile

    values = [m.value for m in view.measurements.get(exp.id, []) if m.value is not None and m.round == exp.round
              and m.kind != DISTURBED]  # fmt: skip
    if len(values) < 2:
        return None
    sd = statistics.stdev(values)
    return t_quantile(0.5 + confidence / 2, len(values) - 1) * sd / math.sqrt(len(values)) if sd > 0 else None


def tuned(view: RunView) -> dict[str, list[tuple[Experiment, float]]]:
    """A tune run's constants, each with (experiment, the constant's value) of every measured experiment."""
    found: dict[str, list[tuple[Experiment, float]]] = {}
    for e in view.experiments:
        params = e.info.get("params")
        if e.status not in MEASURED or e.metric is None or not isinstance(params, dict):
            continue
        for name, value in params.items():
            if isinstance(value, int | float):
                found.setdefault(str(name), []).append((e, float(value)))
    return found


def plot_parameters(view: RunView, path: Path) -> Path | None:
    """``parameters.png``: for a tune run, each constant against the metric (kept green); None for other runs."""
    import matplotlib.pyplot as plt

    fig = parameters_figure(view)
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def parameters_figure(view: RunView) -> Figure | None:
    """The figure of :func:`plot_parameters`, drawn (close it with ``matplotlib.pyplot.close``); None for a run
    that is not a tune run."""
    found = tuned(view)
    if not found:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted(found)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=110, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        points = found[name]
        for status, color, size in ((Status.DISCARD, "#b0b0b0", 16), (Status.KEEP, "#2e9d4e", 36)):
            chosen = [(v, e.metric) for e, v in points if e.status is status]
            ax.scatter([v for v, _ in chosen], [m for _, m in chosen], s=size, color=color, label=status.value)
        values = [v for _, v in points]
        if min(values) > 0 and max(values) / min(values) > 20:
            ax.set_xscale("log")
        else:  # a few ticks, so that labels like 0.00125 do not run into each other; whole ones for an int
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=all(v.is_integer() for v in values)))
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(view.metric, fontsize=8)
        ax.grid(True, alpha=0.25)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"run {view.tag}: each constant the tune agent set, against {view.metric}", fontsize=10)
    fig.tight_layout()
    return fig


def _span_s(view: RunView) -> float | None:
    """Seconds from the first start to the last end; the stamps are UTC (timegm, not mktime's local time)."""
    stamps = [e.started_at for e in view.experiments if e.started_at] + [
        e.ended_at for e in view.experiments if e.ended_at
    ]
    if not stamps:
        return None
    parse = [calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ")) for s in stamps]
    return max(parse) - min(parse)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def markdown(view: RunView, image: str = "progress.png") -> str:
    """The report's text."""
    base, best = view.baseline, view.best
    lines = [f"# overnight run `{view.tag}`", "", f"![progress]({image})", ""]
    if tuned(view):
        lines += [f"![each constant against {view.metric}]({PARAMETERS_IMAGE})", ""]
    lines += ["## Summary", ""]
    lines.append(f"- task: `{view.meta.get('task', '.')}`, metric `{view.metric}` ({view.goal.value})")
    moved = change(best.metric, base.metric) if base is not None and best is not None else None
    if base is not None and best is not None and moved is not None:
        diff, pct = moved
        lines.append(
            f"- baseline {_number(base.metric)} ({plural(base.runs, 'run')}) → best {_number(best.metric)} "
            f"({plural(best.runs, 'run')}, experiment {best.id}): {diff:+.6g}"
            + ("" if pct is None else f" ({percent(pct)})")
        )
    if base is not None and best is not None and base.holdout is not None:
        lines.append(f"- held-out metric: baseline {_number(base.holdout)} → best {_number(best.holdout)}")
    after, kept = tally(view)
    lines.append(f"- experiments: {after} after the baseline, {kept} kept; " + counts_text(view.counts))
    measured_s = sum(m.duration_s or 0 for ms in view.measurements.values() for m in ms)
    span = _span_s(view)
    per, unit = (3600, "h") if max(measured_s, span or 0) >= 2 * 3600 else (60, "min")  # one unit for both
    lines.append(
        f"- time: {sum(len(ms) for ms in view.measurements.values())} measurements, "
        f"{measured_s / per:.1f} {unit} of experiment runs"
        + (f", {span / per:.1f} {unit} from first start to last end" if span else "")
    )
    spent = usage_text(view.usage)
    if spent:
        lines.append(f"- agents used {spent}")
    judged = sum(1 for e in view.experiments if e.status in (Status.KEEP, Status.DISCARD))
    alpha = 1 - float(json.loads(view.meta.get("config") or "{}").get("judge", {}).get("confidence", 0.95))
    lines.append(
        f"- false keeps: a change with no real gain is kept with a chance of at most {alpha:.0%} (1 − confidence, "
        f"over all its looks), so at most {judged * alpha:.1f} of the {judged} changes judged here are expected to "
        "be false keeps; that is a bound: in simulation (benchmarks/judge.py) about 1% of no-op changes were kept"
    )
    lines += ["", "## Kept changes, in order", ""]
    keeps = [e for e in chain(view.experiments) if e.status is Status.KEEP]  # in the order of the branch
    if not keeps:
        lines.append("Nothing was kept: the baseline is still the best.")
    else:
        lines += [
            f"| experiment | hypothesis | {view.metric} | gain (confidence interval) | runs | held out | commit |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [_keep_row(view, e) for e in keeps]
    found = _verified(view)
    if found is not None:
        lines += ["", *verification.markdown(found, VERIFIED_IMAGE if found.ablation else None)]
    lines += _notebook(view)
    lines += [
        "",
        f"Every experiment: `overnight log --tag {view.tag}`; one of them: `overnight show ID --tag {view.tag}`.",
        "",
    ]
    return "\n".join(lines)


def _verified(view: RunView) -> verification.Findings | None:
    """The run's latest `overnight verify`, if any."""
    return verification.latest(view)


def _notebook(view: RunView) -> list[str]:
    """The lab notebook section: every note the agents left, with the experiment that wrote it."""
    if not view.notes:
        return []
    statuses = {e.id: e.status.value for e in view.experiments}
    lines = ["", "## Lab notebook", "", "What the agents wrote for each other during the run, oldest first.", ""]
    for note in view.notes:
        who = f"worker {note.worker}" + (f", {_text(note.agent)}" if note.agent else "")
        lines.append(f"- #{note.experiment} ({statuses.get(note.experiment, '?')}; {who}): {_text(note.text)}")
    return lines


def _text(text: str) -> str:
    """What an agent or an experiment wrote, as markdown text: one line, its HTML escaped (rendered as text)."""
    return untrusted.html(untrusted.line(text))


def _keep_row(view: RunView, e: Experiment) -> str:
    gain = "–" if e.improvement is None else f"{e.improvement:.4g}"
    if e.ci_low is not None and e.ci_high is not None:
        gain += f" [{e.ci_low:.4g}, {e.ci_high:.4g}]"
    hypothesis = _text(e.hypothesis).replace("|", "\\|")
    return f"| {e.id} | {hypothesis} | {_number(e.metric)} | {gain} | {e.runs} | {_number(e.holdout)} | `{e.commit[:10]}` |"


def write(view: RunView, folder: Path | None = None) -> tuple[Path, Path]:
    """Write ``progress.png`` and ``report.md`` (default: ``.overnight/<tag>/report/``)."""
    folder = folder or view.paths.dir / "report"
    image = plot(view, folder / "progress.png")
    plot_parameters(view, folder / PARAMETERS_IMAGE)
    found = _verified(view)
    if found is not None and found.ablation:
        verification.plot(found, folder / VERIFIED_IMAGE)
    text = folder / "report.md"
    text.write_text(markdown(view, image.name), encoding="utf-8")
    return image, text
