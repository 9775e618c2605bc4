"""A carrier's scans, on the real VM: the delivery flow over a real route package, the real NMEA
parser, identifier parser and journal on littlefs. Each case states what the carrier sees and what
is (or is not) written to flash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shapely.geometry import shape

from host_tools import route_compile
from sim import gnss, town

KEY = bytes(range(7, 39))
HERE = Path(__file__).resolve().parent
VM_DIR = HERE.parent / "sim" / "vm"


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    fc = town.town(seed=5, stops=30, area="north")
    pkg = tmp_path_factory.mktemp("route") / "r.pkg"
    pkg.write_bytes(route_compile.compile_geojson(fc, key=KEY).package)
    return fc, pkg


def at(lat: float, lon: float, hdop: float = 0.9) -> list[str]:
    """One second of receiver output (RMC, GGA, GSA, GSV) for a carrier standing at lat, lon."""
    walk = gnss.Walk([(lat, lon)], seed=1, duration_s=1,
                     conditions=gnss.Conditions(noise_m=0.0, hdop=hdop))
    return next(iter(walk))[1]


def east_of(feature, metres: float) -> tuple[float, float]:
    b = shape(feature["geometry"]).bounds  # lon/lat box
    lat = (b[1] + b[3]) / 2
    return lat, b[2] + metres / 111_320 / 0.62  # cos(52 deg) ~ 0.62: far enough either way


def run_day(mpy, pkg: Path, image: Path, steps: list[tuple]) -> list[dict]:
    """Play (kind, arg) steps on the VM: ("fix", lines), ("scan", code), ("key", name).
    Returns one dict per step: the prompt after it, plus the journal at the end."""
    script = f"""
import vfs, os, json, sys
from flashdev import FlashDevice
dev = FlashDevice(4096, 64, {str(image)!r})  # image file: the flash stays out of the heap
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/fl")
import time
from firmware import delivery, geofence, journal, nmea, record, route_package, scan_code
from host_tools.record_dict import as_dict  # the host's labels (MicroPython runs it too)
os.mkdir("/fl/journal")
j = journal.Journal("/fl/journal")
route = route_package.RoutePackage({str(pkg)!r}, {KEY!r})
g = nmea.NMEA()
flow = delivery.Delivery(route, geofence, scan_code.parse, g, j, "HH-1", lambda: 1764230400)
for kind, arg in json.loads(sys.stdin.read()):
    if kind == "fix":
        for line in arg:
            g.parse(line.encode())
        continue
    p = flow.scan(arg.encode()) if kind == "scan" else flow.key(arg)
    print(json.dumps({{"kind": p.kind, "title": p.title, "detail": p.detail, "seq": p.seq,
                      "verdict": p.verdict, "choices": len(p.choices)}}))
buf = bytearray(record.MAX_LEN + 16)
for seq, mv in j.records(1, buf):
    print(json.dumps(as_dict(record.decode(mv))))
"""
    out = mpy(script, stdin=json.dumps(steps).encode(), extra_paths=(VM_DIR,))
    return [json.loads(line) for line in out.splitlines()]


READY, RECORDED, ASK, REFUSED, INVALID = 0, 1, 2, 3, 4  # the prompt kinds (delivery.P_*)
CASES = {}  # name -> case(fc): (steps, prompts (kind, title), records (seq, outcome, stop, match,
#            verdict, flags, reason, corrects)); each case runs on a fresh flash


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def item(stop) -> str:
    return stop["properties"]["items"][0]


def sid(stop) -> str:
    return stop["properties"]["stop_id"]


@case
def code_128_at_the_door_is_recorded_at_once(fc):
    s1 = fc["features"][0]
    return ([("fix", at(*town.door(s1))), ("scan", "]C0" + item(s1))],
            [(RECORDED, "Delivered")],
            [(1, "delivered", sid(s1), "item", "inside", 0, 0, 0)])


@case
def forty_metres_off_asks_for_a_reason_and_records_the_one_picked(fc):
    s2 = fc["features"][1]
    return ([("fix", at(*east_of(s2, 40))), ("scan", item(s2)), ("key", "down"), ("key", "ok")],
            [(ASK, "Outside fence"), (ASK, "Outside fence"), (RECORDED, "Delivered")],
            [(1, "delivered", sid(s2), "item", "outside", 1, 41, 0)])  # 41: the route's second reason


@case
def a_bad_check_digit_is_refused_and_nothing_written(fc):
    s1 = fc["features"][0]
    return ([("fix", at(*town.door(s1))), ("scan", "RR473124828GB")],
            [(INVALID, "Invalid code")],
            [])


@case
def a_parcel_not_on_the_route_is_offered_the_fence_it_stands_in(fc):
    s4 = fc["features"][3]
    return ([("fix", at(*town.door(s4))), ("scan", town.s10("RR", "99999999", "GB")), ("key", "ok")],
            [(ASK, "Not on route"), (RECORDED, "Delivered")],
            [(1, "delivered", sid(s4), "fence", "inside", 0, 0, 0)])


@case
def a_parcel_not_on_the_route_in_no_fence_is_refused(fc):
    s4 = fc["features"][3]
    return ([("fix", at(*east_of(s4, 300))), ("scan", town.s10("RR", "99999998", "GB"))],
            [(REFUSED, "Not on route")],
            [])


@case
def another_stops_parcel_asks_and_back_cancels_it(fc):
    s3, s4 = fc["features"][2], fc["features"][3]
    return ([("fix", at(*town.door(s4))), ("scan", item(s3)), ("key", "back")],
            [(ASK, "Wrong stop?"), (READY, "Cancelled")],
            [])


@case
def attempt_mode_records_the_reason_picked(fc):
    s3 = fc["features"][2]
    return ([("key", "up"), ("fix", at(*town.door(s3))), ("scan", item(s3)), ("key", "ok")],
            [(READY, "Attempt mode"), (ASK, "Attempt: reason?"), (RECORDED, "Attempt saved")],
            [(1, "attempted", sid(s3), "item", "inside", 0, 1, 0)])


@case
def cancelling_the_last_record_writes_a_correction_naming_it(fc):
    s1 = fc["features"][0]
    return ([("fix", at(*town.door(s1))), ("scan", item(s1)), ("key", "up"), ("key", "up"),
             ("key", "back"), ("key", "ok")],
            [(RECORDED, "Delivered"), (READY, "Attempt mode"), (READY, "Delivery mode"),
             (ASK, "Cancel last?"), (RECORDED, "Cancelled #1")],
            [(1, "delivered", sid(s1), "item", "inside", 0, 0, 0),
             (2, "correction", "", "none", "none", 0, 0, 1)])


@pytest.mark.parametrize("name", list(CASES))
def test_a_carriers_scan(mpy, day, tmp_path, name):
    fc, pkg = day
    steps, want_prompts, want_records = CASES[name](fc)
    out = run_day(mpy, pkg, tmp_path / "flash.img", steps)
    n = sum(kind != "fix" for kind, _ in steps)
    prompts, records = out[:n], out[n:]
    assert [(p["kind"], p["title"]) for p in prompts] == want_prompts
    assert [(r["seq"], r["outcome"], r["stop_id"], r["match"], r["verdict"], r["flags"], r["reason"],
             r["corrects"]) for r in records] == want_records
    assert all(r["device_id"] == "HH-1" and r["device_time"] == 1764230400 for r in records)


def test_a_record_carries_its_fix_and_an_override_its_distance(mpy, day, tmp_path):
    fc, pkg = day
    s1, s2 = fc["features"][0], fc["features"][1]
    steps = [("fix", at(*town.door(s1))), ("scan", item(s1)),
             ("fix", at(*east_of(s2, 40))), ("scan", item(s2)), ("key", "ok")]
    out = run_day(mpy, pkg, tmp_path / "flash.img", steps)
    prompts, records = out[:3], out[3:]
    assert prompts[0]["verdict"] == 1 and prompts[1]["choices"] == 4  # inside; four override reasons
    assert records[0]["distance_m"] == 0 and records[1]["distance_m"] > 30
    assert records[0]["accuracy_m"] > 0 and records[0]["fix_age_s"] is not None


def test_flats_sharing_their_buildings_fence_are_delivered_without_a_question(mpy, tmp_path):
    fc = town.town(seed=5, stops=6, area="north")
    flat1, flat2, other = fc["features"][0], fc["features"][1], fc["features"][2]
    flat2["geometry"] = flat1["geometry"]  # two stops, one building (as depot route build makes them)
    pkg = tmp_path / "flats.pkg"
    pkg.write_bytes(route_compile.compile_geojson(fc, key=KEY).package)
    door = at(*town.door(flat1))
    steps = [("fix", door), ("scan", flat1["properties"]["items"][0]),
             ("scan", flat2["properties"]["items"][0]),
             ("scan", other["properties"]["items"][0]), ("key", "back")]  # a third stop's parcel
    out = run_day(mpy, pkg, tmp_path / "flash.img", steps)
    prompts, records = out[:4], out[4:]
    assert [(p["kind"], p["title"]) for p in prompts] == [
        (1, "Delivered"), (1, "Delivered"), (2, "Wrong stop?"), (0, "Cancelled")]
    assert [(r["stop_id"], r["match"], r["verdict"], r["flags"]) for r in records] == [
        (flat1["properties"]["stop_id"], "item", "inside", 0),
        (flat2["properties"]["stop_id"], "item", "inside", 0)]
