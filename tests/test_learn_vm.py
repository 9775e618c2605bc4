"""A learned route on a virtual handheld: three days of deliveries at a rear entrance and at the
wrong house, `depot fences learn --apply`, `depot route compile`, the package pushed over the dock;
the real firmware on the MicroPython VM then judges scans at those doors inside, with no change on
the device. (`python -m sim days` judges its many days with the same firmware modules on CPython.)"""

from __future__ import annotations

import json

import pytest

from firmware import route_package
from host_tools import cli, flash, route_assign
from host_tools.store import Store
from host_tools.sync import sync_device
from sim import day, town
from sim.client import Device
from tests.test_learn import FRAME, History, footprint_fc, route_fc

pytestmark = pytest.mark.slow
DEV = "HH-0701"
REAR_DOOR, DOOR_OF_C = (5.0, -6.0), (5.0, 40.5)  # S1 delivers at its back; S2's parcels go to house C


def latlon(x: float, y: float) -> tuple[float, float]:
    lon, lat = FRAME.lonlat(x, y)
    return lat, lon


def test_a_learned_route_is_compiled_loaded_and_judged_inside_on_a_virtual_handheld(tmp_path):
    fc = route_fc(("S1", "way/1", None), ("S2", "way/2", None), ("S3", "way/3", None))
    items = {f["properties"]["stop_id"]: town.s10("RR", f"0070000{n}") for n, f in enumerate(fc["features"])}
    for f in fc["features"]:
        f["properties"]["items"] = [items[f["properties"]["stop_id"]]]
    (tmp_path / "route.geojson").write_text(json.dumps(fc))
    (tmp_path / "buildings.geojson").write_text(json.dumps(footprint_fc()))
    store = Store(tmp_path / "depot.sqlite3")
    store.enrol("HH-1")  # the handheld that made the history
    h = History()
    for d in (2, 3, 4):
        h.deliver("S1", *REAR_DOOR, day=d, n=2, override=True, reason=41)
        h.deliver("S2", *DOOR_OF_C, day=d, n=2, override=True, reason=43)
    assert store.ingest("HH-1", [r.encode() for r in h.records], "dock").stored == 12
    store.close()
    learned, pkg = tmp_path / "learned.geojson", tmp_path / "learned.pkg"
    assert cli.main(["--store", str(tmp_path / "depot.sqlite3"), "fences", "learn", "--route", "TEST-1",
                     "--from", str(tmp_path / "route.geojson"), "--out", str(learned), "--apply",
                     "--footprints", str(tmp_path / "buildings.geojson")]) == 0
    assert cli.main(["route", "compile", str(learned), "--out", str(pkg), "--date", "2026-11-30"]) == 0
    with route_package.RoutePackage(str(pkg), bytes(32)) as p:
        assert [p.stop(i).stop_id for i in range(p.stop_count)] == ["S1", "S2", "S3"]

    store = Store(tmp_path / "depot.sqlite3")
    store.enrol(DEV)
    route_assign.assign(store, pkg, DEV)
    with Device.start(tmp_path / "hh.img", workdir=tmp_path / "dev", seed=7) as dev:
        res = flash.flash_one(dev.console, DEV, flash.build("sim"), store.key(DEV))
        assert (res.status, res.message) == ("ok", "")
        dev.wait_ready()
        morning = sync_device(dev.dock, store)
        assert (morning.ok, morning.route_pushed) == (True, "TEST-1")
        plan = day.Carrier(DEV, str(learned))
        walker = day.Walker(dev, plan, json.loads(learned.read_text()), day.Outcome(DEV))
        walker.stand(*latlon(*REAR_DOOR))
        assert walker.scan(items["S1"]) == "ok"  # inside the extended fence: no question asked
        walker.stand(*latlon(*DOOR_OF_C))
        assert walker.scan(items["S2"]) == "ok"  # inside the fence moved to house C
        night = sync_device(dev.dock, store)
        assert night.ok, night.error
    got = [(r.stop_id, r.verdict, r.flags) for r in store.records(DEV)]
    assert got == [("S1", 1, 0), ("S2", 1, 0)]  # delivered, verdict inside, no override
