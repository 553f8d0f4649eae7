"""Looking at a run: status, log in three formats, show; and `overnight init`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import AGENT, Repo

JSON_KEYS = {
    "id",
    "status",
    "metric",
    "metrics",
    "hypothesis",
    "commit",
    "parent",
    "agent",
    "reason",
    "duration_s",
    "peak_memory_mb",
    "started_at",
}


@pytest.fixture
def finished(task: Repo, plan, cli) -> Repo:
    plan(
        {
            "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: closer to three"]],
            "2": [["set", "train.py", "X", "9"], ["print", "Hypothesis: too far\tout"]],
            "3": [["write", "helper.py", "VALUE = 9\n"], ["print", "Hypothesis: cheat"]],
        }
    )
    assert cli("run", task.path, "--tag", "v", "--agent-command", AGENT, "--max-experiments", "3").code == 0
    return task


def test_status(finished: Repo, cli) -> None:
    out = cli("status", finished.path).out
    assert "run v  (not running)" in out
    assert "experiments: 3 after the baseline" in out
    assert "baseline:    50" in out
    assert "best:        5  (experiment 1, 2 runs; -45, -90.00% vs baseline)  closer to three" in out
    assert "resume:      overnight run --tag v" in out


def test_log_formats(finished: Repo, cli) -> None:
    table = cli("log", finished.path).out.splitlines()
    assert table[0].split()[:3] == ["id", "status", "score"]
    assert table[2].split()[:4] == ["1", "keep", "5", "-45"]
    tsv = cli("log", finished.path, "--format", "tsv").out.splitlines()
    assert tsv[0] == "commit\tscore\tmemory_gb\tstatus\tdescription"
    fields = tsv[2].split("\t")
    assert len(fields[0]) == 7 and fields[1] == "5.000000" and fields[3] == "keep" and fields[4] == "closer to three"
    assert tsv[3].split("\t")[4] == "too far out"
    assert tsv[4].split("\t")[1] == "" and tsv[4].split("\t")[3] == "rejected"
    rows = json.loads(cli("log", finished.path, "--format", "json").out)
    assert all(set(r) >= JSON_KEYS for r in rows)
    assert rows[1]["commit"] == finished.git("rev-parse", "overnight/v").strip()
    assert rows[1]["agent"] == "command" and rows[0]["agent"] == ""
    assert rows[1]["host"]["cpu"]


def test_show(finished: Repo, cli) -> None:
    out = cli("show", "1", finished.path).out
    assert "experiment 1: keep" in out and "hypothesis:  closer to three" in out
    assert "-X = 10\n+X = 5" in out
    assert "score: 5" in out  # the log's tail
    assert "best before: 50" in out
    rejected = cli("show", "3", finished.path).out
    assert "changed files that are not editable: helper.py" in rejected
    assert "+VALUE = 9" in rejected  # the rejected change is kept as a diff file
    missing = cli("show", "9", finished.path)
    assert missing.code == 5 and "has no experiment 9" in missing.err


def test_most_recent_run_is_the_default(finished: Repo, plan, cli) -> None:
    plan({"*": []})
    assert cli("run", finished.path, "--tag", "w", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    assert "run w " in cli("status", finished.path).out
    assert "run v " in cli("status", finished.path, "--tag", "v").out


def test_init_writes_a_valid_task_and_never_overwrites(repo: Repo, cli, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    result = cli(
        "init",
        repo.path,
        "--run",
        "python train.py",
        "--editable",
        "train.py,model/*.py",
        "--metric",
        "val_bpb",
        "--goal",
        "min",
    )
    assert result.code == 0, result.err
    toml = (repo.path / "overnight.toml").read_text()
    assert 'run = "python train.py"' in toml and 'editable = ["train.py", "model/*.py"]' in toml
    assert "`val_bpb`" in (repo.path / "program.md").read_text()
    (repo.path / "program.md").write_text("mine\n")
    (repo.path / "overnight.toml").unlink()
    again = cli("init", repo.path, "--run", "python other.py", "--editable", "x.py", "--metric", "m")
    assert again.code == 0 and "kept" in again.out
    assert (repo.path / "program.md").read_text() == "mine\n"
    third = cli("init", repo.path, "--run", "a", "--editable", "b", "--metric", "c")
    assert third.code == 2 and "nothing written" in third.err
    assert 'run = "python other.py"' in (repo.path / "overnight.toml").read_text()


def test_init_without_a_terminal_names_the_missing_flags(tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    result = cli("init", tmp_path, "--run", "python x.py")
    assert result.code == 2 and "--editable, --metric" in result.err
    assert not (tmp_path / "overnight.toml").exists()


def test_init_asks_on_a_terminal(tmp_path: Path, cli, monkeypatch) -> None:
    answers = iter(["python fit.py", "fit.py", "acc", "max"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    assert cli("init", tmp_path).code == 0
    toml = (tmp_path / "overnight.toml").read_text()
    assert 'run = "python fit.py"' in toml and 'name = "acc"' in toml and 'goal = "max"' in toml
