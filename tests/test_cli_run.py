"""End to end: `overnight run` on a real git repo with real processes reaches every status."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import psutil

from conftest import AGENT, GATE, OUTCOMES_PLAN, Repo, Result, ledger_rows, task_config
from overnight.git import experiment_ref


def test_every_status_in_one_run(
    task: Repo, plan: Callable[..., Path], cli: Callable[..., Result], marks: Path
) -> None:
    task.write("overnight.toml", task_config(timeout=1.5, extra_task="gate = '''" + GATE + "'''"))
    task.commit("gate")
    plan(
        {
            **OUTCOMES_PLAN,
            "8": [["write", "new_module.py", "print(1)\n"]],
            "9": [["print", "giving up"], ["exit", 2]],
            "10": [["print", "Hypothesis: think only"]],
            "11": [["set", "train.py", "VALUE", "'abc'"]],
        }
    )
    before = task.snapshot()
    result = cli("run", task.path, "--tag", "all", "--agent-command", AGENT, "--max-experiments", "11")
    assert result.code == 0, result.err
    rows = ledger_rows(task.path, "all")
    statuses = [r["status"] for r in rows]
    assert statuses == [
        "baseline",
        "keep",
        "discard",
        "crash",
        "timeout",
        "no_metric",
        "gate_failed",
        "rejected",
        "rejected",
        "rejected",
        "no_change",
        "no_metric",
    ]
    assert [r["id"] for r in rows] == list(range(12))
    assert rows[0]["metric"] == 50 and rows[1]["metric"] == 5 and rows[2]["metric"] == 37
    assert rows[1]["hypothesis"] == "move X toward 3"
    assert rows[3]["hypothesis"] == "(no hypothesis given)"
    assert "exited with code 3" in rows[3]["reason"]
    assert "timeout" in rows[4]["reason"] and rows[4]["metric"] is None
    assert "nan" in rows[5]["reason"]
    assert "helper.py" in rows[7]["reason"] and "new_module.py" in rows[8]["reason"]
    assert "exited with code 2" in rows[9]["reason"] and "giving up" in rows[9]["reason"]
    assert "no 'score: <number>' line" in rows[11]["reason"]
    # Secondary metrics and the environment the run got.
    assert rows[0]["metrics"] == {"score": 50.0, "budget": 5.0, "seed": 0.0}

    # The run branch holds the keep; every committed experiment stays reachable.
    assert task.git("rev-parse", "overnight/all").strip() == rows[1]["commit"]
    for row in rows[1:]:
        if row["commit"]:
            assert task.git("rev-parse", experiment_ref("all", row["id"])).strip() == row["commit"]
    committed = {r["id"] for r in rows if r["commit"] and r["id"] > 0}
    assert committed == {1, 2, 3, 4, 5, 6, 11}

    # The timed-out run's process is gone; the user's checkout did not move.
    pid = int((marks / "pid-4").read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert task.snapshot() == before
    assert not (task.path / ".overnight" / "all" / "worktrees" / "w0").exists()
    assert "/.overnight/" in (task.path / ".git" / "info" / "exclude").read_text()


def test_keeps_form_a_chain_on_the_branch(task: Repo, plan, cli) -> None:
    plan(
        {
            "*": [
                [
                    "shell",
                    "python3 -c \"import re;p='train.py';s=open(p).read();x=int(re.search(r'^X = (\\d+)',s,re.M).group(1));open(p,'w').write(s.replace(f'X = {x}',f'X = {x-1}',1))\"",
                ]
            ]
        }
    )
    result = cli("run", task.path, "--tag", "chain", "--agent-command", AGENT, "--max-experiments", "4")
    assert result.code == 0, result.err
    rows = ledger_rows(task.path, "chain")
    assert [r["status"] for r in rows] == ["baseline", "keep", "keep", "keep", "keep"]
    assert [r["metric"] for r in rows] == [50, 37, 26, 17, 10]
    for earlier, later in itertools.pairwise(rows):
        assert later["parent"] == earlier["commit"]
    log = task.git("log", "--format=%s", "overnight/chain").splitlines()
    assert log[:4] == [f"exp {i}: (no hypothesis given)" for i in (4, 3, 2, 1)]
    assert "X = 6" in task.git("show", "overnight/chain:train.py")
    assert "X = 10" in (task.path / "train.py").read_text()


def test_min_delta_and_max_goal(task: Repo, plan, cli) -> None:
    task.write(
        "overnight.toml",
        task_config().replace('goal = "min"', 'goal = "max"').replace("min_delta = 0.0", "min_delta = 5"),
    )
    task.commit("max")
    plan(
        {
            "1": [["set", "train.py", "X", "11"]],
            "2": [["set", "train.py", "X", "15"]],
            "3": [["set", "train.py", "X", "2"]],
        }
    )
    assert cli("run", task.path, "--tag", "mx", "--agent-command", AGENT, "--max-experiments", "3").code == 0
    rows = ledger_rows(task.path, "mx")
    # 50 → 65 (+15 > 5: keep) ; then X=15 from X=11: 145 (+80: keep) ; X=2 → 2 (worse)
    assert [(r["status"], r["metric"]) for r in rows] == [("baseline", 50), ("keep", 65), ("keep", 145), ("discard", 2)]


def test_min_delta_blocks_small_gains(task: Repo, plan, cli) -> None:
    task.write("overnight.toml", task_config().replace("min_delta = 0.0", "min_delta = 20"))
    task.commit("delta")
    plan({"1": [["set", "train.py", "X", "9"]], "2": [["set", "train.py", "X", "5"]]})
    assert cli("run", task.path, "--tag", "md", "--agent-command", AGENT, "--max-experiments", "2").code == 0
    rows = ledger_rows(task.path, "md")
    assert [r["status"] for r in rows] == ["baseline", "discard", "keep"]
    assert "better than the best by 13 (noise unknown), under the threshold 20" in rows[1]["reason"]


def test_task_in_a_subfolder(repo: Repo, plan, cli) -> None:
    repo.write("README", "top\n")
    repo.write("tasks/a/train.py", TRAIN_SUB)
    repo.write("tasks/a/overnight.toml", task_config())
    repo.write("tasks/a/program.md", "x\n")
    repo.write("tasks/b.py", "# outside the task\n")
    repo.commit("sub")
    plan({"1": [["set", "train.py", "X", "4"]], "2": [["write", "../b.py", "# changed\n"]]})
    result = cli("run", repo.path / "tasks" / "a", "--tag", "sub", "--agent-command", AGENT, "--max-experiments", "2")
    assert result.code == 0, result.err
    rows = ledger_rows(repo.path / "tasks" / "a")
    assert [r["status"] for r in rows] == ["baseline", "keep", "rejected"]
    assert "tasks/b.py" in rows[2]["reason"]
    assert (repo.path / ".overnight" / "sub" / "ledger.db").exists()


TRAIN_SUB = "X = 10\nprint('score:', (X - 3) ** 2 + 1)\n"


def test_run_outputs_and_agent_commits_do_not_leak_into_the_next_experiment(repo: Repo, plan, cli) -> None:
    repo.write(
        "train.py",
        "X = 10\nimport os\nos.makedirs('out', exist_ok=True)\nopen('out/run.txt', 'w').write('x')\nprint('score:', (X - 3) ** 2 + 1)\n",
    )
    repo.write("overnight.toml", task_config())
    repo.write("program.md", "x\n")
    repo.commit("task")
    plan(
        {
            # The agent commits its own change on a branch of its own: the harness still sees the whole change.
            "1": [
                ["set", "train.py", "X", "5"],
                ["shell", "git checkout -q -b agent-branch && git commit -qam 'agent commit' --no-verify"],
            ],
            "2": [["set", "train.py", "X", "9"]],
            "3": [["print", "nothing"]],
            "4": [["set", "train.py", "X", "4"]],
        }
    )
    assert cli("run", repo.path, "--tag", "leak", "--agent-command", AGENT, "--max-experiments", "4").code == 0
    rows = ledger_rows(repo.path, "leak")
    assert [r["status"] for r in rows] == ["baseline", "keep", "discard", "no_change", "keep"]
    assert [r["files_changed"] for r in rows[1:]] == [1, 1, 0, 1]
    assert repo.git("rev-parse", f"{rows[1]['commit']}^").strip() == rows[0]["commit"]
    assert repo.git("show", "--stat", "--format=", rows[4]["commit"]).count("|") == 1
    assert repo.git("branch", "--list", "agent-branch").strip() == "agent-branch"  # the agent's own doing, left as is


def test_a_run_gives_up_after_experiments_in_a_row_without_a_measurement(task: Repo, plan, cli) -> None:
    plan({"*": [["set", "train.py", "CRASH", "1"]], "1": [["set", "train.py", "X", "5"]]})
    result = cli(
        "run", task.path, "--tag", "g", "--agent-command", AGENT, "--give-up-after", "3", "--max-experiments", "20"
    )
    assert result.code == 0, result.err
    rows = ledger_rows(task.path, "g")
    assert [r["status"] for r in rows] == ["baseline", "keep", "crash", "duplicate", "duplicate"]
    assert "gave up: the last 3 experiments produced no measurement (the last: duplicate" in result.out


def test_a_protected_folder_of_untracked_data_is_checked_around_every_run(repo: Repo, plan, cli) -> None:
    # The data is made by setup and ignored by git; `protected = ["data"]` covers the folder's files.
    repo.write(".gitignore", "data/\n")
    repo.write(
        "train.py",
        "X = 10\nif X < 10:\n    open('data/labels.csv', 'a').write('forged\\n')\nprint('score:', (X - 3) ** 2 + 1)\n",
    )
    config = task_config(extra_task='setup = "mkdir -p data/sub && echo 1 > data/labels.csv"\nprotected = ["data"]')
    repo.write("overnight.toml", config)
    repo.write("program.md", "x\n")
    repo.commit("task with data")
    plan({"1": [["set", "train.py", "X", "5"]]})
    assert cli("run", repo.path, "--tag", "d", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    row = ledger_rows(repo.path, "d")[1]
    assert row["status"] == "rejected" and "harness changed" in row["reason"] and "data/labels.csv" in row["reason"]


def _data_task(repo: Repo, train: str) -> None:
    """Setup makes data/labels.csv (ignored by git, protected); the run reads it."""
    repo.write(".gitignore", "data/\n")
    repo.write("train.py", train)
    config = task_config(extra_task='setup = "mkdir -p data && echo 1 > data/labels.csv"\nprotected = ["data"]')
    repo.write("overnight.toml", config)
    repo.write("program.md", "x\n")
    repo.commit("task with data")


def test_data_the_agent_changed_is_caught_before_the_run_and_setup_makes_it_again(repo: Repo, plan, cli) -> None:
    _data_task(repo, "X = 10\nprint('score:', (X - 3) ** 2 + int(open('data/labels.csv').read()))\n")
    plan({"1": [["set", "train.py", "X", "5"], ["shell", "echo -50 > data/labels.csv"]],
          "2": [["set", "train.py", "X", "4"]]})  # fmt: skip
    assert cli("run", repo.path, "--tag", "a", "--agent-command", AGENT, "--max-experiments", "2").code == 0
    rows = ledger_rows(repo.path, "a")
    assert rows[1]["status"] == "rejected" and rows[1]["metric"] is None
    assert rows[1]["reason"].startswith("harness changed before the run: protected files (data/labels.csv)")
    assert (rows[2]["status"], rows[2]["metric"]) == ("keep", 2)  # setup made the data (1) again


def test_a_run_that_changes_the_harness_and_then_crashes_is_rejected(repo: Repo, plan, cli) -> None:
    _data_task(repo, "X = 10\nif X < 10:\n    open('data/labels.csv', 'w').write('0')\n    raise SystemExit(1)\n"
               "print('score:', (X - 3) ** 2)\n")  # fmt: skip
    plan({"1": [["set", "train.py", "X", "5"]]})
    assert cli("run", repo.path, "--tag", "c", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    row = ledger_rows(repo.path, "c")[1]
    assert (
        row["status"] == "rejected"
        and "harness changed: the run changed protected files (data/labels.csv)" in row["reason"]
    )
