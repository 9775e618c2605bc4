"""One vocabulary for sequence numbers (host_tools.seqs) with figures that agree across `depot sync`'s
table, `depot devices` and the report. The device is the firmware's dock session on the real VM whose
journal restarted mid-day: the rest of its lease is skipped, so it holds 50 records and is acked far
past 50. Before, the sync table said `gaps 41-128` while the report said "Sequence gaps: 0", and
`depot devices` said `acked 138` beside nothing that explained it."""

from __future__ import annotations

import json
from pathlib import Path

from host_tools import cli, report, route_compile, routes, seqruns
from host_tools.cmd_sync import format_reports
from host_tools.store import Store
from host_tools.sync import sync_device
from sim import town
from tests.dockharness import Device, Relay


def _route_r1(tmp_path: Path) -> Path:
    """Route R1, the harness's records' route (one stop is enough: figures are per device)."""
    sq = [[13.0, 52.0], [13.0002, 52.0], [13.0002, 52.00014], [13.0, 52.00014], [13.0, 52.0]]
    fc = {"type": "FeatureCollection", "route_id": "R1", "service_date": "2026-11-27", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [sq]},
         "properties": {"stop_id": "S0", "seq": 1, "address": "1 Test St",
                        "items": [town.s10("RR", "00000001", "GB")]}}]}
    src = tmp_path / "R1.geojson"
    src.write_text(json.dumps(fc))
    pkg = tmp_path / "R1.pkg"
    route_compile.write_package(route_compile.compile_file(src).package, pkg)
    return pkg


def test_gaps_skipped_stored_and_acked_agree_in_sync_devices_and_the_report(tmp_path, capsys):
    store_path = tmp_path / "depot.sqlite3"
    store = Store(store_path)
    key = store.enrol("DEV1")
    relay = Relay()
    relay.start()
    dev = Device(tmp_path, relay.dev_path, "DEV1", key, records=40, after_reboot=10)
    try:
        rep = sync_device(relay.host_path, store)
    finally:
        relay.close()
        dev.stop()
    assert rep.ok, rep.error
    held = [r.seq for r in store.records("DEV1")]
    skipped = seqruns.text(seqruns.runs_of(range(41, held[40])))  # "41-N": the lease the reboot left unused
    acked = held[-1]
    assert len(held) == 50 and acked > 50 and rep.acked_seq == acked

    table = format_reports([rep]).splitlines()
    assert table[0].split() == ["port", "device", "result", "received", "stored", "dupes", "acked", "seq",
                                "pending", "route", "gaps", "skipped"]
    cells = table[2].split()
    assert cells[1:] == ["DEV1", "ok", "50", "50", "0", str(acked), "0", "-", "-", skipped]

    routes.register(store_path, _route_r1(tmp_path))
    assert cli.main(["--store", str(store_path), "devices"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["device", "last", "seen", "firmware", "board", "route", "pending", "stored",
                              "acked", "seq", "gaps", "skipped", "battery", "free", "flash"]
    row = out[2].split()
    at = row.index(str(acked))  # stored, acked seq, gaps, skipped
    assert row[0] == "DEV1" and row[at - 1:at + 3] == ["50", str(acked), "-", skipped]

    text = report.render(report.build(routes.find(store_path, "R1"), store), "text")
    n = acked - 50  # every number neither held nor a gap was skipped
    assert (f"  sequence gaps (numbers missing from the store): 0\n"
            f"  sequence numbers skipped by the device (declared never used): {n}\n"
            f"    DEV1: seq {skipped} skipped\n") in text
