"""A user's mistake gets one line on stderr, `depot: error: WHAT. WHAT TO DO`, exit status 2, no
traceback, and changes nothing: no file written, no store or folder created."""

from __future__ import annotations

import os
import pty
from pathlib import Path

import pytest

from host_tools import cli
from host_tools.store import Store
from host_tools.sync import sync_device

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "routes" / "north.geojson"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "depot.sqlite3"
    with Store(path) as st:
        st.enrol("HH-1")
    return path


def fails(capsys, argv: list[str]) -> str:
    """Run `depot argv`; the one line it printed on stderr."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("depot: error: ") and "Traceback" not in err, err
    return err.rstrip("\n").removeprefix("depot: error: ")


def test_a_board_name_that_does_not_exist(store, capsys):
    line = fails(capsys, ["--store", str(store), "flash", "--port", "/dev/null", "--device-id", "HH-1",
                          "--board", "esp32"])
    assert line == "no board named esp32. Choose one of esp32s3-sim7600, rp2350-bg95, sim, sim-noromfs."


def test_ports_and_device_ids_that_do_not_pair(store, capsys):
    line = fails(capsys, ["--store", str(store), "flash", "--port", "/dev/a", "--port", "/dev/b",
                          "--device-id", "HH-1"])
    assert line == "2 --port but 1 --device-id. Give one --device-id for each --port, in the same order."


def test_flashing_a_device_never_enrolled(store, capsys):
    line = fails(capsys, ["--store", str(store), "flash", "--port", "/dev/null", "--device-id", "HH-9"])
    assert line == "not enrolled: HH-9. Run `depot enrol --device-id HH-9` first."


def test_enrolling_twice(store, capsys):
    line = fails(capsys, ["--store", str(store), "enrol", "--device-id", "HH-1"])
    assert line == "device 'HH-1' is already enrolled. Choose another device id."


def test_report_into_a_folder_that_does_not_exist(tmp_path, store, capsys):
    out = tmp_path / "nonexist" / "r.html"
    line = fails(capsys, ["--store", str(store), "report", "--route", "R", "--out", str(out)])
    assert line == f"cannot write {out}: no folder {out.parent}. Create it, or choose another --out."
    assert not out.parent.exists()


def test_report_with_a_route_file_that_does_not_exist(store, capsys):
    line = fails(capsys, ["--store", str(store), "report", "--route", "R", "--route-file", "nope.pkg"])
    assert line == "no route file nope.pkg. Give the route's .pkg or its source .geojson."
    assert not (store.parent / "routes").exists()


def test_report_of_a_route_the_store_does_not_know(store, capsys):
    line = fails(capsys, ["--store", str(store), "report", "--route", "NOPE"])
    assert line.startswith("route 'NOPE' is not known to the store")
    assert line.endswith(". Give its package with --route-file.")


def test_assigning_to_a_device_never_enrolled_assigns_nothing(tmp_path, store, capsys):
    pkg = tmp_path / "n.pkg"
    assert cli.main(["route", "compile", str(EXAMPLE), "--out", str(pkg)]) == 0
    capsys.readouterr()
    line = fails(capsys, ["--store", str(store), "route", "assign", str(pkg), "--device", "HH-1",
                          "--device", "HH-7"])
    assert line == "device HH-7 is not enrolled. Run `depot enrol --device-id HH-7` first."
    with Store(store) as st:
        assert st.assigned_route("HH-1") is None


def test_assigning_a_package_that_does_not_exist(store, capsys):
    line = fails(capsys, ["--store", str(store), "route", "assign", "nope.pkg", "--device", "HH-1"])
    assert line == "no route package nope.pkg. Compile it first: depot route compile."


def test_compiling_a_missing_geojson_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.pkg"
    line = fails(capsys, ["route", "compile", str(tmp_path / "nope.geojson"), "--out", str(out)])
    assert line.endswith(". Nothing written.")
    assert not out.exists()


@pytest.mark.parametrize("command", [["devices"], ["sync", "--port", "/dev/null"],
                                     ["report", "--route", "R"],
                                     ["flash", "--port", "/dev/null", "--device-id", "HH-1"]])
def test_commands_refuse_a_missing_store_and_create_nothing(tmp_path, capsys, command):
    missing = tmp_path / "nonexist" / "x.sqlite3"
    line = fails(capsys, ["--store", str(missing), *command])
    assert line == (f"no store at {missing}. Check --store or DEPOT_HOME "
                    "(`depot enrol` creates the store).")
    assert not missing.parent.exists()


def test_a_typo_in_depot_home_is_not_an_empty_fleet(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEPOT_HOME", str(tmp_path / "srv" / "depto"))
    line = fails(capsys, ["devices"])
    assert line.startswith(f"no store at {tmp_path / 'srv' / 'depto' / 'depot.sqlite3'}.")
    assert not (tmp_path / "srv").exists()


def test_sync_on_a_port_that_does_not_exist_says_so_once(store, capsys):
    assert cli.main(["--store", str(store), "sync", "--port", "/dev/nonexist-tty"]) == 2
    out, err = capsys.readouterr()
    assert err == ("depot: error: /dev/nonexist-tty: cannot open /dev/nonexist-tty: No such file or "
                   "directory. Check the port name (the dock's serial port, e.g. /dev/ttyACM0).\n")
    assert "Error" not in out and "cannot open" not in out  # the table says FAILED, the reason is told once
    assert "/dev/nonexist-tty  ?       FAILED" in out


def test_sync_on_a_silent_port_says_what_to_check(store):
    master, slave = pty.openpty()  # a port nobody answers on: an empty dock, a handheld switched off
    try:
        with Store(store) as st:
            rep = sync_device(os.ttyname(slave), st, retries=1, rto=0.2)
    finally:
        os.close(master)
        os.close(slave)
    assert not rep.ok
    assert rep.error == (f"no answer from a handheld on {rep.port}. Check that it sits in the dock and is "
                         "powered, and that this is the dock port, not the USB console")


def test_compiling_for_a_board_that_does_not_exist(tmp_path, capsys):
    line = fails(capsys, ["route", "compile", str(EXAMPLE), "--out", str(tmp_path / "x.pkg"),
                          "--board", "esp"])
    assert line == "no board named esp. Choose one of esp32s3-sim7600, rp2350-bg95, sim, sim-noromfs."
    assert not (tmp_path / "x.pkg").exists()


def test_compiling_with_a_key_file_that_does_not_exist(tmp_path, capsys):
    line = fails(capsys, ["route", "compile", str(EXAMPLE), "--out", str(tmp_path / "x.pkg"), "--key",
                          str(tmp_path / "nokey")])
    assert line == (f"cannot read {tmp_path / 'nokey'}: No such file or directory. "
                    "Check the options. Nothing written.")


def test_a_store_path_that_is_not_a_store(tmp_path, capsys):
    other = tmp_path / "notes.txt"
    other.write_text("not a database\n")
    line = fails(capsys, ["--store", str(other), "devices"])
    assert line == f"{other} is not a depot store (not an SQLite file). Check --store or DEPOT_HOME."
    assert other.read_text() == "not a database\n"
