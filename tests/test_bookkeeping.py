"""What the harness records of an experiment (Bookkeeping) stays apart from what its agent reports (``info``).

An agent cannot change the harness's facts, and the ledger and `log --format json` still hold both
in the one ``info`` object they always held.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import AGENT, Repo, ledger_rows
from overnight.agents import CommandAgent, Context
from overnight.bookkeeping import Bookkeeping, Judged, Rebase, Screen, SetAside, Undone
from overnight.executors import LocalExecutor
from overnight.records import Experiment, Proposal, Status
from overnight.run.controller import Controller, Limits
from overnight.run.ledger import Ledger
from overnight.run.start import Run
from overnight.task import Task
from overnight.views import mlflow_fields

# Every fact set, as the harness writes them: the values as the ledger held them before Bookkeeping.
FACTS = Bookkeeping(
    containment="tree",
    flags=("score was printed 2 times; the value of the last summary block counts",),
    set_aside=(SetAside(round=0, seed=1, value=7.5, why="a test: disturbed"),),
    rebased=(Rebase("abc123", 4), Rebase("def456", 6)),
    broken_guards=("breaks guard mem <= 1.05 * best: 200 > 1.05 × 100 = 105",),
    judged_against=Judged(id=4, runs=3, estimate=1.25),
    screen=Screen(None),
    undone=Undone(reason="its follow-up undid it", at_runs=5),
)
STORED = {
    "model": "m-1",
    "params": {"X": 9},
    "containment": "tree",
    "flags": ["score was printed 2 times; the value of the last summary block counts"],
    "set_aside": [{"round": 0, "seed": 1, "value": 7.5, "why": "a test: disturbed"}],
    "rebased": [{"from": "abc123", "onto": 4}, {"from": "def456", "onto": 6}],
    "broken_guards": ["breaks guard mem <= 1.05 * best: 200 > 1.05 × 100 = 105"],
    "judged_against": {"id": 4, "runs": 3, "estimate": 1.25},
    "screen_z": None,
    "undone": {"reason": "its follow-up undid it", "at_runs": 5},
}


def _stored_info(path: Path, experiment_id: int) -> dict[str, object]:
    db = sqlite3.connect(path)
    try:
        (text,) = db.execute("SELECT info FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
    finally:
        db.close()
    found: dict[str, object] = json.loads(text)
    return found


def test_a_round_trip_keeps_facts_and_agent_info_apart_in_one_stored_object(tmp_path: Path) -> None:
    exp = Experiment(id=7, status=Status.DISCARD, info={"model": "m-1", "params": {"X": 9}}, bookkeeping=FACTS)
    assert exp.round == 2
    assert exp.to_json()["info"] == STORED and "bookkeeping" not in exp.to_json()
    with Ledger(tmp_path / "l.db", create=True) as ledger:
        ledger.record(exp)
        assert ledger.get(7) == exp
    assert _stored_info(tmp_path / "l.db", 7) == STORED  # the ledger's one info object, as before
    # unset facts are absent, not null or empty
    plain = Experiment(id=1, status=Status.KEEP, info={"model": "m"})
    assert plain.to_json()["info"] == {"model": "m"} and Bookkeeping().to_json() == {}


def test_a_ledger_row_written_before_bookkeeping_reads_apart(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", create=True) as ledger:
        ledger.record(Experiment(id=0, status=Status.RUNNING))
    db = sqlite3.connect(tmp_path / "l.db")
    db.execute("UPDATE experiments SET status = 'discard', info = ? WHERE id = 0", (json.dumps(STORED),))
    # before, an agent could set a harness key: one not of the fact's shape stays the agent's, as it was
    agent_set = {"rebased": "yes", "flags": [], "judged_against": {"id": 1}, "sampled": "random start"}
    db.execute("INSERT INTO experiments (id, status, info) VALUES (1, 'discard', ?)", (json.dumps(agent_set),))
    db.commit()
    db.close()
    with Ledger(tmp_path / "l.db") as ledger:
        old = ledger.get(0)
        assert old is not None and old.bookkeeping == FACTS and old.info == {"model": "m-1", "params": {"X": 9}}
        assert old.to_json()["info"] == STORED
        odd = ledger.get(1)
        assert odd is not None and odd.bookkeeping == Bookkeeping() and odd.round == 0
        assert odd.info == agent_set and odd.to_json()["info"] == agent_set
        ledger.record(old)
        ledger.record(odd)
    assert _stored_info(tmp_path / "l.db", 0) == STORED
    assert _stored_info(tmp_path / "l.db", 1) == agent_set


class Overreaching(CommandAgent):
    """The fake agent, reporting harness facts of its own besides its model."""

    def propose(self, context: Context) -> Proposal:
        proposal = super().propose(context)
        claimed = {
            "rebased": [{"from": "0" * 40, "onto": 0}, {"from": "1" * 40, "onto": 0}],
            "undone": {"reason": "the agent says so", "at_runs": 1},
            "screen_z": 9.0,
        }
        return replace(proposal, info={"model": "m-agent", **claimed, "params": {"X": 5}})


def test_an_agent_cannot_set_the_harness_facts(
    task: Repo, plan: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    plan(
        {
            "1": [["set", "train.py", "X", "5"], ["print", "Hypothesis: move X toward 3"]],
            "2": [["set", "train.py", "X", "9"], ["print", "Hypothesis: X = 9"]],
        }
    )
    run = Run.start(Task.load(task.path), "claims")
    try:
        with caplog.at_level(logging.WARNING, logger="overnight"):
            Controller(run, [Overreaching(AGENT, 60)], LocalExecutor(), Limits(max_experiments=2)).run_workers()
        kept, discarded = run.state.get(1), run.state.get(2)
    finally:
        run.close()
    assert (kept.status, discarded.status) == (Status.KEEP, Status.DISCARD)
    for exp in (kept, discarded):
        assert exp.round == 0 and exp.bookkeeping.rebased == () and exp.bookkeeping.undone is None
        assert exp.info == {"model": "m-agent", "params": {"X": 5}}  # the agent's own keys are recorded
        assert mlflow_fields.params(exp, None)["agent.model"] == "m-agent"
    assert discarded.bookkeeping.judged_against is not None and discarded.bookkeeping.screen is not None
    assert discarded.bookkeeping.screen.z != 9.0
    assert "left out" in caplog.text and "rebased, undone, screen_z" in caplog.text
    rows = {r["id"]: r for r in ledger_rows(task.path, "claims")}
    assert rows[1]["info"]["model"] == "m-agent" and "rebased" not in rows[1]["info"]
    assert "undone" not in rows[1]["info"] and rows[1]["info"]["params"] == {"X": 5}
    assert rows[2]["info"]["judged_against"]["id"] == 1 and rows[2]["info"]["screen_z"] != 9.0
    assert rows[2]["status"] == "discard" and "rebased" not in rows[2]["info"]
