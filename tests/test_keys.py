"""Issue 13.10: `depot revoke` and `depot rotate-key`, honoured by the ingest server at once (it
cached every device's key for its lifetime: a key changed in the store was still accepted)."""

from __future__ import annotations

from pathlib import Path

from firmware import record
from firmware.sign import Signer
from host_tools import cli
from host_tools.server import BackgroundServer
from host_tools.store import Store
from host_tools.upload_server_wire import encode_batch
from tests.ingest_client import post


def batch(dev: str, key: bytes, counter: int, seq: int) -> bytes:
    r = record.Record(seq=seq, device_id=dev, route_id="R1", stop_id="S1", item_id="RR%08d9GB" % seq,
                      verdict=record.V_INSIDE).encode()
    return encode_batch(dev, Signer(key), counter, 0, [r])


def test_the_server_honours_revoke_and_rotate_key_at_once(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "depot.sqlite3")
    store = Store(db)
    lost = store.enrol("LOST-1")
    kept = store.enrol("KEPT-1")
    with BackgroundServer(store) as srv:
        assert post(srv.url, "LOST-1", batch("LOST-1", lost, 1, 1))[0] == 200
        assert post(srv.url, "KEPT-1", batch("KEPT-1", kept, 1, 1))[0] == 200  # both keys now cached
        assert cli.main(["--store", db, "revoke", "--device-id", "LOST-1"]) == 0
        assert cli.main(["--store", db, "rotate-key", "--device-id", "KEPT-1"]) == 0
        assert post(srv.url, "LOST-1", batch("LOST-1", lost, 2, 2))[::2] == (404, "unknown_device")
        assert post(srv.url, "KEPT-1", batch("KEPT-1", kept, 2, 2))[::2] == (401, "bad_signature")
        new = store.key("KEPT-1")
        assert new is not None and new != kept
        assert post(srv.url, "KEPT-1", batch("KEPT-1", new, 3, 2))[0] == 200
    assert (store.count("LOST-1"), store.count("KEPT-1")) == (1, 2)
    out = capsys.readouterr().out
    assert kept.hex() not in out and new.hex() not in out  # keys are never printed


def test_revoke_and_rotate_refuse_unknown_and_revoked_devices_in_one_line(tmp_path: Path, capsys) -> None:
    db = str(tmp_path / "depot.sqlite3")
    Store(db).enrol("DEV1")
    assert cli.main(["--store", db, "revoke", "--device-id", "NOPE"]) == 2
    assert capsys.readouterr().err.startswith("depot: error: device NOPE is not enrolled in ")
    assert cli.main(["--store", db, "revoke", "--device-id", "DEV1"]) == 0
    capsys.readouterr()
    assert cli.main(["--store", db, "rotate-key", "--device-id", "DEV1"]) == 2
    err = capsys.readouterr().err
    assert err == ("depot: error: device 'DEV1' is revoked. A revoked device cannot get a new key; "
                   "enrol it again.\n")


def test_a_second_rotation_before_delivery_keeps_the_key_the_device_holds(tmp_path: Path) -> None:
    store = Store(tmp_path / "depot.sqlite3")
    held = store.enrol("DEV1")
    first = store.rotate_key("DEV1")
    second = store.rotate_key("DEV1")
    assert store.retired_key("DEV1") == held and store.key("DEV1") == second
    store.key_delivered("DEV1", first)  # a stale delivery of the superseded key changes nothing
    assert store.retired_key("DEV1") == held
    store.key_delivered("DEV1", second)
    assert store.retired_key("DEV1") is None


def test_a_counter_at_the_top_is_cleared_by_rotate_key(tmp_path: Path) -> None:
    """Issue 13.12: a counter of 0xFFFFFFFF accepted once locked the device out for good (nothing
    is above it). rotate-key starts the counters again: nothing signed under the old key verifies."""
    store = Store(tmp_path / "depot.sqlite3")
    store.enrol("DEV1")
    assert store.advance_counter("DEV1", "upload", 0xFFFFFFFF)
    assert not store.advance_counter("DEV1", "upload", 5)
    store.rotate_key("DEV1")
    assert store.advance_counter("DEV1", "upload", 1)


def test_the_device_counter_lease_stops_at_the_top_instead_of_crashing(mpy, tmp_path: Path) -> None:
    """On the VM: a lease file at 0xFFFFFFF0 (restored, or pushed up by 403s) used to overflow the
    4-byte state at the next lease (struct error in the upload task) on its way past 2**32."""
    state = tmp_path / "counter"
    state.write_bytes((0xFFFFFFF0).to_bytes(4, "little"))
    out = mpy(f"""
        from firmware import upload_wire
        c = upload_wire.CounterLease({str(state)!r})
        print(c.take(), c.take())
        c = upload_wire.CounterLease({str(state)!r})
        c.next = c.LIMIT - 2
        print([c.take() for _ in range(4)])
        c.skip(1 << 29)
        print(c.next == c.LIMIT)
        c.restart()
        print(c.take(), c.take())
        """).splitlines()
    assert out == ["-1 -1", f"[{2**30 - 3}, {2**30 - 2}, -1, -1]", "True", "1 2"]
