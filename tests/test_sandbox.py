"""`[task] sandbox = "bwrap"`: experiments and agent commands under bubblewrap.

Real bubblewrap, real runs. The probe writes outside the worktree into /var/tmp (a host
folder the sandbox's private /tmp does not hide, so a refusal there is the read-only
bind at work, not a missing folder) and connects to a TCP server of this test on the
host's loopback. The fakes are copied there too: the checkout of these tests may itself live
under /tmp, which a sandboxed command does not see.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import Repo, agent_in, ledger_rows, overnight_process, task_config

FAKES = Path(__file__).parent / "fakes"

pytestmark = [pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed"), pytest.mark.slow]

PROBE = """\
import os, socket, sys
X = 10

def attempt(name, action):
    try:
        action()
        print(name + ": allowed")
    except OSError as err:
        print(name + ": denied (" + (err.strerror or type(err).__name__) + ")")

def write(path):
    with open(path, "w") as f:
        f.write("written from an experiment")

def connect():
    with socket.create_connection(("127.0.0.1", int(os.environ["PROBE_PORT"])), timeout=3) as s:
        s.recv(1)

attempt("outside", lambda: write(os.path.join(os.environ["PROBE_OUTSIDE"], "from-experiment.txt")))
attempt("worktree", lambda: write("scratch.txt"))
attempt("tmp", lambda: write("/tmp/" + os.environ["PROBE_NAME"]))
attempt("network", connect)
print("---")
print("score:", (X - 3) ** 2 + 1)
"""


@pytest.fixture
def plan_dir(outside: Path) -> Path:
    """The fake agent's plan, outside /tmp: a sandboxed agent does not see the host's /tmp."""
    return outside


def run(task: Repo, tag: str, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`overnight run` with the fake agent, from its copy outside /tmp."""
    agent = agent_in(Path(os.environ["FAKE_PLAN"]).parent)
    proc = overnight_process("run", task.path, "--tag", tag, "--agent-command", agent, *extra, env=env)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out + err


@pytest.fixture
def server() -> Iterator[int]:
    """A TCP server on the host's loopback that greets each connection with one byte."""
    sock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"!")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def probe_task(task: Repo, outside: Path, port: int, network: bool) -> dict[str, str]:
    task.write("train.py", PROBE)
    extra = 'sandbox = "bwrap"' + ("\nnetwork = true" if network else "")
    task.write("overnight.toml", task_config(extra_task=extra))
    task.commit("probe")
    name = f"overnight-probe-{os.getpid()}-{port}"
    return {"PROBE_OUTSIDE": str(outside), "PROBE_PORT": str(port), "PROBE_NAME": name}


def test_a_sandboxed_experiment_writes_only_its_worktree_and_a_private_tmp(task: Repo, plan, outside, server) -> None:
    env = probe_task(task, outside, server, network=False)
    plan({"1": [["set", "train.py", "X", "5"]]})
    code, output = run(task, "s", "--max-experiments", "1", env=env)
    assert code == 0, output
    rows = ledger_rows(task.path, "s")
    assert [(r["status"], r["metric"]) for r in rows] == [("baseline", 50), ("keep", 5)]
    for i in (0, 1):
        log = (task.path / ".overnight" / "s" / "logs" / f"{i}.log").read_text()
        assert "outside: denied (Read-only file system)" in log
        assert "worktree: allowed" in log
        assert "tmp: allowed" in log
        assert "network: denied" in log  # its own network namespace: the host's loopback is not there
    assert not (outside / "from-experiment.txt").exists()
    assert not Path("/tmp", env["PROBE_NAME"]).exists()  # its /tmp was its own


def test_network_true_lets_experiments_reach_the_network(task: Repo, plan, outside, server) -> None:
    env = probe_task(task, outside, server, network=True)
    plan({"1": [["set", "train.py", "X", "5"]]})
    code, output = run(task, "n", "--max-experiments", "1", env=env)
    assert code == 0, output
    log = (task.path / ".overnight" / "n" / "logs" / "1.log").read_text()
    assert "network: allowed" in log and "outside: denied (Read-only file system)" in log


def test_a_sandboxed_agent_changes_its_worktree_and_nothing_else(task: Repo, plan, outside) -> None:
    task.write("overnight.toml", task_config(extra_task='sandbox = "bwrap"'))
    task.commit("sandboxed")
    target = outside / "from-agent.txt"
    plan({"1": [["shell", f"echo escape > {target} || echo Hypothesis: the host was read-only"],
                ["set", "train.py", "X", "5"]]})  # fmt: skip
    code, output = run(task, "a", "--max-experiments", "1")
    assert code == 0, output
    row = ledger_rows(task.path, "a")[1]
    assert row["status"] == "keep" and row["hypothesis"] == "the host was read-only"
    assert not target.exists()


def test_without_bubblewrap_the_run_stops_before_it_starts(task: Repo, plan, tmp_path: Path) -> None:
    plan({})
    task.write("overnight.toml", task_config(extra_task='sandbox = "bwrap"'))
    task.commit("sandboxed")
    tools = tmp_path / "bin"  # a PATH with git and a shell, and no bwrap
    tools.mkdir()
    for tool in ("git", "sh"):
        (tools / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    before = task.snapshot()
    code, output = run(task, "x", "--max-experiments", "1", env={"PATH": str(tools)})
    assert code == 2, output
    assert 'sandbox = "bwrap" needs bubblewrap: install it (apt-get install bubblewrap' in output
    assert not (task.path / ".overnight" / "x").exists()
    # `overnight noise` measures in the sandbox too: the same check, before anything is created
    noise = subprocess.run([sys.executable, "-m", "overnight", "noise", str(task.path), "--tag", "n", "--runs", "2"],
                           env={**os.environ, "PATH": str(tools)}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert noise.returncode == 2, noise.stdout + noise.stderr
    assert 'sandbox = "bwrap" needs bubblewrap' in noise.stderr
    assert not (task.path / ".overnight" / "n").exists()
    assert task.snapshot() == before


def test_a_sandboxed_coding_cli_keeps_its_own_state_folder_writable(task: Repo, outside: Path) -> None:
    task.write("overnight.toml", task_config(extra_task='sandbox = "bwrap"'))
    task.commit("sandboxed")
    home = outside / "home"
    (home / ".claude").mkdir(parents=True)
    calls = home / ".claude" / "calls.jsonl"  # the fake records its calls in its state folder
    escape, state = outside / "escaped.txt", home / ".claude" / "state.txt"
    plan = {"set": ["train.py", "X", "4"], "hypothesis": "X to 4", "touch": [str(escape), str(state)]}
    (outside / "cli_plan.json").write_text(json.dumps(plan))
    fakes = shutil.copytree(FAKES / "bin", outside / "bin")
    env = {
        "HOME": str(home),
        "PATH": f"{fakes}{os.pathsep}{os.environ['PATH']}",
        "FAKE_CLI_PLAN": str(outside / "cli_plan.json"),
        "FAKE_CLI_LOG": str(calls),
    }
    proc = overnight_process("run", task.path, "--tag", "c", "--agent", "claude", "--max-experiments", "1", env=env)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    row = ledger_rows(task.path, "c")[1]
    assert (row["status"], row["metric"], row["hypothesis"]) == ("keep", 2, "X to 4")
    entries = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len([e for e in entries if "prompt" in e]) == 1
    touched = {e["touched"]: e["allowed"] for e in entries if "touched" in e}
    assert touched == {str(escape): False, str(state): True}  # its state folder, and nothing else outside
    assert not escape.exists() and state.exists()


HOSTILE = """\
import os, subprocess
X = 10

def say(name, value):
    print(name + ": " + value, flush=True)

def tries(argv):
    try:
        return "allowed" if subprocess.run(argv, capture_output=True).returncode == 0 else "denied"
    except OSError:
        return "denied"

def look():
    controller = secret = False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            controller |= b"-m\\x00overnight\\x00run\\x00" in open("/proc/" + pid + "/cmdline", "rb").read()
            secret |= b"PROBE_API_KEY=" in open("/proc/" + pid + "/environ", "rb").read()
        except OSError:
            pass
    return controller, secret

status = open("/proc/self/status").read().splitlines()
say("caps", next(line.split()[1] for line in status if line.startswith("CapEff")))
say("uid_map", " ".join(open("/proc/self/uid_map").read().split()))
say("remount", tries(["mount", "-o", "remount,rw", "/"]))
say("unmount proc", tries(["umount", "-l", "/proc"]))
controller, secret = look()
say("controller", "visible" if controller else "hidden")
say("secret", "read" if secret else "not read")
try:
    open(os.environ["PROBE_LEDGER"], "ab").close()
    say("ledger", "writable")
except OSError as err:
    say("ledger", "denied (" + err.strerror + ")")
with open("/dev/shm/" + os.environ["PROBE_NAME"], "w") as f:
    f.write("left in /dev/shm")
print("---")
print("score:", (X - 3) ** 2 + 1)
"""


def test_a_hostile_experiment_gets_no_power_over_the_host_even_as_root(task: Repo, plan, outside: Path) -> None:
    # As the audit did as root: with every capability bubblewrap keeps for root, the
    # experiment remounted / read-write, unmounted /proc, read the controller's API key and
    # rewrote the ledger. Each line below fails when one protection of the sandbox is removed:
    # --cap-drop ALL (caps), --unshare-user (uid_map, remount), --unshare-pid and --proc
    # (controller, secret), the read-only binds (ledger), --dev (/dev/shm).
    task.write("train.py", HOSTILE)
    task.write("overnight.toml", task_config(extra_task='sandbox = "bwrap"'))
    task.commit("hostile")
    name = f"overnight-hostile-{os.getpid()}"
    ledger = task.path / ".overnight" / "h" / "ledger.db"
    env = {"PROBE_API_KEY": "sk-probe-0123456789abcdef", "PROBE_LEDGER": str(ledger), "PROBE_NAME": name}
    plan({"1": [["set", "train.py", "X", "5"]]})
    try:
        code, output = run(task, "h", "--max-experiments", "1", env=env)
        assert code == 0, output
        log = (task.path / ".overnight" / "h" / "logs" / "0.log").read_text()
        said = dict(line.split(": ", 1) for line in log.splitlines() if ": " in line and not line.startswith("#"))
        assert said["caps"] == "0000000000000000", log
        assert "4294967295" not in said["uid_map"], log  # a user namespace of its own, not the host's identity map
        assert said["remount"] == "denied" and said["unmount proc"] == "denied", log
        assert said["controller"] == "hidden" and said["secret"] == "not read", log
        assert said["ledger"] == "denied (Read-only file system)", log
        assert not Path("/dev/shm", name).exists()  # its /dev/shm was its own
        assert [r["status"] for r in ledger_rows(task.path, "h")] == ["baseline", "keep"]
    finally:
        Path("/dev/shm", name).unlink(missing_ok=True)


def test_a_sandboxed_command_dies_with_the_harness(tmp_path: Path) -> None:
    # kill -9 of the controller leaves nothing running: bubblewrap's --die-with-parent.
    mark = tmp_path / "pid"
    script = f"""
import sys
from pathlib import Path
from overnight.process import run_command
from overnight.process.sandbox import Sandbox
box = Sandbox(writable=(Path({str(tmp_path)!r}),), visible=(Path(sys.prefix),))
run_command("echo $$ > pid.inside; sleep 600 & echo $! > {mark}; wait", cwd=Path({str(tmp_path)!r}),
            log_path=Path({str(tmp_path / "log")!r}), timeout_s=900, sandbox=box)
"""
    controller = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not (mark.exists() and mark.read_text().strip()):
            assert time.monotonic() < deadline and controller.poll() is None, "the sandboxed command never started"
            time.sleep(0.05)
        sleepers = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "600"]]
        mine = [p for p in sleepers if _under(p, controller.pid)]
        assert mine, "the sandboxed sleep was not found under the controller"
        controller.kill()
        controller.wait()
        _, alive = psutil.wait_procs(mine, timeout=60)
        assert not alive, f"still running after the harness died: {alive}"
    finally:
        controller.kill()


def _under(process: psutil.Process, ancestor: int) -> bool:
    try:
        return any(parent.pid == ancestor for parent in process.parents())
    except psutil.Error:
        return False
