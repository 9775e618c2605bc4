"""`depot flash` onto the ROMFS partition of a virtual handheld (sim/vm/romdev.py): real mpremote
over the console pty, the real VM running the firmware's bytecode in place from /rom.

Which copy wins: ROMFS. /rom/lib comes before /lib on sys.path (as on a MicroPython >= 1.25 board),
so a ROMFS flash removes the package from littlefs and a littlefs flash erases the partition's
header: whichever flash ran last is what boots."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware import layout
from host_tools import boards, cli, flash, flash_romfs, route_assign, route_compile
from host_tools import mpremote_adapter as mp
from host_tools.record_dict import OUTCOMES
from host_tools.store import Store
from host_tools.sync import sync_device
from sim import app_heap, day, mpy
from sim.client import Device

ROOT = Path(__file__).resolve().parent.parent
ROUTE = ROOT / "examples" / "routes" / "south.geojson"
DEV = "HH-ROM"

pytestmark = pytest.mark.slow

# Where the running firmware was imported from, and what the partition holds.
WHERE = ("import sys, vfs\nfrom firmware import main, layout\n"
         "print(repr((main.__file__, bytes(vfs.rom_ioctl(2, 0)[:3]) == b'\\xd2\\xcd\\x31', sys.path)))")


@pytest.fixture(scope="module")
def rom_image() -> flash.Image:
    return flash.build("sim")


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(tmp_path / "depot.sqlite3")
    yield st
    st.close()


def _where(port: str) -> tuple[str, bool, list[str]]:
    with mp.Device.connect(port) as con:
        return con._eval(WHERE, "where")  # type: ignore[return-value]


def _flash(store: Store, port: str, *extra: str) -> int:
    return cli.main(["--store", str(store.path), "flash", "--port", port, "--device-id", DEV, *extra])


def test_the_sim_board_builds_a_romfs_image_of_the_package(rom_image):
    assert boards.romfs(boards.load("sim")) == {"bytes": 131072, "block_size": 4096}
    assert rom_image.romfs is not None and rom_image.romfs[:3] == b"\xd2\xcd\x31"
    assert len(rom_image.romfs) < 131072
    assert [p for p, _ in rom_image.littlefs_files()] == ["/boot.py", "/main.py"]
    assert flash.build("sim", romfs=False).romfs is None


def test_romfs_flash_runs_from_rom_and_a_delivery_reaches_the_store(tmp_path, store, rom_image, capsys):
    key = store.enrol(DEV)
    pkg = tmp_path / "south.pkg"
    route_compile.write_package(route_compile.compile_file(ROUTE).package, pkg)
    route_assign.assign(store, pkg, DEV)
    with Device.start(tmp_path / "hh.img", workdir=tmp_path / "dev", seed=3) as dev:
        assert _flash(store, dev.console) == 0
        assert "ROMFS" not in capsys.readouterr().err  # no fallback line: the sim board has one
        part = Path(dev.info["romfs"]).read_bytes()
        assert part[:len(rom_image.romfs or b"")] == rom_image.romfs  # written through to the file
        where, held, path = _where(dev.console)
        assert where == "/rom/lib/firmware/main.mpy" and held
        assert path.index("/rom/lib") < path.index("/lib")
        since = len(dev.events())
        with mp.Device.connect(dev.console) as con:  # leaves it rebooting into the application
            assert [n for n, _, _ in con.listdir("/lib")] == []  # no littlefs copy left
        dev.wait_ready(since)
        assert sync_device(dev.dock, store).route_pushed == "SOUTH-7"
        plan = day.Carrier(DEV, str(ROUTE), stops=2)
        out = day.Outcome(DEV)
        day.Walker(dev, plan, json.loads(ROUTE.read_text()), out).run()
        assert out.errors == [] and out.expected
        night = sync_device(dev.dock, store)
        assert night.ok and night.pending_after == 0
    assert sorted((OUTCOMES[r.outcome], r.stop_id, r.item_id) for r in store.records(DEV)) == \
        sorted(out.expected)
    assert key


def test_no_romfs_goes_to_littlefs_and_erases_the_stale_image_reflash_replaces_it(tmp_path, store, rom_image):
    store.enrol(DEV)
    with Device.start(tmp_path / "hh.img") as dev:
        assert _flash(store, dev.console) == 0
        since = len(dev.events())
        dev.power_cut()  # the partition is flash: it outlives the power, as the littlefs image does
        dev.wait_off()
        dev.power_on()
        dev.wait_ready(since)
        assert _where(dev.console)[:2] == ("/rom/lib/firmware/main.mpy", True)
        # The reverse: a littlefs flash must not be shadowed by the ROMFS image still on the chip.
        assert _flash(store, dev.console, "--no-romfs") == 0
        where, held, _ = _where(dev.console)
        assert (where, held) == ("/lib/firmware/main.mpy", False)
        with mp.Device.connect(dev.console) as con:
            assert {"board.mpy", "main.mpy", "record.mpy"} <= {n for n, _, _ in con.listdir("/lib/firmware")}
        # Back to ROMFS: the littlefs copy goes, and a different image replaces the partition's.
        assert _flash(store, dev.console, "--romfs") == 0
        assert _where(dev.console)[:2] == ("/rom/lib/firmware/main.mpy", True)
        with mp.Device.connect(dev.console) as con:
            assert con.listdir("/lib") == []
            # a copy left on littlefs (a flash cut before it removed it) is never imported
            con.mkdirs([layout.FIRMWARE_DIR])
            con.put(layout.FIRMWARE_DIR + "/__init__.py", b"raise ImportError('stale littlefs copy')")
        assert _where(dev.console)[:2] == ("/rom/lib/firmware/main.mpy", True)
        image = flash.Image("sim", rom_image.files, flash_romfs.image(
            [(p, d) for p, d in rom_image.files] + [("/lib/firmware/extra.mpy", b"M\x06\x00\x1f")]))
        res = flash.flash_one(dev.console, DEV, image, store.key(DEV))
        assert (res.status, res.written) == ("ok", 1)  # only the ROMFS image changed
        with mp.Device.connect(dev.console) as con:
            assert con.rom_sha256(len(image.romfs or b"")) == mp.sha256_hex(image.romfs or b"")
        again = flash.flash_one(dev.console, DEV, image, store.key(DEV))
        assert (again.status, again.written) == ("ok", 0)


def test_a_corrupted_deploy_is_refused_in_one_line_and_not_booted(tmp_path, store, rom_image, capsys):
    store.enrol(DEV)
    with Device.start(tmp_path / "hh.img") as dev:
        assert _flash(store, dev.console, "--no-romfs") == 0  # the firmware it had before
        capsys.readouterr()
        dev.rom_fault(stuck_byte=1000)  # a worn cell: that byte no longer programs
        assert _flash(store, dev.console) == 1
        out = capsys.readouterr().out
        # one line: the device's final status line and its row in the table say the same
        row = [ln for ln in out.splitlines() if ln.startswith(DEV) and "failed" in ln][-1]
        assert row.endswith("ROMFS verify failed: the partition reads back sha256 "
                            f"{row.split('sha256 ')[1][:12]}, the image is "
                            f"{mp.sha256_hex(rom_image.romfs or b'')[:12]}; partition erased, not booted")
        where, held, _ = _where(dev.console)
        assert (where, held) == ("/lib/firmware/main.mpy", False)  # the littlefs firmware still runs


def test_an_image_too_large_for_the_partition_fails_that_device_and_keeps_its_firmware(tmp_path, store,
                                                                                     rom_image):
    store.enrol(DEV)
    with Device.start(tmp_path / "hh.img") as dev:
        assert _flash(store, dev.console) == 0  # the image that fits, running from ROM
        big = (rom_image.romfs or b"") + bytes(131072)
        res = flash.flash_one(dev.console, DEV, flash.Image("sim", rom_image.files, big), store.key(DEV))
        assert (res.status, res.message) == (
            "failed", f"the ROMFS image ({len(big)} B) does not fit the device's partition (131072 B): "
                      "flash with --no-romfs")
        assert _where(dev.console)[:2] == ("/rom/lib/firmware/main.mpy", True)  # untouched


def test_a_device_without_the_partition_falls_back_to_littlefs(tmp_path, store, capsys):
    """A board definition without ROMFS (MicroPython before 1.25): one line, then .mpy files."""
    store.enrol(DEV)
    with Device.start(tmp_path / "hh.img", board="sim-noromfs") as dev:
        assert _flash(store, dev.console, "--board", "sim-noromfs", "--romfs") == 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "board sim-noromfs has no ROMFS partition" in err
        with mp.Device.connect(dev.console) as con:
            assert con.rom_partition() is None
            assert "main.mpy" in {n for n, _, _ in con.listdir("/lib/firmware")}


def test_a_board_meant_to_have_one_but_a_device_without_it_falls_back_per_device(tmp_path, store, capsys):
    """The board file says ROMFS, the device's MicroPython has none (no vfs.rom_ioctl): that
    device gets .mpy files on littlefs, and its row says why."""
    store.enrol(DEV)
    with Device.start(tmp_path / "hh.img", board="sim-noromfs") as dev:
        assert _flash(store, dev.console) == 0
        row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(DEV)][-1]
        assert row.endswith("no ROMFS partition on the device: firmware as .mpy files on littlefs")
        with mp.Device.connect(dev.console) as con:
            assert con._eval("from firmware import main\nprint(repr(main.__file__))", "where") == \
                "/lib/firmware/main.mpy"


def test_mpremote_romfs_query_reads_the_partition_depot_flash_wrote(tmp_path, store):
    store.enrol(DEV)
    with Device.start(tmp_path / "hh.img") as dev:
        assert _flash(store, dev.console) == 0
        exe = Path(__import__("sys").executable).parent / "mpremote"
        out = subprocess.run([str(exe), "connect", dev.console, "romfs", "query"], capture_output=True,
                             text=True, timeout=60).stdout
        assert "ROMFS0 partition has size 131072 bytes (32 blocks of 4096 bytes each)" in out
        assert "Raw contents: d2:cd:31" in out


def test_the_1000_stop_day_runs_in_128k_on_the_flashed_partition(tmp_path):
    """The heap day (sim/vm/flashedday.py) on exactly the partition `depot flash --romfs` wrote:
    the whole app powered up as main.run() does (every stream open, every task parked at its first
    await), then every scan recorded with 128K above the partition, with at least 16 KB least free
    (free_heap_bytes_1000_stops_flashed), the dock undocked as a carrier's day is."""
    partition = app_heap.flash_virtual_handheld(tmp_path)
    d = app_heap.run(stops=1000, heap="128K", flashed=partition)
    assert d["whole_app"] is True
    assert d["records"] == d["scans"] == 1692
    assert d["heap_total"] - d["romfs_bytes"] == mpy.usable_heap(128 * 1024)  # exactly the board's
    assert d["least_free"] >= 16384


def test_the_flashed_day_with_its_uploads_in_flight_over_tls_puts_every_record_in_the_store_once(tmp_path):
    """The same day with the uploader really uploading (app_heap.run(uploads=True)): after every 50
    scans the device's event loop runs until a real depot ingest server, over real TLS through the
    board's modem emulator on the modem pty, has acknowledged every record, the free heap sampled
    after a collection at every turn of the loop (free_heap_bytes_1000_stops_flashed_uploading):
    at least 16 KB free throughout."""
    partition = app_heap.flash_virtual_handheld(tmp_path)
    d = app_heap.run(stops=1000, heap="128K", flashed=partition, uploads=True)
    assert d["records"] == d["scans"] == 1692
    assert d["records_acknowledged"] == d["store_ack_seq"] == d["watermark"] == 1692  # each once
    assert d["drains"] == 35  # after the first scan, every 50 scans, and the last 42 records
    assert d["tls_handshakes"] >= 1 and d["posts"] >= 69  # 1 + 33 * 2 + 2 batches of at most 32
    assert d["least_free"] == min(d["least_free_parked"], d["least_free_uploading"])
    assert d["heap_total"] - d["romfs_bytes"] == mpy.usable_heap(128 * 1024)
    assert 0 < d["harness_extra_bytes"] < 2048
    assert d["least_free"] >= 16384  # the goal with a post in flight, the sampler's own heap counted too


def test_the_flashed_day_docked_all_day_syncs_every_record_to_the_store_once(tmp_path):
    """Docked (app_heap.run(dock=True)): the depot syncs the device again and again over an unpaced
    dock link while the day runs, so dock sessions are in flight at the sampled turns
    (free_heap_bytes_1000_stops_flashed_docked); every record reaches the store exactly once, with
    at least 16 KB free throughout."""
    partition = app_heap.flash_virtual_handheld(tmp_path)
    d = app_heap.run(stops=1000, heap="128K", flashed=partition, dock=True)
    assert d["records"] == d["scans"] == 1692
    assert d["records_acknowledged"] == d["store_ack_seq"] == d["watermark"] == 1692  # each once
    assert d["dock_syncs"] >= 1 and d["dock_records"] >= 1
    assert d["least_free"] == min(d["least_free_parked"], d["least_free_uploading"])
    assert d["least_free"] >= 16384  # the goal with a dock session in flight, the sampler's heap counted too
