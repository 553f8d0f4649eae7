"""What a verification found: the best's gain over the baseline at scale, and each keep's part in it.

The read side of `overnight verify` (the write side is overnight.verify.arms): it reads the
ledger's verification rows and turns them into estimates, for the command's own output,
the report, the dashboard and ``overnight finalize --only-significant``.

Every arm of a verification was measured with the same seeds (the n-th run of each arm
had ``OVERNIGHT_SEED = n``), so each estimate is a **paired** difference: per seed, the
gain of one arm over the other in the goal's direction (positive = better), then its mean
over the seeds both arms measured, with a two-sided Student t interval at the run's
``[judge] confidence`` on those differences. Seeded noise that both arms share cancels in
the pairs, which is what makes a handful of runs at scale worth something.

A keep's **contribution** is the gain of the final best over the best without that keep
(its commit reverted): positive means the keep helps at scale. Keeps that edit different
lines (adjacent ones included) are each taken out alone (overnight.git.revert). A keep whose
lines a later keep rewrote cannot be: it is taken out **together** with the later keeps
that changed its lines (arm ``without:<id>+<id>...``, the keep's id first), and that one
contribution belongs to the group. A keep that cannot be taken out even so is
**entangled**, and has no contribution. Verifications recorded before groups existed
(only ``without:<id>`` arms, some entangled) read as they did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overnight.judge.noise import REPEATED, mean
from overnight.judge.tdist import t_quantile
from overnight.records import Goal, Verification, VerifyMeasured
from overnight.run.ledger import Ledger
from overnight.views import RunView

BASELINE = "baseline"
BEST = "best"
WITHOUT = "without:"  # the arm of the best without one keep: "without:<experiment id>", a group "without:3+5"


def without(*experiment_ids: int) -> str:
    """The arm of the best without these keeps: "without:3", or "without:3+5" for keeps taken out together."""
    return WITHOUT + "+".join(str(i) for i in experiment_ids)


def together_text(ids: list[int] | tuple[int, ...]) -> str:
    """ "#3 and #5 together: they change the same lines" (the keeps of one group)."""
    names = [f"#{i}" for i in ids]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{listed} together: they change the same lines"


@dataclass(frozen=True)
class Estimate:
    """A paired gain (positive = better): the mean over the seeds both arms measured, with its interval."""

    value: float | None  # None when no seed was measured by both arms
    low: float | None  # None with fewer than two pairs
    high: float | None
    pairs: int
    repeated: bool = False  # no interval: each arm's runs repeated one value, the metric not declared exact

    @property
    def significant(self) -> bool:
        """Positive beyond doubt: the whole interval lies above zero."""
        return self.low is not None and self.low > 0

    def text(self) -> str:
        if self.value is None:
            return "no pair measured"
        runs = "1 run" if self.pairs == 1 else f"mean of {self.pairs} runs"
        if self.repeated:
            return f"{self.value:+.6g} ({runs}; no interval: {REPEATED})"
        if self.low is None or self.high is None:
            return f"{self.value:+.6g} ({runs}; no interval)"
        return f"{self.value:+.6g} [{self.low:+.4g}, {self.high:+.4g}] ({runs})"

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "pairs": self.pairs, "repeated": self.repeated}


def paired(
    candidate: dict[int, float], reference: dict[int, float], goal: Goal, confidence: float, exact: bool = False
) -> Estimate:
    """The gain of ``candidate`` over ``reference`` (values by seed), from the seeds both have.

    Arms whose every run gave the same value give no interval unless the metric is declared ``exact``:
    that is what a script whose seed does not vary gives, not a certainty."""
    seeds = sorted(set(candidate) & set(reference))
    diffs = [goal.improvement(candidate[s], reference[s]) for s in seeds]
    if not diffs:
        return Estimate(None, None, None, 0)
    center = mean(diffs)
    if len(diffs) < 2:
        return Estimate(center, None, None, 1)
    if not exact and all(max(arm[s] for s in seeds) == min(arm[s] for s in seeds) for arm in (candidate, reference)):
        return Estimate(center, None, None, len(diffs), repeated=True)
    sd = math.sqrt(sum((d - center) ** 2 for d in diffs) / (len(diffs) - 1))
    half = t_quantile(1 - (1 - confidence) / 2, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return Estimate(center, center - half, center + half, len(diffs))


@dataclass(frozen=True)
class Contribution:
    """One keep's part in the best at scale: the best's gain over the best without it.

    For keeps that change the same lines, one contribution stands for the group: ``id`` is
    the earliest, ``together`` all of them (with their ``hypotheses``), taken out at once.
    """

    id: int
    hypothesis: str
    commit: str
    estimate: Estimate | None  # None when entangled
    entangled: str = ""  # why it could not be taken out, or ""
    together: tuple[int, ...] = ()  # a group's keeps (``id`` first); () for a keep taken out alone
    hypotheses: tuple[str, ...] = ()  # theirs, in the same order

    @property
    def ids(self) -> tuple[int, ...]:
        """The keeps this contribution is of: the group's, or the one keep's."""
        return self.together if len(self.together) > 1 else (self.id,)

    @property
    def grouped(self) -> bool:
        return len(self.ids) > 1

    def name(self) -> str:
        """ "#3", or "#3+5" for a group."""
        return "#" + "+".join(str(i) for i in self.ids)

    def describe(self) -> str:
        """The hypothesis, or for a group: "#3 and #5 together: they change the same lines (h3; h5)"."""
        if not self.grouped:
            return self.hypothesis
        return f"{together_text(self.ids)} ({'; '.join(self.hypotheses or (self.hypothesis,))})"

    def to_json(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "id": self.id,
            "together": list(self.ids),
            "hypotheses": list(self.hypotheses) if self.grouped else [self.hypothesis],
            "hypothesis": self.hypothesis,
            "commit": self.commit,
            "contribution": None if e is None else e.value,
            "ci": None if e is None or e.low is None else [e.low, e.high],
            "runs": 0 if e is None else e.pairs,
            "significant": e is not None and e.significant,
            "entangled": self.entangled or None,
        }


@dataclass(frozen=True)
class Findings:
    """One verification, summed up."""

    verification: Verification
    metric: str
    goal: Goal
    baseline: float | None  # mean of the baseline's runs at scale
    best: float | None
    runs: dict[str, int]  # measured runs per arm
    failed: dict[str, list[str]]  # reasons of the failed runs, per arm
    gain: Estimate
    ablation: list[Contribution]
    confidence: float

    @property
    def complete(self) -> bool:
        return bool(self.verification.ended_at)

    @property
    def settings(self) -> dict[str, Any]:
        return self.verification.settings

    def significant(self) -> list[int]:
        """The keeps whose contribution at scale is positive beyond doubt, in order: every keep of a
        significant group counts (they were taken out together; none of them was measured alone)."""
        found = {i for c in self.ablation if c.estimate is not None and c.estimate.significant for i in c.ids}
        return sorted(found)

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "verification": self.verification.id,
            "metric": self.metric,
            "goal": self.goal.value,
            "complete": self.complete,
            "budget_s": s.get("budget_s"),
            "set": s.get("set", []),
            "command": s.get("command"),
            "runs": s.get("runs"),
            "confidence": self.confidence,
            "baseline": self.baseline,
            "best": self.best,
            "gain": self.gain.value,
            "ci": None if self.gain.low is None else [self.gain.low, self.gain.high],
            "pairs": self.gain.pairs,
            "failed": self.failed,
            "ablation": [c.to_json() for c in self.ablation],
        }


def summarize(
    verification: Verification,
    measured: list[VerifyMeasured],
    metric: str,
    goal: Goal,
    confidence: float,
    exact: bool = False,
) -> Findings:
    """The findings of ``verification`` from its measurements."""
    values: dict[str, dict[int, float]] = {}
    failed: dict[str, list[str]] = {}
    for m in measured:
        if m.value is None:
            failed.setdefault(m.arm, []).append(f"seed {m.seed}: {m.status}: {m.reason}")
        else:
            values.setdefault(m.arm, {})[m.seed] = m.value
    base, best = values.get(BASELINE, {}), values.get(BEST, {})
    ablation = []
    for arm in verification.settings.get("arms", []):
        name = str(arm.get("arm", ""))
        if not name.startswith(WITHOUT):
            continue
        reason = str(arm.get("entangled") or "")
        estimate = None if reason else paired(best, values.get(name, {}), goal, confidence, exact)
        together = tuple(int(i) for i in arm.get("together") or ())  # absent before groups, and for one keep
        ablation.append(
            Contribution(
                int(arm["experiment"]),
                str(arm.get("hypothesis", "")),
                str(arm.get("commit", "")),
                estimate,
                reason,
                together,
                tuple(str(h) for h in arm.get("hypotheses") or ()),
            )
        )
    return Findings(
        verification,
        metric,
        goal,
        mean(list(base.values())) if base else None,
        mean(list(best.values())) if best else None,
        {arm: len(v) for arm, v in values.items()},
        failed,
        paired(best, base, goal, confidence, exact),
        ablation,
        confidence,
    )


def latest(view: RunView) -> Findings | None:
    """The run's most recent verification, or None when it was never verified.

    Its intervals are at the run's recorded ``[judge] confidence``, like every estimate of the run.
    """
    if not view.paths.ledger.exists():
        return None
    config = json.loads(view.meta.get("config") or "{}")
    judged = config.get("judge", {}) if isinstance(config, dict) else {}
    confidence, exact = float(judged.get("confidence", 0.95)), bool(judged.get("exact", False))
    with Ledger(view.paths.ledger) as ledger:
        done = ledger.verifications()
        if not done:
            return None
        return summarize(done[-1], ledger.verify_measurements(done[-1].id), view.metric, view.goal, confidence, exact)


def scale_text(settings: dict[str, Any]) -> str:
    """What the scale was, in words: "budget 120 s, HIDDEN_DIM=256 (constant), 3 runs each"."""
    parts = []
    if settings.get("budget_s") is not None:
        unread = settings.get("budget_read") is False  # absent in verifications recorded before it was noted
        parts.append(
            f"budget {settings['budget_s']:g} s"
            + (" (not read by the script: each run went to its end)" if unread else "")
        )
    for item in settings.get("set", []):
        parts.append(f"{item['name']}={item['value']} ({item['kind']})")
    if settings.get("verify_run"):
        parts.append(f"command {settings['command']!r}")
    parts.append(f"{settings.get('runs', '?')} runs each, paired seeds")
    return ", ".join(parts)


def text(f: Findings) -> str:
    """The findings for a terminal."""
    level = f"{f.confidence:.0%}"
    lines = [f"verification {f.verification.id}: {scale_text(f.settings)}"]
    if not f.complete:
        lines.append("(stopped before the end: the estimates use the runs measured)")

    def mean(arm: str, value: float | None) -> str:
        n = f.runs.get(arm, 0)
        return "-" if value is None else f"{value:.6g} ({'1 run' if n == 1 else f'mean of {n} runs'})"

    lines.append(f"{f.metric} ({f.goal.value}): baseline {mean(BASELINE, f.baseline)} -> best {mean(BEST, f.best)}")
    lines.append(f"gain at scale: {f.gain.text()}  ({level} interval, paired by seed; positive = better)")
    if f.ablation:
        lines.append(f"contribution of each keep at scale (best vs best without it; {level} interval):")
        for c in f.ablation:
            what = f"entangled: {c.entangled}" if c.estimate is None else c.estimate.text()
            mark = "  significant" if c.estimate is not None and c.estimate.significant else ""
            lines.append(f"  {c.name():<5} {what}{mark}  {c.hypothesis[:60]}")
            if c.grouped:
                lines.append(f"        {together_text(c.ids)}")
    for arm, reasons in f.failed.items():
        lines.append(f"failed runs of {arm}: {len(reasons)} ({reasons[0][:160]})")
    return "\n".join(lines)


def _cell(estimate: Estimate | None) -> str:
    if estimate is None or estimate.value is None:
        return "–"
    if estimate.low is None or estimate.high is None:
        return f"{estimate.value:+.4g}"
    return f"{estimate.value:+.4g} [{estimate.low:+.4g}, {estimate.high:+.4g}]"


def markdown(f: Findings, image: str | None) -> list[str]:
    """The report's section on the latest verification: the gain at scale, a table and a chart of the keeps."""
    level = f"{f.confidence:.0%}"
    lines = ["## At scale", ""]
    lines.append(
        f"Verification {f.verification.id} ({scale_text(f.settings)})"
        + ("" if f.complete else ", stopped before the end")
        + ":"
    )
    lines.append(
        f"baseline {_number(f.baseline)} → best {_number(f.best)}; gain {_cell(f.gain)} "
        f"({f.gain.pairs} paired runs, {level} interval; positive = better)."
    )
    if f.ablation:
        lines += ["", "Each keep's contribution at scale: the best against the best with that keep reverted.", ""]
        if image:
            lines += [f"![contributions]({image})", ""]
        lines += [
            f"| experiment | hypothesis | contribution ({level} interval) | runs | significant |",
            "|---|---|---|---|---|",
        ]
        for c in f.ablation:
            hypothesis = c.describe().replace("|", "\\|")
            ids = ", ".join(str(i) for i in c.ids)
            if c.estimate is None:
                lines.append(f"| {ids} | {hypothesis} | entangled: {c.entangled} | – | – |")
            else:
                yes = "yes" if c.estimate.significant else "no"
                lines.append(f"| {ids} | {hypothesis} | {_cell(c.estimate)} | {c.estimate.pairs} | {yes} |")
        lines += [
            "",
            "`overnight finalize --only-significant` builds the final branch from the significant keeps "
            "(every keep of a significant group, and the entangled ones, which cannot be judged alone).",
        ]
    return [*lines, ""]


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.6g}"


def plot(f: Findings, path: Path) -> Path:
    """A horizontal bar per keep: its contribution at scale, with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(reversed(f.ablation))  # the first keep on top
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.45 * max(1, len(rows))), dpi=120)
    for y, c in enumerate(rows):
        e = c.estimate
        if e is None or e.value is None:
            ax.text(0, y, "  entangled", va="center", fontsize=8, color="#7f7f7f")
            continue
        color = "#2e9d4e" if e.significant else ("#b0b0b0" if e.value >= 0 else "#c0392b")
        err = None if e.low is None or e.high is None else [[e.value - e.low], [e.high - e.value]]
        ax.barh(y, e.value, color=color, xerr=err, capsize=3, ecolor="#333333")
        ax.plot([e.value], [y], "o", color="#333333", markersize=3)  # a contribution of zero shows too
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{c.name()} {c.describe()[:60]}" for c in rows], fontsize=8)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_xlabel(f"contribution to {f.metric} at scale (positive = better; {f.confidence:.0%} interval)")
    legend = "green: helps (interval above 0), grey: not shown to help, red: a negative estimate"
    ax.set_title(f"which keeps matter at scale\n{scale_text(f.settings)}\n{legend}", fontsize=8)
    ax.grid(True, axis="x", alpha=0.25)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
