"""examples/tinylm: the data are fixed, the evaluation is honest, the trainer prints its summary."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ledger_rows
from overnight.config import load_config
from overnight.executors.metrics import summary_values
from overnight.judge import guards

pytestmark = pytest.mark.slow  # a heavy group: `pytest -m 'not slow'` leaves it out

TINYLM = Path(__file__).parent.parent / "examples" / "tinylm"


@pytest.fixture
def prepare(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(TINYLM))
    import prepare as module

    return module


def test_the_split_is_the_same_bytes_every_time(prepare) -> None:
    train, val = prepare.split()
    again_train, again_val = prepare.split()
    assert prepare.fingerprint(val) == prepare.fingerprint(again_val)
    assert prepare.fingerprint(train) == prepare.fingerprint(again_train)
    assert len(val) >= prepare.VAL_BYTES and abs(len(train) - 9 * len(val)) <= 10


def test_the_evaluation_normalizes_logits_itself(prepare) -> None:
    uniform = prepare.evaluate(lambda ctx: np.zeros((len(ctx), 256)), context=4)
    assert uniform == pytest.approx(8.0)  # 256 equally likely bytes: 8 bits each
    huge = prepare.evaluate(lambda ctx: np.full((len(ctx), 256), 1e6), context=4)
    assert huge == pytest.approx(8.0)  # scaling logits cannot fake confidence
    assert math.isnan(prepare.evaluate(lambda ctx: np.zeros((len(ctx), 255)), context=4))


def test_train_prints_the_summary_block(tmp_path: Path) -> None:
    env = {**os.environ, "OVERNIGHT_BUDGET_S": "3", "OVERNIGHT_SEED": "0"}
    out = subprocess.run(
        [sys.executable, "train.py"], cwd=TINYLM, env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "\n---\n" in "\n" + out
    values = summary_values(out)
    assert set(values) == {
        "val_bpb",
        "training_seconds",
        "total_seconds",
        "peak_memory_mb",
        "num_steps",
        "num_params_M",
    }
    # The example's guards name numbers the trainer prints: its runs can be judged against them.
    assert {g.name for g in guards.parse_all(load_config(TINYLM / "overnight.toml").metric.guards)} <= set(values)
    assert 0 < values["val_bpb"] < 16 and values["num_steps"] > 0  # trained and evaluated, however far it got
    step_s = values["training_seconds"] / values["num_steps"]
    assert values["training_seconds"] <= 3.0 + step_s + 1  # it stops after the step that crossed its budget


def test_train_on_a_fixed_number_of_bytes_takes_that_many_steps() -> None:
    env = {**os.environ, "OVERNIGHT_BUDGET_S": "0.001", "OVERNIGHT_SEED": "0"}  # the time budget is not used
    out = subprocess.run(
        [sys.executable, "train.py", "--bytes", "6400"], cwd=TINYLM, env=env, capture_output=True, text=True, timeout=60
    ).stdout
    values = summary_values(out)
    assert values["num_steps"] == 100 and 0 < values["val_bpb"] < 16  # 6,400 bytes at a batch of 64


def test_the_demo_runs_tinylm_with_the_tune_agent(tmp_path: Path, cli) -> None:
    target = tmp_path / "demo"
    result = cli("demo", target, "--budget", "2", "--max-experiments", "2")
    assert result.code == 0, result.err
    rows = ledger_rows(target, "demo")
    assert [r["agent"] for r in rows] == ["", "tune", "tune"]
    assert rows[0]["status"] == "baseline" and rows[0]["metrics"]["num_steps"] > 0
    assert "budget_s = 2" in (target / "overnight.toml").read_text()
    assert sys.executable in (target / "overnight.toml").read_text()
