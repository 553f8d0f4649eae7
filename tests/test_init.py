"""`overnight init` reads the run command's script: what it found and what it assumed, on screen and in the files."""

from __future__ import annotations

import re
import tomllib

from conftest import Repo

FIXED_EPOCHS = """\
import torch
EPOCHS = 8
NUM_STEPS = 100
LR = 0.01
WARMUP_STEPS = 10
SEED = 42
print("val_loss:", 1.0)
"""

TIME_BUDGETED = """\
import os, time
BUDGET = float(os.environ.get("OVERNIGHT_BUDGET_S", 300))
LR = 0.01
print("val_loss:", 1.0)
"""


def _init(cli, repo: Repo, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    result = cli("init", repo.path, "--run", "python train.py", "--editable", "train.py", "--metric", "val_loss")
    assert result.code == 0, result.err
    return result, (repo.path / "overnight.toml").read_text(), (repo.path / "program.md").read_text()


def test_a_script_that_reads_no_budget_is_said_and_its_budget_constants_are_left_out(repo: Repo, cli, monkeypatch):
    repo.write("train.py", FIXED_EPOCHS)
    result, toml, program = _init(cli, repo, monkeypatch)
    assert "budget: train.py does not read OVERNIGHT_BUDGET_S: each experiment runs as long as the script" in result.out
    assert 'float(os.environ.get("OVERNIGHT_BUDGET_S", 300))' in result.out  # what to add
    assert "fixed time budget" not in program and "it reads no time budget" in program
    assert "Keep the amount of training as it is (epochs, steps, iterations)" in program
    assert "which the script does not read yet: it runs to its end" in toml
    config = tomllib.loads(toml)
    assert config["agent"]["tune"]["include"] == ["LR", "WARMUP_STEPS"]  # a schedule knob is no budget
    assert "# left alone: EPOCHS (sets the budget: a fixed budget keeps experiments comparable" in toml
    assert "# left alone: NUM_STEPS (sets the budget" in toml
    assert "tune: left out of the search: EPOCHS, NUM_STEPS (a budget" in result.out
    assert "judge: min_delta = 0.0 keeps any gain the judge can tell from the noise" in result.out
    assert re.search(r"^min_delta = 0\.0 +# 0: any gain the judge can tell from the noise is kept", toml, re.M)


def test_a_script_that_reads_the_budget_is_said_so(repo: Repo, cli, monkeypatch):
    repo.write("train.py", TIME_BUDGETED)
    result, toml, program = _init(cli, repo, monkeypatch)
    assert "budget: train.py reads OVERNIGHT_BUDGET_S: every experiment gets budget_s = 300 seconds" in result.out
    assert "with a fixed time budget (it reads OVERNIGHT_BUDGET_S)" in program
    assert "the experiment's time budget, handed to it as OVERNIGHT_BUDGET_S" in toml


def test_init_aligns_its_comments(repo: Repo, cli, monkeypatch):
    repo.write("train.py", TIME_BUDGETED)
    _, toml, _ = _init(cli, repo, monkeypatch)
    settings = toml.split("[agent.tune]")[0]
    columns = {
        line.index(" # ") for line in settings.splitlines() if re.match(r"^(# )?[a-z_]+ = ", line) and " # " in line
    }
    assert columns == {31}, columns  # every comment starts in one column
