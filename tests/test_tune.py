"""The tune agent: constants found with ast, literals rewritten in place, Optuna ask/tell, resume."""

from __future__ import annotations

import logging
import math
import re
import tomllib
from pathlib import Path

import pytest

from conftest import Repo, ledger_rows
from overnight.agents._base import Context
from overnight.agents.space import search_space
from overnight.agents.tune import TuneAgent, find_constants, format_value, rewrite
from overnight.cli.scaffold import render_config, tune_stub
from overnight.config import TuneSection, load_config, parse_config
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


def test_finds_module_level_upper_case_numbers_and_bools_only() -> None:
    found = {c.name: c.value for c in find_constants(SOURCE, "train.py")}
    assert found == {"LEARNING_RATE": 0.003, "WIDTH": 16, "DEPTH": -2, "FLAG": True}
    assert type(found["FLAG"]) is bool


def test_rewrite_keeps_everything_but_the_literals() -> None:
    constants = {c.name: c for c in find_constants(SOURCE, "train.py")}
    new = rewrite(SOURCE, {constants["LEARNING_RATE"]: 0.0012345678, constants["DEPTH"]: -5})
    assert "LEARNING_RATE = 0.001235  # keep this comment\n" in new
    assert "DEPTH = -5\n" in new and "WIDTH: int = 16\n" in new
    assert new.replace("0.001235", "3e-3").replace("-5", "-2") == SOURCE


def test_values_are_written_short() -> None:
    assert format_value(0.000123456) == "0.0001235"
    assert format_value(64) == "64"
    assert format_value(False) == "False"
    # a fraction stays a fraction: 4 digits would write 1.0
    assert format_value(0.99996) == "0.99996" and format_value(0.999999) == "0.999999"


# The constants of autoresearch's train.py, in its style: hardware facts, seeds, zeros, fractions.
AUTORESEARCH = """import os

H100_BF16_PEAK_FLOPS = 989.5e12
ASPECT_RATIO = 64       # model_dim = depth * ASPECT_RATIO
HEAD_DIM = 128
TOTAL_BATCH_SIZE = 2**19
EMBEDDING_LR = 0.6
UNEMBEDDING_LR = 0.004
MATRIX_LR = 0.04
SCALAR_LR = 0.5
WEIGHT_DECAY = 0.2
ADAM_BETAS = (0.8, 0.95)
WARMUP_RATIO = 0.0
WARMDOWN_RATIO = 0.5
FINAL_LR_FRAC = 0.0
DEPTH = 8
DEVICE_BATCH_SIZE = 128
SEED = 42
USE_X = True
GRAD_CLIP = 1.0
PEAK_LR = 0.003  # a learning rate, not a hardware fact
"""


def test_a_real_training_script_gets_a_safe_space_by_default() -> None:
    space = search_space(find_constants(AUTORESEARCH, "train.py"), TuneSection())
    dims = {d.name: d for d in space.dimensions}
    assert set(space.left_alone) == {"H100_BF16_PEAK_FLOPS", "SEED", "WARMUP_RATIO", "FINAL_LR_FRAC"}
    assert "hardware" in space.left_alone["H100_BF16_PEAK_FLOPS"] and "seed" in space.left_alone["SEED"]
    assert [w.split()[1] for w in space.warnings] == ["WARMUP_RATIO", "FINAL_LR_FRAC"]  # zeros: a warning each
    assert "TOTAL_BATCH_SIZE" not in dims and "ADAM_BETAS" not in dims  # expressions are not literals
    assert dims["USE_X"].scale == "bool" and dims["PEAK_LR"].scale == "logit"
    assert (dims["DEPTH"].scale, dims["DEPTH"].low, dims["DEPTH"].high) == ("int-log", 2, 32)
    assert dims["GRAD_CLIP"].scale == "log" and (dims["GRAD_CLIP"].low, dims["GRAD_CLIP"].high) == (0.1, 10.0)
    values = {c.name: c.value for c in find_constants(AUTORESEARCH, "train.py")}
    for name in ("EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR", "WEIGHT_DECAY", "WARMDOWN_RATIO"):
        dim = dims[name]
        assert dim.scale == "logit", name
        # every value it can write is inside (0, 1) ...
        assert all(0 < float(dim.from_unit(u / 100)) < 1 for u in range(101)), name
        assert all(0 < float(dim.decode(x / 10)) < 1 for x in range(-200, 201)), name
        # ... and the odds move by 10x either way, as a log scale would move a small value
        odds = lambda p: p / (1 - p)  # noqa: E731
        assert odds(dim.low) == pytest.approx(odds(float(values[name])) / 10)
        assert odds(dim.high) == pytest.approx(odds(float(values[name])) * 10)
    assert dims["WARMDOWN_RATIO"].low < 0.1 and 0.9 < dims["WARMDOWN_RATIO"].high < 1
    assert dims["MATRIX_LR"].low == pytest.approx(0.004, rel=0.05) and dims["MATRIX_LR"].high < 0.3


def test_a_range_or_include_tunes_what_is_left_alone_by_default() -> None:
    settings = TuneSection(
        include=("SEED", "FINAL_LR_FRAC", "WARMDOWN_RATIO", "USE_X", "MISSING"),
        ranges={"FINAL_LR_FRAC": (0.0, 0.1), "WARMDOWN_RATIO": (0.2, 0.8), "USE_X": (0.0, 1.0)},
    )
    space = search_space(find_constants(AUTORESEARCH, "train.py"), settings)
    dims = {d.name: d for d in space.dimensions}
    assert set(dims) == {"SEED", "FINAL_LR_FRAC", "WARMDOWN_RATIO", "USE_X"}
    assert (dims["FINAL_LR_FRAC"].scale, dims["FINAL_LR_FRAC"].low, dims["FINAL_LR_FRAC"].high) == ("linear", 0, 0.1)
    assert dims["WARMDOWN_RATIO"].scale == "logit" and dims["WARMDOWN_RATIO"].origin == "ranges"
    assert dims["USE_X"].scale == "bool" and dims["SEED"].scale == "int-log"
    assert space.left_alone["DEPTH"] == "not in [agent.tune] include"
    assert any("MISSING" in w and "no editable file defines it" in w for w in space.warnings)


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
    assert best < baseline / 100  # the known optimum is 0; steps near the best get close within 20
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
    # the resumed agent searches the space recorded at the start, though the best has moved since
    assert rows[1]["info"]["space"] == rows[7]["info"]["space"]
    assert rows[7]["info"]["space"]["LEARNING_RATE"]["low"] == pytest.approx(0.0003, rel=0.01)  # around 0.003
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
        if t.state.name == state
        and all(math.isclose(agent._dims[k].decode(t.params[k]), v, rel_tol=1e-9) for k, v in params.items())
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


SAFE_TASK = """import math

SEED = 7  # a seed: left alone
PEAK_FLOPS = 1e12  # a hardware fact: left alone
BIAS = 0.0  # a zero: left alone, with a warning
DECAY = 0.5  # a fraction: stays in (0, 1)
USE_TRICK = True  # a flag: False is better
if not 0 < DECAY < 1 or BIAS != 0.0 or SEED != 7 or PEAK_FLOPS != 1e12:
    raise SystemExit("the tune agent changed what it must not")

loss = (math.log(DECAY / (1 - DECAY)) + 3) ** 2 + (1.0 if USE_TRICK else 0.0)
print(f"loss: {loss:.6f}")
"""


def test_the_search_space_is_safe_printed_and_recorded(repo: Repo, cli, caplog: pytest.LogCaptureFixture) -> None:
    repo.write("train.py", SAFE_TASK)
    repo.write(
        "overnight.toml",
        '[task]\nrun = "python3 train.py"\neditable = ["train.py"]\nbudget_s = 5\n'
        '[metric]\nname = "loss"\ngoal = "min"\n[agent]\nkind = "tune"\n[agent.tune]\nstartup = 3\n',
    )
    repo.write("program.md", "Minimize the loss.\n")
    repo.commit("task")
    with caplog.at_level(logging.WARNING):
        result = cli("run", repo.path, "--tag", "s", "--max-experiments", "12")
    assert result.code == 0, result.err
    assert (
        "tune: searching 2 constants:\n  DECAY logit [0.09091, 0.9091]\n  USE_TRICK bool [False, True]\n" in result.out
    )
    assert (
        "tune: left alone: SEED (looks like a seed" in result.out and "PEAK_FLOPS (looks like a hardware" in result.out
    )
    assert any("BIAS (train.py) is 0" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    rows = ledger_rows(repo.path, "s")
    assert {r["status"] for r in rows[1:]} <= {"keep", "discard"}  # nothing it must not touch was touched
    first = rows[1]["info"]
    assert first["space"]["DECAY"] == {"scale": "logit", "low": pytest.approx(1 / 11), "high": pytest.approx(10 / 11),
                                       "origin": "default"}  # fmt: skip
    assert set(first["space"]) == {"DECAY", "USE_TRICK"} and set(first["left_alone"]) == {"SEED", "PEAK_FLOPS", "BIAS"}
    assert all("space" not in r["info"] for r in rows[2:])  # recorded once per agent
    assert rows[1]["info"]["sampled"] == "random start"
    kept = repo.git("show", "overnight/s:train.py")
    assert "USE_TRICK = False  # a flag" in kept  # the flag was tried both ways
    assert any(r["info"]["sampled"] == "near the best" for r in rows[1:])  # once the model has data
    for row in rows[1:]:
        assert row["hypothesis"] and all(n in ("DECAY", "USE_TRICK") for n in _changed(row["hypothesis"]))


def _changed(hypothesis: str) -> list[str]:
    """The names a tune hypothesis (``A 1 -> 2, B 3 -> 4``) says it changed."""
    return [part.split()[0] for part in hypothesis.split(", ")]


def test_init_writes_tune_stubs_from_the_constants_it_finds(repo: Repo, cli) -> None:
    repo.write("train.py", AUTORESEARCH)
    result = cli("init", repo.path, "--run", "python3 train.py", "--editable", "train.py", "--metric", "val_bpb")
    assert result.code == 0, result.err
    text = (repo.path / "overnight.toml").read_text()
    config = load_config(repo.path / "overnight.toml")
    tunable = ["ASPECT_RATIO", "HEAD_DIM", "EMBEDDING_LR", "UNEMBEDDING_LR", "MATRIX_LR", "SCALAR_LR",
               "WEIGHT_DECAY", "WARMDOWN_RATIO", "DEPTH", "DEVICE_BATCH_SIZE", "USE_X", "GRAD_CLIP", "PEAK_LR"]  # fmt: skip
    assert list(config.agent.tune.include) == tunable and config.agent.tune.ranges == {}
    assert "# left alone: H100_BF16_PEAK_FLOPS (looks like a hardware fact)\n" in text
    assert "# left alone: SEED (looks like a seed)\n" in text
    assert (
        "# MATRIX_LR = [0.004149, 0.2941]  # logit scale\n" in text and "# DEPTH = [2, 32]  # int-log scale\n" in text
    )
    assert "# FINAL_LR_FRAC = [0.0, 1.0]  # is 0: give it a range" in text
    # each stub, uncommented, is a valid setting that keeps the default's scale
    ranges = [m.group(1) for m in re.finditer(r"^# ([A-Z][A-Z0-9_]* = \[[^\]]*\])", text, re.M)]
    assert len(ranges) == 14  # the 12 tunable numbers and the 2 zeros
    data = tomllib.loads(text.replace("[agent.tune.ranges]", "[agent.tune.ranges]\n" + "\n".join(ranges)))
    uncommented = parse_config(data).agent.tune
    constants = find_constants(AUTORESEARCH, "train.py")
    defaults = {d.name: d for d in search_space(constants, TuneSection()).dimensions}
    space = {d.name: d for d in search_space(constants, uncommented).dimensions}
    assert set(space) == set(tunable)  # a zero given a range is tuned once it is added to include
    for name, dim in space.items():
        assert dim.scale == defaults[name].scale, name
        assert (dim.low, dim.high) == pytest.approx((defaults[name].low, defaults[name].high), rel=1e-3), name


def test_init_without_constants_writes_a_commented_stub() -> None:
    text = render_config("python3 train.py", ["train.py"], "loss", "min")
    assert "# [agent.tune]" in text and "\n[agent.tune]" not in text
    assert tune_stub([]) in text


def test_a_task_of_zeros_says_which_to_give_ranges(repo: Repo, cli) -> None:
    repo.write("model.py", "A = 0.0\nB = 0\n\n\ndef predict(x):\n    return A + B * x\n")
    repo.write("evaluate.py", "import model\nprint('mse:', (model.predict(1.0) - 2) ** 2)\n")
    repo.write(
        "overnight.toml",
        '[task]\nrun = "python3 evaluate.py"\neditable = ["model.py"]\nbudget_s = 5\n'
        '[metric]\nname = "mse"\ngoal = "min"\n[agent]\nkind = "tune"\n',
    )
    repo.write("program.md", "Fit.\n")
    repo.commit("zeros")
    result = cli("run", repo.path, "--tag", "z", "--max-experiments", "1")
    assert result.code == 6 and "no constants to tune" in result.err
    assert "Left alone: A, B: is 0, with no scale to search around; give it [agent.tune] ranges" in result.err
    repo.write(
        "overnight.toml", (repo.path / "overnight.toml").read_text() + "[agent.tune]\nranges = { A = [-5, 5] }\n"
    )
    repo.commit("a range")
    assert cli("run", repo.path, "--tag", "y", "--max-experiments", "3").code == 0
    rows = ledger_rows(repo.path, "y")
    assert all(_changed(r["hypothesis"]) == ["A"] for r in rows[1:])  # B, still 0 without a range, stays


def test_the_quickstart_demo_runs_with_the_tune_agent(tmp_path: Path, cli) -> None:
    # its coefficients start at 0: the example gives them ranges, without which tune would refuse
    result = cli("demo", tmp_path / "demo", "--example", "quickstart", "--agent", "tune", "--max-experiments", "20")
    assert result.code == 0, result.err
    rows = ledger_rows(tmp_path / "demo", "demo")
    assert set(rows[1]["info"]["space"]) == {"A", "B", "C", "D"} and rows[1]["info"]["left_alone"] == {}
    assert min(r["metric"] for r in rows if r["status"] == "keep") < rows[0]["metric"] / 4


def test_ranges_keep_each_constant_its_kind() -> None:
    source = "WIDTH = 16\nDROP = 0.1\nSHIFT = -2.0\nLAYERS = -3\nFLAG = False\nLR = 0.5\n"
    settings = TuneSection(ranges={"WIDTH": (0.2, 0.9), "FLAG": (0.0, 5.0), "LR": (1e-4, 2.0), "DROP": (0.0, 0.5)})
    space = search_space(find_constants(source, "m.py"), settings)
    dims = {d.name: d for d in space.dimensions}
    assert "fewer than two integers" in space.left_alone["WIDTH"]  # an integer stays an integer
    assert dims["FLAG"].scale == "bool"
    assert (dims["LR"].scale, dims["DROP"].scale) == ("log", "linear")  # the user's range may leave (0, 1)
    assert (dims["SHIFT"].scale, dims["SHIFT"].low, dims["SHIFT"].high) == ("linear", -20.0, -0.2)
    assert (dims["LAYERS"].scale, dims["LAYERS"].low, dims["LAYERS"].high) == ("int", -12, -1)
    for dim in dims.values():  # every point of the distribution decodes to a value of the constant's kind
        for unit in (0.0, 0.37, 1.0):
            value = dim.from_unit(unit)
            assert dim.low <= value <= dim.high and dim.decode(dim.encode(value)) == value
