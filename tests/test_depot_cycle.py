"""The depot's cycle against a virtual handheld with no cellular: enrol, flash with mpremote over
the console pty, assign and push a route over the dock, deliver, then sync at night over a dock
link that is first unplugged mid-sync and then corrupts 1% of its bytes. Every delivery the
carrier heard confirmed ends up in the store exactly once, and the device holds nothing unsynced."""

import json
import threading
import time
from pathlib import Path

import pytest

from host_tools import flash, route_assign, route_compile
from host_tools.record_dict import OUTCOMES
from host_tools.store import open_store
from host_tools.sync import sync_device
from sim import day
from sim.client import Device

ROOT = Path(__file__).resolve().parent.parent
ROUTE = ROOT / "examples" / "routes" / "south.geojson"
DEV = "HH-0201"

pytestmark = pytest.mark.slow


def test_night_sync_over_an_unplugged_then_noisy_dock_stores_every_delivery_once(tmp_path, store_url):
    store = open_store(store_url)
    store.enrol(DEV)
    pkg = tmp_path / "south.pkg"
    route_compile.write_package(route_compile.compile_file(ROUTE).package, pkg)
    route_assign.assign(store, pkg, DEV)
    with Device.start(tmp_path / "hh.img", workdir=tmp_path / "dev", seed=5) as dev:
        res = flash.flash_one(dev.console, DEV, flash.build("sim"), store.key(DEV))  # no server: dock only
        assert (res.status, res.message) == ("ok", "")
        dev.wait_ready()
        morning = sync_device(dev.dock, store)
        assert (morning.ok, morning.route_pushed, morning.received) == (True, "SOUTH-7", 0)

        plan = day.Carrier(DEV, str(ROUTE), stops=24, override_at=[3], attempt_at={5: 2})
        out = day.Outcome(DEV)
        day.Walker(dev, plan, json.loads(ROUTE.read_text()), out).run()
        assert out.errors == []
        confirmed = len(out.expected)
        assert confirmed >= 30

        start = dev.status()["dock"]["to_host"]

        def pull_the_cable() -> None:  # once the device has sent its first few hundred bytes
            while dev.status()["dock"]["to_host"] < start + 400:
                time.sleep(0.005)
            dev.dock_fault(unplug=True)

        threading.Thread(target=pull_the_cable, daemon=True).start()
        cut = sync_device(dev.dock, store, retries=2, rto=0.3)
        dev.dock_fault(unplug=False, flip=0.01)  # back in, on a link that corrupts 1% of bytes
        night = sync_device(dev.dock, store)
        assert not cut.ok or cut.received < confirmed or cut.acked_seq < confirmed
        assert night.ok, night.error
        assert night.pending_after == 0

    records = store.records(DEV)
    got = sorted((OUTCOMES[r.outcome], r.stop_id, r.item_id) for r in records)
    assert got == sorted(out.expected)  # each confirmed record once, nothing else
    assert len({r.seq for r in records}) == len(records) == confirmed
    assert store.gaps(DEV) == [] and store.ack_seq(DEV) == confirmed
