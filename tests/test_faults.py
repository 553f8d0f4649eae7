"""Fault injection: the controller killed at every point, runs and agents that misbehave, a full disk.

After each fault: nothing recorded is lost, ids stay contiguous, every experiment ref
resolves, the run branch is the last keep, and the user's checkout is as it was.
docs/reliability.md is written from these tests.
"""

from __future__ import annotations

import random
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AGENT, TRAIN, Repo, git, ledger_rows, overnight_process, task_config

pytestmark = pytest.mark.slow  # a heavy group: `pytest -m 'not slow'` leaves it out

STEPS = {str(i): [["set", "train.py", "X", str(10 - i)]] for i in range(1, 40)}  # every step a little better


def run(task: Repo, tag: str, *extra: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    proc = overnight_process("run", task.path, "--tag", tag, "--agent-command", AGENT, *extra, env=env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def check_consistent(task: Repo, tag: str, before: dict[str, str]) -> list[dict]:
    """The invariants every fault must leave intact."""
    rows = ledger_rows(task.path, tag)
    assert [r["id"] for r in rows] == list(range(len(rows))), "ids unique and contiguous"
    assert "running" not in [r["status"] for r in rows], "nothing left half-done"
    for row in rows:
        if row["commit"]:
            git(task.path, "cat-file", "-e", f"{row['commit']}^{{commit}}")
    refs = git(task.path, "for-each-ref", "--format=%(objectname) %(refname)", f"refs/overnight/{tag}/").split("\n")
    for line in filter(None, refs):
        git(task.path, "cat-file", "-e", line.split()[0])
    best = [r for r in rows if r["status"] in ("baseline", "keep")][-1]
    assert git(task.path, "rev-parse", f"overnight/{tag}").strip() == best["commit"], "the branch is the last keep"
    assert task.snapshot() == before, "the user's checkout, index and branches are untouched"
    return rows


@pytest.mark.parametrize("point", ["proposed", "committed", "measured", "ledger:5", "ledger:14", "kept"])
def test_the_controller_killed_at_each_point_then_resumed(task: Repo, plan, point: str) -> None:
    plan(STEPS)
    before = task.snapshot()
    code, output = run(task, "k", "--max-experiments", "3", env={"OVERNIGHT_FAULT": point})
    assert code == -signal.SIGKILL, output
    recorded = ledger_rows(task.path, "k")
    code, output = run(task, "k", "--max-experiments", "2")
    assert code == 0, output
    rows = check_consistent(task, "k", before)
    for old in recorded:  # nothing recorded is lost; what was running is now interrupted
        new = rows[old["id"]]
        assert new["status"] == (old["status"] if old["status"] != "running" else "interrupted")
        assert new["hypothesis"] == old["hypothesis"] or old["status"] == "running"
    assert rows[-1]["status"] == "keep"


def _rows_on_disk(task: Repo, tag: str) -> int:
    """Experiments that ran to their end so far, read from the ledger while its controller writes it."""
    path = task.path / ".overnight" / tag / "ledger.db"
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            finished = "SELECT COUNT(*) FROM experiments WHERE status NOT IN ('running', 'interrupted')"
            return int(db.execute(finished).fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:  # created but not yet written
        return 0


def test_killed_at_random_moments_five_times(task: Repo, plan, tmp_path: Path) -> None:
    task.write("overnight.toml", task_config(timeout=30))
    task.commit("slower")
    plan(STEPS)
    before = task.snapshot()
    chance = random.Random(7)
    for attempt in range(5):
        # Each start must finish one more experiment before it is killed (an event, not a time): then
        # the kill comes at a random moment of the next one.
        proc = overnight_process("run", task.path, "--tag", "r", "--agent-command", AGENT, "--max-experiments", "50")
        deadline = time.monotonic() + 300
        while _rows_on_disk(task, "r") <= attempt and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the controller ended by itself"
        time.sleep(chance.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    code, output = run(task, "r", "--max-experiments", "1")
    assert code == 0, output
    rows = check_consistent(task, "r", before)
    assert len(rows) >= 6  # five starts each finished one more experiment, and the last run one more


def runner_task(task: Repo, train: str, **config: str) -> Repo:
    task.write("train.py", train)
    task.write("overnight.toml", task_config(**config))
    task.commit("misbehaving run")
    return task


def test_a_run_writing_a_gigabyte_keeps_a_bounded_log_and_its_metric(task: Repo, plan) -> None:
    loud = "import sys\nX = 10\nfor _ in range(16384):\n    sys.stdout.write('x' * 65535 + '\\n')\nprint('---')\nprint('score:', (X - 3) ** 2 + 1)\n"
    runner_task(task, loud, extra_task="max_log_mb = 2")
    plan({"1": [["set", "train.py", "X", "5"]]})
    code, output = run(task, "g", "--max-experiments", "1", timeout=240)
    assert code == 0, output
    rows = ledger_rows(task.path, "g")
    assert [r["metric"] for r in rows] == [50, 5]
    log = task.path / ".overnight" / "g" / "logs" / "0.log"
    assert log.stat().st_size < 3 << 20
    assert "bytes of output cut here" in log.read_text()


@pytest.mark.parametrize(
    "damage", ["os.remove('helper.py')", "open('helper.py', 'a').write('VALUE = 0\\n')"], ids=["deletes", "rewrites"]
)
def test_a_run_that_deletes_or_rewrites_protected_files_is_rejected(task: Repo, plan, damage: str) -> None:
    sneaky = f"import os\nX = 10\nif X < 10:\n    {damage}\nprint('score:', (X - 3) ** 2 + 1)\n"
    runner_task(task, sneaky)
    plan({"1": [["set", "train.py", "X", "5"]]})
    code, output = run(task, "p", "--max-experiments", "1")
    assert code == 0, output
    row = ledger_rows(task.path, "p")[1]
    assert row["status"] == "rejected" and row["metric"] is None
    assert "harness changed: the run changed protected files (helper.py)" in row["reason"]


TAMPER = "X = 10\nif X < 10:\n    open('.git', 'w').write('gitdir: /nowhere\\n')\nprint('score:', (X - 3) ** 2 + 1)\n"
WIPE = (
    "import os, shutil\nX = 10\nif X < 10:\n    for name in os.listdir('.'):\n"
    "        shutil.rmtree(name) if os.path.isdir(name) and not os.path.islink(name) else os.remove(name)\n"
    "print('score:', (X - 3) ** 2 + 1)\n"
)


@pytest.mark.parametrize(("train", "named"), [(TAMPER, ".git"), (WIPE, "helper.py")], ids=["tampers-git", "wipes"])
def test_a_run_that_damages_its_worktree_is_rejected_and_the_next_one_starts_clean(
    task: Repo, plan, train: str, named: str
) -> None:
    # Pointing `.git` elsewhere, or deleting everything (`.git` included): the commit is still
    # written (the repository is named explicitly), the worktree is repaired, the next run is normal.
    runner_task(task, train)
    before = task.snapshot()
    plan({"1": [["set", "train.py", "X", "5"]], "2": [["set", "train.py", "X", "11"]]})
    code, output = run(task, "t", "--max-experiments", "2")
    assert code == 0, output
    rows = check_consistent(task, "t", before)
    assert rows[1]["status"] == "rejected" and rows[1]["metric"] is None
    assert "harness changed" in rows[1]["reason"] and named in rows[1]["reason"]
    assert "the worktree's .git was changed by a command; restored" in output
    assert rows[2]["status"] == "discard" and rows[2]["metric"] == 65  # measured in a whole worktree again


def test_an_oversized_change_is_rejected_before_it_is_committed_or_run(task: Repo, plan) -> None:
    task.write("overnight.toml", task_config(extra_task="max_diff_mb = 1"))
    task.commit("a small diff limit")
    before = task.snapshot()
    blob = TRAIN.replace("X = 10", "X = 5") + "# " + "x" * (3 << 20) + "\n"
    plan({"1": [["write", "train.py", blob]], "2": [["set", "train.py", "X", "4"]]})
    code, output = run(task, "z", "--max-experiments", "2")
    assert code == 0, output
    rows = check_consistent(task, "z", before)
    assert rows[1]["status"] == "rejected" and not rows[1]["commit"]
    assert "the change is too large: 3.0 MB of changed files > max_diff_mb" in rows[1]["reason"]
    assert not (task.path / ".overnight" / "z" / "logs" / "1.log").exists()  # never run
    assert rows[2]["status"] == "keep" and rows[2]["metric"] == 2  # the blob did not follow into the next one


def test_a_forged_metric_counts_only_from_the_evaluator(task: Repo, plan) -> None:
    task.write("evaluate.py", "import re\nx = int(re.search(r'^X = (\\d+)', open('train.py').read(), re.M).group(1))\n"
               "print('score:', (x - 3) ** 2 + 1)\n")  # fmt: skip
    task.write("overnight.toml", task_config(extra_metric='command = "python3 evaluate.py"'))
    task.commit("evaluator")
    plan({"1": [["set", "train.py", "X", "12"], ["shell", "echo \"print('score: 0')\" >> train.py"]]})
    code, output = run(task, "e", "--max-experiments", "1")
    assert code == 0, output
    row = ledger_rows(task.path, "e")[1]
    assert row["status"] == "discard" and row["metric"] == 82  # the run said 0; the evaluator says 82


def test_a_metric_printed_twice_is_flagged(task: Repo, plan) -> None:
    plan({"1": [["set", "train.py", "X", "5"], ["shell", "echo \"print('score: 0.5')\" >> train.py"]]})
    code, output = run(task, "f", "--max-experiments", "1")
    assert code == 0, output
    row = ledger_rows(task.path, "f")[1]
    assert row["info"]["flags"] == ["score was printed 2 times; the value of the last summary block counts"]


def test_a_run_over_its_memory_limit_is_killed(task: Repo, plan) -> None:
    hungry = "import time\nX = 10\nif X < 10:\n    block = bytearray(400 * 1024 * 1024)\n    time.sleep(3)\nprint('score:', (X - 3) ** 2 + 1)\n"
    runner_task(task, hungry, extra_task="memory_mb = 150")
    plan({"1": [["set", "train.py", "X", "5"]]})
    code, output = run(task, "m", "--max-experiments", "1")
    assert code == 0, output
    row = ledger_rows(task.path, "m")[1]
    assert row["status"] == "crash" and "held more than memory_mb" in row["reason"]


def test_credentials_stay_out_of_experiments_logs_and_the_ledger(task: Repo, plan, monkeypatch) -> None:
    leak = (
        "import os\nX = 10\nprint('env:', os.environ.get('OPENAI_API_KEY'), os.environ.get('MY_TOKEN'),"
        " len(os.environ.get('ALLOWED_KEY', '')))\nprint('score:', (X - 3) ** 2 + 1)\n"
    )
    runner_task(task, leak, extra_task='pass_env = ["ALLOWED_KEY"]')
    secret = "sk-test-0123456789abcdef"
    plan({"1": [["shell", f"echo Hypothesis: try $MY_TOKEN {secret}"], ["set", "train.py", "X", "5"]]})
    code, output = run(task, "s", "--max-experiments", "1",
                       env={"OPENAI_API_KEY": secret, "MY_TOKEN": "tok-abcdefgh", "ALLOWED_KEY": "allowed-value"})  # fmt: skip
    assert code == 0, output
    logs = "".join(p.read_text() for p in (task.path / ".overnight" / "s" / "logs").glob("*.log"))
    assert "env: None None 13" in logs  # scrubbed unless passed (and then still redacted in the log)
    assert secret not in logs and "[redacted]" in logs  # the agent echoed it: redacted
    ledger = (task.path / ".overnight" / "s" / "ledger.db").read_bytes()
    assert secret.encode() not in ledger
    assert ledger_rows(task.path, "s")[1]["hypothesis"] == "try [redacted]"


def test_a_change_that_writes_a_credential_is_rejected_and_never_committed(task: Repo, plan) -> None:
    # An agent that sees a credential (passed to it, or a coding CLI's own key) writes it into the
    # code: committed, it would stay in git's objects, the ledger's diff and `overnight show`.
    runner_task(task, "X = 10\nprint('score:', (X - 3) ** 2 + 1)\n", extra_task='pass_env = ["MY_API_KEY"]')
    secret = "sk-live-0123456789abcdef"
    plan({"1": [["shell", "echo \"KEY = '$MY_API_KEY'\" >> train.py"], ["set", "train.py", "X", "5"]],
          "2": [["set", "train.py", "X", "5"]]})  # fmt: skip
    code, output = run(task, "k", "--max-experiments", "2", env={"MY_API_KEY": secret})
    assert code == 0, output
    rows = ledger_rows(task.path, "k")
    assert [r["status"] for r in rows] == ["baseline", "rejected", "keep"]
    assert "the value of a credential" in rows[1]["reason"] and "train.py" in rows[1]["reason"]
    assert not rows[1]["commit"]  # nothing committed
    objects = subprocess.run(["git", "grep", secret, *task.git("rev-list", "--all").split()], cwd=task.path,
                             capture_output=True, text=True)  # fmt: skip
    assert objects.stdout == ""  # in no commit of the repository
    state = task.path / ".overnight" / "k"
    assert not [p for p in state.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    shown = subprocess.run([sys.executable, "-m", "overnight", "show", "1", str(task.path), "--tag", "k"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0 and secret not in shown.stdout


TAMPER = """\
import os, sqlite3, subprocess
X = 10
if X == 11 and os.environ.get("TAMPER") == "ledger":  # forge the baseline's record
    db = sqlite3.connect(os.environ["LEDGER"])
    db.execute("UPDATE experiments SET metric = 99 WHERE id = 0")
    db.commit()
if X == 11 and os.environ.get("TAMPER") == "branch":  # move the run branch back to where it started
    subprocess.run(["git", "update-ref", "-d", os.environ["BRANCH"]], cwd=os.environ["REPO"], check=True)
print("score:", (X - 3) ** 2 + 1)
"""


@pytest.mark.parametrize("what", ["ledger", "branch"])
def test_an_experiment_that_writes_the_ledger_or_moves_the_branch_stops_the_run_at_once(
    task: Repo, plan, what: str
) -> None:
    # Without a sandbox an experiment can write anything its user can: noticed before the next
    # experiment, not at the next keep (which failed, and was lost) or never (a resume mended it).
    runner_task(task, TAMPER)
    # experiment 1 (a change for the worse: discarded) tampers while it is measured
    plan({"1": [["set", "train.py", "X", "11"]], "2": [["set", "train.py", "X", "4"]]})
    ledger = task.path / ".overnight" / "t" / "ledger.db"
    env = {"TAMPER": what, "LEDGER": str(ledger), "BRANCH": "refs/heads/overnight/t", "REPO": str(task.path)}
    code, output = run(task, "t", "--max-experiments", "2", env=env)
    assert code == 5, output
    if what == "ledger":
        assert "its ledger" in output and "was changed by another program" in output
    else:
        assert "branch overnight/t was deleted, which this run did not do" in output and "git branch -f" in output
    rows = ledger_rows(task.path, "t")
    assert [r["id"] for r in rows] == [0, 1]  # stopped before experiment 2 began


def test_a_full_disk_while_writing_a_log_stops_the_run_and_loses_nothing(task: Repo, plan) -> None:
    loud = "X = 10\nif X < 10:\n    print('x' * (8 << 20))\nprint('score:', (X - 3) ** 2 + 1)\n"
    runner_task(task, loud)
    plan({"1": [["set", "train.py", "X", "5"]], "2": [["set", "train.py", "X", "4"]]})
    before = task.snapshot()
    limit = 4 << 20  # files may not grow past 4 MB, like a disk with 4 MB free

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.Popen(
        [sys.executable, "-m", "overnight", "run", str(task.path), "--tag", "d", "--agent-command", AGENT,
         "--max-experiments", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=small_disk,
    )  # fmt: skip
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    assert "could not write the log" in err and "File too large" in err, err
    rows = ledger_rows(task.path, "d")
    assert [r["status"] for r in rows] == ["baseline", "interrupted"]
    assert "could not write the log" in rows[1]["reason"]
    code, output = run(task, "d", "--max-experiments", "1")  # room again: the run goes on
    assert code == 0, output
    rows = check_consistent(task, "d", before)
    assert rows[2]["status"] in ("keep", "discard")


def test_reliability_doc_cites_only_tests_that_exist() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    cited = set(re.findall(r"`(tests/test_\w+\.py)::(test_\w+)`", doc))
    assert len(cited) >= 20
    for path, name in cited:
        source = (Path(__file__).parent.parent / path).read_text()
        assert f"def {name}(" in source, f"{path}::{name} is cited in docs/reliability.md but does not exist"
