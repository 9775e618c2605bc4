"""Issue 13 item 12 (server and report side): text from devices and route files is input. The CSV
report never writes a cell a spreadsheet would run as a formula, and the text report and
`depot devices` never pass a terminal escape sequence through."""

from __future__ import annotations

import csv
import io

from firmware import record as rec
from host_tools import cli, report, route_compile, routes, untrusted
from host_tools.store import Store

ESC_TITLE = "\x1b]0;owned\x07"  # sets the terminal's window title
ESC_CLEAR = "\x1b[2J\x1b[H"  # clears the screen
FORMULAS = ['=HYPERLINK("http://ev.il/","x")', "=1+1", "+1+1", "-1+1", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]


def square(lon: float, lat: float, d: float = 0.0002) -> list[list[float]]:
    return [[lon, lat], [lon + d, lat], [lon + d, lat + d * 0.7], [lon, lat + d * 0.7], [lon, lat]]


def hostile_day(tmp_path):
    fc = {"type": "FeatureCollection", "route_id": "R-EVIL", "service_date": "2026-11-27", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square(5.12, 52.09)]},
         "properties": {"stop_id": "S1", "seq": 1, "address": "=1+1 Canal St" + ESC_TITLE,
                        "items": ["RR473124829GB"]}}]}
    pkg = tmp_path / "R-EVIL.pkg"
    route_compile.write_package(route_compile.compile_geojson(fc).package, pkg)
    store = Store(tmp_path / "depot.sqlite3")
    store.enrol("H1")
    items = FORMULAS + ["B" + ESC_CLEAR]
    store.ingest("H1", [rec.Record(seq=i + 1, device_id="H1", route_id="R-EVIL", stop_id="S1", item_id=item,
                                   verdict=rec.V_INSIDE, lat_e6=52090050, lon_e6=5120100).encode()
                        for i, item in enumerate(items)], "test")
    routes.register(store.path, pkg)
    return store, report.build(routes.find(store.path, "R-EVIL"), store)


def test_no_csv_cell_starts_like_a_formula(tmp_path):
    _, rep = hostile_day(tmp_path)
    rows = list(csv.reader(io.StringIO(report.to_csv(rep))))
    cells = [c for r in rows for c in r]
    assert not [c for c in cells if c[:1] in ("=", "+", "@", "\t", "\r")]
    assert not [c for c in cells if c.startswith("-") and not _number(c)]
    items = [r[5] for r in rows[1:] if r[0] == "scan"]
    assert items[:len(FORMULAS)] == ["'" + untrusted.shown(f) for f in FORMULAS]  # kept, as text
    assert "'=1+1 Canal St\\x1b]0;owned\\x07" in cells


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def test_the_text_report_shows_escapes_instead_of_passing_them_to_the_terminal(tmp_path):
    _, rep = hostile_day(tmp_path)
    text = report.to_text(rep)
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert "B\\x1b[2J\\x1b[H" in text and "Canal St\\x1b]0;owned\\x07" in text


def test_depot_devices_shows_escapes_from_device_reported_fields(tmp_path, capsys):
    store = Store(tmp_path / "depot.sqlite3")
    store.enrol("H1")
    store.seen("H1", "dock", firmware="1.0" + ESC_CLEAR, board="esp32" + ESC_TITLE, route_id="R\u202eLIVE")
    assert cli.main(["--store", str(store.path), "devices"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "1.0\\x1b[2J\\x1b[H" in out and "esp32\\x1b]0;owned\\x07" in out and "R\\u202eLIVE" in out


def test_untrusted_keeps_ordinary_text_and_numbers():
    assert untrusted.shown("Rue de l'Église 3, 北京市") == "Rue de l'Église 3, 北京市"
    assert untrusted.csv_cell(-12.5) == -12.5 and untrusted.csv_cell("RR473124829GB") == "RR473124829GB"
