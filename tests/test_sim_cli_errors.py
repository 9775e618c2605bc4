"""`python -m sim` refuses what it cannot do with one line and exit status 2, before anything boots:
scenario mistakes (docs/scenario.md), a flash image in a folder that does not exist, an image
another virtual handheld already uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim import scenario
from sim.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
GOOD = """name = "t"
seed = 3
[[device]]
device_id = "HH-1"
route = "examples/routes/north.geojson"
stops = 3
"""


def refused(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


def scenario_line(tmp_path: Path, capsys, text: str) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return refused(capsys, ["run", str(path)]).removeprefix(f"python -m sim run: error: {path}: ")


def test_the_example_scenarios_pass():
    for path in sorted((ROOT / "examples" / "scenarios").glob("*.toml")):
        assert scenario.load(path).carriers


def test_a_misspelt_key_names_the_right_one(tmp_path, capsys):
    line = scenario_line(tmp_path, capsys, GOOD + "overide_at = [1]\n")
    assert line == "device 1 (HH-1): unknown key 'overide_at'. Did you mean override_at?"


def test_indices_past_the_stops_walked(tmp_path, capsys):
    line = scenario_line(tmp_path, capsys, GOOD + "override_at = [99]\n")
    assert line == ("device 1 (HH-1): override_at 99 is outside the stops walked. Stop indices count "
                    "from 0: give 0 to 2 (stops = 3).")
    line = scenario_line(tmp_path, capsys, GOOD + "power_cut_at = 40\n")
    assert line.startswith("device 1 (HH-1): power_cut_at 40 is outside the stops walked.")
    line = scenario_line(tmp_path, capsys, GOOD + "wrong_stop_at = [2]\n")  # no next stop to mistake
    assert line.startswith("device 1 (HH-1): wrong_stop_at 2 is outside the stops walked.")
    line = scenario_line(tmp_path, capsys, GOOD + "attempt_at = { 1 = 40 }\n")
    assert line == ("device 1 (HH-1): attempt_at 1 = 40: no such reason. Give the reason's position in "
                    "the device's list, 1 to 14.")
    line = scenario_line(tmp_path, capsys, GOOD + "coverage_gap = [2, 1]\n")
    assert line.startswith("device 1 (HH-1): coverage_gap [2, 1] ends before it begins.")


def test_more_stops_than_the_route_has(tmp_path, capsys):
    line = scenario_line(tmp_path, capsys, GOOD.replace("stops = 3", "stops = 999"))
    assert line == ("device 1 (HH-1): stops = 999, but examples/routes/north.geojson has 220. "
                    "Give 1 to 220, or leave stops out to walk them all.")


def test_a_route_file_that_is_not_there(tmp_path, capsys):
    line = scenario_line(tmp_path, capsys, GOOD.replace("north.geojson", "nort.geojson"))
    assert line.startswith("device 1 (HH-1): route examples/routes/nort.geojson: No such file or directory.")


def test_bad_toml_and_a_missing_file(tmp_path, capsys):
    line = scenario_line(tmp_path, capsys, GOOD + "override_at = [1,\n")
    assert line.startswith("not valid TOML: ") and line.endswith("See docs/scenario.md for the format.")
    line = refused(capsys, ["run", str(tmp_path / "nope.toml")])
    assert line == (f"python -m sim run: error: cannot read scenario {tmp_path / 'nope.toml'}: No such file "
                    "or directory. Check the path (examples/scenarios/ holds the examples).")


def test_a_flash_image_in_a_folder_that_does_not_exist(capsys):
    line = refused(capsys, ["device", "--flash", "/nonexistdir/x.img"])
    assert line == ("python -m sim device: error: cannot use flash image /nonexistdir/x.img: no folder "
                    "/nonexistdir. Create it, or give --flash a path in an existing folder.")


def test_a_board_that_does_not_exist(tmp_path, capsys):
    line = refused(capsys, ["device", "--flash", str(tmp_path / "x.img"), "--board", "esp32"])
    assert line == ("python -m sim device: error: no board named esp32. "
                    "Choose one of esp32s3-sim7600, rp2350-bg95, sim, sim-noromfs.")


@pytest.mark.slow
def test_two_devices_cannot_share_one_image(tmp_path):
    from sim.client import Device

    image = tmp_path / "hh.img"
    with Device.start(image):
        second = subprocess.run([sys.executable, "-m", "sim", "device", "--flash", str(image)], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2 and second.stdout == ""
        assert second.stderr == (f"python -m sim device: error: flash image {image} is in use by another "
                                 "sim device. Stop that one first, or give another --flash image.\n")
    with Device.start(image) as again:  # the lock goes with the process
        assert again.status()["boots"] >= 1
