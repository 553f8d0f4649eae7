"""The run's state has one owner: after every event, memory and the ledger on disk say the same.

Real runs (real git, real processes, the fake agent) reach every outcome; a watcher on the
state reloads the ledger from disk after each event, through a connection of its own, and
compares it with what the state holds in memory.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import AGENT, FAKES, GATE, OUTCOMES_PLAN, Repo, task_config
from overnight.agents import CommandAgent
from overnight.errors import RunStateError
from overnight.executors import LocalExecutor
from overnight.records import DISTURBED, Experiment, Status, chain
from overnight.run.controller import Controller, Limits
from overnight.run.ledger import Ledger
from overnight.run.start import Run
from overnight.run.state import Event, RunState
from overnight.task import Task
from test_parallel import TRAIN as PARALLEL_TRAIN


@dataclass
class Checker:
    """Watches a run's state; after each event, compares memory with a fresh read of the ledger."""

    state: RunState
    ledger_path: Path
    events: list[tuple[Event, int, Status]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def __call__(self, event: Event, exp: Experiment) -> None:
        self.events.append((event, exp.id, exp.status))
        with Ledger(self.ledger_path) as disk:
            on_disk = disk.experiments()
            measured: dict[tuple[int, int], list[float]] = {}
            for m in disk.measurements():
                if m.value is not None and m.kind != DISTURBED:  # set aside: in the ledger, in no estimate
                    measured.setdefault((m.experiment, m.round), []).append(m.value)
        in_memory = list(self.state.experiments())
        if on_disk != in_memory:
            differ = [(d, m) for d, m in zip(on_disk, in_memory, strict=False) if d != m]
            self.mismatches.append(f"after {event} of #{exp.id}: experiments differ: {differ or 'in number'}")
        if measured != self.state.samples():
            self.mismatches.append(f"after {event} of #{exp.id}: measurements differ")
        points = chain(on_disk)
        best = self.state.best
        if (points[-1].id if points else None) != (best.id if best else None):
            self.mismatches.append(f"after {event} of #{exp.id}: the best differs")


def start(task_dir: Path, tag: str) -> tuple[Run, Checker]:
    run = Run.start(Task.load(task_dir), tag)
    checker = Checker(run.state, run.paths.ledger)
    run.state.watch(checker)
    return run, checker


def drive(run: Run, agent: str, workers: int, experiments: int, stop: threading.Event | None = None) -> None:
    agents = [CommandAgent(agent, 60) for _ in range(workers)]
    try:
        Controller(run, agents, LocalExecutor(), Limits(max_experiments=experiments), stop=stop).run_workers()
    finally:
        run.close()


def stop_when_proposed(run: Run, experiment_id: int) -> threading.Event:
    """A stop event set the moment experiment ``experiment_id`` has its hypothesis (a Ctrl-C then)."""
    stop = threading.Event()
    run.state.watch(lambda event, exp: stop.set() if event is Event.PROPOSE and exp.id == experiment_id else None)
    return stop


def test_memory_and_ledger_agree_through_every_outcome(task: Repo, plan: Callable[..., Path], marks: Path) -> None:
    task.write("overnight.toml", task_config(timeout=1.5, extra_task="gate = '''" + GATE + "'''"))
    task.commit("gate")
    plan(
        {
            **OUTCOMES_PLAN,
            "8": [["print", "giving up"], ["exit", 2]],
            "9": [["print", "Hypothesis: think only"]],
            "10": [["set", "train.py", "X", "9"], ["print", "Hypothesis: X = 9 again"]],
            "11": [["set", "train.py", "X", "3"], ["print", "Hypothesis: X = 3"]],
            "12": [["set", "train.py", "SLEEP", "30"], ["print", "Hypothesis: stopped while it runs"]],
        }
    )
    run, checker = start(task.path, "all")
    drive(run, AGENT, workers=1, experiments=12, stop=stop_when_proposed(run, 12))

    assert checker.mismatches == []
    finals = {i: s for e, i, s in checker.events if e in (Event.FINISH, Event.KEEP)}
    assert list(finals.values()) == [
        Status.BASELINE, Status.KEEP, Status.DISCARD, Status.CRASH, Status.TIMEOUT, Status.NO_METRIC,
        Status.GATE_FAILED, Status.REJECTED, Status.REJECTED, Status.NO_CHANGE, Status.DUPLICATE, Status.KEEP,
        Status.INTERRUPTED,
    ]  # fmt: skip
    seen = {e for e, _, _ in checker.events}
    assert seen >= {Event.BEGIN, Event.PROPOSE, Event.UPDATE, Event.MEASURE, Event.FINISH, Event.KEEP}
    # the state of a resumed run is the same as the one that wrote it
    again = Run.start(Task.load(task.path), "all")
    try:
        assert again.state.experiments() == checker.state.experiments()
        assert again.state.samples() == checker.state.samples()
        assert again.state.best == checker.state.best
    finally:
        again.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["spread", "clash"])
def test_memory_and_ledger_agree_with_two_workers_rebasing(
    repo: Repo, marks: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    repo.write("train.py", PARALLEL_TRAIN)
    repo.write("overnight.toml", task_config())
    repo.write("program.md", "Lower the score.\n")
    repo.commit("task")
    monkeypatch.setenv("PARALLEL_MODE", mode)
    run, checker = start(repo.path, "p")
    drive(run, f"{sys.executable} {FAKES / 'parallel_agent.py'}", workers=2, experiments=4)

    assert checker.mismatches == []
    finals = [s for e, _, s in checker.events if e in (Event.FINISH, Event.KEEP)]
    if mode == "clash":
        assert Status.STALE in finals
    else:
        assert any(e is Event.REBASE for e, _, _ in checker.events)


def test_a_keep_undone_when_the_branch_was_moved_outside(task: Repo, plan: Callable[..., Path]) -> None:
    plan({"1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: move X toward 3"]]})
    run, checker = start(task.path, "moved")
    base = task.git("rev-parse", "HEAD").strip()

    def move_branch(event: Event, exp: Experiment) -> None:
        if event is Event.PROPOSE and exp.id == 1:  # someone moves the run branch while experiment 1 runs
            subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "elsewhere"], cwd=task.path, check=True)
            task.git("update-ref", "refs/heads/overnight/moved", task.git("rev-parse", "HEAD").strip(), base)

    run.state.watch(move_branch)
    with pytest.raises(RunStateError, match="was moved by something other than this run"):
        drive(run, AGENT, workers=1, experiments=1)

    assert checker.mismatches == []
    one = checker.state.get(1)
    assert one.status is Status.DISCARD and "the run branch moved outside overnight" in one.reason
    assert checker.state.best is not None and checker.state.best.id == 0  # the keep undone in memory too


def test_a_disturbed_run_is_set_aside_in_memory_and_on_disk(task: Repo, plan: Callable[..., Path]) -> None:
    plan({"1": [["set", "train.py", "X", "5"]]})
    run, checker = start(task.path, "aside")
    drive(run, AGENT, workers=1, experiments=1)
    run = Run.start(Task.load(task.path), "aside")
    try:
        state = run.state
        checker = Checker(state, run.paths.ledger)
        state.watch(checker)
        keep = state.get(1)
        first = state.measurements(keep.id, keep.round)[0]
        before = state.values(keep.id)
        state.set_aside(keep.id, keep.round, first.seed, "a test: disturbed")
        assert checker.mismatches == [] and checker.events[-1][0] is Event.ASIDE
        assert len(state.values(keep.id)) == len(before) - 1
        assert state.get(keep.id).bookkeeping.set_aside[0].why == "a test: disturbed"
        assert next(m.kind for m in state.measurements(keep.id, keep.round)) == "disturbed"
    finally:
        run.close()
