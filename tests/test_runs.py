"""The runs of a task: `overnight runs`, status naming the others, errors naming --tag, and a run
whose agent cannot work never becoming the newest run."""

from __future__ import annotations

import json

import pytest

from conftest import AGENT, Repo


@pytest.fixture
def two_runs(task: Repo, plan, cli) -> Repo:
    """A run "night" that kept a change, then a newer run "badtry" that kept nothing."""
    plan({"1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: closer to three"]]})
    assert cli("run", task.path, "--tag", "night", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    plan({"*": [["set", "train.py", "X", "30"], ["print", "Hypothesis: far away"]]})
    assert cli("run", task.path, "--tag", "badtry", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    return task


def test_runs_lists_every_run_with_its_counts_best_and_state(two_runs: Repo, cli) -> None:
    result = cli("runs", two_runs.path)
    assert result.code == 0, result.err
    rows = result.out.splitlines()
    assert rows[0].split() == ["tag", "started", "(UTC)", "state", "experiments", "kept", "best"]
    night, bad = rows[1].split(), rows[2].split()
    assert night[0] == "night" and night[3:6] == ["finished", "1", "1"]
    assert "5 (mean of 2 runs), -45, -90.00% vs baseline" in rows[1]
    assert bad[0] == "badtry" and bad[3:6] == ["finished", "1", "0"] and "the baseline, 50" in rows[2]
    assert "take the most recent run (badtry) unless --tag names another" in result.out
    listed = json.loads(cli("runs", two_runs.path, "--format", "json").out)
    assert [(r["tag"], r["experiments"], r["kept"], r["state"]) for r in listed] == [
        ("night", 1, 1, "finished"),
        ("badtry", 1, 0, "finished"),
    ]


def test_a_run_stopped_by_its_agent_is_stopped_not_finished(task: Repo, plan, cli) -> None:
    plan({"*": [["exit", 1]]})
    cli(
        "run", task.path, "--tag", "broken", "--agent-command", AGENT, "--max-experiments", "20", "--give-up-after", "2"
    )
    out = cli("runs", task.path).out
    assert out.splitlines()[1].split()[:4] == ["broken", *out.splitlines()[1].split()[1:3], "stopped"]
    status = cli("status", task.path).out
    assert "run broken  (stopped: gave up: the last 2 experiments produced no measurement" in status


def test_status_names_the_other_runs_and_how_to_pick_one(two_runs: Repo, cli) -> None:
    out = cli("status", two_runs.path).out
    assert "experiments: 1 after the baseline, 0 kept;" in out
    assert (
        "other runs:  run badtry is the most recent run of the task; other runs: night "
        "(`overnight runs` lists them; pick one with --tag TAG)" in out
    )
    chosen = cli("status", two_runs.path, "--tag", "night").out
    assert "this is run night; other runs: badtry" in chosen


def test_an_error_about_the_most_recent_run_names_the_others_and_tag(two_runs: Repo, cli) -> None:
    result = cli("finalize", two_runs.path)
    assert result.code != 0
    assert "run badtry is the most recent run of the task; other runs: night" in result.err
    assert "pick one with --tag TAG" in result.err
    named = cli("finalize", two_runs.path, "--tag", "badtry")
    assert named.code == result.code and "other runs" not in named.err  # --tag said which: nothing to add


def test_a_single_run_adds_no_note(task: Repo, plan, cli) -> None:
    plan({"1": [["set", "train.py", "X", "5"]]})
    assert cli("run", task.path, "--tag", "only", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    assert "other runs" not in cli("status", task.path).out
    assert len(cli("runs", task.path).out.splitlines()) == 3  # header, the run, which one commands take
