"""A street in two towns, an address that names neither: the town from the walk order, or not at all
(rule 8 of docs/address-matching.md, host_tools/address_route.py).

The footprints: Springfield around x = 0 and Shelbyville 5 km east, each with its own Center Way
(Springfield's has 1, 3, 5 and two buildings numbered 9; Shelbyville's 1, 3, 5 and 7), Oak Street
only in Springfield, Birch Road only in Shelbyville, and Mill Lane in both, 600 m apart across the
town line. Each test is a short list in walk order with the outcome of every row spelled out.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from host_tools.address_build import build

LAT, LON = 40.0, -105.27
M_LAT = 1 / 111195.0
M_LON = M_LAT / math.cos(math.radians(LAT))
SHELBYVILLE_X = 5000.0
LatLon = tuple[str, str]
ONE_SIDE = "no matched row on both sides of it near center way in walk order"
NOT_ONE_TOWN = "are not all in one of its towns, kilometres from"
BOTH_3 = "2 buildings fit: 3 Center Way (way/103), 3 Center Way (way/203)"  # the text alone


def house(fid: int, x: float, y: float, street: str, number: str, town: str) -> dict:
    ring = [[LON + (x + dx) * M_LON, LAT + (y + dy) * M_LAT] for dx, dy in
            ((0, 0), (10, 0), (10, 12), (0, 12), (0, 0))]
    tags = {"building": "house", "addr:street": street, "addr:housenumber": number, "addr:city": town}
    return {"type": "Feature", "id": f"way/{fid}", "properties": {"@id": f"way/{fid}", **tags},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


def lat_lon(x: float, y: float) -> tuple[str, str]:
    return f"{LAT + (y + 6) * M_LAT:.7f}", f"{LON + (x + 5) * M_LON:.7f}"


FOOTPRINTS = [
    *(house(100 + n, 20.0 * n, 0, "Center Way", str(n), "Springfield") for n in (1, 3, 5)),
    house(109, 180, 0, "Center Way", "9", "Springfield"),
    house(119, 200, 0, "Center Way", "9", "Springfield"),
    *(house(200 + n, SHELBYVILLE_X + 20.0 * n, 0, "Center Way", str(n), "Shelbyville") for n in (1, 3, 5, 7)),
    *(house(300 + n, 20.0 * n, 60, "Oak Street", str(n), "Springfield") for n in (2, 4, 6, 8)),
    *(house(400 + n, SHELBYVILLE_X + 20.0 * n, 60, "Birch Road", str(n), "Shelbyville") for n in (2, 4, 6)),
    house(501, 300, 60, "Mill Lane", "1", "Springfield"),
    house(601, 900, 60, "Mill Lane", "1", "Shelbyville"),  # across the town line, 600 m away
]


def outcomes(tmp_path: Path, rows: list[tuple[str, LatLon | None]]) -> list[tuple[str, str | None, str]]:
    """Build the list (rows in walk order: address and prior geocode) and return each row's
    (match, building_id, why)."""
    fp = tmp_path / "buildings.geojson"
    fp.write_text(json.dumps({"type": "FeatureCollection", "features": FOOTPRINTS}))
    path = tmp_path / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["stop_id", "seq", "name", "address", "items", "lat", "lon"])
        for k, (text, geocode) in enumerate(rows, 1):
            w.writerow([f"S{k}", k, "", text, "", *(geocode or ("", ""))])
    fc, outs, _ = build(path, fp)
    return [(f["properties"]["match"], f["properties"]["building_id"], o.match.why)
            for f, o in zip(fc["features"], outs, strict=True)]


def test_a_row_between_two_rows_of_one_town_is_in_that_town(tmp_path):
    got = outcomes(tmp_path, [("2 Oak Street", None), ("3 Center Way", None), ("5 center way", None),
                              ("4 Oak St", None)])
    assert got[1] == ("normalized", "way/103", "town springfield: the rows around it in walk order are "
                      "in springfield (S1 before, S4 after)")
    assert got[2][:2] == ("normalized", "way/105")  # rows settled this way are never neighbours
    fc_score = build_score(tmp_path)
    assert fc_score == [1.0, 0.9, 0.9, 0.95]  # the town was not written: it scores below normalized


def build_score(tmp_path: Path) -> list[float]:
    fc, _, _ = build(tmp_path / "list.csv", tmp_path / "buildings.geojson")
    return [f["properties"]["match_score"] for f in fc["features"]]


def test_a_number_its_town_does_not_have_is_unmatched_never_the_other_towns(tmp_path):
    got = outcomes(tmp_path, [("2 Oak Street", None), ("7 Center Way", None), ("3 Center Way", None),
                              ("4 Oak Street", None)])
    assert got[1] == ("none", None, "no building numbered 7 on center way in springfield (town springfield: "
                      "the rows around it in walk order are in springfield (S1 before, S4 after))")
    assert got[2][:2] == ("normalized", "way/103")
    got = outcomes(tmp_path, [("2 Birch Road", None), ("7 Center Way", None), ("4 Birch Road", None)])
    assert got[1][:2] == ("normalized", "way/207")


def test_neighbours_in_two_towns_leave_it_ambiguous(tmp_path):
    got = outcomes(tmp_path, [("2 Oak Street", None), ("3 Center Way", None), ("2 Birch Road", None)])
    assert got[1] == ("none", None, f"{BOTH_3}; the rows around it in walk order (S1 before, S3 after) "
                      f"{NOT_ONE_TOWN} center way in the others")


@pytest.mark.parametrize("rows", [
    [("3 Center Way", None), ("2 Oak Street", None), ("4 Oak Street", None)],  # the route's first stop
    [("2 Oak Street", None), ("4 Oak Street", None), ("3 Center Way", None)],  # its last
])
def test_a_row_at_either_end_of_the_list_has_one_side_only(tmp_path, rows):
    got = outcomes(tmp_path, rows)
    row = next(g for g, (text, _) in zip(got, rows, strict=True) if "Center" in text)
    after = "S2 after" if rows[0][0].startswith("3") else "none after"
    before = "none before" if rows[0][0].startswith("3") else "S2 before"
    assert row == ("none", None, f"{BOTH_3}; {ONE_SIDE} ({before}, {after}): the route may begin or "
                   "end there")


def test_a_prior_geocode_in_the_other_town_contradicts_the_route(tmp_path):
    got = outcomes(tmp_path, [("2 Oak Street", None), ("3 Center Way", lat_lon(SHELBYVILLE_X + 60, 0)),
                              ("4 Oak Street", None)])
    assert got[1] == ("geocode", None, f"{BOTH_3}; the rows around it in walk order are in springfield "
                      "(S1 before, S3 after), but its prior geocode does not point there (5,000 m from "
                      "center way in springfield, 0 m from shelbyville's)")


def test_a_prior_geocode_between_the_towns_contradicts_the_route(tmp_path):
    got = outcomes(tmp_path, [("2 Oak Street", None), ("3 Center Way", lat_lon(SHELBYVILLE_X / 2, 0)),
                              ("4 Oak Street", None)])
    assert got[1][:2] == ("geocode", None)
    assert got[1][2].endswith("but its prior geocode does not point there (2,440 m from center way in "
                              "springfield, 2,560 m from shelbyville's)")


def test_a_prior_geocode_alone_decides_nothing(tmp_path):
    """A geocoder given '3 Center Way' without its town puts it, just as precisely, on the twin it picked."""
    got = outcomes(tmp_path, [("3 Center Way", lat_lon(60, 0))])
    assert got == [("geocode", None, f"{BOTH_3}; {ONE_SIDE} (none before, none after): the route may begin "
                    "or end there")]


def test_a_prior_geocode_that_agrees_is_named_in_the_evidence(tmp_path):
    got = outcomes(tmp_path, [("2 Oak Street", None), ("3 Center Way", lat_lon(60, 0)),
                              ("4 Oak Street", None)])
    assert got[1] == ("normalized", "way/103", "town springfield: the rows around it in walk order are in "
                      "springfield (S1 before, S3 after); its prior geocode is 0 m from center way in "
                      "springfield, 5,000 m from shelbyville's")


def test_the_same_number_twice_in_the_town_stays_ambiguous(tmp_path):
    got = outcomes(tmp_path, [("2 Oak Street", None), ("9 Center Way", None), ("4 Oak Street", None)])
    assert got[1] == ("none", None, "2 buildings fit in springfield: way/109, way/119 (town springfield: "
                      "the rows around it in walk order are in springfield (S1 before, S3 after))")


def test_twin_streets_close_together_stay_ambiguous(tmp_path):
    """Mill Lane is in both towns 600 m apart: a route could walk both between two stops."""
    got = outcomes(tmp_path, [("8 Oak Street", None), ("1 Mill Lane", None), ("6 Oak Street", None)])
    assert got[1] == ("none", None, "2 buildings fit: 1 Mill Lane (way/501), 1 Mill Lane (way/601); "
                      f"the rows around it in walk order (S1 before, S3 after) {NOT_ONE_TOWN} mill ln in "
                      "the others")


def test_a_row_that_names_its_town_needs_no_evidence(tmp_path):
    got = outcomes(tmp_path, [("2 Birch Road", None), ("3 Center Way, Springfield", None),
                              ("4 Birch Road", None)])
    assert got[1] == ("normalized", "way/103", "")


def test_the_html_lists_the_towns_taken_from_the_walk_order(tmp_path):
    from host_tools import cli

    outcomes(tmp_path, [("2 Oak Street", None), ("3 Center Way", None), ("4 Oak Street", None)])
    page = tmp_path / "match.html"
    assert cli.main(["route", "build", str(tmp_path / "list.csv"), "--footprints",
                     str(tmp_path / "buildings.geojson"), "--out", str(tmp_path / "r.geojson"),
                     "--html", str(page)]) == 0
    html = page.read_text()
    assert "Towns from the walk order (1)" in html
    assert ("<td>town springfield: the rows around it in walk order are in springfield (S1 before, S3 after)"
            "</td>") in html


@pytest.mark.parametrize("generator", ["address_town", "address_heldout"])
def test_the_generated_lists_are_in_walk_order(generator):
    """Both benchmark lists have a route's seq: consecutive rows are mostly next door."""
    import importlib

    town = importlib.import_module(f"sim.{generator}").generate(seed=3, buildings=400, locale="en")
    assert [int(r["seq"]) for r in town.rows] == list(range(1, len(town.rows) + 1))
    where = {}
    for f in town.footprints["features"]:
        ring = f["geometry"]["coordinates"][0]
        lon, lat = (ring[0] if isinstance(ring[0][0], list) else ring)[0]
        where[f["id"]] = ((lon - LON) / M_LON, (lat - LAT) / M_LAT)
    at = [where.get(town.truth[r["stop_id"]] or "") for r in town.rows]
    steps = sorted(math.dist(a, b) for a, b in zip(at, at[1:], strict=False) if a and b)
    assert steps[len(steps) // 2] < 40  # the median step: the next house or two
    assert sum(s > 1000 for s in steps) < 0.1 * len(steps)  # a route ends, a row filed elsewhere
