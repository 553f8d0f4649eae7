"""`overnight verify`: a real run's keeps measured again at a larger scale, ablated, and promoted.

The task's score is a known function of its constants: A is worth 3, B 2, and C 1 only at
SCALE = 1 (nothing at scale). With NOISE set (an environment variable), every run adds noise
that depends on the seed only, the same for every arm: paired by seed it cancels exactly, so
the estimates at scale are exact numbers with a zero-width interval.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import AGENT, Repo, Result, overnight_process, task_config
from dashboard_support import get, running
from overnight.run.paths import RunLock
from overnight.verify import overrides
from overnight.verify.arms import rounds

SCORED = """\
import os, time
A = 0
# (a few lines between the constants, so that reverting one keep never touches another's lines)
#
#
#
B = 0
#
#
#
#
C = 0
#
#
#
#
SCALE = 1  # the model's size
seed = int(os.environ["OVERNIGHT_SEED"])
time.sleep(float(os.environ.get("NAP", "0")) * seed)  # NAP: the runs after the first round hang
noise = 0.5 * ((seed * 7) % 5) if os.environ.get("NOISE") else 0.0
score = 100 - 3 * A - 2 * B - (1 if SCALE == 1 else 0) * C + noise
print(f"score: {score}")
print(f"budget: {os.environ['OVERNIGHT_BUDGET_S']}")
print(f"seed: {seed}")
print(f"gpu: {os.environ.get('CUDA_VISIBLE_DEVICES', '-1')}")
"""

KEEPS = {
    "1": [["set", "train.py", "A", "1"], ["print", "Hypothesis: A on"]],
    "2": [["set", "train.py", "B", "1"], ["print", "Hypothesis: B on"]],
    "3": [["set", "train.py", "C", "1"], ["print", "Hypothesis: C on"]],
}


@pytest.fixture
def scored(task: Repo) -> Repo:
    task.write("train.py", SCORED)
    task.commit("a task whose score is a known function of its constants")
    return task


def searched(
    cli: Callable[..., Result], task: Repo, plan: Callable[..., Path], steps: dict[str, Any], tag: str
) -> None:
    plan(steps)
    result = cli("run", task.path, "--tag", tag, "--agent-command", AGENT, "--max-experiments", str(len(steps)))
    assert result.code == 0, result.err
    statuses = [r["status"] for r in json.loads(cli("log", task.path, "--tag", tag, "--format", "json").out)]
    assert statuses == ["baseline"] + ["keep"] * len(steps), statuses


def refs(task: Repo) -> str:
    return task.git("for-each-ref", "--format=%(refname) %(objectname)")


def test_verify_ablate_measures_each_keep_at_scale(cli, scored: Repo, plan) -> None:
    searched(cli, scored, plan, KEEPS, "v")
    before, snapshot = refs(scored), scored.snapshot()
    result = cli("verify", scored.path, "--tag", "v", "--budget", "7", "--set", "SCALE=2", "--set", "NOISE=1",
                 "--runs", "3", "--ablate", "--format", "json")  # fmt: skip
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert found["baseline"] == pytest.approx(100 + 1.0)  # seeds 0, 1, 2: noise 0, 1, 2 → mean 1
    assert found["best"] == pytest.approx(95 + 1.0)
    assert found["gain"] == pytest.approx(5) and found["ci"] == pytest.approx([5, 5])  # the noise cancels in pairs
    ablation = {a["id"]: a for a in found["ablation"]}
    assert [a["hypothesis"] for a in found["ablation"]] == ["A on", "B on", "C on"]
    assert ablation[1]["contribution"] == pytest.approx(3) and ablation[1]["significant"]
    assert ablation[2]["contribution"] == pytest.approx(2) and ablation[2]["ci"] == pytest.approx([2, 2])
    assert ablation[3]["contribution"] == pytest.approx(0) and not ablation[3]["significant"]  # only at SCALE 1
    assert found["set"] == [
        {"name": "SCALE", "value": "2", "kind": "constant", "files": ["train.py"]},
        {"name": "NOISE", "value": "1", "kind": "environment", "files": []},
    ]
    assert "SCALE=2: constant in train.py" in result.err and "NOISE=1: environment" in result.err
    # Nothing of the user's moved; no ref, worktree or commit left behind.
    assert refs(scored) == before and scored.snapshot() == snapshot
    assert len(scored.git("worktree", "list").splitlines()) == 1
    assert not (scored.path / ".overnight" / "v" / "verify" / "1").exists()
    # The ledger holds every measurement: 5 arms x 3 seeds, at the budget asked for.
    with sqlite3.connect(scored.path / ".overnight" / "v" / "ledger.db") as db:
        rows = db.execute("SELECT arm, seed, value, metrics, status FROM verify_measurements").fetchall()
        (settings,) = db.execute("SELECT settings FROM verifications").fetchone()
    assert len(rows) == 15 and {r[4] for r in rows} == {"measured"}
    assert {json.loads(r[3])["budget"] for r in rows} == {7.0}
    assert sorted({r[0] for r in rows}) == ["baseline", "best", "without:1", "without:2", "without:3"]
    assert json.loads(settings)["budget_s"] == 7
    # Logs of each measurement are kept beside the run's.
    assert (scored.path / ".overnight" / "v" / "logs" / "verify-1-without-3-2.log").exists()


def test_text_output_report_and_finalize_only_significant(cli, scored: Repo, plan) -> None:
    searched(cli, scored, plan, KEEPS, "f")
    result = cli("verify", scored.path, "--tag", "f", "--set", "SCALE=3", "--runs", "2", "--ablate")
    assert result.code == 0, result.err
    assert "gain at scale: +5 [+5, +5] (mean of 2 runs)" in result.out
    assert "#3" in result.out and "C on" in result.out
    # The report: a table and a chart of the contributions.
    report = cli("report", scored.path, "--tag", "f")
    assert report.code == 0, report.err
    text = (scored.path / ".overnight" / "f" / "report" / "report.md").read_text()
    assert "## At scale" in text and "| 3 | C on | +0" in text and "![contributions](verification.png)" in text
    assert (scored.path / ".overnight" / "f" / "report" / "verification.png").stat().st_size > 1000
    # The dashboard shows it beside the run.
    with running(scored.path, "f") as server:
        shown = get(server, "/api/run")["verification"]
    assert shown["gain"] == pytest.approx(5) and [a["id"] for a in shown["ablation"]] == [1, 2, 3]
    assert "SCALE=3 (constant)" in shown["scale"]
    # finalize --only-significant: A and B, not C.
    done = cli("finalize", scored.path, "--tag", "f", "--only-significant")
    assert done.code == 0, done.err
    assert "#1, #2" in done.out and "left out: #3" in done.out
    final = scored.git("show", "overnight/f-final:train.py")
    assert "A = 1" in final and "B = 1" in final and "C = 0" in final
    assert len(scored.git("rev-list", "main..overnight/f-final").split()) == 2


def test_keeps_that_change_the_same_line_are_taken_out_together(cli, scored: Repo, plan) -> None:
    steps = {
        "1": [["set", "train.py", "A", "1"], ["print", "Hypothesis: A on"]],
        "2": [["set", "train.py", "A", "2"], ["print", "Hypothesis: A twice"]],  # the same line again
        "3": [["set", "train.py", "B", "1"], ["print", "Hypothesis: B on"]],
    }
    searched(cli, scored, plan, steps, "e")
    result = cli("verify", scored.path, "--tag", "e", "--runs", "2", "--ablate", "--format", "json")
    assert result.code == 0, result.err
    found = json.loads(result.out)["ablation"]
    assert [(a["id"], a["together"], a["entangled"]) for a in found] == [
        (1, [1, 2], None),
        (2, [2], None),
        (3, [3], None),
    ]
    assert found[0]["contribution"] == pytest.approx(6) and found[0]["significant"]  # A back from 2 to 0
    assert found[0]["hypotheses"] == ["A on", "A twice"]
    assert found[1]["contribution"] == pytest.approx(3)  # A back from 2 to 1
    assert found[2]["contribution"] == pytest.approx(2)
    assert "without:1+2: #1 and #2 together: they change the same lines" in result.err
    with sqlite3.connect(scored.path / ".overnight" / "e" / "ledger.db") as db:
        arms = {r[0] for r in db.execute("SELECT arm FROM verify_measurements")}
    assert arms == {"baseline", "best", "without:1+2", "without:2", "without:3"}
    text = cli("verify", scored.path, "--tag", "e", "--runs", "2", "--ablate")
    assert "#1+2" in text.out and "#1 and #2 together: they change the same lines" in text.out
    assert cli("report", scored.path, "--tag", "e").code == 0
    report = (scored.path / ".overnight" / "e" / "report" / "report.md").read_text()
    assert "| 1, 2 | #1 and #2 together: they change the same lines (A on; A twice) | +6" in report
    # finalize --only-significant: a significant group counts for all its keeps.
    done = cli("finalize", scored.path, "--tag", "e", "--only-significant")
    assert done.code == 0 and "#1, #2, #3" in done.out, done.out
    assert "A = 2" in scored.git("show", "overnight/e-final:train.py")


ADJACENT = """\
import os
A = 0
B = 0
C = 0
SCALE = 1
seed = int(os.environ["OVERNIGHT_SEED"])
print(f"score: {100 - 3 * A - 2 * B - (1 if SCALE == 1 else 0) * C}")
"""


def test_keeps_on_adjacent_lines_each_have_a_contribution(cli, task: Repo, plan) -> None:
    """A = 0, B = 0, C = 0 on three lines in a row, each set by another keep: none is entangled."""
    task.write("train.py", ADJACENT)
    task.commit("constants on adjacent lines")
    searched(cli, task, plan, KEEPS, "a")
    before = refs(task)
    result = cli("verify", task.path, "--tag", "a", "--set", "SCALE=2", "--runs", "2", "--ablate", "--format", "json")
    assert result.code == 0, result.err
    found = json.loads(result.out)["ablation"]
    assert [(a["id"], a["entangled"]) for a in found] == [(1, None), (2, None), (3, None)], result.err
    assert [a["contribution"] for a in found] == pytest.approx([3, 2, 0])
    assert "entangled" not in result.err and refs(task) == before


def test_verify_command_from_overnight_toml(cli, scored: Repo, plan) -> None:
    scored.write("big.py", "import os\nprint('score:', 7 - float(os.environ['OVERNIGHT_SEED']))\n")
    scored.write("overnight.toml", task_config() + f'\n[verify]\nrun = "{sys.executable} big.py"\n')
    scored.commit("a command at scale")
    searched(cli, scored, plan, {"1": KEEPS["1"]}, "c")
    result = cli("verify", scored.path, "--tag", "c", "--runs", "2", "--format", "json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert found["baseline"] == found["best"] == pytest.approx(6.5) and found["gain"] == 0
    assert found["ablation"] == [] and "big.py" in found["command"]


def test_bad_input_is_refused_with_a_clear_message(cli, scored: Repo, plan) -> None:
    searched(cli, scored, plan, {"1": KEEPS["1"]}, "b")
    cases = [
        (["--tag", "nope"], "no run with tag 'nope'"),
        (["--tag", "b", "--runs", "0"], "--runs must be 1 or more"),
        (["--tag", "b", "--set", "SCALE"], "expected NAME=VALUE"),
        (["--tag", "b", "--set", "=3"], "expected NAME=VALUE"),
        (["--tag", "b", "--set", "SCALE=(2"], "not a Python expression"),
        (["--tag", "b", "--budget", "0"], "--budget must be a positive"),
    ]
    for args, message in cases:
        result = cli("verify", scored.path, *args)
        assert result.code != 0 and message in result.err, (args, result.err)
    lock = RunLock(scored.path / ".overnight" / "b" / "lock")
    lock.acquire()  # as a run in progress holds it
    try:
        result = cli("verify", scored.path, "--tag", "b")
    finally:
        lock.release()
    assert result.code != 0 and "run b is running" in result.err
    nothing_kept = cli("run", scored.path, "--tag", "n", "--agent-command", AGENT, "--max-experiments", "0")
    assert nothing_kept.code == 0, nothing_kept.err
    result = cli("verify", scored.path, "--tag", "n")
    assert result.code != 0 and "kept nothing yet" in result.err
    result = cli("finalize", scored.path, "--tag", "b", "--only-significant")
    assert result.code != 0 and "no ablation yet" in result.err
    assert cli("verify", scored.path, "--tag", "b", "--runs", "1", "--ablate").code == 0
    result = cli("finalize", scored.path, "--tag", "b", "--only-significant")
    assert result.code != 0 and "--runs 2 or more" in result.err


def test_rounds_alternate_the_order_of_the_arms() -> None:
    assert rounds(["baseline", "best", "without:1"], 3) == [
        ["baseline", "best", "without:1"],
        ["without:1", "best", "baseline"],
        ["baseline", "best", "without:1"],
    ]


def test_set_rewrites_module_level_constants_only() -> None:
    text = "DEPTH = 12  # layers\nDEPTH_X = 1\ndef f():\n    DEPTH = 3\nWIDTH: int = 64\n"
    (depth, width, env) = overrides.resolve([("DEPTH", "24"), ("WIDTH", "128"), ("depth", "2")], {"m.py": text})
    assert (depth.kind, width.kind, env.kind) == ("constant", "constant", "environment")
    after = overrides.rewrite(overrides.rewrite(text, depth), width)
    assert after == "DEPTH = 24  # layers\nDEPTH_X = 1\ndef f():\n    DEPTH = 3\nWIDTH: int = 128\n"


def test_gpus_give_each_measurement_of_a_round_its_own_gpu(cli, scored: Repo, plan) -> None:
    searched(cli, scored, plan, {"1": KEEPS["1"]}, "g")
    result = cli("verify", scored.path, "--tag", "g", "--runs", "2", "--gpus", "3,5")
    assert result.code == 0, result.err
    with sqlite3.connect(scored.path / ".overnight" / "g" / "ledger.db") as db:
        rows = db.execute("SELECT seed, metrics FROM verify_measurements").fetchall()
    gpus = [(seed, json.loads(metrics)["gpu"]) for seed, metrics in rows]
    assert len(gpus) == 4 and {g for _, g in gpus} <= {3.0, 5.0}
    assert all(sorted(g for s, g in gpus if s == seed) == [3.0, 5.0] for seed in (0, 1))  # one round: both GPUs


def test_ctrl_c_stops_verify_and_leaves_what_was_measured(cli, scored: Repo, plan) -> None:
    searched(cli, scored, plan, {"1": KEEPS["1"]}, "i")
    before = refs(scored)
    proc = overnight_process("verify", scored.path, "--tag", "i", "--set", "NAP=600", "--runs", "2")
    ledger = scored.path / ".overnight" / "i" / "ledger.db"
    deadline = time.monotonic() + 300
    while True:  # the first round (no nap) recorded: the second hangs until stopped
        with sqlite3.connect(ledger) as db:
            if db.execute("SELECT COUNT(*) FROM verify_measurements").fetchone()[0] == 2:
                break
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    logs = scored.path / ".overnight" / "i" / "logs"
    while not list(logs.glob("verify-*-1.log")):  # the second round's first run has started (and naps)
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "stopped before the end" in out
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT ended_at FROM verifications").fetchall() == [("",)]
        assert db.execute("SELECT COUNT(*) FROM verify_measurements").fetchone()[0] == 2
    assert len(scored.git("worktree", "list").splitlines()) == 1 and refs(scored) == before
    assert cli("finalize", scored.path, "--tag", "i", "--only-significant").code != 0


def test_a_verify_killed_mid_measurement_is_cleaned_up_by_the_next(cli, scored: Repo, plan, tmp_path: Path) -> None:
    """kill -9 leaves the measured process running and the arms' worktrees registered: the next verify of the run
    stops the one and removes the others before it measures."""
    searched(cli, scored, plan, {"1": KEEPS["1"]}, "k")
    marks = tmp_path / "pids"
    marks.mkdir()
    nap = tmp_path / "nap.py"  # outside the repository: the arms are checked out at the run's commits
    nap.write_text(f"import os, time\nopen(os.path.join({str(marks)!r}, str(os.getpid())), 'w')\ntime.sleep(600)\n")
    scored.write("overnight.toml", task_config() + f'\n[verify]\nrun = "{sys.executable} {nap}"\n')
    scored.commit("a verify command that hangs")
    proc = overnight_process("verify", scored.path, "--tag", "k", "--runs", "1")
    deadline = time.monotonic() + 300
    while not list(marks.iterdir()):  # the first arm's measurement is running
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.kill()
    proc.communicate()
    (pid,) = (int(p.name) for p in marks.iterdir())
    assert Path(f"/proc/{pid}").exists()  # orphaned, still running
    assert len(scored.git("worktree", "list").splitlines()) > 1
    scored.write("overnight.toml", task_config())
    scored.commit("verify as the run measured")
    result = cli("verify", scored.path, "--tag", "k", "--runs", "1")
    assert result.code == 0, result.err
    said = result.out.splitlines()[0]  # the orphan's shell and python, each counted
    assert said.startswith("cleaned up after a verification of run k that did not end:") and "processes stopped" in said
    assert said.endswith("2 worktrees removed")
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid):
        assert time.monotonic() < deadline, "the orphan of the killed verify is still running"
        time.sleep(0.2)
    assert len(scored.git("worktree", "list").splitlines()) == 1
    assert not list((scored.path / ".overnight" / "k" / "verify").glob("*/*"))


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "zombie"


def test_a_verification_in_which_every_arm_fails_exits_non_zero(cli, scored: Repo, plan) -> None:
    searched(cli, scored, plan, {"1": KEEPS["1"]}, "f")
    scored.write("overnight.toml", task_config() + '\n[verify]\nrun = "exit 3"\n')
    scored.commit("a verify command that always fails")
    result = cli("verify", scored.path, "--tag", "f", "--runs", "2")
    assert result.code == 3 and "nothing was verified" in result.err
    assert "failed runs of baseline: 2" in result.out


def test_a_script_that_does_not_read_the_budget_is_not_said_to_run_at_it(cli, scored: Repo, plan) -> None:
    budget_line = "print(f\"budget: {os.environ['OVERNIGHT_BUDGET_S']}\")\n"
    assert budget_line in SCORED
    scored.write("train.py", SCORED.replace(budget_line, ""))  # it runs to its end, whatever the budget
    scored.commit("a script that does not read the budget")
    plan({"1": KEEPS["1"]})
    run = cli("run", scored.path, "--tag", "u", "--agent-command", AGENT, "--max-experiments", "1")
    assert run.code == 0, run.err
    assert "budget: train.py does not read OVERNIGHT_BUDGET_S" in run.out  # said at the start of the run
    result = cli("verify", scored.path, "--tag", "u", "--runs", "2")
    assert result.code == 0, result.err
    assert "budget 5 s, not read by train.py: it runs to its end" in result.out
    assert "budget 5 s (not read by the script: each run went to its end)" in result.out
    # a script that reads it is said to run at it
    scored.write("train.py", SCORED)
    scored.commit("the budget read again")
    again = cli("verify", scored.path, "--tag", "u", "--runs", "2")
    assert again.code == 0, again.err
    assert "not read" not in again.out + again.err and "budget 5 s" in again.out
