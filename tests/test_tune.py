"""The tune agent: constants found with ast, literals rewritten in place, Optuna ask/tell, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import Repo, ledger_rows
from overnight.agents._base import Context
from overnight.agents.tune import TuneAgent, find_constants, format_value, rewrite
from overnight.config import parse_config
from overnight.records import Experiment, Proposal, Status

SOURCE = '''"""doc"""
import math

LEARNING_RATE = 3e-3  # keep this comment
WIDTH: int = 16
DEPTH = -2
FLAG = True
NAME = "x"
lower_case = 5
SCALE = 2 * 3
if True:
    NESTED = 4
'''


def test_finds_module_level_upper_case_numbers_only() -> None:
    found = {c.name: c.value for c in find_constants(SOURCE, "train.py")}
    assert found == {"LEARNING_RATE": 0.003, "WIDTH": 16, "DEPTH": -2}


def test_rewrite_keeps_everything_but_the_literals() -> None:
    constants = {c.name: c for c in find_constants(SOURCE, "train.py")}
    new = rewrite(SOURCE, {constants["LEARNING_RATE"]: 0.0012345678, constants["DEPTH"]: -5})
    assert "LEARNING_RATE = 0.001235  # keep this comment\n" in new
    assert "DEPTH = -5\n" in new and "WIDTH: int = 16\n" in new
    assert new.replace("0.001235", "3e-3").replace("-5", "-2") == SOURCE


def test_values_are_written_short() -> None:
    assert format_value(0.000123456) == "0.0001235"
    assert format_value(64) == "64"


KNOWN_OPTIMUM = """import math

LEARNING_RATE = 0.003  # the optimum is 0.01
WIDTH = 16  # the optimum is 64
MOMENTUM = 0.5  # the optimum is 0.9
if WIDTH > 200:
    raise SystemExit("out of memory")  # a crash the agent must survive

loss = (math.log10(LEARNING_RATE) + 2) ** 2 + (math.log2(WIDTH) - 6) ** 2 / 4 + (MOMENTUM - 0.9) ** 2
print(f"loss: {loss:.6f}")
"""


@pytest.fixture
def optimum(repo: Repo) -> Repo:
    repo.write("train.py", KNOWN_OPTIMUM)
    repo.write(
        "overnight.toml",
        '[task]\nrun = "python3 train.py"\neditable = ["train.py"]\nbudget_s = 5\n'
        '[metric]\nname = "loss"\ngoal = "min"\n[agent]\nkind = "tune"\n',
    )
    repo.write("program.md", "Minimize the loss.\n")
    repo.commit("task")
    return repo


def test_tune_beats_the_baseline_within_20_experiments(optimum: Repo, cli) -> None:
    result = cli("run", optimum.path, "--tag", "t", "--max-experiments", "20")
    assert result.code == 0, result.err
    rows = ledger_rows(optimum.path, "t")
    baseline = rows[0]["metric"]
    best = min(r["metric"] for r in rows if r["status"] == "keep")
    assert baseline == pytest.approx(1.4334, abs=1e-3)
    assert best < baseline / 4
    assert all(r["agent"] == "tune" for r in rows[1:])
    assert rows[1]["hypothesis"].startswith("LEARNING_RATE 0.003 -> ")
    assert set(rows[1]["info"]["params"]) == {"LEARNING_RATE", "WIDTH", "MOMENTUM"}
    kept = optimum.git("show", "overnight/t:train.py")
    assert "# the optimum is 0.01" in kept and "raise SystemExit" in kept


def test_failures_are_told_and_the_study_resumes_from_the_ledger(optimum: Repo, cli) -> None:
    ranges = "[agent.tune]\nranges = { WIDTH = [8, 1024] }\nstartup = 3\n"
    optimum.write("overnight.toml", (optimum.path / "overnight.toml").read_text() + ranges)
    optimum.commit("wide ranges")
    assert cli("run", optimum.path, "--tag", "r", "--max-experiments", "6").code == 0
    first = ledger_rows(optimum.path, "r")
    assert cli("run", optimum.path, "--tag", "r", "--max-experiments", "6").code == 0
    rows = ledger_rows(optimum.path, "r")
    assert rows[:7] == first and len(rows) == 13
    params = [tuple(sorted(r["info"]["params"].items())) for r in rows[1:]]
    assert len(set(params)) == len(params), "a resumed study does not start over with the same proposals"
    statuses = {r["status"] for r in rows}
    assert statuses <= {"baseline", "keep", "discard", "crash", "duplicate"}
    assert "crash" in statuses  # WIDTH over 200 crashes: the failures this test is about happened


def test_a_task_without_constants_is_a_clear_error(task: Repo, cli) -> None:
    task.write("train.py", "print('score: 1')\n")
    task.commit("no constants")
    result = cli("run", task.path, "--agent", "tune", "--max-experiments", "1")
    assert result.code == 6 and "no constants to tune" in result.err


TUNE_CONFIG = parse_config(
    {
        "task": {"run": "python3 train.py", "editable": ["train.py"]},
        "metric": {"name": "loss", "goal": "min"},
        "agent": {"kind": "tune"},
    }
)
BASELINE = Experiment(id=0, status=Status.BASELINE, commit="c0", metric=1.4334, hypothesis="baseline")


def _propose(agent: TuneAgent, folder: Path, experiment_id: int, history: list[Experiment]) -> Proposal:
    """One proposal on a fresh copy of the task at its best, as a worker's worktree would be."""
    folder.mkdir()
    (folder / "train.py").write_text(KNOWN_OPTIMUM)
    context = Context(
        experiment_id=experiment_id, program="Minimize the loss.", config=TUNE_CONFIG, worktree=folder,
        task_dir=folder, editable=("train.py",), baseline=BASELINE.metric, best=BASELINE.metric, best_commit="c0",
        history=tuple(history), log_path=folder / "a.log", brief_path=folder / "b.json",
    )  # fmt: skip
    return agent.propose(context)


def _trials(agent: TuneAgent, params: dict[str, float], state: str) -> list[object]:
    """The agent's finished trials in ``state`` that tried ``params``."""
    return [
        t
        for t in agent._study.trials
        if t.state.name == state and all(math.isclose(t.params[k], v, rel_tol=1e-9) for k, v in params.items())
    ]


def test_each_worker_learns_from_the_trials_of_every_worker(tmp_path: Path) -> None:
    first, second = TuneAgent(TUNE_CONFIG.agent.tune), TuneAgent(TUNE_CONFIG.agent.tune)
    one = _propose(first, tmp_path / "1", 1, [BASELINE])
    two = _propose(second, tmp_path / "2", 2, [BASELINE])  # both in flight at once
    done_one = Experiment(id=1, status=Status.DISCARD, commit="c1", agent="tune", metric=2.5, info=one.info)
    first.observe(done_one)
    _propose(second, tmp_path / "3", 3, [BASELINE, done_one])
    done_two = Experiment(id=2, status=Status.CRASH, commit="c2", agent="tune", info=two.info)
    second.observe(done_two)
    history = [BASELINE, done_one, done_two]
    _propose(first, tmp_path / "4", 4, history)
    _propose(second, tmp_path / "5", 5, history)  # the history again: nothing is told twice
    assert len(_trials(second, one.info["params"], "COMPLETE")) == 1  # the other worker's result
    assert [t.value for t in _trials(second, one.info["params"], "COMPLETE")] == [2.5]
    # the other worker's crash, told as the worst result measured so far (TPE ignores FAIL trials)
    assert [t.value for t in _trials(first, two.info["params"], "COMPLETE")] == [2.5]
    # its own result once, and the crash at that same worst value: nothing told twice
    assert [t.value for t in first._study.trials if t.state.name == "COMPLETE"].count(2.5) == 2
