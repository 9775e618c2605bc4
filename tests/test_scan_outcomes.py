"""Every scan the carrier makes ends in something the carrier hears or does: a record on flash (the
chirp), a refusal (the refusal or invalid tone), or the carrier's own cancel. Random interleavings of
scans, fixes and keys run on the real MicroPython VM through the delivery flow and the screen's
sound table (ui.SOUNDS, what main.App plays); the model below follows each scan to its end.

Default: 30 programs. TORTURE=long: 300 programs of up to 40 steps.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_tools import route_compile
from sim import town
from tests.test_delivery import KEY, VM_DIR, at, east_of

LONG = os.environ.get("TORTURE") == "long"
STOPS = 4
BUSY = "Answer the question first"

_fc = town.town(seed=5, stops=30, area="north")
_pkg_dir = tempfile.mkdtemp(prefix="scan-outcomes-")
PKG = Path(_pkg_dir) / "r.pkg"
PKG.write_bytes(route_compile.compile_geojson(_fc, key=KEY).package)
FEATS = _fc["features"][:STOPS]
ITEMS = [f["properties"]["items"][0] for f in FEATS]
NOT_ON_ROUTE = town.s10("RR", "99999999", "GB")
MISREAD = "RR473124828GB"  # bad check digit

_VM = f"""
import vfs, os, json, sys
from flashdev import FlashDevice
dev = FlashDevice(4096, 64, IMAGE)
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/fl")
from firmware import delivery, geofence, journal, nmea, record, route_package, scan_code, ui
os.mkdir("/fl/journal")
j = journal.Journal("/fl/journal")
route = route_package.RoutePackage({str(PKG)!r}, {KEY!r})
g = nmea.NMEA()
flow = delivery.Delivery(route, geofence, scan_code.parse, g, j, "HH-1", lambda: 1764230400)
for kind, arg in json.loads(sys.stdin.read()):
    if kind == "fix":
        for line in arg:
            g.parse(line.encode())
        continue
    p = flow.scan(arg.encode()) if kind == "scan" else flow.key(arg)
    print(json.dumps({{"sound": ui.SOUNDS[p.kind] if p.fresh else None, "title": p.title,
                      "notice": p.notice, "next_seq": j.next_seq}}))
buf = bytearray(record.MAX_LEN + 16)
for seq, mv in j.records(1, buf):
    r = record.decode(mv)
    print(json.dumps({{"seq": r.seq, "outcome": r.outcome, "item_id": r.item_id, "corrects": r.corrects}}))
"""

fixes = st.builds(lambda i, off: ("fix", at(*(east_of(FEATS[i], 40) if off else town.door(FEATS[i])))),
                  st.integers(0, STOPS - 1), st.booleans())
scans = st.sampled_from(ITEMS + [NOT_ON_ROUTE, MISREAD]).map(lambda code: ("scan", code))
keys = st.sampled_from(["up", "down", "ok", "back"]).map(lambda name: ("key", name))
programs = st.lists(st.one_of(fixes, scans, scans, keys, keys, keys), min_size=1, max_size=40 if LONG else 24)


def run(mpy, steps: list[tuple[str, object]]) -> tuple[list[dict], list[dict]]:
    with tempfile.TemporaryDirectory() as d:
        out = mpy(_VM.replace("IMAGE", repr(str(Path(d) / "flash.img")), 1), stdin=json.dumps(steps).encode(),
                  extra_paths=(VM_DIR,))
    rows = [json.loads(line) for line in out.splitlines()]
    n = sum(kind != "fix" for kind, _ in steps)
    return rows[:n], rows[n:]


@pytest.mark.torture
@settings(max_examples=300 if LONG else 30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(programs)
def test_every_scan_ends_as_a_record_a_refusal_tone_or_a_cancel(mpy, program):
    program = program + [("key", "back")]  # the carrier walks away from an open question: cancel
    events, records = run(mpy, program)
    ended = {"recorded": [], "refused": [], "cancelled": []}
    open_scan: str | None = None  # the scan a question is about; "" for "cancel the last record?"
    seq = 1  # the journal's next sequence number, as the model expects it
    steps = iter(e for e in program if e[0] != "fix")
    for (kind, arg), ev in zip(steps, events, strict=True):
        heard, wrote = ev["sound"], ev["next_seq"] - seq
        if kind == "scan" and open_scan is not None:
            assert (heard, ev["notice"], wrote) == ("error", BUSY, 0), f"a scan during a question: {ev}"
            ended["refused"].append(arg)
        elif kind == "scan":
            assert heard in ("ok", "override", "error", "invalid"), f"a scan heard nothing: {ev}"
            assert wrote == (heard == "ok")
            if heard == "ok":
                ended["recorded"].append(arg)
            elif heard == "override":
                open_scan = arg
            else:
                ended["refused"].append(arg)
        elif open_scan is not None and arg == "back":
            assert (heard, ev["title"], wrote) == (None, "Cancelled", 0)
            if open_scan:
                ended["cancelled"].append(open_scan)
            open_scan = None
        elif open_scan is not None and arg == "ok":
            assert heard in ("ok", "override"), f"OK on a question: {ev}"  # a wrong-stop OK asks again
            assert wrote == (heard == "ok")
            if heard == "ok":
                if open_scan:
                    ended["recorded"].append(open_scan)
                open_scan = None
        elif arg == "back" and wrote == 0 and heard == "override":  # idle Back: cancel the last record?
            open_scan = ""
        else:  # scrolling, mode switch, a key with nothing to do: silent, writes nothing
            assert (heard, wrote) == (None, 0), f"key {arg!r}: {ev}"
        seq = ev["next_seq"]
    assert not open_scan  # no scan left waiting (the closing Back may have asked "Cancel last?")
    scanned = [arg for kind, arg in program if kind == "scan"]
    assert sorted(scanned) == sorted(sum(ended.values(), []))  # each scan ended exactly one way
    assert [r["item_id"] for r in records if r["outcome"] != 3] == ended["recorded"]
    assert len(records) == seq - 1
