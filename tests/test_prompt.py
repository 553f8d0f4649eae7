"""The brief: program.md verbatim, files at the best, history newest last, all within a budget."""

from __future__ import annotations

from pathlib import Path

from overnight.agents._base import Context
from overnight.agents.prompt import CHARS_PER_TOKEN, brief
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
    assert "- #1 discard loss=1.01 (1 run), +0.01 vs #0's 1 — idea number 1" in text
    assert "- #3 crash — idea number 3\n    why: exited with code 1: boom" in text
    assert text.index("#1 discard") < text.index("#3 crash")  # newest last


def test_a_small_budget_cuts_big_files_and_old_history_and_says_so(tmp_path: Path) -> None:
    text = brief(_context(tmp_path, _history(400)), 6000)
    assert len(text) < 6000 * 4 * 1.2
    assert "are not shown: the file is too long for the prompt" in text
    assert "line_0 = 0" in text and "line_4999 = 4999" in text  # head and tail stay
    assert "older experiments in #" in text and "are not shown one by one: " in text
    assert "idea number 399" in text and "idea number 5\n" not in text


def _many(tmp_path: Path, files: dict[str, str]) -> Context:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    names = tuple(files)
    config = parse_config({"task": {"run": "python t.py", "editable": list(names)}, "metric": {"name": "loss"}})
    return Context(
        experiment_id=0, program="Tune.", config=config, worktree=tmp_path, task_dir=tmp_path, editable=names,
        baseline=1.0, best=1.0, best_commit="c0", history=(), log_path=tmp_path / "a.log",
        brief_path=tmp_path / "b.json",
    )  # fmt: skip


def _lines(count: int) -> str:
    return "".join(f"line_{i} = {i}\n" for i in range(count))


def test_many_long_files_stay_within_the_budget(tmp_path: Path) -> None:
    context = _many(tmp_path, {f"f{i}.py": _lines(400) for i in range(30)})
    text = brief(context, 4000)
    assert len(text) <= 4000 * CHARS_PER_TOKEN  # 2000 characters a file at least made it over 60000
    assert all(f"f{i}.py\n```\nline_0 = 0\n" in text for i in range(30))  # every file shows its head


def test_short_files_hand_what_they_leave_to_long_ones(tmp_path: Path) -> None:
    short = {f"s{i}.py": f"S{i} = 1\n" for i in range(30)}
    text = brief(_many(tmp_path, {**short, "long.py": _lines(20000)}), 30000)
    assert len(text) <= 30000 * CHARS_PER_TOKEN
    assert all(f"{name}\n```\n{body}```" in text for name, body in short.items())  # short files whole
    start = text.index("long.py\n```\n")
    shown = text[start : text.index("\n```\n", start + 10)]
    assert "line_0 = 0" in shown and "line_19999 = 19999" in shown
    # the files get half the budget; long.py holds nearly all of it, not a 31st of it (or 2000 characters)
    assert len(shown) > 0.8 * 30000 * CHARS_PER_TOKEN / 2
