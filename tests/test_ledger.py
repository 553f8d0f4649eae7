"""The ledger: rows round-trip, writes are atomic, the schema is versioned."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import Repo, ledger_rows
from overnight.errors import RunStateError
from overnight.records import Experiment, Status
from overnight.run.ledger import SCHEMA_VERSION, Ledger


def test_round_trip_and_ids(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", create=True) as ledger:
        assert ledger.next_id() == 0
        exp = Experiment(
            id=0,
            status=Status.BASELINE,
            metric=1.5,
            metrics={"a": 1.0},
            host={"cpu": "x"},
            info={"tokens_in": 3},
            hypothesis="base",
            started_at="t",
        )
        ledger.record(exp)
        ledger.record(Experiment(id=1, status=Status.RUNNING))
        assert ledger.get(0) == exp and ledger.next_id() == 2
        assert [e.id for e in ledger.experiments(Status.RUNNING)] == [1]
        ledger.record(Experiment(id=1, status=Status.CRASH, reason="boom"))
        assert [e.status for e in ledger.experiments()] == [Status.BASELINE, Status.CRASH]
        ledger.set_meta(tag="t", task=".")
        assert ledger.get_meta("tag") == "t" and ledger.get_meta("nope", "d") == "d"


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    Ledger(tmp_path / "l.db", create=True).close()
    db = sqlite3.connect(tmp_path / "l.db")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Ledger(tmp_path / "l.db", create=True).close()
    db = sqlite3.connect(tmp_path / "l.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(RunStateError, match="upgrade overnight"):
        Ledger(tmp_path / "l.db")


def test_a_missing_ledger_is_not_created_by_readers(tmp_path: Path) -> None:
    with pytest.raises(RunStateError, match="no ledger here"):
        Ledger(tmp_path / "none.db")
    assert not (tmp_path / "none.db").exists()


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", create=True) as ledger:
        with pytest.raises(RuntimeError), ledger.transaction() as db:
            db.execute("INSERT INTO experiments (id, status) VALUES (5, 'keep')")
            raise RuntimeError("killed mid-write")
        assert ledger.experiments() == []


def test_readers_see_a_consistent_state_while_a_writer_works(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db", create=True) as writer, Ledger(tmp_path / "l.db") as reader:
        writer.record(Experiment(id=0, status=Status.BASELINE))
        with writer.transaction() as db:
            db.execute("INSERT INTO experiments (id, status) VALUES (1, 'keep')")
            assert [e.id for e in reader.experiments()] == [0]
        assert [e.id for e in reader.experiments()] == [0, 1]


def test_a_version_1_ledger_is_upgraded_in_place(tmp_path: Path) -> None:
    from overnight.run.ledger import MIGRATIONS

    db = sqlite3.connect(tmp_path / "old.db")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT INTO experiments (id, status, metric) VALUES (0, 'baseline', 1.5)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Ledger(tmp_path / "old.db") as ledger:
        (exp,) = ledger.experiments()
        assert exp.metric == 1.5 and exp.tokens_in is None and exp.change_key == ""
        ledger.record(Experiment(id=1, status=Status.REJECTED, tokens_in=10, tokens_out=5, cost_usd=0.5))
        assert ledger.spent() == (15, 0.5)


OLD = Path(__file__).parent / "data" / "ledger-0.1.0"  # written by overnight 0.1.0: see its tables.json


def test_a_ledger_written_by_0_1_0_opens_without_loss(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    shutil.copy(OLD / "ledger.db", path)
    tables = json.loads((OLD / "tables.json").read_text())
    with Ledger(path) as ledger:
        assert {row["key"]: ledger.get_meta(row["key"]) for row in tables["meta"]} == {
            row["key"]: row["value"] for row in tables["meta"]
        }
        experiments = ledger.experiments()
        assert len(experiments) == len(tables["experiments"]) == 8
        for exp, row in zip(experiments, tables["experiments"], strict=True):
            as_stored = {**exp.to_json(), "commit_hash": exp.commit, "change_key": exp.change_key}
            del as_stored["commit"]
            for name in ("metrics", "host", "info"):
                as_stored[name] = json.dumps(as_stored[name])
            assert as_stored == row
        measurements = ledger.measurements()
        assert len(measurements) == len(tables["measurements"]) == 11
        for m, row in zip(measurements, tables["measurements"], strict=True):
            load = m.load or (None, None)
            assert (m.experiment, m.round, m.seed, m.value, m.kind, m.metrics, m.duration_s, m.peak_memory_mb, m.at,
                    *load) == (row["experiment"], row["round"], row["seed"], row["value"], row["kind"],
                               json.loads(row["metrics"]), row["duration_s"], row["peak_memory_mb"], row["at"],
                               row["load_start"], row["load_end"])  # fmt: skip
    # and once written by this version, a row reads back the same
    with Ledger(path) as ledger:
        kept = ledger.get(6)
        assert kept is not None and kept.status is Status.KEEP
        ledger.record(kept)
        assert ledger.get(6) == kept


def test_log_json_of_a_0_1_0_run_is_unchanged(repo: Repo, tmp_path: Path) -> None:
    (repo.path / ".overnight" / "v010").mkdir(parents=True)
    shutil.copy(OLD / "ledger.db", repo.path / ".overnight" / "v010" / "ledger.db")
    assert ledger_rows(repo.path, "v010") == json.loads((OLD / "log.json").read_text())
