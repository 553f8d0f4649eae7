"""Parallel workers on one shared best: one linear chain of keeps, rebases, stale, slots and GPUs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import FAKES, Repo, ledger_rows, task_config

pytestmark = pytest.mark.slow  # a heavy group: `pytest -m 'not slow'` leaves it out

PARALLEL_AGENT = f"{sys.executable} {FAKES / 'parallel_agent.py'}"

# score = (A-1)^2 + (B-2)^2 + (C-3)^2 after SLEEP seconds; each run notes when it ran and on which GPU.
TRAIN = """\
import json, os, time
A = 10

B = 10

C = 10
SLEEP = 0.6
start = time.time()
time.sleep(SLEEP)
with open(os.path.join(os.environ["MARK_DIR"], "runs.jsonl"), "a") as fh:
    fh.write(json.dumps({"id": int(os.environ["OVERNIGHT_EXPERIMENT_ID"]), "start": start, "end": time.time(),
                         "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}) + "\\n")
print(f"score: {(A - 1) ** 2 + (B - 2) ** 2 + (C - 3) ** 2}")
"""


@pytest.fixture
def parallel(repo: Repo, marks: Path) -> Repo:
    repo.write("train.py", TRAIN)
    repo.write("overnight.toml", task_config())
    repo.write("program.md", "Lower the score.\n")
    repo.commit("task")
    return repo


def runs(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "marks" / "runs.jsonl").read_text().splitlines()]


def overlapping(spans: list[dict]) -> list[tuple[dict, dict]]:
    return [
        (a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if a["start"] < b["end"] and b["start"] < a["end"]
    ]


def test_three_workers_build_one_linear_chain(parallel: Repo, cli, tmp_path: Path) -> None:
    result = cli("run", parallel.path, "--tag", "p", "--agent-command", PARALLEL_AGENT, "--workers", "3",
                 "--max-experiments", "9")  # fmt: skip
    assert result.code == 0, result.err
    assert "3 workers, 3 slots" in result.out
    rows = ledger_rows(parallel.path, "p")
    assert [r["id"] for r in rows] == list(range(10))
    assert {r["worker"] for r in rows[1:]} == {0, 1, 2}
    assert overlapping(runs(tmp_path)), "workers ran experiments at the same time"
    keeps = [r for r in rows if r["status"] == "keep"]
    assert len(keeps) == 3
    # One chain: from the tip, every commit's first parent is another keep, down to the baseline.
    chain = parallel.git("rev-list", "--first-parent", "overnight/p", f"^{rows[0]['commit']}").split()
    assert sorted(chain) == sorted(k["commit"] for k in keeps)
    for keep in keeps:
        assert parallel.git("rev-parse", f"{keep['commit']}^").strip() == keep["parent"]
    tip = parallel.git("show", "overnight/p:train.py")
    assert "A = 1\n" in tip and "B = 2\n" in tip and "C = 3\n" in tip


def test_a_candidate_is_rebased_when_the_best_moved(parallel: Repo, cli) -> None:
    # Two workers start together on the baseline, changing different lines; whichever finishes
    # second beat a parent that is no longer the best: it is rebased, measured again, kept.
    result = cli("run", parallel.path, "--tag", "r", "--agent-command", PARALLEL_AGENT, "--workers", "2",
                 "--max-experiments", "2")  # fmt: skip
    assert result.code == 0, result.err
    rows = ledger_rows(parallel.path, "r")
    assert [r["status"] for r in rows] == ["baseline", "keep", "keep"]
    first, second = sorted(rows[1:], key=lambda r: len(r["info"].get("rebased", [])))
    assert not first["info"].get("rebased") and second["info"]["rebased"][0]["onto"] == first["id"]
    assert second["parent"] == first["commit"]
    assert parallel.git("rev-parse", "overnight/r").strip() == second["commit"]
    assert first["metric"] in (130, 145) and second["metric"] == 81  # B = 2 and C = 3 together


def test_a_rebased_candidate_that_then_fails_is_recorded_as_rebased(parallel: Repo, cli) -> None:
    # B = 2 and C = 3 each run alone, but crash together: the second candidate fails only
    # after its rebase, and its row must hold the rebased commit, not the one it began with.
    parallel.write("train.py", TRAIN.replace("print(f", "assert not (B == 2 and C == 3)\nprint(f"))
    parallel.commit("crash together")
    result = cli("run", parallel.path, "--tag", "f", "--agent-command", PARALLEL_AGENT, "--workers", "2",
                 "--max-experiments", "2")  # fmt: skip
    assert result.code == 0, result.err
    rows = ledger_rows(parallel.path, "f")
    assert sorted(r["status"] for r in rows[1:]) == ["crash", "keep"]
    kept = next(r for r in rows if r["status"] == "keep")
    crashed = next(r for r in rows if r["status"] == "crash")
    assert crashed["info"]["rebased"][0]["onto"] == kept["id"]
    assert crashed["parent"] == kept["commit"]
    assert parallel.git("rev-parse", f"{crashed['commit']}^").strip() == kept["commit"]
    assert "after a rebase onto experiment" in crashed["reason"]


def test_a_conflicting_rebase_is_stale(parallel: Repo, cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PARALLEL_MODE", "clash")
    result = cli("run", parallel.path, "--tag", "c", "--agent-command", PARALLEL_AGENT, "--workers", "2",
                 "--max-experiments", "2")  # fmt: skip
    assert result.code == 0, result.err
    statuses = sorted(r["status"] for r in ledger_rows(parallel.path, "c")[1:])
    assert statuses == ["keep", "stale"]
    stale = next(r for r in ledger_rows(parallel.path, "c") if r["status"] == "stale")
    assert "conflicts with experiment" in stale["reason"]


def test_agents_see_what_the_others_are_trying(parallel: Repo, cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AGENT_SLEEP", "0.3")
    assert cli("run", parallel.path, "--tag", "s", "--agent-command", PARALLEL_AGENT, "--workers", "2",
               "--max-experiments", "4").code == 0  # fmt: skip
    seen = [json.loads(p.read_text()) for p in (tmp_path / "marks").glob("running-*.json")]
    hypotheses = [r["hypothesis"] for running in seen for r in running]
    assert any(h.startswith("set ") for h in hypotheses)


def test_exclusive_runs_one_experiment_at_a_time(parallel: Repo, cli, tmp_path: Path) -> None:
    parallel.write("overnight.toml", task_config(extra_task="exclusive = true"))
    parallel.commit("exclusive")
    result = cli("run", parallel.path, "--tag", "x", "--agent-command", PARALLEL_AGENT, "--workers", "3",
                 "--max-experiments", "4")  # fmt: skip
    assert result.code == 0, result.err
    assert overlapping(runs(tmp_path)) == []


def test_one_gpu_per_running_experiment(parallel: Repo, cli, tmp_path: Path) -> None:
    result = cli("run", parallel.path, "--tag", "g", "--agent-command", PARALLEL_AGENT, "--workers", "3",
                 "--gpus", "0,1", "--max-experiments", "5")  # fmt: skip
    assert result.code == 0, result.err
    spans = runs(tmp_path)
    assert {s["gpu"] for s in spans} <= {"0", "1"}
    assert all(a["gpu"] != b["gpu"] for a, b in overlapping(spans))
    assert len({tuple(sorted((a["id"], b["id"]))) for a, b in overlapping(spans)}) >= 1


def test_machine_load_is_recorded(parallel: Repo, cli) -> None:
    import sqlite3

    assert (
        cli("run", parallel.path, "--tag", "l", "--agent-command", PARALLEL_AGENT, "--max-experiments", "1").code == 0
    )
    db = sqlite3.connect(parallel.path / ".overnight" / "l" / "ledger.db")
    try:
        loads = db.execute("SELECT load_start, load_end FROM measurements").fetchall()
    finally:
        db.close()
    assert loads and all(a is not None and b is not None and a >= 0 for a, b in loads)
