"""examples/cluster/ray-cluster.yaml, the SkyPilot recipe: checked by SkyPilot's own parser and
validation (offline), and run as SkyPilot would run it on two nodes, emulated on this machine.

The emulation takes the recipe's own ``setup`` and ``run`` sections and runs them with bash, as
SkyPilot does: on every node, with the recipe's ``envs``, SkyPilot's variables
(``SKYPILOT_NODE_RANK``, ``SKYPILOT_NODE_IPS``, ``SKYPILOT_NUM_NODES``,
``SKYPILOT_NUM_GPUS_PER_NODE``, ``SKYPILOT_TASK_ID``, ``SKYPILOT_SETUP_NODE_RANK``...), a home
folder per node with the repository synced to ``~/sky_workdir`` (the working directory) and the
``file_mounts`` in place (``~/overnight-src`` this checkout; the night's bucket a local folder).
All nodes have the address 127.0.0.1. What it does not do: download anything. ``uv`` is a
stand-in that records its calls and links the tests' own Python environment as the node's venv;
GPUs are Ray's count of them (``--num-gpus``), none is real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import AGENT, Repo, ledger_rows, task_config

pytest.importorskip("ray")
yaml = pytest.importorskip("yaml")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "examples" / "cluster" / "ray-cluster.yaml"
NIGHT = ROOT / "examples" / "cluster" / "night.py"

# A stand-in for uv: records its calls; `uv venv ... DIR` links this Python environment as DIR.
FAKE_UV = """\
#!/bin/sh
echo "$*" >> "$OVERNIGHT_TEST_UV_CALLS"
if [ "$1" = venv ]; then
  for last; do :; done
  ln -sfn {prefix} "$last"
fi
"""


def _skypilot_python() -> str | None:
    """A Python that has SkyPilot: $SKYPILOT_PYTHON, or this one."""
    named = os.environ.get("SKYPILOT_PYTHON")
    if named:
        return named
    probe = subprocess.run([sys.executable, "-c", "import sky"], capture_output=True)
    return sys.executable if probe.returncode == 0 else None


SKY_CHECK = """\
import json, sys
import sky
overrides = json.loads(sys.argv[2])
import yaml
config = yaml.safe_load(open(sys.argv[1]))
task = sky.Task.from_yaml_config(config, env_overrides=list(overrides.items()))
# What Task.validate() checks that runs offline: the resources' check reads SkyPilot's catalog from the network.
task.validate_name()
task.validate_run()
task.expand_and_validate_workdir()
task.expand_and_validate_file_mounts()  # the local paths exist
resources = list(task.resources)
print(json.dumps({
    "nodes": task.num_nodes,
    "accelerators": sorted({name for r in resources for name in (r.accelerators or {})}),
    "mounts": sorted(task.file_mounts or {}),
    "storage": sorted(task.storage_mounts or {}),
    "envs": task.envs,
    "secrets": sorted(task.secrets),
    # a null secret: resolved at launch from `--secret NAME` (the user's shell)
    "asked": sorted(ref.name for ref in getattr(task, "managed_secret_refs", [])),
}))
"""


def test_skypilot_parses_and_validates_the_recipe(repo: Repo) -> None:
    python = _skypilot_python()
    if python is None:
        pytest.skip(
            "SkyPilot is not installed: pip install skypilot==0.14.1 (in this venv, or another one named by "
            "$SKYPILOT_PYTHON) to run SkyPilot's own parser and validation on the recipe"
        )
    overrides = {"OVERNIGHT_SRC": str(ROOT), "TASK": "tasks/train", "NIGHT_BUCKET": "overnight-test-night"}
    checked = subprocess.run(
        [python, "-c", SKY_CHECK, str(RECIPE), json.dumps(overrides)],
        cwd=repo.path,  # `workdir: .` is the user's repository
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"},
    )
    assert checked.returncode == 0, checked.stderr
    found = json.loads(checked.stdout.strip().splitlines()[-1])
    assert found["nodes"] == 2 and found["accelerators"] == ["A100", "A10G", "L4"]
    assert found["storage"] == ["/night"] and found["envs"]["TASK"] == "tasks/train"
    assert found["asked"] == ["ANTHROPIC_API_KEY"] and found["secrets"] == []  # given with --secret at launch


# The experiment: the usual score, and what it could see of the agent's key (given to every node as a
# SkyPilot secret): in its own environment, or in its Ray worker's (a parent it can read in /proc). (Not
# its value: overnight refuses a commit that holds a credential's value.)
SPY = """\
import os
X = 10
try:
    worker = open(f"/proc/{{os.environ['OVERNIGHT_RAY_WORKER_PID']}}/environ", "rb").read()
except PermissionError:  # as root, experiments run in a user namespace of their own (overnight.process.userns)
    worker = b""
seen = "ANTHROPIC_API_KEY" in os.environ or b"ANTHROPIC_API_KEY=" in worker
open({out!r}, "a").write(f"{{os.environ['OVERNIGHT_EXPERIMENT_ID']}} {{os.environ.get('CUDA_VISIBLE_DEVICES')}} {{seen}}\\n")
print("score:", (X - 3) ** 2 + 1)
"""
KEY = "sk-ant-emulated-secret-0123456789"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ray_left(port: int) -> list[psutil.Process]:
    """The emulated cluster's Ray processes still alive (its GCS and raylets name its port)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.info["cmdline"] or [])
            if f"{port}" in line and ("gcs_server" in line or "raylet" in line):
                found.append(proc)
    return found


def test_the_recipe_runs_a_night_on_two_emulated_nodes_every_node_ends_and_the_night_comes_home(
    task: Repo, plan, tmp_path: Path
) -> None:
    recipe = yaml.safe_load(RECIPE.read_text())
    seen = tmp_path / "seen"
    task.write("train.py", SPY.format(out=str(seen)))
    task.write("overnight.toml", task_config(extra_task="num_gpus = 1"))
    task.commit("one GPU per experiment")
    plan({"1": [["set", "train.py", "X", "5"]], "2": [["set", "train.py", "X", "4"]]})
    nodes, port, night = 2, _free_port(), tmp_path / "bucket"
    bin_dir, uv_calls = tmp_path / "bin", tmp_path / "uv-calls"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV.format(prefix=sys.prefix))
    (bin_dir / "uv").chmod(0o755)
    envs = {
        **{k: str(v) for k, v in recipe["envs"].items()},
        # what a user passes with --env
        "OVERNIGHT_SRC": str(ROOT),
        "TASK": ".",
        "AGENT_COMMAND": AGENT,
        "WORKERS": "2",
        "MAX_TIME": "20m",
        "RUN_ARGS": "--max-experiments 2",
        "PIP_EXTRA": "",
        "NIGHT_DIR": str(night),  # the bucket's mount point, here a folder
        "SYNC_EVERY_S": "2",
        "JOIN_TIMEOUT_S": "600",
        "RAY_PORT": str(port),
    }
    ips = "\n".join(["127.0.0.1"] * nodes)
    homes = []
    for rank in range(nodes):
        home = tmp_path / f"node{rank}"
        shutil.copytree(task.path, home / "sky_workdir", symlinks=True)  # workdir: . (with its .git)
        (home / "overnight-src").symlink_to(ROOT)  # file_mounts: ~/overnight-src
        homes.append(home)

    def env_of(rank: int, setup: bool) -> dict[str, str]:
        env = {**os.environ, **envs, "HOME": str(homes[rank]), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        env["ANTHROPIC_API_KEY"] = KEY  # secrets: what `--secret ANTHROPIC_API_KEY` gives every node
        env.update(OVERNIGHT_TEST_UV_CALLS=str(uv_calls), SKYPILOT_TASK_ID=f"sky-emulated-{port}_overnight_1")
        env.update(SKYPILOT_NUM_NODES=str(nodes), SKYPILOT_NUM_GPUS_PER_NODE="1", SKYPILOT_CLUSTER_INFO="{}")
        if setup:
            env.update(SKYPILOT_SETUP_NODE_RANK=str(rank), SKYPILOT_SETUP_NODE_IPS=ips)
        else:
            env.update(SKYPILOT_NODE_RANK=str(rank), SKYPILOT_NODE_IPS=ips)
        return env

    for rank in range(nodes):
        done = subprocess.run(["bash", "-c", recipe["setup"]], cwd=homes[rank] / "sky_workdir",
                              env=env_of(rank, setup=True), capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    calls = uv_calls.read_text().splitlines()
    assert calls.count(f"venv --allow-existing --python 3.11 {homes[0] / 'overnight-venv'}") == 1
    assert any(c.startswith("pip install --python") and "overnight-src[ray]" in c for c in calls)

    runs = [
        subprocess.Popen(["bash", "-c", recipe["run"]], cwd=homes[rank] / "sky_workdir", env=env_of(rank, setup=False),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for rank in range(nodes)
    ]  # fmt: skip
    outputs = []
    try:
        for run in runs:  # every node's run command ends, the workers' too: SkyPilot's job would end
            outputs.append(run.communicate(timeout=900)[0])
    finally:
        for run in runs:
            if run.poll() is None:
                os.killpg(run.pid, 9)
                run.communicate()
    assert [r.returncode for r in runs] == [0, 0], "\n---\n".join(outputs)
    assert "the head's Ray has stopped; the night is over here" in outputs[1]
    deadline = time.monotonic() + 120
    while _ray_left(port):  # and the cluster's Ray is gone on every node
        assert time.monotonic() < deadline, [p.info["cmdline"] for p in _ray_left(port)]
        time.sleep(1)

    # One GPU each (Ray's), and the agent's key out of every experiment's reach.
    lines = [line.split() for line in seen.read_text().splitlines()]
    assert len(lines) >= 3 and all(cuda == "0" and found == "False" for _, cuda, found in lines), lines
    # On the head: the night ran on the cluster.
    tags = [p.name for p in (night / ".overnight").iterdir()]
    assert len(tags) == 1 and (night / "runs.bundle").exists()
    tag = tags[0]
    head_rows = ledger_rows(homes[0] / "sky_workdir", tag)
    assert [r["status"] for r in head_rows][:1] == ["baseline"] and len(head_rows) == 3
    # At home: one command brings the ledger, the logs and the run branch into the user's repository.
    home_cmd = subprocess.run([sys.executable, str(NIGHT), "home", str(night)], cwd=task.path, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
    assert home_cmd.returncode == 0, home_cmd.stderr
    assert [r["status"] for r in ledger_rows(task.path, tag)] == [r["status"] for r in head_rows]
    assert (task.path / ".overnight" / tag / "logs" / "0.log").exists()
    on_head = subprocess.run(["git", "rev-parse", f"overnight/{tag}"], cwd=homes[0] / "sky_workdir",
                             capture_output=True, text=True, check=True)  # fmt: skip
    assert task.git("rev-parse", f"overnight/{tag}") == on_head.stdout
