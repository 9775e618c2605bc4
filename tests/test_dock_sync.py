"""Dock sync end to end: the firmware's dock session on the real `micropython` (journal in a temp
dir) behind a pty, `sync_device` on the host through pyserial, a relay between them that can
corrupt bytes and cut the line."""

from __future__ import annotations

import os
import pty
import select
import struct
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware import dock_wire as P
from firmware import sign
from host_tools import route_compile
from host_tools.dock_link import AckRefused, AuthRefused, DockLink
from host_tools.store import Store
from host_tools.sync import sync_device
from tests.dockharness import Device, Relay

ROUTE = Path(__file__).resolve().parents[1] / "examples" / "routes" / "north.geojson"
N = 300


class HostCrash(Exception):
    pass


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Store, bytes, Relay, Device]]:
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol("DEV1")
    relay = Relay()
    relay.start()
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=N)
    try:
        yield store, key, relay, dev
    finally:
        relay.close()
        dev.stop()


def expected_items(n: int) -> list[str]:
    return ["RR%09dGB" % s for s in range(1, n + 1)]


def test_sync_collects_every_record_once_and_a_second_sync_sends_nothing(rig) -> None:
    store, _, relay, dev = rig
    rep = sync_device(relay.host_path, store)
    assert rep.ok, rep.error
    assert (rep.device_id, rep.received, rep.stored, rep.duplicates, rep.acked_seq) == ("DEV1", N, N, 0, N)
    assert (rep.pending_after, rep.gaps, rep.conflicts) == (0, [], [])
    assert [r.item_id for r in store.records("DEV1")] == expected_items(N)
    d = store.device("DEV1")
    assert d is not None and (d.firmware, d.board, d.battery, d.pending, d.watermark) == (
        "test-1", "sim", 77, 0, N)

    again = sync_device(relay.host_path, store)
    assert again.ok, again.error
    assert (again.received, again.stored, again.acked_seq) == (0, 0, N)
    assert store.count("DEV1") == N
    events = dev.events()
    assert [e[1] for e in events if e[0] == "ack"] == [N]
    # the carrier's other task kept running during the sync
    ticks = [e[2] for e in events]
    assert ticks[-1] > ticks[0]
    dev.stop()
    assert dev.journal_state()[:3] == (N, 0, 0)  # acknowledged records reclaimed


def test_forged_and_replayed_acks_are_refused_and_nothing_is_deleted(rig) -> None:
    store, key, relay, dev = rig
    with DockLink(relay.host_path, retries=2) as link:
        hello = link.hello()
        assert (hello.watermark, hello.pending, hello.last_seq) == (0, N, N)
        link.authenticate(hello, key)
        forged = sign.Signer(b"\x01" * 32).mac(P.ack_message("DEV1", N))
        with pytest.raises(AckRefused, match="bad signature"):
            link.ack(N, forged)
        with pytest.raises(AckRefused, match="bad signature"):  # the device key, not the session's
            link.ack(N, sign.Signer(key).mac(P.ack_message("DEV1", N)))
        assert link.ack(10) == 10
        recorded = link._ses().mac(P.ack_message("DEV1", N))
        assert link.status().watermark == 10
    with DockLink(relay.host_path, retries=2) as link:  # the next session
        link.authenticate(link.hello(), key)
        with pytest.raises(AckRefused, match="bad signature"):  # a genuine ack of another session
            link.ack(N, recorded)
        assert link.status().watermark == 10
    assert [e[1] for e in dev.events() if e[0] == "ack_refused"] == ["bad signature"] * 3
    dev.stop()
    assert dev.journal_state()[:2] == (10, N - 10)


def test_a_rogue_dock_gets_nothing_and_a_rogue_device_is_not_believed(rig, tmp_path: Path) -> None:
    """Issue 13.1 end to end on the VM. A dock without the key: every request refused, nothing
    moved. A device without the key (an impostor naming an enrolled id): the host stores none of
    its records and sends no ACK, so there is nothing to replay to the real handheld."""
    store, key, relay, dev = rig
    with DockLink(relay.host_path, retries=1) as link:
        hello = link.hello()
        wrong = sign.Signer(b"\x09" * 32).mac(P.auth_message(hello.host_nonce, hello.device_nonce, "DEV1"))
        with pytest.raises(AuthRefused, match="host proof refused"):
            link.request(P.AUTH, wrong)
        with pytest.raises(AuthRefused, match="authenticate first"):
            link.request(P.GET_RECORDS, struct.pack(P.GET_FIXED, 1, 8, 1000))
        with pytest.raises(AuthRefused, match="authenticate first"):
            link.request(P.PUT_BEGIN, struct.pack(P.PUT_BEGIN_FIXED, 0xFFFFFFFF, bytes(32)))
        with pytest.raises(AuthRefused, match="authenticate first"):
            link.request(P.SET_CLOCK, struct.pack("<I", 1))
    assert [e[0] for e in dev.events() if e[0] in ("clock", "route_receiving", "ack")] == []
    impostor_root = tmp_path / "impostor"
    impostor_root.mkdir()
    relay2 = Relay()
    relay2.start()
    impostor = Device(impostor_root, relay2.dev_path, "DEV1", b"\x09" * 32, records=5)
    try:
        rep = sync_device(relay2.host_path, store)
    finally:
        relay2.close()
        impostor.stop()
    assert not rep.ok and rep.error.startswith("device 'DEV1' did not prove its key")
    assert (rep.received, store.count("DEV1"), rep.acked_seq) == (0, 0, 0)
    assert [e for e in impostor.events() if e[0] in ("authenticated", "ack")] == []
    rep = sync_device(relay.host_path, store)  # the real one still syncs everything
    assert rep.ok and (rep.stored, rep.acked_seq) == (N, N)


def test_host_crash_mid_stream_then_resume_ends_identical(rig) -> None:
    store, _, relay, _ = rig

    def crash_at_half(msg: str) -> None:
        if msg.startswith("records ") and int(msg.split()[1].split("/")[0]) >= N // 2:
            raise HostCrash

    with pytest.raises(HostCrash):
        sync_device(relay.host_path, store, progress=crash_at_half)
    held = store.count("DEV1")
    assert N // 2 <= held < N
    rep = sync_device(relay.host_path, store)
    assert rep.ok, rep.error
    assert rep.stored == N - held and rep.duplicates == held  # device re-sent from its watermark
    assert [r.item_id for r in store.records("DEV1")] == expected_items(N)
    assert rep.acked_seq == N and rep.gaps == []


def test_host_crash_between_commit_and_ack_loses_and_duplicates_nothing(rig) -> None:
    store, _, relay, dev = rig

    def crash_before_ack(msg: str) -> None:
        if msg.startswith("ack "):
            raise HostCrash

    with pytest.raises(HostCrash):
        sync_device(relay.host_path, store, progress=crash_before_ack)
    assert store.count("DEV1") == N
    rep = sync_device(relay.host_path, store)
    assert (rep.ok, rep.stored, rep.duplicates, rep.acked_seq) == (True, 0, N, N)
    assert store.count("DEV1") == N and store.conflicts() == []
    assert [e[1] for e in dev.events() if e[0] == "ack"] == [N]


def test_unplug_mid_stream_then_resume(rig) -> None:
    store, _, relay, _ = rig

    def unplug(msg: str) -> None:
        if msg.startswith("records ") and int(msg.split()[1].split("/")[0]) >= 100:
            relay.cut = True

    rep = sync_device(relay.host_path, store, progress=unplug, rto=0.2, retries=1)
    assert not rep.ok and rep.error.startswith("DEV1 stopped answering on ")
    relay.cut = False
    rep = sync_device(relay.host_path, store)
    assert rep.ok, rep.error
    assert [r.item_id for r in store.records("DEV1")] == expected_items(N)
    assert rep.acked_seq == N and store.conflicts() == []


@pytest.mark.slow  # half a minute of retransmissions: not in make quick
def test_one_percent_corrupted_bytes_still_ends_identical(rig) -> None:
    store, key, relay, dev = rig
    pkg = route_compile.compile_file(ROUTE, key=key)
    store.assign_route("DEV1", pkg.package, route_id=pkg.route_id)
    relay.corrupt = 0.01
    rep = sync_device(relay.host_path, store)
    assert rep.ok, rep.error
    assert rep.route_pushed == pkg.route_id
    assert [r.item_id for r in store.records("DEV1")] == expected_items(N)
    assert (rep.acked_seq, rep.pending_after, store.conflicts()) == (N, 0, [])
    assert relay.flipped > 50 and rep.link["frames_bad"] > 0  # the noise really hit frames
    relay.corrupt = 0.0
    dev.stop()
    assert dev.journal_state()[:3] == (N, 0, 0)


def test_route_push_resumes_after_a_cut_and_a_bad_package_keeps_the_old_route(rig) -> None:
    store, key, relay, dev = rig
    pkg = route_compile.compile_file(ROUTE, key=key)
    store.assign_route("DEV1", pkg.package, route_id=pkg.route_id)

    def cut_at_40(msg: str) -> None:
        if msg.startswith("route ") and msg.endswith("%") and int(msg[6:-1]) >= 40:
            relay.cut = True

    rep = sync_device(relay.host_path, store, progress=cut_at_40, rto=0.2, retries=1)
    assert not rep.ok and rep.route_pushed == ""
    relay.cut = False
    rep = sync_device(relay.host_path, store)
    assert rep.ok, rep.error
    assert rep.route_pushed == pkg.route_id
    resumed_from = [e[1] for e in dev.events() if e[0] == "route_receiving"]
    assert resumed_from[0] == 0 and resumed_from[-1] > 0.3 * len(pkg.package)
    d = store.device("DEV1")
    assert d is not None and d.route_id == pkg.route_id
    assigned = store.assigned_route("DEV1")
    assert assigned is not None and assigned.pushed_at is not None

    # nothing new assigned: nothing pushed
    assert sync_device(relay.host_path, store).route_pushed == ""

    # a package signed with another device's key is refused; the active route stays
    other = route_compile.compile_file(ROUTE, key=b"\x02" * 32, route_id="EVIL")
    store.assign_route("DEV1", other.package, route_id="EVIL")
    rep = sync_device(relay.host_path, store)
    assert not rep.ok and "previous kept" in rep.route_error
    with DockLink(relay.host_path) as link:
        assert link.hello().route_id == pkg.route_id
    assert not (dev.root / "route" / "incoming.pkg").exists()  # the refused one is gone
    assert [e[1] for e in dev.events() if e[0] == "route"] == [pkg.route_id]


def test_raw_stream_yields_every_record_in_order_with_no_absent_seqs(rig) -> None:
    _, key, relay, _ = rig
    with DockLink(relay.host_path) as link:
        link.authenticate(link.hello(), key)
        got: list[int] = []
        missing: list[tuple[int, int]] = []

        def batch(recs: list[bytes], absent: list[tuple[int, int]]) -> None:
            got.extend(struct.unpack_from("<I", r, 8)[0] for r in recs)
            missing.extend(absent)

        assert link.records(1, batch) == N + 1
    assert got == list(range(1, N + 1)) and missing == []


def test_cli_enrol_sync_two_devices_in_parallel_and_devices_table(tmp_path: Path, capsys) -> None:
    from host_tools import cli

    db = str(tmp_path / "depot.sqlite3")
    assert cli.main(["--store", db, "enrol", "--device-id", "DEV1"]) == 0
    assert cli.main(["--store", db, "enrol", "--device-id", "DEV2"]) == 0
    assert cli.main(["--store", db, "enrol", "--device-id", "DEV2"]) == 2  # never twice
    out = capsys.readouterr().out
    store = Store(db)
    for dev in ("DEV1", "DEV2"):
        key = store.key(dev)
        assert key is not None and key.hex() not in out  # the key is never printed
    rigs = []
    try:
        for i, dev in enumerate(("DEV1", "DEV2")):
            relay = Relay()
            relay.start()
            (tmp_path / dev).mkdir()
            key = store.key(dev)
            assert key is not None
            rigs.append((relay, Device(tmp_path / dev, relay.dev_path, dev, key, records=50 + 25 * i)))
        ports = [a for r, _ in rigs for a in ("--port", r.host_path)]
        assert cli.main(["--store", db, "sync", *ports]) == 0
        out = capsys.readouterr().out
        assert "2/2 synced" in out and "DEV1" in out and "DEV2" in out
        assert (store.count("DEV1"), store.count("DEV2")) == (50, 75)
        assert cli.main(["--store", db, "devices"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split()[:3] == ["device", "last", "seen"]
        assert table[2].split()[0] == "DEV1" and "77%" in table[2] and "test-1" in table[2]
    finally:
        for relay, dev in rigs:
            relay.close()
            dev.stop()


def test_seqs_a_reboot_skipped_are_declared_absent_acked_past_and_still_reported(tmp_path: Path) -> None:
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol("DEV1")
    relay = Relay()
    relay.start()
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=40, after_reboot=10)
    try:
        rep = sync_device(relay.host_path, store)
    finally:
        relay.close()
        dev.stop()
    assert rep.ok, rep.error
    seqs = [r.seq for r in store.records("DEV1")]
    assert len(seqs) == 50 and seqs[:40] == list(range(1, 41))
    skipped = [(41, seqs[40] - 1)]
    assert seqs[40] > 41, "the reboot skipped no seq: the journal's lease changed?"
    assert rep.absent == skipped and rep.gaps == skipped  # never hidden
    assert rep.acked_seq == seqs[-1] and rep.pending_after == 0  # yet the device could reclaim


def test_rotate_key_reaches_the_device_at_its_next_sync_and_revoke_stops_it(rig) -> None:
    """Issue 13.10: the dock proves the key the handheld still holds, sends the new one sealed
    under that session, and re-pushes the route re-signed for it; a revoked device gets nothing."""
    from host_tools import cli

    store, key, relay, dev = rig
    pkg = route_compile.compile_file(ROUTE, key=key)
    store.assign_route("DEV1", pkg.package, route_id=pkg.route_id)
    assert sync_device(relay.host_path, store).route_pushed == pkg.route_id
    db = str(store.path)
    assert cli.main(["--store", db, "rotate-key", "--device-id", "DEV1"]) == 0
    new = store.key("DEV1")
    assert new is not None and new != key and store.retired_key("DEV1") == key
    rep = sync_device(relay.host_path, store)
    assert rep.ok and rep.key_rotated, rep.error
    assert rep.route_pushed == pkg.route_id  # the same route, signed for the new key
    assert (dev.root / "key.hex").read_text() == new.hex()
    assert store.retired_key("DEV1") is None
    again = sync_device(relay.host_path, store)  # the device now proves the new key
    assert again.ok and not again.key_rotated and again.route_pushed == ""
    assert cli.main(["--store", db, "revoke", "--device-id", "DEV1"]) == 0
    gone = sync_device(relay.host_path, store)
    assert not gone.ok and gone.error.startswith("device 'DEV1' is revoked (depot revoke). Nothing was")
    assert store.key("DEV1") is None
    assert [e[0] for e in dev.events()].count("authenticated") == 3  # none for the revoked sync


def test_the_session_wire_buffers_are_made_when_the_host_speaks_and_let_go_when_it_goes_quiet(
        tmp_path: Path) -> None:
    """The carrier's day runs undocked: the dock's two 1 KiB wire buffers are not held until a host
    speaks, go back to the heap once it has been quiet for idle_ms, and the next sync gets new ones."""
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol("DEV1")
    relay = Relay()
    relay.start()
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=40, idle_ms=400)
    try:
        assert [e for e in dev.events() if e[0] == "wire"] == []
        for i, n in enumerate((40, 0)):
            rep = sync_device(relay.host_path, store)
            assert rep.ok, rep.error
            assert rep.received == n
            deadline = time.monotonic() + 30
            while [e[1][0] for e in dev.events() if e[0] == "wire"].count(False) <= i:
                assert time.monotonic() < deadline, dev.output()
                time.sleep(0.05)
        wire = [e[1] for e in dev.events() if e[0] == "wire"]
        assert [w[0] for w in wire] == [True, False, True, False]
        assert wire[1][1] - wire[0][1] >= 2 * P.MAX_WIRE  # both buffers back on the heap
        assert store.count("DEV1") == 40
    finally:
        relay.close()
        dev.stop()


def test_a_session_borrows_the_uploaders_batch_buffer_and_the_uploader_stands_down_meanwhile(
        tmp_path: Path) -> None:
    """Docked, the dock carries the records: its session's wire buffers are the cellular uploader's
    batch buffer, lent while no post is in flight, so a sync costs the heap no 2 KiB; the uploader
    posts nothing until the session is over, then takes up the next record."""
    store = Store(tmp_path / "depot.sqlite3")
    key = store.enrol("DEV1")
    relay = Relay()
    relay.start()
    modem_host, modem_dev = pty.openpty()
    tty.setraw(modem_dev)
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=40, idle_ms=400,
                 modem_port=os.ttyname(modem_dev))
    try:
        rep = sync_device(relay.host_path, store)
        assert rep.ok and rep.received == 40, rep.error
        deadline = time.monotonic() + 30
        while not [e for e in dev.events() if e[0] == "posted_while_docked"]:
            assert time.monotonic() < deadline, dev.output()
            time.sleep(0.05)
        events = dev.events()
        assert [e[1] for e in events if e[0] == "borrowed"] == [[True, True, 2 * P.MAX_WIRE]]  # views of it
        wire = [e[1] for e in events if e[0] == "wire"]
        assert [w[0] for w in wire] == [True, False]
        # the session held its small buffers (reply cache, carry, poll) but not 2 KiB of wire buffers
        assert 0 < wire[1][1] - wire[0][1] < 2 * P.MAX_WIRE
        assert [e[1] for e in events if e[0] == "posted_while_docked"] == [False]
        got = b""
        while b"AT\r" not in got:  # undocked again, the uploader wakes its modem for the new record
            assert time.monotonic() < deadline, dev.output()
            if select.select([modem_host], [], [], 0.2)[0]:
                got += os.read(modem_host, 64)
        assert store.count("DEV1") == 40
    finally:
        relay.close()
        dev.stop()
        os.close(modem_host)
        os.close(modem_dev)
