"""The application lives within the board's heap: a 1,000-stop route and a full day of scans run
in `main.App` on the real VM at -X heapsize=256K, with every scan recorded."""

import pytest

from sim import appday

pytestmark = pytest.mark.slow


def test_a_1000_stop_day_runs_in_the_256k_heap_and_records_every_scan():
    d = appday.run(stops=1000, heap="256K")
    assert (d["stops"], d["route"]) == (1000, "NORTH-11")
    assert d["records"] == d["scans"] == 1692  # every parcel of every stop: delivered, inside
    assert d["peak_live_heap"] < d["heap_total"]
    assert d["peak_live_heap"] - d["heap_before_app"] < 64 * 1024  # the app's own data
