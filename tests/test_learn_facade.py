"""The facade effect (host_tools/learn_facade.py, docs/fence-learning.md): a street of 24 houses
whose doors are at their front walls, fixes on three days that scatter across the wall twice as
far as along it, or the same every way."""

from __future__ import annotations

import math

import pytest
from shapely.geometry import Point, box

from host_tools import learn, learn_facade, learn_rules, learn_zone
from tests.test_learn import FRAME, History, lonlat_ring

HOUSES = {f"way/{n}": box(14 * n, 0, 14 * n + 10, 10) for n in range(24)}  # front walls at y = 10
DOOR_Y = 10.5


def street():
    feats = [{"type": "Feature", "properties": {
        "stop_id": f"S{n}", "seq": n + 1, "name": "", "address": f"{n + 1} Wall Street", "items": [],
        "match": "exact", "match_score": 100, "building_id": bid},
        "geometry": {"type": "Polygon", "coordinates": [lonlat_ring(g)]}}
        for n, (bid, g) in enumerate(HOUSES.items())]
    return {"type": "FeatureCollection", "route_id": "TEST-1", "features": feats}


def footprints():
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": bid, "properties": {"building": "yes"},
         "geometry": {"type": "Polygon", "coordinates": [lonlat_ring(g)]}} for bid, g in HOUSES.items()]}


def deliveries(across: float, along: float) -> History:
    """Each door's three visits: one on the door, two off it by (along, across) either way."""
    h = History()
    for n in range(len(HOUSES)):
        for day, k in ((2, 1), (3, -1), (4, 0)):
            h.deliver(f"S{n}", 14 * n + 5 + k * along, DOOR_Y + k * across, day=day, noise_m=0.001)
    return h


def test_fixes_that_err_across_the_walls_give_elliptical_zones_long_across_them():
    learned = learn.learn(street(), deliveries(across=2.4, along=1.2).records, footprints(), frame=FRAME)
    assert learned.wall_ratio == pytest.approx(2.0, abs=0.015) and learned.wall_stops == 24  # 1e-6 deg fixes
    assert learned.walls() == (f"fixes at walls: error across the wall / along it {learned.wall_ratio:.2f} "
                               "over 24 stops at walls: zones at walls are ellipses, long across the wall")
    for p in learned.proposals:
        assert p.action == "extend", p.why
        assert "an ellipse of" in p.why and f"{learned.wall_ratio:.2f}x the error across the wall" in p.why
        fence = p.new
        assert fence is not None and p.evidence.wall == pytest.approx((0.0, 1.0))
        x0, y0, x1, y1 = fence.bounds
        assert y1 - y0 > 2 * (x1 - x0)  # long across the wall (north), short along it
        # a circle of the same area holds fewer of the next deliveries
        ev = p.evidence
        assert ev.point is not None and ev.miss_new <= learn_rules.MISS_TARGET
        circle = Point(ev.point).buffer((fence.area / math.pi) ** 0.5)
        assert learn_zone.predicted_miss(ev.point, ev.sigma_m, circle, ev.wall, ev.ratio) > 2 * ev.miss_new


def test_fixes_that_err_the_same_every_way_keep_circular_zones():
    learned = learn.learn(street(), deliveries(across=1.7, along=1.7).records, footprints(), frame=FRAME)
    assert (learned.wall_ratio, learned.wall_stops) == (1.0, 24)
    p = learned.proposals[0]
    assert p.action == "extend" and "a circle of" in p.why
    assert p.new is not None and p.evidence.point is not None
    assert p.new.equals(learn_zone.delivery_zone(p.evidence.point, p.evidence.sigma_m))


def test_too_few_stops_at_walls_measure_nothing():
    door = ((0.0, 1.0), (0.0, 0.0), [(0.0, 3.0, 1.0), (1.0, 0.0, 1.0)])  # 3 m across, 1 m along
    assert learn_facade.route_ratio([door] * 19) == 1.0
    assert learn_facade.route_ratio([door] * 20) == 3.0


def test_the_wall_is_the_nearest_one_of_any_ring():
    house = box(0, 0, 10, 10)
    assert learn_facade.wall_normal(house, (5, 10.5)) == pytest.approx((0.0, 1.0))
    assert learn_facade.wall_normal(house, (-0.5, 5)) == pytest.approx((-1.0, 0.0))
    assert learn_facade.wall_normal(house, (5, 9)) == pytest.approx((0.0, 1.0))  # inside: still outward
    zone = learn_facade.ellipse((5, 10.5), 4.0, 2.0, (0.0, 1.0), 4)
    assert zone.contains(Point(5, 14.4)) and not zone.contains(Point(7.5, 10.5))
