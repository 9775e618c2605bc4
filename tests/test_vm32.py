"""The firmware's pure logic on a 32-bit VM: MicroPython's WebAssembly port (sim/wasm32.py), where
small ints have 31 bits and pointers 4 bytes, as on the boards. Each VM test of nmea, scan_code,
dock_wire, upload_wire, geofence and route_package runs here again unchanged, its heap_lock tests included
(a big int or a float made in a hot path allocates on a 32-bit port and fails them); the delivery
flow, with its journal on the port's in-memory filesystem, must record what the unix port records.
The route package is read from an in-memory file. What stays on the unix port: docs/vm32.md."""

from __future__ import annotations

import pytest

from host_tools import route_compile
from sim import routeheap, town, wasm32
from tests import (
    test_dock_wire,
    test_geofence,
    test_nmea,
    test_route_package,
    test_scan_code,
    test_upload_wire,
)
from tests.test_delivery import day  # noqa: F401  (fixtures shared with the unix-port tests)
from tests.test_geofence import pkg_path  # noqa: F401
from tests.test_route_package import fc, package, pkg_file  # noqa: F401


def test_the_vm_is_32_bit(mpy32):
    out = mpy32("""
        import sys, micropython
        print(sys.maxsize, sys.implementation._machine)
        def product(a, b):
            micropython.heap_lock()
            try:
                return a * b
            finally:
                micropython.heap_unlock()
        print(product(2**14, 2**15))  # 2**29: a small int
        try:
            product(2**15, 2**15)  # 2**30: a big int, on the heap
        except MemoryError:
            print("MemoryError")
        """)
    assert out.split("\n")[:3] == ["2147483647 JS with Emscripten", str(2**29), "MemoryError"]


# nmea
def test_nmea_ends_every_sentence_in_the_state_cpython_does(mpy32):
    test_nmea.test_the_vm_ends_every_sentence_in_the_state_cpython_does(mpy32)


def test_nmea_parse_and_feed_allocate_nothing(mpy32):
    test_nmea.test_parse_and_feed_allocate_nothing_on_the_vm(mpy32)


def test_nmea_reads_the_receivers_corpus_exactly_as_cpython(mpy32, tmp_path):
    test_nmea.test_the_vm_reads_the_receivers_corpus_exactly_as_cpython(mpy32, tmp_path)


def test_nmea_fuzzed_stream_matches_cpython(mpy32, tmp_path):
    test_nmea.test_fuzzed_stream_on_the_vm_matches_cpython_and_never_raises(mpy32, tmp_path)


# scan_code
def test_scan_code_reads_every_code_as_cpython_does(mpy32):
    test_scan_code.test_the_vm_reads_every_code_as_cpython_does(mpy32)


# dock_wire
def test_dock_wire_round_trip_and_decode_allocate_nothing(mpy32):
    test_dock_wire.test_vm_round_trip_and_decode_allocates_nothing(mpy32)


# upload_wire, the device's half (and record, which it encodes); the depot's half never runs on a device
def test_upload_batch_encoded_here_decodes_on_cpython(mpy32):
    test_upload_wire.test_batch_encoded_on_micropython_decodes_on_cpython(mpy32)


def test_upload_ack_vectors_and_device_side_verification(mpy32):
    test_upload_wire.test_ack_vectors_and_device_side_verification(mpy32)


def test_upload_range_declares_the_seqs_the_journal_never_held(mpy32):
    test_upload_wire.test_range_declares_the_seqs_the_journal_never_held(mpy32)


# geofence and route_package, the package an in-memory file
def test_geofence_per_fix_test_allocates_nothing(mpy32, pkg_path):  # noqa: F811
    test_geofence.test_per_fix_test_allocates_nothing_under_heap_lock(mpy32, pkg_path)


def test_geofence_matches_shapely(mpy32, pkg_path):  # noqa: F811
    test_geofence.test_vm_engine_matches_shapely_on_a_few_hundred_points(mpy32, pkg_path)


def test_stop_ids_are_read_without_allocating(mpy32, pkg_path):  # noqa: F811
    test_geofence.test_stop_ids_are_read_into_one_buffer_without_allocating_on_the_vm(mpy32, pkg_path)


def test_routepkg_reads_the_same_package(mpy32, pkg_file, package, fc):  # noqa: F811
    test_route_package.test_the_vm_reads_the_same_package(mpy32, pkg_file, package, fc)


def test_routepkg_refuses_a_corrupt_package_and_keeps_going(mpy32, tmp_path, package):  # noqa: F811
    test_route_package.test_the_vm_refuses_a_corrupt_package_and_keeps_going(mpy32, tmp_path, package)


def test_routepkg_opens_a_big_package_without_loading_it(mpy32, tmp_path):
    # the unix-port test reads the heap inside one call; this port collects only between calls
    res = route_compile.compile_geojson(town.town(seed=1, stops=1000), key=test_route_package.KEY)
    p = tmp_path / "big.pkg"
    p.write_bytes(res.package)
    key = test_route_package.KEY
    out, live = wasm32.run_steps(["from firmware import route_package",
                                  f"pkg = route_package.RoutePackage({str(p)!r}, {key!r})\n"
                                  "print(pkg.stop_count)"])
    assert out.split() == ["1000"]
    assert live[1] - live[0] < len(res.package) // 10  # a few buffers, not the route


# delivery, journal and the whole day's heap
@pytest.mark.slow  # the whole day on both VMs: not in make quick
def test_a_1000_stop_day_writes_the_same_journal_as_on_64_bit_in_less_heap(mpy32):
    h = routeheap.measure(1000)
    assert h["scans_32"] == h["scans_64"] == 1692  # every parcel, delivered inside its fence
    assert h["journal_sha256_32"] == h["journal_sha256_64"]  # record for record
    assert h["state_32"] < h["state_64"] < 16 * 1024  # route, fence engine, delivery state
