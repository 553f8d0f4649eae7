"""Bad input: one clear message, a non-zero exit, and the user's repository as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import AGENT, Repo, git, task_config


def _no_run_state(repo: Repo) -> bool:
    branches = repo.git("branch", "--list", "overnight/*").strip()
    state = repo.path / ".overnight"
    return not branches and (not state.exists() or not any(state.glob("*/ledger.db")))


def test_not_a_git_repo(tmp_path: Path, cli) -> None:
    (tmp_path / "overnight.toml").write_text(task_config())
    (tmp_path / "program.md").write_text("x")
    result = cli("run", tmp_path, "--agent-command", "true")
    assert result.code == 4
    assert "not inside a git repository" in result.err and "git init" in result.err


def test_no_commits_yet(repo: Repo, cli) -> None:
    repo.write("train.py", "print('score: 1')\n")
    repo.write("overnight.toml", task_config())
    repo.write("program.md", "x")
    result = cli("run", repo.path, "--agent-command", "true")
    assert result.code == 2  # the editable glob matches no committed file
    assert "'train.py' matches no committed file" in result.err and "commit it" in result.err


def test_missing_config(repo: Repo, cli) -> None:
    result = cli("run", repo.path, "--agent-command", "true")
    assert result.code == 2
    assert "overnight.toml: not found" in result.err and "overnight init" in result.err


def test_missing_program(task: Repo, cli) -> None:
    (task.path / "program.md").unlink()
    task.commit("no program")
    result = cli("run", task.path, "--agent-command", "true")
    assert result.code == 2 and "program.md: not found" in result.err


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda t: t.replace("[judge]", "[judge]\nmin_delt = 1"),
            "[judge] min_delt: unknown key; valid keys are: min_delta",
        ),
        (
            lambda t: t.replace('goal = "min"', 'goal = "minimize"'),
            '[metric] goal: expected "min" or "max", got \'minimize\'',
        ),
        (lambda t: t.replace("budget_s = 5", 'budget_s = "5"'), "[task] budget_s: expected a number, got '5'"),
        (
            lambda t: t.replace("[judge]", "[jugde]"),
            "[jugde]: unknown table; valid tables are: task, metric, judge, agent",
        ),
        (lambda t: t.replace("[task]", "[task\n"), "not valid TOML"),
        (lambda t: t.replace('name = "score"', 'name = ""'), "[metric] name: required"),
        (
            lambda t: t + '\n[agent]\napi = "grpc"\n',
            '[agent] api: expected "auto", "chat" or "responses", got \'grpc\'',
        ),
    ],
)
def test_malformed_config(task: Repo, cli, change, expected: str) -> None:
    path = task.path / "overnight.toml"
    path.write_text(change(path.read_text()))
    task.commit("bad config")
    result = cli("run", task.path, "--agent-command", "true")
    assert result.code == 2
    assert expected in result.err
    assert str(path) in result.err
    assert _no_run_state(task)


def test_glob_matching_nothing(task: Repo, cli) -> None:
    task.write("overnight.toml", task_config().replace('editable = ["train.py"]', 'editable = ["trian.py"]'))
    task.commit("typo")
    result = cli("run", task.path, "--agent-command", "true")
    assert result.code == 2 and "'trian.py' matches no committed file" in result.err
    assert _no_run_state(task)


def test_run_command_that_does_not_exist(task: Repo, cli) -> None:
    task.write("overnight.toml", task_config().replace('run = "', 'run = "no-such-program-xyz '))
    task.commit("bad command")
    result = cli("run", task.path, "--agent-command", "true")
    assert result.code == 2
    assert "'no-such-program-xyz' is not a command here" in result.err
    assert _no_run_state(task)


def test_agent_command_that_does_not_exist(task: Repo, cli) -> None:
    result = cli("run", task.path, "--agent-command", "no-such-agent-xyz --go")
    assert result.code == 2 and "--agent-command: 'no-such-agent-xyz'" in result.err
    assert _no_run_state(task)


def test_unknown_agent_kind(task: Repo, cli) -> None:
    result = cli("run", task.path, "--agent", "gpt-9")
    assert result.code == 2 and "invalid choice: 'gpt-9'" in result.err
    for kind in ("aider", "anthropic", "claude", "codex", "command", "gemini", "openai", "opencode", "tune"):
        assert kind in result.err
    assert _no_run_state(task)
    task.write("overnight.toml", task.path.joinpath("overnight.toml").read_text() + '\n[agent]\nkind = "gpt-9"\n')
    task.commit("a kind that does not exist")
    result = cli("run", task.path)
    assert result.code == 2 and "[agent] kind: unknown agent kind 'gpt-9'; valid kinds are: tune, command" in result.err
    assert _no_run_state(task)


def test_command_agent_without_a_command(task: Repo, cli) -> None:
    result = cli("run", task.path, "--agent", "command")
    assert result.code == 2 and "--agent-command" in result.err


def test_dirty_tree_is_refused_and_left_alone(task: Repo, cli) -> None:
    (task.path / "train.py").write_text("X = 3\n")
    (task.path / "helper.py").write_text("changed\n")
    git(task.path, "add", "helper.py")
    before = task.snapshot()
    result = cli("run", task.path, "--agent-command", "true")
    assert result.code == 4
    assert "uncommitted changes" in result.err and "train.py" in result.err and "helper.py" in result.err
    assert task.snapshot() == before
    assert _no_run_state(task)


def test_untracked_files_do_not_block_a_run(task: Repo, plan, cli) -> None:
    task.write("notes.txt", "mine\n")
    plan({"*": []})
    result = cli("run", task.path, "--agent-command", AGENT, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert (task.path / "notes.txt").read_text() == "mine\n"


def test_baseline_without_the_metric_stops_the_run(task: Repo, cli) -> None:
    task.write("train.py", "print('loss: 3')\n")
    task.write("data.csv", "uncommitted\n")
    git(task.path, "add", "train.py")
    git(task.path, "commit", "-q", "-m", "prints the wrong metric")
    before = task.snapshot()
    result = cli("run", task.path, "--tag", "broken", "--agent-command", "true")
    assert result.code == 3
    assert "baseline (experiment 0, the unchanged code) did not produce the metric 'score'" in result.err
    assert "no 'score: <number>' line in the output" in result.err
    assert "loss: 3" in result.err  # the log's tail is shown
    assert "data.csv" in result.err  # uncommitted task files are pointed out
    assert "the run was removed again" in result.err and "--keep-failed" in result.err
    assert task.snapshot() == before
    # nothing of the run is left: no branch, no refs, no state folder, no worktree
    assert task.git("for-each-ref", "refs/heads/overnight", "refs/overnight") == ""
    assert not (task.path / ".overnight" / "broken").exists()
    assert task.git("worktree", "list").count("\n") == 1
    # asked to, it keeps them for a look
    kept = cli("run", task.path, "--tag", "broken", "--agent-command", "true", "--keep-failed")
    assert kept.code == 3 and "removed again" not in kept.err
    status = cli("status", task.path, "--tag", "broken")
    assert "no_metric" in status.out
    assert task.git("rev-parse", "overnight/broken").strip() == task.git("rev-parse", "HEAD").strip()


def test_branch_exists_without_run_state(task: Repo, cli) -> None:
    task.git("branch", "overnight/taken")
    result = cli("run", task.path, "--tag", "taken", "--agent-command", "true")
    assert result.code == 5 and "choose another --tag" in result.err


@pytest.mark.parametrize("tag", ["has space", "../up", "-dash", "x" * 65])
def test_invalid_tag(task: Repo, cli, tag: str) -> None:
    result = cli("run", task.path, f"--tag={tag}", "--agent-command", "true")
    assert result.code == 2 and "invalid tag" in result.err


def test_invalid_max_time(task: Repo, cli) -> None:
    result = cli("run", task.path, "--agent-command", "true", "--max-time", "8 hours")
    assert result.code == 2 and "invalid duration" in result.err


def test_looking_at_runs_that_do_not_exist(task: Repo, cli) -> None:
    result = cli("status", task.path)
    assert result.code == 5 and "no runs of the task" in result.err
    result = cli("log", task.path, "--tag", "nope")
    assert result.code == 5 and "no run with tag 'nope'" in result.err


@pytest.mark.parametrize(
    ("table", "setting"),
    [("task", "timeout_s = nan"), ("task", "memory_mb = nan"), ("task", "max_diff_mb = nan"),
     ("task", "max_log_mb = nan"), ("task", "budget_s = inf"), ("judge", "min_delta = -inf"),
     ("judge", "wait_for_quiet_s = nan"), ("agent", "timeout_s = inf")],
)  # fmt: skip
def test_a_number_that_is_not_finite_is_refused_by_name(task: Repo, cli, table: str, setting: str) -> None:
    # TOML has nan and inf; either one switched a limit off without a word (or was a traceback).
    path = task.path / "overnight.toml"
    key = setting.split(" =")[0]
    lines = path.read_text().splitlines()
    if f"[{table}]" not in lines:
        lines.append(f"[{table}]")
    start = lines.index(f"[{table}]")
    same = [i for i in range(start + 1, len(lines)) if lines[i].startswith(f"{key} =")][:1]  # the template's own
    at = same[0] if same else start + 1
    lines[at : at + len(same)] = [setting]
    path.write_text("\n".join(lines) + "\n")
    task.commit("a limit that is not a number")
    result = cli("run", task.path, "--agent-command", "true")
    assert result.code == 2, result.err
    assert f"[{table}] {key}: expected a finite number" in result.err and str(path) in result.err
    assert _no_run_state(task)


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [("--max-cost-usd", "nan", "expected a finite number"), ("--agent-timeout", "inf", "expected a finite number"),
     ("--max-cost-usd", "lots", "expected a number"), ("--gpus", "x", "expected GPU ids"),
     ("--gpus", "0,,one", "expected GPU ids")],
)  # fmt: skip
def test_a_flag_that_is_not_a_number_is_refused_by_name(task: Repo, cli, flag: str, value: str, says: str) -> None:
    result = cli("run", task.path, "--agent-command", "true", f"{flag}={value}")
    assert result.code == 2 and flag in result.err and says in result.err
    assert _no_run_state(task)


def test_gpu_ids_may_be_indices_or_uuids() -> None:
    from overnight.cli.grammar import gpus

    assert gpus("0, 1,2") == "0,1,2"
    assert gpus("GPU-8f2c1a9e-0000-1111-2222-333344445555,MIG-1") == "GPU-8f2c1a9e-0000-1111-2222-333344445555,MIG-1"


def test_a_cost_budget_for_an_agent_that_reports_no_cost_is_refused(task: Repo, cli) -> None:
    result = cli("run", task.path, "--agent-command", "true", "--max-cost-usd", "5")
    assert result.code == 2 and "--max-cost-usd cannot be kept: the command agent reports no cost" in result.err
    assert _no_run_state(task)
