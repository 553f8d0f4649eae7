"""The `tune` agent: an offline optimizer over the constants of the editable Python files.

It needs no model and no network. It finds module-level ``UPPER_CASE = <int or float>``
assignments with ``ast``, asks Optuna's TPE sampler for new values (ask/tell), writes
them over the literals in place (the rest of the file, comments included, is kept),
and tells Optuna every outcome; experiments that fail are told as failed. Like a
researcher it changes one idea at a time: each experiment varies at most ``vary``
constants (chosen at random) and keeps the others at the current best's values, which
suits a loop that keeps only what beats the best; TPE models each constant's good
values from every trial. The values it tried live in the ledger (``info.params``):
before each proposal the study takes in every tune experiment of the history it has
not been told of, so the agents of several workers learn from each other's trials and
a resumed run rebuilds the study.

Search space, unless ``[agent.tune] ranges`` says otherwise: a positive float spans
[v/10, 10v] on a log scale, a positive integer [v/4, 4v] (log scale, integers stay
integers), zero and negative values a linear range around them.
"""

from __future__ import annotations

import ast
import logging
import math
import random
import re
from dataclasses import dataclass
from typing import Any

from overnight.agents._base import Agent, Context
from overnight.config import TuneSection
from overnight.errors import AgentError, AgentUnavailable
from overnight.records import MEASURED, Experiment, Goal, Proposal

log = logging.getLogger(__name__)

_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Constant:
    """A tunable literal: where it is and what it holds."""

    file: str  # task-relative
    name: str
    value: int | float
    line: int  # 1-based, of the literal (start)
    col: int
    end_line: int
    end_col: int

    @property
    def is_int(self) -> bool:
        return isinstance(self.value, int)


def _literal(node: ast.expr) -> int | float | None:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value: int | float = node.value  # type: ignore[assignment]  # narrowed by the type() check
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal(node.operand)
        if inner is not None:
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def find_constants(source: str, file: str) -> list[Constant]:
    """Module-level ``UPPER_CASE = number`` (or annotated) assignments of ``source``."""
    found = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        number = _literal(value)
        if not isinstance(target, ast.Name) or not _UPPER.match(target.id) or number is None:
            continue
        if isinstance(number, float) and not math.isfinite(number):
            continue
        assert value.end_lineno is not None and value.end_col_offset is not None
        found.append(
            Constant(file, target.id, number, value.lineno, value.col_offset, value.end_lineno, value.end_col_offset)
        )
    return found


def _offset(lines: list[str], line: int, col: int) -> int:
    """Character offset of (1-based line, byte column) in the text split into ``lines``."""
    text = lines[line - 1]
    return sum(len(x) for x in lines[: line - 1]) + len(text.encode()[:col].decode(errors="ignore"))


def rewrite(source: str, changes: dict[Constant, int | float]) -> str:
    """``source`` with each constant's literal replaced by its new value; all else kept."""
    lines = source.splitlines(keepends=True)
    spans = sorted(
        ((_offset(lines, c.line, c.col), _offset(lines, c.end_line, c.end_col), v) for c, v in changes.items()),
        reverse=True,
    )
    for start, end, value in spans:
        source = source[:start] + format_value(value) + source[end:]
    return source


def format_value(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(f"{value:.4g}"))


def _distribution(c: Constant, settings: TuneSection, optuna: Any) -> Any:
    dist = optuna.distributions
    if c.name in settings.ranges:
        low, high = settings.ranges[c.name]
        if c.is_int:
            return dist.IntDistribution(int(low), int(high), log=low >= 1 and high / low >= 10)
        return dist.FloatDistribution(low, high, log=low > 0 and high / low >= 10)
    v = c.value
    if c.is_int:
        v = int(v)
        if v >= 2:
            return dist.IntDistribution(max(1, v // 4), v * 4, log=True)
        if v >= 0:
            return dist.IntDistribution(0, 10)
        return dist.IntDistribution(v * 4, min(-1, v // 4 + 1))
    if v > 0:
        return dist.FloatDistribution(v / 10, v * 10, log=True)
    if v < 0:
        return dist.FloatDistribution(v * 10, v / 10)
    return dist.FloatDistribution(-1.0, 1.0)


class TuneAgent(Agent):
    name = "tune"

    def uncounted(self) -> str:
        return ""  # it calls no model: it spends nothing

    def __init__(self, settings: TuneSection) -> None:
        try:
            import optuna
        except ImportError:
            raise AgentUnavailable("the tune agent needs optuna: pip install optuna") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self.settings = settings
        self._study: Any = None
        self._distributions: dict[str, Any] = {}
        self._pending: dict[int, Any] = {}  # experiment id → the trial asked for it
        self._told: set[int] = set()  # experiments whose outcome the study has (own or another worker's)

    def _constants(self, context: Context) -> list[Constant]:
        found: list[Constant] = []
        for file in context.editable:
            if not file.endswith(".py"):
                continue
            try:
                found += find_constants((context.task_dir / file).read_text(encoding="utf-8"), file)
            except SyntaxError as err:
                raise AgentError(f"tune: cannot parse {file}: {err}") from None
        names = [c.name for c in found]
        chosen = [
            c
            for c in found
            if names.count(c.name) == 1
            and (not self.settings.include or c.name in self.settings.include)
            and c.name not in self.settings.exclude
        ]
        if not chosen:
            raise AgentUnavailable(
                "tune: no constants to tune: the editable .py files have no module-level "
                "UPPER_CASE = <number> assignments (or [agent.tune] include/exclude left none)"
            )
        return chosen

    def _start(self, constants: list[Constant], context: Context) -> None:
        optuna = self._optuna
        self._distributions = {c.name: _distribution(c, self.settings, optuna) for c in constants}
        if self.settings.sampler == "random":
            sampler = optuna.samplers.RandomSampler(seed=self.settings.seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=self.settings.seed, n_startup_trials=self.settings.startup)
        direction = "minimize" if context.goal is Goal.MIN else "maximize"
        self._study = optuna.create_study(direction=direction, sampler=sampler)
        # The starting point, measured by the baseline, unless earlier tune trials say more.
        start = {c.name: c.value for c in constants}
        if context.baseline is not None and not any(e.agent == self.name for e in context.history):
            self._add(start, context.baseline)

    def _sync(self, context: Context) -> None:
        """Tell the study every tune experiment of the history it does not have yet.

        Those are an earlier invocation's (a resumed run) and other workers' trials; this
        agent's own come through :meth:`observe`, and the ones still in flight are left to it.
        """
        for exp in context.history:
            if exp.id in self._told or exp.id in self._pending or exp.agent != self.name:
                continue
            self._told.add(exp.id)
            params = exp.info.get("params")
            if isinstance(params, dict):
                self._add(params, exp.metric if exp.status in MEASURED else None)

    def _add(self, params: dict[str, Any], value: float | None) -> None:
        optuna = self._optuna
        if set(params) != set(self._distributions):
            return
        # Written values are rounded; keep them inside the ranges they were drawn from.
        params = {k: self._inside(k, v) for k, v in params.items()}
        value = self._worst() if value is None else value
        try:
            state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
            trial = optuna.trial.create_trial(
                params=params, distributions=self._distributions, value=value, state=state
            )
            self._study.add_trial(trial)
        except ValueError:  # a value outside today's ranges: the settings changed since
            log.info("tune: left out a past trial that does not fit the search space: %s", params)

    def _worst(self) -> float | None:
        """The worst value measured so far: what a failed trial is told (None before any).

        TPE models only completed trials, so a failure told as FAIL would not steer it
        away from a region that crashes; told as the worst result, it does.
        """
        complete = self._study.get_trials(deepcopy=False, states=(self._optuna.trial.TrialState.COMPLETE,))
        values: list[float] = [t.value for t in complete]
        if not values:
            return None
        return max(values) if self._study.direction == self._optuna.study.StudyDirection.MINIMIZE else min(values)

    def propose(self, context: Context) -> Proposal:
        constants = self._constants(context)
        if self._study is None:
            self._start(constants, context)
        self._sync(context)
        current = {c.name: c.value for c in constants}
        pick = random.Random(f"{self.settings.seed}:{context.experiment_id}")
        names = sorted(current)
        for _ in range(10):  # integers and rounding can land on the current values: ask again
            # One idea at a time: vary a few constants, keep the others at the best's values.
            count = pick.randint(1, min(self.settings.vary or len(names), len(names)))
            varied = set(pick.sample(names, count))
            self._study.enqueue_trial({n: self._inside(n, current[n]) for n in names if n not in varied})
            trial = self._study.ask(self._distributions)
            chosen = {name: _rounded(trial.params[name], current[name]) for name in current}
            changes = {c: chosen[c.name] for c in constants if chosen[c.name] != c.value}
            if changes:
                break
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            raise AgentError("tune: the sampler kept proposing the current values")
        by_file: dict[str, dict[Constant, int | float]] = {}
        for c, value in changes.items():
            by_file.setdefault(c.file, {})[c] = value
        for file, file_changes in by_file.items():
            path = context.task_dir / file
            path.write_text(rewrite(path.read_text(encoding="utf-8"), file_changes), encoding="utf-8")
        self._pending[context.experiment_id] = trial
        described = ", ".join(f"{c.name} {format_value(c.value)} -> {format_value(v)}" for c, v in changes.items())
        return Proposal(described, agent=self.name, info={"params": chosen})

    def _inside(self, name: str, value: int | float) -> int | float:
        """``value`` clamped into the range of ``name`` (a best found before the ranges changed)."""
        dist = self._distributions[name]
        return min(max(value, dist.low), dist.high)  # type: ignore[no-any-return]

    def observe(self, experiment: Experiment) -> None:
        trial = self._pending.pop(experiment.id, None)
        if trial is None:
            return
        self._told.add(experiment.id)
        measured = experiment.status in MEASURED and experiment.metric is not None
        value = experiment.metric if measured else self._worst()
        if value is None:
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, value)


def _rounded(value: Any, like: int | float) -> int | float:
    if isinstance(like, int):
        return int(value)
    return float(format_value(float(value)))
