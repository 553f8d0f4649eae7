"""The Ray executor on a real Ray cluster of two nodes on this machine: experiments shipped as
archives, failures retried or refused.

The cluster starts once per test session (`ray start --head`, then a second node joins),
with the time it needs on a busy machine; every run connects to it with --ray-address.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import AGENT, Repo, agent_in, ledger_rows, task_config

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def ray_env() -> dict[str, str]:
    """The environment now, for a cluster of these tests only, on loopback: without Ray's token authentication."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


# With KILL = True, the first attempt of experiment 1 kills the Ray worker running it (as a dying
# node would); later attempts succeed. The Ray workers have the cluster's environment, not the test's,
# so what the script needs is written into it.
KILLER = """\
import os, signal
X = 10
KILL = {kill}
mark = {mark!r}
if KILL and not os.path.exists(mark) and os.environ.get("OVERNIGHT_EXPERIMENT_ID") == "1":
    open(mark, "w").write("x")
    os.kill(int(os.environ["OVERNIGHT_RAY_WORKER_PID"]), signal.SIGKILL)
print("score:", (X - 3) ** 2 + 1)
"""


def _nodes(address: str) -> int:
    status = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True, env=ray_env(),
                            timeout=120)  # fmt: skip
    active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(1 for line in active.splitlines() if line.strip().startswith("1 node_"))


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a two-node Ray cluster on this machine, for the whole session."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    head = [RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard=false"]
    subprocess.run([*head, *common], env=ray_env(), check=True, capture_output=True, timeout=600)
    try:
        subprocess.run([RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common], env=ray_env(),
                       check=True, capture_output=True, timeout=600)  # fmt: skip
        deadline = time.monotonic() + 600
        while _nodes(address) < 2:
            assert time.monotonic() < deadline, "the second Ray node never joined"
            time.sleep(1)
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ray_env(), capture_output=True, timeout=600)


def overnight(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "overnight", *map(str, args)], capture_output=True, text=True, timeout=900, env=ray_env()
    )


def killer(marks: Path, kill: bool) -> str:
    return KILLER.format(kill=kill, mark=str(marks / "killed"))


@pytest.fixture
def ray_task(task: Repo, marks: Path) -> Repo:
    task.write("train.py", killer(marks, kill=False))
    task.commit("ray task")
    return task


def test_a_run_on_a_ray_cluster(ray_task: Repo, plan, ray_cluster: str) -> None:
    plan({"1": [["set", "train.py", "X", "5"]], "2": [["set", "train.py", "X", "8"]]})
    result = overnight("run", ray_task.path, "--tag", "r", "--agent-command", AGENT, "--executor", "ray",
                       "--ray-address", ray_cluster, "--workers", "2", "--max-experiments", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = ledger_rows(ray_task.path, "r")
    statuses = [r["status"] for r in rows]
    assert statuses[0] == "baseline" and "keep" in statuses and len(rows) == 3
    log = (ray_task.path / ".overnight" / "r" / "logs" / "0.log").read_text()
    assert "### overnight: run (experiment 0, seed 0)" in log and "score: 50" in log


def test_a_dead_ray_worker_is_retried(ray_task: Repo, plan, marks: Path, ray_cluster: str) -> None:
    ray_task.write("train.py", killer(marks, kill=True))
    ray_task.commit("kills its Ray worker once")
    plan({"1": [["set", "train.py", "X", "5"]]})
    result = overnight("run", ray_task.path, "--tag", "d", "--agent-command", AGENT, "--executor", "ray",
                       "--ray-address", ray_cluster, "--max-experiments", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = ledger_rows(ray_task.path, "d")
    assert rows[1]["status"] == "keep" and rows[1]["metric"] == 5
    log = (ray_task.path / ".overnight" / "d" / "logs" / "1.log").read_text()
    assert "the Ray worker died" in log and "retrying (1 of 2)" in log


def test_an_experiment_no_node_can_run_is_refused_at_once(ray_task: Repo, ray_cluster: str) -> None:
    ray_task.write("overnight.toml", task_config(extra_task="num_gpus = 1"))
    ray_task.commit("needs a GPU")
    result = overnight("run", ray_task.path, "--agent-command", AGENT, "--executor", "ray",
                       "--ray-address", ray_cluster, "--max-experiments", "1")  # fmt: skip
    assert result.returncode == 2
    assert "no node of the Ray cluster can run an experiment" in result.stderr and "num_gpus = 1" in result.stderr
    assert not (ray_task.path / ".overnight").exists() or not list((ray_task.path / ".overnight").glob("*/ledger.db"))


@pytest.fixture
def plan_dir(outside: Path) -> Path:  # a sandboxed agent does not see the host's /tmp: the plan lies outside it
    return outside


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_sandboxed_task_runs_in_a_sandbox_on_the_ray_worker(
    ray_task: Repo, plan, outside: Path, marks: Path, ray_cluster: str
) -> None:
    probe = outside / "written-from-the-experiment"
    script = killer(marks, kill=False)
    ray_task.write("train.py", script.replace("print(", f"open({str(probe)!r}, 'w') if X < 10 else None\nprint("))
    ray_task.write("overnight.toml", task_config(extra_task='sandbox = "bwrap"'))
    ray_task.commit("sandboxed ray task")
    plan({"1": [["set", "train.py", "X", "5"]]})
    result = overnight("run", ray_task.path, "--tag", "s", "--agent-command", agent_in(outside), "--executor", "ray",
                       "--ray-address", ray_cluster, "--max-experiments", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = ledger_rows(ray_task.path, "s")
    assert rows[0]["status"] == "baseline" and rows[0]["metric"] == 50  # ran in the unpacked commit
    assert rows[1]["status"] == "crash" and "Read-only file system" in rows[1]["reason"]  # the host stays read-only
    assert not probe.exists()


def test_without_an_address_it_starts_a_ray_of_its_own(ray_task: Repo, plan, ray_cluster: str) -> None:
    # A cluster already runs on this machine (the session's): a run without --ray-address must not join it.
    plan({"1": [["set", "train.py", "X", "5"]]})
    result = overnight("run", ray_task.path, "--tag", "own", "--agent-command", AGENT, "--executor", "ray",
                       "--max-experiments", "1")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in ledger_rows(ray_task.path, "own")] == ["baseline", "keep"]
    assert "Connecting to existing Ray cluster" not in result.stderr
