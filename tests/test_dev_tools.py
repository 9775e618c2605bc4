"""The developer and depot tools do what their help says: `python -m sim town` honours its
arguments and never rewrites the examples unasked; fence-check heads its CSV; the html report
folds long lists so a partial day's report still shows its map."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from host_tools import cli, route_compile
from sim import town
from sim.__main__ import main as sim

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "routes"


def test_town_help_prints_help_and_writes_nothing():
    before = {p.name: p.read_bytes() for p in EXAMPLES.glob("*.geojson")}
    got = subprocess.run([sys.executable, "-m", "sim.town", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert got.returncode == 0 and got.stdout.startswith("usage: python -m sim town")
    assert "--stops" in got.stdout and "--examples" in got.stdout
    assert {p.name: p.read_bytes() for p in EXAMPLES.glob("*.geojson")} == before


def test_a_big_town_of_5000_stops(tmp_path, capsys):
    out = tmp_path / "big.geojson"
    assert sim(["town", "--stops", "5000", "--seed", "3", "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}: route NORTH-3, 5000 stops, ")
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 5000 and fc["route_id"] == "NORTH-3"
    assert len({f["properties"]["stop_id"] for f in fc["features"]}) == 5000


def test_the_examples_are_town_seed_7():
    for area in ("north", "south"):
        assert json.loads((EXAMPLES / f"{area}.geojson").read_text()) == json.loads(
            json.dumps(town.town(seed=7, stops=220, area=area)))


def test_town_without_out_is_one_line(capsys):
    assert sim(["town", "--stops", "10"]) == 2
    assert capsys.readouterr().err == ("python -m sim town: error: no --out given. Name the GeoJSON file "
                                       "to write, e.g. --out big.geojson.\n")


def test_fence_check_heads_its_csv(tmp_path, capsys):
    fc = town.town(seed=7, stops=3)
    res = route_compile.compile_geojson(fc)
    pkg = tmp_path / "t.pkg"
    route_compile.write_package(res.package, pkg)
    lat, lon = town.door(fc["features"][0])
    pts = tmp_path / "p.csv"
    pts.write_text(f"{lat:.6f},{lon:.6f}\n")
    assert sim(["fence-check", str(pkg), str(pts)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "stop_id,contains,distance_m,verdict"
    assert lines[1].startswith(fc["features"][0]["properties"]["stop_id"] + ",1,0.0,")


def test_html_report_folds_long_lists(tmp_path, capsys):
    store, pkg, page = tmp_path / "s.sqlite3", tmp_path / "n.pkg", tmp_path / "r.html"
    assert cli.main(["--store", str(store), "enrol", "--device-id", "HH-1"]) == 0
    assert cli.main(["route", "compile", str(EXAMPLES / "north.geojson"), "--out", str(pkg)]) == 0
    assert cli.main(["--store", str(store), "report", "--route", "NORTH-7", "--route-file", str(pkg),
                     "--format", "html", "--out", str(page)]) == 0
    html = page.read_text()
    items = sum(len(f["properties"]["items"]) for f in json.loads((EXAMPLES / "north.geojson").read_text())[
        "features"])
    folded = re.search(r"Items expected but not scanned: (\d+)<details><summary>show all (\d+)</summary><ul>",
                       html)
    assert folded is not None and folded.groups() == (str(items), str(items))
    assert "Items scanned at the wrong stop: 0<ul></ul>" in html  # short lists stay open
