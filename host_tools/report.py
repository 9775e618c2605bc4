"""Route reports: what happened at every stop, how well scans matched their fences, and what does not
reconcile. `build(route, store)` gathers the figures once; `render(report, fmt)` writes them as text,
csv, geojson or a self-contained html page with an SVG map.

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

import csv
import html
import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from firmware import geofence  # the device's freshness limit
from firmware import record as rec
from host_tools import learn_report, routepack, seqruns, seqs, untrusted
from host_tools.routes import Route, Stop

# Non-delivery reasons and actions (UPU EMSEVT EMH spirit) come with the route package; a route read
# from GeoJSON falls back to the list the compiler puts in every package by default.
DEFAULT_REASONS = {code: label for code, _kind, label in routepack.DEFAULT_REASONS}
CLASSES = ("inside", "override", "unsure", "fence")
FORMATS = ("text", "csv", "geojson", "html")


class RecordSource(Protocol):
    def records(self, device_id: str | None = None, route_id: str | None = None) -> list[Any]: ...


@dataclass
class Rates:
    deliveries: int = 0
    attempts: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CLASSES})

    def share(self, cls: str) -> float:
        return self.counts[cls] / self.deliveries if self.deliveries else 0.0

    @property
    def match_rate(self) -> float:
        return self.share("inside")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"deliveries": self.deliveries, "attempts": self.attempts,
                             "match_rate": round(self.match_rate, 4)}
        for c in CLASSES:
            d[c] = self.counts[c]
            d[c + "_share"] = round(self.share(c), 4)
        return d


@dataclass
class Event:
    """One record as the report shows it."""
    r: Any  # record.Record
    cls: str  # delivery class (CLASSES), "attempt", or "correction"
    labels: dict[int, str] = field(default_factory=lambda: DEFAULT_REASONS)
    voided_by: int = 0

    @property
    def outcome(self) -> str:
        return rec.OUTCOMES.get(self.r.outcome, str(self.r.outcome))

    @property
    def override(self) -> bool:
        return bool(self.r.flags & rec.F_OVERRIDE)

    @property
    def wrong_stop(self) -> bool:
        return bool(self.r.flags & rec.F_WRONG_STOP) or self.r.match == rec.M_OTHER_STOP

    def label(self, code: int) -> str:
        return self.labels.get(code, f"code {code}") if code else "none"

    @property
    def fix_lag_s(self) -> int | None:
        """How long before the scan its fix was taken (seconds), None without a fix."""
        r = self.r
        if not r.gnss_time or r.fix_age_s is None or r.fix_age_s >= rec.NO_AGE:
            return None
        by_clock = r.device_time - r.gnss_time if r.device_time else 0
        return max(r.fix_age_s, by_clock)

    @property
    def stale_fix(self) -> bool:
        lag = self.fix_lag_s
        return lag is not None and lag > geofence.MAX_AGE_S

    def reason_text(self) -> str:
        """"reason: ...; action: ..." for an attempt, "reason: ..." for an override, else ""."""
        row = self.row()
        if self.cls == "attempt":
            return f"reason: {row['reason']}; action: {row['action']}"
        return f"reason: {row['reason']}" if self.override and self.r.reason else ""

    def row(self) -> dict[str, Any]:
        r = self.r
        return {
            "device_id": r.device_id, "seq": r.seq, "item_id": r.item_id, "outcome": self.outcome,
            "class": self.cls, "verdict": rec.VERDICTS.get(r.verdict, str(r.verdict)),
            "match": rec.MATCHES.get(r.match, str(r.match)), "override": int(self.override),
            "wrong_stop": int(self.wrong_stop),
            "reason": self.label(r.reason) if r.outcome == rec.ATTEMPTED or r.reason else "",
            "action": self.label(r.action) if r.outcome == rec.ATTEMPTED or r.action else "",
            "distance_m": r.distance_dm / 10, "lat": r.lat_e6 / 1e6, "lon": r.lon_e6 / 1e6,
            "device_time": iso(r.device_time), "gnss_time": iso(r.gnss_time),
            "fix_lag_s": "" if self.fix_lag_s is None else self.fix_lag_s, "stale_fix": int(self.stale_fix),
            "voided_by": self.voided_by or "",
        }


@dataclass
class StopReport:
    stop: Stop
    events: list[Event] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)  # expected items delivered here
    attempted: list[str] = field(default_factory=list)  # expected items attempted, not delivered
    missing: list[str] = field(default_factory=list)  # expected items never scanned on the route
    elsewhere: list[str] = field(default_factory=list)  # expected items delivered at another stop

    @property
    def status(self) -> str:
        if self.stop.items:
            if len(self.delivered) == len(self.stop.items):
                return "delivered"
            if self.delivered:
                return "partial"
            return "attempted" if self.attempted else "missing"
        live = [e for e in self.events if not e.voided_by]
        if any(e.r.outcome == rec.DELIVERED for e in live):
            return "delivered"
        return "attempted" if live else "no items"

    def times(self) -> tuple[int, int]:
        ts = [e.r.device_time for e in self.events if e.r.device_time and not e.voided_by]
        return (min(ts), max(ts)) if ts else (0, 0)


@dataclass
class Report:
    route: Route
    generated: float
    total: Rates
    carriers: dict[str, Rates]
    stops: list[StopReport]
    missing: list[tuple[str, str]]  # (stop_id, item_id) expected, never scanned
    wrong_stop: list[tuple[str, str, str, str, int]]  # item, expected stop, scanned stop, device, seq
    outside: list[tuple[str, str, float, str, int]]  # stop, item, distance_m, device, seq
    gaps: dict[str, list[tuple[int, int]]]  # device -> inclusive ranges of missing sequence numbers
    unknown_stop: list[Event]  # records naming a stop the route does not have
    corrections: list[tuple[str, int, int]]  # device, correcting seq, corrected seq
    # device -> ranges the device declared it never used (its journal's lease after a power cut):
    # shown apart from the gaps, never hidden
    skipped: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    stale: list[Event] = field(default_factory=list)  # live scans whose fix was stale (see above)
    days: list[Any] = field(default_factory=list)  # learn_report.Day per UTC day: the match rate by day
    fences: dict[str, list[Any]] = field(default_factory=dict)  # stop -> learned fence changes


def classify(r: Any) -> str:
    if r.outcome == rec.CORRECTION:
        return "correction"
    if r.outcome != rec.DELIVERED:
        return "attempt"
    if r.match == rec.M_FENCE:
        return "fence"
    if r.verdict == rec.V_INSIDE:
        return "inside"
    if r.verdict in (rec.V_UNSURE, rec.V_NONE):
        return "unsure"
    return "override"


def build(route: Route, store: RecordSource, now: float | None = None) -> Report:
    records = sorted(store.records(route_id=route.route_id), key=lambda r: (r.device_id, r.seq))
    labels = route.reasons or DEFAULT_REASONS
    events = [Event(r, classify(r), labels) for r in records]
    by_key = {(e.r.device_id, e.r.seq): e for e in events}
    corrections = []
    for e in events:
        if e.cls == "correction" and e.r.corrects:
            corrections.append((e.r.device_id, e.r.seq, e.r.corrects))
            target = by_key.get((e.r.device_id, e.r.corrects))
            if target is not None:
                target.voided_by = e.r.seq
    live = [e for e in events if not e.voided_by and e.cls != "correction"]

    total = Rates()
    carriers: dict[str, Rates] = {}
    for e in live:
        for rates in (total, carriers.setdefault(e.r.device_id, Rates())):
            if e.cls == "attempt":
                rates.attempts += 1
            else:
                rates.deliveries += 1
                rates.counts[e.cls] += 1

    stops = {s.stop_id: StopReport(s) for s in route.stops}
    unknown = []
    for e in events:
        sr = stops.get(e.r.stop_id)
        if sr is None:
            unknown.append(e)
        else:
            sr.events.append(e)

    expected_at = route.item_stops()
    delivered_items = {e.r.item_id for e in live if e.r.outcome == rec.DELIVERED}
    scanned_items = {e.r.item_id for e in live}
    missing = []
    for s in route.stops:
        sr = stops[s.stop_id]
        for item in s.items:
            if item in delivered_items:
                if any(e.r.item_id == item and e.r.outcome == rec.DELIVERED and not e.voided_by
                       for e in sr.events):
                    sr.delivered.append(item)
                else:
                    sr.elsewhere.append(item)
            elif item in scanned_items:
                sr.attempted.append(item)
            else:
                sr.missing.append(item)
                missing.append((s.stop_id, item))

    wrong = []
    outside = []
    for e in live:
        exp = expected_at.get(e.r.item_id)
        if exp is not None and exp != e.r.stop_id:
            wrong.append((e.r.item_id, exp, e.r.stop_id, e.r.device_id, e.r.seq))
        if e.cls == "override":
            outside.append((e.r.stop_id, e.r.item_id, e.r.distance_dm / 10, e.r.device_id, e.r.seq))

    gaps: dict[str, list[tuple[int, int]]] = {}
    skipped: dict[str, list[tuple[int, int]]] = {}
    for d in sorted({e.r.device_id for e in events}):
        lacking = _gaps(store, d, [e.r for e in events if e.r.device_id == d])
        absent = getattr(store, "absent", None)  # a store that knows what the device declared
        declared = absent(d) if absent else []
        gaps[d], skipped[d] = seqs.split(lacking, declared)
    return Report(route, time.time() if now is None else now, total, carriers,
                  [stops[s.stop_id] for s in route.stops], missing, wrong, outside, gaps, unknown,
                  corrections, skipped, [e for e in live if e.stale_fix],
                  learn_report.by_day(live), learn_report.history(store, route.route_id))


def _gaps(store: Any, device_id: str, records: list[Any]) -> list[tuple[int, int]]:
    """Runs of missing sequence numbers: the store's view when it has one (a gap on any route may
    hide a record of this one), else what this route's records show."""
    if hasattr(store, "gaps"):
        return store.gaps(device_id)
    return seqruns.holes(sorted({r.seq for r in records}))


def _numbers(runs: dict[str, list[tuple[int, int]]]) -> int:
    """How many sequence numbers the runs of every device cover."""
    return sum(seqruns.count(r) for r in runs.values())


def gap_text(a: int, b: int) -> str:
    return seqruns.text([(a, b)])


def iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# --- text -----------------------------------------------------------------------------------------

def _rates_line(name: str, r: Rates) -> str:
    return (f"{name:<16} match {pct(r.match_rate):>6}  override {pct(r.share('override')):>6}  "
            f"unsure {pct(r.share('unsure')):>6}  by fence {pct(r.share('fence')):>6}  "
            f"({r.deliveries} deliveries, {r.attempts} attempts)")


def to_text(rep: Report) -> str:
    out = [f"Route {rep.route.route_id}  ({len(rep.route.stops)} stops)  report of {iso(int(rep.generated))}",
           "", "Match rate: share of deliveries confirmed inside their stop's fence",
           _rates_line("route", rep.total)]
    for dev, r in sorted(rep.carriers.items()):
        out.append(_rates_line("carrier " + dev, r))
    out += ["", "Reconciliation"]
    out.append(f"  sequence gaps (numbers missing from the store): {_numbers(rep.gaps)}")
    for dev, ranges in rep.gaps.items():
        for a, b in ranges:
            out.append(f"    {dev}: seq {gap_text(a, b)} missing")
    out.append(f"  sequence numbers skipped by the device (declared never used): {_numbers(rep.skipped)}")
    for dev, ranges in rep.skipped.items():
        for a, b in ranges:
            out.append(f"    {dev}: seq {gap_text(a, b)} skipped")
    out.append(f"  items expected but not scanned: {len(rep.missing)}")
    out += [f"    {item} (stop {stop})" for stop, item in rep.missing]
    out.append(f"  items scanned at the wrong stop: {len(rep.wrong_stop)}")
    out += [f"    {item}: expected at {exp}, scanned at {got} ({dev} #{seq})"
            for item, exp, got, dev, seq in rep.wrong_stop]
    out.append(f"  deliveries confirmed outside the fence: {len(rep.outside)}")
    out += [f"    {item} at {stop}: {d:.1f} m outside ({dev} #{seq})"
            for stop, item, d, dev, seq in rep.outside]
    out.append(f"  scans with a stale fix (older than {geofence.MAX_AGE_S} s): {len(rep.stale)}")
    out += [f"    {e.r.item_id} at {e.r.stop_id}: fix {e.fix_lag_s} s before the scan "
            f"({e.r.device_id} #{e.r.seq})" for e in rep.stale]
    if rep.unknown_stop:
        out.append(f"  records naming a stop not on the route: {len(rep.unknown_stop)}")
        out += [f"    {e.r.device_id} #{e.r.seq}: stop {e.r.stop_id!r}" for e in rep.unknown_stop]
    if rep.corrections:
        out.append(f"  corrections: {len(rep.corrections)}")
        out += [f"    {dev} #{seq} corrects #{old}" for dev, seq, old in rep.corrections]
    out += learn_report.text(rep.days, rep.fences)
    out += ["", "Stops"]
    for sr in rep.stops:
        s = sr.stop
        first, last = sr.times()
        when = f"  {iso(first)}" + (f" .. {iso(last)}" if last != first else "") if first else ""
        out.append(f"  {s.seq:>3} {s.stop_id:<12} {sr.status:<10} "
                   f"delivered {len(sr.delivered)}/{len(s.items)}  attempted {len(sr.attempted)}  "
                   f"missing {len(sr.missing)}  {s.address}{when}")
        for e in sr.events:
            row = e.row()
            extra = "  " + e.reason_text() if e.reason_text() else ""
            flags = (" override" if e.override else "") + (" wrong-stop" if e.wrong_stop else "") \
                + (" stale-fix" if e.stale_fix else "")
            void = f"  (voided by #{e.voided_by})" if e.voided_by else ""
            out.append(f"        {row['item_id']:<20} {row['outcome']:<10} {row['verdict']:<7} "
                       f"{row['distance_m']:>6.1f} m  {row['device_id']} #{row['seq']}"
                       f"  {row['device_time']}{flags}{extra}{void}")
        for item in sr.missing:
            out.append(f"        {item:<20} missing")
    return "\n".join(untrusted.shown(line) for line in out) + "\n"  # ids and addresses are input


# --- csv ------------------------------------------------------------------------------------------

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


# --- geojson --------------------------------------------------------------------------------------

def _geometry(stop: Stop) -> dict[str, Any] | None:
    polys = [[[list(pt) for pt in ring] for ring in poly] for poly in stop.polygons]
    if not polys:
        return None
    if len(polys) == 1:
        return {"type": "Polygon", "coordinates": polys[0]}
    return {"type": "MultiPolygon", "coordinates": polys}


def to_geojson_obj(rep: Report) -> dict[str, Any]:
    feats: list[dict[str, Any]] = []
    for sr in rep.stops:
        s = sr.stop
        feats.append({"type": "Feature", "geometry": _geometry(s), "properties": {
            "kind": "stop", "stop_id": s.stop_id, "seq": s.seq, "address": s.address, "status": sr.status,
            "items": s.items, "delivered": sr.delivered, "attempted": sr.attempted, "missing": sr.missing}})
    feats.append({"type": "Feature", "geometry": {
        "type": "LineString", "coordinates": [list(s.centre()) for s in rep.route.stops]},
        "properties": {"kind": "route"}})
    for sr in rep.stops:
        for e in sr.events:
            feats.append(_scan_feature(e, sr.stop.stop_id))
    for e in rep.unknown_stop:
        feats.append(_scan_feature(e, e.r.stop_id))
    return {
        "type": "FeatureCollection",
        "properties": {
            "route_id": rep.route.route_id, "generated": iso(int(rep.generated)),
            "route": rep.total.to_dict(),
            "carriers": {d: r.to_dict() for d, r in sorted(rep.carriers.items())},
            "missing": [{"stop_id": s, "item_id": i} for s, i in rep.missing],
            "wrong_stop": [{"item_id": i, "expected_stop": x, "scanned_stop": g, "device_id": d, "seq": q}
                           for i, x, g, d, q in rep.wrong_stop],
            "outside_fence": [{"stop_id": s, "item_id": i, "distance_m": m, "device_id": d, "seq": q}
                              for s, i, m, d, q in rep.outside],
            "gaps": {d: [[a, b] for a, b in r] for d, r in rep.gaps.items()},
            "skipped": {d: [[a, b] for a, b in r] for d, r in rep.skipped.items() if r},
            "corrections": [{"device_id": d, "seq": s, "corrects": c} for d, s, c in rep.corrections],
            "stale_fix": [{"device_id": e.r.device_id, "seq": e.r.seq, "fix_lag_s": e.fix_lag_s}
                          for e in rep.stale],
        },
        "features": feats,
    }


def _scan_feature(e: Event, stop_id: str) -> dict[str, Any]:
    return {"type": "Feature",
            "geometry": {"type": "Point", "coordinates": [e.r.lon_e6 / 1e6, e.r.lat_e6 / 1e6]},
            "properties": {"kind": "scan", "stop_id": stop_id, **e.row(), "class": e.cls}}


def to_geojson(rep: Report) -> str:
    return json.dumps(to_geojson_obj(rep), indent=1) + "\n"


# --- html -----------------------------------------------------------------------------------------

COLOURS = {"inside": "#1a9850", "override": "#f46d43", "unsure": "#fdae61", "fence": "#4575b4",
           "attempt": "#762a83", "correction": "#999999"}
LABELS = {"inside": "delivered inside fence", "override": "delivered outside fence (override)",
          "unsure": "delivered, fix unsure (override)", "fence": "item not on route, matched by fence",
          "attempt": "attempted", "correction": "correction / voided"}

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#eee}.num{text-align:right}svg{border:1px solid #aaa;background:#fafaf7;max-width:100%}
.fence{fill:#dfe8f0;stroke:#5a7896;stroke-width:1}.stop.delivered .fence{fill:#d9efd9}
.stop.missing .fence{fill:#f6dcdc}.stop.partial .fence,.stop.attempted .fence{fill:#f6ecd2}
.route{fill:none;stroke:#333;stroke-width:1.5;stroke-dasharray:4 3}
.label{font-size:11px;text-anchor:middle;dominant-baseline:central;fill:#000;font-weight:bold}
.legend span{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin:0 .3em 0 1em}
.bad{color:#b2182b}
"""

# Marks each stop drawn with a non-empty box inside the map, so a headless browser's DOM shows it.
_JS = """
(function(){var svg=document.getElementById('map');if(!svg||!svg.getBBox)return;
var vb=svg.viewBox.baseVal,n=0;document.querySelectorAll('#map .stop').forEach(function(g){
var b=g.getBBox();if(b.width>0&&b.height>0&&b.x>=vb.x&&b.y>=vb.y&&b.x+b.width<=vb.x+vb.width&&
b.y+b.height<=vb.y+vb.height){g.setAttribute('data-visible','1');n++;}});
document.getElementById('map-status').setAttribute('data-stops-visible',String(n));})();
"""


class _Frame:
    """Lon/lat to SVG pixels: a local equirectangular frame, north up, fitted with a margin."""

    def __init__(self, points: list[tuple[float, float]], width: float = 900.0, margin: float = 20.0):
        if not points:
            points = [(0.0, 0.0)]
        self.lon0 = min(p[0] for p in points)
        self.lat1 = max(p[1] for p in points)
        lat_mid = (self.lat1 + min(p[1] for p in points)) / 2
        self.k = math.cos(math.radians(lat_mid))
        xs = [(p[0] - self.lon0) * self.k for p in points]
        ys = [self.lat1 - p[1] for p in points]
        span = max(max(xs), max(ys), 1e-9)
        self.scale = (width - 2 * margin) / span
        self.margin = margin
        self.width = width
        self.height = max(ys) * self.scale + 2 * margin

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        return ((lon - self.lon0) * self.k * self.scale + self.margin,
                (self.lat1 - lat) * self.scale + self.margin)


def _svg(rep: Report) -> str:
    pts = [pt for s in rep.route.stops for poly in s.polygons for ring in poly for pt in ring]
    scans = [e for sr in rep.stops for e in sr.events] + rep.unknown_stop
    pts += [(e.r.lon_e6 / 1e6, e.r.lat_e6 / 1e6) for e in scans if e.r.lat_e6 or e.r.lon_e6]
    fr = _Frame(pts)
    out = [f'<svg id="map" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {fr.width:.0f} {fr.height:.0f}" '
           f'width="{fr.width:.0f}" height="{fr.height:.0f}" role="img" '
           f'aria-label="map of route {html.escape(rep.route.route_id)}">']
    for sr in rep.stops:
        s = sr.stop
        d = " ".join("M" + " L".join("%.1f,%.1f" % fr.xy(*pt) for pt in ring) + " Z"
                     for poly in s.polygons for ring in poly)
        cx, cy = fr.xy(*s.centre())
        title = html.escape(f"{s.seq}. {s.stop_id} {s.address}: {sr.status}")
        out.append(f'<g class="stop {sr.status.replace(" ", "-")}" data-stop-id="{html.escape(s.stop_id)}" '
                   f'data-seq="{s.seq}"><title>{title}</title>'
                   f'<path class="fence" fill-rule="evenodd" d="{d}"/>'
                   f'<text class="label" x="{cx:.1f}" y="{cy:.1f}">{s.seq}</text></g>')
    line = " ".join("%.1f,%.1f" % fr.xy(*s.centre()) for s in rep.route.stops)
    out.append(f'<polyline class="route" points="{line}"/>')
    for e in scans:
        if not (e.r.lat_e6 or e.r.lon_e6):
            continue
        x, y = fr.xy(e.r.lon_e6 / 1e6, e.r.lat_e6 / 1e6)
        cls = "correction" if e.voided_by else e.cls
        tip = html.escape(f"{e.r.item_id} {LABELS[cls]} at {e.r.stop_id} ({e.r.device_id} #{e.r.seq})")
        out.append(f'<circle class="scan {cls}" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLOURS[cls]}" '
                   f'stroke="#fff" stroke-width="1"><title>{tip}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


def _rates_rows(rep: Report) -> str:
    rows = [("route", rep.total)] + [("carrier " + d, r) for d, r in sorted(rep.carriers.items())]
    return "".join(
        f"<tr><td>{html.escape(n)}</td><td class=num><b>{pct(r.match_rate)}</b></td>"
        f"<td class=num>{pct(r.share('override'))}</td><td class=num>{pct(r.share('unsure'))}</td>"
        f"<td class=num>{pct(r.share('fence'))}</td><td class=num>{r.deliveries}</td>"
        f"<td class=num>{r.attempts}</td></tr>" for n, r in rows)


_FOLD = 10  # a longer list folds under one line, so the sections after it stay in view


def _items(lis: list[str]) -> str:
    """A reconciliation list; past _FOLD entries it opens on a click (a partial day's 358 unscanned
    items would otherwise bury the map and the stops)."""
    body = "<ul>" + "".join(lis) + "</ul>"
    if len(lis) <= _FOLD:
        return body
    return f"<details><summary>show all {len(lis)}</summary>{body}</details>"


def to_html(rep: Report) -> str:
    esc = html.escape
    rid = esc(rep.route.route_id)
    recon = []
    n_gaps = _numbers(rep.gaps)
    recon.append(f'<li class="{"bad" if n_gaps else ""}">Sequence gaps (numbers missing from the store): '
                 f"{n_gaps}" + _items([f"<li>{esc(d)}: seq {gap_text(a, b)} missing</li>"
                                       for d, r in rep.gaps.items() for a, b in r]) + "</li>")
    recon.append("<li>Sequence numbers skipped by the device (declared never used): "
                 f"{_numbers(rep.skipped)}" + _items([f"<li>{esc(d)}: seq {gap_text(a, b)} skipped</li>"
                                                     for d, r in rep.skipped.items() for a, b in r])
                 + "</li>")
    recon.append(f"<li>Items expected but not scanned: {len(rep.missing)}" + _items([
        f"<li>{esc(i)} (stop {esc(s)})</li>" for s, i in rep.missing]) + "</li>")
    recon.append(f"<li>Items scanned at the wrong stop: {len(rep.wrong_stop)}" + _items([
        f"<li>{esc(i)}: expected at {esc(x)}, scanned at {esc(g)} ({esc(d)} #{q})</li>"
        for i, x, g, d, q in rep.wrong_stop]) + "</li>")
    recon.append(f"<li>Deliveries confirmed outside the fence: {len(rep.outside)}" + _items([
        f"<li>{esc(i)} at {esc(s)}: {m:.1f} m ({esc(d)} #{q})</li>" for s, i, m, d, q in rep.outside])
        + "</li>")
    recon.append(f'<li class="{"bad" if rep.stale else ""}">Scans with a stale fix (older than '
                 f"{geofence.MAX_AGE_S} s): {len(rep.stale)}" + _items([
                     f"<li>{esc(e.r.item_id)} at {esc(e.r.stop_id)}: fix {e.fix_lag_s} s before the scan "
                     f"({esc(e.r.device_id)} #{e.r.seq})</li>" for e in rep.stale]) + "</li>")
    if rep.unknown_stop:
        recon.append(f"<li>Records naming a stop not on the route: {len(rep.unknown_stop)}</li>")
    stop_rows = []
    for sr in rep.stops:
        s = sr.stop
        first, last = sr.times()
        evs = "<br>".join(
            f"{esc(r['item_id'])}: {r['outcome']}, {r['verdict']}, {r['distance_m']:.1f} m"
            + (" (override)" if e.override else "") + (" (wrong stop)" if e.wrong_stop else "")
            + (f", {esc(e.reason_text())}" if e.reason_text() else "")
            + (" (stale fix)" if e.stale_fix else "")
            + (f" voided by #{e.voided_by}" if e.voided_by else "") + f" [{esc(r['device_id'])} #{r['seq']}]"
            for e in sr.events for r in [e.row()])
        stop_rows.append(
            f'<tr data-stop="{esc(s.stop_id)}"><td class=num>{s.seq}</td><td>{esc(s.stop_id)}</td>'
            f"<td>{esc(s.address)}</td><td>{sr.status}</td>"
            f"<td class=num>{len(sr.delivered)}/{len(s.items)}</td>"
            f"<td>{esc(', '.join(sr.missing))}</td><td>{evs}</td>"
            f"<td>{iso(first)}{' .. ' + iso(last) if last != first else ''}</td></tr>")
    legend = "".join(f'<span style="background:{COLOURS[c]}"></span>{LABELS[c]}' for c in COLOURS)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Route {rid} report</title>
<style>{_CSS}</style></head><body>
<h1>Route {rid}</h1>
<p>{len(rep.route.stops)} stops. Report generated {iso(int(rep.generated))}.</p>
<h2>Match rate</h2>
<p>Share of deliveries confirmed inside their stop's fence, beside those confirmed by override, unsure,
and matched by fence for items not on the route.</p>
<table><tr><th></th><th>inside fence</th><th>override</th><th>unsure</th><th>by fence</th>
<th>deliveries</th><th>attempts</th></tr>{_rates_rows(rep)}</table>
<h2>Reconciliation</h2><ul>{''.join(recon)}</ul>
<h2>Map</h2>
<p class="legend">{legend}</p>
<p id="map-status" data-stops="{len(rep.stops)}">Stops numbered in sequence;
the dashed line is route order.</p>
{_svg(rep)}
{learn_report.html(rep.days, rep.fences, len(rep.stops))}
<h2>Stops</h2>
<table><tr><th>#</th><th>stop</th><th>address</th><th>status</th><th>delivered</th><th>missing</th>
<th>scans</th><th>time</th></tr>{''.join(stop_rows)}</table>
<script>{_JS}</script>
</body></html>
"""


def render(rep: Report, fmt: str) -> str:
    if fmt == "text":
        return to_text(rep)
    if fmt == "csv":
        return to_csv(rep)
    if fmt == "geojson":
        return to_geojson(rep)
    if fmt == "html":
        return to_html(rep)
    raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
