"""The Ray executor on a real Ray cluster of two nodes on this machine: experiments shipped as
git objects, failures retried or refused, and the local guarantees kept on the nodes (credentials
scrubbed, --gpus and Ray's GPUs, setup once per checkout, no orphan, a bounded wait for a node).

The cluster starts once per test session (`ray start --head`, then a second node joins),
with the time it needs on a busy machine; every run connects to it with --ray-address.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import AGENT, Repo, agent_in, ledger_rows, task_config

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


# A credential every node of the session's cluster has in its environment: no experiment may see it.
NODE_SECRET = ("OVERNIGHT_TEST_SERVICE_TOKEN", "node-secret-value-4242")
NODE_CACHE = Path(tempfile.mkdtemp(prefix="overnight-ray-cache-"))  # where the nodes keep runs' checkouts


def ray_env() -> dict[str, str]:
    """The environment now, for a cluster of these tests only, on loopback: without Ray's token authentication."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def node_env() -> dict[str, str]:
    """The environment the cluster's nodes start with: a credential among it."""
    return {**ray_env(), NODE_SECRET[0]: NODE_SECRET[1], "OVERNIGHT_RAY_CACHE": str(NODE_CACHE)}


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


def _nodes(address: str) -> set[str]:
    """The ids of the cluster's active nodes, as `ray status` lists them."""
    status = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True, env=ray_env(),
                            timeout=120)  # fmt: skip
    active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return {line.split()[1] for line in active.splitlines() if line.strip().startswith("1 node_")}


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a two-node Ray cluster on this machine, for the whole session."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    head = [RAY, "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1", "--include-dashboard=false"]
    subprocess.run([*head, *common], env=node_env(), check=True, capture_output=True, timeout=600)
    try:
        subprocess.run([RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1", *common], env=node_env(),
                       check=True, capture_output=True, timeout=600)  # fmt: skip
        deadline = time.monotonic() + 600
        while len(_nodes(address)) < 2:
            assert time.monotonic() < deadline, "the second Ray node never joined"
            time.sleep(1)
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ray_env(), capture_output=True, timeout=600)
        shutil.rmtree(NODE_CACHE, ignore_errors=True)


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
    assert statuses[0] == "baseline" and "keep" in statuses and len(rows) == 3, [r["reason"] for r in rows]
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
    ray_task.write("overnight.toml", task_config(extra_task="num_gpus = 64"))
    ray_task.commit("needs a GPU")
    result = overnight("run", ray_task.path, "--agent-command", AGENT, "--executor", "ray",
                       "--ray-address", ray_cluster, "--max-experiments", "1")  # fmt: skip
    assert result.returncode == 2
    assert "no node of the Ray cluster can run an experiment" in result.stderr and "num_gpus = 64" in result.stderr
    assert not (ray_task.path / ".overnight").exists() or not list((ray_task.path / ".overnight").glob("*/ledger.db"))


def test_a_controller_outside_the_cluster_is_refused_with_what_to_do_instead(ray_task: Repo) -> None:
    result = overnight("run", ray_task.path, "--agent-command", AGENT, "--executor", "ray",
                       "--ray-address", "ray://203.0.113.7:10001", "--max-experiments", "1")  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "a controller outside the cluster (Ray Client, ray://) is not supported" in result.stderr
    assert "--ray-address auto" in result.stderr
    assert not list((ray_task.path / ".overnight").glob("*/ledger.db"))


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


# What an experiment on a node sees, one JSON line per measurement: its GPUs, whether the node's
# credential reached it, whether setup's data (ignored by git) is there.
SPY = """\
import json, os
X = 10
seen = {{
    "id": os.environ["OVERNIGHT_EXPERIMENT_ID"],
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
    "secret": {secret!r} in os.environ.values(),
    "made": os.path.exists("made-by-setup"),
}}
open({out!r}, "a").write(json.dumps(seen) + "\\n")
print("score:", (X - 3) ** 2 + 1)
"""
THREE_KEEPS = {str(i): [["set", "train.py", "X", str(6 - i)]] for i in (1, 2, 3)}
SETUP = "open('made-by-setup', 'w').write('data'); open({count!r}, 'a').write('setup\\n')\n"


def spy_task(task: Repo, marks: Path, extra_task: str = "") -> Path:
    seen = marks / "seen.jsonl"
    task.write("train.py", SPY.format(secret=NODE_SECRET[1], out=str(seen)))
    task.write("setup.py", SETUP.format(count=str(marks / "setups")))
    task.write(".gitignore", "made-by-setup\n")
    task.write("overnight.toml", task_config(extra_task=f'setup = "{sys.executable} setup.py"\n{extra_task}'))
    task.commit("a task that reports what it sees on the node")
    return seen


def seen_by(seen: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in seen.read_text().splitlines()]


def test_nodes_keep_the_local_guarantees_credentials_gpus_and_setup_once(
    task: Repo, plan, marks: Path, ray_cluster: str
) -> None:
    seen = spy_task(task, marks)
    plan(THREE_KEEPS)
    result = overnight("run", task.path, "--tag", "g", "--agent-command", AGENT, "--executor", "ray",
                       "--ray-address", ray_cluster, "--gpus", "3", "--max-experiments", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in ledger_rows(task.path, "g")] == ["baseline", "keep", "keep", "keep"]
    runs = seen_by(seen)
    assert len(runs) >= 4  # the judge may measure a keep again
    assert not any(r["secret"] for r in runs)  # the node's credential never reaches an experiment
    assert {r["cuda"] for r in runs} == {"3"}  # the slot's GPU (--gpus) travels with each measurement
    assert all(r["made"] for r in runs)  # setup's data is where the run looks for it
    setups = (marks / "setups").read_text().split()
    assert 1 <= len(setups) <= 2 < len(runs)  # once per checkout on a node (two nodes), not per measurement
    assert not list(NODE_CACHE.iterdir())  # the nodes removed the run's checkouts when it ended
    # Ray's own lines (its start, its workers, the object store) stay out of overnight's console.
    said = result.stdout + result.stderr
    assert not re.search(r"\b(INFO|WARNING|ERROR) \S+\.py:\d+ -- |\(raylet\)|^\[\d{4}-", said, re.M), said


@contextlib.contextmanager
def extra_node(address: str, *flags: str) -> Iterator[str]:
    """A node that joins the session's cluster for one test, and dies with everything it started at its end."""
    marker = uuid.uuid4().hex
    before = _nodes(address)
    env = {**node_env(), "OVERNIGHT_TEST_NODE": marker}
    subprocess.run([RAY, "start", "--address", address, "--node-ip-address", "127.0.0.1", "--disable-usage-stats",
                    *flags], env=env, check=True, capture_output=True, timeout=600)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        # a new node id, not a larger count: a node the test before killed may still be listed when `before` was
        # taken, and drop from the list just as this one joins (seen on CI: the count stayed level, and the wait ran out)
        while _nodes(address) <= before:
            assert time.monotonic() < deadline, "the extra node never joined"
            time.sleep(1)
        yield marker
    finally:
        for proc in _holding(marker):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _holding(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("OVERNIGHT_TEST_NODE") == marker:
                found.append(proc)
    return found


def test_each_experiment_gets_a_gpu_of_its_own_on_a_gpu_node(task: Repo, plan, marks: Path, ray_cluster: str) -> None:
    seen = spy_task(task, marks, extra_task="num_gpus = 1")
    plan(THREE_KEEPS)
    with extra_node(ray_cluster, "--num-cpus", "2", "--num-gpus", "2"):  # GPUs Ray is told of: enough to pin
        result = overnight("run", task.path, "--tag", "p", "--agent-command", AGENT, "--executor", "ray",
                           "--ray-address", ray_cluster, "--workers", "2", "--max-experiments", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = seen_by(seen)
    assert len(runs) >= 4
    assert {r["cuda"] for r in runs} <= {"0", "1"}  # one GPU each, the node's, set by Ray
    assert not any(r["secret"] for r in runs)


# Runs only on the test's GPU node: the first time experiment `kill_id` runs, it kills its node's raylet (a machine that dies)
# and goes on running, as an experiment holding its GPU would.
ORPHAN = """\
import os, signal, time
import psutil
X = 10
mark = {mark!r}
killer = os.environ["OVERNIGHT_EXPERIMENT_ID"] == {kill_id!r}
if os.environ.get("OVERNIGHT_TEST_NODE") and killer and not os.path.exists(mark):
    open(mark, "w").write(str(os.getpid()))
    raylet = psutil.Process(int(os.environ["OVERNIGHT_RAY_WORKER_PID"])).ppid()
    os.kill(raylet, signal.SIGKILL)
    time.sleep(600)
print("score:", (X - 3) ** 2 + 1)
"""


def test_a_dead_node_leaves_no_orphan_and_a_measurement_waits_for_a_node_only_so_long(
    task: Repo, marks: Path, ray_cluster: str
) -> None:
    orphan = marks / "orphan"
    task.write("train.py", ORPHAN.format(mark=str(orphan), kill_id="0"))
    task.write("overnight.toml", task_config(timeout=900, extra_task="num_gpus = 1"))
    task.commit("kills its GPU node once, and lives on")
    with extra_node(ray_cluster, "--num-cpus", "1", "--num-gpus", "1"):
        env = {**ray_env(), "OVERNIGHT_RAY_NODE_WAIT_S": "5"}
        result = subprocess.run(
            [sys.executable, "-m", "overnight", "run", task.path, "--tag", "o", "--agent-command", AGENT,
             "--executor", "ray", "--ray-address", ray_cluster, "--max-experiments", "1"],
            capture_output=True, text=True, timeout=900, env=env,
        )  # fmt: skip
        # The only GPU node is gone: the retry waits 5 s for another, then the run ends, saying why.
        assert result.returncode == 1, result.stderr
        assert "no live node of the Ray cluster could run it" in result.stderr
        assert "num_gpus = 1" in result.stderr
        pid = int(orphan.read_text())
        _wait_gone(pid)
    log = (task.path / ".overnight" / "o" / "logs" / "0.log").read_text()
    assert "the Ray worker died" in log and "retrying (1 of 2)" in log


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 120
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the experiment on the dead node is still running"
        time.sleep(0.5)


def test_ctrl_c_ends_a_measurement_waiting_for_a_node_that_is_gone(
    task: Repo, plan, marks: Path, ray_cluster: str
) -> None:
    orphan = marks / "orphan"
    task.write("train.py", ORPHAN.format(mark=str(orphan), kill_id="1"))
    task.write("overnight.toml", task_config(timeout=900, extra_task="num_gpus = 1"))
    task.commit("experiment 1 kills its GPU node, and lives on")
    plan({"1": [["set", "train.py", "X", "5"]]})
    with extra_node(ray_cluster, "--num-cpus", "1", "--num-gpus", "1"):
        run = subprocess.Popen(
            [sys.executable, "-m", "overnight", "run", task.path, "--tag", "w", "--agent-command", AGENT,
             "--executor", "ray", "--ray-address", ray_cluster, "--max-experiments", "1"],
            env={**ray_env(), "OVERNIGHT_RAY_NODE_WAIT_S": "3600"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            log, deadline = task.path / ".overnight" / "w" / "logs" / "1.log", time.monotonic() + 600
            while not (log.exists() and "retrying (1 of 2)" in log.read_text()):  # waits for a GPU node: none is left
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the measurement was never retried"
                time.sleep(0.5)
            run.send_signal(signal.SIGINT)
            _, err = run.communicate(timeout=300)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 130, err
        assert [r["status"] for r in ledger_rows(task.path, "w")] == ["baseline", "interrupted"]
        _wait_gone(int(orphan.read_text()))


# The blocker: a Ray driver that holds the CPU of every node alive now, until RELEASE appears, so
# that an experiment can only run on a node that joins later.
BLOCKER = """\
import os, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
address, ready, release = sys.argv[1:4]
ray.init(address=address, log_to_driver=False)

@ray.remote(num_cpus=1)
def hold(release):
    while not os.path.exists(release):
        time.sleep(0.2)

nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
refs = [hold.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(release) for n in nodes]
while ray.available_resources().get("CPU", 0) > 0:  # every hold has started: no CPU is left
    time.sleep(0.2)
open(ready, "w").write(str(len(nodes)))
ray.get(refs)
"""
# Runs only where the node that joined late says so (its raylet's environment reaches the Ray
# workers, and overnight passes the worker's to the experiment): the first time, it lets the
# blocker go and kills its own node's raylet, as a machine that dies would.
LATE_NODE_KILLER = """\
import os, signal
import psutil
X = 10
mark, release = {mark!r}, {release!r}
if os.environ.get("OVERNIGHT_TEST_LATE_NODE") == "1":
    open({ran_late!r}, "a").write(os.environ["OVERNIGHT_EXPERIMENT_ID"] + "\\n")
    if not os.path.exists(mark):
        open(mark, "w").write("x")
        open(release, "w").write("x")
        raylet = psutil.Process(int(os.environ["OVERNIGHT_RAY_WORKER_PID"])).ppid()
        os.kill(raylet, signal.SIGKILL)
print("score:", (X - 3) ** 2 + 1)
"""


def test_a_node_that_joins_mid_run_gets_work_and_one_that_dies_mid_measurement_is_retried_elsewhere(
    task: Repo, plan, marks: Path, ray_cluster: str, tmp_path: Path
) -> None:
    # Last in this file: it adds a node to the session's cluster and kills it.
    ready, release, ran_late = marks / "held", marks / "release", marks / "ran-late"
    task.write("train.py", LATE_NODE_KILLER.format(mark=str(marks / "killed"), release=str(release),
                                                   ran_late=str(ran_late)))  # fmt: skip
    task.commit("kills the late node once")
    plan({"1": [["set", "train.py", "X", "5"]]})
    blocker = subprocess.Popen([sys.executable, "-c", BLOCKER, ray_cluster, str(ready), str(release)], env=ray_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run = None
    try:
        deadline = time.monotonic() + 600
        while not ready.exists():  # the cluster's nodes are busy
            assert blocker.poll() is None, blocker.stderr.read() if blocker.stderr else ""
            assert time.monotonic() < deadline, "the blocker never held every node"
            time.sleep(0.5)
        run = subprocess.Popen(
            [sys.executable, "-m", "overnight", "run", task.path, "--tag", "late", "--agent-command", AGENT,
             "--executor", "ray", "--ray-address", ray_cluster, "--max-experiments", "1"],
            env=ray_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        ledger = task.path / ".overnight" / "late" / "ledger.db"
        while not ledger.exists():  # the run has started and waits for a node with a free CPU
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.5)
        env = {**node_env(), "OVERNIGHT_TEST_LATE_NODE": "1"}  # it dies with its cache: in the tests' folder
        subprocess.run([RAY, "start", "--address", ray_cluster, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                        "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=600)  # fmt: skip
        out, err = run.communicate(timeout=900)
        assert run.returncode == 0, out + err
    finally:
        release.write_text("x")
        blocker.communicate(timeout=120)  # and closes its pipe
        if run is not None and run.poll() is None:
            run.kill()
            run.communicate()
    rows = ledger_rows(task.path, "late")
    assert [r["status"] for r in rows] == ["baseline", "keep"]  # nothing lost, the run finished
    assert ran_late.read_text().split()[0] == "0"  # the baseline waited for the node that joined, and ran there
    log = (task.path / ".overnight" / "late" / "logs" / "0.log").read_text()
    assert "the Ray worker died" in log and "retrying (1 of 2)" in log and "score: 50" in log


def test_verify_spreads_its_measurements_over_the_ray_cluster(task: Repo, plan, ray_cluster: str) -> None:
    from test_verify import KEEPS, SCORED

    task.write("train.py", SCORED)
    task.commit("a task whose score is a known function of its constants")
    plan({"1": KEEPS["1"], "2": KEEPS["2"]})
    searched = overnight("run", task.path, "--tag", "v", "--agent-command", AGENT, "--max-experiments", "2")
    assert searched.returncode == 0, searched.stderr
    # NOISE is an environment variable the Ray workers do not have: it travels with each job.
    result = overnight("verify", task.path, "--tag", "v", "--executor", "ray", "--ray-address", ray_cluster,
                       "--set", "NOISE=1", "--set", "SCALE=2", "--runs", "2", "--ablate", "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["gain"] == 5 and found["ci"] == [5, 5] and found["baseline"] == 100.5
    assert [(a["id"], a["contribution"]) for a in found["ablation"]] == [(1, 3), (2, 2)]
    log = (task.path / ".overnight" / "v" / "logs" / "verify-1-best-1.log").read_text()
    assert "score: 96.0" in log  # 95 at scale + the noise of seed 1, measured on a node
    assert len(task.git("worktree", "list").splitlines()) == 1


def test_max_time_ends_a_measurement_waiting_for_a_node_that_is_gone(
    task: Repo, plan, marks: Path, ray_cluster: str
) -> None:
    orphan = marks / "orphan"
    task.write("train.py", ORPHAN.format(mark=str(orphan), kill_id="1"))
    task.write("overnight.toml", task_config(timeout=900, extra_task="num_gpus = 1"))
    task.commit("experiment 1 kills its GPU node, and lives on")
    plan({"1": [["set", "train.py", "X", "5"]]})
    with extra_node(ray_cluster, "--num-cpus", "1", "--num-gpus", "1"):
        # The wait for a node would last an hour: the night's end (60 s in) ends it.
        result = subprocess.run(
            [sys.executable, "-m", "overnight", "run", task.path, "--tag", "m", "--agent-command", AGENT,
             "--executor", "ray", "--ray-address", ray_cluster, "--max-experiments", "1", "--max-time", "60s"],
            env={**ray_env(), "OVERNIGHT_RAY_NODE_WAIT_S": "3600"}, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        rows = ledger_rows(task.path, "m")
        assert [r["status"] for r in rows] == ["baseline", "interrupted"]
        assert "reached --max-time while this measurement waited for a node" in rows[1]["reason"]
        _wait_gone(int(orphan.read_text()))
