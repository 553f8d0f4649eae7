"""The keep rule in one line, with the noise it is applied with, and the guards' lines: what every brief
says of how a change is judged (overnight.agents.brief gathers them with the rest of the facts)."""

from __future__ import annotations

from overnight.config import Config
from overnight.judge import guards
from overnight.judge import rule as judge
from overnight.judge.noise import Noise
from overnight.records import Experiment


def rule(config: Config, noise: Noise, runs: int, best: float | None) -> str:
    """The keep rule in one line, with the noise it is applied with."""
    section = config.metric
    rules = config.judge
    direction = "lower" if section.goal_enum.value == "min" else "higher"
    if rules.rel_delta:
        margin = f"{100 * rules.rel_delta:g}% of the best" + (
            f" ({judge.threshold(rules, best):.4g})" if best is not None else ""
        )
    else:
        margin = f"{rules.min_delta:g}" if rules.min_delta else ""
    once = "never on a single run; " if rules.confirm else ""
    by = f" by more than {margin}" if margin else ""
    text = (
        f"Keep rule: a change is kept only when its {section.name} ({direction} is better) beats the best's{by} "
        f"with {100 * rules.confidence:g}% confidence ({once}a candidate is screened on 1 run and may take up "
        f"to {rules.max_repeats} runs). "
    )
    if rules.seed:
        text += (
            f"The harness sets {rules.seed} to each run's seed (run n of every commit gets seed n): a change of its "
            "value changes nothing. "
        )
    sd = noise.sd
    if sd is None:
        return text + "The run-to-run noise is not known yet (no experiment has been measured twice)."
    if sd == 0 and rules.exact:
        return (
            text + f"The metric is exact (declared so; {runs} runs measured more than once): every difference is real."
        )
    if sd == 0:
        return text + (
            f"Every run of a commit has given the same value ({runs} runs measured more than once): the seed does "
            "not reach the script, so the run-to-run noise is unknown. A difference may be a re-roll of the random "
            "stream, not a real gain: changing the seed, the order of random draws or the number of draws is no "
            "improvement."
        )
    scale = " (it scales with the metric's level)" if noise.relative else ""
    return text + (
        f"Run-to-run noise: standard deviation {sd:.3g}{scale}, pooled from {runs} runs. A difference of one run "
        f"smaller than about {2 * sd:.3g} is noise, not evidence: 'discard' means 'not proven better', not 'worse'."
    )


def guard_lines(config: Config, best: Experiment | None) -> tuple[str, ...]:
    """The guards on secondary metrics, one line each with today's limit (see ``[metric] guards``)."""
    return tuple(guards.describe(config.metric.guards, best.metrics if best is not None else None))
