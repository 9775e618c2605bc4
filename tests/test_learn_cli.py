"""`depot fences learn` end to end on a store: review, apply, the route's versions and fence history
in the store, and the applied GeoJSON compiled by `depot route compile`."""

from __future__ import annotations

import json

import pytest

from host_tools import cli, route_compile
from host_tools.store import Store
from tests.test_learn import History, footprint_fc, route_fc


@pytest.fixture
def depot(tmp_path):
    """A store holding three days of deliveries: S1 at its rear entrance, S2 at house C (matched to
    house B), S3 once at its door; route and footprints as files."""
    store = Store(tmp_path / "depot.sqlite3")
    store.enrol("HH-1")
    h = History()
    for day in (2, 3, 4):
        h.deliver("S1", 5, -6, day=day, n=2, override=True, reason=41)
        h.deliver("S2", 5, 39.5, day=day, n=2, override=True, reason=43)
    h.deliver("S3", 5, 50.5, day=4)
    res = store.ingest("HH-1", [r.encode() for r in h.records], "dock")
    assert res.stored == len(h.records)
    store.close()
    fc = route_fc(("S1", "way/1", None), ("S2", "way/2", None), ("S3", "way/3", None))
    fc["features"][0]["properties"]["address"] = "1 <script>alert(1)</script> Street"
    (tmp_path / "route.geojson").write_text(json.dumps(fc))
    (tmp_path / "buildings.geojson").write_text(json.dumps(footprint_fc()))
    return tmp_path


def depot_cli(tmp, *args):
    return cli.main(["--store", str(tmp / "depot.sqlite3"), "fences", "learn", "--route", "TEST-1", *args])


def test_review_without_apply_writes_nothing_but_the_page(depot, capsys):
    code = depot_cli(depot, "--from", str(depot / "route.geojson"), "--footprints",
                     str(depot / "buildings.geojson"), "--out", str(depot / "next.geojson"),
                     "--html", str(depot / "review.html"))
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("  S1           extend delivery point 5.4 m from building way/1")
    assert out[1].startswith("  S2           move   deliveries cluster at building way/3")
    assert out[2] == ("learned 3 stops of route TEST-1: keep 1 (1 with too little evidence), extend 1, "
                      "move 1, create 0; flagged for review 0")
    assert out[-1] == f"nothing applied: --apply writes {depot / 'next.geojson'} and keeps it as the " \
                      "route's next version"
    assert not (depot / "next.geojson").exists()
    page = (depot / "review.html").read_text()
    assert 'data-stop="S1" data-action="extend"' in page and 'data-stop="S2" data-action="move"' in page
    assert "Entrance away from building &times;6" in page
    with Store(depot / "depot.sqlite3") as st:
        assert st.route_version("TEST-1") is None


def test_apply_keeps_versions_and_history_and_the_next_night_learns_from_the_store(depot, capsys):
    args = ["--footprints", str(depot / "buildings.geojson"), "--out", str(depot / "next.geojson"), "--apply"]
    assert depot_cli(depot, "--from", str(depot / "route.geojson"), *args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (f"{depot / 'next.geojson'}: version 2 of route TEST-1, 2 fence(s) changed; "
                       f"next: depot route compile {depot / 'next.geojson'} --out TEST-1.pkg")
    nxt = json.loads((depot / "next.geojson").read_text())
    props = [f["properties"] for f in nxt["features"]]
    assert [(p["building_id"], (p.get("fence") or {}).get("action")) for p in props] == [
        ("way/1", "extend"), ("way/3", "move"), ("way/3", None)]
    assert props[0]["fence"]["night"] == "2026-11-04"
    compiled = route_compile.compile_geojson(nxt)  # what `depot route compile` does next
    assert compiled.stops == 3
    with Store(depot / "depot.sqlite3") as st:
        assert (st.route_version("TEST-1") or ())[:2] == (2, "2026-11-04")
        hist = st.fence_history("TEST-1")
        assert [(h.stop_id, h.version, h.night, h.action) for h in hist] == [
            ("S1", 2, "2026-11-04", "extend"), ("S2", 2, "2026-11-04", "move")]
        assert json.loads(hist[1].detail)["reasons"] == {"Fence wrong on map": 6}
    # the next night: no --from, the store's version is learned from, and nothing creeps
    assert depot_cli(depot, *args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("learned 3 stops of route TEST-1: keep 3 (1 with too little evidence), extend 0, "
                      "move 0, create 0; flagged for review 0")
    assert out[-1].startswith(f"{depot / 'next.geojson'}: version 3 of route TEST-1, 0 fence(s) changed")


def test_the_review_page_escapes_what_the_data_says(depot):
    depot_cli(depot, "--from", str(depot / "route.geojson"), "--out", str(depot / "n.geojson"),
              "--html", str(depot / "review.html"))
    page = (depot / "review.html").read_text()
    assert "<script>" not in page
    assert "1 &lt;script&gt;alert(1)&lt;/script&gt; Street" in page


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "x.geojson"], "depot: error: the store has no learned version of route TEST-1. Pass --from "
                             "ROUTE.geojson, the GeoJSON the route was compiled from."),
    (["--from", "missing.geojson", "--out", "x.geojson"], "depot: error: cannot read --from missing.geojson"),
    (["--since", "yesterday", "--out", "x.geojson"], "depot: error: --since 'yesterday' is not a date. "
                                                     "Write it as YYYY-MM-DD."),
])
def test_mistakes_get_one_line(depot, capsys, monkeypatch, args, message):
    monkeypatch.chdir(depot)
    assert depot_cli(depot, *args) == 2
    assert capsys.readouterr().err.startswith(message)


def test_footprints_that_are_not_a_feature_collection_get_one_line(depot, capsys):
    (depot / "list.geojson").write_text("[1, 2]")
    assert depot_cli(depot, "--from", str(depot / "route.geojson"), "--out", str(depot / "x.geojson"),
                     "--footprints", str(depot / "list.geojson")) == 2
    assert capsys.readouterr().err == ("depot: error: the footprints are not a GeoJSON FeatureCollection. "
                                       "Check the --from route and the --footprints file.\n")


def test_a_route_file_of_another_route_is_refused(depot, capsys):
    fc = json.loads((depot / "route.geojson").read_text())
    fc["route_id"] = "OTHER-2"
    (depot / "other.geojson").write_text(json.dumps(fc))
    assert depot_cli(depot, "--from", str(depot / "other.geojson"), "--out", str(depot / "x.geojson")) == 2
    assert capsys.readouterr().err == (f"depot: error: {depot / 'other.geojson'} is route OTHER-2, "
                                       "not TEST-1. Pass the route's own GeoJSON.\n")


def test_reports_show_the_match_rate_by_day_and_each_stops_fence_history(depot, capsys):
    from host_tools import learn_report, report, routes

    assert depot_cli(depot, "--from", str(depot / "route.geojson"), "--out", str(depot / "next.geojson"),
                     "--footprints", str(depot / "buildings.geojson"), "--apply") == 0
    with Store(depot / "depot.sqlite3") as st:
        rep = report.build(routes.from_geojson(depot / "next.geojson"), st)
    assert rep.days == [learn_report.Day("2026-11-02", 4, 0), learn_report.Day("2026-11-03", 4, 0),
                        learn_report.Day("2026-11-04", 5, 1)]
    assert [(sid, [(c.version, c.action) for c in cs]) for sid, cs in sorted(rep.fences.items())] == [
        ("S1", [(2, "extend")]), ("S2", [(2, "move")])]
    page = report.render(rep, "html")
    assert page.count('<circle class="day"') == 3
    assert 'data-day="2026-11-04" data-rate="0.2000"' in page
    assert '<tr data-stop="S1"><td>S1</td><td class=num>2</td><td>2026-11-04</td><td>extend</td>' in page
    text = report.render(rep, "text")
    assert "  2026-11-04   20.0%  (1 of 5 deliveries inside)\n" in text
    assert "  S2           v2 2026-11-04 move   deliveries cluster at building way/3" in text
