"""The brief: program.md verbatim, files at the best, history newest last, all within a budget."""

from __future__ import annotations

from pathlib import Path

from overnight.agents._base import Context
from overnight.agents.prompt import brief
from overnight.config import parse_config
from overnight.records import Experiment, Status

CONFIG = parse_config({"task": {"run": "python t.py", "editable": ["t.py", "big.py"]}, "metric": {"name": "loss"}})


def _context(tmp_path: Path, history: list[Experiment]) -> Context:
    (tmp_path / "t.py").write_text("LR = 0.1\n")
    (tmp_path / "big.py").write_text("".join(f"line_{i} = {i}\n" for i in range(5000)))
    return Context(
        experiment_id=len(history), program="Find the best LR.\nDo not touch eval.py.", config=CONFIG,
        worktree=tmp_path, task_dir=tmp_path, editable=("t.py", "big.py"), baseline=1.0, best=0.8,
        best_commit="c0", history=tuple(history), log_path=tmp_path / "a.log", brief_path=tmp_path / "b.json",
    )  # fmt: skip


def _history(n: int) -> list[Experiment]:
    rows = [Experiment(id=0, status=Status.BASELINE, commit="c0", metric=1.0, hypothesis="baseline")]
    for i in range(1, n):
        status = Status.CRASH if i % 3 == 0 else Status.DISCARD
        rows.append(Experiment(id=i, status=status, parent="c0", commit=f"c{i}", metric=None if status is Status.CRASH
                               else 1.0 + i / 100, hypothesis=f"idea number {i}", reason="exited with code 1: boom"))  # fmt: skip
    return rows


def test_the_brief_holds_what_the_agent_needs(tmp_path: Path) -> None:
    text = brief(_context(tmp_path, _history(4)), 30000)
    assert "Find the best LR.\nDo not touch eval.py." in text
    assert "`python t.py`" in text and "`loss` (lower is better)" in text
    assert "baseline (the unchanged code): 1\n- current best: 0.8" in text
    assert "t.py\n```\nLR = 0.1\n```" in text
    assert "- #1 discard loss=1.01 (+0.01 vs its parent): idea number 1" in text
    assert "- #3 crash: idea number 3 [exited with code 1: boom]" in text
    assert text.index("#1 discard") < text.index("#3 crash")  # newest last


def test_a_small_budget_cuts_big_files_and_old_history_and_says_so(tmp_path: Path) -> None:
    text = brief(_context(tmp_path, _history(400)), 6000)
    assert len(text) < 6000 * 4 * 1.2
    assert "are not shown: the file is too long for the prompt" in text
    assert "line_0 = 0" in text and "line_4999 = 4999" in text  # head and tail stay
    assert "older experiments are not shown)" in text
    assert "idea number 399" in text and "idea number 5\n" not in text
