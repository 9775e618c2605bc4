"""The depot's SQLite store: devices, their keys, every delivery record, conflicts and routes.

SQLite in WAL mode with synchronous=FULL, one file. FULL because an acknowledgement lets the device
delete records: a commit that a power cut could roll back (NORMAL in WAL) would lose them forever.
Every write method commits before it returns, so callers may acknowledge as soon as it returned.

`Store` implements `Storage` (store_interface.py) method for method, as store_pg.py does for
PostgreSQL; its schema and migrations are store_sqlite_schema.py's. Connections are per thread
(the sync runs one thread per dock, the ingest server many), writes serialise on SQLite's own lock.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from firmware import record
from firmware.record import Record
from host_tools import ids, private, seqruns
from host_tools.seqruns import Run
from host_tools.store_interface import (
    DEVICE_COLUMNS,
    KEY_LEN,
    MAX_SEQ,
    SCHEMA_VERSION,
    STATUS_FIELDS,
    AssignedRoute,
    Conflict,
    DeviceInfo,
    FenceChange,
    Incoming,
    IngestResult,
    SchemaTooNew,
    StoreError,
    UnknownDevice,
)
from host_tools.store_sqlite_schema import MIGRATIONS

STORE_FILE = "depot.sqlite3"


def default_path(store: str | os.PathLike[str] | None = None) -> Path:
    """--store PATH, else $DEPOT_HOME/depot.sqlite3, else the per-user data folder."""
    if store:
        return Path(store)
    home = os.environ.get("DEPOT_HOME")
    if home:
        return Path(home) / STORE_FILE
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "depot" / STORE_FILE



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
            script, then = MIGRATIONS[version - 1]
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
        unknown = set(status) - set(STATUS_FIELDS)
        if unknown:
            raise TypeError(f"unknown status fields: {sorted(unknown)}")
        cols = ["last_seen=?", "last_source=?"] + [f"{k}=?" for k in status]
        with self._tx() as db:
            cur = db.execute(f"UPDATE devices SET {', '.join(cols)} WHERE device_id=?",
                             (time.time(), source, *status.values(), device_id))
            if cur.rowcount == 0:
                raise UnknownDevice(device_id)

    def device(self, device_id: str) -> DeviceInfo | None:
        row = self._db().execute(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id=?",
                                 (device_id,)).fetchone()
        return DeviceInfo(*row) if row else None

    def devices(self) -> list[DeviceInfo]:
        return [DeviceInfo(*r) for r in
                self._db().execute(f"SELECT {DEVICE_COLUMNS} FROM devices ORDER BY device_id")]

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
