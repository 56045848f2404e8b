"""The results store: every run record ever finished, in one append-only SQLite table.

Why SQLite: it ships with Python (no extra dependency), every append is one ACID transaction
that several sweep processes on one machine can make at once (SQLite serialises writers with a
file lock), and records stay queryable with plain SQL, including nested fields through
``json_extract(record, '$.metrics.roc_auc')``; pandas, DuckDB and the ``sqlite3`` shell read it
as is. Parquet files cannot be appended to in place, and DuckDB lets one process write at a time.

The run folders' ``record.json`` files stay the source of truth (a rerun replaces its folder's
record); the store keeps every attempt. Rows are never updated or deleted: triggers refuse both.
``python -m benchmark.records.store <results dir>`` ingests records the store lacks (e.g. from
runs on another machine or a file system where SQLite locking is unsafe) and lists what it holds.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.records.record import RecordError, RunRecord, RunStatus, dumps, load, loads

STORE_FILE = "runs.sqlite"
# What every run folder holds (results/<experiment>/<run_id>/).
RECORD_FILE = "record.json"
SCORES_FILE = "scores.npz"
ONLINE_SCORES_FILE = "online_scores.npz"  # per test event: online score, time, stream order
EXPLANATIONS_FILE = "explanations.json"  # the top test sequences' attention and gates
CHECKPOINT_FILE = "checkpoint.safetensors"  # the trained weights of a deep detector

COLUMNS = (
    "run_id",
    "experiment",
    "status",
    "model",
    "framework",
    "objective",
    "dataset",
    "anomaly",
    "seed",
    "started_at",
    "finished_at",
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    {", ".join(f"{c} {'INTEGER' if c == 'seed' else 'TEXT'}" for c in COLUMNS)},
    attempt TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_id ON runs (run_id);
CREATE TRIGGER IF NOT EXISTS runs_no_update BEFORE UPDATE ON runs
BEGIN SELECT RAISE(ABORT, 'the results store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS runs_no_delete BEFORE DELETE ON runs
BEGIN SELECT RAISE(ABORT, 'the results store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS runs_no_replace BEFORE INSERT ON runs
WHEN EXISTS (SELECT 1 FROM runs WHERE id = NEW.id)
BEGIN SELECT RAISE(ABORT, 'the results store is append-only'); END;
CREATE TRIGGER IF NOT EXISTS runs_attempt_once BEFORE INSERT ON runs
WHEN EXISTS (SELECT 1 FROM runs WHERE attempt = NEW.attempt)
BEGIN SELECT RAISE(IGNORE); END;
"""
# REPLACE deletes the row it conflicts with without firing DELETE triggers (SQLite's default),
# hence the two INSERT triggers: a stored id cannot be taken again (ABORT) and a stored attempt
# is not written twice (IGNORE, also under INSERT OR REPLACE). DROP has no trigger: the
# harness's connections refuse it through an authorizer.
BUSY_SECONDS = 60  # how long a write waits for another process's transaction


class StoreError(UserError):
    """The results store cannot be opened or written."""


@dataclass(frozen=True)
class Attempt:
    """One earlier record of the same config (same run id)."""

    status: str
    started_at: str
    finished_at: str | None


def store_path(results_dir: Path | str) -> Path:
    return Path(results_dir) / STORE_FILE


def refuse_drops(action: int, *_: object) -> int:
    """sqlite3 authorizer: no table, index or trigger of the store is ever dropped."""
    drops = (sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_INDEX, sqlite3.SQLITE_DROP_TRIGGER)
    return sqlite3.SQLITE_DENY if action in drops else sqlite3.SQLITE_OK


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    """An open store with its schema; commits on success, rolls back on error. Readers get
    a ``read_only`` connection: SQLite refuses any write through it."""
    try:
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_SECONDS)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=BUSY_SECONDS)  # other sweep processes' writes
    except (OSError, sqlite3.Error) as err:
        raise StoreError(f"cannot open the results store {path} ({err}): check the path") from err
    with closing(conn):
        try:
            if not read_only:
                conn.executescript(SCHEMA)
            conn.set_authorizer(refuse_drops)
            with conn:
                yield conn
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                raise StoreError(
                    f"results store {path} is busy: another process held it for more than "
                    f"{BUSY_SECONDS} s; the run folders keep their records, and "
                    f"`python -m benchmark.records.store {path.parent}` adds them later"
                ) from err
            raise unusable(path, err) from err
        except sqlite3.DatabaseError as err:
            if "not authorized" in str(err):
                raise StoreError(f"refused: the results store {path} is append-only") from err
            raise unusable(path, err) from err


def unusable(path: Path, err: BaseException) -> StoreError:
    return StoreError(
        f"results store {path} is unusable ({err}): move it aside; "
        f"`python -m benchmark.records.store {path.parent}` rebuilds it from the run folders"
    )


def attempt_of(record: RunRecord) -> str:
    """What makes one attempt unique: its random ``attempt_id`` (records written before it
    existed fall back to run id, start, end and wall time)."""
    if record.attempt_id:
        return record.attempt_id
    parts = (record.run_id, record.started_at, record.finished_at, record.wall_seconds)
    return "|".join(str(p) for p in parts)


def append(path: Path, record: RunRecord) -> bool:
    """Add ``record``; False if this exact attempt is already there."""
    values = [getattr(record, c) for c in COLUMNS]
    with connect(path) as conn:
        cur = conn.execute(
            f"INSERT OR IGNORE INTO runs ({', '.join(COLUMNS)}, attempt, record) "
            f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})",
            [*values, attempt_of(record), dumps(record, indent=None)],
        )
        return cur.rowcount == 1


def attempts(path: Path, run_id: str) -> list[Attempt]:
    """Earlier records of ``run_id`` (the config hash), oldest first."""
    if not path.exists():
        return []
    with connect(path, read_only=True) as conn:
        rows = conn.execute(
            "SELECT status, started_at, finished_at FROM runs WHERE run_id = ? ORDER BY id",
            (run_id,),
        ).fetchall()
    return [Attempt(*row) for row in rows]


def records(path: Path, latest_only: bool = True) -> list[RunRecord]:
    """Stored records, oldest first; with ``latest_only`` the last attempt of each run id."""
    if not path.exists():
        return []
    query = "SELECT record FROM runs"
    if latest_only:
        query += " WHERE id IN (SELECT MAX(id) FROM runs GROUP BY run_id)"
    with connect(path, read_only=True) as conn:
        return [loads(row[0]) for row in conn.execute(query + " ORDER BY id")]


def ingest(results_dir: Path) -> tuple[int, int]:
    """Append every finished ``record.json`` under ``results_dir`` the store lacks.
    Returns (added, already present); unreadable records are skipped with a warning."""
    added = present = 0
    for file in sorted(Path(results_dir).rglob(RECORD_FILE)):
        try:
            record = load(file)
        except (OSError, RecordError) as err:
            print(f"warning: skipped {file}: {err}", file=sys.stderr)
            continue
        if record.status == RunStatus.running:
            continue
        if append(store_path(results_dir), record):
            added += 1
        else:
            present += 1
    return added, present


def summary(path: Path) -> str:
    """Counts per experiment and status, one line each."""
    with connect(path, read_only=True) as conn:
        rows = conn.execute(
            "SELECT experiment, status, COUNT(*), COUNT(DISTINCT run_id) FROM runs "
            "GROUP BY experiment, status ORDER BY experiment, status"
        ).fetchall()
    return "\n".join(f"{e}: {n} {s} records ({d} configs)" for e, s, n, d in rows)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m benchmark.records.store <results dir>", file=sys.stderr)
        return 2
    root = Path(argv[0])
    try:
        added, present = ingest(root)
        print(f"{store_path(root)}: {added} records added, {present} already present")
        print(summary(store_path(root)))
    except StoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
