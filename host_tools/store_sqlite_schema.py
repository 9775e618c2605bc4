"""The SQLite store's schema, and the migrations that bring any older store file up to it.

`MIGRATIONS[i]` moves a store from version i to i+1 (PRAGMA user_version), applied by
`Store.migrate` (store_sqlite.py), each in one transaction. The PostgreSQL schema is store_pg.py's.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from host_tools.store_interface import SCHEMA_VERSION

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS devices (
    device_id   TEXT PRIMARY KEY,
    key         BLOB NOT NULL,
    enrolled_at REAL NOT NULL,
    ack_seq     INTEGER NOT NULL DEFAULT 0,
    last_seen   REAL,
    firmware    TEXT,
    board       TEXT,
    route_id    TEXT,
    route_hash  BLOB,
    pending     INTEGER,
    watermark   INTEGER,
    battery     INTEGER,
    free_flash  INTEGER,
    last_source TEXT
);
CREATE TABLE IF NOT EXISTS records (
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    sha256      BLOB NOT NULL,
    route_id    TEXT NOT NULL,
    stop_id     TEXT NOT NULL,
    item_id     TEXT NOT NULL,
    outcome     INTEGER NOT NULL,
    source      TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_route ON records(route_id);
CREATE TABLE IF NOT EXISTS conflicts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    stored_sha  BLOB,
    payload     BLOB NOT NULL,
    source      TEXT NOT NULL,
    at          REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS absent_runs (
    device_id   TEXT NOT NULL,
    first       INTEGER NOT NULL,
    last        INTEGER NOT NULL,
    source      TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (device_id, first)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    device_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       INTEGER NOT NULL,
    PRIMARY KEY (device_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS routes (
    device_id   TEXT PRIMARY KEY,
    route_id    TEXT,
    package     BLOB NOT NULL,
    sha256      BLOB NOT NULL,
    assigned_at REAL NOT NULL,
    pushed_at   REAL
);
"""


def _absent_seqs_to_runs(db: sqlite3.Connection) -> None:
    """Stores made before absent seqs were runs: one row per seq becomes one row per run."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='absent'").fetchone():
        return
    rows = db.execute("SELECT device_id, seq, source, at FROM absent ORDER BY device_id, seq").fetchall()
    runs: list[list[object]] = []
    for dev, seq, source, at in rows:
        if runs and runs[-1][0] == dev and runs[-1][2] == seq - 1:
            runs[-1][2] = seq
        else:
            runs.append([dev, seq, seq, source, at])
    db.executemany("INSERT OR IGNORE INTO absent_runs VALUES (?,?,?,?,?)", runs)
    db.execute("DROP TABLE absent")


# Each entry moves the schema from version i to i+1, in one transaction: SQL statements, then an
# optional function. v1 is what stores had before schemas were versioned (IF NOT EXISTS, so an
# unversioned store of the first round migrates in place, its absent seqs becoming runs).
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None] | None]] = [
    (SCHEMA_V1, _absent_seqs_to_runs),
    ("ALTER TABLE devices ADD COLUMN pruned_seq INTEGER NOT NULL DEFAULT 0;", None),
    ("""CREATE TABLE IF NOT EXISTS route_versions (
    route_id    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    night       TEXT NOT NULL,
    applied_at  REAL NOT NULL,
    geojson     TEXT NOT NULL,
    PRIMARY KEY (route_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fence_history (
    route_id    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    stop_id     TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (route_id, version, stop_id)
) WITHOUT ROWID;
""", None),
    # depot revoke / rotate-key: a revoked device has no key; a rotated one keeps the key it holds
    # (retired_key) for the dock to prove itself with until the new one is delivered
    ("ALTER TABLE devices ADD COLUMN retired_key BLOB; ALTER TABLE devices ADD COLUMN revoked_at REAL;",
     None),
]
assert len(MIGRATIONS) == SCHEMA_VERSION
