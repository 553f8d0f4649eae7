"""The ledger: an SQLite record of every experiment of a run.

Ownership: one process writes (the run's controller, which holds the run lock);
any number may read (status, log, show, report). WAL mode lets readers see a
consistent state while the writer goes on. Every write goes through
:meth:`Ledger.transaction`, so a controller killed mid-write leaves the previous
state, never half a row. Within the controller, worker threads share one
connection; a lock serializes every call, so the controller stays the one writer.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` upgrades
an older ledger in place, and a newer one is refused with a message.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from overnight.bookkeeping import Bookkeeping
from overnight.errors import RunStateError
from overnight.records import Experiment, Measured, Note, Status, Verification, VerifyMeasured
from overnight.run import faults

MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY,
        status TEXT NOT NULL,
        parent TEXT NOT NULL DEFAULT '',
        commit_hash TEXT NOT NULL DEFAULT '',
        agent TEXT NOT NULL DEFAULT '',
        hypothesis TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        metric REAL,
        metrics TEXT NOT NULL DEFAULT '{}',
        files_changed INTEGER NOT NULL DEFAULT 0,
        insertions INTEGER NOT NULL DEFAULT 0,
        deletions INTEGER NOT NULL DEFAULT 0,
        duration_s REAL,
        peak_memory_mb REAL,
        exit_code INTEGER,
        started_at TEXT NOT NULL DEFAULT '',
        ended_at TEXT NOT NULL DEFAULT '',
        worker INTEGER NOT NULL DEFAULT 0,
        host TEXT NOT NULL DEFAULT '{}',
        info TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX experiments_status ON experiments (status);
    """,
    # version 2: what agents spend, and a key to recognise a change already tried
    """
    ALTER TABLE experiments ADD COLUMN tokens_in INTEGER;
    ALTER TABLE experiments ADD COLUMN tokens_out INTEGER;
    ALTER TABLE experiments ADD COLUMN cost_usd REAL;
    ALTER TABLE experiments ADD COLUMN change_key TEXT NOT NULL DEFAULT '';
    """,
    # version 3: every measurement (an experiment may be measured several times), the judge's estimate
    """
    CREATE TABLE measurements (
        experiment INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        value REAL,
        kind TEXT NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}',
        duration_s REAL,
        peak_memory_mb REAL,
        at TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (experiment, seed)
    );
    ALTER TABLE experiments ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE experiments ADD COLUMN improvement REAL;
    ALTER TABLE experiments ADD COLUMN ci_low REAL;
    ALTER TABLE experiments ADD COLUMN ci_high REAL;
    ALTER TABLE experiments ADD COLUMN holdout REAL;
    """,
    # version 4: measurement rounds (a candidate rebased onto a newer best is measured anew), machine load
    """
    CREATE TABLE measurements_v4 (
        experiment INTEGER NOT NULL,
        round INTEGER NOT NULL DEFAULT 0,
        seed INTEGER NOT NULL,
        value REAL,
        kind TEXT NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}',
        duration_s REAL,
        peak_memory_mb REAL,
        at TEXT NOT NULL DEFAULT '',
        load_start REAL,
        load_end REAL,
        PRIMARY KEY (experiment, round, seed)
    );
    INSERT INTO measurements_v4 (experiment, seed, value, kind, metrics, duration_s, peak_memory_mb, at)
        SELECT experiment, seed, value, kind, metrics, duration_s, peak_memory_mb, at FROM measurements;
    DROP TABLE measurements;
    ALTER TABLE measurements_v4 RENAME TO measurements;
    """,
    # version 5: the share of the machine other programs used during a measurement
    """
    ALTER TABLE measurements ADD COLUMN contention REAL;
    """,
    # version 6: the lab notebook: notes agents leave for later experiments and other workers
    """
    CREATE TABLE notes (
        id INTEGER PRIMARY KEY,
        experiment INTEGER NOT NULL,
        worker INTEGER NOT NULL DEFAULT 0,
        agent TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL DEFAULT '',
        text TEXT NOT NULL
    );
    CREATE INDEX notes_experiment ON notes (experiment);
    """,
    # version 7: verifications (`overnight verify`): the run's points measured again at a larger scale
    """
    CREATE TABLE verifications (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL DEFAULT '',
        ended_at TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE verify_measurements (
        verification INTEGER NOT NULL,
        arm TEXT NOT NULL,
        seed INTEGER NOT NULL,
        commit_hash TEXT NOT NULL DEFAULT '',
        value REAL,
        status TEXT NOT NULL DEFAULT 'measured',
        reason TEXT NOT NULL DEFAULT '',
        metrics TEXT NOT NULL DEFAULT '{}',
        duration_s REAL,
        at TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (verification, arm, seed)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Experiment field → ledger column, derived from the one field list (records.Experiment).
# ``bookkeeping`` has no column: it is stored within ``info`` (Experiment.stored_info, Bookkeeping.split).
_FIELDS = {f.name: f.metadata.get("column", f.name) for f in fields(Experiment) if "within" not in f.metadata}
_JSON = {f.name for f in fields(Experiment) if f.default_factory is dict}  # stored as JSON text
_COLUMNS = ", ".join(_FIELDS.values())
_SLOTS = ", ".join(f":{name}" for name in _FIELDS)
_MEASURED = (
    "experiment", "round", "seed", "value", "kind", "metrics", "duration_s", "peak_memory_mb", "at", "contention",
)  # fmt: skip
_MEASURED_COLUMNS = ", ".join((*_MEASURED, "load_start", "load_end"))


class Ledger:
    """One run's experiments in ``ledger.db``.

    One connection, shared by the controller's threads behind a lock: every call is
    atomic, and the controller stays the database's single writer.
    """

    def __init__(self, path: Path, *, create: bool = False) -> None:
        if not create and not path.exists():
            raise RunStateError(f"{path}: no ledger here; start a run with `overnight run`")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._version: int | None = None  # PRAGMA data_version at the last written_elsewhere()
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.row_factory = sqlite3.Row  # rows are read by column name, never by position
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def written_elsewhere(self) -> bool:
        """Whether another connection (another program) committed a change since the last call.

        SQLite's data_version moves with every commit made through another connection and
        never with this one's own: the controller is the only writer it should ever see.
        """
        with self._lock:
            version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            seen, self._version = self._version, version
            return seen is not None and version != seen

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RunStateError(
                f"{self.path}: ledger schema {version} is newer than this overnight understands "
                f"({SCHEMA_VERSION}); upgrade overnight"
            )
        for number in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all; other threads wait meanwhile."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                faults.point("ledger")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- meta: the run's own facts (config, start commit, ...) ---------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self._all("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, **values: str) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items())

    # -- experiments ----------------------------------------------------------------------

    def next_id(self) -> int:
        """The id the next experiment will get (unless another thread begins one first)."""
        top = self._all("SELECT MAX(id) FROM experiments")[0][0]
        return 0 if top is None else top + 1

    def begin(self, make: Callable[[int], Experiment]) -> Experiment:
        """Record ``make(id)`` under the next free id, atomically (ids never repeat or skip)."""
        with self.transaction() as db:
            top = db.execute("SELECT MAX(id) FROM experiments").fetchone()[0]
            exp = make(0 if top is None else top + 1)
            db.execute(f"INSERT INTO experiments ({_COLUMNS}) VALUES ({_SLOTS})", _row(exp))
        return exp

    def record(self, exp: Experiment) -> None:
        """Insert or replace the row of ``exp.id``."""
        with self.transaction() as db:
            self.write_experiment(db, exp)

    def get(self, experiment_id: int) -> Experiment | None:
        rows = self._all(f"SELECT {_COLUMNS} FROM experiments WHERE id = ?", (experiment_id,))
        return _experiment(rows[0]) if rows else None

    def add_measurement(self, m: Measured) -> None:
        with self.transaction() as db:
            self.write_measurement(db, m)

    @staticmethod
    def write_measurement(db: sqlite3.Connection, m: Measured) -> None:
        """Insert or replace measurement ``m`` inside a transaction already open on ``db``."""
        row: dict[str, Any] = {name: getattr(m, name) for name in _MEASURED}
        row["metrics"] = json.dumps(m.metrics)
        row["load_start"], row["load_end"] = m.load if m.load else (None, None)
        slots = ", ".join(f":{name}" for name in row)
        db.execute(f"INSERT OR REPLACE INTO measurements ({', '.join(row)}) VALUES ({slots})", row)

    @staticmethod
    def write_experiment(db: sqlite3.Connection, exp: Experiment) -> None:
        """Insert or replace the row of ``exp.id`` inside a transaction already open on ``db``."""
        db.execute(f"INSERT OR REPLACE INTO experiments ({_COLUMNS}) VALUES ({_SLOTS})", _row(exp))

    def measurements(self, experiment_id: int | None = None) -> list[Measured]:
        """Measurements, in (experiment, round, seed) order; of one experiment when given."""
        sql = f"SELECT {_MEASURED_COLUMNS} FROM measurements"
        args: tuple[int, ...] = ()
        if experiment_id is not None:
            sql += " WHERE experiment = ?"
            args = (experiment_id,)
        return [_measured(r) for r in self._all(sql + " ORDER BY experiment, round, seed", args)]

    @staticmethod
    def write_notes(db: sqlite3.Connection, notes: list[Note]) -> None:
        """Append ``notes`` inside a transaction already open on ``db`` (an id of 0 takes the next free one)."""
        db.executemany(
            "INSERT INTO notes (id, experiment, worker, agent, at, text) VALUES (?, ?, ?, ?, ?, ?)",
            [(n.id or None, n.experiment, n.worker, n.agent, n.at, n.text) for n in notes],
        )

    def notes(self) -> list[Note]:
        """The notebook, oldest first."""
        rows = self._all("SELECT id, experiment, worker, agent, at, text FROM notes ORDER BY id")
        return [
            Note(
                id=r["id"], experiment=r["experiment"], worker=r["worker"], agent=r["agent"], at=r["at"], text=r["text"]
            )
            for r in rows
        ]

    # -- verifications (`overnight verify`) ------------------------------------------------

    def begin_verification(self, settings: dict[str, Any], started_at: str) -> int:
        """Record a new verification; its id."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO verifications (started_at, settings) VALUES (?, ?)", (started_at, json.dumps(settings))
            )
            return int(cursor.lastrowid or 0)

    def end_verification(self, verification: int, ended_at: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE verifications SET ended_at = ? WHERE id = ?", (ended_at, verification))

    def add_verify_measurement(self, m: VerifyMeasured) -> None:
        row = (m.verification, m.arm, m.seed, m.commit, m.value, m.status, m.reason, json.dumps(m.metrics),
               m.duration_s, m.at)  # fmt: skip
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO verify_measurements (verification, arm, seed, commit_hash, value, status, "
                "reason, metrics, duration_s, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def verifications(self) -> list[Verification]:
        """Every verification of the run, oldest first."""
        rows = self._all("SELECT id, started_at, ended_at, settings FROM verifications ORDER BY id")
        return [Verification(r["id"], r["started_at"], r["ended_at"], json.loads(r["settings"])) for r in rows]

    def verify_measurements(self, verification: int) -> list[VerifyMeasured]:
        """The measurements of one verification, by seed, then arm."""
        rows = self._all(
            "SELECT verification, arm, seed, commit_hash, value, status, reason, metrics, duration_s, at "
            "FROM verify_measurements WHERE verification = ? ORDER BY seed, arm",
            (verification,),
        )
        return [_verify_measured(r) for r in rows]

    def spent(self) -> tuple[int, float]:
        """Tokens (in + out) and USD the run's agents have spent so far."""
        row = self._all(
            "SELECT COALESCE(SUM(COALESCE(tokens_in, 0) + COALESCE(tokens_out, 0)), 0), "
            "COALESCE(SUM(cost_usd), 0.0) FROM experiments"
        )[0]
        return int(row[0]), float(row[1])

    def experiments(self, status: Status | None = None) -> list[Experiment]:
        if status is None:
            rows = self._all(f"SELECT {_COLUMNS} FROM experiments ORDER BY id")
        else:
            rows = self._all(f"SELECT {_COLUMNS} FROM experiments WHERE status = ? ORDER BY id", (status.value,))
        return [_experiment(r) for r in rows]


def _row(exp: Experiment) -> dict[str, Any]:
    """The experiment as named parameters for its row."""
    row: dict[str, Any] = {name: getattr(exp, name) for name in _FIELDS}
    row["status"] = exp.status.value
    row["info"] = exp.stored_info()
    for name in _JSON:
        row[name] = json.dumps(row[name])
    return row


def _experiment(row: sqlite3.Row) -> Experiment:
    values: dict[str, Any] = {name: row[column] for name, column in _FIELDS.items()}
    values["status"] = Status(values["status"])
    for name in _JSON:
        values[name] = json.loads(values[name])
    values["bookkeeping"], values["info"] = Bookkeeping.split(values["info"])
    return Experiment(**values)


def _measured(row: sqlite3.Row) -> Measured:
    values: dict[str, Any] = {name: row[name] for name in _MEASURED}
    values["metrics"] = json.loads(values["metrics"])
    load = (row["load_start"], row["load_end"]) if row["load_start"] is not None else None
    return Measured(**values, load=load)


def _verify_measured(row: sqlite3.Row) -> VerifyMeasured:
    names = [n for n in row.keys() if n != "commit_hash"]  # noqa: SIM118 - a Row iterates over its values
    values: dict[str, Any] = {name: row[name] for name in names}
    values["metrics"] = json.loads(values["metrics"])
    return VerifyMeasured(**values, commit=row["commit_hash"])
