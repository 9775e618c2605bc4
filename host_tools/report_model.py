"""The figures of a route report, gathered once by `build(route, store)`: the match rates of the route
and of each carrier, every record as an Event, each stop's items, and what does not reconcile. The
formats (report_text, report_csv, report_geojson, report_html) only write them out; the definitions
are in host_tools/report.py."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from firmware import geofence  # the device's freshness limit
from firmware import record as rec
from host_tools import learn_report, route_package_writer, seqruns, seqs
from host_tools.record_dict import MATCHES, OUTCOMES, VERDICTS
from host_tools.routes import Route, Stop

# Non-delivery reasons and actions (UPU EMSEVT EMH spirit) come with the route package; a route read
# from GeoJSON falls back to the list the compiler puts in every package by default.
DEFAULT_REASONS = {code: label for code, _kind, label in route_package_writer.DEFAULT_REASONS}
CLASSES = ("inside", "override", "unsure", "fence")


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
        return OUTCOMES.get(self.r.outcome, str(self.r.outcome))

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
            "class": self.cls, "verdict": VERDICTS.get(r.verdict, str(r.verdict)),
            "match": MATCHES.get(r.match, str(r.match)), "override": int(self.override),
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


def numbers(runs: dict[str, list[tuple[int, int]]]) -> int:
    """How many sequence numbers the runs of every device cover."""
    return sum(seqruns.count(r) for r in runs.values())


def gap_text(a: int, b: int) -> str:
    return seqruns.text([(a, b)])


def iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


