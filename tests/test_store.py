"""The depot store: idempotent ingest, conflicts, contiguous acknowledgement, gaps, counters."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from firmware import record
from host_tools.store import MAX_SEQ, Storage, Store, StoreError, UnknownDevice, default_path, open_store


def rec(seq: int, device: str = "DEV1", item: str = "RR473124829GB", route: str = "R1") -> bytes:
    return record.Record(seq=seq, device_id=device, route_id=route, stop_id="S%d" % seq, item_id=item,
                         verdict=record.V_INSIDE, lat_e6=52_000_000 + seq % 1000, lon_e6=13_000_000).encode()


@pytest.fixture
def store(store_url: str):
    s = open_store(store_url)
    s.enrol("DEV1")
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "depot.sqlite3")
    s.enrol("DEV1")
    return s


def test_enrol_makes_a_32_byte_random_key_once(store: Storage) -> None:
    key = store.key("DEV1")
    assert key is not None and len(key) == 32
    assert store.enrol("DEV2") != key
    assert store.key("nobody") is None
    with pytest.raises(StoreError):
        store.enrol("DEV1")
    assert store.key("DEV1") == key


def test_sqlite_is_wal_with_synchronous_full(sqlite_store: Store) -> None:
    db = sqlite_store._db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_ingest_is_idempotent_and_committed_on_return(store: Storage, store_url: str) -> None:
    r = store.ingest("DEV1", [rec(1), rec(2), rec(3)], "dock")
    assert (r.stored, r.duplicates, r.conflicts, r.ack_seq) == (3, 0, [], 3)
    r = store.ingest("DEV1", [rec(2), rec(3), rec(4)], "cellular")
    assert (r.stored, r.duplicates, r.conflicts, r.ack_seq) == (1, 2, [], 4)
    # another connection (another process) sees it at once: it was committed before ingest returned
    other = open_store(store_url)
    assert other.count("DEV1") == 4
    other.close()
    assert [x.seq for x in store.records("DEV1")] == [1, 2, 3, 4]


def test_same_seq_other_payload_is_a_conflict_and_not_overwritten(store: Storage) -> None:
    store.ingest("DEV1", [rec(1)], "dock")
    r = store.ingest("DEV1", [rec(1, item="FORGED")], "cellular")
    assert (r.stored, r.duplicates, r.conflicts, r.ack_seq) == (0, 0, [1], 1)
    assert store.records("DEV1")[0].item_id == "RR473124829GB"
    [c] = store.conflicts()
    assert (c.device_id, c.seq, c.reason, c.source) == ("DEV1", 1, "payload differs", "cellular")
    assert record.decode(c.payload).item_id == "FORGED"


def test_record_naming_another_device_is_refused(store: Storage) -> None:
    r = store.ingest("DEV1", [rec(1, device="DEV9")], "dock")
    assert (r.stored, r.conflicts, r.ack_seq) == (0, [1], 0)
    assert store.conflicts("DEV1")[0].reason == "device id mismatch"
    assert store.count() == 0


def test_garbage_is_counted_invalid(store: Storage) -> None:
    r = store.ingest("DEV1", [b"\x01junk", b"", rec(0)], "dock")
    assert (r.stored, r.invalid) == (0, 3)


def test_ack_stops_below_a_gap_and_gaps_are_reported(store: Storage) -> None:
    r = store.ingest("DEV1", [rec(1), rec(2), rec(4), rec(5), rec(8)], "dock")
    assert r.ack_seq == 2
    assert store.gaps("DEV1") == [(3, 3), (6, 7)]
    r = store.ingest("DEV1", [rec(3)], "cellular")
    assert r.ack_seq == 5
    assert store.ack_seq("DEV1") == 5
    assert store.gaps("DEV1") == [(6, 7)]


def test_unknown_device_is_refused(store: Storage) -> None:
    with pytest.raises(UnknownDevice):
        store.ingest("NOPE", [rec(1, device="NOPE")], "dock")
    with pytest.raises(UnknownDevice):
        store.ack_seq("NOPE")


def test_records_filter_by_route(store: Storage) -> None:
    store.enrol("DEV2")
    store.ingest("DEV1", [rec(1, route="A"), rec(2, route="B")], "dock")
    store.ingest("DEV2", [rec(1, device="DEV2", route="A")], "dock")
    assert [(x.device_id, x.seq) for x in store.records(route_id="A")] == [("DEV1", 1), ("DEV2", 1)]
    assert [(x.device_id, x.seq) for x in store.records("DEV1", "B")] == [("DEV1", 2)]


def test_counters_never_repeat_across_reopen(store: Storage, store_url: str) -> None:
    assert [store.next_counter("DEV1") for _ in range(3)] == [1, 2, 3]
    store.close()
    again = open_store(store_url)
    assert again.next_counter("DEV1") == 4
    assert again.advance_counter("DEV1", "upload", 10)
    assert not again.advance_counter("DEV1", "upload", 10)
    assert not again.advance_counter("DEV1", "upload", 9)
    assert again.advance_counter("DEV1", "upload", 11)


def test_device_registry_and_route_assignment(store: Storage) -> None:
    store.seen("DEV1", "dock", firmware="1.0", board="sim", route_id="R1", pending=7, battery=88,
               free_flash=100_000, watermark=3)
    d = store.device("DEV1")
    assert d is not None
    assert (d.firmware, d.board, d.route_id, d.pending, d.battery, d.free_flash, d.last_source) == (
        "1.0", "sim", "R1", 7, 88, 100_000, "dock")
    assert d.last_seen is not None
    assert store.assigned_route("DEV1") is None
    a = store.assign_route("DEV1", b"PKG", route_id="R2")
    got = store.assigned_route("DEV1")
    assert got is not None and (got.package, got.route_id, got.sha256, got.pushed_at) == (
        b"PKG", "R2", a.sha256, None)
    store.mark_pushed("DEV1", a.sha256)
    got = store.assigned_route("DEV1")
    assert got is not None and got.pushed_at is not None
    with pytest.raises(UnknownDevice):
        store.assign_route("NOPE", b"PKG")


def test_parallel_ingest_from_threads_stores_each_record_once(store: Storage) -> None:
    recs = [rec(i) for i in range(1, 201)]

    def worker(chunk: list[bytes]) -> None:
        store.ingest("DEV1", chunk, "cellular")

    threads = [threading.Thread(target=worker, args=(recs[i::3] + recs[:50],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count("DEV1") == 200
    assert store.ack_seq("DEV1") == 200
    assert store.conflicts() == []


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_path("x.db") == Path("x.db")
    monkeypatch.setenv("DEPOT_HOME", str(tmp_path))
    assert default_path() == tmp_path / "depot.sqlite3"
    monkeypatch.delenv("DEPOT_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_path() == tmp_path / "xdg" / "depot" / "depot.sqlite3"


def test_seqs_the_device_never_held_let_the_ack_pass_but_stay_reported(store: Storage) -> None:
    store.ingest("DEV1", [rec(1), rec(2), rec(5)], "dock")
    assert store.declare_absent("DEV1", [3, 4], "dock") == 5
    assert store.ack_seq("DEV1") == 5
    assert store.gaps("DEV1") == [(3, 4)]
    assert store.absent("DEV1") == [(3, 4)]
    store.ingest("DEV1", [rec(3)], "cellular")  # it turned up after all: stored, no longer absent
    assert store.absent("DEV1") == [(4, 4)]
    assert store.gaps("DEV1") == [(4, 4)]


def test_seqs_near_2_to_the_32_are_refused_and_wide_gaps_stay_small(store: Store) -> None:
    """Issue 13.6: a record with seq 2**32-1 (from a dock or an upload) made gaps() and the absent
    lists build billions of ints: MemoryError, then every sync and report of the device crashed.
    Seqs above MAX_SEQ are invalid; gaps and absent seqs are runs, whatever their width."""
    r = store.ingest("DEV1", [rec(1), rec(0xFFFFFFFF), rec(MAX_SEQ + 1)], "dock")
    assert (r.stored, r.invalid, r.ack_seq) == (1, 2, 1)
    store.ingest("DEV1", [rec(MAX_SEQ)], "dock")
    assert store.gaps("DEV1") == [(2, MAX_SEQ - 1)]
    assert store.declare_absent("DEV1", [(2, 0xFFFFFFFF)], "dock") == MAX_SEQ
    assert store.absent("DEV1") == [(2, MAX_SEQ - 1)]
    assert store.declare_absent("DEV1", [(5, 9), 10, (3, 4)], "dock") == MAX_SEQ  # already covered
    assert store.absent("DEV1") == [(2, MAX_SEQ - 1)]


def test_an_old_store_with_one_absent_row_per_seq_becomes_runs(tmp_path: Path) -> None:
    old = Store(tmp_path / "old.sqlite3")
    old.enrol("DEV1")
    old.ingest("DEV1", [rec(1), rec(7)], "dock")
    old.close()
    with sqlite3.connect(tmp_path / "old.sqlite3") as db:  # as the first round left it: unversioned
        db.execute("PRAGMA user_version=0")
        for table in ("absent_runs", "route_versions", "fence_history"):
            db.execute(f"DROP TABLE {table}")
        for column in ("pruned_seq", "retired_key", "revoked_at"):  # columns of later versions
            db.execute(f"ALTER TABLE devices DROP COLUMN {column}")
        db.execute("CREATE TABLE absent (device_id TEXT, seq INTEGER, source TEXT, at REAL)")
        db.executemany("INSERT INTO absent VALUES ('DEV1', ?, 'dock', 0)", [(2,), (3,), (5,)])
    assert Store(tmp_path / "old.sqlite3").absent("DEV1") == [(2, 3), (5, 5)]
