"""The depot's store: devices, their keys, every delivery record, conflicts and assigned routes.

SQLite in WAL mode with synchronous=FULL, one file. FULL because an acknowledgement lets the device
delete records: a commit that a power cut could roll back (NORMAL in WAL) would lose them forever.
Every write method commits before it returns, so callers may acknowledge as soon as it returned.

`Storage` is the interface the rest of the depot uses; `Store` is the SQLite implementation, so a
server database can follow behind the same methods. Connections are per thread (the sync runs one
thread per dock, the ingest server many), writes serialise on SQLite's own lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from firmware import record
from firmware.record import Record, RecordError
from host_tools import ids, private, seqruns
from host_tools.seqruns import Run

KEY_LEN = 32
# Highest sequence number taken: the device's journal counts below 2**30 (a small int on the MCU).
# A record claiming more is invalid, so no gap or acknowledgement can reach past it.
MAX_SEQ = (1 << 30) - 1
STORE_FILE = "depot.sqlite3"
SCHEMA_VERSION = 4  # both backends; SQLite keeps it in PRAGMA user_version

_SCHEMA_V1 = """
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
_MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None] | None]] = [
    (_SCHEMA_V1, _absent_seqs_to_runs),
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
assert len(_MIGRATIONS) == SCHEMA_VERSION


class StoreError(Exception):
    pass


class SchemaTooNew(StoreError):
    def __init__(self, version: int):
        super().__init__(f"the store's schema is version {version}, newer than this depot knows "
                         f"({SCHEMA_VERSION}): upgrade the depot tools before using this store")
        self.version = version


class StoreUnavailable(StoreError):
    """The database cannot be reached or is restarting: nothing was committed, try again later."""


class UnknownDevice(StoreError, KeyError):
    """The device was never enrolled in this store."""


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    conflicts: list[int] = field(default_factory=list)  # seqs refused: other payload or device id
    ack_seq: int = 0  # highest contiguous seq committed for the device, after this ingest
    invalid: int = 0  # byte strings that are not records at all


@dataclass
class Incoming:
    """An ingest's records decoded once, for either backend: each valid seq's first copy (payload,
    SHA-256, record) in `fresh`, and what is refused before the store is asked (another device's id;
    a second copy with other bytes in the same batch) as (seq, reason, stored sha, payload)."""
    fresh: dict[int, tuple[bytes, bytes, Record]] = field(default_factory=dict)
    refused: list[tuple[int, str, bytes | None, bytes]] = field(default_factory=list)

    @classmethod
    def sort(cls, device_id: str, records: Iterable[bytes], res: IngestResult) -> Incoming:
        """Counts undecodable records and in-batch copies in `res`; lists the refused seqs in it."""
        out = cls()
        for data in records:
            data = bytes(data)
            try:
                rec = record.decode(data)
            except (RecordError, ValueError, UnicodeError):
                res.invalid += 1
                continue
            if not 1 <= rec.seq <= MAX_SEQ:
                res.invalid += 1
                continue
            digest = hashlib.sha256(data).digest()
            first = out.fresh.get(rec.seq)
            if rec.device_id != device_id:
                out.refused.append((rec.seq, "device id mismatch", None, data))
            elif first is None:
                out.fresh[rec.seq] = (data, digest, rec)
                continue
            elif first[1] == digest:
                res.duplicates += 1
                continue
            else:  # twice in one batch with other bytes: the first copy decides
                out.refused.append((rec.seq, "payload differs", first[1], data))
            res.conflicts.append(rec.seq)
        return out


@dataclass
class Conflict:
    id: int
    device_id: str
    seq: int
    reason: str
    source: str
    at: float
    payload: bytes


@dataclass
class DeviceInfo:
    device_id: str
    enrolled_at: float
    ack_seq: int
    last_seen: float | None
    firmware: str | None
    board: str | None
    route_id: str | None
    route_hash: bytes | None
    pending: int | None
    watermark: int | None
    battery: int | None
    free_flash: int | None
    last_source: str | None


@dataclass
class FenceChange:
    """One stop's fence changed (or flagged) by `depot fences learn --apply`; detail is JSON."""
    route_id: str
    version: int
    night: str
    stop_id: str
    action: str
    detail: str


@dataclass
class AssignedRoute:
    device_id: str
    route_id: str | None
    package: bytes
    sha256: bytes
    assigned_at: float
    pushed_at: float | None


class Storage(Protocol):
    """What the depot's commands and the ingest server need from a store."""

    name: str  # what commands print (a path, or a database URL without its password)
    path: Path  # files kept beside the store (route copies) go in its folder

    def enrol(self, device_id: str) -> bytes: ...
    def key(self, device_id: str) -> bytes | None: ...
    def revoke(self, device_id: str) -> None: ...
    def revoked(self, device_id: str) -> bool: ...
    def rotate_key(self, device_id: str) -> bytes: ...
    def retired_key(self, device_id: str) -> bytes | None: ...
    def key_delivered(self, device_id: str, key: bytes) -> None: ...
    def ingest(self, device_id: str, records: Iterable[bytes], source: str) -> IngestResult: ...
    def ack_seq(self, device_id: str) -> int: ...
    def records(self, device_id: str | None = None, route_id: str | None = None) -> list[Record]: ...
    def payloads(self, device_id: str | None = None, route_id: str | None = None) -> list[bytes]: ...
    def count(self, device_id: str | None = None) -> int: ...
    def absent(self, device_id: str) -> list[Run]: ...
    def counter(self, device_id: str, name: str = "ack") -> int: ...
    def gaps(self, device_id: str) -> list[Run]: ...
    def declare_absent(self, device_id: str, seqs: Iterable[int | Run], source: str) -> int: ...
    def conflicts(self, device_id: str | None = None) -> list[Conflict]: ...
    def next_counter(self, device_id: str, name: str = "ack") -> int: ...
    def advance_counter(self, device_id: str, name: str, value: int) -> bool: ...
    def seen(self, device_id: str, source: str, **status: object) -> None: ...
    def device(self, device_id: str) -> DeviceInfo | None: ...
    def devices(self) -> list[DeviceInfo]: ...
    def assign_route(self, device_id: str, package: bytes | str | os.PathLike[str],
                     route_id: str | None = None) -> AssignedRoute: ...
    def assigned_route(self, device_id: str) -> AssignedRoute | None: ...
    def mark_pushed(self, device_id: str, sha256: bytes) -> None: ...
    def prune(self, before: dt.date) -> int: ...
    def migrate(self) -> tuple[int, int]: ...
    def schema_version(self) -> int: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...
    def add_route_version(self, route_id: str, geojson: str, night: str,
                          changes: Iterable[tuple[str, str, str]] = ()) -> int: ...
    def route_version(self, route_id: str) -> tuple[int, str, str] | None: ...
    def fence_history(self, route_id: str) -> list[FenceChange]: ...


def default_path(store: str | os.PathLike[str] | None = None) -> Path:
    """--store PATH, else $DEPOT_HOME/depot.sqlite3, else the per-user data folder."""
    if store:
        return Path(store)
    home = os.environ.get("DEPOT_HOME")
    if home:
        return Path(home) / STORE_FILE
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "depot" / STORE_FILE


_STATUS_FIELDS = ("firmware", "board", "route_id", "route_hash", "pending", "watermark", "battery",
                  "free_flash")


class Store:
    """SQLite implementation of `Storage`."""

    def __init__(self, path: str | os.PathLike[str] | None = None):
        self.path = default_path(path)
        self.name = str(self.path)  # what commands print
        # keys live here: folder 0700 (one we chose or created), the file and its -wal/-shm 0600
        private.folder(self.path.parent, restrict_existing=not path or not self.path.parent.is_dir())
        private.touch(self.path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.migrate()

    # -- connections ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            for side in ("-wal", "-shm"):  # SQLite copies the file's mode; older stores were 0644
                private.restrict(str(self.path) + side)
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
            with self._lock:
                self._all.append(db)
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with the write lock up front so it never deadlocks on
        upgrade; committed (durably, synchronous=FULL) when the block ends without error."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def schema_version(self) -> int:
        return int(self._db().execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> tuple[int, int]:
        """Bring the schema to SCHEMA_VERSION (refusing a newer one); (version before, after)."""
        before = self.schema_version()
        if before > SCHEMA_VERSION:
            raise SchemaTooNew(before)
        for version in range(before + 1, SCHEMA_VERSION + 1):
            script, then = _MIGRATIONS[version - 1]
            with self._tx() as db:
                for stmt in filter(str.strip, script.split(";")):
                    db.execute(stmt)
                if then is not None:
                    then(db)
                db.execute(f"PRAGMA user_version={version}")
        return before, SCHEMA_VERSION

    def ping(self) -> bool:
        try:
            return self._db().execute("SELECT 1").fetchone()[0] == 1
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            for db in self._all:
                db.close()
            self._all.clear()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity ------------------------------------------------------------------------------

    def enrol(self, device_id: str) -> bytes:
        """Create the device's secret key (never printed or logged); refuse a second enrolment so
        a typo cannot orphan a flashed device's key."""
        ids.check("device id", device_id)  # it becomes a URL segment and a report row
        key = os.urandom(KEY_LEN)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM devices WHERE device_id=?", (device_id,)).fetchone():
                raise StoreError(f"device {device_id!r} is already enrolled")
            db.execute("INSERT INTO devices(device_id, key, enrolled_at) VALUES (?,?,?)",
                       (device_id, key, time.time()))
        return key

    def key(self, device_id: str) -> bytes | None:
        """The key the device's uploads and dock sessions must prove; None if never enrolled or
        revoked. Read from the store every time: a revoke or a rotation holds at once."""
        row = self._db().execute("SELECT key FROM devices WHERE device_id=? AND revoked_at IS NULL",
                                 (device_id,)).fetchone()
        return bytes(row[0]) if row else None

    # -- key lifecycle (depot revoke / rotate-key) -------------------------------------------------

    def revoke(self, device_id: str) -> None:
        """The device (stolen, lost) is refused from now on: its uploads, its dock sessions."""
        with self._tx() as db:
            cur = db.execute("UPDATE devices SET revoked_at=?, retired_key=NULL WHERE device_id=?",
                             (time.time(), device_id))
            if cur.rowcount == 0:
                raise UnknownDevice(device_id)

    def revoked(self, device_id: str) -> bool:
        row = self._db().execute("SELECT revoked_at FROM devices WHERE device_id=?", (device_id,)).fetchone()
        return bool(row and row[0] is not None)

    def rotate_key(self, device_id: str) -> bytes:
        """A new key, in force at once; the key the device still holds is kept as `retired_key`
        (the oldest one not yet replaced on the device) for the dock to deliver the new one."""
        key = os.urandom(KEY_LEN)
        with self._tx() as db:
            row = db.execute("SELECT key, retired_key, revoked_at FROM devices WHERE device_id=?",
                             (device_id,)).fetchone()
            if row is None:
                raise UnknownDevice(device_id)
            if row[2] is not None:
                raise StoreError(f"device {device_id!r} is revoked")
            db.execute("UPDATE devices SET key=?, retired_key=? WHERE device_id=?",
                       (key, row[1] if row[1] is not None else row[0], device_id))
            # the old key's request counters mean nothing under the new one (a request cannot be
            # replayed across keys), and the device starts its own again: one stuck at the top
            # (0xFFFFFFFF) no longer locks it out
            db.execute("DELETE FROM counters WHERE device_id=?", (device_id,))
        return key

    def retired_key(self, device_id: str) -> bytes | None:
        row = self._db().execute("SELECT retired_key FROM devices WHERE device_id=? AND revoked_at IS NULL",
                                 (device_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def key_delivered(self, device_id: str, key: bytes) -> None:
        """The device now holds `key` (flashed, or sent over an authenticated dock session): forget
        the retired one, unless the key was rotated again meanwhile."""
        with self._tx() as db:
            db.execute("UPDATE devices SET retired_key=NULL WHERE device_id=? AND key=?", (device_id, key))

    # -- records -------------------------------------------------------------------------------

    def ingest(self, device_id: str, records: Iterable[bytes], source: str) -> IngestResult:
        """Store encoded records idempotently on (device_id, seq); committed when this returns.

        A record seen before with the same bytes is a duplicate; with other bytes, or naming another
        device, it is refused and flagged in the conflicts table: never overwritten."""
        res = IngestResult()
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT ack_seq FROM devices WHERE device_id=?", (device_id,)).fetchone()
            if row is None:
                raise UnknownDevice(device_id)
            ack = row[0]
            batch = Incoming.sort(device_id, records, res)
            for seq, reason, stored, data in batch.refused:
                self._conflict(db, device_id, seq, reason, stored, data, source, now)
            for seq, (data, digest, rec) in sorted(batch.fresh.items()):
                old = db.execute("SELECT sha256 FROM records WHERE device_id=? AND seq=?",
                                 (device_id, seq)).fetchone()
                if old is not None:
                    if bytes(old[0]) == digest:
                        res.duplicates += 1
                    else:
                        self._conflict(db, device_id, seq, "payload differs", old[0], data, source, now)
                        res.conflicts.append(seq)
                    continue
                db.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (device_id, rec.seq, data, digest, rec.route_id, rec.stop_id, rec.item_id,
                            rec.outcome, source, now))
                res.stored += 1
            res.conflicts.sort()
            res.ack_seq = self._advance_ack(db, device_id, ack)
        return res

    @staticmethod
    def _conflict(db: sqlite3.Connection, device_id: str, seq: int, reason: str, stored: bytes | None,
                  data: bytes, source: str, now: float) -> None:
        db.execute("INSERT INTO conflicts(device_id, seq, reason, stored_sha, payload, source, at) "
                   "VALUES (?,?,?,?,?,?,?)", (device_id, seq, reason, stored, data, source, now))

    def declare_absent(self, device_id: str, seqs: Iterable[int | Run], source: str) -> int:
        """The device said it never held these seqs (single seqs or inclusive runs: a lease skipped
        by a power cut, a torn tail): they will never arrive, so the acknowledgement may pass them.
        `gaps` still reports them. Seqs outside 1..MAX_SEQ are ignored. Returns the new ack_seq."""
        now = time.time()
        new = seqruns.intersect(seqruns.runs_of(seqs), [(1, MAX_SEQ)])
        with self._tx() as db:
            row = db.execute("SELECT ack_seq FROM devices WHERE device_id=?", (device_id,)).fetchone()
            if row is None:
                raise UnknownDevice(device_id)
            if new:
                old = self._absent_runs(db, device_id)
                fresh = seqruns.subtract(new, old)
                db.executemany("INSERT OR IGNORE INTO absent_runs VALUES (?,?,?,?,?)",
                               [(device_id, a, b, source, now) for a, b in fresh])
            return self._advance_ack(db, device_id, row[0])

    @staticmethod
    def _absent_runs(db: sqlite3.Connection, device_id: str) -> list[Run]:
        return seqruns.runs_of((a, b) for a, b in db.execute(
            "SELECT first, last FROM absent_runs WHERE device_id=?", (device_id,)))

    def absent(self, device_id: str) -> list[Run]:
        """Runs of seqs the device declared it never held, less any that turned up after all."""
        db = self._db()
        declared = self._absent_runs(db, device_id)
        held = seqruns.runs_of(r[0] for r in db.execute(
            "SELECT seq FROM records WHERE device_id=? ORDER BY seq", (device_id,)))
        return seqruns.subtract(declared, held)

    @classmethod
    def _advance_ack(cls, db: sqlite3.Connection, device_id: str, ack: int) -> int:
        absent = [r for r in cls._absent_runs(db, device_id) if r[1] > ack]
        cur = db.execute("SELECT seq FROM records WHERE device_id=? AND seq>? ORDER BY seq",
                         (device_id, ack))
        ack = seqruns.contiguous_end(ack, absent, (r[0] for r in cur))
        cur.close()
        db.execute("UPDATE devices SET ack_seq=? WHERE device_id=?", (ack, device_id))
        return ack

    def ack_seq(self, device_id: str) -> int:
        row = self._db().execute("SELECT ack_seq FROM devices WHERE device_id=?", (device_id,)).fetchone()
        if row is None:
            raise UnknownDevice(device_id)
        return int(row[0])

    def records(self, device_id: str | None = None, route_id: str | None = None) -> list[Record]:
        return [record.decode(p) for p in self.payloads(device_id, route_id)]

    def payloads(self, device_id: str | None = None, route_id: str | None = None) -> list[bytes]:
        """Encoded records in (device_id, seq) order, optionally for one device and/or route."""
        sql, args = "SELECT payload FROM records", []
        where = []
        if device_id is not None:
            where.append("device_id=?")
            args.append(device_id)
        if route_id is not None:
            where.append("route_id=?")
            args.append(route_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY device_id, seq"
        return [bytes(r[0]) for r in self._db().execute(sql, args)]

    def count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self._db().execute("SELECT count(*) FROM records").fetchone()[0])
        return int(self._db().execute("SELECT count(*) FROM records WHERE device_id=?",
                                      (device_id,)).fetchone()[0])

    def gaps(self, device_id: str) -> list[Run]:
        """Every run of sequence numbers missing between 1 and the highest one held, including those
        the device declared absent: a missing record is always reported, never hidden."""
        db = self._db()
        row = db.execute("SELECT pruned_seq FROM devices WHERE device_id=?", (device_id,)).fetchone()
        floor = row[0] if row else 0  # numbers at or below it were pruned, not lost
        held = db.execute("SELECT seq FROM records WHERE device_id=? AND seq>? ORDER BY seq",
                          (device_id, floor))
        return seqruns.holes((r[0] for r in held), floor + 1)

    def prune(self, before: dt.date) -> int:
        """Delete records received before `before` (UTC) that their device has had acknowledged:
        it no longer holds them, so it can never send them again. Each device's `pruned_seq` keeps
        gap reports from counting the pruned numbers. Returns the number of records removed."""
        cutoff = dt.datetime.combine(before, dt.time(), dt.UTC).timestamp()
        with self._tx() as db:
            db.execute("UPDATE devices SET pruned_seq = max(pruned_seq, coalesce((SELECT max(r.seq) FROM "
                       "records r WHERE r.device_id = devices.device_id AND r.received_at < ? AND "
                       "r.seq <= devices.ack_seq), 0))", (cutoff,))
            return db.execute("DELETE FROM records WHERE received_at < ? AND seq <= (SELECT ack_seq FROM "
                              "devices d WHERE d.device_id = records.device_id)", (cutoff,)).rowcount

    def conflicts(self, device_id: str | None = None) -> list[Conflict]:
        sql = "SELECT id, device_id, seq, reason, source, at, payload FROM conflicts"
        args: Sequence[object] = ()
        if device_id is not None:
            sql += " WHERE device_id=?"
            args = (device_id,)
        return [Conflict(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]))
                for r in self._db().execute(sql + " ORDER BY id", args)]

    # -- counters ------------------------------------------------------------------------------

    def next_counter(self, device_id: str, name: str = "ack") -> int:
        """A value never handed out before for (device, name), durably reserved before it returns:
        a crash after it skips a number but can never reuse one."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM counters WHERE device_id=? AND name=?",
                             (device_id, name)).fetchone()
            value = (row[0] if row else 0) + 1
            db.execute("INSERT OR REPLACE INTO counters VALUES (?,?,?)", (device_id, name, value))
        return value

    def advance_counter(self, device_id: str, name: str, value: int) -> bool:
        """Accept `value` only if above the last accepted one (replay guard for device counters)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM counters WHERE device_id=? AND name=?",
                             (device_id, name)).fetchone()
            if row is not None and value <= row[0]:
                return False
            db.execute("INSERT OR REPLACE INTO counters VALUES (?,?,?)", (device_id, name, value))
        return True

    def counter(self, device_id: str, name: str = "ack") -> int:
        row = self._db().execute("SELECT value FROM counters WHERE device_id=? AND name=?",
                                 (device_id, name)).fetchone()
        return int(row[0]) if row else 0

    # -- device registry -----------------------------------------------------------------------

    def seen(self, device_id: str, source: str, **status: object) -> None:
        """Record that the device talked to us, with whatever status it reported."""
        unknown = set(status) - set(_STATUS_FIELDS)
        if unknown:
            raise TypeError(f"unknown status fields: {sorted(unknown)}")
        cols = ["last_seen=?", "last_source=?"] + [f"{k}=?" for k in status]
        with self._tx() as db:
            cur = db.execute(f"UPDATE devices SET {', '.join(cols)} WHERE device_id=?",
                             (time.time(), source, *status.values(), device_id))
            if cur.rowcount == 0:
                raise UnknownDevice(device_id)

    def device(self, device_id: str) -> DeviceInfo | None:
        row = self._db().execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE device_id=?",
                                 (device_id,)).fetchone()
        return DeviceInfo(*row) if row else None

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo(*r) for r in
                self._db().execute(f"SELECT {_DEVICE_COLS} FROM devices ORDER BY device_id")]

    # -- routes --------------------------------------------------------------------------------

    def assign_route(self, device_id: str, package: bytes | str | os.PathLike[str],
                     route_id: str | None = None) -> AssignedRoute:
        """Make `package` (bytes or a file) the next route pushed to the device at its sync."""
        data = package if isinstance(package, bytes) else Path(package).read_bytes()
        digest = hashlib.sha256(data).digest()
        now = time.time()
        with self._tx() as db:
            if not db.execute("SELECT 1 FROM devices WHERE device_id=?", (device_id,)).fetchone():
                raise UnknownDevice(device_id)
            db.execute("INSERT OR REPLACE INTO routes VALUES (?,?,?,?,?,NULL)",
                       (device_id, route_id, data, digest, now))
        return AssignedRoute(device_id, route_id, data, digest, now, None)

    def assigned_route(self, device_id: str) -> AssignedRoute | None:
        row = self._db().execute("SELECT device_id, route_id, package, sha256, assigned_at, pushed_at "
                                 "FROM routes WHERE device_id=?", (device_id,)).fetchone()
        if row is None:
            return None
        return AssignedRoute(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4], row[5])

    def mark_pushed(self, device_id: str, sha256: bytes) -> None:
        with self._tx() as db:
            db.execute("UPDATE routes SET pushed_at=? WHERE device_id=? AND sha256=?",
                       (time.time(), device_id, sha256))

    # -- learned fences (depot fences learn --apply) ---------------------------------------------

    def add_route_version(self, route_id: str, geojson: str, night: str,
                          changes: Iterable[tuple[str, str, str]] = ()) -> int:
        """Keep the route GeoJSON as its next version, with (stop_id, action, detail JSON) per stop
        that changed; returns the version number (1 for the first)."""
        with self._tx() as db:
            row = db.execute("SELECT max(version) FROM route_versions WHERE route_id=?",
                             (route_id,)).fetchone()
            version = (row[0] or 0) + 1
            db.execute("INSERT INTO route_versions VALUES (?,?,?,?,?)",
                       (route_id, version, night, time.time(), geojson))
            db.executemany("INSERT INTO fence_history VALUES (?,?,?,?,?)",
                           [(route_id, version, sid, action, detail) for sid, action, detail in changes])
        return version

    def route_version(self, route_id: str) -> tuple[int, str, str] | None:
        """(version, night, GeoJSON text) of the route's latest version, None if it has none."""
        row = self._db().execute("SELECT version, night, geojson FROM route_versions WHERE route_id=? "
                                 "ORDER BY version DESC LIMIT 1", (route_id,)).fetchone()
        return (int(row[0]), str(row[1]), str(row[2])) if row else None

    def fence_history(self, route_id: str) -> list[FenceChange]:
        return [FenceChange(*r) for r in self._db().execute(
            "SELECT h.route_id, h.version, v.night, h.stop_id, h.action, h.detail FROM fence_history h "
            "JOIN route_versions v USING (route_id, version) WHERE h.route_id=? "
            "ORDER BY h.stop_id, h.version", (route_id,))]


_DEVICE_COLS = ("device_id, enrolled_at, ack_seq, last_seen, firmware, board, route_id, route_hash, "
                "pending, watermark, battery, free_flash, last_source")


def is_url(store: str | os.PathLike[str] | None) -> bool:
    return isinstance(store, str) and store.startswith(("postgresql://", "postgres://"))


def store_name(store: str | os.PathLike[str] | None = None) -> str:
    """--store, else $DEPOT_STORE (a path or a postgresql:// URL), else the SQLite default path."""
    chosen = store or os.environ.get("DEPOT_STORE")
    return str(chosen) if is_url(chosen) else str(default_path(chosen))


def open_store(store: str | os.PathLike[str] | None = None) -> Storage:
    """The store named by --store / $DEPOT_STORE / $DEPOT_HOME / the per-user default: a
    postgresql:// URL opens PostgreSQL (host_tools.store_pg), anything else a SQLite file."""
    name = store_name(store)
    if is_url(name):
        from host_tools.store_pg import PgStore  # psycopg is needed only by PostgreSQL depots

        return PgStore(name)
    return Store(name)


def open_existing(store: str | os.PathLike[str] | None = None) -> Storage:
    """The store, for every command but `depot enrol`: a missing one is a mistyped --store,
    DEPOT_STORE or DEPOT_HOME, never an empty fleet, so it is refused rather than created."""
    from host_tools.errors import DepotError

    name = store_name(store)
    if is_url(name):
        from host_tools.store_pg import PgStore

        try:
            st = PgStore(name, migrate=False)
        except StoreError as exc:
            raise DepotError(str(exc), "check --store or DEPOT_STORE") from None
        if st.schema_version() == 0:
            st.close()
            raise DepotError(f"no depot store in the database {st.name}", "check --store or DEPOT_STORE "
                             "(`depot enrol` or `depot store migrate` creates it)")
        st.migrate()
        return st
    if not Path(name).is_file():
        raise DepotError(f"no store at {name}",
                         "check --store or DEPOT_HOME (`depot enrol` creates the store)")
    with open(name, "rb") as f:
        if f.read(16) != b"SQLite format 3\0":
            raise DepotError(f"{name} is not a depot store (not an SQLite file)",
                             "check --store or DEPOT_HOME")
    return Store(name)
