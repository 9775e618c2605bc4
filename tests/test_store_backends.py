"""What a depot relies on from either store backend beyond ingest: schema versions and migration,
retention (prune), gaps as ranges for any seq, and on PostgreSQL exactly-once across instances."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from firmware import record
from host_tools import store as store_mod
from host_tools import store_sqlite_schema
from host_tools.store import (
    SCHEMA_VERSION,
    IngestResult,
    SchemaTooNew,
    Store,
    StoreError,
    UnknownDevice,
    open_store,
)
from host_tools.store_pg import PgStore


def rec(seq: int, device: str = "DEV1") -> bytes:
    return record.Record(seq=seq, device_id=device, route_id="R1", stop_id="S%d" % seq,
                         item_id="RR473124829GB", verdict=record.V_INSIDE, lat_e6=52_000_000,
                         lon_e6=13_000_000).encode()


def test_a_url_opens_postgresql_and_a_path_sqlite(pg_url: str, tmp_path) -> None:
    pg = open_store(pg_url)
    assert isinstance(pg, PgStore)
    pg.close()
    assert isinstance(open_store(str(tmp_path / "x.sqlite3")), Store)


def test_depot_store_env_names_the_store(monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    monkeypatch.setenv("DEPOT_STORE", pg_url)
    assert store_mod.store_name() == pg_url
    assert store_mod.store_name("/srv/x.sqlite3") == "/srv/x.sqlite3"  # --store wins


def test_new_stores_are_at_the_current_schema_version(store_url: str) -> None:
    s = open_store(store_url)
    assert s.schema_version() == SCHEMA_VERSION
    assert s.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)  # idempotent
    s.close()


def test_an_unversioned_sqlite_store_from_the_first_round_migrates_in_place(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(store_sqlite_schema.MIGRATIONS[0][0])  # the schema as it was, user_version 0
    db.execute("INSERT INTO devices(device_id, key, enrolled_at) VALUES ('OLD', x'00', 0)")
    db.commit()
    db.close()
    s = Store(path)
    assert s.schema_version() == SCHEMA_VERSION
    assert s.key("OLD") == b"\0"


def test_a_schema_newer_than_the_tools_is_refused_with_one_line(store_url: str) -> None:
    s = open_store(store_url)
    if isinstance(s, Store):
        s._db().execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    else:
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (SCHEMA_VERSION + 1,))
    s.close()
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1}, newer than this depot knows"):
        open_store(store_url)


def test_gaps_are_ranges_even_near_the_top_of_the_seq_space(store_url: str) -> None:
    s = open_store(store_url)
    s.enrol("DEV1")
    s.ingest("DEV1", [rec(1), rec(2), rec(store_mod.MAX_SEQ)], "dock")
    assert s.gaps("DEV1") == [(3, store_mod.MAX_SEQ - 1)]
    assert s.declare_absent("DEV1", [(3, store_mod.MAX_SEQ)], "dock") == store_mod.MAX_SEQ
    assert s.absent("DEV1") == [(3, store_mod.MAX_SEQ - 1)]
    s.close()


def test_prune_removes_acknowledged_records_before_the_date_and_keeps_gaps_honest(store_url: str) -> None:
    s = open_store(store_url)
    s.enrol("DEV1")
    s.ingest("DEV1", [rec(1), rec(2), rec(3), rec(5)], "dock")  # ack stops at 3: 5 waits for 4
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert s.prune(tomorrow - dt.timedelta(days=2)) == 0  # nothing that old
    assert s.prune(tomorrow) == 3  # 1-3 acknowledged; 5 is kept until the device has it acked
    assert [r.seq for r in s.records("DEV1")] == [5]
    assert s.gaps("DEV1") == [(4, 4)]  # not 1-3: pruned, not missing
    assert s.ingest("DEV1", [rec(4)], "dock").ack_seq == 5
    s.close()


def test_prune_on_postgresql_drops_whole_day_partitions(pg_url: str) -> None:
    s = PgStore(pg_url)
    s.enrol("DEV1")
    s.ingest("DEV1", [rec(1), rec(2)], "dock")
    today = dt.datetime.now(dt.UTC).date()
    part = "records_p" + today.strftime("%Y%m%d")
    exists = "SELECT to_regclass(%s) IS NOT NULL"
    assert s._one(exists, (part,))[0]
    assert s.prune(today + dt.timedelta(days=1)) == 2
    assert not s._one(exists, (part,))[0]
    assert s.ingest("DEV1", [rec(3)], "dock").ack_seq == 3  # the day's partition comes back
    other = PgStore(pg_url, migrate=False)  # another instance, which knows the partition exists
    other.ingest("DEV1", [rec(4)], "dock")
    s.prune(today + dt.timedelta(days=1))
    assert other.ingest("DEV1", [rec(5)], "dock").ack_seq == 5  # it finds the partition gone, and makes it
    other.close()
    s.close()


def test_the_same_batch_sent_to_two_instances_at_once_is_stored_once(pg_url: str) -> None:
    """Two `depot serve` instances are two processes with their own pools: the request counter
    admits the batch once, and even when both ingest it the device's row lock orders the commits,
    so it is stored once and both acknowledge the same seq."""
    a, b = PgStore(pg_url), PgStore(pg_url, migrate=False)
    a.enrol("DEV1")
    batch = [rec(i) for i in range(1, 201)]
    admitted: list[bool] = [False, False]
    results: list[IngestResult | None] = [None, None]
    go = threading.Barrier(2)

    def send(i: int, inst: PgStore) -> None:
        go.wait()
        admitted[i] = inst.advance_counter("DEV1", "upload", 7)
        go.wait()
        results[i] = inst.ingest("DEV1", batch, "cellular")  # as if both had admitted it

    threads = [threading.Thread(target=send, args=(i, s)) for i, s in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(admitted) == [False, True]
    assert sorted((r.stored, r.duplicates, r.ack_seq) for r in results if r) == [(0, 200, 200), (200, 0, 200)]
    assert a.count("DEV1") == 200 and b.ack_seq("DEV1") == 200
    a.close()
    b.close()


def test_many_instances_racing_on_overlapping_batches_store_each_record_once(pg_url: str) -> None:
    insts = [PgStore(pg_url, migrate=(i == 0)) for i in range(4)]
    insts[0].enrol("DEV1")
    recs = [rec(i) for i in range(1, 301)]

    def worker(i: int) -> None:
        for start in range(0, 300, 25):  # each instance sends every chunk, in its own counter space
            if insts[i].advance_counter("DEV1", f"c{i}", start + 1):
                insts[i].ingest("DEV1", recs[start:start + 25], "cellular")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert time.monotonic() - t0 < 60
    assert insts[0].count("DEV1") == 300
    assert insts[1].ack_seq("DEV1") == 300
    assert insts[2].conflicts() == []
    for s in insts:
        s.close()


def test_an_unreachable_postgresql_is_one_line_naming_host_and_cause() -> None:
    with pytest.raises(store_mod.StoreError, match=r"cannot reach PostgreSQL at 127\.0\.0\.1:1/x: "):
        PgStore("postgresql://u:secret@127.0.0.1:1/x")


def test_revoke_and_rotate_key_on_both_backends(store_url: str) -> None:
    """Issue 13.10: the key in force changes at once; the key the device holds is kept for the
    dock until delivered; a revoked device has no key at all."""
    store = open_store(store_url)
    try:
        held = store.enrol("ROT-1")
        store.enrol("REV-1")
        new = store.rotate_key("ROT-1")
        assert (store.key("ROT-1"), store.retired_key("ROT-1")) == (new, held)
        store.key_delivered("ROT-1", new)
        assert (store.key("ROT-1"), store.retired_key("ROT-1")) == (new, None)
        store.revoke("REV-1")
        assert (store.key("REV-1"), store.revoked("REV-1"), store.revoked("ROT-1")) == (None, True, False)
        with pytest.raises(StoreError, match="revoked"):
            store.rotate_key("REV-1")
        with pytest.raises(UnknownDevice):
            store.revoke("NOPE")
    finally:
        store.close()


def test_the_depot_commands_run_on_either_backend(store_url: str, tmp_path) -> None:
    """enrol, devices, route compile + assign, report and store migrate/prune, from the CLI, with
    the store named by DEPOT_STORE: a SQLite path or a postgresql:// URL alike."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, DEPOT_STORE=store_url, DEPOT_HOME=str(tmp_path / "home"))

    def depot(*args: str) -> str:
        res = subprocess.run([sys.executable, "-m", "host_tools", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert (res.returncode, res.stderr) == (0, ""), res.stderr
        return res.stdout

    assert "enrolled HH-0001" in depot("enrol", "--device-id", "HH-0001")
    assert "HH-0001" in depot("devices")
    pkg = tmp_path / "south.pkg"
    depot("route", "compile", str(root / "examples" / "routes" / "south.geojson"), "--out", str(pkg))
    depot("route", "assign", str(pkg), "--device", "HH-0001")
    st = open_store(store_url)
    assert st.assigned_route("HH-0001") is not None
    st.close()
    route_id = json.loads((root / "examples" / "routes" / "south.geojson").read_text())["route_id"]
    assert route_id in depot("report", "--route", route_id, "--format", "text")
    assert f"schema version {SCHEMA_VERSION}" in depot("store", "migrate")
    assert depot("store", "prune", "--before", "2026-01-01").startswith("pruned 0 acknowledged records")
