"""The application lives within the board's heap: a 1,000-stop route and a full day of scans run
in `main.App` on the real VM, with every scan recorded. Modules as .mpy files on littlefs (what
`depot flash` installs) need -X heapsize=256K; from a ROMFS image, where the VM runs bytecode in
place, the app fits the 128K goal."""

import pytest

from sim import app_heap

pytestmark = pytest.mark.slow


def test_a_1000_stop_day_runs_in_the_256k_heap_and_records_every_scan():
    d = app_heap.run(stops=1000, heap="256K")
    assert (d["stops"], d["route"]) == (1000, "NORTH-11")
    assert d["records"] == d["scans"] == 1692  # every parcel of every stop: delivered, inside
    assert d["peak_live_heap"] < d["heap_total"]
    assert d["peak_live_heap"] - d["heap_before_app"] < 64 * 1024  # the app's own data


def test_with_the_firmware_in_romfs_the_same_day_runs_in_128k_with_16k_to_spare():
    d = app_heap.run(stops=1000, heap="128K", rom=True)
    assert d["records"] == d["scans"] == 1692
    assert d["heap_total"] - d["romfs_bytes"] <= 128 * 1024 + 1024  # the heap above the image
    # issue 16's goal: at the day's fullest (after a collection, every 50 scans) 16 KB still free
    assert d["least_free"] >= 16 * 1024, d["least_free"]


def test_a_day_of_fixes_and_scans_on_irregular_footprints_never_shrinks_the_largest_free_block():
    # every second of the walk between 1,000 surveyed-looking footprints (10-32 vertices each), as
    # the receiver sends it, and every parcel scanned; the heap is read after a collection at the
    # start, after the first scan (from then on the journal's open segment file is working set),
    # every 50 scans and at the end (micropython.mem_info's largest free block)
    d = app_heap.run(stops=1000, heap="256K", irregular=True, walk=True)
    assert d["records"] == d["scans"] == 1653 and d["fixes"] == 12968
    start, first, *day = d["largest_free_blocks"]
    assert len(day) == 34 and min(day) >= first >= start - 1024
