"""The route report as one self-contained html page (no tiles, no network): the rates, the
reconciliation, an SVG map of the fences and scans, the learned fences and every stop. The markup is
templates/route_report.html, autoescaped; this module turns the report into the plain data it draws:
map geometry in SVG pixels and the reconciliation's lines as text."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from firmware import geofence
from host_tools import learn_report
from host_tools.learn_review import env
from host_tools.report_model import Event, Report, gap_text, iso, numbers, pct

COLOURS = {"inside": "#1a9850", "override": "#f46d43", "unsure": "#fdae61", "fence": "#4575b4",
           "attempt": "#762a83", "correction": "#999999"}
LABELS = {"inside": "delivered inside fence", "override": "delivered outside fence (override)",
          "unsure": "delivered, fix unsure (override)", "fence": "item not on route, matched by fence",
          "attempt": "attempted", "correction": "correction / voided"}
FOLD = 10  # a longer list folds under one line, so the sections after it stay in view


class Frame:
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


@dataclass
class Section:
    """One reconciliation line: its title and count, and the entries listed under it (None: no list).
    `bad` is None for a line never marked, else whether it is marked now."""
    title: str
    count: int
    lines: list[str] | None
    bad: bool | None = None


def reconciliation(rep: Report) -> list[Section]:
    n_gaps = numbers(rep.gaps)
    out = [
        Section("Sequence gaps (numbers missing from the store)", n_gaps,
                [f"{d}: seq {gap_text(a, b)} missing" for d, r in rep.gaps.items() for a, b in r],
                n_gaps > 0),
        Section("Sequence numbers skipped by the device (declared never used)", numbers(rep.skipped),
                [f"{d}: seq {gap_text(a, b)} skipped" for d, r in rep.skipped.items() for a, b in r]),
        Section("Items expected but not scanned", len(rep.missing),
                [f"{i} (stop {s})" for s, i in rep.missing]),
        Section("Items scanned at the wrong stop", len(rep.wrong_stop),
                [f"{i}: expected at {x}, scanned at {g} ({d} #{q})" for i, x, g, d, q in rep.wrong_stop]),
        Section("Deliveries confirmed outside the fence", len(rep.outside),
                [f"{i} at {s}: {m:.1f} m ({d} #{q})" for s, i, m, d, q in rep.outside]),
        Section(f"Scans with a stale fix (older than {geofence.MAX_AGE_S} s)", len(rep.stale),
                [f"{e.r.item_id} at {e.r.stop_id}: fix {e.fix_lag_s} s before the scan "
                 f"({e.r.device_id} #{e.r.seq})" for e in rep.stale], bool(rep.stale)),
    ]
    if rep.unknown_stop:
        out.append(Section("Records naming a stop not on the route", len(rep.unknown_stop), None))
    return out


def _pair(x: float, y: float) -> str:
    return "%.1f,%.1f" % (x, y)


def svg_map(rep: Report) -> dict[str, Any]:
    """The map's geometry in pixels: per stop its fence path and label point, the route line, and each
    scan with a fix as (event, class, x, y)."""
    pts = [pt for s in rep.route.stops for poly in s.polygons for ring in poly for pt in ring]
    scans = [e for sr in rep.stops for e in sr.events] + rep.unknown_stop
    located = [e for e in scans if e.r.lat_e6 or e.r.lon_e6]
    pts += [(e.r.lon_e6 / 1e6, e.r.lat_e6 / 1e6) for e in located]
    fr = Frame(pts)
    stops = []
    for sr in rep.stops:
        d = " ".join("M" + " L".join(_pair(*fr.xy(*pt)) for pt in ring) + " Z"
                     for poly in sr.stop.polygons for ring in poly)
        stops.append((sr, d, *fr.xy(*sr.stop.centre())))
    return {"width": fr.width, "height": fr.height, "stops": stops,
            "line": " ".join(_pair(*fr.xy(*s.centre())) for s in rep.route.stops),
            "scans": [(e, _shown_class(e), *fr.xy(e.r.lon_e6 / 1e6, e.r.lat_e6 / 1e6)) for e in located]}


def _shown_class(e: Event) -> str:
    return "correction" if e.voided_by else e.cls


def to_html(rep: Report) -> str:
    rates = [("route", rep.total)] + [("carrier " + d, r) for d, r in sorted(rep.carriers.items())]
    learned = {"chart": learn_report.chart(rep.days) if rep.days else None, "days": rep.days,
               "changes": sorted(rep.fences.items()), "stops": len(rep.stops)}
    return str(env.get_template("route_report.html").render(
        rep=rep, rates=rates, recon=reconciliation(rep), map=svg_map(rep), learned=learned,
        colours=COLOURS, labels=LABELS, fold=FOLD, iso=iso, pct=pct)) + "\n"
