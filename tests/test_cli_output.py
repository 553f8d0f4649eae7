"""What the command line prints: help, defaults, quiet broken pipes, quoted paths, clear messages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import AGENT, Repo, git, tune_task
from overnight.agents import AGENTS
from overnight.choices import AGENT_KINDS


def overnight(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overnight", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_overnight_alone_prints_its_help() -> None:
    result = overnight()
    assert result.returncode == 0 and "usage: overnight" in result.stdout and "run" in result.stdout


def test_run_help_lists_the_agent_kinds_and_every_default() -> None:
    text = " ".join(overnight("run", "--help").stdout.split())
    assert "tune, command, openai, anthropic, claude, codex, gemini, opencode, aider" in text
    for flag in ("--workers", "--agent-retries", "--give-up-after", "--executor", "--max-experiments"):
        after = text.split(flag, 2)[-1]
        assert "default" in after.split(" --")[0], flag
    assert "table (default)" in " ".join(overnight("log", "--help").stdout.split())


def test_the_agent_kinds_are_the_registry() -> None:
    assert set(AGENT_KINDS) == set(AGENTS)


def test_a_broken_pipe_ends_quietly(task: Repo, plan, cli) -> None:
    plan({"*": [["set", "train.py", "X", "5"]]})
    assert cli("run", task.path, "--tag", "p", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    for args in (["log", task.path, "--format", "json"], ["show", "1", task.path]):
        proc = subprocess.Popen([sys.executable, "-m", "overnight", *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(5)
        proc.stdout.close()  # the reader goes away, as `head` does
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0 and "Broken pipe" not in err, err


def test_printed_commands_quote_paths_with_spaces(tmp_path: Path, plan, cli) -> None:
    spaced = tmp_path / "my task"
    spaced.mkdir()
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@e"], ["config", "user.name", "T"]):
        git(spaced, *args)
    (spaced / "train.py").write_text("X = 10\nprint('score:', (X - 3) ** 2 + 1)\n")
    (spaced / "overnight.toml").write_text(
        f'[task]\nrun = "{sys.executable} train.py"\neditable = ["train.py"]\n\n[metric]\nname = "score"\n'
    )
    (spaced / "program.md").write_text("Lower it.\n")
    git(spaced, "add", "-A")
    git(spaced, "commit", "-q", "-m", "task")
    plan({"*": [["set", "train.py", "X", "5"]]})
    result = cli("run", spaced, "--tag", "q", "--agent-command", AGENT, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert f"resume:   overnight run '{spaced}' --tag q" in result.out
    assert f"resume:      overnight run '{spaced}' --tag q" in cli("status", spaced).out


def test_plain_output_announces_what_runs_by_the_budget_only_where_the_script_reads_it(repo: Repo, cli) -> None:
    # budget_s = 5: runs that read it take 5 s, and the plain output says "#N running" as each starts. A script
    # that does not read it runs for as long as it runs (here a fraction of a second): its runs are announced
    # only while the last one took 5 s or more, or before any finished (the baseline), as the live view on a
    # terminal shows such runs by the time they take, not by a budget.
    tune_task(repo, "X = 10\nprint('score:', (X - 3) ** 2 + 1)\n")
    unread = cli("run", repo.path, "--tag", "unread", "--max-experiments", "3")
    assert unread.code == 0, unread.err
    assert "train.py does not read OVERNIGHT_BUDGET_S" in unread.out
    assert re.findall(r"^#(\d+) +running ", unread.out, re.MULTILINE) == ["0"], unread.out
    assert len(re.findall(r"^#\d+ +(?:keep|discard) ", unread.out, re.MULTILINE)) == 3, unread.out
    repo.write("train.py", "import os\nBUDGET_S = float(os.environ['OVERNIGHT_BUDGET_S'])\nX = 10\n"
               "print('score:', (X - 3) ** 2 + 1)\n")  # fmt: skip
    repo.commit("the script reads its budget")
    read = cli("run", repo.path, "--tag", "read", "--max-experiments", "3")
    assert read.code == 0, read.err
    assert re.findall(r"^#(\d+) +running ", read.out, re.MULTILINE) == ["0", "1", "2", "3"], read.out


def test_a_bare_repository_is_named_as_such(tmp_path: Path, cli) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    result = cli("status", bare)
    assert result.code == 4 and "is a bare git repository" in result.err


def test_the_demo_commits_as_the_user_when_git_knows_one(tmp_path: Path, monkeypatch) -> None:
    from overnight.cli import demo

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (home / ".gitconfig").write_text("[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n")
    target = demo.prepare("quickstart", tmp_path / "mine")
    assert git(target, "log", "-1", "--format=%an <%ae>").strip() == "Ada Lovelace <ada@example.com>"
    local = subprocess.run(["git", "config", "--local", "--get-regexp", "user"], cwd=target, capture_output=True)
    assert local.stdout == b""  # no stand-in written over the user's identity
    (home / ".gitconfig").unlink()  # no identity anywhere: a stand-in, or git could not commit at all
    target = demo.prepare("quickstart", tmp_path / "anyone")
    assert git(target, "log", "-1", "--format=%an").strip() == "overnight demo"
    assert os.environ["HOME"] == str(home)
