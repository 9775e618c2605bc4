"""The simulator's GNSS receiver (sim/gnss.py) and `python -m sim nmea-dump`: the generated stream is
what a real 1 Hz receiver sends, its faults show up where asked, and a replayed log gives the same
fixes through the firmware parser on the VM as on CPython."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pynmea2  # pyright: ignore[reportMissingImports]
import pytest

from firmware import nmea, nmea_text
from sim import gnss, nmea_dump

ROUTE = [(51.50000, -0.12000), (51.50100, -0.12000), (51.50100, -0.11850), (51.49950, -0.11850)]


def metres(a, b):
    k = math.cos(math.radians(a[0]))
    return math.hypot((b[0] - a[0]) * 111_195, (b[1] - a[1]) * 111_195 * k)


@pytest.fixture(scope="module")
def day():
    cond = gnss.Conditions(cold_start_s=5, indoor=[(40, 50)], canyon=[(60, 80)], multipath_rate=0.05,
                           noise_corr_s=20)
    return list(gnss.Walk(ROUTE, seed=3, conditions=cond, talker="GN"))


def test_every_second_carries_rmc_gga_gsa_gsv_with_correct_checksums(day):
    assert [t for t, _ in day] == list(range(len(day)))
    for _, lines in day:
        kinds = [pynmea2.parse(line, check=True).sentence_type for line in lines]
        assert kinds[:3] == ["RMC", "GGA", "GSA"] and set(kinds[3:]) == {"GSV"}
        for line in lines:
            body, cs = line[1:].split("*")
            assert cs == f"{_xor(body):02X}" and len(line) <= 80


def _xor(body: str) -> int:
    c = 0
    for ch in body.encode():
        c ^= ch
    return c


def test_walking_pace_and_the_whole_route_is_walked():
    w = gnss.Walk(ROUTE, seed=1)
    path = []
    for _ in w:
        path.append(w.truth)
    steps = [metres(a, b) for a, b in zip(path[1:-1], path[2:-1], strict=False)]
    corners_skipped = [s for s in steps if abs(s - 1.4) > 0.05]
    assert len(corners_skipped) <= 2  # a corner cuts one step short
    assert metres(path[-1], ROUTE[-1]) < 0.01
    length = sum(metres(a, b) for a, b in zip(ROUTE, ROUTE[1:], strict=False))
    assert abs(len(path) - length / 1.4) <= 2
    driving = gnss.Walk(ROUTE, seed=1, speed_mps=gnss.DRIVE_MPS)
    assert len(list(driving)) < len(path) / 5


def test_same_seed_same_stream_other_seed_other_noise():
    a = list(gnss.Walk(ROUTE, seed=9, duration_s=30))
    assert a == list(gnss.Walk(ROUTE, seed=9, duration_s=30))
    assert a != list(gnss.Walk(ROUTE, seed=10, duration_s=30))


def test_cold_start_indoor_loss_and_canyon_hdop_appear_when_scripted(day):
    p = nmea.NMEA()
    valid, hdop = {}, {}
    for t, lines in day:
        for line in lines:
            p.parse(line.encode())
        valid[t] = p.valid
        hdop[t] = p.hdop
    assert not any(valid[t] for t in range(5)) and all(valid[t] for t in range(5, 40))
    assert not any(valid[t] for t in range(40, 50)) and valid[50]
    assert all(hdop[t] >= 250 for t in range(60, 80)) and all(hdop[t] < 150 for t in range(10, 40))
    rmc0 = pynmea2.parse(day[0][1][0])
    assert rmc0.status == "V" and rmc0.timestamp is None  # before the first fix: no time either


def test_noise_is_about_the_configured_size():
    cond = gnss.Conditions(noise_m=3.0, hdop=1.0)
    w = gnss.Walk([(48.0, 11.0)], seed=5, conditions=cond, duration_s=400)
    errs = []
    for _, lines in w:
        m = pynmea2.parse(lines[0])
        errs.append(metres((48.0, 11.0), (m.latitude, m.longitude)))
    rms = math.sqrt(sum(e * e for e in errs) / len(errs))
    assert 3.0 < rms < 6.0  # 2-D error of sigma 3 m per axis (scaled by HDOP ~1 +- 10%): ~4.2 m


def test_multipath_jumps_move_the_fix_by_the_configured_distance():
    cond = gnss.Conditions(noise_m=0.0, multipath_rate=0.2, multipath_m=30.0, multipath_s=3)
    w = gnss.Walk([(48.0, 11.0)], seed=2, conditions=cond, duration_s=60)
    fixes = [pynmea2.parse(ls[0]) for _, ls in w]
    errs = [metres((48.0, 11.0), (m.latitude, m.longitude)) for m in fixes]
    assert any(abs(e - 30.0) < 0.1 for e in errs) and any(e < 0.1 for e in errs)


def test_replay_gives_back_the_seconds_that_were_written(day, tmp_path):
    log = tmp_path / "day.nmea"
    assert gnss.write_log(log, day) == sum(len(ls) for _, ls in day)
    back = list(gnss.replay(log))
    assert back == day  # the cold-start seconds without a time too
    assert list(gnss.replay_lines(log)) == [line for _, ls in day for line in ls]


def test_nmea_dump_on_the_vm_gives_the_fixes_of_the_parser_run_directly(day, tmp_path):
    log = tmp_path / "day.nmea"
    gnss.write_log(log, day)
    expected = []

    def on_fix(p):
        expected.append({"utc": nmea_text.iso(p), "lat": round(p.lat_e6 / 1e6, 6),
                         "lon": round(p.lon_e6 / 1e6, 6), "quality": p.quality, "sats": p.sats,
                         "hdop": p.hdop / 100, "sentence": nmea_text.NAMES[p.sentence]})

    direct = nmea.NMEA(on_fix)
    for line in gnss.replay_lines(log):
        direct.parse(line.encode())
    got = nmea_dump.fixes(log)
    assert got == expected
    assert len(got) == 2 * sum(1 for t, _ in day if not (t < 5 or 40 <= t < 50))  # RMC + GGA
    assert got[0]["utc"] == "2024-03-05T08:00:05Z" and got[0]["sentence"] == "RMC"


def test_nmea_dump_command_line(tmp_path):
    log = tmp_path / "short.nmea"
    gnss.write_log(log, gnss.Walk(ROUTE, seed=1, duration_s=2))
    cmd = [sys.executable, "-m", "sim", "nmea-dump", str(log)]
    out = subprocess.run(cmd, capture_output=True, check=True)
    rows = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert len(rows) == 6
    assert set(rows[0]) == {"utc", "lat", "lon", "quality", "sats", "hdop", "sentence"}
    missing = subprocess.run([sys.executable, "-m", "sim", "nmea-dump", str(tmp_path / "nope")],
                             capture_output=True)
    assert missing.returncode == 2 and b"no such file" in missing.stderr
