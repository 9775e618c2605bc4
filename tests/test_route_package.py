"""Route package: what the writer packs the reader serves, on CPython and on the real VM; anything
corrupt, truncated, forged or signed for another device is refused with a clear message."""

from __future__ import annotations

import binascii
import hashlib
import struct
from pathlib import Path

import pytest

from firmware import route_package
from host_tools import route_compile, route_package_writer
from sim import town

KEY = bytes(range(32))
OTHER_KEY = bytes(range(32, 64))


@pytest.fixture(scope="module")
def fc() -> dict:
    return town.town(seed=5, stops=60, area="south", route_id="SOUTH-5", service_date="2026-11-27")


@pytest.fixture(scope="module")
def package(fc) -> bytes:
    return route_compile.compile_geojson(fc, key=KEY).package


@pytest.fixture
def pkg_file(tmp_path, package) -> Path:
    p = tmp_path / "route.pkg"
    p.write_bytes(package)
    return p


def sections(data: bytes) -> dict[str, tuple[int, int]]:
    n = data[5]
    out = {}
    for k in range(n):
        tag, off, ln, _ = struct.unpack_from("<4sIII", data, 64 + 16 * k)
        out[tag.decode()] = (off, ln)
    return out


def test_header_stops_items_and_reasons_read_back(pkg_file, package, fc):
    with route_package.RoutePackage(str(pkg_file), KEY) as pkg:
        assert pkg.route_id == "SOUTH-5"
        assert pkg.service_date == 20261127
        assert pkg.stop_count == 60
        assert pkg.package_hash == hashlib.sha256(package).digest()[:8]
        assert abs(pkg.origin_lat_e6 - round(town.TOWN_LAT * 1e6)) < 20000
        for i, feat in enumerate(fc["features"]):
            s = pkg.stop(i)
            props = feat["properties"]
            assert (s.stop_id, s.seq, s.address, s.items, s.item_count) == (
                props["stop_id"], props["seq"], props["address"], props["items"], len(props["items"]))
            for item in props["items"]:
                assert pkg.find_item(item) == i
        assert pkg.find_item("RR000000000NL") == -1
        assert pkg.find_item("") == -1
        codes = dict(pkg.reason_codes)
        assert codes[1] == "Addressee absent" and codes[21] == "Left with neighbour"
        assert pkg.reason_kinds[22] == route_package.K_ACTION
        assert pkg.reason_kinds[40] == route_package.K_OVERRIDE
        with pytest.raises(IndexError):
            pkg.stop(60)


def test_the_vm_reads_the_same_package(mpy, pkg_file, package, fc):
    items = [f["properties"]["items"][0] for f in fc["features"][::7]]
    out = mpy(
        f"""
        import binascii
        from firmware import route_package
        pkg = route_package.RoutePackage({str(pkg_file)!r}, {KEY!r})
        print(pkg.route_id, pkg.service_date, pkg.stop_count, binascii.hexlify(pkg.package_hash).decode())
        s = pkg.stop(59)
        print(s.stop_id, s.seq, s.address, ",".join(s.items))
        print(" ".join(str(pkg.find_item(i)) for i in {items!r}), pkg.find_item("nope"))
        print(pkg.reason_codes[0])
        pkg.close()
        """
    ).splitlines()
    last = fc["features"][59]["properties"]
    assert out[0] == f"SOUTH-5 20261127 60 {hashlib.sha256(package).hexdigest()[:16]}"
    assert out[1] == f"{last['stop_id']} {last['seq']} {last['address']} {','.join(last['items'])}"
    assert out[2] == " ".join(str(i) for i in range(0, 60, 7)) + " -1"
    assert out[3] == "(1, 'Addressee absent')"


def refusal(path: Path, key: bytes = KEY) -> str:
    with pytest.raises(route_package.PackageError) as exc:
        route_package.RoutePackage(str(path), key)
    assert isinstance(exc.value, ValueError)
    return str(exc.value)


def test_a_package_for_another_key_is_refused(pkg_file):
    assert "signature invalid" in refusal(pkg_file, OTHER_KEY)


def test_resigning_for_another_device_key(tmp_path, package):
    p = tmp_path / "other.pkg"
    p.write_bytes(route_package_writer.resign(package, OTHER_KEY))
    assert route_package.RoutePackage(str(p), OTHER_KEY).stop_count == 60
    assert "signature invalid" in refusal(p, KEY)
    assert route_package_writer.resign(route_package_writer.resign(package, OTHER_KEY), KEY) == package


def test_a_flipped_byte_in_any_section_names_the_section(tmp_path, package):
    for name, (off, ln) in sections(package).items():
        bad = bytearray(package)
        bad[off + ln // 2] ^= 0x40
        p = tmp_path / f"bad-{name}.pkg"
        p.write_bytes(bad)
        assert refusal(p) == f"route package section {name} CRC mismatch (corrupt)"
    bad = bytearray(package)
    bad[20] ^= 1  # inside the route id
    p = tmp_path / "bad-head.pkg"
    p.write_bytes(bad)
    assert refusal(p) == "route package header CRC mismatch (corrupt)"


def test_a_forged_package_with_good_crcs_fails_the_signature(tmp_path, package):
    # rewrite an address, fix the section CRC and the header CRC: only the HMAC can tell
    bad = bytearray(package)
    off, ln = sections(package)["RECS"]
    at = bytes(bad).index(b"Street", off)
    bad[at: at + 6] = b"Avenue"
    k = list(sections(package)).index("RECS")
    struct.pack_into("<I", bad, 64 + 16 * k + 12, binascii.crc32(bad[off: off + ln]) & 0xFFFFFFFF)
    table = bytes(bad[64: 64 + 16 * bad[5]])
    struct.pack_into("<I", bad, 60, binascii.crc32(table, binascii.crc32(bytes(bad[:60]))) & 0xFFFFFFFF)
    p = tmp_path / "forged.pkg"
    p.write_bytes(bad)
    assert "signature invalid" in refusal(p)


def test_truncated_packages_are_refused(tmp_path, package):
    for cut in (0, 10, 63, 64 + 40, len(package) // 2, len(package) - 33, len(package) - 1):
        p = tmp_path / f"cut{cut}.pkg"
        p.write_bytes(package[:cut])
        msg = refusal(p)
        assert "truncated" in msg or "signature" in msg, (cut, msg)
    assert "truncated" in refusal(tmp_path / "cut0.pkg")


def test_not_a_package_and_wrong_version(tmp_path, package):
    p = tmp_path / "junk.pkg"
    p.write_bytes(b"PK\x03\x04" + bytes(200))
    assert refusal(p) == "not a route package (bad magic)"
    p.write_bytes(package[:4] + b"\x07" + package[5:])
    assert refusal(p) == "route package version 7 not supported (want 1)"
    assert refusal(tmp_path / "missing.pkg").endswith("cannot be opened")


def test_the_vm_refuses_a_corrupt_package_and_keeps_going(mpy, tmp_path, package):
    bad = bytearray(package)
    off, ln = sections(package)["GEOM"]
    bad[off + 3] ^= 0xFF
    p = tmp_path / "bad.pkg"
    p.write_bytes(bad)
    good = tmp_path / "good.pkg"
    good.write_bytes(package)
    out = mpy(
        f"""
        from firmware import route_package
        active = route_package.RoutePackage({str(good)!r}, {KEY!r})
        for path, key in (({str(p)!r}, {KEY!r}), ({str(good)!r}, {OTHER_KEY!r})):
            try:
                route_package.RoutePackage(path, key)
            except route_package.PackageError as e:
                print("refused:", e)
        print("active", active.route_id, active.stop_count)
        """
    ).splitlines()
    assert out == ["refused: route package section GEOM CRC mismatch (corrupt)",
                   "refused: route package signature invalid: tampered, or signed for another device",
                   "active SOUTH-5 60"]


def test_opening_a_big_package_does_not_load_it_into_ram(mpy, tmp_path):
    res = route_compile.compile_geojson(town.town(seed=1, stops=1000), key=KEY)
    p = tmp_path / "big.pkg"
    p.write_bytes(res.package)
    out = mpy(
        f"""
        import gc
        from firmware import route_package
        gc.collect()
        before = gc.mem_alloc()
        pkg = route_package.RoutePackage({str(p)!r}, {KEY!r})
        gc.collect()
        print(gc.mem_alloc() - before, pkg.stop_count)
        """,
        heap="96K",
    ).split()
    assert int(out[1]) == 1000
    assert int(out[0]) < len(res.package) // 10  # a few buffers, not the route


def test_random_damage_is_always_a_package_error(tmp_path, package):
    import random

    rng = random.Random(99)
    p = tmp_path / "fuzz.pkg"
    for case in range(150):
        bad = bytearray(package)
        if case % 3 == 0:
            bad = bad[: rng.randrange(len(bad))]
        else:
            for _ in range(rng.randint(1, 4)):
                bad[rng.randrange(len(bad))] ^= 1 << rng.randrange(8)
        p.write_bytes(bad)
        refusal(p)  # PackageError with a message, never anything else


# ================================================================ structure (issue 13.11)
# A package re-signed with the device key but built wrong used to open, then geofence.nearest
# raised IndexError and stop()/find_item ValueError; max_fence_words=65535 a MemoryError outside
# PackageError. Each is now refused at open with a PackageError.

def reseal(package: bytes, patch, key: bytes = KEY) -> bytes:
    """`patch(bytearray, sections)` edits the body; section CRCs, header CRC and HMAC are redone,
    as someone holding the key (or a buggy builder) would produce them."""
    bad = bytearray(package[:-32])
    secs = sections(package)
    patch(bad, secs)
    for k, (off, ln) in enumerate(secs.values()):
        struct.pack_into("<I", bad, 64 + 16 * k + 12, binascii.crc32(bad[off: off + ln]) & 0xFFFFFFFF)
    table = bytes(bad[64: 64 + 16 * bad[5]])
    struct.pack_into("<I", bad, 60, binascii.crc32(table, binascii.crc32(bytes(bad[:60]))) & 0xFFFFFFFF)
    return route_package_writer.sign(bytes(bad), key)


def _entry(i: int, field: int, value: int):
    def patch(b: bytearray, secs) -> None:
        struct.pack_into("<i", b, secs["STOP"][0] + 28 * i + 4 * field, value)
    return patch


def _geom_word(i: int, word: int, value: int):
    def patch(b: bytearray, secs) -> None:
        off = struct.unpack_from("<i", b, secs["STOP"][0] + 28 * i + 16)[0]
        struct.pack_into("<h", b, off + 2 * word, value)
    return patch


def _item_stop(value: int):
    def patch(b: bytearray, secs) -> None:
        struct.pack_into("<H", b, secs["ITEM"][0] + 4, value)
    return patch


def _grid_entry(value: int):
    def patch(b: bytearray, secs) -> None:
        off, ln = secs["GRID"]
        struct.pack_into("<H", b, off + ln - 2, value)  # the last stop index of the last list
    return patch


def _header_words(value: int):
    def patch(b: bytearray, secs) -> None:
        struct.pack_into("<H", b, 10, value)
    return patch


def _record_text_len(i: int):
    def patch(b: bytearray, secs) -> None:
        off = struct.unpack_from("<i", b, secs["STOP"][0] + 28 * i + 24)[0]
        b[off + 4] = 250  # the stop id's length byte runs past the section
    return patch


STRUCTURE_CASES = {
    "fence past GEOM": (_entry(3, 4, 10**6), "route package stop 3 entry out of bounds"),
    "fence words past GEOM": (_entry(59, 5, 3000), "route package stop 59 entry out of bounds"),
    "record past RECS": (_entry(7, 6, 10**6), "route package stop 7 entry out of bounds"),
    "box upside down": (_entry(2, 2, -10**6), "route package stop 2 entry out of bounds"),
    "ring count": (_geom_word(5, 0, 300), "route package stop 5 fence corrupt"),
    "ring length": (_geom_word(5, 1, 30000), "route package stop 5 fence corrupt"),
    "stop text length": (_record_text_len(59), "route package stop 59 record out of bounds"),
    "item names no stop": (_item_stop(60), "route package item index corrupt"),
    "grid names no stop": (_grid_entry(4000), "route package grid names stop 4000 of 60"),
    "max_fence_words 65535": (_header_words(65535), "route package fence size 65535 out of range"),
    "max_fence_words 0": (_header_words(0), "route package fence size 0 out of range"),
}


@pytest.mark.parametrize("case", list(STRUCTURE_CASES))
def test_a_resigned_package_with_bad_structure_is_refused_at_open(tmp_path, package, case):
    patch, message = STRUCTURE_CASES[case]
    p = tmp_path / "bad.pkg"
    p.write_bytes(reseal(package, patch))
    assert refusal(p) == message


def test_the_vm_refuses_each_bad_structure_at_open_and_the_good_route_stays(mpy, tmp_path, package):
    paths = []
    for k, (patch, _) in enumerate(STRUCTURE_CASES.values()):
        p = tmp_path / f"bad{k}.pkg"
        p.write_bytes(reseal(package, patch))
        paths.append(str(p))
    good = tmp_path / "good.pkg"
    good.write_bytes(reseal(package, lambda b, s: None))  # the helper itself breaks nothing
    out = mpy(f"""
        from firmware import route_package, geofence
        active = route_package.RoutePackage({str(good)!r}, {KEY!r})
        for path in {paths!r}:
            try:
                route_package.RoutePackage(path, {KEY!r})
                print("OPENED", path)
            except route_package.PackageError as e:
                print(e)
        print("active", active.route_id, geofence.nearest(active, 0, 0) >= 0, active.stop(59).stop_id)
        """, heap="128K").splitlines()
    assert out == [m for _, m in STRUCTURE_CASES.values()] + ["active SOUTH-5 True S0060"]
