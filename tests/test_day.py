"""The demo's scenario, shortened: a carrier's day on a virtual handheld, end to end (flash with
mpremote, route over the dock, scans, overrides, an attempt, a wrong-stop and an invalid scan, a
coverage gap, a power cut mid-scan, cellular uploads, night sync, report). Every record the
carrier heard confirmed is in the store exactly once."""

from pathlib import Path

import pytest

from sim import day

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_short_day_ends_with_every_confirmed_record_stored_once(tmp_path):
    scenario = day.Scenario.load(ROOT / "examples" / "scenarios" / "short.toml")
    summary = day.run(scenario, tmp_path, progress=False)
    assert summary["failures"] == []
    d = summary["devices"]["HH-0101"]
    # 14 stops: 20 parcels delivered or attempted, one invalid code refused, one wrong-stop warning
    assert (d["confirmed"], d["stored"], d["attempts"], d["invalid_refused"], d["wrong_stop_warned"]) \
        == (20, 20, 1, 1, 1)
    assert d["overrides"] >= 1  # 35 m off; a fix the loaded VM parsed late may ask once more
    html = Path(summary["reports"]["NORTH-7"]).read_text()
    assert html.count("data-stop-id") >= 14
    png = Path(summary["screenshots"]["HH-0101"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
