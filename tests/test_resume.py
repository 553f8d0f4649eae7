"""Stopping and resuming: kill -9 of the controller, Ctrl-C, concurrent starts, changed settings."""

from __future__ import annotations

import fcntl
import json
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from conftest import AGENT, Repo, ledger_rows, overnight_process, task_config
from overnight.errors import RunStateError
from overnight.run.ledger import Ledger
from overnight.run.paths import RunLock


def _wait_for(path: Path, seconds: float = 120) -> None:
    """Until ``path`` holds something (a mark's writer may have created it and not yet written it)."""
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pid: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_kill_9_during_an_experiment_then_resume(task: Repo, plan, cli, marks: Path) -> None:
    task.write("overnight.toml", task_config(timeout=120))
    task.commit("long timeout")
    plan(
        {
            "1": [["set", "train.py", "SLEEP", "120"]],
            "2": [["set", "train.py", "X", "5"]],
            "3": [["set", "train.py", "X", "4"]],
        }
    )
    before = task.snapshot()
    controller = overnight_process("run", task.path, "--tag", "k", "--agent-command", AGENT, "--max-experiments", "5")
    _wait_for(marks / "pid-1")
    orphan = int((marks / "pid-1").read_text())
    controller.send_signal(signal.SIGKILL)
    controller.communicate(timeout=60)
    assert _alive(orphan), "the experiment outlives its killed controller until the run resumes"
    assert [r["status"] for r in ledger_rows(task.path, "k")] == ["baseline", "running"]

    result = cli("run", task.path, "--tag", "k", "--agent-command", AGENT, "--max-experiments", "2")
    assert result.code == 0, result.err
    assert "resuming run k" in result.out
    assert _gone(orphan), "resuming kills what the dead controller left running"
    rows = ledger_rows(task.path, "k")
    assert [r["id"] for r in rows] == [0, 1, 2, 3]
    assert [r["status"] for r in rows] == ["baseline", "interrupted", "keep", "keep"]
    assert "controller stopped" in rows[1]["reason"]
    assert task.git("rev-parse", "overnight/k").strip() == rows[3]["commit"]
    assert task.snapshot() == before


def test_kill_9_during_the_agent_then_resume(task: Repo, plan, cli, marks: Path) -> None:
    plan(
        {
            # $PPID in the agent's shell step is the agent itself (tests/fakes/agent.py)
            "1": [["shell", f"echo $PPID > {marks}/agent-pid"], ["write", str(marks / "agent"), "x"], ["sleep", 120]],
            "2": [["set", "train.py", "X", "5"]],
        }
    )
    controller = overnight_process("run", task.path, "--tag", "ka", "--agent-command", AGENT)
    _wait_for(marks / "agent")
    agent = int((marks / "agent-pid").read_text())
    assert "agent.py" in " ".join(psutil.Process(agent).cmdline())
    controller.send_signal(signal.SIGKILL)
    controller.communicate(timeout=60)
    assert _alive(agent), "the agent outlives its killed controller until the run resumes"
    result = cli("run", task.path, "--tag", "ka", "--agent-command", AGENT, "--max-experiments", "1")
    assert result.code == 0, result.err
    assert _gone(agent, 60)
    assert [r["status"] for r in ledger_rows(task.path, "ka")] == ["baseline", "interrupted", "keep"]


def test_ctrl_c_interrupts_gracefully_and_resume_goes_on(task: Repo, plan, cli, marks: Path) -> None:
    task.write("overnight.toml", task_config(timeout=120))
    task.commit("long timeout")
    plan({"1": [["set", "train.py", "SLEEP", "120"]], "2": [["set", "train.py", "X", "5"]]})
    controller = overnight_process("run", task.path, "--tag", "c", "--agent-command", AGENT)
    _wait_for(marks / "pid-1")
    child = int((marks / "pid-1").read_text())
    controller.send_signal(signal.SIGINT)
    out, err = controller.communicate(timeout=300)
    assert controller.returncode == 130, err
    assert "stopping" in err and "resume:" in out
    assert _gone(child)
    rows = ledger_rows(task.path, "c")
    assert [r["status"] for r in rows] == ["baseline", "interrupted"]
    assert not (task.path / ".overnight" / "c" / "worktrees" / "w0").exists()

    assert cli("run", task.path, "--tag", "c", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    assert [r["status"] for r in ledger_rows(task.path, "c")] == ["baseline", "interrupted", "keep"]


def test_an_interrupted_change_may_be_proposed_and_measured_again(task: Repo, plan, cli, marks: Path) -> None:
    # Ctrl-C during its measurement says nothing of the change: on resume the same change on
    # the same parent is measured, not refused as a duplicate of the interrupted experiment.
    slow = marks / "slow"
    task.write(
        "train.py",
        (task.path / "train.py")
        .read_text()
        .replace(
            "SLEEP = 0\n",
            f"SLEEP = 120 if os.path.exists({str(slow)!r}) and os.environ['OVERNIGHT_EXPERIMENT_ID'] != '0' else 0\n",
        ),
    )
    task.write("overnight.toml", task_config(timeout=240))
    task.commit("slow while the mark is there")
    plan({"1": [["set", "train.py", "X", "5"]], "2": [["set", "train.py", "X", "5"]]})
    slow.write_text("on")
    controller = overnight_process("run", task.path, "--tag", "again", "--agent-command", AGENT)
    _wait_for(marks / "pid-1")
    controller.send_signal(signal.SIGINT)
    _, err = controller.communicate(timeout=60)
    assert controller.returncode == 130, err
    assert [r["status"] for r in ledger_rows(task.path, "again")] == ["baseline", "interrupted"]
    slow.unlink()

    result = cli("run", task.path, "--tag", "again", "--agent-command", AGENT, "--max-experiments", "1")
    assert result.code == 0, result.err
    rows = ledger_rows(task.path, "again")
    assert [r["status"] for r in rows] == ["baseline", "interrupted", "keep"]
    assert "X = 5" in task.git("show", "overnight/again:train.py")


def _slow_on_demand(task: Repo) -> None:
    """train.py sleeps TEST_SLEEP seconds (after writing its pid mark), so one invocation can be slow."""
    task.write(
        "train.py",
        (task.path / "train.py").read_text().replace("SLEEP = 0\n", "SLEEP = float(os.environ.get('TEST_SLEEP', 0))\n"),
    )
    task.write("overnight.toml", task_config(timeout=120))
    task.commit("sleep on demand")


def test_ctrl_c_during_noise_before_a_baseline_exists(task: Repo, marks: Path) -> None:
    _slow_on_demand(task)
    controller = overnight_process("noise", task.path, "--tag", "nb", "--runs", "3", env={"TEST_SLEEP": "120"})
    _wait_for(marks / "pid-0")
    controller.send_signal(signal.SIGINT)
    out, err = controller.communicate(timeout=300)
    assert controller.returncode == 130, out + err
    assert "stopped before the baseline was measured" in out and "Traceback" not in err, out + err
    assert [r["status"] for r in ledger_rows(task.path, "nb")] == ["interrupted"]


def test_ctrl_c_during_noise_keeps_what_was_measured(task: Repo, cli, marks: Path) -> None:
    _slow_on_demand(task)
    assert cli("noise", task.path, "--tag", "nm", "--runs", "2").code == 0
    controller = overnight_process("noise", task.path, "--tag", "nm", "--runs", "3", env={"TEST_SLEEP": "120"})
    _wait_for(marks / "pid-0")
    controller.send_signal(signal.SIGINT)
    out, err = controller.communicate(timeout=300)
    assert controller.returncode == 130, out + err
    assert "failed" not in out + err and "Traceback" not in err, out + err
    assert "experiment 0, 2 measurements in all" in out  # the interrupted run adds nothing
    assert [r["status"] for r in ledger_rows(task.path, "nm")] == ["baseline"]


def test_a_second_controller_on_the_same_tag_is_refused(task: Repo, plan, cli, marks: Path) -> None:
    task.write("overnight.toml", task_config(timeout=120))
    task.commit("long timeout")
    plan({"1": [["set", "train.py", "SLEEP", "120"]]})
    controller = overnight_process("run", task.path, "--tag", "two", "--agent-command", AGENT)
    try:
        _wait_for(marks / "pid-1")
        result = cli("run", task.path, "--tag", "two", "--agent-command", AGENT)
        assert result.code == 5
        assert "already running" in result.err
        status = cli("status", task.path, "--tag", "two")
        assert "(running)" in status.out
    finally:
        controller.send_signal(signal.SIGINT)
        controller.communicate(timeout=300)


def test_resume_with_changed_settings_needs_force(task: Repo, plan, cli) -> None:
    plan({"*": []})
    assert cli("run", task.path, "--tag", "cfg", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    task.write("overnight.toml", task_config().replace("budget_s = 5", "budget_s = 7"))
    task.commit("budget")
    refused = cli("run", task.path, "--tag", "cfg", "--agent-command", AGENT, "--max-experiments", "1")
    assert refused.code == 5
    assert "[task] budget_s: 5.0 → 7.0" in refused.err and "--force" in refused.err
    assert len(ledger_rows(task.path, "cfg")) == 2
    forced = cli("run", task.path, "--tag", "cfg", "--agent-command", AGENT, "--max-experiments", "1", "--force")
    assert forced.code == 0, forced.err
    assert len(ledger_rows(task.path, "cfg")) == 3


def test_each_start_records_the_agent_settings_it_runs_with(task: Repo, plan, cli) -> None:
    plan({"*": []})
    assert cli("run", task.path, "--tag", "a", "--agent-command", AGENT, "--agent-timeout", "7",
               "--max-experiments", "1").code == 0  # fmt: skip
    assert (
        cli("run", task.path, "--tag", "a", "--agent-command", f"{AGENT} --again", "--max-experiments", "1").code == 0
    )
    with Ledger(task.path / ".overnight" / "a" / "ledger.db") as ledger:
        sessions = json.loads(ledger.get_meta("agents") or "[]")
    assert [s["from"] for s in sessions] == [0, 2]  # the baseline and experiment 1, then experiment 2
    assert [(s["settings"]["kind"], s["settings"]["command"]) for s in sessions] == [
        ("command", AGENT), ("command", f"{AGENT} --again")]  # fmt: skip
    assert sessions[0]["settings"]["timeout_s"] == 7 and sessions[1]["settings"]["timeout_s"] == 1800


def test_branch_left_behind_by_a_crash_between_record_and_move_is_mended(task: Repo, plan, cli) -> None:
    plan({"1": [["set", "train.py", "X", "5"]], "2": [["set", "train.py", "X", "4"]]})
    assert cli("run", task.path, "--tag", "m", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    rows = ledger_rows(task.path, "m")
    # As if the controller died after recording the keep but before moving the branch.
    task.git("update-ref", "refs/heads/overnight/m", rows[1]["parent"])
    assert cli("run", task.path, "--tag", "m", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    rows = ledger_rows(task.path, "m")
    assert rows[2]["parent"] == rows[1]["commit"] and rows[2]["status"] == "keep"
    assert task.git("rev-parse", "overnight/m").strip() == rows[2]["commit"]


def test_a_branch_moved_by_someone_else_is_not_overwritten(task: Repo, plan, cli) -> None:
    plan({"*": []})
    assert cli("run", task.path, "--tag", "mv", "--agent-command", AGENT, "--max-experiments", "1").code == 0
    task.write("other.txt", "x\n")
    other = task.commit("someone else's commit")
    task.git("update-ref", "refs/heads/overnight/mv", other)
    result = cli("run", task.path, "--tag", "mv", "--agent-command", AGENT, "--max-experiments", "1")
    assert result.code == 5
    assert "did not put there" in result.err
    assert task.git("rev-parse", "overnight/mv").strip() == other


def test_a_reader_peeking_at_the_lock_does_not_make_a_resume_fail(tmp_path: Path) -> None:
    path = tmp_path / "run.lock"
    peek = open(path, "a+")  # noqa: SIM115 - as `held_by_other` does: the lock for an instant
    fcntl.flock(peek, fcntl.LOCK_EX | fcntl.LOCK_NB)
    threading.Timer(0.1, peek.close).start()
    lock = RunLock(path)
    lock.acquire()  # waits the instant out
    try:
        assert RunLock(path).held_by_other()
        with pytest.raises(RunStateError, match="already running"):
            RunLock(path).acquire(patience_s=0.2)  # a real holder is still refused
    finally:
        lock.release()
