"""Route reports: what happened at every stop, how well scans matched their fences, and what does not
reconcile. `build(route, store)` gathers the figures once (report_model); `render(report, fmt)` writes
them as text (report_text), csv (report_csv), geojson (report_geojson) or a self-contained html page
with an SVG map (report_html, from templates/route_report.html).

Definitions (docs for depot staff say the same):
- A delivery falls in exactly one class: `fence` (an item not on the route, matched by the fence the
  carrier stood in), else `inside` (the fix was inside the stop's fence), else `unsure` (unsure
  verdict or no fix, confirmed by the carrier), else `override` (outside, confirmed by the carrier).
  The match rate is the share of `inside`; the four shares add up to one.
- A correction record voids the record it names (same device); voided records are listed, not counted.
- Sequence numbers in the words of host_tools.seqs (as `depot sync` and `depot devices` print them):
  a gap is a number missing from the store, always shown; a skipped number is one the device
  declared it never used, shown apart. Both come from the store for every device on the route.
- A fix is stale when it was taken more than the device's freshness limit (geofence.MAX_AGE_S)
  before the scan: by the device's own count of its age, or by its GNSS time against the scan's
  device time. Such scans are listed: their position is not evidence of where the parcel was.
"""

from __future__ import annotations

from host_tools.report_csv import CSV_COLUMNS, to_csv
from host_tools.report_geojson import to_geojson, to_geojson_obj
from host_tools.report_html import COLOURS, LABELS, to_html
from host_tools.report_model import (
    CLASSES,
    DEFAULT_REASONS,
    Event,
    Rates,
    RecordSource,
    Report,
    StopReport,
    build,
    classify,
    gap_text,
    iso,
    pct,
)
from host_tools.report_text import to_text

__all__ = ["CLASSES", "COLOURS", "CSV_COLUMNS", "DEFAULT_REASONS", "FORMATS", "LABELS", "Event", "Rates",
           "RecordSource", "Report", "StopReport", "build", "classify", "gap_text", "iso", "pct", "render",
           "to_csv", "to_geojson", "to_geojson_obj", "to_html", "to_text"]

WRITERS = {"text": to_text, "csv": to_csv, "geojson": to_geojson, "html": to_html}
FORMATS = tuple(WRITERS)


def render(rep: Report, fmt: str) -> str:
    writer = WRITERS.get(fmt)
    if writer is None:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return writer(rep)
