"""The demo's scenario, shortened: a carrier's day on a virtual handheld, end to end (flash with
mpremote, route over the dock, scans, overrides, an attempt, a wrong-stop and an invalid scan, a
coverage gap, a power cut mid-scan, cellular uploads, night sync, report). Every record the
carrier heard confirmed is in the store exactly once."""

import csv
import io
import json
import time
from pathlib import Path

import pytest

from host_tools import report, routes
from host_tools.store import Store
from sim import day

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_short_day_ends_with_every_confirmed_record_stored_once(tmp_path):
    scenario = day.Scenario.load(ROOT / "examples" / "scenarios" / "short.toml")
    summary = day.run(scenario, tmp_path, progress=False)
    assert summary["failures"] == []
    d = summary["devices"]["HH-0101"]
    # 14 stops: 20 parcels delivered or attempted, one invalid code refused, one wrong-stop warning
    assert (d["confirmed"], d["stored"], d["attempts"], d["invalid_refused"], d["wrong_stop_warned"]) \
        == (20, 20, 1, 1, 1)
    assert d["overrides"] == 1  # 35 m off at one stop: its one parcel asks for a reason, no other does
    html = Path(summary["reports"]["NORTH-7"]).read_text()
    assert html.count("data-stop-id") >= 14
    png = Path(summary["screenshots"]["HH-0101"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


OVERRIDE_LABELS = ["GNSS inaccurate here", "Entrance away from building", "Met addressee elsewhere",
                   "Fence wrong on map"]


def test_each_override_reason_picked_on_the_device_is_named_in_every_report_format(tmp_path):
    """The carrier stands off the door at four stops and picks each override reason in turn; the
    reports name exactly that reason for that stop's deliveries (the device and the route package
    share one reason table). The same day's GNSS times advance with the day (the receiver's clock is
    the world's) and no fix is flagged stale."""
    scenario = day.Scenario.load(ROOT / "examples" / "scenarios" / "short.toml")
    plan = scenario.carriers[0]
    plan.stops, plan.override_at, plan.override_reason = 5, [0, 1, 2, 3], {0: 1, 1: 2, 2: 3, 3: 4}
    plan.attempt_at, plan.wrong_stop_at, plan.invalid_at, plan.coverage_gap = {4: 2}, [], [], []
    plan.power_cut_at = None
    t0 = time.time()
    summary = day.run(scenario, tmp_path, progress=False)
    t1 = time.time()
    assert summary["failures"] == []
    store = Store(tmp_path / "depot.sqlite3")
    rep = report.build(routes.find(str(tmp_path / "depot.sqlite3"), "NORTH-7"), store)
    stops = [sr.stop.stop_id for sr in rep.stops[:5]]
    want = {sid: OVERRIDE_LABELS[i] for i, sid in enumerate(stops[:4])}

    text = report.render(rep, "text")
    rows = [r for r in csv.DictReader(io.StringIO(report.render(rep, "csv"))) if r["kind"] == "scan"]
    feats = [f["properties"] for f in json.loads(report.render(rep, "geojson"))["features"]
             if f["properties"]["kind"] == "scan"]
    page = report.render(rep, "html")
    for k, (sid, label) in enumerate(want.items()):
        assert {r["reason"] for r in rows if r["stop_id"] == sid} == {label}, sid
        assert {f["reason"] for f in feats if f["stop_id"] == sid} == {label}, sid
        stop_block = text.split(f" {sid} ", 1)[1].split(f" {stops[k + 1]} ", 1)[0]
        assert f"reason: {label}" in stop_block, sid
        assert f"reason: {label}" in page.split(f'data-stop="{sid}"', 1)[1].split("</tr>", 1)[0], sid
    attempt = [r for r in rows if r["stop_id"] == stops[4]]
    assert [r["reason"] for r in attempt] == ["Door locked / no access"]

    recs = sorted(store.records("HH-0101"), key=lambda r: r.seq)
    times = [r.gnss_time for r in recs]
    assert all(t0 - 1 <= t <= t1 for t in times), "GNSS times are not the day's"
    assert times == sorted(times)
    # the fix's time and the device's clock agree with the fix's age (to the clocks' whole seconds)
    assert all(abs(r.device_time - r.gnss_time - r.fix_age_s) <= 1 for r in recs)
    assert rep.stale == [] and "scans with a stale fix (older than 10 s): 0" in text
