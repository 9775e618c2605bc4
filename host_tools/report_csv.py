"""The route report as one CSV table; every cell through untrusted.csv_cell, so no cell is read as a
formula by a spreadsheet."""

from __future__ import annotations

import csv
import io
from typing import Any

from host_tools import untrusted
from host_tools.report_model import Report, gap_text

CSV_COLUMNS = ["kind", "scope", "stop_seq", "stop_id", "address", "item_id", "status", "outcome", "class",
               "verdict", "match", "override", "wrong_stop", "reason", "action", "distance_m", "lat", "lon",
               "device_id", "seq", "device_time", "gnss_time", "fix_lag_s", "stale_fix", "voided_by",
               "deliveries", "attempts",
               "match_rate", "override_share", "unsure_share", "fence_share", "expected_stop"]


class _SafeWriter(csv.DictWriter):
    """Every cell through untrusted.csv_cell: an item id `=HYPERLINK(...)` stays text."""

    def writerow(self, rowdict: Any) -> Any:
        return super().writerow({k: untrusted.csv_cell(v) for k, v in rowdict.items()})


def to_csv(rep: Report) -> str:
    """One table: `rate` rows (route, then each carrier), `gap` rows, then per stop its `scan` rows and
    a `missing` row for each expected item never scanned; `kind` tells them apart."""
    buf = io.StringIO()
    w = _SafeWriter(buf, CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    scopes = [("route", rep.total)] + [("carrier:" + d, r) for d, r in sorted(rep.carriers.items())]
    for scope, r in scopes:
        w.writerow({"kind": "rate", "scope": scope, "deliveries": r.deliveries, "attempts": r.attempts,
                    "match_rate": f"{r.match_rate:.4f}", "override_share": f"{r.share('override'):.4f}",
                    "unsure_share": f"{r.share('unsure'):.4f}", "fence_share": f"{r.share('fence'):.4f}"})
    for dev, ranges in rep.gaps.items():
        for a, b in ranges:
            w.writerow({"kind": "gap", "device_id": dev, "seq": gap_text(a, b)})
    for dev, ranges in rep.skipped.items():
        for a, b in ranges:
            w.writerow({"kind": "skipped", "device_id": dev, "seq": gap_text(a, b)})
    expected_at = rep.route.item_stops()
    for sr in rep.stops:
        s = sr.stop
        base = {"stop_seq": s.seq, "stop_id": s.stop_id, "address": s.address, "status": sr.status}
        for e in sr.events:
            row = {k: v for k, v in e.row().items() if k != "class"}
            w.writerow({"kind": "scan", **base, **row, "class": e.cls,
                        "expected_stop": expected_at.get(e.r.item_id, "")})
        for item in sr.missing:
            w.writerow({"kind": "missing", **base, "item_id": item, "expected_stop": s.stop_id})
    for e in rep.unknown_stop:
        w.writerow({"kind": "scan", "stop_id": e.r.stop_id, "status": "unknown stop", **e.row()})
    return buf.getvalue()

