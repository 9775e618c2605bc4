"""Route compiler: GeoJSON in, signed package out; every repair reported; bad input refused by name
with nothing written. Also the synthetic town it is fed with."""

from __future__ import annotations

import copy
import json
import math
import struct
from pathlib import Path

import pytest
import shapely
from shapely.geometry import Point, Polygon

from firmware import route_package
from host_tools import cli, route_compile, route_package_writer
from sim import town

ROOT = Path(__file__).resolve().parent.parent
KEY = bytes([7] * 32)
LAT, LON = 52.3, 6.1
M_LAT = 1 / 111195.0  # degrees per metre, near enough for building test shapes
M_LON = M_LAT / math.cos(math.radians(LAT))


def ring(pts_m: list[tuple[float, float]]) -> list[list[float]]:
    r = [[round(LON + x * M_LON, 7), round(LAT + y * M_LAT, 7)] for x, y in pts_m]
    return r + [r[0]]


def item(n: int) -> str:
    """A parcel id the device can read: S10 with its check digit."""
    return town.s10("RR", f"{n:08d}", "NL")


def feature(sid: str, seq: int, geom: dict, **extra) -> dict:
    props = {"stop_id": sid, "seq": seq, "address": f"{seq} Test Road", "items": [item(seq)]}
    props.update(extra)
    return {"type": "Feature", "properties": props, "geometry": geom}


def square(x: float, y: float, s: float = 10.0) -> dict:
    return {"type": "Polygon", "coordinates": [ring([(x, y), (x + s, y), (x + s, y + s), (x, y + s)])]}


def collection(*feats: dict) -> dict:
    return {"type": "FeatureCollection", "route_id": "T-1", "service_date": "2026-11-27",
            "features": list(feats)}


def fence(pkg_bytes: bytes, i: int) -> list[list[tuple[int, int]]]:
    stop_off = struct.unpack_from("<I", pkg_bytes, 68)[0]
    x0, y0, _, _, goff, words, _ = struct.unpack_from("<7i", pkg_bytes, stop_off + 28 * i)
    w = struct.unpack_from("<%dh" % words, pkg_bytes, goff)
    rings, v = [], 1 + w[0]
    for r in range(w[0]):
        rings.append([(x0 + w[v + 2 * k], y0 + w[v + 2 * k + 1]) for k in range(w[1 + r])])
        v += 2 * w[1 + r]
    return rings


def test_example_routes_compile_cleanly_and_match_the_generator():
    for area in ("north", "south"):
        path = ROOT / "examples" / "routes" / f"{area}.geojson"
        fc = json.loads(path.read_text())
        assert fc == json.loads(json.dumps(town.town(seed=7, stops=220, area=area)))
        res = route_compile.compile_file(path, key=KEY)
        assert res.stops == 220 and res.repairs == [] and res.route_id == f"{area.upper()}-7"
        assert res.service_date == 20261127
        assert len(res.package) < 220 * 160


def test_cli_compiles_and_signs_with_the_key_file(tmp_path, capsys):
    keyfile = tmp_path / "dev.key"
    keyfile.write_text(KEY.hex() + "\n")
    out = tmp_path / "n.pkg"
    rc = cli.main(["route", "compile", str(ROOT / "examples/routes/north.geojson"), "--out", str(out),
                   "--key", str(keyfile), "--board", "rp2350-bg95"])
    assert rc == 0
    assert "220 stops" in capsys.readouterr().out
    pkg = route_package.RoutePackage(str(out), KEY)
    assert pkg.stop_count == 220 and pkg.stop(0).stop_id == "N0001"
    pkg.close()


def test_repairs_are_made_and_reported(tmp_path):
    bowtie = {"type": "Polygon", "coordinates": [ring([(0, 0), (10, 10), (10, 0), (0, 10)])]}
    dup = {"type": "Polygon", "coordinates": [ring([(20, 0), (30, 0), (30, 0), (30, 10), (20, 10)])]}
    cw = {"type": "Polygon", "coordinates": [ring([(40, 0), (40, 10), (50, 10), (50, 0)])]}
    circle = [(70 + 9 * math.cos(a / 60 * 2 * math.pi), 5 + 9 * math.sin(a / 60 * 2 * math.pi))
              for a in range(60)]
    round_house = {"type": "Polygon", "coordinates": [ring(circle)]}
    res = route_compile.compile_geojson(collection(
        feature("A", 1, bowtie), feature("B", 2, dup), feature("C", 3, cw), feature("D", 4, round_house),
        feature("E", 5, {"type": "Point", "coordinates": [LON, LAT - 0.001]}, radius_m=8)), key=KEY)
    text = "\n".join(res.repairs)
    assert "feature #0 (stop_id 'A'): invalid geometry (Self-intersection" in text
    assert "feature #1 (stop_id 'B'): removed 1 duplicate point(s)" in text
    assert "feature #2 (stop_id 'C'): ring orientation fixed" in text
    assert "feature #3 (stop_id 'D'): simplified 60 -> " in text
    assert len(res.repairs) == 4  # the Point's 16-gon is not a repair
    # the round house fits the budget and no edge moved more than 0.5 m
    d = Polygon(fence(res.package, 3)[0])
    assert len(d.exterior.coords) - 1 <= 32
    original = Polygon([(x * 10, y * 10) for x, y in circle])
    c, o = d.centroid, original.centroid
    moved = shapely.affinity.translate(original, c.x - o.x, c.y - o.y)
    assert d.hausdorff_distance(moved) <= 5.5
    # the bowtie became two triangles, both in the fence
    assert len(fence(res.package, 0)) == 2
    pt = fence(res.package, 4)[0]
    assert len(pt) == 16 and abs(Polygon(pt).area - math.pi * 80 ** 2) < 0.05 * math.pi * 80 ** 2


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f["properties"].pop("stop_id"), "feature #1: missing property 'stop_id'"),
    (lambda f: f["properties"].pop("seq"), "feature #1 (stop_id 'B'): missing property 'seq'"),
    (lambda f: f["properties"].pop("address"), "feature #1 (stop_id 'B'): missing property 'address'"),
    (lambda f: f["properties"].update(items="IT1"),
     "feature #1 (stop_id 'B'): property 'items' must be list"),
    (lambda f: f["properties"].update(seq="2"), "feature #1 (stop_id 'B'): property 'seq' must be int"),
    (lambda f: f["properties"].update(stop_id="A"), "feature #1 (stop_id 'A'): duplicate stop_id"),
    (lambda f: f["properties"].update(seq=1), "feature #1 (stop_id 'B'): duplicate seq 1"),
    (lambda f: f["properties"].update(items=[item(1)]), f"feature #1 (stop_id 'B'): item {item(1)} already"),
    (lambda f: f.update(geometry={"type": "Polygon", "coordinates": []}), "feature #1 (stop_id 'B'): empty"),
    (lambda f: f.update(geometry=None), "feature #1 (stop_id 'B'): empty geometry"),
    (lambda f: f.update(geometry={"type": "LineString", "coordinates": [[6.1, 52.3], [6.2, 52.3]]}),
     "feature #1 (stop_id 'B'): geometry LineString is not areal"),
    (lambda f: f.update(geometry={"type": "Point", "coordinates": [6.1, 52.3]}),
     "feature #1 (stop_id 'B'): Point stop needs radius_m"),
    (lambda f: f.update(geometry={"type": "Polygon", "coordinates": [ring([(0, 0), (5, 5), (10, 10)])]}),
     "feature #1 (stop_id 'B'): "),
])
def test_bad_features_are_named_and_nothing_is_written(tmp_path, capsys, mutate, message):
    fc = collection(feature("A", 1, square(0, 0)), feature("B", 2, square(20, 0)))
    fc = copy.deepcopy(fc)
    mutate(fc["features"][1])
    with pytest.raises(route_compile.CompileError) as exc:
        route_compile.compile_geojson(fc)
    assert str(exc.value).startswith(message), str(exc.value)
    src = tmp_path / "bad.geojson"
    src.write_text(json.dumps(fc))
    out = tmp_path / "bad.pkg"
    assert cli.main(["route", "compile", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.endswith(". Nothing written.\n") and err.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


def test_unreadable_files_are_refused(tmp_path):
    bad = tmp_path / "r.geojson"
    bad.write_text("{not json")
    with pytest.raises(route_compile.CompileError, match="cannot read GeoJSON"):
        route_compile.compile_file(bad)
    bad.write_text(json.dumps({"type": "Feature"}))
    with pytest.raises(route_compile.CompileError, match="not a GeoJSON FeatureCollection"):
        route_compile.compile_file(bad)
    with pytest.raises(route_compile.CompileError, match="cannot read"):
        route_compile.compile_file(tmp_path / "missing.geojson")
    keyfile = tmp_path / "k"
    keyfile.write_text("abcd")
    with pytest.raises(route_compile.CompileError, match="not a 32-byte key"):
        route_compile.read_key(keyfile)


def test_a_fence_too_complex_for_the_budget_is_refused():
    # a star: 80 spikes 3 m deep cannot be simplified within 0.5 m to 32 vertices
    pts = [(30 + (15 if k % 2 else 12) * math.cos(k * math.pi / 80),
            30 + (15 if k % 2 else 12) * math.sin(k * math.pi / 80)) for k in range(160)]
    with pytest.raises(route_compile.CompileError, match=r"stop_id 'A'\): 160 vertices; cannot meet"):
        route_compile.compile_geojson(collection(feature("A", 1, {"type": "Polygon",
                                                                  "coordinates": [ring(pts)]})))


def test_town_identifiers_are_valid_and_generation_is_deterministic():
    assert town.s10("RR", "47312482", "GB") == "RR473124829GB"  # UPU's published example
    assert town.s10_check("00000000") == 5  # 11 - 0 = 11 -> 5
    fc = town.town(seed=9, stops=300)
    assert fc == town.town(seed=9, stops=300)
    items = [i for f in fc["features"] for i in f["properties"]["items"]]
    assert len(items) == len(set(items))
    for it in items:
        if it[:2].isalpha():
            assert len(it) == 13 and int(it[10]) == town.s10_check(it[2:10])
        else:
            assert len(it) == 18
            digits = [int(c) for c in it]
            assert sum(d * (3 if k % 2 == 0 else 1) for k, d in enumerate(digits[-2::-1])) % 10 == (
                (10 - digits[-1]) % 10)
    kinds = {f["geometry"]["type"] for f in fc["features"]}
    assert kinds == {"Polygon", "MultiPolygon", "Point"}
    assert [f["properties"]["seq"] for f in fc["features"]] == list(range(1, 301))
    geoms = [shapely.geometry.shape(f["geometry"]) for f in fc["features"]]
    assert all(g.is_valid for g in geoms)
    polys = [g for g in geoms if g.geom_type != "Point"]
    tree = shapely.STRtree(polys)
    assert all(len(tree.query(g, predicate="overlaps")) == 0 for g in polys)  # no shared ground
    assert any(isinstance(g, Polygon) and g.interiors for g in polys)
    assert isinstance(geoms[20], Point)


def test_package_bytes_per_stop_stay_small():
    res = route_compile.compile_geojson(town.town(seed=2, stops=200), key=KEY)
    assert len(res.package) / 200 < 160
    assert route_package_writer.DEFAULT_CELL_DM == 400


def _compile_cli(tmp_path, capsys, fc: dict, *opts: str) -> tuple[int, str, str, Path]:
    src = tmp_path / "north.geojson"
    src.write_text(json.dumps(fc))
    out = tmp_path / "north.pkg"
    code = cli.main(["route", "compile", str(src), "--out", str(out), *opts])
    cap = capsys.readouterr()
    return code, cap.out, cap.err, out


def _swap(geom: dict) -> dict:
    return {"type": geom["type"],
            "coordinates": [[[lat, lon] for lon, lat in r] for r in geom["coordinates"]]}


@pytest.mark.parametrize("items, message", [
    (["RB698918503NL"], "feature #1 (stop_id 'B'): item 'RB698918503NL' cannot be delivered: the "
                        "device's parser refuses it (bad check digit). Correct the id: a UPU S10 such as "
                        "RR473124829GB with its check digit, or an 18-digit SSCC. Nothing written."),
    (["PARCEL-7"], "feature #1 (stop_id 'B'): item 'PARCEL-7' cannot be delivered: the device's parser "
                   "refuses it (unknown code)."),
    (["rb698918502nl"], "feature #1 (stop_id 'B'): item 'rb698918502nl' is read by the device as "
                        "'RB698918502NL'. List it as RB698918502NL. Nothing written."),
    (["340123450000000018"], "feature #1 (stop_id 'B'): item '340123450000000018' cannot be delivered: the "
                             "device's parser refuses it (bad check digit)."),
])
def test_items_the_device_cannot_read_as_themselves_are_refused(tmp_path, capsys, items, message):
    fc = collection(feature("A", 1, square(0, 0)), feature("B", 2, square(20, 0), items=items))
    code, out, err, pkg = _compile_cli(tmp_path, capsys, fc)
    assert (code, out) == (2, "")
    assert err.startswith("depot: error: " + message) and err.count("\n") == 1, err
    assert not pkg.exists()


def test_an_sscc_and_an_s10_the_device_reads_are_accepted(tmp_path, capsys):
    fc = collection(feature("A", 1, square(0, 0), items=["340123450000000017", "RB698918502NL"]))
    code, out, err, pkg = _compile_cli(tmp_path, capsys, fc)
    assert (code, err) == (0, "") and pkg.exists()


def test_latitude_first_positions_are_refused_or_warned(tmp_path, capsys):
    # out of range as [lon, lat] (a latitude of 6.1 first, a "latitude" of 152 second): refused
    far = {"type": "Polygon", "coordinates": [[[52.3, 152.0], [52.3001, 152.0], [52.3001, 152.0001],
                                               [52.3, 152.0]]]}
    code, _, err, pkg = _compile_cli(tmp_path, capsys, collection(feature("A", 1, far)))
    assert code == 2 and not pkg.exists()
    assert err == ("depot: error: feature #0 (stop_id 'A'): coordinates look like [latitude, longitude] "
                   "(second value 152 is no latitude). Swap them: GeoJSON positions are [longitude, "
                   "latitude]. Nothing written.\n")
    # in range either way (52.3 N 6.1 E swapped is 6.1 N 52.3 E): every ring turns clockwise, said
    fc = collection(*(feature(s, n, _swap(square(20 * n, 0))) for n, s in enumerate("ABC", 1)))
    code, out, err, pkg = _compile_cli(tmp_path, capsys, fc)
    assert (code, err) == (0, "") and pkg.exists()
    assert (f"warning: {tmp_path / 'north.geojson'}: every fence ring runs clockwise, as it does when "
            "latitude and longitude are swapped; GeoJSON positions are [longitude, latitude] (check the "
            "route on a map)\n") in out


def test_a_stop_far_from_the_rest_and_a_stop_at_zero_zero(tmp_path, capsys):
    stray = square(0, 55_000)  # 55 km north of the others
    fc = collection(feature("A", 1, square(0, 0)), feature("B", 2, square(20, 0)), feature("C", 3, stray))
    code, out, err, _ = _compile_cli(tmp_path, capsys, fc)
    assert (code, err) == (0, "")
    assert ("1 stop(s) lie far from the rest of the route: feature #2 (stop_id 'C') (55 km); check their "
            "coordinates (GeoJSON positions are [longitude, latitude])") in out
    zero = {"type": "Point", "coordinates": [0.0, 0.0]}
    fc = collection(feature("A", 1, square(0, 0)), feature("B", 2, zero, radius_m=5))
    code, out, err, _ = _compile_cli(tmp_path, capsys, fc)
    assert code == 2 and err.startswith("depot: error: feature #1 (stop_id 'B'): lies at 0,0 (coordinates "
                                        "missing or zero). Give the stop's real position")


@pytest.mark.parametrize("date", ["2026-13-45", "27/11/2026", "20261127", "tomorrow", ""])
def test_a_date_that_is_no_day_is_refused_in_one_line(tmp_path, capsys, date):
    code, out, err, pkg = _compile_cli(tmp_path, capsys, collection(feature("A", 1, square(0, 0))),
                                       "--date", date)
    assert (code, out, pkg.exists()) == (2, "", False)
    assert err.startswith(f"depot: error: --date {date!r} is not a date. Give it as YYYY-MM-DD, e.g. 20")
    assert err.endswith(". Nothing written.\n") and err.count("\n") == 1


def test_the_date_and_the_route_id_given_are_used_and_a_missing_id_is_said(tmp_path, capsys):
    fc = collection(feature("A", 1, square(0, 0)))
    code, out, _, _ = _compile_cli(tmp_path, capsys, fc, "--date", "2026-02-28")
    assert code == 0 and "route T-1, service date 20260228, 1 stops" in out and "0 warning(s)" in out
    del fc["route_id"]
    code, out, _, _ = _compile_cli(tmp_path, capsys, fc)
    assert code == 0 and "route north, service date 20261127" in out
    assert ("no route_id in the collection: the route id is 'north', from the file name (set \"route_id\" "
            "in the GeoJSON or pass --route-id)") in out
    fc["route_id"] = "  "
    code, _, err, _ = _compile_cli(tmp_path, capsys, fc)
    assert code == 2 and err.startswith("depot: error: ") and "route_id '  ' is not a name" in err
    fc["service_date"] = "2026-02-30"
    with pytest.raises(route_compile.CompileError, match=r"service_date '2026-02-30' is not a date"):
        route_compile.compile_geojson(fc, route_id="T-2")


# ======================================================== hostile input (issue 13.12)

def test_a_nan_vertex_names_its_feature_in_one_line(capsys) -> None:
    fc = town.town(seed=4, stops=3, area="south", route_id="SAFE", service_date="2026-11-27")
    fc["features"][1]["geometry"]["coordinates"][0][1] = [float("nan"), 52.0]
    with pytest.raises(route_compile.CompileError) as exc:
        route_compile.compile_geojson(fc)
    assert exc.value.line() == ("feature #1 (stop_id 'S0002'): a coordinate is not a number (NaN or "
                                "infinite). Give every position as two finite decimal degrees.")
    assert capsys.readouterr().err == ""  # no RuntimeWarning from the geometry library either


def test_json_nested_200000_deep_is_one_line_not_a_recursion_traceback(tmp_path, capsys) -> None:
    p = tmp_path / "deep.geojson"
    p.write_text("[" * 200_000 + "]" * 200_000)
    assert cli.main(["route", "compile", str(p), "--out", str(tmp_path / "x.pkg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("depot: error: ") and "nested too deeply" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.pkg").exists()


def test_compile_refuses_input_beyond_its_bounds_quickly(tmp_path) -> None:
    fc = town.town(seed=4, stops=3, area="south", route_id="SAFE", service_date="2026-11-27")
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0]
    n = route_compile.MAX_INPUT_VERTICES + 10
    ring = [[lon + 1e-4 * math.cos(i * 2 * math.pi / n), lat + 1e-4 * math.sin(i * 2 * math.pi / n)]
            for i in range(n)]
    fc["features"][0]["geometry"] = {"type": "Polygon", "coordinates": [ring + [ring[0]]]}
    with pytest.raises(route_compile.CompileError, match=r"route: more than 250000 vertices \(at feature #0"):
        route_compile.compile_geojson(fc)
    big = tmp_path / "big.geojson"
    with open(big, "wb") as f:
        f.truncate(route_compile.MAX_INPUT_BYTES + 1)
    with pytest.raises(route_compile.CompileError, match="bytes, more than the 67108864 a route may be"):
        route_compile.compile_file(big)
