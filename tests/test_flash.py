"""`depot flash` against virtual handhelds: real mpremote (its Python API) over the console pty.

Each device boots from a blank image; flashing writes the compiled firmware, the board definition
and the identity, verifies each file by the sha256 the device computes, and reboots it.
"""

from __future__ import annotations

import binascii
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware import layout, record
from host_tools import cli, flash
from host_tools import mpremote_adapter as mp
from host_tools.store import Store

client = pytest.importorskip("sim.client", reason="the simulator (sim/client.py) is not available")

pytestmark = pytest.mark.slow

JOURNAL_TWO_RECORDS = """
import os
from firmware import journal, layout, record
for d in (layout.DATA, layout.JOURNAL):
    try:
        os.mkdir(d)
    except OSError:
        pass
j = journal.Journal(layout.JOURNAL)
for item in ('RR473124829GB', 'RR000000000GB'):
    j.append(record.Record(device_id='H-A', route_id='R1', stop_id='S1', item_id=item))
j.close()
print(j.pending())
"""


@pytest.fixture(scope="module")
def image() -> flash.Image:
    return flash.build("sim", romfs=False)  # `--no-romfs`: .mpy files on littlefs (ROMFS: test_flash_romfs)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(tmp_path / "depot.sqlite3")
    yield st
    st.close()


def _journal_files(port: str) -> dict[str, tuple[int, str] | None]:
    with mp.Device.connect(port) as dev:
        names = [n for n, is_dir, _ in dev.listdir(layout.JOURNAL) if not is_dir]
        return dev.hashes([layout.JOURNAL + "/" + n for n in sorted(names)])


def test_flash_blank_device_then_reflash_skips_unchanged(tmp_path, store, image):
    key = store.enrol("H-A")
    with client.Device.start(tmp_path / "a.img") as dev:
        res = flash.flash_one(dev.console, "H-A", image, key)
        assert (res.status, res.message) == ("ok", "")
        files = image.with_identity("H-A", key)
        assert (res.written, res.skipped) == (len(files), 0)
        assert res.bytes == sum(len(d) for _, d in files)
        with mp.Device.connect(dev.console) as con:
            got = con.hashes([p for p, _ in files])
            assert got == {p: (len(d), mp.sha256_hex(d)) for p, d in files}
            assert json.loads(con.read("/config/device.json")) == {"device_id": "H-A", "key": key.hex()}
            assert [n for n, _, _ in con.listdir("/lib")] == ["firmware"]
            assert {n for n, _, _ in con.listdir("/lib/firmware")} >= {"board.mpy", "record.mpy", "main.mpy"}
            assert ("boot.py", False) in {(n, d) for n, d, _ in con.listdir("/")}
        again = flash.flash_one(dev.console, "H-A", image, key)
        assert (again.status, again.written, again.skipped, again.bytes) == ("ok", 0, len(files), 0)


def test_the_server_ca_is_its_own_file_and_a_flash_without_one_removes_it(tmp_path, store, image):
    """The modem streams the CA from /config/server_ca.pem (never read into RAM whole); a device
    reflashed for a plain-http server keeps no CA from an earlier https flash."""
    from sim import certs

    key = store.enrol("H-A")
    pem = certs.make_ca("Depot CA").pem.decode()
    with client.Device.start(tmp_path / "a.img") as dev:
        res = flash.flash_one(dev.console, "H-A", image, key, server_url="https://depot.example:8443",
                              server_ca=pem)
        assert res.status == "ok", res.message
        with mp.Device.connect(dev.console) as con:
            assert con.read(layout.SERVER_CA) == pem.encode()
            assert "server_ca" not in json.loads(con.read(layout.CONFIG))
        res = flash.flash_one(dev.console, "H-A", image, key, server_url="http://127.0.0.1:8080")
        assert res.status == "ok", res.message
        with mp.Device.connect(dev.console) as con:
            assert con.hashes([layout.SERVER_CA]) == {layout.SERVER_CA: None}
            assert json.loads(con.read(layout.CONFIG))["server_url"] == "http://127.0.0.1:8080"


def test_refuses_unsynced_journal_unless_forced(tmp_path, store, image, capsys):
    key = store.enrol("H-A")
    with client.Device.start(tmp_path / "a.img") as dev:
        assert flash.flash_one(dev.console, "H-A", image, key).ok
        with mp.Device.connect(dev.console) as con:
            assert con.exec(JOURNAL_TWO_RECORDS, "journal").split()[-1] == b"2"
            assert con.journal_pending() == (2, 0, 2)
        before = _journal_files(dev.console)
        assert len(before) >= 2  # state + a segment
        refused = flash.flash_one(dev.console, "H-A", image, key)
        assert refused.status == "refused" and refused.pending == 2
        assert "2 unsynced record(s)" in refused.message and "depot sync" in refused.message
        argv = ["--store", str(store.path), "flash", "--port", dev.console, "--device-id", "H-A"]
        assert cli.main(argv) == 1
        assert cli.main(argv + ["--force"]) == 0
        out = capsys.readouterr()
        assert "WARNING" in out.err and "forced over 2 unsynced record(s)" in out.out
        assert key.hex() not in out.out + out.err  # the key never shows
        assert _journal_files(dev.console) == before  # the journal is never touched


def _segment(*seqs: int) -> bytes:
    """A journal segment as firmware/journal.py writes it (docs/journal.md): per record, u16 length,
    the record, CRC32 over both."""
    out = b""
    for seq in seqs:
        payload = record.Record(seq=seq, device_id="H-A", route_id="R1", stop_id="S1",
                                item_id="RR473124829GB").encode()
        head = struct.pack("<H", len(payload))
        out += head + payload + struct.pack("<I", binascii.crc32(payload, binascii.crc32(head)))
    return out


def test_a_journal_without_firmware_to_read_it_is_refused_unless_forced(tmp_path, store, image):
    """The journal is counted by the device's own reader (firmware/journal.py peek); a device whose
    segments no firmware package can read is treated as holding unsynced records."""
    key = store.enrol("H-A")
    seg = layout.JOURNAL + "/0000000001.seg"
    with client.Device.start(tmp_path / "a.img") as dev:
        with mp.Device.connect(dev.console) as con:
            con.mkdirs([layout.JOURNAL])
            con.put(seg, _segment(1, 2))
        refused = flash.flash_one(dev.console, "H-A", image, key)
        assert refused.status == "refused"
        assert refused.message == (f"{dev.console}: a journal is on the device but no firmware package to "
                                   "read it (flashed before the package layout?): sync it with its own "
                                   "firmware first (or --force)")
        forced = flash.flash_one(dev.console, "H-A", image, key, force=True)
        assert forced.ok and forced.message.startswith("WARNING: forced over a journal")
        with mp.Device.connect(dev.console) as con:
            assert con.journal_pending() == (2, 0, 2)  # kept, and now the firmware reads it


def test_not_enrolled_is_a_clear_error(store, capsys):
    argv = ["--store", str(store.path), "flash", "--port", "/dev/null", "--device-id", "H-NEW"]
    assert cli.main(argv) == 2
    assert "not enrolled: H-NEW" in capsys.readouterr().err


def test_parallel_flash_of_two_devices_with_result_table(tmp_path, store, capsys):
    keys = {d: store.enrol(d) for d in ("H-1", "H-2")}
    with client.Device.start(tmp_path / "1.img") as d1, client.Device.start(tmp_path / "2.img") as d2:
        csv = tmp_path / "devices.csv"
        csv.write_text(f"port,device_id\n{d1.console},H-1\n{d2.console},H-2\n")
        assert cli.main(["--store", str(store.path), "flash", "--csv", str(csv), "--board", "sim"]) == 0
        out = capsys.readouterr().out
        rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("H-")
                and ("ok" in line.split()[2:3])}
        assert set(rows) == {"H-1", "H-2"}
        assert "2 of 2 device(s) flashed" in out
        for k in keys.values():
            assert k.hex() not in out
        for dev, name in ((d1, "H-1"), (d2, "H-2")):
            dev.wait_ready()  # rebooted into the application, as a depot worker hears it
            with mp.Device.connect(dev.console) as con:
                assert json.loads(con.read("/config/device.json"))["device_id"] == name
