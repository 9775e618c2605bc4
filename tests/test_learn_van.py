"""Scanned from one spot (host_tools/learn_van.py, docs/fence-learning.md): the street of
tests/test_learn_facade.py, houses 14 m apart with their front walls at y = 10, a van parked at
the kerb within 10 m of three of them."""

from __future__ import annotations

from firmware import record
from host_tools import learn, learn_point, learn_propose, learn_van
from tests.test_learn import FRAME, History
from tests.test_learn_facade import footprints, street

DOORS = {"S1": (19.0, 10.5), "S2": (33.0, 10.5), "S3": (47.0, 10.5)}
VAN = (33.0, 15.0)  # 5 m from house 2, 9.5 m from houses 1 and 3


def proposals(h: History) -> dict[str, learn_propose.Proposal]:
    learned = learn.learn(street(), h.records, footprints(), frame=FRAME)
    return {p.stop_id: p for p in learned.proposals if p.stop_id in DOORS}


def test_three_houses_scanned_from_one_spot_at_the_kerb_are_flagged_not_learned():
    h = History()
    for day in (2, 3, 4):
        for sid in DOORS:  # a minute apart, from the van
            h.deliver(sid, *VAN, day=day, noise_m=1.0, override=True, reason=41)
    for sid, p in proposals(h).items():
        assert (p.action, p.new, p.evidence.van_days) == ("flag", None, 3), sid
        assert p.why == ("scanned from one spot with the stops of 2 or more other houses within 3 min on "
                         "3 of 3 days: from a vehicle, or a shared mailbox bank? Not learned")


def test_the_same_houses_walked_door_to_door_are_learned():
    h = History()
    for day in (2, 3, 4):
        for sid, door in DOORS.items():
            h.deliver(sid, *door, day=day, noise_m=1.0)
    for sid, p in proposals(h).items():
        assert (p.action, p.evidence.van_days) == ("extend", 0), sid


def test_one_day_from_the_van_is_not_enough_and_flats_of_one_building_never_count():
    h = History()
    for day in (2, 3, 4):
        for sid, door in DOORS.items():
            h.deliver(sid, *(VAN if day == 3 else door), day=day, noise_m=1.0)
    assert {sid: p.evidence.van_days for sid, p in proposals(h).items()} == {"S1": 1, "S2": 1, "S3": 1}
    flats = [learn_van.Visit(f"F{n}", "way/2", "HH-1", "2026-11-02", 33.0, 10.5, 600 + 30 * n)
             for n in range(4)]
    assert learn_van.from_one_spot(flats) == {}
    other_device = [learn_van.Visit("S1", "way/1", "HH-1", "2026-11-02", *VAN, 600),
                    learn_van.Visit("S2", "way/2", "HH-2", "2026-11-02", *VAN, 630),
                    learn_van.Visit("S3", "way/3", "HH-3", "2026-11-02", *VAN, 660)]
    assert learn_van.from_one_spot(other_device) == {}  # three carriers, each at the kerb once


def test_the_time_of_each_fix_is_kept():
    h = History().deliver("S1", *DOORS["S1"], day=2)
    ev = learn_point.usable_fixes(h.records, FRAME)["S1"]
    assert ev.fixes[0].t == h.records[0].gnss_time and h.records[0].outcome == record.DELIVERED
