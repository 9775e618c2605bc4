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
from firmware import delivery, geofence, ident, journal, nmea, record, routepkg
os.mkdir("/fl/journal")
j = journal.Journal("/fl/journal")
route = routepkg.RoutePackage({str(pkg)!r}, {KEY!r})
g = nmea.NMEA()
flow = delivery.Delivery(route, geofence, ident.parse, g, j, "HH-1", lambda: 1764230400)
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
    print(json.dumps(record.decode(mv).to_dict()))
"""
    out = mpy(script, stdin=json.dumps(steps).encode(), extra_paths=(VM_DIR,))
    return [json.loads(line) for line in out.splitlines()]


def test_a_carriers_scans_record_exactly_what_the_carrier_confirmed(mpy, day, tmp_path):
    fc, pkg = day
    s1, s2, s3, s4 = (fc["features"][i] for i in (0, 1, 2, 3))
    item1, item2, item3 = (s["properties"]["items"][0] for s in (s1, s2, s3))
    not_on_route = town.s10("RR", "99999999", "GB")
    steps = [
        ("fix", at(*town.door(s1))), ("scan", "]C0" + item1),  # Code 128 at the door: recorded at once
        ("fix", at(*east_of(s2, 40))), ("scan", item2),  # 40 m off: asks for an override reason
        ("key", "down"), ("key", "ok"),  # picks the second reason
        ("scan", "RR473124828GB"),  # bad check digit: refused, nothing written
        ("fix", at(*town.door(s4))), ("scan", not_on_route),  # not on the route, in s4's fence
        ("key", "ok"),  # accepts the fence match
        ("fix", at(*east_of(s4, 300))), ("scan", town.s10("RR", "99999998", "GB")),  # nowhere
        ("fix", at(*town.door(s4))), ("scan", item3),  # s3's parcel while standing at s4
        ("key", "back"),  # cancels: nothing written
        ("key", "up"), ("fix", at(*town.door(s3))), ("scan", item3), ("key", "ok"),  # attempt
        ("key", "up"), ("key", "back"), ("key", "ok"),  # back to delivery mode; cancel the last
    ]
    out = run_day(mpy, pkg, tmp_path / "flash.img", steps)
    n = sum(kind != "fix" for kind, _ in steps)
    prompts, records = out[:n], out[n:]
    recorded, ask, refused, invalid, ready = 1, 2, 3, 4, 0
    assert [(p["kind"], p["title"]) for p in prompts] == [
        (recorded, "Delivered"), (ask, "Outside fence"), (ask, "Outside fence"), (recorded, "Delivered"),
        (invalid, "Invalid code"), (ask, "Not on route"), (recorded, "Delivered"),
        (refused, "Not on route"), (ask, "Wrong stop?"), (ready, "Cancelled"), (ready, "Attempt mode"),
        (ask, "Attempt: reason?"), (recorded, "Attempt saved"), (ready, "Delivery mode"),
        (ask, "Cancel last?"), (recorded, "Cancelled #4")]
    assert prompts[0]["verdict"] == 1 and prompts[1]["choices"] == 4 and prompts[2]["choices"] == 4
    assert [(r["seq"], r["outcome"], r["stop_id"], r["match"], r["verdict"], r["flags"], r["reason"],
             r["corrects"]) for r in records] == [
        (1, "delivered", s1["properties"]["stop_id"], "item", "inside", 0, 0, 0),
        (2, "delivered", s2["properties"]["stop_id"], "item", "outside", 1, 41, 0),  # route's override code
        (3, "delivered", s4["properties"]["stop_id"], "fence", "inside", 0, 0, 0),
        (4, "attempted", s3["properties"]["stop_id"], "item", "inside", 0, 1, 0),
        (5, "correction", "", "none", "none", 0, 0, 4),
    ]
    assert records[1]["distance_m"] > 30 and records[0]["distance_m"] == 0
    assert all(r["device_id"] == "HH-1" and r["device_time"] == 1764230400 for r in records)
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
