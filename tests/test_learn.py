"""Fence learning on crafted delivery histories (docs/fence-learning.md): a street of three houses
in a local frame, deliveries at chosen points with chosen GNSS noise on chosen days."""

from __future__ import annotations

import calendar
import random

import pytest
from shapely.geometry import Point, box, shape

from firmware import record
from host_tools import learn, learn_propose, learn_route, learn_rules
from sim import town

LAT0, LON0 = 52.29, 6.09
FRAME = learn_route.Frame(LON0, LAT0)
# house A and its neighbour B on the south side of a street (y 20..30), house C across it
HOUSES = {"way/1": box(0, 0, 10, 10), "way/2": box(14, 0, 24, 10), "way/3": box(0, 40, 10, 50)}


def lonlat_ring(g):
    return [list(FRAME.lonlat(x, y)) for x, y in g.exterior.coords]


def footprint_fc():
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": bid, "properties": {"building": "yes"},
         "geometry": {"type": "Polygon", "coordinates": [lonlat_ring(g)]}} for bid, g in HOUSES.items()]}


def route_fc(*stops):
    """stops: (stop_id, building_id or None, geocode (x, y) or None)"""
    feats = []
    for n, (sid, bid, geocode) in enumerate(stops, 1):
        props = {"stop_id": sid, "seq": n, "name": "", "address": f"{n} Test Street",
                 "items": [town.s10("RR", f"{n:08d}", "NL")],  # an id the compiler accepts
                 "match": "exact" if bid else "geocode", "match_score": 100 if bid else 0,
                 "building_id": bid}
        if bid:
            geom = {"type": "Polygon", "coordinates": [lonlat_ring(HOUSES[bid])]}
        else:
            geom = {"type": "Point", "coordinates": list(FRAME.lonlat(*geocode))}
            props["radius_m"] = 25.0
        feats.append({"type": "Feature", "properties": props, "geometry": geom})
    return {"type": "FeatureCollection", "route_id": "TEST-1", "features": feats}


class History:
    """Confirmed deliveries as the store holds them."""

    def __init__(self, seed=1):
        self.records = []
        self.rng = random.Random(seed)

    def deliver(self, stop_id, x, y, day, noise_m=1.5, hdop=1.0, override=False, reason=0, n=1, **kw):
        for _ in range(n):
            lon, lat = FRAME.lonlat(x + self.rng.gauss(0, noise_m), y + self.rng.gauss(0, noise_m))
            t = calendar.timegm((2026, 11, day, 10, len(self.records) % 60, 0))
            self.records.append(record.Record(
                seq=len(self.records) + 1, outcome=kw.get("outcome", record.DELIVERED), device_id="HH-1",
                route_id="TEST-1", stop_id=stop_id, item_id=f"IT{len(self.records)}",
                verdict=record.V_OUTSIDE if override else record.V_INSIDE,
                match=kw.get("match", record.M_ITEM),
                reason=reason, flags=record.F_OVERRIDE if override else 0, corrects=kw.get("corrects", 0),
                device_time=t, gnss_time=t, lat_e6=round(lat * 1e6), lon_e6=round(lon * 1e6),
                accuracy_dm=int(hdop * 50), fix_age_s=kw.get("age", 1)))
        return self


def assert_bounded(p: learn_propose.Proposal, building: str) -> None:
    """The bound (docs/fence-learning.md): the learned point within the building + 10 m, give or take
    2 standard errors of the point; the fence a circle of at most 30 m around that point."""
    assert p.evidence.point is not None and p.new is not None
    allowance = learn_rules.POINT_SES * p.evidence.point_se_m
    assert HOUSES[building].distance(Point(p.evidence.point)) <= learn_rules.BOUND_M + allowance
    assert Point(p.evidence.point).buffer(learn_rules.CIRCLE_MAX_M + 0.01).contains(p.new)


def only(learned, stop_id) -> learn_propose.Proposal:
    return next(p for p in learned.proposals if p.stop_id == stop_id)


def new_fence(p: learn_propose.Proposal):
    assert p.new is not None, p.why
    return p.new


def test_a_single_delivery_changes_nothing():
    fc = route_fc(("S1", "way/1", None))
    h = History().deliver("S1", 5, -12, day=2, override=True, reason=41)  # far behind, but only once
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert (p.action, p.enough, p.new) == ("keep", False, None)
    assert p.why == "too little evidence: 1 usable fixes on 1 day(s), needs 2 on 2"
    assert p.evidence.reasons == {"Entrance away from building": 1}
    assert learn.apply(fc, learn.learn(fc, h.records, footprint_fc(), frame=FRAME), 2, "2026-11-02") == fc


def test_many_deliveries_on_one_day_are_not_enough():
    fc = route_fc(("S1", "way/1", None))
    h = History().deliver("S1", 5, -7, day=2, n=6, override=True, reason=41)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert (p.action, p.enough, p.evidence.days) == ("keep", False, 1)


def test_a_fence_that_already_holds_the_next_deliveries_is_kept():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):  # a door in the middle of the footprint (a passage), HDOP 1.2
        h.deliver("S1", 5, 5, day=day, n=2, noise_m=1.0, hdop=1.2)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert (p.action, p.enough, p.new) == ("keep", True, None)
    assert p.why.startswith("the fence already covers the delivery point (0.")
    assert p.evidence.miss_now <= learn_rules.KEEP_MISS


def test_a_fence_that_holds_the_deliveries_but_is_far_too_large_becomes_their_zone():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):  # the same passage under an open sky (HDOP 1): a zone of ~37 m2 does
        h.deliver("S1", 5, 5, day=day, n=2, noise_m=1.0)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert p.action == "extend" and p.evidence.miss_now <= learn_rules.KEEP_MISS
    assert p.why.startswith("the fence holds the deliveries but is 2.7x the zone they need")
    assert HOUSES["way/1"].area > learn_rules.SHRINK * new_fence(p).area
    assert new_fence(p).contains(Point(5, 5)) and p.evidence.miss_new <= 2 * learn_rules.MISS_TARGET


def test_a_door_at_the_facade_gets_a_tight_zone_around_it():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, 10.5, day=day, n=2, noise_m=2.0)  # the front door, on the street side
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    # 2 m of noise per axis: the footprint and the device's 5 m margin would judge ~3% of the next
    # deliveries outside; the zone around the door, sized from the fixes, predicts 0.5%
    assert p.action == "extend" and p.evidence.miss_now > learn_rules.KEEP_MISS
    assert p.evidence.miss_new <= 2 * learn_rules.MISS_TARGET
    assert new_fence(p).contains(Point(5, 10.5))
    assert new_fence(p).area < HOUSES["way/1"].area / 2  # the far side of the house holds no delivery


def test_a_door_whose_fixes_are_poor_gets_room_before_they_miss():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):  # a yard: HDOP 2.5, so the receiver itself claims 12.5 m
        h.deliver("S1", 5, 10.5, day=day, n=2, noise_m=1.0, hdop=2.5)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert (p.action, p.evidence.inside_now, p.evidence.r95_m) == ("extend", 1.0, 12.5)
    assert new_fence(p).contains(Point(5, 10.5 + 12.5 - learn_rules.DEVICE_MARGIN_M))  # r95 within the margin
    assert_bounded(p, "way/1")
    # the zone is not clipped to the house + 10 m: the next fixes scatter 12.5 m about the door
    assert not HOUSES["way/1"].buffer(learn_rules.BOUND_M).contains(new_fence(p))


def test_a_van_scanner_far_from_every_building_is_flagged_not_learned():
    fc = route_fc(("S3", "way/3", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S3", 5, 75, day=day, n=2, override=True, reason=40)  # parked 25 m from house C
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S3")
    assert (p.action, p.new) == ("flag", None)
    assert p.why.startswith("deliveries sit 25 m from the nearest building (25 m from building way/3)")
    assert learn.apply(fc, learn.learn(fc, h.records, footprint_fc(), frame=FRAME), 2, "2026-11-04") == fc


def test_scattered_deliveries_are_flagged():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day, (x, y) in zip((2, 3, 4, 5, 6, 7), [(5, 12), (-15, 5), (5, -20), (25, 20), (-10, -15), (30, -5)],
                           strict=True):
        h.deliver("S1", x, y, day=day, noise_m=0.5)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert p.action == "flag"
    assert p.why.startswith("deliveries scatter")


def test_a_rear_entrance_extends_the_fence_within_its_bound():
    fc = route_fc(("S1", "way/1", None))
    door = (5.0, -6.0)  # 6 m behind house A's back wall
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", *door, day=day, n=2, override=True, reason=41)
    learned = learn.learn(fc, h.records, footprint_fc(), frame=FRAME)
    p = only(learned, "S1")
    assert p.action == "extend"
    assert p.new is not None and p.new.contains(Point(door))
    assert_bounded(p, "way/1")
    assert p.new.area < HOUSES["way/1"].area  # the zone where the deliveries happen, not the house
    assert p.evidence.inside_now < 0.5 and p.evidence.inside_new == 1.0
    assert p.evidence.reasons == {"Entrance away from building": 6}
    out = learn.apply(fc, learned, 2, "2026-11-04")
    props = out["features"][0]["properties"]
    assert props["building_id"] == "way/1" and props["fence"]["action"] == "extend"
    assert props["fence"]["days"] == 3 and props["fence"]["fixes"] == 6
    assert FRAME.to_local(shape(out["features"][0]["geometry"])).contains(Point(door))
    # the next night, with the same evidence, the learned fence is kept: learning does not creep
    again = only(learn.learn(out, h.records, footprint_fc(), frame=FRAME), "S1")
    assert again.action == "keep"


def test_a_door_near_the_bound_is_covered_up_to_it_and_one_past_it_is_flagged():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, -8.5, day=day, n=2, noise_m=3.0, override=True, reason=41)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert p.action == "extend" and new_fence(p).contains(Point(5, -8.5))
    assert_bounded(p, "way/1")
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, -14, day=day, n=2, override=True, reason=41)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert (p.action, p.new) == ("flag", None)


@pytest.mark.parametrize(("hdop", "action"), [(1.0, "flag"), (1.6, "extend")])
def test_a_gate_just_past_the_bound_is_judged_with_the_point_s_own_error(hdop, action):
    # three days of fixes averaging 13 m behind the house: 3 m past the bound. HDOP 1 (2 m per
    # axis): the point is known to 1.2 m, so 13 m is no gate 10 m out; HDOP 1.6 under trees
    # (3.3 m per axis): known to 1.9 m, so a gate 9-10 m out is as likely as not to land here
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, -13, day=day, n=2, noise_m=0.01, hdop=hdop, override=True, reason=41)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert p.action == action
    if action == "extend":
        assert_bounded(p, "way/1")
        assert round(p.evidence.point_se_m, 2) == 1.89
    else:
        assert p.why.startswith("deliveries sit 13 m from the nearest building")


def test_deliveries_at_another_building_move_the_fence_there():
    fc = route_fc(("S1", "way/1", None))  # matched to house A, delivered at house C across the street
    h = History()
    for day in (2, 3, 5):
        h.deliver("S1", 5, 39.5, day=day, n=2, override=True, reason=43)
    learned = learn.learn(fc, h.records, footprint_fc(), frame=FRAME)
    p = only(learned, "S1")
    assert (p.action, p.old_building, p.new_building) == ("move", "way/1", "way/3")
    assert new_fence(p).contains(Point(5, 39.5))  # the zone at house C's door, within C's bound
    assert_bounded(p, "way/3")
    assert p.evidence.reasons == {"Fence wrong on map": 6}
    props = learn.apply(fc, learned, 2, "2026-11-05")["features"][0]["properties"]
    assert (props["building_id"], props["fence"]["action"]) == ("way/3", "move")


def test_a_move_needs_the_footprints_or_a_building_of_the_route():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 5):
        h.deliver("S1", 5, 39.5, day=day, n=2, override=True, reason=43)
    p = only(learn.learn(fc, h.records, None, frame=FRAME), "S1")  # house C is in no data the learner has
    assert p.action == "flag"
    with_c = route_fc(("S1", "way/1", None), ("S3", "way/3", None))
    p = only(learn.learn(with_c, h.records, None, frame=FRAME), "S1")  # ...but it is S3's matched building
    assert (p.action, p.new_building) == ("move", "way/3")


def test_an_unmatched_stop_gets_a_fence_from_its_deliveries():
    fc = route_fc(("S4", None, (60.0, 60.0)), ("S5", None, (5.0, 70.0)))  # prior geocodes, 25 m circles
    h = History()
    for day in (2, 3, 4):
        h.deliver("S4", 90, 90, day=day, n=2)  # a new build nowhere in the footprints
        h.deliver("S5", 5, 50.5, day=day, n=2)  # at house C's door
    learned = learn.learn(fc, h.records, footprint_fc(), frame=FRAME)
    new_build, at_c = only(learned, "S4"), only(learned, "S5")
    assert new_build.action == "create" and new_build.new_building == ""
    assert new_fence(new_build).contains(Point(90, 90))
    area = new_fence(new_build).area
    assert 3 * learn_rules.CIRCLE_MIN_M ** 2 <= area <= 3 * learn_rules.CIRCLE_MAX_M ** 2  # 12-gons
    assert (at_c.action, at_c.new_building) == ("create", "way/3")
    assert new_fence(at_c).contains(Point(5, 50.5))
    assert_bounded(at_c, "way/3")


def test_outliers_and_poor_fixes_do_not_pull_the_point():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, -6, day=day, n=2, noise_m=0.5)
    h.deliver("S1", 60, -6, day=5, noise_m=0.1)  # a multipath jump
    h.deliver("S1", 5, -12, day=5, noise_m=0.1, hdop=4.0)  # a poor fix, kept but weighted low
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert (p.evidence.usable, p.evidence.used) == (8, 7)
    assert p.evidence.point is not None
    x, y = p.evidence.point
    assert abs(x - 5) < 1.0 and abs(y + 6) < 1.0


@pytest.mark.parametrize("kw", [
    {"hdop": 6.0},  # too poor for the device to judge
    {"age": 30},  # stale
    {"match": record.M_FENCE},  # matched by the fence itself: circular
    {"outcome": record.ATTEMPTED},  # not delivered
])
def test_fixes_the_learner_does_not_use(kw):
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, -6, day=day, n=2, **kw)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME), "S1")
    assert (p.action, p.evidence.usable) == ("keep", 0)


def test_a_corrected_delivery_is_not_evidence_and_since_limits_the_days():
    fc = route_fc(("S1", "way/1", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, -6, day=day, n=2)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME, since="2026-11-03"), "S1")
    assert (p.evidence.deliveries, p.evidence.days, p.action) == (4, 2, "extend")
    h.deliver("S1", 0, 0, day=4, outcome=record.CORRECTION, corrects=6)
    h.deliver("S1", 0, 0, day=4, outcome=record.CORRECTION, corrects=5)
    p = only(learn.learn(fc, h.records, footprint_fc(), frame=FRAME, since="2026-11-03"), "S1")
    assert (p.evidence.deliveries, p.evidence.days, p.action) == (2, 1, "keep")


def test_a_stop_with_no_fence_at_all_gets_one_and_the_route_then_compiles():
    from host_tools import route_compile

    fc = route_fc(("S1", "way/1", None), ("S6", None, (0.0, 0.0)))
    fc["features"][1]["geometry"] = None  # unmatched, no prior geocode: route build leaves it null
    fc["features"][1]["properties"].update(match="none", radius_m=None)
    h = History()
    for day in (2, 3):
        h.deliver("S6", 5, 50.5, day=day, n=2)  # at house C's door
    learned = learn.learn(fc, h.records, footprint_fc(), frame=FRAME)
    p = only(learned, "S6")
    assert (p.action, p.old, p.new_building) == ("create", None, "way/3")
    out = learn.apply(fc, learned, 2, "2026-11-03")
    assert route_compile.compile_geojson(out).stops == 2


def test_the_review_asks_a_person_only_about_changes_that_matter():
    fc = route_fc(("S1", "way/1", None), ("S2", "way/2", None), ("S3", "way/3", None))
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, 10.5, day=day, n=2)  # the front door, at the wall: routine
        h.deliver("S2", 19, -7, day=day, n=2, override=True, reason=41)  # a gate 7 m behind: a look
        h.deliver("S3", 5, 20.5, day=day, n=2, override=True, reason=43)  # at house A: moved, a look
    learned = learn.learn(fc, h.records, footprint_fc(), frame=FRAME)
    assert [(p.stop_id, p.action, p.routine) for p in learned.proposals] == [
        ("S1", "extend", True), ("S2", "extend", False), ("S3", "move", False)]
    assert learned.review() == ("to review: 2 (moved, created, flagged, or a door away from its building's "
                                "wall); routine: 1 (zones at the building's own wall, or re-centred by under "
                                "3 m), listed without maps")
    # later nights: four more days 3 m along re-centre S2's learned zone by under 3 m, routinely
    out = learn.apply(fc, learned, 2, "2026-11-04")
    for day in (5, 6, 7, 8):
        h.deliver("S2", 22, -9, day=day, n=2, noise_m=0.3)
    again = only(learn.learn(out, h.records, footprint_fc(), frame=FRAME), "S2")
    assert (again.action, again.routine) == ("extend", True)
    assert again.evidence.miss_now > learn_rules.KEEP_MISS
