"""`depot report`: per-stop outcomes, match rates and reconciliation of a small route, in every format,
and the html map as headless Chromium renders it.

The day behind the figures (route R-TEST, stops S1..S4):
  H1 #1  A1 delivered at S1, inside            H1 #2  A2 delivered at S1, outside (override) 12.5 m
  H1 #3  B1 attempted at S2 (addressee absent; notice card left)
  H1 #4  C1 delivered at S2, inside, but expected at S3
  H1 #5  X9 (not on the route) matched by S3's fence     (H1 #6 never reached the store: a gap)
  H1 #7  C2 delivered at S3, unsure (override)
  H2 #1  D1 delivered at S4, inside            H2 #2  D2 delivered at S4 ... H2 #3 corrects #2
So: 6 deliveries (3 inside, 1 override, 1 unsure, 1 by fence), 1 attempt; D2 missing; C1 wrong stop.
The route's items are S10 ids the device can read: A1 = RR000010113NL, A2 = RR000010127NL,
B1 = RR000020115NL, C1 = RR000030118NL, C2 = RR000030121NL, D1 = RR000040115NL, D2 = RR000040129NL.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware import record as rec
from host_tools import cli, report, route_compile, routes
from host_tools.store import Store

CHROMIUM = "/usr/bin/chromium"
T0 = 1_780_000_000


def _square(lon: float, lat: float, d: float = 0.0002) -> list[list[float]]:
    return [[lon, lat], [lon + d, lat], [lon + d, lat + d * 0.7], [lon, lat + d * 0.7], [lon, lat]]


ROUTE = {
    "type": "FeatureCollection", "route_id": "R-TEST", "service_date": "2026-11-27",
    "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(5.1200, 52.0900)]},
         "properties": {"stop_id": "S1", "seq": 1, "address": "1 Canal St",
                        "items": ["RR000010113NL", "RR000010127NL"]}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [_square(5.1206, 52.0900, 0.0001)], [_square(5.1208, 52.0900, 0.0001)]]},
         "properties": {"stop_id": "S2", "seq": 2, "address": "3 Canal St", "items": ["RR000020115NL"]}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            _square(5.1212, 52.0900, 0.0003), _square(5.1213, 52.0900 + 0.00005, 0.0001)[::-1]]},
         "properties": {"stop_id": "S3", "seq": 3, "address": "5 Canal St (courtyard)",
                        "items": ["RR000030118NL", "RR000030121NL"]}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.1222, 52.0902]},
         "properties": {"stop_id": "S4", "seq": 4, "address": "7 Canal St",
                        "items": ["RR000040115NL", "RR000040129NL"], "radius_m": 8}},
    ],
}


def _rec(dev: str, seq: int, stop: str, item: str, outcome: int = rec.DELIVERED, verdict: int = rec.V_INSIDE,
         match: int = rec.M_ITEM, flags: int = 0, dist_dm: int = 0, reason: int = 0, action: int = 0,
         corrects: int = 0, lon: float = 5.1201, lat: float = 52.09005) -> bytes:
    return rec.Record(seq=seq, outcome=outcome, device_id=dev, route_id="R-TEST", stop_id=stop, item_id=item,
                      verdict=verdict, match=match, flags=flags, distance_dm=dist_dm, reason=reason,
                      action=action, corrects=corrects, device_time=T0 + 60 * seq, gnss_time=T0 + 60 * seq,
                      lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6), accuracy_dm=40, fix_age_s=1).encode()


@pytest.fixture()
def day(tmp_path: Path) -> tuple[Path, routes.Route]:
    """The store of the day above, and the route as the report finds it: the compiled package."""
    src = tmp_path / "R-TEST.pkg"
    route_compile.write_package(route_compile.compile_geojson(ROUTE).package, src)
    store_path = tmp_path / "depot.sqlite3"
    st = Store(store_path)
    for dev in ("H1", "H2"):
        st.enrol(dev)
    h1 = [
        _rec("H1", 1, "S1", "RR000010113NL"),
        _rec("H1", 2, "S1", "RR000010127NL", verdict=rec.V_OUTSIDE, flags=rec.F_OVERRIDE, dist_dm=125,
             lon=5.11995),
        _rec("H1", 3, "S2", "RR000020115NL", outcome=rec.ATTEMPTED, reason=1, action=20, lon=5.12065),
        _rec("H1", 4, "S2", "RR000030118NL", match=rec.M_OTHER_STOP, flags=rec.F_WRONG_STOP, lon=5.12085),
        _rec("H1", 5, "S3", "X9", match=rec.M_FENCE, lon=5.1213),
        _rec("H1", 7, "S3", "RR000030121NL", verdict=rec.V_UNSURE, flags=rec.F_OVERRIDE, dist_dm=30,
             lon=5.1214),
    ]
    h2 = [
        _rec("H2", 1, "S4", "RR000040115NL", lon=5.1222, lat=52.0902),
        _rec("H2", 2, "S4", "RR000040129NL", lon=5.1222, lat=52.0902),
        _rec("H2", 3, "S4", "RR000040129NL", outcome=rec.CORRECTION, corrects=2, lon=5.1222, lat=52.0902),
    ]
    assert st.ingest("H1", h1, "test").stored == 6
    assert st.ingest("H2", h2, "test").stored == 3
    st.close()
    routes.register(store_path, src)
    return store_path, routes.find(store_path, "R-TEST")


def test_route_from_package_matches_its_geojson(day, tmp_path):
    _, from_pkg = day
    src = tmp_path / "R-TEST.geojson"
    src.write_text(json.dumps(ROUTE))
    from_json = routes.load(src)
    assert (from_pkg.route_id, from_pkg.service_date) == ("R-TEST", "2026-11-27")
    assert [(s.stop_id, s.seq, s.address, s.items) for s in from_pkg.stops] == \
        [(s.stop_id, s.seq, s.address, s.items) for s in from_json.stops]
    assert [len(s.polygons) for s in from_pkg.stops] == [1, 2, 1, 1]
    assert len(from_pkg.stops[2].polygons[0]) == 2  # S3 keeps its courtyard as a hole
    for a, b in zip(from_pkg.stops, from_json.stops, strict=True):
        sa, sb = routes.fence_shape(a), routes.fence_shape(b)
        assert sa is not None and sb is not None
        assert sa.symmetric_difference(sb).area / sb.area < 0.06  # grid snap, 16-gon for the Point stop
    # the host's own distance check: 12.5 m west of S1 measured on the fence
    assert routes.distance_to_fence_m(from_pkg.stops[0], 5.1200 - 12.5 / 68500, 52.09005) == \
        pytest.approx(12.5, abs=0.3)


def _build(day) -> report.Report:
    store_path, route = day
    st = Store(store_path)
    try:
        return report.build(route, st, now=T0 + 86400)
    finally:
        st.close()


def test_match_rates_lead_route_and_each_carrier(day):
    rep = _build(day)
    assert rep.total.to_dict() == {
        "deliveries": 6, "attempts": 1, "match_rate": 0.5, "inside": 3, "inside_share": 0.5,
        "override": 1, "override_share": 0.1667, "unsure": 1, "unsure_share": 0.1667,
        "fence": 1, "fence_share": 0.1667}
    assert rep.carriers["H1"].to_dict()["match_rate"] == 0.4
    assert [rep.carriers["H1"].counts[c] for c in report.CLASSES] == [2, 1, 1, 1]
    assert rep.carriers["H2"].to_dict()["match_rate"] == 1.0
    text = report.to_text(rep)
    lines = text.splitlines()
    assert lines[3].startswith("route ") and "match  50.0%" in lines[3] and "override  16.7%" in lines[3]
    assert "carrier H1" in lines[4] and "match  40.0%" in lines[4]
    assert "(5 deliveries, 1 attempts)" in lines[4]
    assert "carrier H2" in lines[5] and "match 100.0%" in lines[5]


def test_reconciliation_missing_wrong_stop_outside_and_gaps(day):
    rep = _build(day)
    assert rep.missing == [("S4", "RR000040129NL")]  # RR000040129NL's delivery was corrected away
    assert rep.wrong_stop == [("RR000030118NL", "S3", "S2", "H1", 4)]
    assert rep.outside == [("S1", "RR000010127NL", 12.5, "H1", 2)]
    assert rep.gaps == {"H1": [(6, 6)], "H2": []}
    assert rep.corrections == [("H2", 3, 2)]
    status = {sr.stop.stop_id: (sr.status, sr.delivered, sr.attempted, sr.missing, sr.elsewhere)
              for sr in rep.stops}
    assert status == {"S1": ("delivered", ["RR000010113NL", "RR000010127NL"], [], [], []),
                      "S2": ("attempted", [], ["RR000020115NL"], [], []),
                      "S3": ("partial", ["RR000030121NL"], [], [], ["RR000030118NL"]),
                      "S4": ("partial", ["RR000040115NL"], [], ["RR000040129NL"], [])}
    text = report.to_text(rep)
    assert ("  sequence gaps (numbers missing from the store): 1\n    H1: seq 6 missing\n"
            "  sequence numbers skipped by the device (declared never used): 0\n") in text
    assert "  items expected but not scanned: 1\n    RR000040129NL (stop S4)\n" in text
    assert "    RR000030118NL: expected at S3, scanned at S2 (H1 #4)\n" in text
    assert "    RR000010127NL at S1: 12.5 m outside (H1 #2)\n" in text
    assert "reason: Addressee absent; action: Notice card left" in text
    assert "(voided by #3)" in text


def test_sequence_numbers_the_device_declared_unused_are_shown_apart_from_missing_ones(day):
    store_path, _ = day
    st = Store(store_path)
    st.ingest("H2", [_rec("H2", 9, "S4", "D3", lon=5.1222, lat=52.0902)], "test")
    st.declare_absent("H2", range(4, 9), "dock")  # its journal's lease after a restart
    st.close()
    rep = _build(day)
    assert rep.gaps == {"H1": [(6, 6)], "H2": []}
    assert rep.skipped == {"H1": [], "H2": [(4, 8)]}
    text = report.to_text(rep)
    assert ("  sequence gaps (numbers missing from the store): 1\n"
            "    H1: seq 6 missing\n"
            "  sequence numbers skipped by the device (declared never used): 5\n"
            "    H2: seq 4-8 skipped\n") in text
    page = report.to_html(rep)
    assert "Sequence gaps (numbers missing from the store): 1<ul><li>H1: seq 6 missing</li></ul>" in page
    assert ("Sequence numbers skipped by the device (declared never used): 5<ul><li>H2: seq 4-8 skipped"
            "</li></ul>") in page


def test_csv_rows(day):
    rows = list(csv.DictReader(io.StringIO(report.to_csv(_build(day)))))
    rates = {r["scope"]: r for r in rows if r["kind"] == "rate"}
    assert list(rates) == ["route", "carrier:H1", "carrier:H2"]
    assert (rates["route"]["match_rate"], rates["route"]["fence_share"], rates["route"]["deliveries"]) == \
        ("0.5000", "0.1667", "6")
    assert [(r["device_id"], r["seq"]) for r in rows if r["kind"] == "gap"] == [("H1", "6")]
    assert [(r["stop_id"], r["item_id"]) for r in rows if r["kind"] == "missing"] == [("S4", "RR000040129NL")]
    scans = [r for r in rows if r["kind"] == "scan"]
    assert len(scans) == 9
    c1 = next(r for r in scans if r["item_id"] == "RR000030118NL")
    assert (c1["stop_id"], c1["expected_stop"], c1["wrong_stop"], c1["class"]) == ("S2", "S3", "1", "inside")
    b1 = next(r for r in scans if r["item_id"] == "RR000020115NL")
    assert (b1["outcome"], b1["reason"], b1["action"]) == \
        ("attempted", "Addressee absent", "Notice card left")
    a2 = next(r for r in scans if r["item_id"] == "RR000010127NL")
    assert (a2["verdict"], a2["override"], a2["distance_m"], a2["device_time"]) == \
        ("outside", "1", "12.5", "2026-05-28T20:28:40Z")


def test_geojson(day):
    doc = json.loads(report.to_geojson(_build(day)))
    props = doc["properties"]
    assert props["route"]["match_rate"] == 0.5 and props["carriers"]["H1"]["unsure"] == 1
    assert props["missing"] == [{"stop_id": "S4", "item_id": "RR000040129NL"}]
    assert props["gaps"] == {"H1": [[6, 6]], "H2": []}
    kinds = [f["properties"]["kind"] for f in doc["features"]]
    assert kinds.count("stop") == 4 and kinds.count("route") == 1 and kinds.count("scan") == 9
    s2 = next(f for f in doc["features"] if f["properties"].get("stop_id") == "S2")
    assert s2["geometry"]["type"] == "MultiPolygon"
    line = next(f for f in doc["features"] if f["properties"]["kind"] == "route")
    assert len(line["geometry"]["coordinates"]) == 4


def test_cli_writes_every_format(day, tmp_path, capsys):
    store_path, _ = day
    assert cli.main(["--store", str(store_path), "report", "--route", "R-TEST"]) == 0
    assert "Route R-TEST  (4 stops)" in capsys.readouterr().out
    for fmt in report.FORMATS:
        out = tmp_path / f"r.{fmt}"
        argv = ["--store", str(store_path), "report", "--route", "R-TEST", "--format", fmt, "--out", str(out)]
        assert cli.main(argv) == 0
        assert out.stat().st_size > 200
    assert cli.main(["--store", str(store_path), "report", "--route", "NOPE"]) == 2
    assert "route 'NOPE' is not known" in capsys.readouterr().err


def test_html_map_in_headless_chromium(day, tmp_path):
    rep = _build(day)
    page = tmp_path / "report.html"
    page.write_text(report.to_html(rep), encoding="utf-8")
    src = page.read_text()
    assert "http://" not in src.replace('xmlns="http://www.w3.org/2000/svg"', "")  # offline
    assert "https://" not in src
    assert len(re.findall(r"<g class=\"stop [^\"]*\" data-stop-id=", src)) == 4
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: apt-get install -y chromium")
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    profile = tmp_path / "profile"
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}"]
    dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    stops = re.findall(r"<g [^>]*data-stop-id=\"([^\"]+)\"[^>]*>", dom)
    assert sorted(stops) == ["S1", "S2", "S3", "S4"]
    # The page's own script marks each stop drawn with a non-empty box inside the map.
    visible = re.findall(r"<g [^>]*data-stop-id=\"[^\"]+\"[^>]*data-visible=\"1\"", dom)
    assert len(visible) == 4
    assert 'data-stops-visible="4"' in dom
    assert len(re.findall(r"<circle class=\"scan ", dom)) == 9
    shot = tmp_path / "report.png"
    subprocess.run(base + ["--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=60, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    keep = os.environ.get("REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_a_fix_older_than_the_devices_freshness_limit_is_flagged_in_every_format(day):
    """A record's GNSS time is evidence of when its fix was taken: a fix taken more than 10 s
    (geofence.MAX_AGE_S) before the scan, by its GNSS time or by the device's count of its age,
    is listed; a fresh one is not."""
    store_path, _ = day
    st = Store(store_path)
    stale_clock = rec.Record(seq=6, device_id="H1", route_id="R-TEST", stop_id="S3", item_id="C9",
                             verdict=rec.V_INSIDE, match=rec.M_ITEM, device_time=T0 + 400, gnss_time=T0 + 370,
                             lat_e6=52090050, lon_e6=5121300, accuracy_dm=40, fix_age_s=2).encode()
    stale_age = rec.Record(seq=4, device_id="H2", route_id="R-TEST", stop_id="S4", item_id="D9",
                           verdict=rec.V_UNSURE, match=rec.M_ITEM, flags=rec.F_OVERRIDE, reason=40,
                           device_time=T0 + 500, gnss_time=T0 + 500, lat_e6=52090200, lon_e6=5122200,
                           accuracy_dm=40, fix_age_s=11).encode()
    st.ingest("H1", [stale_clock], "test")
    st.ingest("H2", [stale_age], "test")
    st.close()
    rep = _build(day)
    assert [(e.r.device_id, e.r.seq, e.fix_lag_s) for e in rep.stale] == [("H1", 6, 30), ("H2", 4, 11)]
    text = report.to_text(rep)
    assert ("  scans with a stale fix (older than 10 s): 2\n"
            "    C9 at S3: fix 30 s before the scan (H1 #6)\n"
            "    D9 at S4: fix 11 s before the scan (H2 #4)\n") in text
    assert "D9                   delivered  unsure" in text
    assert " override stale-fix  reason: GNSS inaccurate here" in text
    rows = {r["item_id"]: r for r in csv.DictReader(io.StringIO(report.to_csv(rep))) if r["kind"] == "scan"}
    assert [(rows[i]["fix_lag_s"], rows[i]["stale_fix"]) for i in ("C9", "D9", "RR000010113NL")] == \
        [("30", "1"), ("11", "1"), ("1", "0")]
    doc = json.loads(report.to_geojson(rep))
    assert doc["properties"]["stale_fix"] == [{"device_id": "H1", "seq": 6, "fix_lag_s": 30},
                                              {"device_id": "H2", "seq": 4, "fix_lag_s": 11}]
    page = report.to_html(rep)
    assert "Scans with a stale fix (older than 10 s): 2" in page
    assert "C9 at S3: fix 30 s before the scan (H1 #6)" in page and "(stale fix)" in page


def test_the_html_page_escapes_what_the_data_says_and_folds_long_lists(tmp_path):
    """Ids and addresses come from route files and handhelds: in the page they are text, never markup.
    A reconciliation list of more than 10 entries opens on a click ("show all N"); up to 10 it is open."""
    hostile = "<script>alert(1)</script>"
    fc = {"type": "FeatureCollection", "route_id": 'R-"<b>', "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(5.12, 52.09)]},
         "properties": {"stop_id": "S<1>", "seq": 1, "address": "1 Canal St " + hostile,
                        "items": [f"M{i:02d}{hostile}" for i in range(11)]}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_square(5.1205, 52.09)]},
         "properties": {"stop_id": "S2", "seq": 2, "address": "3 Canal St", "items": []}}]}
    src = tmp_path / "r.geojson"
    src.write_text(json.dumps(fc))
    st = Store(tmp_path / "depot.sqlite3")
    try:
        st.enrol("H1")
        outside = rec.Record(seq=1, device_id="H1", route_id='R-"<b>', stop_id="S2", item_id="X" + hostile,
                             verdict=rec.V_OUTSIDE, flags=rec.F_OVERRIDE, distance_dm=50, device_time=T0,
                             gnss_time=T0, lat_e6=52090050, lon_e6=5120600, fix_age_s=1)
        st.ingest("H1", [outside.encode()], "test")
        page = report.to_html(report.build(routes.from_geojson(src), st, now=T0))
    finally:
        st.close()
    assert "<script>alert" not in page and '"<b>' not in page
    assert "<title>Route R-&#34;&lt;b&gt; report</title>" in page
    assert 'data-stop-id="S&lt;1&gt;"' in page
    assert "<li>M00&lt;script&gt;alert(1)&lt;/script&gt; (stop S&lt;1&gt;)</li>" in page
    assert ("Items expected but not scanned: 11<details><summary>show all 11</summary><ul><li>M00"
            in page)
    assert ("Deliveries confirmed outside the fence: 1<ul><li>X&lt;script&gt;alert(1)&lt;/script&gt; at S2: "
            "5.0 m (H1 #1)</li></ul></li>") in page
    assert page.count("<details>") == 1
