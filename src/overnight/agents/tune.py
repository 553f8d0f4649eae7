"""The `tune` agent: an offline optimizer over the constants of the editable Python files.

It needs no model and no network. It finds module-level ``UPPER_CASE = <number or bool>``
assignments (:mod:`overnight.agents.constants`), searches the space
:mod:`overnight.agents.space` draws around them (safe by default: fractions stay
fractions, zeros, seeds and hardware facts are left alone), writes new values over the
literals in place, and tells Optuna every outcome; experiments that fail are told as the
worst result so far.

Like a researcher it changes one idea at a time: each experiment varies at most ``vary``
constants (chosen at random) and keeps the others at the current best's values. The first
``startup`` experiments explore the whole range at random; after that, one proposal in
four is TPE's (Optuna's model of good values, from every trial: the jumps) and three are
steps near the best, on each constant's own scale. Of several random steps, a quadratic
model of the measured trials (:mod:`overnight.agents.surrogate`) picks the most promising,
or the bottom of its bowl within reach. The steps' size follows the outcomes: it grows
after a step that beat the best and shrinks after one that did not (the 1/5 rule of
evolution strategies), so it settles as the best settles. The values tried live in the
ledger (``info.params``), and the search space with the first proposal of each agent
(``info.space``, ``info.left_alone``): before each proposal the study takes in every tune
experiment of the history it has not been told of, so the agents of several workers learn
from each other's trials, and a resumed run rebuilds the study over the recorded space.
"""

from __future__ import annotations

import logging
import math
import random
import sys
import threading
from typing import Any

import numpy as np

from overnight.agents._base import Agent, Context
from overnight.agents.constants import Constant, Value, find_constants, format_value, rewrite
from overnight.agents.space import Dimension, Space, from_record, search_space
from overnight.agents.surrogate import fit
from overnight.config import TuneSection
from overnight.errors import AgentError, AgentUnavailable
from overnight.records import MEASURED, Experiment, Goal, Proposal

__all__ = ["Constant", "TuneAgent", "find_constants", "format_value", "rewrite"]

log = logging.getLogger(__name__)

#: the share of proposals after the startup that step near the best (the rest are TPE's)
NEAR_SHARE = 0.75
#: the first step's size, as a standard deviation in the unit interval of each constant's scale
FIRST_STEP = 0.15
#: its bounds: never so small that a step rounds to nothing, never wider than the range
STEP_BOUNDS = (0.01, 0.5)
#: random steps drawn per proposal near the best; the quadratic model picks one
CANDIDATES = 48

# Several workers' agents share one process and one terminal: a run's search space is printed once.
_printed: set[tuple[str, str]] = set()
_printing = threading.Lock()


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
        self._space: Space | None = None
        self._dims: dict[str, Dimension] = {}
        self._distributions: dict[str, Any] = {}
        self._recorded = False  # the first proposal carries the search space into the ledger
        self._pending: dict[int, Any] = {}  # experiment id → the trial asked for it
        self._told: set[int] = set()  # experiments whose outcome the study has (own or another worker's)
        self._measured: list[tuple[dict[str, Any], float]] = []  # values tried, and the metric (lower is better)

    # -- the search space ------------------------------------------------------------------

    def _constants(self, context: Context) -> list[Constant]:
        found: list[Constant] = []
        for file in context.editable:
            if not file.endswith(".py"):
                continue
            try:
                found += find_constants((context.task_dir / file).read_text(encoding="utf-8"), file)
            except SyntaxError as err:
                raise AgentError(f"tune: cannot parse {file}: {err}") from None
        return found

    def _start(self, constants: list[Constant], context: Context) -> None:
        space = search_space(constants, self.settings)
        if not space.dimensions:
            grouped: dict[str, list[str]] = {}
            for name, reason in space.left_alone.items():
                grouped.setdefault(reason, []).append(name)
            why = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in grouped.items())
            raise AgentUnavailable(
                "tune: no constants to tune: the editable .py files have no module-level "
                "UPPER_CASE = <number or bool> assignments it may change" + (f". Left alone: {why}" if why else "")
            )
        space = self._as_recorded(space, context)
        self._space = space
        self._dims = {d.name: d for d in space.dimensions}
        self._distributions = {d.name: d.distribution(self._optuna) for d in space.dimensions}
        _announce(space, str(context.log_path.parent))
        optuna = self._optuna
        if self.settings.sampler == "random":
            sampler = optuna.samplers.RandomSampler(seed=self.settings.seed)
        else:
            sampler = optuna.samplers.TPESampler(seed=self.settings.seed, n_startup_trials=self.settings.startup)
        direction = "minimize" if context.goal is Goal.MIN else "maximize"
        self._study = optuna.create_study(direction=direction, sampler=sampler)
        # The starting point, measured by the baseline, unless earlier tune trials say more.
        if context.baseline is not None and not any(e.agent == self.name for e in context.history):
            by_name = {c.name: c.value for c in constants}
            self._add({name: by_name[name] for name in self._dims}, context.baseline)

    def _as_recorded(self, space: Space, context: Context) -> Space:
        """``space`` with the default ranges an earlier tune proposal recorded (a resumed run, another worker).

        A default range is drawn around the value at hand; recorded at the start, it stays the
        one range of the run, though the best moves on. Ranges the user gives always win.
        """
        recorded: dict[str, Any] = {}
        for exp in context.history:
            if exp.agent == self.name and isinstance(exp.info.get("space"), dict):
                recorded = exp.info["space"]
                break
        dims = []
        for dim in space.dimensions:
            old = from_record(dim.name, recorded.get(dim.name))
            same = old is not None and old.scale == dim.scale and old.origin == dim.origin == "default"
            dims.append(old if same and old is not None else dim)
        return Space(tuple(dims), space.left_alone, space.warnings)

    # -- the study -------------------------------------------------------------------------

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
        if set(params) != set(self._dims):
            return
        if value is not None:
            self._measured.append((dict(params), value if self._minimize() else -value))
        value = self._worst() if value is None else value
        try:
            # Recorded values are rounded; encoding keeps them inside the ranges they were drawn from.
            points = {name: self._dims[name].encode(v) for name, v in params.items()}
            state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
            trial = optuna.trial.create_trial(
                params=points, distributions=self._distributions, value=value, state=state
            )
            self._study.add_trial(trial)
        except (ValueError, TypeError):  # a value that does not fit today's space: the settings changed since
            log.info("tune: left out a past trial that does not fit the search space: %s", params)

    def _values(self) -> list[float]:
        complete = self._study.get_trials(deepcopy=False, states=(self._optuna.trial.TrialState.COMPLETE,))
        return [t.value for t in complete]

    def _minimize(self) -> bool:
        return bool(self._study.direction == self._optuna.study.StudyDirection.MINIMIZE)

    def _worst(self) -> float | None:
        """The worst value measured so far: what a failed trial is told (None before any).

        TPE models only completed trials, so a failure told as FAIL would not steer it
        away from a region that crashes; told as the worst result, it does.
        """
        values = self._values()
        if not values:
            return None
        return max(values) if self._minimize() else min(values)

    def _step(self) -> float:
        """The size of a step near the best, from the outcomes so far (the 1/5 rule).

        Each trial that beat every earlier one grows the step by e^0.8, each that did not
        shrinks it by e^-0.2: at one success in five the size holds. The trials are every
        worker's, in the order the study has them, so all agents agree and a resumed run
        picks up where it was.
        """
        sign = 1.0 if self._minimize() else -1.0
        step, best = FIRST_STEP, math.inf
        for i, value in enumerate(self._values()):
            better = sign * value < best
            best = min(best, sign * value)
            if i < 1 + self.settings.startup:  # the baseline and the random start set no pace
                continue
            step *= math.exp(0.8 if better else -0.2)
            step = min(max(step, STEP_BOUNDS[0]), STEP_BOUNDS[1])
        return step

    # -- proposing ---------------------------------------------------------------------------

    def propose(self, context: Context) -> Proposal:
        constants = self._constants(context)
        if self._study is None:
            self._start(constants, context)
        self._sync(context)
        by_name = {c.name: c for c in constants}
        missing = [name for name in self._dims if name not in by_name]
        if missing:
            raise AgentError(f"tune: the editable files no longer define {', '.join(missing)}")
        current: dict[str, Value] = {name: by_name[name].value for name in self._dims}
        pick = random.Random(f"{self.settings.seed}:{context.experiment_id}")
        names = sorted(current)
        measured = len(self._values())  # the baseline's among them
        near = self.settings.sampler == "tpe" and measured > self.settings.startup and pick.random() < NEAR_SHARE
        # (TPE draws at random until it has `startup` completed trials)
        drawn = (
            "near the best" if near else "random start" if measured < self.settings.startup else self.settings.sampler
        )
        step = self._step()
        for _ in range(10):  # integers and rounding can land on the current values: ask again
            # One idea at a time: vary a few constants, keep the others at the best's values.
            count = pick.randint(1, min(self.settings.vary or len(names), len(names)))
            varied = set(pick.sample(names, count))
            fixed = {n: self._dims[n].encode(current[n]) for n in names if n not in varied}
            if near:
                fixed |= {
                    n: self._dims[n].encode(v) for n, v in self._near(current, sorted(varied), step, pick).items()
                }
            self._study.enqueue_trial(fixed)
            trial = self._study.ask(self._distributions)
            chosen = {name: self._dims[name].decode(trial.params[name]) for name in names}
            changes = {by_name[n]: chosen[n] for n in names if chosen[n] != current[n]}
            if changes:
                break
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            raise AgentError("tune: the sampler kept proposing the current values")
        by_file: dict[str, dict[Constant, Value]] = {}
        for c, value in changes.items():
            by_file.setdefault(c.file, {})[c] = value
        for file, file_changes in by_file.items():
            path = context.task_dir / file
            path.write_text(rewrite(path.read_text(encoding="utf-8"), file_changes), encoding="utf-8")
        self._pending[context.experiment_id] = trial
        described = ", ".join(f"{c.name} {format_value(c.value)} -> {format_value(v)}" for c, v in changes.items())
        info: dict[str, Any] = {"params": chosen, "sampled": drawn}
        if not self._recorded and self._space is not None:
            self._recorded = True
            info["space"] = {d.name: d.record() for d in self._space.dimensions}
            info["left_alone"] = dict(self._space.left_alone)
        return Proposal(described, agent=self.name, info=info)

    def _near(self, current: dict[str, Value], varied: list[str], step: float, pick: random.Random) -> dict[str, Value]:
        """New values for ``varied``, a step near the best: of several random steps, the one the
        quadratic model of the measured trials likes best (or its bowl's bottom within reach)."""
        names = sorted(self._dims)
        dims = [self._dims[n] for n in names]
        candidates = [{n: _near(self._dims[n], current[n], step, pick) for n in varied} for _ in range(CANDIDATES)]
        usable = [(p, v) for p, v in self._measured if set(p) == set(names)]
        if not usable:
            return candidates[0]
        points = np.array([[d.to_unit(p[d.name]) for d in dims] for p, _ in usable])
        center = np.array([d.to_unit(current[d.name]) for d in dims])
        model = fit(points, np.array([v for _, v in usable]), center, step)
        if model is None:
            return candidates[0]
        subset = [names.index(n) for n in varied]
        bottom = model.bottom(subset, 2 * step)
        if bottom is not None:
            candidates.append({n: self._dims[n].from_unit(float(bottom[names.index(n)])) for n in varied})
        # A step that rounds back to the best is no experiment (the model's bottom often lies there).
        candidates = [c for c in candidates if any(c[n] != current[n] for n in varied)] or candidates
        units = np.array([[d.to_unit(c.get(d.name, current[d.name])) for d in dims] for c in candidates])
        return candidates[int(np.argmin(model.predict(units)))]

    def observe(self, experiment: Experiment) -> None:
        trial = self._pending.pop(experiment.id, None)
        if trial is None:
            return
        self._told.add(experiment.id)
        measured = experiment.status in MEASURED and experiment.metric is not None
        value = experiment.metric if measured else self._worst()
        if measured and experiment.metric is not None:
            params = {name: self._dims[name].decode(p) for name, p in trial.params.items()}
            self._measured.append((params, experiment.metric if self._minimize() else -experiment.metric))
        if value is None:
            self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, value)


def _near(dim: Dimension, value: Value, step: float, pick: random.Random) -> Value:
    """A value a random step of size ``step`` from ``value``, on the dimension's own scale."""
    if dim.scale == "bool":
        return not value
    move = pick.gauss(0.0, step)
    unit = dim.to_unit(value) + move
    unit = -unit if unit < 0 else (2.0 - unit if unit > 1 else unit)  # bounce off the ends of the range
    new = dim.from_unit(unit)
    if new == value and dim.scale in ("int", "int-log"):  # a step too small for an integer: one unit
        new = int(min(max(int(value) + (1 if move >= 0 else -1), dim.low), dim.high))
    return new


def _announce(space: Space, run: str) -> None:
    """Print the search space (once per run folder and space) and warn of what the user should know."""
    text = "\n".join(space.lines())
    with _printing:
        if (run, text) in _printed:
            return
        _printed.add((run, text))
    for warning in space.warnings:
        log.warning("%s", warning)
    print(text, file=sys.stdout, flush=True)
