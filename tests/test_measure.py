"""The keep policy as the Measurer carries it out, on a real run: real git, a real ledger, a real worktree.

Only the measurement is scripted: an executor that reads which code the worktree holds and returns that code's
value at the job's seed (and how busy the machine was), as a real executor returns what the script printed.
The tests look at what was measured, in which order, and what was recorded, not at the judge's internals.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from conftest import Repo
from overnight.executors import Executor, Job, Measurement, integrity
from overnight.judge.measure import Measurer
from overnight.judge.rule import SCREEN, Action, Decision
from overnight.records import DISTURBED, Experiment, RunResult, Status, now_iso
from overnight.run.loop import Worker
from overnight.run.start import Run
from overnight.task import Task

CONFIG = """\
[task]
run = "python train.py"
editable = ["train.py"]

[metric]
name = "score"
goal = "min"

[judge]
wait_for_quiet_s = 0  # a run after a busy one does not wait for this machine to be quiet
"""
QUIET = 0.02  # the share of the machine other programs use while a run is not disturbed
# The baseline's values by seed: sd 0.09 over 5 degrees of freedom (robust sd 0.16), enough for
# a run to be called disturbed by its value (overnight.judge.rule.DISTURBED_DF).
BASE = [10.0, 10.1, 9.9, 10.1, 9.9, 10.0, 10.0, 10.0]
BETTER = [9.0, 9.1, 9.05, 9.0]  # a tenth better, ten standard deviations: a clear winner (goal: min)
WORSE = [10.3, 10.3, 10.3]  # three standard deviations worse, not so far off that the run is in doubt


class Scripted(Executor):
    """Measures the code the worktree holds (``CODE = "<name>"`` in train.py) at the job's seed, from a script.

    Keeps the executor contract (overnight.executors._base): blocks until the measurement is done (at once),
    never raises for the experiment (a value it has no script for is a crash), returns ``interrupted`` once
    ``stop`` is set, and leaves no process behind (it starts none).
    """

    name = "scripted"

    def __init__(self, values: dict[str, list[float]], busy: dict[tuple[str, int], float] | None = None) -> None:
        self.values = values
        self.busy = busy or {}  # (code, seed) → the share of the machine other programs used during that run
        self.calls: list[tuple[str, int]] = []  # (code, seed) of each measurement, in order

    def measure(self, job: Job, stop: threading.Event | None = None) -> Measurement:
        if stop is not None and stop.is_set():
            return Measurement(Status.INTERRUPTED, "stopped")
        job = job.resolved()
        found = re.search(r'^CODE = "(\w+)"$', (job.task_dir / "train.py").read_text(), re.MULTILINE)
        code = found.group(1) if found else "?"
        self.calls.append((code, job.seed))
        values = self.values.get(code, [])
        if job.seed >= len(values):
            return Measurement(Status.CRASH, f"nothing scripted for {code} at seed {job.seed}")
        value = values[job.seed]
        result = RunResult(
            exit_code=0,
            duration_s=0.01,
            peak_memory_mb=1.0,
            output=f"---\nscore: {value}\n",
            contention=self.busy.get((code, job.seed), QUIET),
        )
        return Measurement(None, value=value, metrics={"score": value}, result=result, setup_done=job.setup)


@dataclass
class Night:
    """A run on a task whose code is named by train.py's CODE, with one commit per named change."""

    run: Run
    worker: Worker
    executor: Scripted
    commits: dict[str, str] = field(default_factory=dict)

    @property
    def measurer(self) -> Measurer:
        return self.worker.measurer

    def judge(self, change: str) -> tuple[Experiment, Decision]:
        """Propose ``change`` on the best and judge it as a worker does (steps 6 to 8 of overnight.run.loop)."""
        state = self.run.state
        best = state.best
        assert best is not None
        exp = state.begin(lambda i: Experiment(id=i, status=Status.RUNNING, parent=best.commit, started_at=now_iso()))
        exp = state.propose(replace(exp, commit=self.commits[change], hypothesis=change))
        self.worker.worktree.checkout(exp.commit)
        first = self.measurer.first(exp, written=lambda: exp.commit)
        assert first.status is None, first.reason
        decision = self.measurer.until_judged(state.get(exp.id), best)
        ended = state.get(exp.id)
        ended = replace(ended, bookkeeping=ended.bookkeeping.merge(self.measurer.notes_for(exp.id)), ended_at=now_iso())
        if decision.action is Action.KEEP:
            state.keep(replace(ended, status=Status.KEEP, reason=decision.reason))
        else:
            state.finish(replace(ended, status=Status.DISCARD, reason=decision.reason))
        return state.get(exp.id), decision

    def measured(self, exp: Experiment) -> list[tuple[int, str, float | None]]:
        """(seed, kind, value) of each measurement of ``exp``'s round, set-aside ones included."""
        return [(m.seed, m.kind, m.value) for m in self.run.state.measurements(exp.id, exp.round)]


def _train(code: str) -> str:
    return f'CODE = "{code}"\nprint("score: scripted")\n'


@pytest.fixture
def night(repo: Repo, request: pytest.FixtureRequest) -> Iterator[Night]:
    """A run whose baseline was measured ``baseline_runs`` times (the test's ``night`` param; 6 by default)."""
    baseline_runs: int = getattr(request, "param", 6)
    repo.write("train.py", _train("base"))
    repo.write("overnight.toml", CONFIG)
    repo.write("program.md", "Make score small.\n")
    base = repo.commit("task")
    commits = {}
    for change in ("better", "worse", "loaded", "burst"):  # each a commit on the task, kept reachable by a branch
        repo.git("checkout", "-q", "-B", f"change/{change}", base)
        repo.write("train.py", _train(change))
        commits[change] = repo.commit(change)
    repo.git("checkout", "-q", "main")
    executor = Scripted(
        {"base": BASE, "better": BETTER, "worse": WORSE, "loaded": [WORSE[0], *BETTER], "burst": [14.0, *BETTER]},
        busy={("loaded", 0): 0.6},  # the other core busy during that one run
    )
    run = Run.start(Task.load(repo.path), "measure")
    worker = Worker(run, None, executor)
    try:
        worker.open(base)
        baseline = worker.baseline(base, runs=baseline_runs)
        assert baseline.status is Status.BASELINE and baseline.runs == baseline_runs
        assert executor.calls == [("base", seed) for seed in range(baseline_runs)]
        executor.calls.clear()
        yield Night(run, worker, executor, commits)
    finally:
        worker.close()
        run.close()


def test_a_clear_winner_is_measured_twice_then_kept_with_its_follow_up(night: Night) -> None:
    exp, decision = night.judge("better")
    assert decision.action is Action.KEEP
    assert "with its follow-up" in decision.reason
    # screened on one run, confirmed on a second, followed up by a third; the best had runs enough already
    assert night.executor.calls == [("better", 0), ("better", 1), ("better", 2)]
    assert night.measured(exp) == [(0, "candidate", 9.0), (1, "candidate", 9.1), (2, "follow-up", 9.05)]
    assert exp.status is Status.KEEP and exp.runs == 3 and exp.metric == pytest.approx(9.05)
    assert exp.improvement == pytest.approx(10.0 - 9.05)  # estimated on every run, the follow-up included
    best = night.run.state.best
    assert best is not None and best.id == exp.id
    assert night.run.branch.tip() == night.commits["better"]


def test_a_clear_loser_is_discarded_after_one_run(night: Night) -> None:
    exp, decision = night.judge("worse")
    assert decision.action is Action.DISCARD
    assert night.executor.calls == [("worse", 0)]  # neither it nor the best is measured again
    assert night.measured(exp) == [(0, "candidate", 10.3)]
    assert exp.status is Status.DISCARD and exp.runs == 1
    screen = exp.bookkeeping.screen
    assert screen is not None and screen.z is not None and screen.z < SCREEN  # discarded at the screen
    judged = exp.bookkeeping.judged_against
    assert judged is not None and judged.runs == 6
    best = night.run.state.best
    assert best is not None and best.status is Status.BASELINE and best.runs == 6


@pytest.mark.parametrize("night", [1], indirect=True)
def test_the_best_is_measured_as_often_as_the_candidate(night: Night) -> None:
    baseline = night.run.state.best
    assert baseline is not None and baseline.runs == 1
    exp, decision = night.judge("better")
    assert decision.action is Action.KEEP
    # the candidate's second run, then the best's second (same seed), before the keep; then the follow-up
    assert night.executor.calls == [("better", 0), ("better", 1), ("base", 1), ("better", 2)]
    baseline = night.run.state.get(baseline.id)
    assert night.measured(baseline) == [(0, "baseline", 10.0), (1, "best", 10.1)]
    assert baseline.runs == 2 and baseline.metric == pytest.approx(10.05)  # re-estimated on both its runs
    assert night.measured(exp) == [(0, "candidate", 9.0), (1, "candidate", 9.1), (2, "follow-up", 9.05)]


def test_a_run_taken_under_load_is_set_aside_and_taken_again(night: Night) -> None:
    """Its value alone would discard the change at the screen (as WORSE is): the load says the run is not the code's."""
    exp, decision = night.judge("loaded")
    assert decision.action is Action.KEEP
    assert night.executor.calls == [("loaded", 0), ("loaded", 1), ("loaded", 2), ("loaded", 3)]
    assert night.measured(exp) == [
        (0, DISTURBED, 10.3),
        (1, "candidate", 9.0),
        (2, "candidate", 9.1),
        (3, "follow-up", 9.05),
    ]
    aside = exp.bookkeeping.set_aside
    assert [a.seed for a in aside] == [0] and "more of the machine than usual" in aside[0].why
    assert night.run.state.values(exp.id) == [9.0, 9.1, 9.05]  # the set-aside run is in no estimate
    assert exp.runs == 3


def test_a_first_run_far_off_is_taken_again_before_a_discard_and_set_aside(night: Night) -> None:
    """No load was seen: the value alone, 40 robust standard deviations off, puts the run in doubt."""
    exp, decision = night.judge("burst")
    assert decision.action is Action.KEEP
    assert night.executor.calls == [("burst", 0), ("burst", 1), ("burst", 2), ("burst", 3)]
    assert night.measured(exp) == [
        (0, DISTURBED, 14.0),
        (1, "candidate", 9.0),
        (2, "candidate", 9.1),
        (3, "follow-up", 9.05),
    ]
    aside = exp.bookkeeping.set_aside
    assert [a.seed for a in aside] == [0] and "far worse" in aside[0].why
    assert night.run.state.values(exp.id) == [9.0, 9.1, 9.05]


# -- the protected files' fingerprints -------------------------------------------------------------------


def test_a_protected_file_rewritten_to_the_same_size_and_modification_time_is_still_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Digests are kept while a file's inode is unchanged; here even a file changed a moment ago counts as
    # settled, so the second fingerprint below is the kept one, and the third must see the change anyway.
    monkeypatch.setattr(integrity, "SETTLED_NS", 0)
    data = tmp_path / "labels.csv"
    data.write_text("1,2,3\n")
    first = integrity.fingerprint(tmp_path, ["labels.csv"])
    assert integrity.fingerprint(tmp_path, ["labels.csv"]) == first
    before = os.stat(data)
    tick = tmp_path / "tick"  # touched until the coarse clock the kernel stamps inodes with has moved on
    tick.touch()
    while os.stat(tick).st_ctime_ns <= before.st_ctime_ns:
        tick.touch()
    data.write_text("9,2,3\n")  # what a run that fakes its data does: same size,
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the same modification time
    assert (os.stat(data).st_size, os.stat(data).st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert integrity.changed(first, integrity.fingerprint(tmp_path, ["labels.csv"])) == ["labels.csv"]


def test_a_fifo_put_in_place_of_a_protected_file_is_a_change_and_blocks_nothing(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("1,2,3\n")
    first = integrity.fingerprint(tmp_path, ["labels.csv"])
    (tmp_path / "labels.csv").unlink()
    os.mkfifo(tmp_path / "labels.csv")  # no writer ever comes: a blocking read would hang the worker
    assert integrity.changed(first, integrity.fingerprint(tmp_path, ["labels.csv"])) == ["labels.csv"]
