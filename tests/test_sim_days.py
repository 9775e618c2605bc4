"""`python -m sim days` in short form: a few days on a small town whose data disagree with the ground,
fences learned every night by `depot fences learn --apply` (the long form is `make bench`)."""

from __future__ import annotations

import json

import pytest
from shapely.geometry import Point, shape

from host_tools import learn_rules
from sim import days
from sim.days_town import FRAME


@pytest.fixture(scope="module")
def four_days(tmp_path_factory):
    work = tmp_path_factory.mktemp("days")
    lines: list[str] = []
    res = days.run(days=4, stops=60, seed=1, workdir=work, say=lines.append)
    return res, work, lines


def test_learning_raises_the_match_rate_and_the_baselines_see_the_same_days(four_days):
    res, _, lines = four_days
    learning, none, naive = res.rates["learning"], res.rates["none"], res.rates["naive"]
    assert learning[0] == none[0] == naive[0]  # day 1: everyone has the first route
    assert learning[1] == none[1]  # night 1: one day of evidence is never enough to change a fence
    assert all(a >= b for a, b in zip(learning, none, strict=True))
    assert learning[-1] > none[-1] + 0.05
    assert lines[0].startswith("depot route build: matched ")
    assert lines[1].startswith("day  1 (2026-12-01): ")
    assert lines[2] == ("  night 1: keep 60 (60 with too little evidence), extend 0, move 0, create 0; "
                        "flagged for review 0; to review 0, routine 0")


def test_learned_fences_stay_within_their_bound(four_days):
    _, work, _ = four_days
    route = json.loads((work / "route-day4.geojson").read_text())
    learned = [f for f in route["features"] if (f["properties"].get("fence") or {}).get("learned")]
    assert learned
    for f in learned:
        props = f["properties"]
        fence = FRAME.to_local(shape(f["geometry"]))
        base = FRAME.to_local(shape(props["fence_base"]))
        point = Point(FRAME.xy(*props["fence"]["point"]))
        assert point.buffer(learn_rules.CIRCLE_MAX_M + 0.05).contains(fence), props["stop_id"]
        if props["building_id"]:
            allowance = learn_rules.POINT_SES * props["fence"]["point_se_m"]
            assert base.distance(point) <= learn_rules.BOUND_M + allowance + 0.05, props["stop_id"]


def test_each_night_is_kept_as_a_route_version_with_a_review_page(four_days):
    res, work, _ = four_days
    assert len(res.actions) == 3
    assert [p.name for p in sorted(work.glob("review-night*.html"))] == [
        "review-night1.html", "review-night2.html", "review-night3.html"]
    assert res.area_growth <= 1.5
    assert res.naive_area_growth > 50


def test_the_report_puts_the_baselines_beside_the_learned_fences_with_their_areas(four_days):
    res, _, _ = four_days
    lines: list[str] = []
    days.report(res, lines.append)
    assert lines[0].startswith("held-out (next-day deliveries, stops with >= 3 earlier on >= 2 days)")
    names = [ln[2:55].rstrip() for ln in lines[1:6]]
    assert names == ["learned fences", "naive circle, each stop the learned area",
                     "naive circle, each stop the learned area with margin",
                     "naive circles of one radius, the learned total area", "naive 50 m circles"]
    assert lines[1].endswith("area x1.00, with the 5 m margin x1.00")
    assert abs(res.area_ratio("naive_equal_area") - 1.0) < 0.01  # as compiled: 16-gons either way
    assert res.heldout["learning"][1] == res.heldout["naive_equal_area"][1] > 0


def test_before_any_stop_can_be_held_out_the_report_says_so():
    lines: list[str] = []
    days.report(days.run(days=2, stops=20, seed=1, say=lambda *a: None), lines.append)
    assert lines[0] == "held-out: no stop had 3 deliveries on 2 days before another yet"
