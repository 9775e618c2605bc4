"""Geofence engine: containment and distance agree with shapely; the index agrees with a linear scan;
verdicts follow margin and accuracy; the per-fix test allocates nothing on the real VM."""

from __future__ import annotations

import random
import struct
from functools import reduce
from pathlib import Path

import pytest
import shapely
from shapely.geometry import Point, Polygon

from firmware import geofence, record, route_package
from host_tools import route_compile, route_package_writer
from sim import fence_check, town

KEY = bytes(range(100, 132))


@pytest.fixture(scope="module")
def pkg_path(tmp_path_factory) -> Path:
    res = route_compile.compile_geojson(town.town(seed=3, stops=120, area="north"), key=KEY)
    p = tmp_path_factory.mktemp("geo") / "r.pkg"
    p.write_bytes(res.package)
    return p


def fences_of(path: Path) -> list:
    """The package's fences as shapely geometries in local dm, decoded straight from the spec's
    layout (even-odd over all rings = symmetric difference of the ring polygons)."""
    data = path.read_bytes()
    nstops = struct.unpack_from("<H", data, 8)[0]
    stop_off = struct.unpack_from("<I", data, 64 + 4)[0]
    out = []
    for i in range(nstops):
        x0, y0, _, _, goff, words, _ = struct.unpack_from("<7i", data, stop_off + 28 * i)
        w = struct.unpack_from("<%dh" % words, data, goff)
        nr = w[0]
        v = 1 + nr
        polys = []
        for r in range(nr):
            n = w[1 + r]
            pts = [(x0 + w[v + 2 * k], y0 + w[v + 2 * k + 1]) for k in range(n)]
            polys.append(Polygon(pts))
            v += 2 * n
        out.append(reduce(lambda a, b: a.symmetric_difference(b), polys))
    return out


def sample_points(fences: list, tree: shapely.STRtree, n: int, seed: int) -> list[tuple[int, int]]:
    """Integer points around footprints (within 25 m of their boxes), off the exact boundary."""
    rng = random.Random(seed)
    pts = []
    while len(pts) < n:
        f = fences[rng.randrange(len(fences))]
        x0, y0, x1, y1 = f.bounds
        p = (rng.randint(int(x0) - 250, int(x1) + 250), rng.randint(int(y0) - 250, int(y1) + 250))
        near = tree.query(Point(p).buffer(1.0))
        if not any(fences[i].boundary.distance(Point(p)) < 0.01 for i in near):
            pts.append(p)
    return pts


def oracle(tree: shapely.STRtree, p: tuple[int, int]) -> tuple[set[int], float]:
    pt = Point(p)
    inside = {int(i) for i in tree.query(pt, predicate="within")}
    if inside:
        return inside, 0.0
    _, dist = tree.query_nearest(pt, return_distance=True)
    return inside, float(dist[0])


def test_containment_and_distance_match_shapely_for_thousands_of_points(pkg_path):
    fences = fences_of(pkg_path)
    kinds = {f.geom_type for f in fences}
    assert kinds == {"Polygon", "MultiPolygon"}
    assert any(len(getattr(f, "interiors", [])) for f in fences), "a courtyard with a hole"
    tree = shapely.STRtree(fences)
    pkg = route_package.RoutePackage(str(pkg_path), KEY)
    n_in = 0
    for x, y in sample_points(fences, tree, 3000, seed=11):
        i = geofence.nearest(pkg, x, y)
        inside, dist = oracle(tree, (x, y))
        assert pkg.near_in == bool(inside), (x, y)
        if inside:
            n_in += 1
            assert i in inside and pkg.near_dist == 0
        else:
            assert abs(pkg.near_dist / 10 - dist / 10) <= 0.5, (x, y, pkg.near_dist, dist)
            assert abs(fences[i].distance(Point(x, y)) - dist) <= 5
    assert 300 < n_in < 2700  # both sides of the boundary were exercised
    pkg.close()


def test_index_and_linear_scan_give_the_same_answer(pkg_path):
    pkg = route_package.RoutePackage(str(pkg_path), KEY)
    rng = random.Random(5)
    x0, y0 = pkg.gx0, pkg.gy0
    span = pkg.cell * max(pkg.nx, pkg.ny)
    for _ in range(800):
        x = rng.randint(x0 - span // 4, x0 + span + span // 4)
        y = rng.randint(y0 - span // 4, y0 + span + span // 4)
        a = geofence.nearest(pkg, x, y)
        ad = (pkg.near_dist, pkg.near_in)
        b = geofence.nearest_linear(pkg, x, y)
        assert (pkg.near_dist, pkg.near_in) == ad
        assert a == b or ad[0] > 0  # ties between equidistant fences may pick either
    pkg.close()


def test_a_point_in_a_courtyard_hole_is_outside_at_its_distance_to_the_hole_edge(pkg_path):
    fences = fences_of(pkg_path)
    i, f = next((i, f) for i, f in enumerate(fences) if f.geom_type == "Polygon" and f.interiors)
    hole = Polygon(f.interiors[0])
    c = hole.representative_point()
    x, y = round(c.x), round(c.y)
    pkg = route_package.RoutePackage(str(pkg_path), KEY)
    d, inside = geofence.distance(pkg, i, x, y)
    assert not inside
    assert d > 0 and abs(d - f.distance(Point(x, y))) <= 1
    pkg.close()


def test_integer_helpers_are_exact():
    assert [geofence.isqrt(n) for n in (0, 1, 3, 4, 15, 16, 255, 256, 65535, 65536, 2**30 - 1)] == [
        0, 1, 1, 2, 3, 4, 15, 16, 255, 256, 32767]
    for n in random.Random(1).sample(range(2**30), 2000):
        r = geofence.isqrt(n)
        assert r * r <= n < (r + 1) * (r + 1)
    kx, ky = route_package_writer.scale_q16(52_287_100)
    for d in (0, 1, -1, 12345, -999_999, 4_000_000):
        assert abs(geofence.mul_q16(d, kx) - d * kx / 65536) <= 0.5
        assert abs(geofence.mul_q16(d, ky) - d * ky / 65536) <= 0.5


def test_verdict_uses_margin_accuracy_age_and_hdop(tmp_path):
    # one 10 m x 10 m house at the origin; fixes east of it, along the x axis
    stops = [{"stop_id": "S1", "seq": 1, "address": "1 A St", "items": ["X"],
              "rings": [[(0, 0), (100, 0), (100, 100), (0, 100)]]}]
    lat0, lon0 = 52_000_000, 5_000_000
    p = tmp_path / "one.pkg"
    p.write_bytes(route_package_writer.build("R", 20261127, lat0, lon0, stops, KEY))
    pkg = route_package.RoutePackage(str(p), KEY)
    kx = pkg.kx

    def fix(x_dm: int, hdop_x10: int = 10, age: int = 1) -> tuple[int, int]:
        lon = lon0 + round(x_dm * 65536 / kx)
        lat = lat0 + round(50 * 65536 / pkg.ky)
        return geofence.verdict(pkg, 0, lat, lon, hdop_x10, age)

    assert fix(50) == (record.V_INSIDE, 0)
    v, d = fix(130)  # 3 m out: within the 5 m margin
    assert v == record.V_INSIDE and abs(d - 30) <= 1
    v, d = fix(180)  # 8 m out, HDOP 1.0 -> accuracy 5 m: margin + accuracy = 10 m
    assert v == record.V_UNSURE and abs(d - 80) <= 1
    v, d = fix(230)  # 13 m out
    assert v == record.V_OUTSIDE and abs(d - 130) <= 1
    assert fix(230, hdop_x10=30)[0] == record.V_UNSURE  # accuracy 15 m: could be inside
    assert fix(50, age=60)[0] == record.V_UNSURE  # stale
    assert fix(50, hdop_x10=80)[0] == record.V_UNSURE  # poor geometry
    assert fix(50, hdop_x10=0)[0] == record.V_UNSURE  # no fix quality
    assert geofence.verdict(pkg, 0, None, None, 10, 0) == (record.V_UNSURE, 0)
    assert geofence.accuracy_dm(12) == 60
    pkg.close()


def test_per_fix_test_allocates_nothing_under_heap_lock(mpy, pkg_path):
    out = mpy(
        f"""
        import micropython
        from firmware import geofence, route_package
        pkg = route_package.RoutePackage({str(pkg_path)!r}, {KEY!r})
        pts = [(pkg.gx0 + 300, pkg.gy0 + 300), (pkg.gx0 - 9000, pkg.gy0 - 9000), (0, 0), (123, -456)]
        res = bytearray(64)
        def probe(x, y):
            micropython.heap_lock()
            a = geofence.nearest(pkg, x, y)
            d = pkg.near_dist
            b = geofence.nearest_linear(pkg, x, y)
            e = pkg.near_dist
            f = 0
            n = 0
            while n < 3:
                f = geofence._test(pkg, n, x, y, geofence.BIG)
                n += 1
            micropython.heap_unlock()
            return a == b and d == e
        ok = True
        most = 0  # fences one lookup tested: past len(pkg.marks) the next one clears every bit
        for x, y in pts:
            ok = probe(x, y) and ok
            most = max(most, pkg.nmarks)
        ok = ok and most > len(pkg.marks) and probe(*pts[0])
        # 300 fixes, each forgetting the fences the one before tested: that must not allocate either
        def many():
            micropython.heap_lock()
            k = 0
            while k < 300:
                geofence.nearest(pkg, k * 7, -k * 5)
                k += 1
            micropython.heap_unlock()
        many()
        print(ok)
        """
    )
    assert out.strip() == "True"


def test_vm_engine_matches_shapely_on_a_few_hundred_points(mpy, pkg_path):
    fences = fences_of(pkg_path)
    tree = shapely.STRtree(fences)
    pts = sample_points(fences, tree, 300, seed=23)
    out = mpy(
        f"""
        from firmware import geofence, route_package
        pkg = route_package.RoutePackage({str(pkg_path)!r}, {KEY!r})
        for x, y in {pts!r}:
            i = geofence.nearest(pkg, x, y)
            print(i, 1 if pkg.near_in else 0, pkg.near_dist)
        """
    ).split("\n")
    for p, line in zip(pts, out, strict=False):
        i, inside, d = (int(v) for v in line.split())
        want_in, want_d = oracle(tree, p)
        assert inside == (1 if want_in else 0), p
        assert (i in want_in) if want_in else abs(d - want_d) <= 5, (p, d, want_d)


def test_fence_check_reports_nearest_fence_for_lat_lon_points(tmp_path):
    fc = town.town(seed=3, stops=40, area="south")
    res = route_compile.compile_geojson(fc, key=KEY)
    pkg_file = tmp_path / "s.pkg"
    pkg_file.write_bytes(res.package)
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY.hex())
    pkg = route_package.RoutePackage(str(pkg_file), KEY)
    lat0, lon0, kx, ky = pkg.origin_lat_e6, pkg.origin_lon_e6, pkg.kx, pkg.ky
    pkg.close()
    fences = fences_of(pkg_file)
    rows = []
    want = []
    rng = random.Random(2)
    for feat in fc["features"][:25]:
        c = shapely.geometry.shape(feat["geometry"]).representative_point()
        for dlon, dlat in ((0, 0), (rng.uniform(-3e-4, 3e-4), rng.uniform(-3e-4, 3e-4))):
            lat, lon = round(c.y + dlat, 7), round(c.x + dlon, 7)
            rows.append(f"{lat:.7f},{lon:.7f},1.0")
            p = Point(route_package_writer.project(kx, ky, lat0, lon0, round(lat * 1e6), round(lon * 1e6)))
            want.append(min(f.distance(p) for f in fences) / 10)
    pts = tmp_path / "pts.csv"
    pts.write_text("lat,lon,hdop\n" + "\n".join(rows) + "\n")
    out = fence_check.fence_check(pkg_file, pts, KEY)
    assert len(out) == len(rows)
    for k, (line, dist) in enumerate(zip(out, want, strict=True)):
        sid, contains, dm, verdict = line.split(",")
        assert abs(float(dm) - dist) <= 0.5, line
        assert contains == ("1" if dist == 0 else "0")
        assert verdict in {"inside", "outside", "unsure"}
        if k % 2 == 0:
            assert sid == fc["features"][k // 2]["properties"]["stop_id"] and verdict == "inside"
    with pytest.raises(fence_check.FenceCheckError, match="signature"):
        fence_check.fence_check(pkg_file, pts, bytes(32))


def test_locate_finds_the_stop_under_a_lat_lon_fix(pkg_path):
    fences = fences_of(pkg_path)
    pkg = route_package.RoutePackage(str(pkg_path), KEY)
    for i in (0, 17, 59, 119):
        c = fences[i].representative_point()
        lat = pkg.origin_lat_e6 + round(c.y * 65536 / pkg.ky)
        lon = pkg.origin_lon_e6 + round(c.x * 65536 / pkg.kx)
        assert geofence.locate(pkg, lat, lon) == (i, True, 0)
    j, inside, d = geofence.locate(pkg, pkg.origin_lat_e6 + 10_000_000, pkg.origin_lon_e6)
    assert 0 <= j < pkg.stop_count and not inside and d > geofence.FAR  # 10 degrees away: bbox bound
    pkg.close()


@pytest.mark.slow
def test_fence_check_judges_2000_points_on_1000_irregular_footprints_in_half_the_default_heap(tmp_path):
    # The names of the stops judged used to be kept in a dict grown point after point: on this
    # route it shredded the heap and died with MemoryError after a few hundred points at 256K.
    fc = town.town(seed=5, stops=1000, area="north", irregular=True)
    pkg_file = tmp_path / "irregular.pkg"
    pkg_file.write_bytes(route_compile.compile_geojson(fc, key=KEY).package)
    pkg = route_package.RoutePackage(str(pkg_file), KEY)
    lat0, lon0, kx, ky = pkg.origin_lat_e6, pkg.origin_lon_e6, pkg.kx, pkg.ky
    pkg.close()
    fences = fences_of(pkg_file)
    tree = shapely.STRtree(fences)
    ids = [f["properties"]["stop_id"] for f in fc["features"]]
    rng = random.Random(4)
    rows, local = [], []
    while len(rows) < 2000:
        c = shapely.geometry.shape(fc["features"][rng.randrange(1000)]["geometry"]).centroid
        lat_e6 = round((c.y + rng.uniform(-1e-4, 1e-4)) * 1e6)  # within about 11 m of the centroid
        lon_e6 = round((c.x + rng.uniform(-1.5e-4, 1.5e-4)) * 1e6)
        p = route_package_writer.project(kx, ky, lat0, lon0, lat_e6, lon_e6)
        if any(fences[int(i)].boundary.distance(Point(p)) < 0.6 for i in tree.query(Point(p).buffer(1))):
            continue  # within 0.06 m of an edge: the 0.1 m rounding decides, not the engine
        rows.append(f"{lat_e6 / 1e6:.6f},{lon_e6 / 1e6:.6f},1.0")
        local.append(p)
    pts = tmp_path / "points.csv"
    pts.write_text("\n".join(rows) + "\n")
    out = fence_check.fence_check(pkg_file, pts, KEY, heap="128K")
    assert len(out) == 2000
    for line, p in zip(out, local, strict=True):
        sid, contains, dm, _ = line.split(",")
        inside, dist = oracle(tree, p)
        assert contains == ("1" if inside else "0"), line
        if inside:
            assert sid in {ids[i] for i in inside}, line
        else:
            assert abs(float(dm) * 10 - dist) <= 5, (line, dist / 10)  # 0.5 m


def test_stop_ids_are_read_into_one_buffer_without_allocating_on_the_vm(mpy, pkg_path):
    out = mpy(f"""
        import micropython
        from firmware import route_package
        pkg = route_package.RoutePackage({str(pkg_path)!r}, {KEY!r})
        buf = bytearray(256)
        total = [0]
        def every_id():
            micropython.heap_lock()
            try:
                i = 0
                while i < pkg.stop_count:
                    total[0] += pkg.stop_id_into(i, buf)
                    i += 1
            finally:
                micropython.heap_unlock()
        every_id()
        n = pkg.stop_id_into(119, buf)
        print(bytes(buf[:n]).decode(), pkg.stop(119).stop_id, total[0])
        """)
    pkg = route_package.RoutePackage(str(pkg_path), KEY)
    ids = [pkg.stop(i).stop_id for i in range(pkg.stop_count)]
    pkg.close()
    assert out.split() == [ids[119], ids[119], str(sum(len(s) for s in ids))]
