"""Issue 13.7: one rule for route, stop and device ids wherever they become paths or names
(host_tools/ids.py). A route id of ../../../x wrote outside the store and could overwrite another
route's copy; a device id with '/' enrolled and then could never upload (404)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools import cli, ids, route_assign, route_compile, routes
from host_tools.store import Store
from sim import town

BAD = ["../../../x", "a/b", "..", ".hidden", "-rf", "x\ny", "x\x1b[31m", "sp ace", "", "é"]


@pytest.mark.parametrize("value", BAD)
def test_the_rule_refuses_paths_controls_escapes_and_flags(value: str) -> None:
    for kind in ids.MAX_LEN:
        assert ids.problem(kind, value)
        with pytest.raises(ids.BadId):
            ids.check(kind, value)


def test_the_rule_takes_ordinary_ids_and_bounds_each_kind() -> None:
    for good in ("NORTH-7", "S0001", "dev_1.2", "7"):
        assert ids.check("route id", good) == good
    assert ids.problem("route id", "R" * 17) and not ids.problem("device id", "D" * 40)
    assert ids.problem("device id", "D" * 41)


@pytest.mark.parametrize("value", ["a/b", "x\x07", "../etc", "-v", "two words"])
def test_enrol_refuses_a_bad_device_id_in_one_line_and_enrols_nothing(tmp_path: Path, capsys, value) -> None:
    db = str(tmp_path / "depot.sqlite3")
    assert cli.main(["--store", db, "enrol", "--device-id", "OK-1"]) == 0
    capsys.readouterr()
    assert cli.main(["--store", db, "enrol", f"--device-id={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("depot: error: device id ") and len(err.strip().splitlines()) == 1
    assert [d.device_id for d in Store(db).devices()] == ["OK-1"]


def test_a_route_id_that_is_a_path_is_refused_at_compile(tmp_path: Path) -> None:
    fc = town.town(seed=4, stops=3, area="south", route_id="SAFE", service_date="2026-11-27")
    for rid in ("../../../x", "a/b"):
        with pytest.raises(route_compile.CompileError, match="route id .* is not letters"):
            route_compile.compile_geojson(fc, route_id=rid)
    fc["features"][0]["properties"]["stop_id"] = "../S1"
    with pytest.raises(route_compile.CompileError, match="stop id '../S1' is not letters"):
        route_compile.compile_geojson(fc)


def test_a_package_naming_a_path_is_refused_at_assign_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    store = Store(tmp_path / "store" / "depot.sqlite3")
    store.enrol("DEV1")
    fc = town.town(seed=4, stops=3, area="south", route_id="SAFE", service_date="2026-11-27")
    # a package built without the compiler's checks (an older depot, another tool)
    monkeypatch.setattr(route_compile, "check_route_id", lambda *a: "../x")
    pkg = tmp_path / "evil.pkg"
    pkg.write_bytes(route_compile.compile_geojson(fc).package)
    monkeypatch.undo()
    with pytest.raises(ids.BadId, match=r"route id '\.\./x' is not"):
        route_assign.assign(store, pkg, "DEV1")
    assert not (tmp_path / "store" / "x.pkg").exists() and not (tmp_path / "x.pkg").exists()
    assert store.assigned_route("DEV1") is None
    with pytest.raises(routes.RouteError, match="not known to the store"):
        routes.find(store.path, "../x")
