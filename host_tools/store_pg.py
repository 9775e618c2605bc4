"""The depot's store on PostgreSQL: the same `Storage` interface as the SQLite `Store`, for an
operator whose many depots share one database behind several stateless `depot serve` instances.

Exactly once across processes and machines rests on the database, never on a process's memory:
- an ingest takes the device's row lock (`SELECT ... FOR UPDATE`) for its one transaction, so two
  instances handed the same batch store it once and agree on the acknowledgement;
- `record_keys` (device_id, seq) is the unique key of every record ever stored. The records table is
  partitioned by the day it was received (retention drops a partition), and a partitioned table's
  primary key must include the partition key, so uniqueness across days lives in this small table;
- the request-counter replay check is one conditional upsert (`ON CONFLICT ... WHERE value < new
  RETURNING`), atomic however many instances race;
- an acknowledgement is computed inside the transaction and returned only after COMMIT.

Connections come from a psycopg_pool pool; every method is one transaction (or one read).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from firmware import record
from firmware.record import Record
from host_tools import ids, seqruns
from host_tools import store as store_mod
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
    StoreUnavailable,
    UnknownDevice,
)

_LOCK_MIGRATE = 0x6465706F74  # advisory lock ids ("depot"), one per kind of DDL
_LOCK_PARTITION = 0x6465706F75

# Each entry moves the schema from version i to i+1; applied in order, each in its own transaction.
_MIGRATIONS: list[LiteralString] = [
    """
    CREATE TABLE devices (
        device_id   TEXT PRIMARY KEY,
        key         BYTEA NOT NULL,
        enrolled_at DOUBLE PRECISION NOT NULL,
        ack_seq     BIGINT NOT NULL DEFAULT 0,
        last_seen   DOUBLE PRECISION,
        firmware    TEXT,
        board       TEXT,
        route_id    TEXT,
        route_hash  BYTEA,
        pending     BIGINT,
        watermark   BIGINT,
        battery     INTEGER,
        free_flash  BIGINT,
        last_source TEXT
    );
    CREATE TABLE record_keys (
        device_id   TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        sha256      BYTEA NOT NULL,
        PRIMARY KEY (device_id, seq)
    );
    CREATE TABLE records (
        device_id   TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        day         DATE NOT NULL,
        payload     BYTEA NOT NULL,
        sha256      BYTEA NOT NULL,
        route_id    TEXT NOT NULL,
        stop_id     TEXT NOT NULL,
        item_id     TEXT NOT NULL,
        outcome     SMALLINT NOT NULL,
        source      TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (device_id, seq, day)
    ) PARTITION BY RANGE (day);
    CREATE INDEX records_route ON records (route_id);
    CREATE TABLE conflicts (
        id          BIGSERIAL PRIMARY KEY,
        device_id   TEXT NOT NULL,
        seq         BIGINT NOT NULL,
        reason      TEXT NOT NULL,
        stored_sha  BYTEA,
        payload     BYTEA NOT NULL,
        source      TEXT NOT NULL,
        at          DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE absent_runs (
        device_id   TEXT NOT NULL,
        first       BIGINT NOT NULL,
        last        BIGINT NOT NULL,
        source      TEXT NOT NULL,
        at          DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (device_id, first)
    );
    CREATE TABLE counters (
        device_id   TEXT NOT NULL,
        name        TEXT NOT NULL,
        value       BIGINT NOT NULL,
        PRIMARY KEY (device_id, name)
    );
    CREATE TABLE routes (
        device_id   TEXT PRIMARY KEY,
        route_id    TEXT,
        package     BYTEA NOT NULL,
        sha256      BYTEA NOT NULL,
        assigned_at DOUBLE PRECISION NOT NULL,
        pushed_at   DOUBLE PRECISION
    );
    """,
    """
    ALTER TABLE devices ADD COLUMN pruned_seq BIGINT NOT NULL DEFAULT 0;
    """,
    """
    CREATE TABLE route_versions (
        route_id    TEXT NOT NULL,
        version     INTEGER NOT NULL,
        night       TEXT NOT NULL,
        applied_at  DOUBLE PRECISION NOT NULL,
        geojson     TEXT NOT NULL,
        PRIMARY KEY (route_id, version)
    );
    CREATE TABLE fence_history (
        route_id    TEXT NOT NULL,
        version     INTEGER NOT NULL,
        stop_id     TEXT NOT NULL,
        action      TEXT NOT NULL,
        detail      TEXT NOT NULL,
        PRIMARY KEY (route_id, version, stop_id)
    );
    """,
    # depot revoke / rotate-key (see store_sqlite_schema.py)
    "ALTER TABLE devices ADD COLUMN retired_key BYTEA; "
    "ALTER TABLE devices ADD COLUMN revoked_at DOUBLE PRECISION;",
]
assert len(_MIGRATIONS) == SCHEMA_VERSION

_COPY_RECORDS = ("COPY records (device_id, seq, day, payload, sha256, route_id, stop_id, item_id, outcome, "
                 "source, received_at) FROM STDIN")


def _utc_day(t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, dt.UTC).date()


def _partition(day: dt.date) -> str:
    return "records_p" + day.strftime("%Y%m%d")


class PgStore:
    """PostgreSQL implementation of `Storage`; `url` is a libpq URL (postgresql://user@host/db)."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, migrate: bool = True):
        self.url = url
        self.name = _redact(url)  # what commands print: never the password
        # Files kept beside a store (route copies) go to DEPOT_HOME; nothing is written at this path.
        self.path = store_mod.default_path().parent / "postgresql"
        self._days: set[dt.date] = set()  # partitions this process knows exist
        self.concurrency = max_size  # threads the ingest server may run store calls on
        try:  # one direct connection first: a pool that cannot connect only says it timed out
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreError(f"cannot reach PostgreSQL at {_redact(url)}: {cause}") from None
        self._pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True, timeout=5,
                                    kwargs={"autocommit": True}, check=ConnectionPool.check_connection,
                                    reconnect_timeout=3600)  # a database restart: reconnect, never give up
        try:
            if migrate:
                self.migrate()
            else:
                self.check_schema()
        except BaseException:
            self._pool.close()  # a refused schema leaves no pool threads behind
            raise

    # -- connections and schema ----------------------------------------------------------------

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; a lost or unreachable database becomes StoreUnavailable (nothing
        was committed: the caller may retry, and the ingest server answers 503)."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"PostgreSQL at {self.name}: {str(exc).strip().splitlines()[0]}") from exc

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction, committed when the block ends without error (psycopg's
        `conn.transaction()` with an autocommit connection: BEGIN ... COMMIT)."""
        with self._conn() as conn, conn.transaction():
            yield conn

    def _one(self, query: LiteralString | sql.Composed, args: Any = ()) -> Any:
        with self._conn() as conn:
            return conn.execute(query, args).fetchone()

    def _all(self, query: LiteralString | sql.Composed, args: Any = ()) -> list[Any]:
        with self._conn() as conn:
            return conn.execute(query, args).fetchall()

    def schema_version(self) -> int:
        row = self._one("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not row[0]:
            return 0
        return int(self._one("SELECT coalesce(max(version), 0) FROM schema_migrations")[0])

    def check_schema(self) -> int:
        v = self.schema_version()
        if v > SCHEMA_VERSION:
            raise SchemaTooNew(v)
        return v

    def migrate(self) -> tuple[int, int]:
        """Bring the schema to SCHEMA_VERSION; safe to run from many instances at once (an
        advisory lock serialises them). Returns (version before, version after)."""
        before = self.check_schema()
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_MIGRATE,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)")
            have = int(_scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_migrations"))
            if have > SCHEMA_VERSION:
                raise SchemaTooNew(have)
            for version in range(have + 1, SCHEMA_VERSION + 1):
                conn.execute(_MIGRATIONS[version - 1])
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, time.time()))
        return before, SCHEMA_VERSION

    def ping(self) -> bool:
        """Whether the database answers within 2 s (health checks must not hang on it)."""
        try:
            with self._pool.connection(timeout=2) as conn:
                row = conn.execute("SELECT 1").fetchone()
            return row is not None and row[0] == 1
        except (psycopg.Error, PoolTimeout):
            return False

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PgStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_partition(self, day: dt.date) -> None:
        if day in self._days:
            return
        nxt = day + dt.timedelta(days=1)
        with self._tx() as conn:  # CREATE IF NOT EXISTS still races in the catalog: serialise it
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_PARTITION,))
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF records FOR VALUES FROM ({}) "
                                 "TO ({})").format(sql.Identifier(_partition(day)), day, nxt))
        self._days.add(day)

    # -- identity ------------------------------------------------------------------------------

    def enrol(self, device_id: str) -> bytes:
        ids.check("device id", device_id)  # it becomes a URL segment and a report row
        key = os.urandom(KEY_LEN)
        with self._tx() as conn:
            cur = conn.execute("INSERT INTO devices(device_id, key, enrolled_at) VALUES (%s,%s,%s) "
                               "ON CONFLICT DO NOTHING RETURNING 1", (device_id, key, time.time()))
            if cur.fetchone() is None:
                raise StoreError(f"device {device_id!r} is already enrolled")
        return key

    def key(self, device_id: str) -> bytes | None:
        row = self._one("SELECT key FROM devices WHERE device_id=%s AND revoked_at IS NULL", (device_id,))
        return bytes(row[0]) if row else None

    # -- key lifecycle (depot revoke / rotate-key) -------------------------------------------------

    def revoke(self, device_id: str) -> None:
        with self._tx() as conn:
            cur = conn.execute("UPDATE devices SET revoked_at=%s, retired_key=NULL WHERE device_id=%s",
                               (time.time(), device_id))
            if cur.rowcount == 0:
                raise UnknownDevice(device_id)

    def revoked(self, device_id: str) -> bool:
        row = self._one("SELECT revoked_at FROM devices WHERE device_id=%s", (device_id,))
        return bool(row and row[0] is not None)

    def rotate_key(self, device_id: str) -> bytes:
        key = os.urandom(KEY_LEN)
        with self._tx() as conn:
            row = conn.execute("SELECT key, retired_key, revoked_at FROM devices WHERE device_id=%s "
                               "FOR UPDATE", (device_id,)).fetchone()
            if row is None:
                raise UnknownDevice(device_id)
            if row[2] is not None:
                raise StoreError(f"device {device_id!r} is revoked")
            conn.execute("UPDATE devices SET key=%s, retired_key=%s WHERE device_id=%s",
                         (key, row[1] if row[1] is not None else row[0], device_id))
            conn.execute("DELETE FROM counters WHERE device_id=%s", (device_id,))  # see store_sqlite.py
        return key

    def retired_key(self, device_id: str) -> bytes | None:
        row = self._one("SELECT retired_key FROM devices WHERE device_id=%s AND revoked_at IS NULL",
                        (device_id,))
        return bytes(row[0]) if row and row[0] is not None else None

    def key_delivered(self, device_id: str, key: bytes) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE devices SET retired_key=NULL WHERE device_id=%s AND key=%s",
                         (device_id, key))

    # -- records -------------------------------------------------------------------------------

    def ingest(self, device_id: str, records: Iterable[bytes], source: str) -> IngestResult:
        records = list(records)
        now = time.time()
        self._ensure_partition(_utc_day(now))
        try:
            with self._tx() as conn:
                return self._ingest(conn, device_id, records, source, now)
        except psycopg.errors.CheckViolation:  # another instance pruned the day's partition away
            self._days.discard(_utc_day(now))
            self._ensure_partition(_utc_day(now))
            with self._tx() as conn:
                return self._ingest(conn, device_id, records, source, now)

    @staticmethod
    def _lock_device(conn: psycopg.Connection[Any], device_id: str) -> int:
        row = conn.execute("SELECT ack_seq FROM devices WHERE device_id=%s FOR UPDATE",
                           (device_id,)).fetchone()
        if row is None:
            raise UnknownDevice(device_id)
        return int(row[0])

    def _ingest(self, conn: psycopg.Connection[Any], device_id: str, records: Iterable[bytes], source: str,
                now: float, ack: int | None = None) -> IngestResult:
        res = IngestResult()
        if ack is None:
            ack = self._lock_device(conn, device_id)
        incoming = Incoming.sort(device_id, records, res)
        for seq, reason, stored_sha, data in incoming.refused:
            self._conflict(conn, device_id, seq, reason, stored_sha, data, source, now)
        batch = incoming.fresh
        if batch:
            seqs = sorted(batch)
            new = {r[0] for r in conn.execute(
                "INSERT INTO record_keys SELECT %s, s, h FROM unnest(%s::bigint[], %s::bytea[]) AS t(s, h) "
                "ON CONFLICT DO NOTHING RETURNING seq",
                (device_id, seqs, [batch[s][1] for s in seqs])).fetchall()}
            old = [s for s in seqs if s not in new]
            if old:
                stored = dict(conn.execute("SELECT seq, sha256 FROM record_keys WHERE device_id=%s AND "
                                           "seq = ANY(%s)", (device_id, old)).fetchall())
                for s in old:
                    data, digest, _ = batch[s]
                    if bytes(stored[s]) == digest:
                        res.duplicates += 1
                    else:
                        self._conflict(conn, device_id, s, "payload differs", bytes(stored[s]), data,
                                       source, now)
                        res.conflicts.append(s)
            if new:
                day = _utc_day(now)
                with conn.cursor().copy(_COPY_RECORDS) as copy:
                    for s in sorted(new):
                        data, digest, rec = batch[s]
                        copy.write_row((device_id, s, day, data, digest, rec.route_id, rec.stop_id,
                                        rec.item_id, rec.outcome, source, now))
                res.stored = len(new)
        res.conflicts.sort()
        res.ack_seq = self._advance_ack(conn, device_id, ack)
        return res

    @staticmethod
    def _conflict(conn: psycopg.Connection[Any], device_id: str, seq: int, reason: str, stored: bytes | None,
                  data: bytes, source: str, now: float) -> None:
        conn.execute("INSERT INTO conflicts(device_id, seq, reason, stored_sha, payload, source, at) "
                     "VALUES (%s,%s,%s,%s,%s,%s,%s)", (device_id, seq, reason, stored, data, source, now))

    def _insert_absent(self, conn: psycopg.Connection[Any], device_id: str, seqs: Iterable[int | Run],
                       source: str, now: float) -> None:
        new = seqruns.intersect(seqruns.runs_of(seqs), [(1, MAX_SEQ)])
        if new:
            fresh = seqruns.subtract(new, self._absent_runs(conn, device_id))
            if fresh:
                conn.cursor().executemany("INSERT INTO absent_runs VALUES (%s,%s,%s,%s,%s) "
                                          "ON CONFLICT DO NOTHING", [(device_id, a, b, source, now)
                                                                     for a, b in fresh])

    def declare_absent(self, device_id: str, seqs: Iterable[int | Run], source: str) -> int:
        """The device said it never held these seqs (single seqs or inclusive runs): the
        acknowledgement may pass them; `gaps` still reports them. Returns the new ack_seq."""
        with self._tx() as conn:
            ack = self._lock_device(conn, device_id)
            self._insert_absent(conn, device_id, seqs, source, time.time())
            return self._advance_ack(conn, device_id, ack)

    @staticmethod
    def _absent_runs(conn: psycopg.Connection[Any], device_id: str) -> list[Run]:
        return seqruns.runs_of((int(a), int(b)) for a, b in conn.execute(
            "SELECT first, last FROM absent_runs WHERE device_id=%s", (device_id,)).fetchall())

    def absent(self, device_id: str) -> list[Run]:
        """Runs of seqs the device declared it never held, less any that turned up after all."""
        with self._conn() as conn:
            declared = self._absent_runs(conn, device_id)
            held = seqruns.runs_of(r[0] for r in conn.execute(
                "SELECT seq FROM record_keys WHERE device_id=%s ORDER BY seq", (device_id,)))
        return seqruns.subtract(declared, held)

    @classmethod
    def _advance_ack(cls, conn: psycopg.Connection[Any], device_id: str, ack: int) -> int:
        """Past every seq held or declared absent, contiguously from `ack`: the first missing one
        stops the acknowledgement (the device keeps it until it arrives)."""
        start = ack
        absent = [r for r in cls._absent_runs(conn, device_id) if r[1] > ack]
        cur = conn.execute("SELECT seq FROM record_keys WHERE device_id=%s AND seq>%s ORDER BY seq",
                           (device_id, ack))
        ack = seqruns.contiguous_end(ack, absent, (int(r[0]) for r in cur))
        if ack != start:
            conn.execute("UPDATE devices SET ack_seq=%s WHERE device_id=%s", (ack, device_id))
        return ack

    def ack_seq(self, device_id: str) -> int:
        row = self._one("SELECT ack_seq FROM devices WHERE device_id=%s", (device_id,))
        if row is None:
            raise UnknownDevice(device_id)
        return int(row[0])

    def records(self, device_id: str | None = None, route_id: str | None = None) -> list[Record]:
        return [record.decode(p) for p in self.payloads(device_id, route_id)]

    def payloads(self, device_id: str | None = None, route_id: str | None = None) -> list[bytes]:
        sql, args, where = "SELECT payload FROM records", [], []
        if device_id is not None:
            where.append("device_id=%s")
            args.append(device_id)
        if route_id is not None:
            where.append("route_id=%s")
            args.append(route_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [bytes(r[0]) for r in self._all(sql + " ORDER BY device_id, seq", args)]

    def count(self, device_id: str | None = None) -> int:
        if device_id is None:
            return int(self._one("SELECT count(*) FROM records")[0])
        return int(self._one("SELECT count(*) FROM records WHERE device_id=%s", (device_id,))[0])

    def gaps(self, device_id: str) -> list[Run]:
        """Runs of seqs missing above what was pruned, up to the highest held, including those the
        device declared absent: a missing record is always reported, never hidden."""
        with self._conn() as conn:
            row = conn.execute("SELECT pruned_seq FROM devices WHERE device_id=%s", (device_id,)).fetchone()
            floor = int(row[0]) if row else 0
            held = conn.execute("SELECT seq FROM record_keys WHERE device_id=%s AND seq>%s ORDER BY seq",
                                (device_id, floor))
            return seqruns.holes((int(r[0]) for r in held), floor + 1)

    def conflicts(self, device_id: str | None = None) -> list[Conflict]:
        sql = "SELECT id, device_id, seq, reason, source, at, payload FROM conflicts"
        args: tuple[Any, ...] = ()
        if device_id is not None:
            sql += " WHERE device_id=%s"
            args = (device_id,)
        return [Conflict(r[0], r[1], r[2], r[3], r[4], r[5], bytes(r[6]))
                for r in self._all(sql + " ORDER BY id", args)]

    def prune(self, before: dt.date) -> int:
        """Delete records received before `before` that their device has had acknowledged (it no
        longer holds them, so it can never send them again); drop whole day partitions where every
        row qualifies. Their keys go too, and each device's `pruned_seq` keeps gap reports honest.
        Returns the number of records removed."""
        removed = 0
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_PARTITION,))
            parts = conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'records' ORDER BY 1").fetchall()
            for (name,) in parts:
                day = dt.datetime.strptime(name.removeprefix("records_p"), "%Y%m%d").date()
                if day >= before:
                    continue
                part = sql.Identifier(name)
                conn.execute(sql.SQL(
                    "UPDATE devices d SET pruned_seq = greatest(d.pruned_seq, m.top) FROM (SELECT "
                    "r.device_id, max(r.seq) AS top FROM {} r JOIN devices x USING (device_id) "
                    "WHERE r.seq <= x.ack_seq GROUP BY r.device_id) m WHERE d.device_id = m.device_id"
                ).format(part))
                conn.execute(sql.SQL(
                    "DELETE FROM record_keys k USING {} r, devices x WHERE k.device_id = r.device_id "
                    "AND k.seq = r.seq AND x.device_id = r.device_id AND r.seq <= x.ack_seq").format(part))
                unacked = _scalar(conn, sql.SQL("SELECT count(*) FROM {} r JOIN devices x "
                                                "USING (device_id) WHERE r.seq > x.ack_seq").format(part))
                if unacked == 0:
                    removed += _scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(part))
                    conn.execute(sql.SQL("DROP TABLE {}").format(part))
                    self._days.discard(day)
                else:
                    cur = conn.execute(sql.SQL("DELETE FROM {} r USING devices x WHERE x.device_id = "
                                               "r.device_id AND r.seq <= x.ack_seq").format(part))
                    removed += cur.rowcount
        return removed

    # -- counters ------------------------------------------------------------------------------

    def next_counter(self, device_id: str, name: str = "ack") -> int:
        with self._tx() as conn:
            return int(_scalar(conn, "INSERT INTO counters VALUES (%s, %s, 1) ON CONFLICT (device_id, name) "
                               "DO UPDATE SET value = counters.value + 1 RETURNING value", (device_id, name)))

    @staticmethod
    def _advance_counter(conn: psycopg.Connection[Any], device_id: str, name: str, value: int) -> bool:
        return conn.execute(
            "INSERT INTO counters VALUES (%s, %s, %s) ON CONFLICT (device_id, name) "
            "DO UPDATE SET value = EXCLUDED.value WHERE counters.value < EXCLUDED.value RETURNING 1",
            (device_id, name, value)).fetchone() is not None

    def advance_counter(self, device_id: str, name: str, value: int) -> bool:
        with self._tx() as conn:
            return self._advance_counter(conn, device_id, name, value)

    def counter(self, device_id: str, name: str = "ack") -> int:
        row = self._one("SELECT value FROM counters WHERE device_id=%s AND name=%s", (device_id, name))
        return int(row[0]) if row else 0

    # -- device registry -----------------------------------------------------------------------

    def seen(self, device_id: str, source: str, **status: object) -> None:
        unknown = set(status) - set(STATUS_FIELDS)
        if unknown:
            raise TypeError(f"unknown status fields: {sorted(unknown)}")
        cols = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k))
                                  for k in ("last_seen", "last_source", *status))
        with self._tx() as conn:
            cur = conn.execute(sql.SQL("UPDATE devices SET {} WHERE device_id=%s").format(cols),
                               (time.time(), source, *status.values(), device_id))
            if cur.rowcount == 0:
                raise UnknownDevice(device_id)

    def device(self, device_id: str) -> DeviceInfo | None:
        row = self._one(sql.SQL("SELECT {} FROM devices WHERE device_id=%s").format(_DEVICE_SQL),
                        (device_id,))
        return _device_info(row) if row else None

    def devices(self) -> list[DeviceInfo]:
        return [_device_info(r) for r in self._all(sql.SQL("SELECT {} FROM devices ORDER BY device_id")
                                                   .format(_DEVICE_SQL))]

    # -- routes --------------------------------------------------------------------------------

    def assign_route(self, device_id: str, package: bytes | str | os.PathLike[str],
                     route_id: str | None = None) -> AssignedRoute:
        data = package if isinstance(package, bytes) else Path(package).read_bytes()
        digest = hashlib.sha256(data).digest()
        now = time.time()
        with self._tx() as conn:
            self._lock_device(conn, device_id)
            conn.execute("INSERT INTO routes VALUES (%s,%s,%s,%s,%s,NULL) ON CONFLICT (device_id) "
                         "DO UPDATE SET route_id=EXCLUDED.route_id, package=EXCLUDED.package, "
                         "sha256=EXCLUDED.sha256, assigned_at=EXCLUDED.assigned_at, pushed_at=NULL",
                         (device_id, route_id, data, digest, now))
        return AssignedRoute(device_id, route_id, data, digest, now, None)

    def assigned_route(self, device_id: str) -> AssignedRoute | None:
        row = self._one("SELECT device_id, route_id, package, sha256, assigned_at, pushed_at "
                        "FROM routes WHERE device_id=%s", (device_id,))
        if row is None:
            return None
        return AssignedRoute(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4], row[5])

    def mark_pushed(self, device_id: str, sha256: bytes) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE routes SET pushed_at=%s WHERE device_id=%s AND sha256=%s",
                         (time.time(), device_id, sha256))

    # -- learned fences (depot fences learn --apply) ---------------------------------------------

    def add_route_version(self, route_id: str, geojson: str, night: str,
                          changes: Iterable[tuple[str, str, str]] = ()) -> int:
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (route_id,))  # one version at a time
            version = int(_scalar(conn, "SELECT coalesce(max(version), 0) + 1 FROM route_versions "
                                        "WHERE route_id=%s", (route_id,)))
            conn.execute("INSERT INTO route_versions VALUES (%s,%s,%s,%s,%s)",
                         (route_id, version, night, time.time(), geojson))
            rows = [(route_id, version, sid, action, detail) for sid, action, detail in changes]
            if rows:
                conn.cursor().executemany("INSERT INTO fence_history VALUES (%s,%s,%s,%s,%s)", rows)
        return version

    def route_version(self, route_id: str) -> tuple[int, str, str] | None:
        row = self._one("SELECT version, night, geojson FROM route_versions WHERE route_id=%s "
                        "ORDER BY version DESC LIMIT 1", (route_id,))
        return (int(row[0]), str(row[1]), str(row[2])) if row else None

    def fence_history(self, route_id: str) -> list[FenceChange]:
        return [FenceChange(*r) for r in self._all(
            "SELECT h.route_id, h.version, v.night, h.stop_id, h.action, h.detail FROM fence_history h "
            "JOIN route_versions v USING (route_id, version) WHERE h.route_id=%s "
            "ORDER BY h.stop_id, h.version", (route_id,))]

def _scalar(conn: psycopg.Connection[Any], query: LiteralString | sql.Composed, args: Any = ()) -> Any:
    row = conn.execute(query, args).fetchone()
    if row is None:
        raise StoreError("the database returned no row where one was certain")
    return row[0]


_DEVICE_SQL = sql.SQL(", ").join(sql.Identifier(c.strip()) for c in DEVICE_COLUMNS.split(","))


def _device_info(row: Any) -> DeviceInfo:
    values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in row]
    return DeviceInfo(*values)


def _redact(url: str) -> str:
    """The URL without its password, for error lines."""
    info = conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
