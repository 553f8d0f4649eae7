"""The Ray executor on a real local Ray: experiments shipped as archives, failures retried or refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AGENT, Repo, agent_in, ledger_rows, task_config

pytest.importorskip("ray")

# The first attempt kills the Ray worker running it (as a dying node would); later ones succeed.
KILLER = """\
import os, signal
X = 10
mark = os.path.join(os.environ["MARK_DIR"], "killed")
if os.environ.get("KILL_WORKER") and not os.path.exists(mark) and os.environ.get("OVERNIGHT_EXPERIMENT_ID") == "1":
    open(mark, "w").write("x")
    os.kill(int(os.environ["OVERNIGHT_RAY_WORKER_PID"]), signal.SIGKILL)
print("score:", (X - 3) ** 2 + 1)
"""


def overnight(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "overnight", *map(str, args)],
        capture_output=True, text=True, timeout=240, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.fixture
def ray_task(task: Repo, marks: Path) -> Repo:
    task.write("train.py", KILLER)
    task.commit("ray task")
    return task


def test_a_run_on_a_local_ray(ray_task: Repo, plan) -> None:
    plan({"1": [["set", "train.py", "X", "5"]], "2": [["set", "train.py", "X", "8"]]})
    result = overnight("run", ray_task.path, "--tag", "r", "--agent-command", AGENT, "--executor", "ray",
                       "--workers", "2", "--max-experiments", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = ledger_rows(ray_task.path, "r")
    statuses = [r["status"] for r in rows]
    assert statuses[0] == "baseline" and "keep" in statuses and len(rows) == 3
    log = (ray_task.path / ".overnight" / "r" / "logs" / "0.log").read_text()
    assert "### overnight: run (experiment 0, seed 0)" in log and "score: 50" in log


def test_a_dead_ray_worker_is_retried(ray_task: Repo, plan) -> None:
    plan({"1": [["set", "train.py", "X", "5"]]})
    result = overnight("run", ray_task.path, "--tag", "d", "--agent-command", AGENT, "--executor", "ray",
                       "--max-experiments", "1", env={"KILL_WORKER": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = ledger_rows(ray_task.path, "d")
    assert rows[1]["status"] == "keep" and rows[1]["metric"] == 5
    log = (ray_task.path / ".overnight" / "d" / "logs" / "1.log").read_text()
    assert "the Ray worker died" in log and "retrying (1 of 2)" in log


def test_an_experiment_no_node_can_run_is_refused_at_once(ray_task: Repo) -> None:
    ray_task.write("overnight.toml", task_config(extra_task="num_gpus = 1"))
    ray_task.commit("needs a GPU")
    result = overnight("run", ray_task.path, "--agent-command", AGENT, "--executor", "ray", "--max-experiments", "1")
    assert result.returncode == 2
    assert "no node of the Ray cluster can run an experiment" in result.stderr and "num_gpus = 1" in result.stderr
    assert not (ray_task.path / ".overnight").exists() or not list((ray_task.path / ".overnight").glob("*/ledger.db"))


@pytest.fixture
def plan_dir(outside: Path) -> Path:  # a sandboxed agent does not see the host's /tmp: the plan lies outside it
    return outside


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_sandboxed_task_runs_in_a_sandbox_on_the_ray_worker(ray_task: Repo, plan, outside: Path) -> None:
    probe = outside / "written-from-the-experiment"
    ray_task.write("train.py", KILLER.replace("print(", f"open({str(probe)!r}, 'w') if X < 10 else None\nprint("))
    ray_task.write("overnight.toml", task_config(extra_task='sandbox = "bwrap"'))
    ray_task.commit("sandboxed ray task")
    plan({"1": [["set", "train.py", "X", "5"]]})
    result = overnight("run", ray_task.path, "--tag", "s", "--agent-command", agent_in(outside), "--executor", "ray",
                       "--max-experiments", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = ledger_rows(ray_task.path, "s")
    assert rows[0]["status"] == "baseline" and rows[0]["metric"] == 50  # ran in the unpacked commit
    assert rows[1]["status"] == "crash" and "Read-only file system" in rows[1]["reason"]  # the host stays read-only
    assert not probe.exists()
