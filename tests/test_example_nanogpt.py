"""examples/nanogpt: the baseline trains within its budget and prints the summary block;
the data and the evaluation are fixed. Skipped only where PyTorch is not installed."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

torch = pytest.importorskip("torch")

from overnight.agents.tune import find_constants  # noqa: E402
from overnight.config import load_config  # noqa: E402

pytestmark = pytest.mark.slow  # a heavy group: `pytest -m 'not slow'` leaves it out

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nanogpt"
BUDGET_S = 12
FIELDS = ("val_bpb", "training_seconds", "total_seconds", "peak_memory_mb", "num_steps", "num_params_M")


SLOW_TORCH = """\
import sys, time


class SlowTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            time.sleep({seconds})
        return None  # the usual finders find it


sys.meta_path.insert(0, SlowTorch())
"""


def load_prepare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nanogpt_prepare", EXAMPLE / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_trains_within_its_budget_and_prints_the_summary(tmp_path: Path) -> None:
    task = tmp_path / "nanogpt"
    shutil.copytree(EXAMPLE, task, ignore=shutil.ignore_patterns("__pycache__"))
    # `import torch` slower than the whole budget (a busy machine): sitecustomize makes the import sleep.
    # The budget counts from after the imports, so the run still trains.
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_TORCH.format(seconds=BUDGET_S + 1))
    path = os.pathsep.join(p for p in (str(slow), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OVERNIGHT_BUDGET_S": str(BUDGET_S), "OVERNIGHT_SEED": "0", "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, "train.py"], cwd=task, env=env, capture_output=True, text=True, timeout=12 * BUDGET_S
    )
    assert result.returncode == 0, result.stdout + result.stderr

    lines = result.stdout.splitlines()
    assert "---" in lines, result.stdout
    block = lines[len(lines) - 1 - lines[::-1].index("---") + 1 :]
    summary = {}
    for line in block:
        match = re.fullmatch(r"([a-z_A-Z]+):( +)(\S+)", line)
        assert match, f"not a summary line: {line!r}"
        assert len(match.group(1)) + 1 + len(match.group(2)) == 18, f"values start at column 18: {line!r}"
        summary[match.group(1)] = float(match.group(3))
    expected = FIELDS if not torch.cuda.is_available() else (*FIELDS[:4], "peak_vram_mb", *FIELDS[4:])
    assert tuple(summary) == expected, block

    # How far it trains in 12 s depends on the machine and its load: only that it trained and was evaluated.
    # Importing torch (seconds on a busy machine) is not counted in the budget, and the first step is taken
    # whatever is left: a slow import cannot leave it with no step.
    assert re.search(r"\| startup \d+\.\ds", result.stdout), result.stdout
    assert math.isfinite(summary["val_bpb"]) and 0 < summary["val_bpb"] < 16
    assert summary["num_steps"] > 0 and summary["num_steps"] == int(summary["num_steps"])
    step_s = summary["training_seconds"] / summary["num_steps"]
    assert 0 < summary["training_seconds"] <= BUDGET_S + step_s + 1  # it stops after the step that crossed the budget
    assert summary["total_seconds"] >= summary["training_seconds"]
    assert summary["peak_memory_mb"] > 0 and summary["num_params_M"] > 0


def test_the_validation_split_is_fixed_and_held_out() -> None:
    first = load_prepare()
    val, checksum = first.val_bytes(), first.val_checksum()
    first.corpus_bytes.cache_clear()
    again = load_prepare()  # a fresh module: the corpus is read again from the standard library
    assert again.val_bytes() == val and again.val_checksum() == checksum
    assert len(val) == again.VAL_BYTES and len(val) > again.EVAL_TOKENS

    train, held_out = again.load_data()
    corpus = again.corpus_bytes()
    assert bytes(held_out.tolist()) == val
    assert train.numel() + held_out.numel() == len(corpus) and corpus.endswith(val)


def test_the_evaluation_is_exact_and_deterministic() -> None:
    prepare = load_prepare()

    class Uniform(torch.nn.Module):
        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*idx.shape, prepare.VOCAB_SIZE)

    # Every byte equally likely is 8 bits per byte, whatever the window length.
    for block_size in (1000, 128):
        assert prepare.evaluate(Uniform(), block_size) == pytest.approx(8.0, abs=1e-6)

    class Bigram(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.table = torch.nn.Embedding(prepare.VOCAB_SIZE, prepare.VOCAB_SIZE)

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.table(idx)

    model = Bigram()
    assert prepare.evaluate(model, 256) == prepare.evaluate(model, 256)
    assert prepare.evaluate(model, 256) == pytest.approx(prepare.evaluate(model, 100), rel=1e-5)  # no context used


def test_the_tune_agent_finds_every_hyperparameter_it_is_told_to_tune() -> None:
    config = load_config(EXAMPLE / "overnight.toml")
    assert config.task.editable == ("train.py",)
    found = {c.name: c.value for c in find_constants((EXAMPLE / "train.py").read_text(), "train.py")}
    tune = config.agent.tune
    assert tune.include and set(tune.include) <= set(found)
    for name, (low, high) in tune.ranges.items():
        assert name in tune.include and low <= found[name] <= high, name
